"""The shape of a ShuffleNetV2 network of the TAM-NAS space: block table, widths, block builder.

The space (genes, cost tables), the supernet and the standalone net all read
one `ShuffleNetLayout`, so a width, a block or a gene rule is defined in one
place and none of the three has to call back into another. Widths follow
Table I of paper 004: the width multiplier scales every channel count, stage widths
stay even (a stride-1 block splits its input in halves), and the channel
ratio scales a block's intermediate width (`base_mid`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from tamnas.config import SpaceConfig
from tamnas.supernets.base import Arch, Gene
from tamnas.supernets.shufflenet.blocks import PureRobustBlock, ShuffleBlock

N_BLOCKS = 22
HEADS = ("compact", "table1")
RATIO_BASES = ("half", "full")
MAX_STRIDE2_ID = 17


@dataclass(frozen=True)
class BlockSpec:
    """One row of the block table (Table XIV of paper 004)."""

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
    return math.floor(x + 0.5 + 1e-9)


def _even(c: float) -> int:
    return max(2, 2 * _round_half_up(c / 2))


def id_ranges(ids: Sequence[int]) -> str:
    """[0, 1, 2, 5, 6] -> '0-2, 5-6' (how error messages list block ids)."""
    ids = sorted(ids)
    parts, start = [], None
    for i, v in enumerate(ids):
        if start is None:
            start = v
        if i + 1 == len(ids) or ids[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


class ShuffleNetLayout:
    """Everything that fixes a network's shape except the genes' values.

    Checks the space config (ValueError naming the bad key), then lays out the
    stem, the choice layers (`layers`), the offered blocks per layer
    (`choices`), the genes and the intermediate width of every
    (layer, block, ratio) (`mids[layer][block index, ratio index]`).
    """

    def __init__(self, space_cfg: SpaceConfig, num_classes: int, in_channels: int, resolution: int,
                 mean: Sequence[float], std: Sequence[float], name: str = "shufflenet"):
        self.name = name
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
        self.genes: list[Gene] = []
        for spec in self.layers:
            self.genes.append(Gene(f"layer{spec.index}.block", "block", len(self.choices[spec.index]),
                                   spec.index))
            self.genes.append(Gene(f"layer{spec.index}.ratio", "ratio", len(self.ratios), spec.index))
        self.mids: list[np.ndarray] = [
            np.array([[self.mid_channels(spec.index, b, r) for r in self.ratios]
                      for b in self.choices[spec.index]])
            for spec in self.layers]

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

    # -- builders -----------------------------------------------------------------------------------
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

    # -- the gene rules -----------------------------------------------------------------------------
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
                    f"(block ids {id_ranges(self.stride2_blocks)})")
            if not 0 <= v < gene.choices:
                offered = (f"block ids {id_ranges(self.choices[gene.layer])}" if gene.kind == "block"
                           else f"ratios {self.ratios}")
                raise ValueError(f"{self.name}: gene {gene.name} = {v} is illegal; allowed "
                                 f"0..{gene.choices - 1} (indices into {offered})")
            out.append(v)
        return tuple(out)


__all__ = ["BLOCKS", "HEADS", "MAX_STRIDE2_ID", "N_BLOCKS", "RATIO_BASES", "BlockSpec", "LayerSpec",
           "ShuffleNetLayout", "id_ranges"]
