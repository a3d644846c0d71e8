"""Building blocks of the TAM-NAS ShuffleNetV2 space (paper 004, Figs. 3-4) with width slicing.

Every choice block is a plain module built at one intermediate width `mid`.
Its forward takes two optional arguments that only the supernet uses:

- `k`: run with the first `k` intermediate channels of every weight (the
  supernet holds the widest block, smaller channel ratios are slices of it);
- `mask`: a vector over the intermediate channels multiplied in before every
  layer that mixes them (the relaxed forward mixes ratios by mixing masks).

With both left out the block is an ordinary network module: a standalone net
is made of the same classes at the chosen widths, so the two share state-dict
keys and `mid_slices()` says which tensor dimensions `extract` has to cut.

Choices the paper leaves open, fixed here (and counted exactly by space.py):
- ShuffleV2 / Xception blocks: stride 1 splits the input in halves, the main
  branch maps the second half; stride 2 feeds the full input to both branches.
  Each branch outputs out_channels // 2; the projection branch is dw-conv k
  stride 2 + BN + 1x1 conv + BN + ReLU. mid = round(ratio * out_channels // 2), or
  round(ratio * out_channels) with space.ratio_base = "full".
- On the main branch, after its last 1x1 conv + BN + ReLU, come the optional
  non-local layer (inner = branch // nonlocal_reduction, 1x1 W followed by BN)
  and then the SE layer (hidden = branch // se_reduction). Ratios do not touch
  them.
- Pure robust blocks: non-local over all channels, then SE; the channel ratio
  scales the non-local inner width: mid = round(ratio * (C // nonlocal_reduction)).
  "+ BN" means W is a 1x1 conv without bias followed by BN, otherwise W has a bias.
- Non-local layers: theta/phi/g are 1x1 convs with bias, the pairwise term is
  softmax over positions of theta^T phi (embedded Gaussian) or x^T x (Gaussian),
  with a residual connection z = W(y) + x. That is single-head attention with
  scale 1, computed by one fused `scaled_dot_product_attention` (`attend`).
- SE: global average pool, Linear(C, h) + ReLU, Linear(h, C) + sigmoid, scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.fastconv import Conv2d, conv2d

# How a tensor is cut to `k` intermediate channels: "out" = conv output (dim 0, and its bias),
# "in" = conv input (dim 1), "both" = dims 0 and 1, "bn" = every per-channel BN tensor.
SliceKind = str


# -- sliced functional helpers (the supernet path) ------------------------------------------------
def sliced_conv(x: torch.Tensor, conv: nn.Conv2d, k: int | None, kind: SliceKind) -> torch.Tensor:
    """conv(x) with the first k intermediate channels of its weight; k=None is the whole conv."""
    if k is None:
        return conv(x)
    w, b = conv.weight, conv.bias
    groups = conv.groups
    if kind in ("out", "both"):
        w = w[:k]
        b = b[:k] if b is not None else None
        if groups > 1:          # depthwise: one group per channel
            groups = k
    if kind in ("in", "both") and conv.groups == 1:
        w = w[:, :k]
    return conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, groups)


def sliced_bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm over the first x.shape[1] channels of a wider BN layer.

    Training mode normalises with batch statistics and folds them into the
    sliced running statistics (views, so the wide buffers change in place);
    eval mode uses the sliced running statistics.
    """
    c = x.shape[1]
    if c == bn.num_features:
        return bn(x)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch = bn.training or bn.running_mean is None
    rm = None if bn.running_mean is None else bn.running_mean[:c]
    rv = None if bn.running_var is None else bn.running_var[:c]
    w = None if bn.weight is None else bn.weight[:c]
    b = None if bn.bias is None else bn.bias[:c]
    return F.batch_norm(x, rm, rv, w, b, use_batch, momentum, bn.eps)


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask.view(1, -1, 1, 1)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of `groups` equal parts (ShuffleNetV2's information exchange)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _dw(channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)


def _pw(cin: int, cout: int) -> nn.Conv2d:
    return Conv2d(cin, cout, 1, bias=False)


CUDA_WIDTH_ALIGN = 8   # CUDA's fused attention kernels want head widths in multiples of 8


def _positions(t: torch.Tensor, width: int) -> torch.Tensor:
    """B, C, H, W -> B, 1, H*W, width: one attention head over the positions, channels zero-padded.

    A fresh copy with unit stride on the channel axis, also when that axis
    has length one (where `contiguous` keeps the old stride and the fused
    kernels fall back to the explicit formula).
    """
    t = t.flatten(2).transpose(1, 2).unsqueeze(1)
    if t.shape[-1] < width:
        return F.pad(t, (0, width - t.shape[-1]))
    return t.clone(memory_format=torch.contiguous_format)


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           align: int | None = None) -> torch.Tensor:
    """The non-local pairwise term: y[:, :, i] = sum_j softmax_j(q_i . k_j) v_j, all B, C, H, W.

    One fused `scaled_dot_product_attention` (scale 1, one head, positions as the
    sequence): it never stores the N x N matrix that the explicit
    bmm-softmax-bmm form keeps for its backward. The fused kernels want one
    width for queries, keys and values (the Gaussian form pairs all channels
    of x but carries only the inner ones), and on CUDA a multiple of 8
    (`align`, default: 8 on CUDA, 1 elsewhere), so every side is padded with
    zero channels; that changes no dot product and adds only zero output
    channels, cut off again.
    """
    b, kv, h, w = value.shape
    if align is None:
        align = CUDA_WIDTH_ALIGN if value.is_cuda else 1
    width = -(-max(query.shape[1], kv) // align) * align
    q = _positions(query, width)
    k = q if key is query else _positions(key, width)
    y = F.scaled_dot_product_attention(q, k, _positions(value, width), scale=1.0)
    return y[:, 0, :, :kv].transpose(1, 2).reshape(b, kv, h, w)


# -- attention layers -------------------------------------------------------------------------------
class SE(nn.Module):
    """Squeeze-and-excitation; also accepts an already pooled (N, C) input (the head's SE)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3)) if x.dim() == 4 else x
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * (s.view(*s.shape, 1, 1) if x.dim() == 4 else s)


class NonLocal(nn.Module):
    """Non-local layer (Wang et al.), embedded-Gaussian or Gaussian pairwise term, residual output.

    `matmul_macs(n_positions, inner)` is the multiply-add count of its two
    matrix products (q k^T and the weighted sum of values, at their own
    widths: `attend`'s zero padding is not counted), the part that
    convolution hooks cannot see.
    """

    def __init__(self, channels: int, inner: int, mode: str = "embedded", bn: bool = True):
        super().__init__()
        if mode not in ("embedded", "gaussian"):
            raise ValueError(f"non-local mode {mode!r} is unknown; choose embedded or gaussian")
        self.mode, self.channels, self.inner = mode, channels, inner
        if mode == "embedded":
            self.theta = Conv2d(channels, inner, 1)
            self.phi = Conv2d(channels, inner, 1)
        self.g = Conv2d(channels, inner, 1)
        self.w = Conv2d(inner, channels, 1, bias=not bn)
        self.w_bn = nn.BatchNorm2d(channels) if bn else None

    def mid_slices(self, prefix: str = "") -> dict[str, SliceKind]:
        """Modules whose channels follow the inner width (for the pure robust blocks)."""
        names = ["theta", "phi", "g"] if self.mode == "embedded" else ["g"]
        return {**{prefix + n: "out" for n in names}, prefix + "w": "in"}

    def matmul_macs(self, n_positions: int, inner: int | None = None) -> int:
        inner = self.inner if inner is None else inner
        pair = self.channels if self.mode == "gaussian" else inner
        return n_positions * n_positions * (pair + inner)

    def forward(self, x: torch.Tensor, k: int | None = None, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        g = _masked(sliced_conv(x, self.g, k, "out"), mask)                        # B, k, H, W
        if self.mode == "embedded":
            theta = _masked(sliced_conv(x, self.theta, k, "out"), mask)
            phi = _masked(sliced_conv(x, self.phi, k, "out"), mask)
        else:
            theta = phi = x
        y = attend(theta, phi, g)                                                  # B, k, H, W
        z = sliced_conv(y, self.w, k, "in")
        if self.w_bn is not None:
            z = self.w_bn(z)
        return z + x


# -- choice blocks ----------------------------------------------------------------------------------
class ShuffleBlock(nn.Module):
    """ShuffleV2 or ShuffleV2-Xception block with SE and an optional non-local layer.

    Stride 1: split, main branch on the second half, concat, channel shuffle.
    Stride 2: projection and main branch both see the full input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, mid: int,
                 xception: bool = False, nonlocal_mode: str | None = None,
                 nl_inner: int = 1, se_hidden: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride {stride} is not allowed; choose 1 or 2")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 block keeps its width; got {in_channels} -> {out_channels}")
        self.stride, self.kernel, self.mid, self.xception = stride, kernel, mid, xception
        branch = out_channels // 2
        main_in = in_channels if stride == 2 else in_channels // 2
        self.branch = branch
        if stride == 2:
            self.proj_dw = _dw(in_channels, kernel, 2)
            self.proj_bn1 = nn.BatchNorm2d(in_channels)
            self.proj_pw = _pw(in_channels, branch)
            self.proj_bn2 = nn.BatchNorm2d(branch)
        if xception:
            self.dw1 = _dw(main_in, kernel, stride)
            self.bn1 = nn.BatchNorm2d(main_in)
            self.pw1 = _pw(main_in, mid)
            self.bn2 = nn.BatchNorm2d(mid)
            self.dw2 = _dw(mid, kernel)
            self.bn3 = nn.BatchNorm2d(mid)
            self.pw2 = _pw(mid, mid)
            self.bn4 = nn.BatchNorm2d(mid)
            self.dw3 = _dw(mid, kernel)
            self.bn5 = nn.BatchNorm2d(mid)
            self.pw3 = _pw(mid, branch)
            self.bn6 = nn.BatchNorm2d(branch)
        else:
            self.pw1 = _pw(main_in, mid)
            self.bn1 = nn.BatchNorm2d(mid)
            self.dw = _dw(mid, kernel, stride)
            self.bn2 = nn.BatchNorm2d(mid)
            self.pw2 = _pw(mid, branch)
            self.bn3 = nn.BatchNorm2d(branch)
        self.nl = NonLocal(branch, nl_inner, nonlocal_mode, bn=True) if nonlocal_mode else None
        self.se = SE(branch, se_hidden)

    PROJECTION = ("proj_dw", "proj_bn1", "proj_pw", "proj_bn2")

    def main_modules(self) -> tuple[str, ...]:
        """The main branch's convolutions and BatchNorms, in order (what weight sharing may tie)."""
        if self.xception:
            return ("dw1", "bn1", "pw1", "bn2", "dw2", "bn3", "pw2", "bn4", "dw3", "bn5", "pw3", "bn6")
        return ("pw1", "bn1", "dw", "bn2", "pw2", "bn3")

    def mid_slices(self) -> dict[str, SliceKind]:
        if self.xception:
            return {"pw1": "out", "bn2": "bn", "dw2": "out", "bn3": "bn", "pw2": "both", "bn4": "bn",
                    "dw3": "out", "bn5": "bn", "pw3": "in"}
        return {"pw1": "out", "bn1": "bn", "dw": "out", "bn2": "bn", "pw2": "in"}

    def _main(self, x: torch.Tensor, k: int | None, mask: torch.Tensor | None) -> torch.Tensor:
        bn = sliced_bn
        if self.xception:
            h = self.bn1(self.dw1(x))
            h = F.relu(bn(sliced_conv(h, self.pw1, k, "out"), self.bn2))
            h = _masked(bn(sliced_conv(h, self.dw2, k, "out"), self.bn3), mask)
            h = F.relu(bn(sliced_conv(h, self.pw2, k, "both"), self.bn4))
            h = _masked(bn(sliced_conv(h, self.dw3, k, "out"), self.bn5), mask)
            h = F.relu(self.bn6(sliced_conv(h, self.pw3, k, "in")))
        else:
            h = F.relu(bn(sliced_conv(x, self.pw1, k, "out"), self.bn1))
            h = _masked(bn(sliced_conv(h, self.dw, k, "out"), self.bn2), mask)
            h = F.relu(self.bn3(sliced_conv(h, self.pw2, k, "in")))
        if self.nl is not None:
            h = self.nl(h)
        return self.se(h)

    def forward(self, x: torch.Tensor, k: int | None = None, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        if self.stride == 1:
            keep, x = x.chunk(2, dim=1)
        else:
            keep = F.relu(self.proj_bn2(self.proj_pw(self.proj_bn1(self.proj_dw(x)))))
        return channel_shuffle(torch.cat([keep, self._main(x, k, mask)], dim=1))


class PureRobustBlock(nn.Module):
    """Non-local layer over all channels followed by SE; keeps the shape (stride-1 layers only)."""

    def __init__(self, channels: int, mid: int, nonlocal_mode: str, bn: bool, se_hidden: int):
        super().__init__()
        self.mid, self.stride = mid, 1
        self.nl = NonLocal(channels, mid, nonlocal_mode, bn=bn)
        self.se = SE(channels, se_hidden)

    def mid_slices(self) -> dict[str, SliceKind]:
        return self.nl.mid_slices("nl.")

    def forward(self, x: torch.Tensor, k: int | None = None, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.se(self.nl(x, k, mask))


# -- network ends -----------------------------------------------------------------------------------
class FirstLayer(nn.Module):
    """YOPO's layer one: fixed normalisation (x - mean) / std, then the bare stem conv."""

    def __init__(self, in_channels: int, out_channels: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} values, got {len(mean)} and {len(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.conv = Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv((x - self.mean) / self.std)


class Head(nn.Module):
    """1x1 conv + BN + ReLU, global pool, SE, FC + ReLU layers, classifier (Table I).

    `fc_channels` are the widths of the FC layers between the SE and the
    classifier: one width is the compact head (176 -> 1024), two are Table I's
    rows "SE 920" and "1x1 Conv 1024" read as 176 -> 920 -> 1024. The last
    width is always the layer `fc`; earlier ones are `expand.<i>`, so the
    compact head keeps its state-dict keys.
    """

    def __init__(self, in_channels: int, head_channels: int, se_hidden: int,
                 fc_channels: int | Sequence[int], num_classes: int):
        super().__init__()
        widths = [int(fc_channels)] if isinstance(fc_channels, int) else [int(c) for c in fc_channels]
        if not widths or min(widths) < 1:
            raise ValueError(f"head: fc_channels needs one or more positive widths, got {fc_channels}")
        self.conv = _pw(in_channels, head_channels)
        self.bn = nn.BatchNorm2d(head_channels)
        self.se = SE(head_channels, se_hidden)
        ins = [head_channels, *widths[:-1]]
        self.expand = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins[:-1], widths[:-1]))
        self.fc = nn.Linear(ins[-1], widths[-1])
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.se(F.relu(self.bn(self.conv(x))).mean((2, 3)))
        for layer in self.expand:
            h = F.relu(layer(h))
        return self.classifier(F.relu(self.fc(h)))


__all__ = [
    "SE",
    "FirstLayer",
    "Head",
    "NonLocal",
    "PureRobustBlock",
    "ShuffleBlock",
    "attend",
    "channel_shuffle",
    "sliced_bn",
    "sliced_conv",
]
