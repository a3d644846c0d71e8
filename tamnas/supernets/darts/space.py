"""The DARTS cell search space (E2RNAS, DSARA, SmoothDARTS: papers 000-003).

Encoding: one gene per edge per cell type, its value the op id on that edge
(ops.PRIMITIVES; 0 = `none` = the edge is absent). Cell types come in gene
order: `standard` placement has (normal, reduce), `dsara` has (accurate,
robust, reduce); within a type the edges run node by node, node n (state
n + 2) reading states 0..n+1. An arch is legal when every intermediate node
has exactly two non-none incoming edges: the discrete cell DARTS derives.

Costs are additive by construction: every cell's preprocessing, the stem
and the head are a constant, and each chosen op adds its own entry of a
(gene x op) table summed over the cells of that type. So params/flops are
lookups and `expected_cost` is their exact relaxation (E2RNAS Eq. 5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tamnas.cost_kinds import COUNTED_COSTS
from tamnas.supernets.base import Arch, Gene, SearchSpace, check_attached, missing_cost_message
from tamnas.supernets.darts.layout import INPUTS_PER_NODE, Layout, Wiring, make_layout
from tamnas.supernets.darts.ops import (
    NONE,
    PRIMITIVES,
    factorized_reduce_flops,
    factorized_reduce_params,
    op_flops,
    op_params,
    relu_conv_bn_flops,
    relu_conv_bn_params,
)
from tamnas.supernets.darts.standalone import DartsNetwork
from tamnas.supernets.darts.supernet import DartsSupernet
from tamnas.supernets.registry import register_space

PLACEMENTS = ("standard", "dsara")
_CONFIG_KEYS = ("name", "cells", "init_channels", "nodes", "placement", "num_classes",
                "in_channels", "resolution", "mean", "std")


def _positive_int(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"darts: {key} must be an integer >= {low}, got {value!r}")
    return int(value)


@register_space("darts")
class DartsSpace(SearchSpace):
    """Normal/reduction (or accurate/robust/reduction) cells, 8 ops, the two-inputs rule."""

    def __init__(self, space_cfg, num_classes: int = 10, in_channels: int = 3,
                 resolution: int = 32, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        if space_cfg.placement not in PLACEMENTS:
            raise ValueError(f"space.placement: {space_cfg.placement!r} is unknown; choose one of "
                             f"{', '.join(PLACEMENTS)}")
        self.cells = _positive_int("space.cells", space_cfg.cells, 3)
        self.init_channels = _positive_int("space.init_channels", space_cfg.init_channels)
        self.nodes = _positive_int("space.nodes", space_cfg.nodes)
        self.placement = str(space_cfg.placement)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.in_channels = _positive_int("in_channels", in_channels)
        self.resolution = _positive_int("data.resolution", resolution)
        mean = [0.0] * self.in_channels if mean is None else [float(m) for m in mean]
        std = [1.0] * self.in_channels if std is None else [float(s) for s in std]
        if len(mean) != self.in_channels or len(std) != self.in_channels or min(std) <= 0:
            raise ValueError(f"darts: mean and std need {self.in_channels} values (std > 0), got "
                             f"{mean} and {std}")
        self.mean, self.std = mean, std
        self.layout: Layout = make_layout(self.placement, self.cells, self.init_channels,
                                          self.nodes, self.in_channels, self.num_classes,
                                          self.resolution, mean, std)
        self.cell_types = self.layout.cell_types
        self.n_edges = self.layout.n_edges
        self.genes = list(self.layout.genes)
        # node_genes[t][n]: the gene indices of the edges entering node n of cell type t.
        self.node_genes = [[list(genes) for genes in nodes] for nodes in self.layout.node_genes]
        self._tables = {kind: self._cost_table(kind) for kind in COUNTED_COSTS}
        self._torch_tables: dict[str, torch.Tensor] = {}

    # --- encoding -------------------------------------------------------------------------------
    def validate(self, arch: Sequence[int]) -> Arch:
        """Gene ranges, then the DARTS rule: exactly two non-none inputs per intermediate node."""
        return self.layout.validate(arch)

    def wiring(self, arch: Sequence[int]) -> Wiring:
        """Per cell type, per node: the (edge, source state, op id) of its two inputs."""
        return self.layout.wiring(arch)

    def op_choices(self, gene: Gene, allowed: Mapping[str, Sequence[int]] | None) -> list[int]:
        """The ops a present edge may carry: the allowed values minus `none`."""
        values = [v for v in self.allowed_values(gene, allowed) if v != NONE]
        if not values:
            raise ValueError(f"darts: no op left for gene {gene.name} once none is excluded; "
                             f"allow at least one of {', '.join(PRIMITIVES[1:])}")
        return values

    def _draw(self, rng: np.random.Generator, options: list[list[int]]) -> Arch:
        arch = [NONE] * len(self.genes)
        for nodes in self.node_genes:
            for genes in nodes:
                for j in rng.choice(len(genes), INPUTS_PER_NODE, replace=False):
                    g = genes[int(j)]
                    arch[g] = int(options[g][rng.integers(len(options[g]))])
        return tuple(arch)

    def sample(self, rng: np.random.Generator, params_range: Sequence[int] | None = None,
               allowed: Mapping[str, Sequence[int]] | None = None, max_tries: int = 100_000) -> Arch:
        """Uniform over legal archs (two inputs per node, then their ops), rejection-sampled
        into `params_range`; `allowed["op"]` limits the ops of present edges."""
        options = [self.op_choices(g, allowed) for g in self.genes]
        unbounded = params_range is None or params_range[1] <= 0
        if not unbounded:
            lo, hi = self.params_bounds(allowed)
            if params_range[0] > hi or params_range[1] < lo:
                raise ValueError(f"{self.name}: params range {list(params_range)} misses this "
                                 f"space, which spans [{lo}, {hi}] params; widen the range or "
                                 "set it to [0, 0] (no limit)")
        for _ in range(max_tries):
            arch = self._draw(rng, options)
            if unbounded or params_range[0] <= self.params(arch) <= params_range[1]:
                return arch
        lo, hi = self.params_bounds(allowed)
        raise ValueError(f"{self.name}: no arch with params in {list(params_range)} found after "
                         f"{max_tries} draws; this space spans [{lo}, {hi}] params")

    def repair(self, arch: Sequence[int], rng: np.random.Generator) -> Arch:
        """The nearest legal arch: a node with too many inputs keeps two of them at random,
        one with too few gets random edges with random (non-none) ops."""
        arch = [int(v) for v in np.clip(np.rint(np.asarray(arch, dtype=float)), 0,
                                        len(PRIMITIVES) - 1)]
        if len(arch) != len(self.genes):
            raise ValueError(f"{self.name}: arch has {len(arch)} genes, expected {len(self.genes)}")
        for nodes in self.node_genes:
            for genes in nodes:
                present = [g for g in genes if arch[g] != NONE]
                if len(present) > INPUTS_PER_NODE:
                    keep = {int(k) for k in rng.choice(present, INPUTS_PER_NODE, replace=False)}
                    for g in present:
                        if g not in keep:
                            arch[g] = NONE
                elif len(present) < INPUTS_PER_NODE:
                    absent = [g for g in genes if arch[g] == NONE]
                    for g in rng.choice(absent, INPUTS_PER_NODE - len(present), replace=False):
                        arch[int(g)] = int(rng.integers(1, len(PRIMITIVES)))
        return self.validate(arch)

    def derive(self, alphas: Sequence[torch.Tensor], from_probs: bool = False) -> Arch:
        """DARTS's discrete cell from relaxed weights: per node the two incoming edges whose
        strongest non-none op weighs most, each with that op.

        `alphas` are per-gene logits (softmax taken per edge, as DARTS does;
        -inf entries are masked ops); pass `from_probs=True` for probabilities.
        """
        if len(alphas) != len(self.genes):
            raise ValueError(f"darts: derive got {len(alphas)} weight vectors, expected "
                             f"{len(self.genes)}")
        strength, best = [], []
        for a in alphas:
            w = torch.as_tensor(a).detach().to("cpu", torch.float64).reshape(-1)
            if w.numel() != len(PRIMITIVES):
                raise ValueError(f"darts: derive needs {len(PRIMITIVES)} weights per gene, got "
                                 f"{w.numel()}")
            if not from_probs:
                w = torch.softmax(w, dim=0)
            w = torch.nan_to_num(w[NONE + 1:], nan=-np.inf)
            strength.append(float(w.max()))
            best.append(NONE + 1 + int(torch.argmax(w)))
        arch = [NONE] * len(self.genes)
        for nodes in self.node_genes:
            for genes in nodes:
                for g in sorted(genes, key=lambda g: (-strength[g], g))[:INPUTS_PER_NODE]:
                    arch[g] = best[g]
        return self.validate(arch)

    # --- costs ----------------------------------------------------------------------------------
    def _cost_table(self, kind: str) -> tuple[int, np.ndarray]:
        """(constant, table[gene, op]): cost = constant + sum_g table[g, arch[g]], exactly."""
        lay = self.layout
        table = np.zeros((len(self.genes), len(PRIMITIVES)), dtype=np.int64)
        r = lay.resolution
        if kind == "params":
            const = lay.in_channels * lay.c_stem * 9 + 2 * lay.c_stem
            const += lay.c_out * lay.num_classes + lay.num_classes
        else:
            const = lay.in_channels * lay.c_stem * 9 * r * r + 2 * lay.c_stem * r * r
            last = lay.cells[-1]
            size_out = last.size_of(2)
            const += lay.c_out * size_out * size_out + lay.c_out * lay.num_classes
        for spec in lay.cells:
            if kind == "params":
                const += (factorized_reduce_params(spec.c_pp, spec.c) if spec.reduction_prev
                          else relu_conv_bn_params(spec.c_pp, spec.c))
                const += relu_conv_bn_params(spec.c_p, spec.c)
            else:
                const += (factorized_reduce_flops(spec.c_pp, spec.c, spec.size_pp)
                          if spec.reduction_prev else relu_conv_bn_flops(spec.c_pp, spec.c, spec.size))
                const += relu_conv_bn_flops(spec.c_p, spec.c, spec.size)
            base = spec.ctype * self.n_edges
            for e, (src, _) in enumerate(lay.edges):
                stride = spec.stride(src)
                for o, name in enumerate(PRIMITIVES):
                    table[base + e, o] += (op_params(name, spec.c, stride) if kind == "params"
                                           else op_flops(name, spec.c, stride, spec.size_of(src)))
        return int(const), table

    def _check_kind(self, kind: str) -> None:
        if kind not in self._tables:
            raise ValueError(missing_cost_message(self.name, kind))

    def attach_costs(self, kind: str, constant: float, tables: Sequence[np.ndarray]) -> None:
        """Add a measured cost kind (latency): per gene one entry per op."""
        rows = check_attached(self.name, kind, tables, [row.shape for row in self._tables["params"][1]])
        self._tables[kind] = (float(constant), np.stack(rows))
        self._torch_tables.pop(kind, None)

    def has_cost(self, kind: str) -> bool:
        return kind in self._tables

    def cost(self, kind: str, arch: Sequence[int]) -> int | float:
        """Any cost kind of `arch`: constant + the sum of its picks (int for counted kinds)."""
        self._check_kind(kind)
        return self._cost(kind, arch)

    def _cost(self, kind: str, arch: Arch) -> int | float:
        arch = self.validate(arch)
        const, table = self._tables[kind]
        if table.dtype.kind == "f":
            return math.fsum([const, *(float(table[g, v]) for g, v in enumerate(arch))])
        return const + int(table[np.arange(len(arch)), arch].sum())

    def params(self, arch: Arch) -> int:
        """Exact parameter count of build_standalone(arch)."""
        return self._cost("params", arch)

    def flops(self, arch: Arch) -> int:
        """Multiply-adds for one input by the E2RNAS rules (see ops.py)."""
        return self._cost("flops", arch)

    def cost_constant(self, kind: str) -> int:
        self._check_kind(kind)
        return self._tables[kind][0]

    def cost_table(self, kind: str) -> list[torch.Tensor]:
        """Per-gene op costs (float64): cost(arch) = cost_constant(kind) + sum_g table[g][arch[g]]."""
        self._check_kind(kind)
        return [torch.as_tensor(row, dtype=torch.float64) for row in self._tables[kind][1]]

    def expected_cost(self, kind: str, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """const + sum_g probs[g] . table[g]: differentiable, equal to the cost for one-hot probs."""
        self._check_kind(kind)
        if len(probs) != len(self.genes):
            raise ValueError(f"darts: expected_cost got {len(probs)} probability vectors, "
                             f"expected {len(self.genes)}")
        if kind not in self._torch_tables:
            self._torch_tables[kind] = torch.as_tensor(self._tables[kind][1], dtype=torch.float64)
        p = torch.stack([torch.as_tensor(q).reshape(-1) for q in probs])
        table = self._torch_tables[kind].to(device=p.device, dtype=p.dtype if p.is_floating_point()
                                            else torch.float64)
        return (p * table).sum() + self._tables[kind][0]

    def _bounds(self, kind: str, allowed: Mapping[str, Sequence[int]] | None) -> tuple[int, int]:
        """Exact extremes: per node the two cheapest (dearest) edges with their cheapest
        (dearest) allowed op; nodes and cell types are independent."""
        self._check_kind(kind)
        const, table = self._tables[kind]
        num = float if table.dtype.kind == "f" else int
        lo = hi = const
        for nodes in self.node_genes:
            for genes in nodes:
                mins = sorted(num(table[g, self.op_choices(self.genes[g], allowed)].min())
                              for g in genes)
                maxs = sorted(num(table[g, self.op_choices(self.genes[g], allowed)].max())
                              for g in genes)
                lo += sum(mins[:INPUTS_PER_NODE])
                hi += sum(maxs[-INPUTS_PER_NODE:])
        return lo, hi

    def params_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None) -> tuple[int, int]:
        return self._bounds("params", allowed)

    def cost_bounds(self, kind: str, allowed: Mapping[str, Sequence[int]] | None = None
                    ) -> tuple[float, float]:
        """Exact smallest and largest cost of any kind."""
        return self._bounds(kind, allowed)

    def flops_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None) -> tuple[int, int]:
        return self._bounds("flops", allowed)

    # --- labels: the op names, so tables, the report and the explorer read as the papers do
    # (gene values stay the codes of arch strings; `space-info` prints the code -> op legend) ---
    def gene_label(self, index: int, value: int) -> str:
        return PRIMITIVES[int(value)]

    # --- builders -------------------------------------------------------------------------------
    def build_supernet(self) -> DartsSupernet:
        return DartsSupernet(self.layout)

    def build_standalone(self, arch: Arch) -> DartsNetwork:
        return DartsNetwork(self.layout, self.wiring(arch))

    def describe(self, arch: Arch) -> dict:
        """DARTS-style genotype: per cell type, per node, its two (op name, input state) pairs."""
        wiring = self.wiring(arch)
        cells = {t: [[[PRIMITIVES[op], src] for _, src, op in node] for node in wiring[ti]]
                 for ti, t in enumerate(self.cell_types)}
        return {"placement": self.placement, "cells": cells,
                "layout": [self.cell_types[s.ctype] for s in self.layout.cells],
                "genes": [int(v) for v in self.validate(arch)]}

    def parse(self, description: Mapping) -> Arch:
        """The arch of a `describe` dict (from its genotype; its genes, if given, must agree)."""
        if "cells" not in description:
            if "genes" not in description:
                raise ValueError("darts: a description needs 'cells' (the genotype) or 'genes'")
            return self.validate(description["genes"])
        cells = description["cells"]
        if not isinstance(cells, Mapping) or set(cells) != set(self.cell_types):
            got = sorted(cells) if isinstance(cells, Mapping) else type(cells).__name__
            raise ValueError(f"darts: description 'cells' must name the cell types "
                             f"{', '.join(self.cell_types)}; got {got}")
        arch = [NONE] * len(self.genes)
        for ti, t in enumerate(self.cell_types):
            nodes = cells[t]
            if len(nodes) != self.nodes:
                raise ValueError(f"darts: {t} cell lists {len(nodes)} nodes, expected {self.nodes}")
            for n, pairs in enumerate(nodes):
                for pair in pairs:
                    if len(pair) != 2:
                        raise ValueError(f"darts: {t} cell node {n + 2}: expected [op name, input] "
                                         f"pairs, got {pair!r}")
                    name, src = pair
                    if name not in PRIMITIVES[1:]:
                        raise ValueError(f"darts: {t} cell node {n + 2}: op {name!r} is unknown; "
                                         f"choose one of {', '.join(PRIMITIVES[1:])}")
                    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < n + 2:
                        raise ValueError(f"darts: {t} cell node {n + 2}: input {src!r} is illegal; "
                                         f"allowed 0..{n + 1}")
                    g = self.node_genes[ti][n][src]
                    if arch[g] != NONE:
                        raise ValueError(f"darts: {t} cell node {n + 2} lists input {src} twice")
                    arch[g] = PRIMITIVES.index(name)
        arch = self.validate(arch)
        if "genes" in description and [int(v) for v in description["genes"]] != list(arch):
            raise ValueError("darts: the description's genes disagree with its cells")
        return arch

    def config(self) -> dict:
        return {"name": "darts", "cells": self.cells, "init_channels": self.init_channels,
                "nodes": self.nodes, "placement": self.placement,
                "num_classes": self.num_classes, "in_channels": self.in_channels,
                "resolution": self.resolution, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_config(cls, config: Mapping) -> DartsSpace:
        """Rebuild the space `config()` describes (exported arch JSON)."""
        from tamnas.config import SpaceConfig

        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        missing = [k for k in _CONFIG_KEYS if k not in config and k != "name"]
        if unknown or missing:
            raise ValueError(f"darts: space config has unknown keys {unknown} / misses {missing}; "
                             f"expected {', '.join(_CONFIG_KEYS)}")
        if config.get("name", "darts") != "darts":
            raise ValueError(f"darts: space config names space {config['name']!r}, not 'darts'")
        space_cfg = SpaceConfig(name="darts", cells=config["cells"],
                                init_channels=config["init_channels"], nodes=config["nodes"],
                                placement=config["placement"])
        return cls(space_cfg, num_classes=config["num_classes"], in_channels=config["in_channels"],
                   resolution=config["resolution"], mean=config["mean"], std=config["std"])


__all__ = ["PLACEMENTS", "DartsSpace"]
