"""Rank correlations of two score lists (and of many at once, one bootstrap sample per row).

Kendall's tau-b, Spearman's rho and Kendall's partial tau with a third
variable (parameter count) held fixed; NaN wherever a correlation is undefined.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def _finite_pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b; NaN when fewer than two archs or one list is constant (no ranking)."""
    from scipy.stats import kendalltau

    a, b = _finite_pair(a, b)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(kendalltau(a, b)[0])


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho; NaN where `kendall_tau` is."""
    from scipy.stats import spearmanr

    a, b = _finite_pair(a, b)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b)[0])


def kendall_tau_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of two (resamples x archs) arrays, as `kendall_tau`.

    tau-b = sum of sign products over pairs / sqrt(untied pairs in x * untied pairs in y),
    vectorised so that a thousand bootstrap resamples cost one array operation.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    iu = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, :, None] - x[:, None, :])[:, iu[0], iu[1]]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    denom = np.sqrt((sx ** 2).sum(axis=1) * (sy ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (sx * sy).sum(axis=1) / denom
    return np.where(denom > 0, tau, np.nan)


def spearman_rho_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (average ranks for ties), as `spearman_rho`."""
    from scipy.stats import rankdata

    rx = rankdata(np.atleast_2d(np.asarray(x, float)), axis=1)
    ry = rankdata(np.atleast_2d(np.asarray(y, float)), axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / denom
    return np.where(denom > 0, rho, np.nan)


def partial_tau(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Kendall's partial tau of x and y with z held fixed (Kendall 1942).

    (tau_xy - tau_xz tau_yz) / sqrt((1 - tau_xz^2)(1 - tau_yz^2)): how well x
    orders y beyond what both owe to z. With z the parameter count, it says
    whether inherited scores rank archs of similar size, which the search
    needs, since params are known exactly without any supernet. Missing values
    as in `kendall_tau`: an arch with a non-finite x, y or z is left out, and
    the result is NaN with fewer than two archs left or a constant list.
    """
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[ok], y[ok], z[ok]
    if len(x) < 2 or min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0:
        return math.nan
    return float(partial_tau_rows(x[None, :], y[None, :], z[None, :])[0])


def partial_tau_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """`partial_tau` of each row of x, y and z (one bootstrap sample per row)."""
    txy, txz, tyz = kendall_tau_rows(x, y), kendall_tau_rows(x, z), kendall_tau_rows(y, z)
    denom = np.sqrt(np.clip((1 - txz ** 2) * (1 - tyz ** 2), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (txy - txz * tyz) / denom
    return np.where(denom > 1e-12, out, np.nan)


__all__ = ["kendall_tau", "kendall_tau_rows", "partial_tau", "partial_tau_rows", "spearman_rho",
           "spearman_rho_rows"]
