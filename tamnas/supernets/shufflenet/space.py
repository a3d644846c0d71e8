"""The TAM-NAS ShuffleNetV2 search space (DESIGN.md 4.1): genes, exact cost tables, describe/parse.

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

FLOPs are multiply-adds for one input image: convolutions (out pixels x
in/groups x k x k x out channels), linear layers, and the two matrix products
of each non-local layer (N^2 x pairwise channels and N^2 x inner, N = H x W).
Elementwise work (BN, activations, pooling, softmax, SE gating, residual adds)
is not counted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tamnas.config import SpaceConfig
from tamnas.supernets import register_space
from tamnas.supernets.base import Arch, Gene, SearchSpace
from tamnas.supernets.shufflenet.blocks import PureRobustBlock, ShuffleBlock

N_BLOCKS = 22
HEADS = ("compact", "table1")
RATIO_BASES = ("half", "full")
MAX_STRIDE2_ID = 17
RATIO_TOL = 1e-6


@dataclass(frozen=True)
class BlockSpec:
    """One row of the block table (DESIGN.md 4.1 / Table XIV)."""

    id: int
    family: str              # "shufflev2", "xception" or "robust"
    kernel: int | None
    nonlocal_mode: str | None  # None, "embedded" or "gaussian"
    bn: bool                 # pure robust blocks: BN after the non-local W

    @property
    def name(self) -> str:
        """The label figures, tables and reports show, e.g. `shuffle-se k3`, `robust-nlG-se-bn`.

        Built from Table XIV's parts: the family (`shuffle`, `xception`,
        `robust`), `se`, the non-local kind (`nlEG` embedded Gaussian, `nlG`
        Gaussian), `bn` for the pure robust blocks with BN, and the kernel.
        """
        nl = {None: "", "embedded": "nlEG", "gaussian": "nlG"}[self.nonlocal_mode]
        if self.family == "robust":
            return "-".join(["robust", nl, "se"] + (["bn"] if self.bn else []))
        base = "shuffle" if self.family == "shufflev2" else "xception"
        return "-".join([base, "se"] + ([nl] if nl else [])) + f" k{self.kernel}"


def _block_table() -> list[BlockSpec]:
    rows = []
    for group, nl in enumerate((None, "embedded", "gaussian")):
        for family in ("shufflev2", "xception"):
            for kernel in (3, 5, 7):
                rows.append(BlockSpec(len(rows), family, kernel, nl, True))
    for nl in ("embedded", "gaussian"):
        for bn in (True, False):
            rows.append(BlockSpec(len(rows), "robust", None, nl, bn))
    return rows


BLOCKS: list[BlockSpec] = _block_table()


@dataclass(frozen=True)
class LayerSpec:
    """Geometry of one choice layer."""

    index: int
    stage: int
    stride: int
    in_channels: int
    out_channels: int
    in_res: int
    out_res: int


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _even(c: float) -> int:
    return max(2, 2 * _round_half_up(c / 2))


# -- closed-form costs -------------------------------------------------------------------------------
def se_params(c: int, h: int) -> int:
    return c * h + h + h * c + c


def nl_params(c: int, inner: int, mode: str, bn: bool) -> int:
    n_in = 3 if mode == "embedded" else 1
    return n_in * (c * inner + inner) + inner * c + (2 * c if bn else c)


def nl_macs(c: int, inner: int, mode: str, n: int) -> int:
    n_in = 3 if mode == "embedded" else 1
    pair = inner if mode == "embedded" else c
    return n_in * n * c * inner + n * inner * c + n * n * (pair + inner)


@register_space("shufflenet")
class ShuffleNetSpace(SearchSpace):
    """ShuffleNetV2 supernet space of paper 004 (Table I layout, 22 blocks x channel ratios)."""

    def __init__(self, space_cfg: SpaceConfig, num_classes: int, in_channels: int, resolution: int,
                 mean: Sequence[float], std: Sequence[float]):
        self.cfg = dataclasses.replace(space_cfg, stage_channels=list(space_cfg.stage_channels),
                                       stage_layers=list(space_cfg.stage_layers),
                                       ratios=list(space_cfg.ratios), blocks=list(space_cfg.blocks))
        c = self.cfg
        if len(c.stage_channels) != len(c.stage_layers) or not c.stage_layers:
            raise ValueError("space.stage_channels and space.stage_layers must be non-empty lists of "
                             "the same length")
        if any(int(n) < 1 for n in c.stage_layers):
            raise ValueError(f"space.stage_layers: every stage needs at least one layer, got {c.stage_layers}")
        bad = [b for b in c.blocks if not isinstance(b, (int, np.integer)) or not 0 <= b < N_BLOCKS]
        if bad or not c.blocks:
            raise ValueError(f"space.blocks: {bad or '[]'} not allowed; block ids are 0..{N_BLOCKS - 1}")
        if not c.ratios or any(not 0 < float(r) <= 8 for r in c.ratios):
            raise ValueError(f"space.ratios: {c.ratios} not allowed; ratios are in (0, 8], e.g. 0.2..2.0")
        self.blocks: list[int] = sorted({int(b) for b in c.blocks})
        self.ratios: list[float] = sorted({round(float(r), 6) for r in c.ratios})
        self.stride2_blocks = [b for b in self.blocks if b <= MAX_STRIDE2_ID]
        if not self.stride2_blocks:
            raise ValueError(f"space.blocks: at least one of the ids 0..{MAX_STRIDE2_ID} is needed for "
                             "stride-2 layers")
        self.num_classes, self.in_channels, self.resolution = int(num_classes), int(in_channels), int(resolution)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(f"mean/std need {self.in_channels} values each, got {len(self.mean)} "
                             f"and {len(self.std)}")
        w = c.width_mult
        self.stem_channels = max(1, _round_half_up(c.stem_channels * w))
        self.stage_channels = [_even(ch * w) for ch in c.stage_channels]
        self.head_channels = max(1, _round_half_up(c.head_channels * w))
        if c.head not in HEADS:
            raise ValueError(f"space.head: {c.head!r} is unknown; choose one of {', '.join(HEADS)}")
        if c.ratio_base not in RATIO_BASES:
            raise ValueError(f"space.ratio_base: {c.ratio_base!r} is unknown; choose one of "
                             f"{', '.join(RATIO_BASES)}")
        # The head's FC widths after its SE (what `Head` builds): Table I's reading adds the
        # 920-wide "SE 920" row in front of the 1024-wide layer.
        widths = [c.fc_channels] if c.head == "compact" else [c.head_mid_channels, c.fc_channels]
        self.fc_channels: tuple[int, ...] = tuple(max(1, _round_half_up(ch * w)) for ch in widths)
        self.layers: list[LayerSpec] = []
        cin, res = self.stem_channels, self.resolution
        for stage, (cout, n) in enumerate(zip(self.stage_channels, c.stage_layers)):
            for j in range(int(n)):
                stride = 2 if j == 0 else 1
                out_res = (res - 1) // stride + 1
                self.layers.append(LayerSpec(len(self.layers), stage, stride, cin, cout, res, out_res))
                cin, res = cout, out_res
        self.choices: list[list[int]] = [self.stride2_blocks if s.stride == 2 else self.blocks
                                          for s in self.layers]
        self.genes = []
        for spec in self.layers:
            self.genes.append(Gene(f"layer{spec.index}.block", "block", len(self.choices[spec.index]),
                                   spec.index))
            self.genes.append(Gene(f"layer{spec.index}.ratio", "ratio", len(self.ratios), spec.index))
        self._build_tables()

    # -- widths -------------------------------------------------------------------------------------
    def se_hidden(self, channels: int) -> int:
        return max(1, channels // self.cfg.se_reduction)

    def nl_inner(self, channels: int) -> int:
        return max(1, channels // self.cfg.nonlocal_reduction)

    def base_mid(self, layer: int, block_id: int) -> int:
        """The intermediate width at ratio 1.0 (what the channel selector scales).

        ShuffleV2/Xception blocks: ratio_base "half" scales the branch width
        out // 2, "full" the block's whole output width out (Fig. 4 does not
        say which; "full" is the reading that reproduces the paper's sizes,
        see README "Model size and the head"). Pure robust blocks: always the
        non-local inner width C // nonlocal_reduction.
        """
        spec = self.layers[layer]
        if BLOCKS[block_id].family == "robust":
            return self.nl_inner(spec.out_channels)
        return spec.out_channels if self.cfg.ratio_base == "full" else spec.out_channels // 2

    def mid_channels(self, layer: int, block_id: int, ratio: float) -> int:
        return max(1, _round_half_up(float(ratio) * self.base_mid(layer, block_id)))

    def max_mid(self, layer: int, block_id: int) -> int:
        """The width the supernet holds: that of the largest offered ratio."""
        return self.mid_channels(layer, block_id, max(self.ratios))

    def make_block(self, layer: int, block_id: int, mid: int) -> nn.Module:
        """One choice block at intermediate width `mid` (shared by supernet and standalone nets)."""
        spec, b = self.layers[layer], BLOCKS[block_id]
        if b.family == "robust":
            if spec.stride != 1:
                raise ValueError(f"layer{layer}: pure robust block {block_id} needs a stride-1 layer")
            return PureRobustBlock(spec.out_channels, mid, b.nonlocal_mode, b.bn,
                                   self.se_hidden(spec.out_channels))
        branch = spec.out_channels // 2
        return ShuffleBlock(spec.in_channels, spec.out_channels, spec.stride, b.kernel, mid,
                            xception=b.family == "xception", nonlocal_mode=b.nonlocal_mode,
                            nl_inner=self.nl_inner(branch), se_hidden=self.se_hidden(branch))

    # -- cost tables --------------------------------------------------------------------------------
    def block_cost(self, layer: int, block_id: int, mid: int) -> tuple[int, int]:
        """(parameters, multiply-adds) of one block at intermediate width `mid`."""
        s, b = self.layers[layer], BLOCKS[block_id]
        n_in, n_out = s.in_res * s.in_res, s.out_res * s.out_res
        if b.family == "robust":
            c = s.out_channels
            h = self.se_hidden(c)
            return (nl_params(c, mid, b.nonlocal_mode, b.bn) + se_params(c, h),
                    nl_macs(c, mid, b.nonlocal_mode, n_out) + 2 * c * h)
        k2, cin, br = b.kernel ** 2, s.in_channels, s.out_channels // 2
        mi = cin if s.stride == 2 else cin // 2
        p = f = 0
        if s.stride == 2:
            p += cin * k2 + 2 * cin + cin * br + 2 * br
            f += n_out * (cin * k2 + cin * br)
        if b.family == "shufflev2":
            p += mi * mid + 2 * mid + mid * k2 + 2 * mid + mid * br + 2 * br
            f += n_in * mi * mid + n_out * (mid * k2 + mid * br)
        else:
            p += (mi * k2 + 2 * mi + mi * mid + 2 * mid + 2 * (mid * k2 + 2 * mid)
                  + mid * mid + 2 * mid + mid * br + 2 * br)
            f += n_out * (mi * k2 + mi * mid + 2 * mid * k2 + mid * mid + mid * br)
        if b.nonlocal_mode:
            inner = self.nl_inner(br)
            p += nl_params(br, inner, b.nonlocal_mode, True)
            f += nl_macs(br, inner, b.nonlocal_mode, n_out)
        h = self.se_hidden(br)
        return p + se_params(br, h), f + 2 * br * h

    def _build_tables(self) -> None:
        c_last = self.layers[-1].out_channels
        res_last = self.layers[-1].out_res
        hd, h = self.head_channels, self.se_hidden(self.head_channels)
        fc_in = (hd, *self.fc_channels)
        fc_out = (*self.fc_channels, self.num_classes)
        self._const = {
            "params": (self.in_channels * self.stem_channels * 9 + 2 * self.stem_channels
                       + c_last * hd + 2 * hd + se_params(hd, h)
                       + sum(a * b + b for a, b in zip(fc_in, fc_out))),
            "flops": (self.resolution ** 2 * self.in_channels * self.stem_channels * 9
                      + res_last ** 2 * c_last * hd + 2 * hd * h
                      + sum(a * b for a, b in zip(fc_in, fc_out)))}
        self._tables: dict[str, list[np.ndarray]] = {"params": [], "flops": []}
        self.mids: list[np.ndarray] = []
        for spec in self.layers:
            ids = self.choices[spec.index]
            mids = np.array([[self.mid_channels(spec.index, b, r) for r in self.ratios] for b in ids])
            costs = np.array([[self.block_cost(spec.index, b, int(m)) for m in row]
                              for b, row in zip(ids, mids)], dtype=np.int64)
            self.mids.append(mids)
            self._tables["params"].append(costs[..., 0])
            self._tables["flops"].append(costs[..., 1])
        self._torch_tables: dict[str, list[torch.Tensor]] = {
            k: [torch.from_numpy(t.astype(np.float64)) for t in v] for k, v in self._tables.items()}

    def cost_constant(self, kind: str) -> int:
        """The cost outside the choice layers (stem, head)."""
        return int(self._const[self._kind(kind)])

    def cost_table(self, kind: str) -> list[torch.Tensor]:
        """Per choice layer a (blocks x ratios) cost table: cost(arch) = constant + sum of picks."""
        return [t.clone() for t in self._torch_tables[self._kind(kind)]]

    def _kind(self, kind: str) -> str:
        if kind not in self._tables:
            raise ValueError(f"cost kind {kind!r} is unknown; choose params or flops")
        return kind

    def _cost(self, kind: str, arch: Sequence[int]) -> int:
        arch = self.validate(arch)
        t = self._tables[kind]
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
        lo = hi = self._const[kind]
        for i, t in enumerate(self._tables[kind]):
            sub = t[np.ix_(self.allowed_values(self.genes[2 * i], allowed),
                           self.allowed_values(self.genes[2 * i + 1], allowed))]
            lo, hi = lo + int(sub.min()), hi + int(sub.max())
        return int(lo), int(hi)

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
        arch = tuple(arch)
        if len(arch) != len(self.genes):
            raise ValueError(f"{self.name}: arch has {len(arch)} genes, expected {len(self.genes)} "
                             f"({self.genes[0].name}, {self.genes[1].name}, ..., {self.genes[-1].name})")
        out = []
        for value, gene in zip(arch, self.genes):
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(f"{self.name}: gene {gene.name} = {value!r} is not an integer")
            v = int(value)
            if gene.kind == "block" and gene.choices <= v < len(self.blocks):
                layer = gene.layer
                raise ValueError(
                    f"{self.name}: gene {gene.name} = {v} (block id {self.blocks[v]}, pure robust) is "
                    f"illegal in stride-2 layer {layer}; allowed values 0..{gene.choices - 1} "
                    f"(block ids {_ranges(self.stride2_blocks)})")
            if not 0 <= v < gene.choices:
                offered = (f"block ids {_ranges(self.choices[gene.layer])}" if gene.kind == "block"
                           else f"ratios {self.ratios}")
                raise ValueError(f"{self.name}: gene {gene.name} = {v} is illegal; allowed "
                                 f"0..{gene.choices - 1} (indices into {offered})")
            out.append(v)
        return tuple(out)

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
                raise ValueError(f"block id {b} is not offered; offered ids: {_ranges(self.blocks)}")
            out.append(self.blocks.index(int(b)))
        return out

    def repair(self, arch: Sequence[int], rng: np.random.Generator) -> Arch:
        """Clip genes into range; a pure robust block in a stride-2 layer is redrawn among the legal ones."""
        a = [int(round(float(v))) for v in arch]
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
            raise ValueError(f"{self.name}: expected a description dict, got {type(description).__name__}")
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
                                 f"in this stride-{spec.stride} layer; allowed ids {_ranges(ids)}")
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
    def build_supernet(self):
        from tamnas.supernets.shufflenet.supernet import ShuffleNetSupernet

        return ShuffleNetSupernet(self)

    def build_standalone(self, arch: Arch) -> nn.Module:
        from tamnas.supernets.shufflenet.standalone import build_standalone

        return build_standalone(self, arch)


def ratio_label(ratio: float) -> str:
    """A ratio as its value with at least one decimal: 2.0, 1.8, 0.25."""
    text = f"{float(ratio):g}"
    return text if "." in text or "e" in text else f"{text}.0"


def _ranges(ids: Sequence[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    ids = sorted(ids)
    parts, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


__all__ = ["BLOCKS", "HEADS", "RATIO_BASES", "BlockSpec", "LayerSpec", "ShuffleNetSpace", "nl_macs",
           "nl_params", "ratio_label", "se_params"]
