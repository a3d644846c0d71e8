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

The interval is difference +- t(df) * SE with df by Welch-Satterthwaite. A
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
from scipy import stats

LEVEL = 0.95            # the family-wise level all verdicts together hold at
MIN_UNITS = 2           # a group needs two archs or two seeds for its own noise
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


def group_noise(correct: np.ndarray) -> tuple[float, float]:
    """(variance of the group's mean accuracy from its archs and seeds, its degrees of freedom).

    Several archs: var(arch means) / archs, archs - 1 df (seed noise is inside
    each arch mean). One arch: var(seed accuracies) / seeds, seeds - 1 df.
    One arch and one seed: (nan, 0), nothing to estimate it from.
    """
    acc = _as_units(correct).mean(axis=2)  # (archs, seeds)
    archs, seeds = acc.shape
    if archs >= MIN_UNITS:
        return float(np.var(acc.mean(axis=1), ddof=1) / archs), float(archs - 1)
    if seeds >= MIN_UNITS:
        return float(np.var(acc[0], ddof=1) / seeds), float(seeds - 1)
    return math.nan, 0.0


def interaction_variance(correct: np.ndarray) -> float:
    """The unit-by-image residual variance of a two-way additive fit (units = arch x seed)."""
    c = _as_units(correct)
    units = c.reshape(-1, c.shape[2])
    u, n = units.shape
    if u < 2 or n < 2:
        return 0.0
    resid = (units - units.mean(axis=1, keepdims=True) - units.mean(axis=0, keepdims=True)
             + units.mean())
    return float((resid ** 2).sum() / ((u - 1) * (n - 1)))


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> Difference:
    """Mean accuracy of `a` minus `b` with its `level` interval (module docstring)."""
    a, b = _as_units(a), _as_units(b)
    if a.shape[2] != b.shape[2]:
        raise ValueError(f"the groups were scored on {a.shape[2]} and {b.shape[2]} images; "
                         "compare needs the same images for both")
    n = a.shape[2]
    diff = float(a.mean() - b.mean())
    va, dfa = group_noise(a)
    vb, dfb = group_noise(b)
    d = a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))  # paired per-image difference
    v_img = float(np.var(d, ddof=1) / n) if n > 1 else 0.0
    shared = (interaction_variance(a) / (a.shape[0] * a.shape[1])
              + interaction_variance(b) / (b.shape[0] * b.shape[1])) / n
    v_img = max(v_img - shared, 0.0)
    if not (math.isfinite(va) and math.isfinite(vb)):
        return Difference(diff, math.nan, math.nan, math.nan, 0.0, level)
    total = va + vb + v_img
    if total <= 0:
        return Difference(diff, diff, diff, 0.0, math.inf, level)
    parts = [(va, dfa), (vb, dfb), (v_img, max(n - 1, 1))]
    df = total ** 2 / sum(v ** 2 / k for v, k in parts if v > 0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(total)
    return Difference(diff, diff - half, diff + half, math.sqrt(total), float(df), level)


def corrected_level(n_intervals: int, level: float = LEVEL) -> float:
    """Bonferroni: each of `n_intervals` intervals at 1 - (1 - level) / n, so that all of
    them cover together with probability at least `level`."""
    if n_intervals < 1:
        raise ValueError(f"corrected_level: {n_intervals} intervals; need at least 1")
    return 1.0 - (1.0 - level) / n_intervals


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
        said.append(f"too few seeds or archs to tell (the interval reaches beyond "
                    f"{100 * WIDE:.0f} points; use more --seeds) against " + "; ".join(parts["wide"]))
    if parts["unknown"]:
        said.append("cannot tell (a group with one arch and one seed has no noise estimate: "
                    "use --seeds 2 or more) against " + "; ".join(parts["unknown"]))
    return f"at {budget}: " + "; ".join(said) if said else f"at {budget}: nothing to compare"


__all__ = ["LEVEL", "WIDE", "Difference", "corrected_level", "group_noise", "interaction_variance",
           "outcome", "paired_difference", "points", "verdict_line"]
