"""Plain ShuffleNetV2 network of one arch: only the chosen blocks, at their chosen widths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.base import Arch
from tamnas.supernets.shufflenet.blocks import FirstLayer, Head
from tamnas.supernets.shufflenet.layout import ShuffleNetLayout


class ShuffleNetStandalone(nn.Module):
    """forward(x) == forward_from_first(first_layer(x)); state-dict keys match `supernet.extract`."""

    def __init__(self, layout: ShuffleNetLayout, arch: Arch):
        super().__init__()
        arch = layout.validate(arch)
        self.arch = arch
        self.first_layer = FirstLayer(layout.in_channels, layout.stem_channels, layout.mean, layout.std)
        self.stem_bn = nn.BatchNorm2d(layout.stem_channels)
        blocks = []
        for spec in layout.layers:
            b, r = arch[2 * spec.index], arch[2 * spec.index + 1]
            blocks.append(layout.make_block(spec.index, layout.choices[spec.index][b],
                                            int(layout.mids[spec.index][b, r])))
        self.layers = nn.ModuleList(blocks)
        self.head = Head(layout.layers[-1].out_channels, layout.head_channels,
                         layout.se_hidden(layout.head_channels), layout.fc_channels, layout.num_classes)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(h))
        for block in self.layers:
            h = block(h)
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


def build_standalone(layout: ShuffleNetLayout, arch: Arch) -> nn.Module:
    """The standalone net of `arch` (fresh weights; load `supernet.extract(arch)` to inherit)."""
    return ShuffleNetStandalone(layout, arch)


__all__ = ["ShuffleNetStandalone", "build_standalone"]
