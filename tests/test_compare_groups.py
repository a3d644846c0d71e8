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
    with pytest.raises(ValueError, match="random search 1: no scored arch meets params<=1"):
        random_search_pick(table, parse_budget("params<=1"), space.n_genes)


def test_under_a_latency_budget_random_archs_match_a_picks_latency_and_meet_the_budget():
    space = ToySpace()
    rng = np.random.default_rng(4)
    # a measured cost that orders archs unlike params: random positive times per option
    space.attach_costs("latency", 0.2, [rng.uniform(0.05, 0.5, shape)
                                         for shape in space.decision_shapes()])
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(80)))
    table = _table(space, archs).assign(latency=[space.cost("latency", a) for a in archs])
    budget = parse_budget(f"latency<={table['latency'].quantile(0.6):.4f}ms")
    picks = front_picks(table, budget, 2, space.n_genes)
    found = matched_archs(space, picks, 5, budget, np.random.default_rng(5))
    assert len({m.arch for m in found}) == 5
    for j, m in enumerate(found):
        target = space.cost("latency", picks[j % 2].arch)
        assert abs(space.cost("latency", m.arch) - target) <= MATCH * target
        assert space.cost("latency", m.arch) <= budget[0].value


def test_a_latency_budget_without_a_table_is_one_line(space):
    rng = np.random.default_rng(6)
    table = _table(space, list(dict.fromkeys(space.sample(rng) for _ in range(20))))
    picks = front_picks(table, parse_budget("params<=100000000"), 1, space.n_genes)
    with pytest.raises(ValueError, match="latency build"):
        matched_archs(space, picks, 1, parse_budget("latency<=3ms"), np.random.default_rng(0))
