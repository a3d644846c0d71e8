"""Weight entanglement in the ShuffleNetV2 supernet: tied candidates, centre-cropped kernels, exact extract."""

from __future__ import annotations

import pytest
import torch
from supernet_checks import assert_extract_matches_path
from test_shufflenet_supernet import inputs, randomized_supernet, space_of

from tamnas.supernets.shufflenet.layout import BLOCKS
from tamnas.supernets.shufflenet.sharing import CentreCrop
from tamnas.supernets.shufflenet.supernet import WEIGHT_SHARING

torch.set_num_threads(1)


def covering_archs(space, every_ratio: bool = True) -> list[tuple[int, ...]]:
    """Few archs that together put every offered block at every ratio (or at both end ratios) in every layer.

    Arch t uses pair t mod (blocks x ratios) of each layer, so the largest layer's pair
    count is enough archs to cover every layer's pairs.
    """
    ratios = range(space.genes[1].choices) if every_ratio else (0, space.genes[1].choices - 1)
    pairs = [[(b, r) for b in range(space.genes[2 * i].choices) for r in ratios]
             for i in range(len(space.layers))]
    n = max(len(p) for p in pairs)
    return [tuple(v for p in pairs for v in p[t % len(p)]) for t in range(n)]


@pytest.mark.parametrize(("name", "level", "every_ratio"), [
    ("tiny", "family", True), ("tiny-rgb-w", "family", True),
    ("tiny", "kernel", False), ("tiny", "projection", False), ("tiny-rgb-w", "none", False)])
def test_every_block_at_every_ratio_extracts_to_the_same_outputs(name, level, every_ratio):
    space = space_of(name, weight_sharing=level)
    supernet = randomized_supernet(space)
    x = inputs(space, n=2)
    for arch in covering_archs(space, every_ratio):
        assert_extract_matches_path(space, supernet, arch, x)


def test_centre_cropped_kernel_is_the_middle_of_the_shared_one():
    space = space_of("tiny", weight_sharing="projection")
    supernet = space.build_supernet()
    layer = supernet.layers[0]                         # stride 2: k3, k5, k7 projection branches
    by_kernel = {BLOCKS[b].kernel: c for b, c in zip(space.choices[0], layer.candidates)
                 if BLOCKS[b].family == "shufflev2" and BLOCKS[b].nonlocal_mode is None}
    shared = by_kernel[7].proj_dw
    assert isinstance(shared, torch.nn.Conv2d) and shared.kernel_size == (7, 7)
    for k, offset in ((3, 2), (5, 1)):
        view = by_kernel[k].proj_dw
        assert isinstance(view, CentreCrop)
        assert torch.equal(view.weight, shared.weight[:, :, offset:offset + k, offset:offset + k])
        x = torch.randn(2, shared.in_channels, 6, 6)
        ref = torch.nn.functional.conv2d(x, shared.weight[:, :, offset:offset + k, offset:offset + k],
                                         None, 2, k // 2, 1, shared.groups)
        assert torch.equal(view(x), ref)
        with torch.no_grad():                           # a view, not a copy
            shared.weight[:, :, 3, 3] += 1.0
        assert torch.equal(view.weight, shared.weight[:, :, offset:offset + k, offset:offset + k])


def test_sharing_levels_tie_what_they_promise():
    counts = {}
    for level in WEIGHT_SHARING:
        supernet = space_of("tiny", weight_sharing=level).build_supernet()
        counts[level] = sum(p.numel() for p in supernet.parameters())
        layer0 = supernet.layers[0].candidates               # stride 2, blocks 0..17
        proj = {id(c.proj_pw) for c in layer0}
        body = {id(c.pw1) for c in layer0}
        if level == "none":
            assert len(proj) == 18 and len(body) == 18
        else:
            assert len(proj) == 1                             # one projection branch per stride-2 layer
        if level == "kernel":
            assert len(body) == 6                             # family x non-local mode
        if level == "family":
            assert len(body) == 2                             # ShuffleV2, Xception
            nls = {id(c.nl) for c in layer0 if c.nl is not None}
            assert len(nls) == 4                              # family x {embedded, Gaussian}
    assert counts["none"] > counts["projection"] > counts["kernel"] > counts["family"]


def test_a_gradient_step_through_one_kernel_moves_the_shared_weight_of_the_others():
    space = space_of("tiny", weight_sharing="kernel")
    supernet = randomized_supernet(space).train()
    k3, k7 = (0, 0, 0, 0, 0, 0), (2, 0, 0, 0, 0, 0)         # layer 0: ShuffleV2 k3 vs k7
    supernet(inputs(space, 4), k3).square().mean().backward()
    dw = supernet.layers[0].candidates[2].dw                  # the k7 kernel, which k3 crops
    grad = dw.weight.grad
    assert grad[:, :, 2:5, 2:5].abs().sum() > 0               # the centre got the k3 path's gradient
    assert grad[:, :, 0].abs().sum() == 0 and grad[:, :, :, 0].abs().sum() == 0   # the rim did not
    assert supernet.layers[0].candidates[0].dw.conv is dw
    assert supernet.layers[0].candidates[2].dw is dw        # k7 owns it
    supernet.zero_grad()
    supernet(inputs(space, 4), k7).square().mean().backward()
    assert dw.weight.grad[:, :, 0].abs().sum() > 0            # the full kernel trains on the k7 path


def test_unknown_sharing_level_is_a_clear_error():
    with pytest.raises(ValueError, match="weight_sharing"):
        space_of("tiny", weight_sharing="everything")

