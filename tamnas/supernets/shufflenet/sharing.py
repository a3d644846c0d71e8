"""Weight entanglement: candidates that do the same job share one tensor in the supernet.

`share_module` ties a candidate's submodule to another's (or to the centre of
a larger depthwise kernel, `CentreCrop`, as Once-for-All's elastic kernel);
`slice_state` writes what a standalone block of one width loads, the tied and
cropped tensors under the standalone's own names.
"""

from __future__ import annotations

import torch
from torch import nn

from tamnas.supernets.fastconv import conv2d


class CentreCrop:
    """A depthwise conv whose k x k kernel is the centre of a larger shared conv's kernel.

    Once-for-All's elastic kernel: a k3 and a k5 candidate reuse the middle of
    the k7 candidate's weights. Deliberately not an nn.Module, so the shared
    weight is registered once, by the module that owns it; `slice_state`
    writes the cropped tensor under this view's name, so a standalone block
    (a plain conv of the small kernel) loads it like any other weight.
    """

    def __init__(self, conv: nn.Conv2d, kernel: int):
        big = conv.kernel_size[0]
        if kernel > big or (big - kernel) % 2:
            raise ValueError(f"cannot crop a {kernel}x{kernel} kernel from a {big}x{big} one")
        self.conv, self.kernel = conv, kernel
        self.offset = (big - kernel) // 2
        self.stride, self.dilation, self.groups = conv.stride, conv.dilation, conv.groups
        self.padding = (kernel // 2, kernel // 2)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.conv.bias

    @property
    def weight(self) -> torch.Tensor:
        o, k = self.offset, self.kernel
        return self.conv.weight[:, :, o:o + k, o:o + k]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def share_module(block: nn.Module, name: str, owner: nn.Module) -> None:
    """Make `block.name` (dotted) the module `owner`, or its centre crop when `owner` is a larger dw conv."""
    parent_name, _, name = name.rpartition(".")
    block = block.get_submodule(parent_name) if parent_name else block
    mine = getattr(block, name)
    if mine is owner:
        return
    delattr(block, name)
    if isinstance(mine, nn.Conv2d) and mine.kernel_size != owner.kernel_size:
        object.__setattr__(block, name, CentreCrop(owner, mine.kernel_size[0]))
    else:
        setattr(block, name, owner)


def _state_with_crops(block: nn.Module) -> dict[str, torch.Tensor]:
    """block.state_dict() plus the weights its CentreCrop views stand for, under the views' names."""
    state = dict(block.state_dict())
    for prefix, module in block.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, CentreCrop):
                state[f"{prefix}.{attr}.weight" if prefix else f"{attr}.weight"] = value.weight
    return state


def slice_state(block: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """The block's state dict cut to `k` intermediate channels (what a standalone block loads)."""
    kinds = block.mid_slices()
    out = {}
    for name, t in _state_with_crops(block).items():
        module, _, leaf = name.rpartition(".")
        kind = kinds.get(module)
        if kind in ("out", "bn") and leaf != "num_batches_tracked":
            t = t[:k]
        elif kind == "in" and leaf == "weight":
            t = t[:, :k]
        elif kind == "both" and leaf == "weight":
            t = t[:k, :k]
        out[name] = t
    return out


__all__ = ["CentreCrop", "share_module", "slice_state"]
