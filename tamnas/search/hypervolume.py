"""Hypervolume of a front: fixed normalisation bounds and a fixed reference point.

Errors are fractions in [0, 1]; params span the space's reachable range (cut
to the search's range); FLOPs span the space's bounds. Points are normalised
by those bounds and measured against REF_MARGIN in every axis, so hypervolumes
of different strategies and generations on one run compare directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.indicators.hv import HV

from tamnas.supernets.base import SearchSpace

ERROR_SCORES = ("adv_err", "clean_err", "ood_aupr_err")
REF_MARGIN = 1.1  # reference point, in units of each objective's normalised range


def objective_bounds(space: SearchSpace, objectives: Sequence[str],
                     params_range: Sequence[int] | None, seed: int = 0,
                     n_flops_samples: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Per-objective [low, high] used to normalise before the hypervolume.

    Errors are fractions: [0, 1]. Params: the reachable range of the space,
    cut to the search's parameter range. FLOPs: `space.flops_bounds()` when
    the space has it, else the extremes of a fixed seeded sample.
    """
    lows, highs = [], []
    p_lo, p_hi = space.params_bounds()
    if params_range and params_range[1] > 0:
        p_lo, p_hi = max(p_lo, params_range[0]), min(p_hi, params_range[1])
    for name in objectives:
        if name in ERROR_SCORES:
            lo, hi = 0.0, 1.0
        elif name == "params":
            lo, hi = float(p_lo), float(p_hi)
        elif name == "flops":
            lo, hi = (float(v) for v in space.flops_bounds())
        elif name == "latency":
            lo, hi = (float(v) for v in space.cost_bounds("latency"))
        else:
            raise ValueError(f"search.objectives: no bounds known for {name!r}")
        lows.append(lo)
        highs.append(hi if hi > lo else lo + 1.0)
    return np.array(lows), np.array(highs)


class Hypervolume:
    """HV of points normalised by fixed bounds, against the fixed point REF_MARGIN in every axis."""

    def __init__(self, low: Sequence[float], high: Sequence[float], margin: float = REF_MARGIN):
        self.low, self.high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        self.ref = np.full(len(self.low), float(margin))
        self._hv = HV(ref_point=self.ref)

    def normalise(self, F: np.ndarray) -> np.ndarray:
        return (np.asarray(F, dtype=float) - self.low) / (self.high - self.low)

    def __call__(self, F: np.ndarray) -> float:
        F = self.normalise(np.asarray(F, dtype=float).reshape(-1, len(self.low)))
        F = F[np.all(F < self.ref, axis=1)]
        return float(self._hv(F)) if len(F) else 0.0

    def to_dict(self, objectives: Sequence[str]) -> dict:
        raw = self.low + self.ref * (self.high - self.low)
        return {"objectives": list(objectives), "normalisation": "(f - low) / (high - low)",
                "low": self.low.tolist(), "high": self.high.tolist(),
                "reference_point": self.ref.tolist(), "reference_point_raw": raw.tolist()}


__all__ = ["ERROR_SCORES", "REF_MARGIN", "Hypervolume", "objective_bounds"]
