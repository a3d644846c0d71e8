"""The DARTS weight-sharing supernet: every edge holds all candidate ops.

`forward(x, arch)` runs one discrete path (the chosen op on the two chosen
edges of every node); `forward_relaxed(x, probs)` runs the DARTS mixture,
every edge computing sum_o p_o op(x). The architecture weights live in the
search strategy, not here: the supernet only takes probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tamnas.supernets.base import Arch, Supernet
from tamnas.supernets.darts.layout import CellSpec, Layout, Wiring, make_preprocess, make_stem
from tamnas.supernets.darts.ops import NONE, PRIMITIVES, build_op

_WIRING_CACHE = 4096


class MixedEdge(nn.Module):
    """All candidate ops of one edge, indexed by op id (op 0, `none`, holds no weights).

    In the mixture each pooling op is followed by a BatchNorm without affine
    parameters, as in the DARTS search model: the parametric ops end in
    BatchNorm and the pools would otherwise enter the sum on another scale.
    A discrete path (and the standalone net) runs the bare pool.
    """

    def __init__(self, c: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList(build_op(name, c, stride) for name in PRIMITIVES)
        self.pool_bn = nn.ModuleDict({str(o): nn.BatchNorm2d(c, affine=False)
                                      for o, name in enumerate(PRIMITIVES) if "pool" in name})

    def mixed(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """sum_o p_o op_o(x); the zero op adds exactly nothing, value or gradient, so it is skipped."""
        out = None
        for o in range(NONE + 1, len(self.ops)):
            y = self.ops[o](x)
            # nn.ModuleDict has no .get, so SIM401's rewrite would raise AttributeError.
            norm = self.pool_bn[str(o)] if str(o) in self.pool_bn else None  # noqa: SIM401
            y = p[o] * (norm(y) if norm is not None else y)
            out = y if out is None else out + y
        return out


class SearchCell(nn.Module):
    """One cell of the supernet: two preprocessed inputs, a MixedEdge per edge."""

    def __init__(self, spec: CellSpec, layout: Layout):
        super().__init__()
        self.pre0, self.pre1 = make_preprocess(spec)
        self.sources = [src for src, _ in layout.edges]
        self.edges = nn.ModuleList(MixedEdge(spec.c, spec.stride(src)) for src in self.sources)
        self.node_edges = [[e for e, (_, node) in enumerate(layout.edges) if node == n]
                           for n in range(layout.nodes)]

    def forward_discrete(self, s0: torch.Tensor, s1: torch.Tensor,
                         inputs: Sequence[Sequence[tuple[int, int, int]]]) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in inputs:
            out = None
            for e, src, op in node:
                y = self.edges[e].ops[op](states[src])
                out = y if out is None else out + y
            states.append(out)
        return torch.cat(states[2:], dim=1)

    def forward_relaxed(self, s0: torch.Tensor, s1: torch.Tensor,
                        probs: Sequence[torch.Tensor]) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for edges in self.node_edges:
            out = None
            for e in edges:
                y = self.edges[e].mixed(states[self.sources[e]], probs[e])
                out = y if out is None else out + y
            states.append(out)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    """Stem, search cells, global pool and linear head; cells of one type share the genes."""

    def __init__(self, layout: Layout):
        super().__init__()
        self.layout = layout
        self.n_edges = len(layout.edges)
        self.cell_types = [spec.ctype for spec in layout.cells]
        self.first_layer, self.stem_bn = make_stem(layout)
        self.cells = nn.ModuleList(SearchCell(spec, layout) for spec in layout.cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(layout.c_out, layout.num_classes)
        self._wiring: dict[Arch, Wiring] = {}

    def wiring(self, arch: Arch) -> Wiring:
        """The validated wiring of an arch, cached (the evaluator runs one arch many times)."""
        arch = tuple(int(a) for a in arch)
        hit = self._wiring.get(arch)
        if hit is None:
            if len(self._wiring) >= _WIRING_CACHE:
                self._wiring.clear()
            hit = self._wiring[arch] = self.layout.wiring(arch)
        return hit

    def _head(self, s: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(s), 1))

    def forward_from_first(self, h: torch.Tensor, arch: Arch) -> torch.Tensor:
        wiring = self.wiring(arch)
        s0 = s1 = self.stem_bn(h)
        for ctype, cell in zip(self.cell_types, self.cells):
            s0, s1 = s1, cell.forward_discrete(s0, s1, wiring[ctype])
        return self._head(s1)

    def forward_relaxed(self, x: torch.Tensor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The DARTS mixture: probs[g] weighs the ops of gene g (one gene per edge and cell type)."""
        n_genes = len(self.layout.genes)
        if len(probs) != n_genes:
            raise ValueError(f"darts: forward_relaxed got {len(probs)} probability vectors, "
                             f"expected one per gene ({n_genes})")
        s0 = s1 = self.stem_bn(self.first_layer(x))
        for ctype, cell in zip(self.cell_types, self.cells):
            start = ctype * self.n_edges
            s0, s1 = s1, cell.forward_relaxed(s0, s1, probs[start:start + self.n_edges])
        return self._head(s1)

    def extract(self, arch: Arch) -> dict[str, torch.Tensor]:
        """The state dict of `space.build_standalone(arch)`: the path's tensors, renamed."""
        wiring = self.wiring(arch)
        chosen = {}
        for i, ctype in enumerate(self.cell_types):
            for node in wiring[ctype]:
                for e, _, op in node:
                    chosen[(i, e)] = op
        out = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            if parts[0] == "cells" and parts[2] == "edges":
                if parts[4] == "pool_bn":
                    continue                      # the mixture's own normalisation
                i, e, op = int(parts[1]), int(parts[3]), int(parts[5])
                if chosen.get((i, e)) != op:
                    continue
                key = ".".join(parts[:4] + parts[6:])
            out[key] = value
        return out


__all__ = ["DartsSupernet", "MixedEdge", "SearchCell"]
