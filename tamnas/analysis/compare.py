"""Statistics of `tamnas compare`: group differences with small-df intervals, and the verdict.

Every group (front picks, random archs, random search's pick, the plain
net) is an array of per-image correctness, shape (archs, seeds, images),
scored on the same test images under the same attack. A difference of two
groups' mean accuracies has three sources of noise:

- which archs and training seeds a group happened to get: estimated from
  the spread of the group's arch means (the spread of its seeds when it has
  one arch), unbiased (ddof=1), with archs - 1 (or seeds - 1) degrees of
  freedom;
- which test images were drawn: the images are shared, so this part is the
  variance of the paired per-image difference over images, var(d_i) / n,
  the variance an image bootstrap of the paired difference estimates;
- the arch-by-image interaction, which both terms above contain: it is
  estimated from the two-way residuals and counted once.

The interval is difference +- t(df) * SE with df by Welch-Satterthwaite
(`analysis.noise.group_difference` computes it; this module turns it into
accuracy differences, the corrected level and the verdict). A
percentile bootstrap over 2 seeds or 1-5 archs sees a handful of distinct
means and is far too narrow; a t interval on the few df is what keeps the
stated coverage (tests/test_compare_stats.py simulates it). With several
budgets and comparisons the level of each interval is Bonferroni-corrected,
so all the verdicts together hold at the stated level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tamnas.analysis.noise import bonferroni_level, group_difference

LEVEL = 0.95            # the family-wise level all verdicts together hold at
WIDE = 0.05             # a tie whose interval reaches 5 points either way tells nothing


@dataclass(frozen=True)
class Difference:
    """mean accuracy of group a minus that of group b, in accuracy units (0-1)."""

    diff: float
    low: float
    high: float
    se: float
    df: float
    level: float

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def to_dict(self) -> dict:
        return {k: (v if math.isfinite(v) else None) for k, v in asdict(self).items()}


def _as_units(correct: np.ndarray) -> np.ndarray:
    c = np.asarray(correct, dtype=float)
    if c.ndim != 3 or 0 in c.shape:
        raise ValueError(f"a group's correctness must be (archs, seeds, images) and non-empty, "
                         f"not shape {c.shape}")
    return c


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Difference:
    """Mean accuracy of `a` minus `b` with its `level` interval (module docstring).

    `noise.group_difference` does the arithmetic on error masks; the error of b
    minus the error of a is the accuracy of a minus that of b.
    """
    a, b = _as_units(a), _as_units(b)
    g = group_difference(1.0 - b, 1.0 - a, level)
    if not g["noise_known"]:
        return Difference(g["diff"], math.nan, math.nan, math.nan, 0.0, level)
    low, high = g["ci"]
    return Difference(g["diff"], float(low), float(high), float(g["se"]), float(g["df"]), level)


def corrected_level(n_intervals: int, level: float = LEVEL) -> float:
    """Bonferroni: each of `n_intervals` intervals at 1 - (1 - level) / n, so that all of
    them cover together with probability at least `level`."""
    if n_intervals < 1:
        raise ValueError(f"corrected_level: {n_intervals} intervals; need at least 1")
    return bonferroni_level(level, n_intervals)


def outcome(d: Difference) -> str:
    """The stated rule: "better" if the interval lies above 0, "worse" if below, "tie" if it
    holds 0, "unknown" if there is no interval (a group with one arch and one seed)."""
    if not d.known:
        return "unknown"
    return "better" if d.low > 0 else "worse" if d.high < 0 else "tie"


def points(d: Difference) -> str:
    """`+3.1 [1.2, 5.0]` in accuracy points."""
    if not d.known:
        return f"{100 * d.diff:+.1f} [no interval]"
    return f"{100 * d.diff:+.1f} [{100 * d.low:.1f}, {100 * d.high:.1f}]"


def verdict_line(budget: str, diffs: dict[str, Difference], metric: str = "PGD") -> str:
    """One sentence per budget that follows from `diffs` (name -> front minus that group)
    by `outcome`; a tie whose interval reaches beyond WIDE either way is reported as too
    noisy to tell, not as no difference."""
    parts = {"better": [], "worse": [], "tie": [], "wide": [], "unknown": []}
    for name, d in diffs.items():
        kind = outcome(d)
        if kind == "tie" and max(d.high - d.diff, d.diff - d.low) > WIDE:
            kind = "wide"
        parts[kind].append(f"{name} {metric} {points(d)}")
    said = []
    if parts["better"]:
        said.append("the search pays off against " + "; ".join(parts["better"]))
    if parts["worse"]:
        said.append("the search loses against " + "; ".join(parts["worse"]))
    if parts["tie"]:
        said.append("no difference beyond noise against " + "; ".join(parts["tie"]))
    if parts["wide"]:
        more = "more --seeds" + (", and --search-seeds 3 or more for random search" if any(
            p.startswith("random search ") for p in parts["wide"]) else "")
        said.append(f"too few seeds or archs to tell (the interval reaches beyond "
                    f"{100 * WIDE:.0f} points; use {more}) against " + "; ".join(parts["wide"]))
    if parts["unknown"]:
        said.append("cannot tell (a group with one arch and one seed has no noise estimate: "
                    "use --seeds 2 or more) against " + "; ".join(parts["unknown"]))
    return f"at {budget}: " + "; ".join(said) if said else f"at {budget}: nothing to compare"


__all__ = ["LEVEL", "WIDE", "Difference", "corrected_level", "outcome", "paired_difference",
           "points", "verdict_line"]
