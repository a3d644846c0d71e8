"""fastconv: the CPU routes give the convolution's own result, value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_rounding_close

from tamnas.supernets.fastconv import Conv2d, conv2d, plain_convolutions

# (in, out, size, kernel, stride, groups, bias): the 1x1 matmul route, depthwise and the stem's
# 3x3 through channels-last, and the cases that must fall through (strided 1x1, grouped).
CASES = [(4, 2, 8, 1, 1, 1, False), (6, 6, 3, 1, 1, 1, True), (12, 24, 4, 1, 1, 1, True),
         (8, 8, 8, 3, 1, 8, False), (8, 8, 9, 7, 2, 8, False), (1, 4, 16, 3, 1, 1, False),
         (4, 6, 8, 1, 2, 1, True), (8, 4, 8, 3, 1, 2, True)]


@pytest.mark.parametrize(("cin", "cout", "size", "k", "stride", "groups", "bias"), CASES)
def test_conv2d_equals_f_conv2d_in_value_and_gradients(cin, cout, size, k, stride, groups, bias):
    g = torch.Generator().manual_seed(cin * 100 + size)
    x = torch.randn(5, cin, size, size, generator=g)
    w = torch.randn(cout, cin // groups, k, k, generator=g)
    b = torch.randn(cout, generator=g) if bias else None
    seed = torch.randn(5, cout, (size + 2 * (k // 2) - k) // stride + 1,
                       (size + 2 * (k // 2) - k) // stride + 1, generator=g)
    results = []
    for route in (conv2d, F.conv2d):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        bs = b.clone().requires_grad_() if bias else None
        y = route(xs, ws, bs, stride, k // 2, 1, groups)
        (y * seed).sum().backward()
        results.append([y, xs.grad, ws.grad] + ([bs.grad] if bias else []))
    terms = cin // groups * k * k
    for name, a, e in zip(["output", "input grad", "weight grad", "bias grad"], *results):
        # the weight gradient sums over batch and positions as well
        n = terms if name != "weight grad" else 5 * size * size
        scale = float(e.abs().max()) + float(x.abs().max() * w.abs().max() * terms)
        assert_rounding_close(a, e, n, 2, msg=name, scale=scale)


def test_module_keeps_conv2d_state_and_plain_convolutions_switches_the_route():
    torch.manual_seed(0)
    fast, plain = Conv2d(4, 3, 1, bias=True), torch.nn.Conv2d(4, 3, 1, bias=True)
    plain.load_state_dict(fast.state_dict())
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 4, 5, 5)
    with plain_convolutions():     # the very same kernel: bit for bit
        assert torch.equal(fast(x), plain(x))
    assert_rounding_close(fast(x), plain(x), 4, 1)
