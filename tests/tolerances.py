"""Float tolerances derived from the quantity's scale and float32 accumulation.

Two float32 computations of one quantity that differ only in summation order
(another CPU's kernels, another thread count, two ranks instead of one) round
differently. A sum of n addends carries a rounding error of about
u * sqrt(n) * scale (u = eps/2, random-order rounding), where scale is the
size of the addends, not of the result: an entry that cancels to nearly zero
keeps the error of its large addends. A chain of `depth` reductions (layers of
a forward or backward pass) adds one such error per link. We allow four
standard deviations of that estimate. rtol stays 0: a relative tolerance
fails exactly on the entries that cancel.
"""

from __future__ import annotations

import math

import torch

UNIT_ROUNDOFF = {torch.float32: torch.finfo(torch.float32).eps / 2,
                 torch.float64: torch.finfo(torch.float64).eps / 2}
SIGMAS = 4.0


def rounding_tolerance(scale: float, terms: int = 1, depth: int = 1,
                       dtype: torch.dtype = torch.float32) -> float:
    """Absolute slack for `depth` chained sums of `terms` addends of magnitude `scale`."""
    return SIGMAS * UNIT_ROUNDOFF[dtype] * math.sqrt(max(terms, 1)) * max(depth, 1) * scale


def assert_rounding_close(actual: torch.Tensor, expected: torch.Tensor, terms: int = 1,
                          depth: int = 1, msg: str | None = None,
                          scale: float | None = None) -> float:
    """assert_close with the tolerance of `rounding_tolerance`; returns that tolerance.

    `scale` defaults to the tensors' largest entry; pass the addends' size when
    it is larger (e.g. 1.0 for a perturbation computed as (x + eta) - x).
    """
    expected = torch.as_tensor(expected).detach()
    actual = torch.as_tensor(actual).detach()
    if scale is None:
        scale = max(float(expected.abs().max()), float(actual.abs().max())) \
            if expected.numel() else 0.0
    tol = rounding_tolerance(scale, terms, depth, expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=0, atol=tol, msg=msg)
    return tol


def network_terms_and_depth(net: torch.nn.Module) -> tuple[int, int]:
    """(largest fan-in, number of weighted layers) of a net: the sums its outputs accumulate."""
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    fan_in = max((m.weight[0].numel() for m in layers), default=1)
    return fan_in, max(len(layers), 1)
