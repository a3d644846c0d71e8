"""The DARTS candidate operations, the cell's input preprocessing, and their exact costs.

Op ids follow the DARTS PRIMITIVES order, so 0 is `none` (the zero op, the
id of an absent edge). Every op keeps its channel count C; on a stride-2 edge
(the inputs of a reduction cell) it halves the resolution to ceil(H / 2).

Costs are closed forms, one per op, kept beside the modules they count:
parameters exactly (affine BatchNorm: 2C each, convolutions bias-free), and
multiply-adds by the E2RNAS rules (paper 001, IV-B2): a k x k convolution
costs C_in/groups * k^2 * C_out per output pixel, a BatchNorm 2 per output
element, a ReLU 1 per input element, a 3x3 average pool 1 per output
element; max pooling, identity, none and additions cost nothing. For the
stride-1 ops this is the paper's formula term for term (e.g. sep conv:
2(CHW + C^2HW + k^2CHW + 2CHW)); on stride-2 edges each term is counted at
the resolution its layer runs at.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.supernets.fastconv import Conv2d

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NONE = 0


def reduced(size: int, stride: int) -> int:
    """Spatial size after an op of this stride (every op pads to 'same', then strides)."""
    return (size + stride - 1) // stride


class Normalize(nn.Module):
    """(x - mean) / std with per-channel buffers: models take [0, 1] images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Zero(nn.Module):
    """The `none` op: zeros at the output resolution (only the relaxed mixture ever needs it)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class ReLUConvBN(nn.Sequential):
    """ReLU, bias-free k x k convolution, BatchNorm: the cell's 1x1 input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False),
                         Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convolutions, concatenated.

    The second path reads the input shifted by one pixel (zero-padded at the
    far edge), so both paths give ceil(H / 2) for odd sizes as well.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k (dilated) convolution, pointwise 1x1 convolution, BatchNorm."""

    def __init__(self, c: int, kernel: int, stride: int, dilation: int):
        pad = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(inplace=False),
                         Conv2d(c, c, kernel, stride, pad, dilation=dilation, groups=c,
                                   bias=False),
                         Conv2d(c, c, 1, bias=False),
                         nn.BatchNorm2d(c))


class SepConv(nn.Sequential):
    """Two stacked undilated DilConv blocks; only the first one strides (as in DARTS)."""

    def __init__(self, c: int, kernel: int, stride: int):
        super().__init__(DilConv(c, kernel, stride, 1), DilConv(c, kernel, 1, 1))


def build_op(name: str, c: int, stride: int) -> nn.Module:
    """A fresh module for one candidate op on a C-channel edge."""
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name.startswith(("sep_conv_", "dil_conv_")):
        kernel = int(name[-1])
        return SepConv(c, kernel, stride) if name.startswith("sep") else DilConv(c, kernel, stride, 2)
    raise ValueError(f"darts: unknown op {name!r}; choose one of {', '.join(PRIMITIVES)}")


# --- exact costs -------------------------------------------------------------------------------
def relu_conv_bn_params(c_in: int, c_out: int, kernel: int = 1) -> int:
    return c_in * c_out * kernel * kernel + 2 * c_out


def factorized_reduce_params(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out


def op_params(name: str, c: int, stride: int) -> int:
    """Parameters of `build_op(name, c, stride)`."""
    if name in ("none", "max_pool_3x3", "avg_pool_3x3"):
        return 0
    if name == "skip_connect":
        return 0 if stride == 1 else factorized_reduce_params(c, c)
    kernel = int(name[-1])
    dil = c * kernel * kernel + c * c + 2 * c
    return 2 * dil if name.startswith("sep") else dil


def relu_conv_bn_flops(c_in: int, c_out: int, size: int, kernel: int = 1) -> int:
    """Multiply-adds of a stride-1 ReLUConvBN on a size x size input."""
    hw = size * size
    return c_in * hw + c_in * c_out * kernel * kernel * hw + 2 * c_out * hw


def factorized_reduce_flops(c_in: int, c_out: int, size_in: int) -> int:
    """ReLU at the input resolution; both 1x1 convolutions and the BN at the output one."""
    hw_out = reduced(size_in, 2) ** 2
    return c_in * size_in * size_in + c_in * c_out * hw_out + 2 * c_out * hw_out


def _dil_flops(c: int, kernel: int, size_in: int, stride: int) -> int:
    hw_out = reduced(size_in, stride) ** 2
    return c * size_in * size_in + (c * kernel * kernel + c * c + 2 * c) * hw_out


def op_flops(name: str, c: int, stride: int, size_in: int) -> int:
    """Multiply-adds of `build_op(name, c, stride)` on one size_in x size_in input."""
    size_out = reduced(size_in, stride)
    if name in ("none", "max_pool_3x3"):
        return 0
    if name == "avg_pool_3x3":
        return c * size_out * size_out
    if name == "skip_connect":
        return 0 if stride == 1 else factorized_reduce_flops(c, c, size_in)
    kernel = int(name[-1])
    if name.startswith("dil"):
        return _dil_flops(c, kernel, size_in, stride)
    return _dil_flops(c, kernel, size_in, stride) + _dil_flops(c, kernel, size_out, 1)


__all__ = [
    "NONE",
    "PRIMITIVES",
    "DilConv",
    "FactorizedReduce",
    "Normalize",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "build_op",
    "factorized_reduce_flops",
    "factorized_reduce_params",
    "op_flops",
    "op_params",
    "reduced",
    "relu_conv_bn_flops",
    "relu_conv_bn_params",
]
