"""Plain ShuffleNetV2 network of one arch: only the chosen blocks, at their chosen widths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.base import Arch
from tamnas.supernets.shufflenet.blocks import FirstLayer, Head


class ShuffleNetStandalone(nn.Module):
    """forward(x) == forward_from_first(first_layer(x)); state-dict keys match `supernet.extract`."""

    def __init__(self, space, arch: Arch):
        super().__init__()
        arch = space.validate(arch)
        self.arch = arch
        self.first_layer = FirstLayer(space.in_channels, space.stem_channels, space.mean, space.std)
        self.stem_bn = nn.BatchNorm2d(space.stem_channels)
        blocks = []
        for spec in space.layers:
            b, r = arch[2 * spec.index], arch[2 * spec.index + 1]
            blocks.append(space.make_block(spec.index, space.choices[spec.index][b],
                                           int(space.mids[spec.index][b, r])))
        self.layers = nn.ModuleList(blocks)
        self.head = Head(space.layers[-1].out_channels, space.head_channels,
                         space.se_hidden(space.head_channels), space.fc_channels, space.num_classes)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(h))
        for block in self.layers:
            h = block(h)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


def build_standalone(space, arch: Arch) -> nn.Module:
    """The standalone net of `arch` in `space` (fresh weights; load `supernet.extract(arch)` to inherit)."""
    return ShuffleNetStandalone(space, arch)


__all__ = ["ShuffleNetStandalone", "build_standalone"]
