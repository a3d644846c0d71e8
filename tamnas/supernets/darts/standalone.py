"""The macro layout of a DARTS network and the plain network of one genotype.

The layout (stem, cells with their channels, resolutions and reduction
flags, head) is shared by the supernet and the standalone network, and both
use the same module names, so a supernet path's weights load into the
standalone network by dropping the `ops.<id>` level of the edge keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tamnas.supernets.darts.ops import (
    PRIMITIVES,
    FactorizedReduce,
    Normalize,
    ReLUConvBN,
    build_op,
    reduced,
)

STEM_MULTIPLIER = 3  # DARTS: the stem has 3 x init_channels channels

# One intermediate node's inputs in a discrete cell: (edge index, source state, op id) pairs.
NodeInputs = tuple[tuple[int, int, int], ...]
Wiring = tuple[tuple[NodeInputs, ...], ...]   # per cell type, per intermediate node


@dataclass(frozen=True)
class CellSpec:
    """One cell of the macro layout."""

    ctype: int            # index into Layout.cell_types: which genes the cell reads
    reduction: bool       # stride 2 on the edges from the two cell inputs
    reduction_prev: bool  # input 0 is at twice the resolution: factorized-reduce it
    c_pp: int             # channels of input 0 (the output of cell k-2)
    c_p: int              # channels of input 1 (the output of cell k-1)
    c: int                # channels of every node of this cell
    size: int             # resolution of the cell's preprocessed inputs
    size_pp: int          # resolution of input 0 before preprocessing

    def stride(self, src: int) -> int:
        return 2 if self.reduction and src < 2 else 1

    def size_of(self, src: int) -> int:
        """Resolution of state `src` (0, 1: the inputs; 2+: intermediate nodes)."""
        return self.size if src < 2 else reduced(self.size, 2 if self.reduction else 1)


@dataclass(frozen=True)
class Layout:
    """Everything that fixes the network's shape except the genes."""

    cell_types: tuple[str, ...]
    cells: tuple[CellSpec, ...]
    nodes: int
    edges: tuple[tuple[int, int], ...]   # (source state, intermediate node) per edge
    in_channels: int
    num_classes: int
    c_stem: int
    c_out: int                           # channels entering the classifier
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def cell_edges(nodes: int) -> tuple[tuple[int, int], ...]:
    """Edges (source, node) in DARTS order: node n reads states 0..n+1."""
    return tuple((src, node) for node in range(nodes) for src in range(node + 2))


def make_layout(placement: str, cells: int, init_channels: int, nodes: int, in_channels: int,
                num_classes: int, resolution: int, mean: Sequence[float],
                std: Sequence[float]) -> Layout:
    """Reductions at cells//3 and 2*cells//3; `standard`: filters 1-2-4, two cell types;
    `dsara`: filters 1-2-2, accurate cells before the second reduction, robust ones after."""
    reductions = (cells // 3, 2 * cells // 3)
    types = ("normal", "reduce") if placement == "standard" else ("accurate", "robust", "reduce")
    c_stem = STEM_MULTIPLIER * init_channels
    c_pp, c_p, c = c_stem, c_stem, init_channels
    size_pp = size_p = resolution
    reduction_prev, specs = False, []
    for i in range(cells):
        reduction = i in reductions
        if reduction:
            if placement == "standard" or i == reductions[0]:
                c *= 2
            ctype = types.index("reduce")
        elif placement == "dsara" and i > reductions[1]:
            ctype = types.index("robust")
        else:
            ctype = 0
        specs.append(CellSpec(ctype, reduction, reduction_prev, c_pp, c_p, c, size_p, size_pp))
        size_pp, size_p = size_p, reduced(size_p, 2 if reduction else 1)
        c_pp, c_p, reduction_prev = c_p, nodes * c, reduction
    return Layout(types, tuple(specs), nodes, cell_edges(nodes), in_channels, num_classes, c_stem,
                  c_p, resolution, tuple(float(m) for m in mean), tuple(float(s) for s in std))


def make_stem(layout: Layout) -> tuple[nn.Sequential, nn.BatchNorm2d]:
    """(first_layer, stem BN): YOPO's layer one is normalisation + the bare 3x3 convolution."""
    first = nn.Sequential(Normalize(layout.mean, layout.std),
                          nn.Conv2d(layout.in_channels, layout.c_stem, 3, padding=1, bias=False))
    return first, nn.BatchNorm2d(layout.c_stem)


def make_preprocess(spec: CellSpec) -> tuple[nn.Module, nn.Module]:
    """The two input adapters: channels to C, and input 0 to this cell's resolution."""
    pre0 = FactorizedReduce(spec.c_pp, spec.c) if spec.reduction_prev else ReLUConvBN(spec.c_pp,
                                                                                        spec.c)
    return pre0, ReLUConvBN(spec.c_p, spec.c)


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


__all__ = [
    "STEM_MULTIPLIER",
    "CellSpec",
    "DartsNetwork",
    "DiscreteCell",
    "Layout",
    "NodeInputs",
    "Wiring",
    "cell_edges",
    "make_layout",
    "make_preprocess",
    "make_stem",
]
