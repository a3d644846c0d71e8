"""What a latency table times for each space: units (a module at an input shape) and their sums.

ShuffleNet: each choice layer's decision is (block, ratio); option (b, r)
is one unit, the block `layout.make_block` builds at that width, timed at
the layer's input shape. DARTS: each gene is one edge of one cell type; its
option `op` is the op at that edge in every cell of that type (same channels
and resolution within a cell, which differ between cells), so the option's
cell lists one unit per such cell and the table sums them; `none` adds
nothing (the standalone net builds no module for an absent edge). Fixed
units: the stem (first layer, BN, ReLU), the head, and for DARTS each cell's
two input adapters. The modules are the ones `build_standalone` assembles.
Work outside units (ShuffleNet: nothing; DARTS: node sums and the cell's
concatenation) is what the table's `correction` absorbs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from tamnas.supernets.base import SearchSpace


@dataclass(frozen=True)
class Unit:
    """One timed module: a fresh-weights factory and its input shape (without the batch)."""

    make: Callable[[], nn.Module]
    shape: tuple[int, int, int]
    decision: str                     # which decision (or "fixed") it belongs to, for progress


@dataclass
class Plan:
    units: dict[str, Unit]
    fixed: list[str]
    decisions: list[list]             # shaped like cost_table("params"): cells of signature lists
    names: list[str]                  # one label per decision


class _Stem(nn.Module):
    def __init__(self, first: nn.Module, bn: nn.Module, relu: bool):
        super().__init__()
        self.first, self.bn, self.relu = first, bn, relu

    def forward(self, x):
        h = self.bn(self.first(x))
        return F.relu(h) if self.relu else h


class _Head(nn.Module):
    def __init__(self, pool: nn.Module, classifier: nn.Module):
        super().__init__()
        self.pool, self.classifier = pool, classifier

    def forward(self, x):
        return self.classifier(x.mean((2, 3)) if self.pool is None else self.pool(x).flatten(1))


def shufflenet_plan(space: SearchSpace) -> Plan:
    from tamnas.supernets.shufflenet.blocks import FirstLayer, Head

    lay = space.layout
    units: dict[str, Unit] = {}
    res = lay.resolution
    units["stem"] = Unit(lambda: _Stem(FirstLayer(lay.in_channels, lay.stem_channels, lay.mean,
                                                  lay.std), nn.BatchNorm2d(lay.stem_channels), True),
                         (lay.in_channels, res, res), "fixed")
    last = lay.layers[-1]
    units["head"] = Unit(lambda: Head(last.out_channels, lay.head_channels,
                                      lay.se_hidden(lay.head_channels), lay.fc_channels,
                                      lay.num_classes),
                         (last.out_channels, last.out_res, last.out_res), "fixed")
    decisions, names = [], []
    for spec in lay.layers:
        grid = []
        for b, bid in enumerate(lay.choices[spec.index]):
            row = []
            for r in range(len(lay.ratios)):
                mid = int(lay.mids[spec.index][b, r])
                sig = (f"block{bid}:c{spec.in_channels}-{spec.out_channels}:s{spec.stride}"
                       f":r{spec.in_res}:m{mid}")
                if sig not in units:
                    units[sig] = Unit(lambda i=spec.index, bid=bid, mid=mid: lay.make_block(i, bid, mid),
                                      (spec.in_channels, spec.in_res, spec.in_res),
                                      f"layer{spec.index}")
                row.append([sig])
            grid.append(row)
        decisions.append(grid)
        names.append(f"layer{spec.index} (blocks x ratios)")
    return Plan(units, ["stem", "head"], decisions, names)


def darts_plan(space: SearchSpace) -> Plan:
    from tamnas.supernets.darts.layout import make_preprocess, make_stem
    from tamnas.supernets.darts.ops import NONE, PRIMITIVES, build_op

    lay = space.layout
    units: dict[str, Unit] = {}
    res = lay.resolution
    units["stem"] = Unit(lambda: _Stem(*make_stem(lay), relu=False), (lay.in_channels, res, res),
                         "fixed")
    fixed = ["stem"]
    for k, spec in enumerate(lay.cells):
        for j, (c_in, size) in enumerate(((spec.c_pp, spec.size_pp), (spec.c_p, spec.size))):
            sig = f"cell{k}.pre{j}:c{c_in}-{spec.c}:r{size}:{'fr' if j == 0 and spec.reduction_prev else 'rcb'}"
            units[sig] = Unit(lambda spec=spec, j=j: make_preprocess(spec)[j], (c_in, size, size),
                              "fixed")
            fixed.append(sig)
    last = lay.cells[-1]
    out_size = last.size_of(2)
    units["head"] = Unit(lambda: _Head(nn.AdaptiveAvgPool2d(1), nn.Linear(lay.c_out, lay.num_classes)),
                         (lay.c_out, out_size, out_size), "fixed")
    fixed.append("head")
    decisions, names = [], []
    for g, gene in enumerate(space.genes):
        ctype, e = divmod(g, lay.n_edges)
        src = lay.edges[e][0]
        cells = [spec for spec in lay.cells if spec.ctype == ctype]
        row = []
        for o, name in enumerate(PRIMITIVES):
            sigs = []
            if o != NONE:
                for spec in cells:
                    size, stride = spec.size_of(src), spec.stride(src)
                    sig = f"{name}:c{spec.c}:s{stride}:r{size}"
                    if sig not in units:
                        units[sig] = Unit(lambda name=name, c=spec.c, stride=stride:
                                          build_op(name, c, stride), (spec.c, size, size), gene.name)
                    sigs.append(sig)
            row.append(sigs)
        decisions.append(row)
        names.append(gene.name)
    return Plan(units, fixed, decisions, names)


PLANS = {"shufflenet": shufflenet_plan, "darts": darts_plan}


def make_plan(space: SearchSpace) -> Plan:
    """The units of `space` (module docstring); ValueError for a space without a plan."""
    if space.name not in PLANS:
        raise ValueError(f"latency tables know the spaces {', '.join(PLANS)}, not {space.name!r}")
    return PLANS[space.name](space)


def picks(plan: Plan, space: SearchSpace, arch) -> list[list[str]]:
    """Per decision, the signatures `arch` chooses (what the table adds up for it)."""
    arch = space.validate(arch)
    if space.name == "shufflenet":
        return [plan.decisions[i][arch[2 * i]][arch[2 * i + 1]] for i in range(len(plan.decisions))]
    return [plan.decisions[g][v] for g, v in enumerate(arch)]


__all__ = ["PLANS", "Plan", "Unit", "darts_plan", "make_plan", "picks", "shufflenet_plan"]
