"""compare's groups on a toy space with exact params: the front picks, the size-matched random
archs and random search's pick, checked against direct computations over the tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from toyspace import ToySpace, toy_scores

from tamnas.analysis.compare_groups import MATCH, front_picks, matched_archs, random_search_pick
from tamnas.analysis.selector import parse_budget


@pytest.fixture(scope="module")
def space():
    return ToySpace()


def _table(space, archs) -> pd.DataFrame:
    rows = []
    for k, arch in enumerate(archs):
        s = toy_scores(space, arch)
        rows.append({**{f"g{i}": g for i, g in enumerate(arch)}, "params": space.params(arch),
                     "flops": space.flops(arch), "adv_err": s["adv_err"],
                     "clean_err": s["clean_err"], "order": k})
    return pd.DataFrame(rows)


def test_front_picks_are_the_best_under_the_budget_by_adversarial_error(space):
    rng = np.random.default_rng(0)
    table = _table(space, list(dict.fromkeys(space.sample(rng) for _ in range(60))))
    budget = int(table["params"].median())
    picks = front_picks(table, parse_budget(f"params<={budget}"), 3, space.n_genes)
    under = table[table["params"] <= budget].sort_values(["adv_err", "clean_err", "params",
                                                          "order"])
    assert [p.params for p in picks] == under["params"].head(3).tolist()
    assert [p.inherited_adv_err for p in picks] == under["adv_err"].head(3).tolist()
    with pytest.raises(ValueError, match=r"no front member meets params<=10 \(smallest"):
        front_picks(table, parse_budget("params<=10"), 2, space.n_genes)


def test_random_archs_match_a_picks_size_stay_under_budget_and_are_new(space):
    rng = np.random.default_rng(1)
    table = _table(space, list(dict.fromkeys(space.sample(rng) for _ in range(60))))
    budget = parse_budget(f"params<={int(table['params'].quantile(0.7))}")
    picks = front_picks(table, budget, 2, space.n_genes)
    found = matched_archs(space, picks, 7, budget, np.random.default_rng(2))
    assert len(found) == 7 and len({m.arch for m in found}) == 7
    for j, m in enumerate(found):
        pick = picks[j % 2]
        assert m.matched_to == pick.key and m.arch != pick.arch
        assert abs(m.params - pick.params) <= MATCH * pick.params
        assert m.params == space.params(m.arch) <= budget[0].value


def test_random_search_pick_is_the_lowest_adversarial_error_under_the_budget(space):
    rng = np.random.default_rng(3)
    table = _table(space, list(dict.fromkeys(space.sample(rng) for _ in range(40))))
    cap = int(table["params"].quantile(0.4))
    pick = random_search_pick(table, parse_budget(f"params<={cap}"), space.n_genes)
    assert pick.inherited_adv_err == table[table["params"] <= cap]["adv_err"].min()
    with pytest.raises(ValueError, match="random search: no scored arch meets params<=1"):
        random_search_pick(table, parse_budget("params<=1"), space.n_genes)
