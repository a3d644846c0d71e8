"""Weight-sharing ShuffleNetV2 supernet: one module per offered block and layer, ratios as channel slices.

Each choice layer holds every offered block at the widest offered ratio; a
path runs its blocks on the first `mid` intermediate channels of those
weights (sliced convolutions and BatchNorm), so all ratios share weights.
The relaxed forward mixes blocks with their probabilities and ratios through
soft channel masks sum_r p_r [c < mid_r].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.base import Arch, Supernet
from tamnas.supernets.shufflenet.blocks import FirstLayer, Head
from tamnas.supernets.shufflenet.layout import BLOCKS, ShuffleNetLayout
from tamnas.supernets.shufflenet.sharing import share_module, slice_state

WEIGHT_SHARING = ("none", "projection", "kernel", "family")


def entangle(candidates: Sequence[nn.Module], block_ids: Sequence[int], level: str) -> None:
    """Tie the weights of candidates that do the same job (README: "Weight sharing"), in place.

    Each level adds to the one before:
    - projection: the stride-2 projection branch is one branch for every shuffle candidate
      (its dw kernel the largest offered, smaller kernels its centre crop), so the
      feature path that bypasses the main branch stays the same whichever block is drawn;
    - kernel: blocks that differ only in kernel size are one block with an elastic kernel;
    - family: within a family the main branch and SE are shared across non-local modes too
      (each non-local mode keeps its own non-local layer), and the pure robust blocks of one
      pairwise kind share their non-local embeddings and SE.
    """
    if level not in WEIGHT_SHARING:
        raise ValueError(f"space.weight_sharing: {level!r} is unknown; choose one of "
                         f"{', '.join(WEIGHT_SHARING)}")
    if level == "none":
        return
    specs = [BLOCKS[b] for b in block_ids]
    shuffle = [(c, s) for c, s in zip(candidates, specs) if s.family != "robust"]
    if shuffle and shuffle[0][0].stride == 2:
        _tie([c for c, _ in shuffle], shuffle[0][0].PROJECTION)
    if level == "projection":
        return
    body = (lambda s: (s.family, s.nonlocal_mode)) if level == "kernel" else (lambda s: s.family)
    for group in _groups(shuffle, body):
        _tie(group, group[0].main_modules() + ("se",))
    for group in _groups([(c, s) for c, s in shuffle if s.nonlocal_mode], lambda s: (s.family, s.nonlocal_mode)):
        _tie(group, ("nl",))
    if level == "family":
        robust = [(c, s) for c, s in zip(candidates, specs) if s.family == "robust"]
        for group in _groups(robust, lambda s: s.nonlocal_mode):
            embeddings = ("nl.theta", "nl.phi", "nl.g") if group[0].nl.mode == "embedded" else ("nl.g",)
            _tie(group, embeddings + ("se",))


def _groups(members, key) -> list[list[nn.Module]]:
    out: dict = {}
    for c, s in members:
        out.setdefault(key(s), []).append(c)
    return [g for g in out.values() if len(g) > 1]


def _tie(group: Sequence[nn.Module], names: Sequence[str]) -> None:
    """Every member uses the modules `names` of the member with the largest kernel."""
    owner = max(group, key=lambda c: getattr(c, "kernel", 0) or 0)
    for name in names:
        for c in group:
            share_module(c, name, owner.get_submodule(name))


class ChoiceLayer(nn.Module):
    """The candidates of one layer, each at its widest intermediate width, weights tied by `entangle`."""

    def __init__(self, layout: ShuffleNetLayout, layer: int):
        super().__init__()
        ids = layout.choices[layer]
        self.candidates = nn.ModuleList(layout.make_block(layer, b, layout.max_mid(layer, b)) for b in ids)
        entangle(self.candidates, ids, layout.cfg.weight_sharing)
        mids = layout.mids[layer]                                    # (blocks, ratios)
        self.mids: list[list[int]] = mids.tolist()
        self.max_mids: list[int] = [int(c.mid) for c in self.candidates]
        # masks[b][r, c] = 1 if channel c is active at ratio r, for the relaxed forward
        for j, m in enumerate(self.max_mids):
            ind = (torch.arange(m)[None, :] < torch.as_tensor(mids[j])[:, None]).float()
            self.register_buffer(f"mask{j}", ind, persistent=False)

    def forward(self, x: torch.Tensor, block: int, ratio: int) -> torch.Tensor:
        k = self.mids[block][ratio]
        return self.candidates[block](x, None if k == self.max_mids[block] else k)

    def forward_relaxed(self, x: torch.Tensor, p_block: torch.Tensor, p_ratio: torch.Tensor) -> torch.Tensor:
        out = None
        weights = p_block.detach().tolist()
        for j, cand in enumerate(self.candidates):
            if weights[j] == 0.0:          # exact zero: no value and no gradient to contribute
                continue
            mask = p_ratio.to(x.dtype) @ getattr(self, f"mask{j}")
            y = p_block[j].to(x.dtype) * cand(x, None, mask)
            out = y if out is None else out + y
        if out is None:
            raise ValueError("forward_relaxed: a block probability vector is all zeros")
        return out


class ShuffleNetSupernet(Supernet):
    """The supernet of a ShuffleNetSpace's layout (build it with `space.build_supernet()`)."""

    def __init__(self, layout: ShuffleNetLayout):
        super().__init__()
        self.layout = layout
        self.first_layer = FirstLayer(layout.in_channels, layout.stem_channels, layout.mean, layout.std)
        self.stem_bn = nn.BatchNorm2d(layout.stem_channels)
        self.layers = nn.ModuleList(ChoiceLayer(layout, spec.index) for spec in layout.layers)
        self.head = Head(layout.layers[-1].out_channels, layout.head_channels,
                         layout.se_hidden(layout.head_channels), layout.fc_channels, layout.num_classes)
        self._checked: dict[tuple, Arch] = {}

    def _arch(self, arch: Sequence[int]) -> Arch:
        key = tuple(int(a) for a in arch)
        hit = self._checked.get(key)
        if hit is None:
            hit = self.layout.validate(key)
            if len(self._checked) > 4096:
                self._checked.clear()
            self._checked[key] = hit
        return hit

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x), arch)

    def forward_from_first(self, h: torch.Tensor, arch: Arch) -> torch.Tensor:
        arch = self._arch(arch)
        h = F.relu(self.stem_bn(h))
        for i, layer in enumerate(self.layers):
            h = layer(h, arch[2 * i], arch[2 * i + 1])
        return self.head(h)

    def forward_relaxed(self, x: torch.Tensor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mixture of all paths: blocks weighted by probs[2i], ratios by soft masks from probs[2i+1]."""
        if len(probs) != len(self.layout.genes):
            raise ValueError(f"forward_relaxed: got {len(probs)} probability vectors, expected "
                             f"{len(self.layout.genes)} (one per gene)")
        for p, g in zip(probs, self.layout.genes):
            if p.shape != (g.choices,):
                raise ValueError(f"forward_relaxed: gene {g.name} needs {g.choices} probabilities, "
                                 f"got shape {tuple(p.shape)}")
        h = F.relu(self.stem_bn(self.first_layer(x)))
        for i, layer in enumerate(self.layers):
            h = layer.forward_relaxed(h, probs[2 * i], probs[2 * i + 1])
        return self.head(h)

    def extract(self, arch: Arch) -> dict[str, torch.Tensor]:
        """State dict of `space.build_standalone(arch)`: the path's weights cut to its widths."""
        arch = self._arch(arch)
        out: dict[str, torch.Tensor] = {}
        for name, t in self.state_dict().items():
            if not name.startswith("layers."):
                out[name] = t.detach().clone()
        for i, layer in enumerate(self.layers):
            b, r = arch[2 * i], arch[2 * i + 1]
            for name, t in slice_state(layer.candidates[b], layer.mids[b][r]).items():
                out[f"layers.{i}.{name}"] = t.detach().clone()
        return out

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        """The stem, the head and the chosen block of every layer (with the modules it shares)."""
        arch = self._arch(arch)
        out = [self, *self.first_layer.modules(), self.stem_bn, *self.head.modules()]
        for i, layer in enumerate(self.layers):
            out += [layer, *layer.candidates[arch[2 * i]].modules()]
        return out

    def path_widths(self, arch: Arch) -> np.ndarray:
        """Intermediate width of each layer on this path (for inspection)."""
        arch = self._arch(arch)
        return np.array([layer.mids[arch[2 * i]][arch[2 * i + 1]] for i, layer in enumerate(self.layers)])


__all__ = ["WEIGHT_SHARING", "ChoiceLayer", "ShuffleNetSupernet", "entangle"]
