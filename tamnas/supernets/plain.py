"""The plain baseline: a conv-BN-ReLU stack scaled to a parameter budget, with no search behind it.

`tamnas compare` asks whether a front member is worth more than what a user
gets without the search; the cheapest answer a user has is a plain stack of
3x3 convolutions. `PlainNet` is that stack: the first block keeps the
resolution, every later one halves it and doubles the width, then global
average pooling and one linear classifier. Like every standalone net of the
project it takes images in [0, 1], normalises inside its first module, and
offers YOPO's split (`first_layer` = normalisation + the bare first
convolution, `forward_from_first`), so `train.retrain` trains it with the
same recipe and objective as a front member. `plain_width` picks the widest
base width whose exact parameter count fits the budget; under a time budget
`analysis.compare_plain` picks the widest whose measured latency fits, through
the same `widest_within`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.shufflenet.blocks import FirstLayer

DEPTH = 3          # conv blocks: widths w, 2w, 4w at resolutions r, r/2, r/4
MAX_WIDTH = 4096   # no budget this project meets needs a wider base


def plain_params(width: int, in_channels: int, num_classes: int, depth: int = DEPTH) -> int:
    """Exact trainable parameters of `PlainNet(width)` (BatchNorm running statistics excluded)."""
    widths = [width * 2 ** i for i in range(depth)]
    total, c_in = 0, in_channels
    for c in widths:
        total += c_in * 9 * c + 2 * c   # bias-free 3x3 conv, BatchNorm weight and bias
        c_in = c
    return total + c_in * num_classes + num_classes


def widest_within(fits: Callable[[int], bool], upper: int = MAX_WIDTH) -> int | None:
    """The widest width in 1..`upper` that `fits`, for a `fits` that holds up to some width and
    fails beyond; None if width 1 does not fit. Doubles from 1, then bisects: about
    2 log2(answer) calls, and never a call far wider than the answer (each may build and
    time a net)."""
    if not fits(1):
        return None
    lo = 1                      # fits
    hi = 2                      # first width tried above lo
    while hi <= upper and fits(hi):
        lo, hi = hi, 2 * hi
    hi = min(hi, upper + 1)     # the first width known (or taken) not to fit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def plain_width(budget: int, in_channels: int, num_classes: int, depth: int = DEPTH) -> int:
    """The widest base width whose parameter count is at most `budget`; ValueError if none fits."""
    width = widest_within(lambda w: plain_params(w, in_channels, num_classes, depth) <= budget)
    if width is None:
        smallest = plain_params(1, in_channels, num_classes, depth)
        raise ValueError(f"params<={budget}: the smallest plain net (width 1) has {smallest} "
                         "params; raise the budget")
    return width


class PlainNet(nn.Module):
    """forward(x) == forward_from_first(first_layer(x)); see the module docstring."""

    def __init__(self, width: int, in_channels: int, num_classes: int, mean: Sequence[float],
                 std: Sequence[float], depth: int = DEPTH):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"plain net: width {width} and depth {depth} must be at least 1")
        self.width, self.depth = int(width), int(depth)
        widths = [width * 2 ** i for i in range(depth)]
        self.first_layer = FirstLayer(in_channels, widths[0], mean, std)
        self.first_bn = nn.BatchNorm2d(widths[0])
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
            for c_in, c in pairwise(widths))
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.first_bn(h))
        for block in self.blocks:
            h = block(h)
        return self.fc(h.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


def plain_key(width: int, depth: int = DEPTH) -> str:
    """The name of a plain net in tables and folder names (never an arch key of a space)."""
    return f"plain-w{width}" if depth == DEPTH else f"plain-w{width}-d{depth}"


def build_plain(budget: int, info) -> PlainNet:
    """The plain net for a dataset's `DatasetInfo` (classes, channels, mean/std) under `budget`."""
    width = plain_width(budget, info.in_channels, info.num_classes)
    return PlainNet(width, info.in_channels, info.num_classes, info.mean, info.std)


__all__ = ["DEPTH", "PlainNet", "build_plain", "plain_key", "plain_params", "plain_width",
           "widest_within"]
