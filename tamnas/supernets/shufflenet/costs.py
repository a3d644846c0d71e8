"""Closed-form parameter and multiply-add counts of the ShuffleNetV2 space, tabulated per choice.

Each count is written out from the modules `blocks.py` builds (Table I and
XIV of paper 004), not measured from them, so the tests that compare the two check both.
FLOPs are multiply-adds for one input image: convolutions (out pixels x
in/groups x k x k x out channels), linear layers, and the two matrix products
of each non-local layer (N^2 x pairwise channels and N^2 x inner, N = H x W).
Elementwise work (BN, activations, pooling, softmax, SE gating, residual adds)
is not counted.
"""

from __future__ import annotations

import numpy as np

from tamnas.supernets.shufflenet.layout import BLOCKS, ShuffleNetLayout


def se_params(c: int, h: int) -> int:
    return c * h + h + h * c + c


def nl_params(c: int, inner: int, mode: str, bn: bool) -> int:
    n_in = 3 if mode == "embedded" else 1
    return n_in * (c * inner + inner) + inner * c + (2 * c if bn else c)


def nl_macs(c: int, inner: int, mode: str, n: int) -> int:
    n_in = 3 if mode == "embedded" else 1
    pair = inner if mode == "embedded" else c
    return n_in * n * c * inner + n * inner * c + n * n * (pair + inner)


def block_cost(layout: ShuffleNetLayout, layer: int, block_id: int, mid: int) -> tuple[int, int]:
    """(parameters, multiply-adds) of one block at intermediate width `mid`."""
    s, b = layout.layers[layer], BLOCKS[block_id]
    n_in, n_out = s.in_res * s.in_res, s.out_res * s.out_res
    if b.family == "robust":
        c = s.out_channels
        h = layout.se_hidden(c)
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
        inner = layout.nl_inner(br)
        p += nl_params(br, inner, b.nonlocal_mode, True)
        f += nl_macs(br, inner, b.nonlocal_mode, n_out)
    h = layout.se_hidden(br)
    return p + se_params(br, h), f + 2 * br * h


def cost_tables(layout: ShuffleNetLayout) -> tuple[dict[str, int], dict[str, list[np.ndarray]]]:
    """(constant, tables) per cost kind: cost(arch) = constant + sum_l table[l][block, ratio].

    The constant is the stem and the head; table[l] holds every offered
    (block, ratio) of choice layer l at the width `layout.mids` gives it.
    """
    c_last = layout.layers[-1].out_channels
    res_last = layout.layers[-1].out_res
    hd, h = layout.head_channels, layout.se_hidden(layout.head_channels)
    fc_in = (hd, *layout.fc_channels)
    fc_out = (*layout.fc_channels, layout.num_classes)
    const = {
        "params": (layout.in_channels * layout.stem_channels * 9 + 2 * layout.stem_channels
                   + c_last * hd + 2 * hd + se_params(hd, h)
                   + sum(a * b + b for a, b in zip(fc_in, fc_out))),
        "flops": (layout.resolution ** 2 * layout.in_channels * layout.stem_channels * 9
                  + res_last ** 2 * c_last * hd + 2 * hd * h
                  + sum(a * b for a, b in zip(fc_in, fc_out)))}
    tables: dict[str, list[np.ndarray]] = {"params": [], "flops": []}
    for spec in layout.layers:
        ids, mids = layout.choices[spec.index], layout.mids[spec.index]
        costs = np.array([[block_cost(layout, spec.index, b, int(m)) for m in row]
                          for b, row in zip(ids, mids)], dtype=np.int64)
        tables["params"].append(costs[..., 0])
        tables["flops"].append(costs[..., 1])
    return const, tables


__all__ = ["block_cost", "cost_tables", "nl_macs", "nl_params", "se_params"]
