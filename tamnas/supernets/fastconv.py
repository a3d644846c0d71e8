"""Convolutions routed to the CPU kernels that are fast at this project's widths.

At the widths tiny spaces use (1-100 channels, 2x2 to 32x32 maps) oneDNN's
default NCHW convolution spends most of its time outside the arithmetic:
measured on one core (benchmarks/conv_speed.py), a 1x1 convolution of a
64 x 4 x 8 x 8 batch takes 3-5x longer forward + backward than the same
product as one `matmul`, and a depthwise 3x3 on 64 x 4 x 16 x 16 takes 2-3x
longer than the same call in channels-last layout. So on CPU:

- 1x1, stride 1, no padding, one group: a matmul over the channel axis;
- every other convolution: oneDNN in channels-last layout, the result handed
  back in the usual contiguous layout (so the rest of the net never sees a
  layout change).

Both give the convolution's own result: channels-last calls the same
arithmetic in another memory order, the matmul sums the same products in
another order (float32 rounding, ~1e-6 relative). CUDA and any other device
use `F.conv2d` unchanged (cuDNN has no such overhead).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

_ENABLED = [True]


@contextmanager
def plain_convolutions() -> Iterator[None]:
    """Inside: every `conv2d` is plain `F.conv2d` (benchmarks and tests compare the two)."""
    _ENABLED.append(False)
    try:
        yield
    finally:
        _ENABLED.pop()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """`F.conv2d` with the same arguments; on CPU through the faster kernels above."""
    if not _ENABLED[-1] or x.device.type != "cpu" or x.dim() != 4 or isinstance(padding, str):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    out_c, in_c, kh, kw = weight.shape
    if ((kh, kw) == (1, 1) and groups == 1 and _pair(stride) == (1, 1)
            and _pair(padding) == (0, 0)):
        b, c, h, w = x.shape
        y = torch.matmul(weight.reshape(out_c, in_c), x.reshape(b, c, h * w))
        if bias is not None:
            y = y + bias.view(1, out_c, 1).to(y.dtype)    # bf16 under autocast, as conv2d
        return y.view(b, out_c, h, w)
    y = F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias, stride, padding,
                 dilation, groups)
    return y.contiguous()


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` (same arguments, parameters and state-dict keys) running `conv2d`."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(x, weight, bias)
        return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
