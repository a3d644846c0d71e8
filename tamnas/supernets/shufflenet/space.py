"""The TAM-NAS ShuffleNetV2 search space (paper 004): genes, exact cost tables, describe/parse.

Genes: per choice layer i, `layer{i}.block` then `layer{i}.ratio`; values are
indices into the offered block ids and ratios of the space config (both kept
sorted ascending, so index order is id order and width order). Stride-2 layers
offer only the ids <= 17, which come first, so their block gene simply has
fewer choices. Parameters and multiply-adds are closed-form per (layer, block,
ratio) and tabulated once; params(arch) and flops(arch) are sums of lookups.

Two layout options cover what Table I and Fig. 4 leave open (README "Model
size and the head" has the evidence): `head` "compact" is 176 -> SE -> 1024,
"table1" reads Table I's "SE 920" row as 176 -> SE -> 920 -> 1024 (about
0.92M more parameters); `ratio_base` "half" scales a shuffle block's branch
width out // 2, "full" its whole output width. Only table1 + full puts most
uniform samples inside section III-C's windows (64% / 93% for phase 1 / 2,
against 0% for compact + half), so the paper presets use it; the defaults
stay compact + half.

The network's shape (block table, widths, the gene rules) is `layout.py`,
which the supernet and the standalone net read too; the closed-form costs
are `costs.py` (FLOPs there are multiply-adds for one input image).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tamnas.config import SpaceConfig
from tamnas.supernets.base import Arch, SearchSpace, check_attached, missing_cost_message
from tamnas.supernets.registry import register_space
from tamnas.supernets.shufflenet.costs import cost_tables, nl_macs, nl_params, se_params
from tamnas.supernets.shufflenet.layout import (
    BLOCKS,
    HEADS,
    RATIO_BASES,
    BlockSpec,
    LayerSpec,
    ShuffleNetLayout,
    id_ranges,
)
from tamnas.supernets.shufflenet.standalone import build_standalone
from tamnas.supernets.shufflenet.supernet import ShuffleNetSupernet

RATIO_TOL = 1e-6


@register_space("shufflenet")
class ShuffleNetSpace(SearchSpace):
    """ShuffleNetV2 supernet space of paper 004 (Table I layout, 22 blocks x channel ratios)."""

    def __init__(self, space_cfg: SpaceConfig, num_classes: int, in_channels: int, resolution: int,
                 mean: Sequence[float], std: Sequence[float]):
        self.layout = ShuffleNetLayout(space_cfg, num_classes, in_channels, resolution, mean, std,
                                       name=self.name)
        lay = self.layout
        self.cfg = lay.cfg
        self.blocks, self.ratios, self.stride2_blocks = lay.blocks, lay.ratios, lay.stride2_blocks
        self.num_classes, self.in_channels, self.resolution = lay.num_classes, lay.in_channels, lay.resolution
        self.mean, self.std = lay.mean, lay.std
        self.stem_channels, self.stage_channels = lay.stem_channels, lay.stage_channels
        self.head_channels, self.fc_channels = lay.head_channels, lay.fc_channels
        self.layers, self.choices, self.genes, self.mids = lay.layers, lay.choices, lay.genes, lay.mids
        self._const, self._tables = cost_tables(lay)
        self._torch_tables: dict[str, list[torch.Tensor]] = {
            k: [torch.from_numpy(t.astype(np.float64)) for t in v] for k, v in self._tables.items()}

    # -- cost tables ----------------------------------------------------------------------------------
    def cost_constant(self, kind: str) -> int:
        """The cost outside the choice layers (stem, head)."""
        value = self._const[self._kind(kind)]
        return value if isinstance(value, float) else int(value)

    def cost_table(self, kind: str) -> list[torch.Tensor]:
        """Per choice layer a (blocks x ratios) cost table: cost(arch) = constant + sum of picks."""
        return [t.clone() for t in self._torch_tables[self._kind(kind)]]

    def _kind(self, kind: str) -> str:
        if kind not in self._tables:
            raise ValueError(missing_cost_message(self.name, kind))
        return kind

    def attach_costs(self, kind: str, constant: float, tables: Sequence[np.ndarray]) -> None:
        """Add a measured cost kind (latency): per choice layer a (blocks x ratios) table."""
        tables = check_attached(self.name, kind, tables, [t.shape for t in self._tables["params"]])
        self._const[kind], self._tables[kind] = float(constant), tables
        self._torch_tables[kind] = [torch.from_numpy(t) for t in tables]

    def decision_index(self, arch: Arch) -> list[tuple[int, ...]]:
        """Per choice layer, (block, ratio): the cell of that layer's cost table."""
        arch = self.validate(arch)
        return [(arch[2 * i], arch[2 * i + 1]) for i in range(len(self.layers))]

    def has_cost(self, kind: str) -> bool:
        return kind in self._tables

    def cost(self, kind: str, arch: Sequence[int]) -> float:
        """Any cost kind of `arch`: constant + the sum of its picks (int for counted kinds)."""
        return self._cost(self._kind(kind), arch)

    def _cost(self, kind: str, arch: Sequence[int]) -> int | float:
        arch = self.validate(arch)
        t = self._tables[kind]
        if t[0].dtype.kind == "f":
            return math.fsum([self._const[kind], *(float(t[i][arch[2 * i], arch[2 * i + 1]])
                                                   for i in range(len(self.layers)))])
        return int(self._const[kind] + sum(int(t[i][arch[2 * i], arch[2 * i + 1]])
                                           for i in range(len(self.layers))))

    def params(self, arch: Arch) -> int:
        return self._cost("params", arch)

    def flops(self, arch: Arch) -> int:
        return self._cost("flops", arch)

    def _batch_cost(self, kind: str, archs: np.ndarray) -> np.ndarray:
        total = np.full(len(archs), self._const[kind], dtype=np.int64)
        for i, t in enumerate(self._tables[kind]):
            total += t[archs[:, 2 * i], archs[:, 2 * i + 1]]
        return total

    def _bounds(self, kind: str, allowed: Mapping[str, Sequence[int]] | None) -> tuple[int, int]:
        lo = hi = self._const[self._kind(kind)]
        for i, t in enumerate(self._tables[kind]):
            sub = t[np.ix_(self.allowed_values(self.genes[2 * i], allowed),
                           self.allowed_values(self.genes[2 * i + 1], allowed))]
            lo, hi = lo + sub.min().item(), hi + sub.max().item()
        return (int(lo), int(hi)) if self._tables[kind][0].dtype.kind != "f" else (float(lo), float(hi))

    def cost_bounds(self, kind: str, allowed: Mapping[str, Sequence[int]] | None = None
                    ) -> tuple[float, float]:
        """Exact smallest and largest cost of any kind (tables are additive)."""
        return self._bounds(kind, allowed)

    def params_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None) -> tuple[int, int]:
        return self._bounds("params", allowed)

    def flops_bounds(self, allowed: Mapping[str, Sequence[int]] | None = None) -> tuple[int, int]:
        return self._bounds("flops", allowed)

    def expected_cost(self, kind: str, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """sum_l p_block[l]^T T[l] p_ratio[l] + constant, in float64 (exact for one-hot probs)."""
        tables = self._torch_tables[self._kind(kind)]
        if len(probs) != len(self.genes):
            raise ValueError(f"expected_cost: got {len(probs)} probability vectors, expected "
                             f"{len(self.genes)} (one per gene)")
        total = torch.tensor(float(self._const[kind]), dtype=torch.float64, device=probs[0].device)
        for i, t in enumerate(tables):
            pb = probs[2 * i].to(torch.float64)
            pr = probs[2 * i + 1].to(torch.float64)
            total = total + pb @ t.to(pb.device) @ pr
        return total

    # -- encoding -----------------------------------------------------------------------------------
    def validate(self, arch: Sequence[int]) -> Arch:
        """The arch as a tuple of ints, or ValueError naming the first bad gene."""
        return self.layout.validate(arch)

    def ratio_indices(self, values: Sequence[float]) -> list[int]:
        """Gene values of the given ratios, e.g. [1.8, 2.0] -> [8, 9] with the default ratios."""
        out = []
        for v in values:
            hits = [i for i, r in enumerate(self.ratios) if abs(r - float(v)) < RATIO_TOL]
            if not hits:
                raise ValueError(f"ratio {v} is not offered; offered ratios: {self.ratios}")
            out.append(hits[0])
        return out

    def block_indices(self, ids: Sequence[int]) -> list[int]:
        """Gene values of the given block ids (indices into the offered ids)."""
        out = []
        for b in ids:
            if int(b) not in self.blocks:
                raise ValueError(f"block id {b} is not offered; offered ids: {id_ranges(self.blocks)}")
            out.append(self.blocks.index(int(b)))
        return out

    def repair(self, arch: Sequence[int], rng: np.random.Generator) -> Arch:
        """Clip genes into range; a pure robust block in a stride-2 layer is redrawn among the legal ones."""
        a = [round(float(v)) for v in arch]
        if len(a) != len(self.genes):
            raise ValueError(f"{self.name}: arch has {len(a)} genes, expected {len(self.genes)}")
        for j, g in enumerate(self.genes):
            if g.kind == "block" and g.choices <= a[j] < len(self.blocks):
                a[j] = int(rng.integers(g.choices))
            a[j] = min(max(a[j], 0), g.choices - 1)
        return tuple(a)

    def sample(self, rng: np.random.Generator, params_range: Sequence[int] | None = None,
               allowed: Mapping[str, Sequence[int]] | None = None, max_tries: int = 1_000_000) -> Arch:
        """Uniform over legal archs (with `allowed` values per gene kind), rejected into params_range."""
        options = [np.asarray(self.allowed_values(g, allowed), dtype=np.int64) for g in self.genes]
        if params_range is None or params_range[1] <= 0:
            return tuple(int(o[rng.integers(len(o))]) for o in options)
        lo, hi = int(params_range[0]), int(params_range[1])
        p_lo, p_hi = self.params_bounds(allowed)
        if hi < p_lo or lo > p_hi:
            raise ValueError(f"{self.name}: params range [{lo}, {hi}] misses this space, which spans "
                             f"[{p_lo}, {p_hi}] params with these genes; widen the range")
        tried, batch = 0, 64
        while tried < max_tries:
            draws = np.stack([o[rng.integers(len(o), size=batch)] for o in options], axis=1)
            p = self._batch_cost("params", draws)
            ok = np.nonzero((p >= lo) & (p <= hi))[0]
            if len(ok):
                return tuple(int(v) for v in draws[ok[0]])
            tried += batch
            batch = min(batch * 4, 16384)
        raise ValueError(f"{self.name}: no arch with params in [{lo}, {hi}] found after {tried} draws; "
                         f"this space spans [{p_lo}, {p_hi}] params")

    def sample_params(self, rng: np.random.Generator, n: int,
                      allowed: Mapping[str, Sequence[int]] | None = None) -> np.ndarray:
        """Params of `n` uniform samples (as `sample` without a range draws them), vectorised."""
        options = [np.asarray(self.allowed_values(g, allowed), dtype=np.int64) for g in self.genes]
        draws = np.stack([o[rng.integers(len(o), size=int(n))] for o in options], axis=1)
        return self._batch_cost("params", draws)

    def n_legal(self, allowed: Mapping[str, Sequence[int]] | None = None) -> int:
        """Number of legal archs (genes are independent once stride-2 layers drop pure robust ids)."""
        return math.prod(len(self.allowed_values(g, allowed)) for g in self.genes)

    def gene_choices(self, index: int) -> list[str]:
        """What each value of gene `index` encodes: block ids or ratios (the compact gene table)."""
        g = self.genes[index]
        if g.kind == "ratio":
            return [ratio_label(r) for r in self.ratios]
        return [str(b) for b in self.choices[g.layer]]

    # -- readable names (the one place figures, tables and reports take them from) ----------------
    def gene_label(self, index: int, value: int) -> str:
        """The readable name of one gene value: `xception-se-nlEG k5` for a block, `1.8` for a ratio."""
        g = self.genes[index]
        if not 0 <= int(value) < g.choices:
            raise ValueError(f"{self.name}: gene {g.name} = {value} is illegal; allowed "
                             f"0..{g.choices - 1}")
        if g.kind == "ratio":
            return ratio_label(self.ratios[int(value)])
        return BLOCKS[self.choices[g.layer][int(value)]].name

    def layer_names(self, arch: Sequence[int]) -> list[str]:
        """Per choice layer `block xratio`, e.g. `shuffle-se k3 x1.8` (arch strings stay the encoding)."""
        arch = self.validate(arch)
        return [f"{self.gene_label(2 * i, arch[2 * i])} x{self.gene_label(2 * i + 1, arch[2 * i + 1])}"
                for i in range(len(self.layers))]

    def arch_label(self, arch: Sequence[int]) -> str:
        """All layers by name in one line, for front tables next to the arch string."""
        return ", ".join(self.layer_names(arch))

    # -- descriptions -------------------------------------------------------------------------------
    def describe(self, arch: Arch) -> dict:
        arch = self.validate(arch)
        layers = []
        for spec in self.layers:
            bi, ri = arch[2 * spec.index], arch[2 * spec.index + 1]
            bid = self.choices[spec.index][bi]
            b = BLOCKS[bid]
            layers.append({"layer": spec.index, "stage": spec.stage, "stride": spec.stride,
                           "in_channels": spec.in_channels, "out_channels": spec.out_channels,
                           "block_id": bid, "block": b.name, "kernel": b.kernel, "se": True,
                           "nonlocal": b.nonlocal_mode, "ratio": self.ratios[ri],
                           "mid_channels": int(self.mids[spec.index][bi, ri])})
        return {"space": self.name, "layers": layers, "genes": list(arch)}

    def parse(self, description: Mapping) -> Arch:
        """The arch of a `describe` dict (block ids and ratios per layer), validated."""
        if not isinstance(description, Mapping):
            # A malformed description is a user's file: the CLI reports ValueError in one line.
            raise ValueError(  # noqa: TRY004
                f"{self.name}: expected a description dict, got {type(description).__name__}")
        if description.get("space", self.name) != self.name:
            raise ValueError(f"description is for space {description.get('space')!r}, not {self.name!r}")
        layers = description.get("layers")
        if layers is None:
            if "genes" not in description:
                raise ValueError(f"{self.name}: description needs 'layers' (block_id, ratio) or 'genes'")
            return self.validate(description["genes"])
        if len(layers) != len(self.layers):
            raise ValueError(f"{self.name}: description has {len(layers)} layers, expected {len(self.layers)}")
        arch = []
        for spec, entry in zip(self.layers, layers):
            try:
                bid, ratio = int(entry["block_id"]), float(entry["ratio"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{self.name}: layer {spec.index} needs numeric 'block_id' and 'ratio'") from None
            ids = self.choices[spec.index]
            if bid not in ids:
                raise ValueError(f"{self.name}: gene layer{spec.index}.block: block id {bid} is not offered "
                                 f"in this stride-{spec.stride} layer; allowed ids {id_ranges(ids)}")
            try:
                ri = self.ratio_indices([ratio])[0]
            except ValueError:
                raise ValueError(f"{self.name}: gene layer{spec.index}.ratio: ratio {ratio} is not offered; "
                                 f"allowed {self.ratios}") from None
            arch += [ids.index(bid), ri]
        arch = self.validate(arch)
        if "genes" in description and tuple(int(g) for g in description["genes"]) != arch:
            raise ValueError(f"{self.name}: description genes {list(description['genes'])} disagree with "
                             f"its layers {list(arch)}")
        return arch

    def config(self) -> dict:
        d = dataclasses.asdict(self.cfg)
        d.update(num_classes=self.num_classes, in_channels=self.in_channels, resolution=self.resolution,
                 mean=list(self.mean), std=list(self.std))
        return d

    @classmethod
    def from_config(cls, d: Mapping) -> ShuffleNetSpace:
        """Rebuild a space from `config()` (e.g. read from an exported arch JSON)."""
        d = dict(d)
        extra = {k: d.pop(k) for k in ("num_classes", "in_channels", "resolution", "mean", "std")
                 if k in d}
        missing = {"num_classes", "in_channels", "resolution", "mean", "std"} - set(extra)
        if missing:
            raise ValueError(f"space config lacks {', '.join(sorted(missing))}")
        fields = {f.name for f in dataclasses.fields(SpaceConfig)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"space config: unknown keys {', '.join(sorted(unknown))}; allowed "
                             f"{', '.join(sorted(fields))}")
        return cls(SpaceConfig(**d), **extra)

    # -- builders -----------------------------------------------------------------------------------
    def build_supernet(self) -> ShuffleNetSupernet:
        return ShuffleNetSupernet(self.layout)

    def build_standalone(self, arch: Arch) -> nn.Module:
        return build_standalone(self.layout, arch)


def ratio_label(ratio: float) -> str:
    """A ratio as its value with at least one decimal: 2.0, 1.8, 0.25."""
    text = f"{float(ratio):g}"
    return text if "." in text or "e" in text else f"{text}.0"


__all__ = ["BLOCKS", "HEADS", "RATIO_BASES", "BlockSpec", "LayerSpec", "ShuffleNetSpace", "nl_macs",
           "nl_params", "ratio_label", "se_params"]
