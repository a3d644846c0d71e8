"""The fused non-local layer equals the explicit bmm-softmax-bmm formula, outputs and gradients.

`reference_forward` is the layer as first written (paper 004 / Wang et al.):
f = theta^T phi (or x^T x), y = g softmax(f)^T, z = W(y) + x. Every
non-local block of two small spaces is run at every ratio (sliced width) and
with a relaxed soft mask, once through the library and once with the
reference patched in; the two must agree to float32 rounding.

Tolerance: tests/tolerances.py's estimate for the longest sum in the chain
(outputs: max of the positions N and the widest fan-in; weight gradients
also sum over batch x positions) and its depth (the block's weighted layers
plus the three reductions of the pairwise term; twice that for gradients).
Its scale also covers the softmax: a rounding error d in a logit moves the
weights by about d relative, so the output moves by |logit| * d * |value|,
hence scale >= max |logit| * max |value| (this is also the scale of phi's
bias gradient, exactly zero by the softmax's shift invariance). Blocks run
in eval mode: in train mode BatchNorm's centring makes further gradients
exact zeros (g's bias, in front of W + BN) whose computed value is rounding
noise on addends as large as the upstream gradient, a scale this test does
not measure.
"""

from __future__ import annotations

import functools

import pytest
import torch
from shufflenet_configs import CONFIGS
from tolerances import assert_rounding_close

from tamnas.config import load_config
from tamnas.supernets import build_space
from tamnas.supernets.shufflenet.blocks import NonLocal, _masked, attend, sliced_conv

PAIRWISE_REDUCTIONS = 3      # q . k, the softmax's normaliser, the weighted sum over positions


def reference_forward(self: NonLocal, x: torch.Tensor, k: int | None = None,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """The explicit formula: two batched matrix products around an N x N softmax."""
    b, _, h, w = x.shape
    g = _masked(sliced_conv(x, self.g, k, "out"), mask).flatten(2)            # B, k, N
    if self.mode == "embedded":
        theta = _masked(sliced_conv(x, self.theta, k, "out"), mask).flatten(2)
        phi = _masked(sliced_conv(x, self.phi, k, "out"), mask).flatten(2)
        f = torch.bmm(theta.transpose(1, 2), phi)                              # B, N, N
    else:
        xf = x.flatten(2)
        f = torch.bmm(xf.transpose(1, 2), xf)
    y = torch.bmm(g, f.softmax(dim=-1).transpose(1, 2)).view(b, -1, h, w)     # B, k, H, W
    z = sliced_conv(y, self.w, k, "in")
    if self.w_bn is not None:
        z = self.w_bn(z)
    return z + x


def _pairwise_scale(block: torch.nn.Module, x: torch.Tensor) -> float:
    """max |logit| * max |value| over the block's non-local layer, as it runs on x."""
    seen = []

    def hook(m, inputs, _):
        h = inputs[0].detach()
        q = m.theta(h) if m.mode == "embedded" else h
        kk = m.phi(h) if m.mode == "embedded" else h
        logits = torch.einsum("bcn,bcm->bnm", q.flatten(2), kk.flatten(2))
        seen.append(float(logits.abs().max()) * float(m.g(h).abs().max()))

    nl = block.nl
    handle = nl.register_forward_hook(hook)
    with torch.no_grad():
        block(x)
    handle.remove()
    return max(seen)


def _run(block: torch.nn.Module, x: torch.Tensor, k: int | None, mask: torch.Tensor | None):
    x = x.clone().requires_grad_(True)
    block.zero_grad(set_to_none=True)
    out = block(x, k, mask)
    # a fixed random cotangent, so no gradient is zero by symmetry
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * cot).sum().backward()
    grads = {"x": x.grad.clone(), **{n: p.grad.clone() for n, p in block.named_parameters()
                                     if p.grad is not None}}
    return out.detach(), grads


@functools.cache
def _supernet(config: str):
    """A small space and its supernet (random weights, seeded)."""
    space = build_space(load_config("quickstart", CONFIGS[config]))
    torch.manual_seed(0)
    return space, space.build_supernet()


def _nonlocal_candidates(config: str) -> list[tuple[str, int, int]]:
    """(config, layer index, candidate index) of every candidate with a non-local layer."""
    _, net = _supernet(config)
    return [(config, i, j) for i, layer in enumerate(net.layers)
            for j, cand in enumerate(layer.candidates) if getattr(cand, "nl", None) is not None]


# "tiny-rgb-w" has nonlocal_reduction 1: its Gaussian layers carry more inner than paired channels
CASES = [c for name in ("tiny", "tiny-rgb-w") for c in _nonlocal_candidates(name)]


@pytest.mark.parametrize("name,layer,cand", CASES)
def test_every_nonlocal_block_at_every_ratio_matches_the_explicit_formula(
        name, layer, cand, monkeypatch):
    space, net = _supernet(name)
    choice = net.layers[layer]
    block = choice.candidates[cand].eval()
    spec = space.layers[layer]
    gen = torch.Generator().manual_seed(layer * 100 + cand)
    x = torch.randn(2, spec.in_channels, spec.in_res, spec.in_res, generator=gen)
    positions = spec.out_res ** 2
    weighted = [m for m in block.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    terms = max(positions, *(m.weight[0].numel() for m in weighted))
    grad_terms = max(terms, len(x) * spec.in_res ** 2)      # weight gradients sum over B x N
    depth = len(weighted) + PAIRWISE_REDUCTIONS
    scale_floor = _pairwise_scale(block, x)
    masks = getattr(choice, f"mask{cand}")
    runs = [(k if k != choice.max_mids[cand] else None, None) for k in choice.mids[cand]]
    soft = torch.rand(masks.shape[0], generator=gen)
    runs.append((None, (soft / soft.sum()) @ masks))       # a relaxed forward's soft mask
    for k, mask in runs:
        out, grads = _run(block, x, k, mask)
        with monkeypatch.context() as m:
            m.setattr(NonLocal, "forward", reference_forward)
            ref_out, ref_grads = _run(block, x, k, mask)
        where = f"{name} layer {layer} block {space.choices[layer][cand]} k={k} mask={mask is not None}"
        scale = max(float(ref_out.abs().max()), scale_floor)
        assert_rounding_close(out, ref_out, terms, depth, msg=where, scale=scale)
        assert grads.keys() == ref_grads.keys()
        for key, g in grads.items():
            g_scale = max(float(ref_grads[key].abs().max()), scale_floor)
            assert_rounding_close(g, ref_grads[key], grad_terms, 2 * depth, scale=g_scale,
                                  msg=f"{where}: gradient of {key}")


@pytest.mark.parametrize("value_width,pair_width", [(3, 3), (2, 5), (6, 4)])
def test_attend_is_softmax_attention_over_positions(value_width, pair_width):
    """attend against a float64 loop-free formula, including unequal (padded) widths."""
    gen = torch.Generator().manual_seed(value_width * 10 + pair_width)
    q = torch.randn(2, pair_width, 3, 5, generator=gen)
    k = torch.randn(2, pair_width, 3, 5, generator=gen)
    v = torch.randn(2, value_width, 3, 5, generator=gen)
    logits = torch.einsum("bci,bcj->bij", q.double().flatten(2), k.double().flatten(2))
    expected = torch.einsum("bij,bcj->bci", logits.softmax(-1), v.double().flatten(2))
    out = attend(q, k, v)
    assert out.shape == v.shape
    scale = float(logits.abs().max()) * float(v.abs().max())
    assert_rounding_close(out.flatten(2), expected.float(), terms=15, depth=PAIRWISE_REDUCTIONS,
                          scale=scale)
    # the Gaussian form passes one tensor as queries and keys
    same = attend(q, q, v)
    logits = torch.einsum("bci,bcj->bij", q.double().flatten(2), q.double().flatten(2))
    expected = torch.einsum("bij,bcj->bci", logits.softmax(-1), v.double().flatten(2))
    assert_rounding_close(same.flatten(2), expected.float(), terms=15, depth=PAIRWISE_REDUCTIONS,
                          scale=float(logits.abs().max()) * float(v.abs().max()))


def test_attention_never_keeps_the_position_by_position_matrix():
    """The backward's saved tensors hold nothing of size N x N (the point of the fused call)."""
    torch.manual_seed(0)
    nl = NonLocal(4, 2, "embedded")
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    n = 144
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        nl(x)
    assert sizes and max(sizes) < 2 * n * n
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        reference_forward(nl, x)
    assert max(sizes) >= 2 * n * n      # the explicit formula keeps B x N x N for its backward


@pytest.mark.parametrize("value_width,pair_width,align", [(1, 1, 1), (1, 3, 8), (5, 2, 8)])
def test_zero_padding_to_an_aligned_width_changes_nothing(value_width, pair_width, align):
    """CUDA pads every width to a multiple of 8; the same padding on CPU gives the same values.

    Also width 1, whose copy must still have unit stride for the fused kernel.
    """
    gen = torch.Generator().manual_seed(value_width + 7 * pair_width + align)
    q, k = (torch.randn(3, pair_width, 4, 4, generator=gen) for _ in range(2))
    v = torch.randn(3, value_width, 4, 4, generator=gen)
    logits = torch.einsum("bci,bcj->bij", q.double().flatten(2), k.double().flatten(2))
    expected = torch.einsum("bij,bcj->bci", logits.softmax(-1), v.double().flatten(2)).float()
    scale = float(logits.abs().max()) * float(v.abs().max())
    out = attend(q, k, v, align=align)
    assert out.shape == v.shape
    assert_rounding_close(out.flatten(2), expected, terms=16, depth=PAIRWISE_REDUCTIONS, scale=scale)


def test_width_one_heads_take_the_fused_kernel():
    """The positions copy of a one-channel map has unit last stride (else: the slow fallback)."""
    from tamnas.supernets.shufflenet.blocks import _positions

    t = _positions(torch.randn(2, 1, 5, 5), 1)
    assert t.shape == (2, 1, 25, 1) and t.stride(-1) == 1
