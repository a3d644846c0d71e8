"""The shape of a DARTS network: cell geometry, the edge/gene table and the wiring of a genotype.

The space (costs, sampling, derive), the supernet and the standalone network
all read one `Layout`, so none of them calls back into another: the layout
fixes the stem, each cell's channels, resolutions and reduction flags, the
head, which gene sits on which edge, and the rule that makes a genotype legal
(exactly two non-none inputs per intermediate node). The stem and the cell
input adapters, which have no choices, are built here for both networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from tamnas.supernets.base import Arch, Gene, check_genes
from tamnas.supernets.darts.ops import (
    NONE,
    PRIMITIVES,
    FactorizedReduce,
    Normalize,
    ReLUConvBN,
    reduced,
)
from tamnas.supernets.fastconv import Conv2d

STEM_MULTIPLIER = 3  # DARTS: the stem has 3 x init_channels channels
INPUTS_PER_NODE = 2

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
    """Everything that fixes the network's shape except the genes' values.

    Genes come one per edge per cell type, in cell-type order, each edge's
    value the op id on it; `node_genes[t][n]` are the genes of the edges
    entering node n of cell type t.
    """

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
    genes: tuple[Gene, ...] = field(init=False, repr=False, compare=False)
    node_genes: tuple[tuple[tuple[int, ...], ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_edges = len(self.edges)
        genes = tuple(Gene(f"{t}.node{node + 2}.in{src}", "op", len(PRIMITIVES), ti * n_edges + e)
                      for ti, t in enumerate(self.cell_types)
                      for e, (src, node) in enumerate(self.edges))
        node_genes = tuple(tuple(tuple(ti * n_edges + e for e, (_, node) in enumerate(self.edges)
                                       if node == n) for n in range(self.nodes))
                           for ti in range(len(self.cell_types)))
        object.__setattr__(self, "genes", genes)
        object.__setattr__(self, "node_genes", node_genes)

    @property
    def n_edges(self) -> int:
        """Edges per cell (= genes per cell type)."""
        return len(self.edges)

    def validate(self, arch: Sequence[int]) -> Arch:
        """Gene ranges, then the DARTS rule: exactly two non-none inputs per intermediate node."""
        arch = check_genes("darts", self.genes, arch)
        for ti, t in enumerate(self.cell_types):
            for n, genes in enumerate(self.node_genes[ti]):
                present = [g for g in genes if arch[g] != NONE]
                if len(present) != INPUTS_PER_NODE:
                    names = ", ".join(self.genes[g].name for g in present) or "none"
                    raise ValueError(
                        f"darts: {t} cell node {n + 2} has {len(present)} incoming ops ({names}); "
                        f"a legal cell has exactly {INPUTS_PER_NODE} non-none inputs per node: "
                        f"set the others to 0 (none)")
        return arch

    def wiring(self, arch: Sequence[int]) -> Wiring:
        """Per cell type, per node: the (edge, source state, op id) of its two inputs."""
        arch = self.validate(arch)
        n = self.n_edges
        return tuple(tuple(tuple((g - ti * n, self.edges[g - ti * n][0], arch[g])
                                 for g in genes if arch[g] != NONE)
                           for genes in self.node_genes[ti])
                     for ti in range(len(self.cell_types)))


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
                          Conv2d(layout.in_channels, layout.c_stem, 3, padding=1, bias=False))
    return first, nn.BatchNorm2d(layout.c_stem)


def make_preprocess(spec: CellSpec) -> tuple[nn.Module, nn.Module]:
    """The two input adapters: channels to C, and input 0 to this cell's resolution."""
    pre0 = FactorizedReduce(spec.c_pp, spec.c) if spec.reduction_prev else ReLUConvBN(spec.c_pp,
                                                                                        spec.c)
    return pre0, ReLUConvBN(spec.c_p, spec.c)


__all__ = ["INPUTS_PER_NODE", "STEM_MULTIPLIER", "CellSpec", "Layout", "NodeInputs", "Wiring",
           "cell_edges", "make_layout", "make_preprocess", "make_stem"]
