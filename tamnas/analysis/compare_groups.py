"""The groups `tamnas compare` trains at one budget, chosen from the run's tables.

Front picks: the best members of the run strategy's front under the budget
by inherited adversarial error. Random archs: uniform samples of the space,
each matched to a pick's parameter count within +-5 % (and kept under the
budget), so a gain cannot come from size alone; under a latency budget they
are matched to the pick's predicted latency instead, so a gain cannot come
from speed alone. Random search: the best arch by inherited adversarial
error of each random search that spent as many evaluations as the run's
search (one pick per search seed, so several searches give the group the
spread of what random search finds). The plain net is sized in
`supernets.plain`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tamnas.analysis.selector import Constraint, best_under, budget_label, within_budget
from tamnas.search.archive import arch_key
from tamnas.supernets.base import Arch, SearchSpace

MATCH = 0.05               # random archs within +-5 % of their pick's params (or latency)
MAX_DRAWS = 200            # draws per random arch before a budget is taken as exhausted
GROUPS = ("front", "random archs", "random search", "plain")


@dataclass(frozen=True)
class Member:
    """One arch of one group at one budget; `arch` is None for the plain net (`width` set)."""

    group: str
    key: str
    params: int
    arch: Arch | None = None
    width: int | None = None
    inherited_adv_err: float | None = None
    inherited_clean_err: float | None = None
    matched_to: str | None = None
    latency_ms: float | None = None   # predicted by the run's table; measured for a plain net
    search: int | None = None         # which random search picked it (random-search group)


def _genes(row: pd.Series, n_genes: int) -> Arch:
    return tuple(int(row[f"g{i}"]) for i in range(n_genes))


def _member(group: str, row: pd.Series, n_genes: int, **extra) -> Member:
    arch = _genes(row, n_genes)
    return Member(group, arch_key(arch), int(row["params"]), arch,
                  inherited_adv_err=float(row["adv_err"]),
                  inherited_clean_err=float(row["clean_err"]), **extra)


def front_picks(front: pd.DataFrame, constraints: Sequence[Constraint], n: int,
                n_genes: int) -> list[Member]:
    """The best `n` front members under the budget by inherited adversarial error (ties by
    clean error, params, archive order); ValueError in one line if none fits."""
    fits = front[within_budget(front, constraints)]
    if fits.empty:
        smallest = int(pd.to_numeric(front["params"]).min()) if len(front) else 0
        raise ValueError(f"no front member meets {budget_label(constraints)} (smallest on the "
                         f"front: {smallest:,} params); loosen the budget")
    keys = [k for k in ("adv_err", "clean_err", "params", "order") if k in fits.columns]
    fits = fits.sort_values(keys, kind="stable").head(n)
    return [_member("front", row, n_genes) for _, row in fits.iterrows()]


def _meets(space: SearchSpace, arch: Arch, constraints: Sequence[Constraint]) -> bool:
    missing = [c.cost for c in constraints if not space.has_cost(c.cost)]
    if missing:
        raise ValueError(f"budget {budget_label(constraints)}: this space has no {missing[0]} "
                         "costs; build a latency table with `tamnas latency build RUN`")
    row = pd.DataFrame([{c.cost: space.cost(c.cost, arch) for c in constraints}])
    return bool(within_budget(row, constraints).iloc[0])


def match_cost(constraints: Sequence[Constraint]) -> str:
    """The cost random archs are matched on: latency under a latency budget, else params."""
    return "latency" if any(c.cost == "latency" for c in constraints) else "params"


def matched_archs(space: SearchSpace, picks: Sequence[Member], n: int,
                  constraints: Sequence[Constraint], rng: np.random.Generator) -> list[Member]:
    """`n` distinct uniform archs, the j-th matched to pick j mod len(picks) within +-MATCH of
    its params (its latency under a latency budget) and meeting the budget; never a pick."""
    kind = match_cost(constraints)
    taken = {p.arch for p in picks}
    out: list[Member] = []
    for j in range(n):
        pick = picks[j % len(picks)]
        target = float(space.cost(kind, pick.arch)) if kind != "params" else pick.params
        window = [math.ceil(pick.params * (1 - MATCH)), math.floor(pick.params * (1 + MATCH))]
        draws = MAX_DRAWS if kind == "params" else 10 * MAX_DRAWS  # table lookups are cheap
        for _ in range(draws):
            arch = space.sample(rng, params_range=window if kind == "params" else None)
            close = kind == "params" or \
                abs(float(space.cost(kind, arch)) - target) <= MATCH * target
            if close and arch not in taken and _meets(space, arch, constraints):
                break
        else:
            unit = "ms" if kind == "latency" else " params"
            raise ValueError(f"found no new arch within {100 * MATCH:.0f}% of {target:,.4g}{unit}"
                             f" under {budget_label(constraints)} after {draws} draws; "
                             "ask for fewer --random-archs")
        taken.add(arch)
        out.append(Member("random archs", arch_key(arch), int(space.params(arch)), arch,
                          matched_to=pick.key))
    return out


def random_search_pick(frame: pd.DataFrame, constraints: Sequence[Constraint],
                       n_genes: int, search: int = 0) -> Member:
    """Random search number `search`'s best arch under the budget by inherited adversarial
    error."""
    try:
        label = best_under(frame, "adv_err", constraints)
    except ValueError as err:
        raise ValueError(f"random search {search + 1}: {err}") from None
    return _member("random search", frame.loc[label], n_genes, search=search)


__all__ = ["GROUPS", "MATCH", "Member", "front_picks", "match_cost", "matched_archs",
           "random_search_pick"]
