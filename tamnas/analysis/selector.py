"""The one grammar that names an arch of a run: `--arch` everywhere, and the budgets of compare.

A selector is text a user types and a result records. Parsing is pure and
checked up front (a typo is one line before any work); choosing works on
tables (the archive frame, a strategy's front), so the same rule picks the
same arch in the CLI, in compare and in the explorer page:

    front:K                      row K of the run strategy's front table
    lego                         the LEGO net of that front
    knee                         the front member closest to the ideal point, each
                                 objective min-max normalised over the front
    arch:G-G-...-G               any arch by its genes (the archive's key)
    best:adv|clean[,BUDGET...]   the lowest inherited adversarial / clean error among
                                 the archive rows that meet every BUDGET; ties by the
                                 other error, then params, then archive order
    FILE.json                    an exported arch JSON

A BUDGET is COST<=VALUE or COST<VALUE, COST one of params, flops (counts:
2000, 2k, 1.5M, 2e6) or latency (milliseconds: 3ms, 500us, 0.003s; a bare
number is ms).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SELECTOR_HELP = ("front:K | lego | knee | arch:G-G-... | best:adv|clean[,params<=N][,flops<=N]"
                 "[,latency<=Xms] | FILE.json")
BUDGET_HELP = "COST<=VALUE[,COST<=VALUE...] with COST params, flops or latency (e.g. params<=2k, latency<=3ms)"
OBJECTIVES = {"adv": "adv_err", "clean": "clean_err"}
COUNT_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}
TIME_SUFFIXES = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}   # to milliseconds
COSTS = {"params": COUNT_SUFFIXES, "flops": COUNT_SUFFIXES, "latency": TIME_SUFFIXES}
_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|<)\s*([0-9.eE+-]+)\s*([a-zA-Zµ]*)\s*$")


@dataclass(frozen=True)
class Constraint:
    """COST op VALUE, VALUE in the cost column's unit (counts, or milliseconds for latency)."""

    cost: str
    op: str
    value: float

    def mask(self, df: pd.DataFrame) -> pd.Series:
        """Rows of `df` that meet the constraint (a missing value meets nothing)."""
        if self.cost not in df.columns:
            fix = ("build a latency table with `tamnas latency build RUN`" if self.cost == "latency"
                   else "these scores do not include it")
            raise ValueError(f"budget {self.label()}: no {self.cost} column here; {fix}")
        values = pd.to_numeric(df[self.cost], errors="coerce")
        return (values <= self.value) if self.op == "<=" else (values < self.value)

    def label(self) -> str:
        v = self.value
        number = str(int(v)) if v == int(v) else f"{v:g}"
        return f"{self.cost}{self.op}{number}{'ms' if self.cost == 'latency' else ''}"


@dataclass(frozen=True)
class Selector:
    """A parsed selector; `text` is what the user typed, recorded with the results."""

    text: str
    kind: str                       # front, lego, knee, arch, best, file
    index: int | None = None        # front:K
    genes: tuple[int, ...] | None = None   # arch:
    objective: str | None = None    # best: adv_err or clean_err
    constraints: tuple[Constraint, ...] = ()
    path: str | None = None         # an arch JSON


def _refuse(text: str, why: str) -> ValueError:
    return ValueError(f"arch selector {text!r}: {why}; use {SELECTOR_HELP}")


def parse_constraint(text: str) -> Constraint:
    """One `COST<=VALUE`; ValueError naming the part that is wrong."""
    m = _CONSTRAINT.match(text)
    if not m:
        raise ValueError(f"budget {text.strip()!r} is not COST<=VALUE; use {BUDGET_HELP}")
    cost, op, number, suffix = m.groups()
    if cost not in COSTS:
        raise ValueError(f"budget {text.strip()!r}: unknown cost {cost!r}; use params, flops or "
                         "latency")
    scale = COSTS[cost].get(suffix.lower())
    if scale is None:
        units = ", ".join(s for s in COSTS[cost] if s) or "none"
        raise ValueError(f"budget {text.strip()!r}: unknown unit {suffix!r} for {cost} (units: "
                         f"{units})")
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"budget {text.strip()!r}: {number!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget {text.strip()!r}: the limit must be a positive number")
    return Constraint(cost, op, value)


def parse_budget(text: str) -> tuple[Constraint, ...]:
    """`params<=2000` or `latency<=3ms,params<=5k`; ValueError in one line if malformed."""
    parts = [p for p in str(text).split(",")]
    if not str(text).strip() or any(not p.strip() for p in parts):
        raise ValueError(f"budget {text!r} is empty or has an empty part; use {BUDGET_HELP}")
    constraints = tuple(parse_constraint(p) for p in parts)
    costs = [c.cost for c in constraints]
    if len(set(costs)) != len(costs):
        raise ValueError(f"budget {text!r} limits one cost twice; give each cost once")
    return constraints


def budget_label(constraints: Sequence[Constraint]) -> str:
    """The canonical text of a budget: the same budget always reads the same."""
    return ",".join(c.label() for c in constraints)


def parse_selector(text: str) -> Selector:
    """Parse an arch selector (grammar in the module docstring); ValueError in one line."""
    spec = str(text).strip()
    if not spec:
        raise _refuse(text, "it is empty")
    head, sep, rest = spec.partition(":")
    if sep and head == "front":
        if not re.fullmatch(r"\d+", rest):
            raise _refuse(text, "front:K takes a row number K >= 0")
        return Selector(spec, "front", index=int(rest))
    if sep and head == "arch":
        if not re.fullmatch(r"\d+(-\d+)*", rest):
            raise _refuse(text, "arch: takes genes as integers joined by '-', e.g. arch:2-0-3-1")
        return Selector(spec, "arch", genes=tuple(int(g) for g in rest.split("-")))
    if sep and head == "best":
        which, comma, budget = rest.partition(",")
        if which.strip() not in OBJECTIVES:
            raise _refuse(text, "best: takes adv or clean, e.g. best:adv,params<=2000")
        try:
            constraints = parse_budget(budget) if comma else ()
        except ValueError as err:
            raise _refuse(text, str(err).split("; use")[0]) from None
        return Selector(spec, "best", objective=OBJECTIVES[which.strip()],
                        constraints=constraints)
    if spec in ("lego", "knee"):
        return Selector(spec, spec)
    if spec.lower().endswith(".json"):
        return Selector(spec, "file", path=spec)
    raise _refuse(text, "not a selector nor an arch JSON file (*.json)")


def within_budget(df: pd.DataFrame, constraints: Sequence[Constraint]) -> pd.Series:
    """Rows of `df` that meet every constraint."""
    mask = pd.Series(True, index=df.index)
    for c in constraints:
        mask &= c.mask(df)
    return mask


def best_under(df: pd.DataFrame, objective: str, constraints: Sequence[Constraint] = ()):
    """Index label of the best row of `df` by `objective` among those within the budget.

    Ties by the other error, then params, then archive order (`order`), so the
    choice is one arch however the table was sorted. ValueError in one line,
    naming the nearest miss, when nothing fits.
    """
    if df.empty:
        raise ValueError("no scored archs to choose from; run a search first")
    fits = df[within_budget(df, constraints) & df[objective].notna()]
    if fits.empty:
        nearest = ", ".join(f"smallest {c.cost} here: {pd.to_numeric(df[c.cost]).min():,.6g}"
                            for c in constraints)
        raise ValueError(f"no scored arch meets {budget_label(constraints)} ({nearest}); loosen "
                         "the budget")
    other = "clean_err" if objective == "adv_err" else "adv_err"
    keys = [k for k in (objective, other, "params", "order") if k in fits.columns]
    return fits.sort_values(keys, kind="stable").index[0]


def knee_position(front: pd.DataFrame, objectives: Sequence[str]) -> int:
    """Positional row of the front's knee: the member nearest the ideal point once each
    objective is min-max normalised over the front (an objective constant over the front
    counts as 0); ties by front order."""
    if front.empty:
        raise ValueError("the front is empty; run a search first")
    F = front[list(objectives)].to_numpy(dtype=float)
    lo, hi = F.min(axis=0), F.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.sqrt((((F - lo) / span) ** 2).sum(axis=1))
    return int(np.argmin(dist))


__all__ = ["BUDGET_HELP", "SELECTOR_HELP", "Constraint", "Selector", "best_under", "budget_label",
           "knee_position", "parse_budget", "parse_constraint", "parse_selector", "within_budget"]
