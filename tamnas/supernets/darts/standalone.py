"""The plain network of one DARTS genotype.

It and the supernet are built from the same `Layout` (layout.py) with the
same module names, so a supernet path's weights load into the standalone network
by dropping the `ops.<id>` level of the edge keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tamnas.supernets.darts.layout import (
    CellSpec,
    Layout,
    NodeInputs,
    Wiring,
    make_preprocess,
    make_stem,
)
from tamnas.supernets.darts.ops import PRIMITIVES, build_op


class DiscreteCell(nn.Module):
    """A cell with only its chosen ops; the output concatenates the intermediate nodes."""

    def __init__(self, spec: CellSpec, layout: Layout, inputs: Sequence[NodeInputs]):
        super().__init__()
        self.pre0, self.pre1 = make_preprocess(spec)
        self.inputs = tuple(tuple(node) for node in inputs)
        self.edges = nn.ModuleDict({
            str(e): build_op(PRIMITIVES[op], spec.c, spec.stride(src))
            for node in self.inputs for e, src, op in node})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.inputs:
            out = None
            for e, src, _ in node:
                y = self.edges[str(e)](states[src])
                out = y if out is None else out + y
            states.append(out)
        return torch.cat(states[2:], dim=1)


class DartsNetwork(nn.Module):
    """The standalone network of one genotype: stem, discrete cells, global pool, linear."""

    def __init__(self, layout: Layout, wiring: Wiring):
        super().__init__()
        self.first_layer, self.stem_bn = make_stem(layout)
        self.cells = nn.ModuleList(DiscreteCell(spec, layout, wiring[spec.ctype])
                                   for spec in layout.cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(layout.c_out, layout.num_classes)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem_bn(h)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.pool(s1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


__all__ = ["DartsNetwork", "DiscreteCell"]
