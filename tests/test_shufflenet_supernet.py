"""ShuffleNetV2 supernet: shared weights, sliced widths, sliced BN, the relaxed mixture, layer one.

Extract -> standalone, one-hot relaxed forward and the YOPO split are contract
tests for every space (tests/contract/test_space_contract.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from shufflenet_configs import CONFIGS
from supernet_checks import one_hot, randomize_bn
from tolerances import assert_rounding_close

import tamnas
from tamnas.supernets.shufflenet.blocks import sliced_bn
from tamnas.supernets.shufflenet.space import ShuffleNetSpace

torch.set_num_threads(1)   # tiny tensors: threads only contend on a shared 2-core machine



def space_of(name: str, **overrides) -> ShuffleNetSpace:
    cfg = {**CONFIGS[name], **{f"space.{k}": v for k, v in overrides.items()}}
    return tamnas.build_space(tamnas.load_config("quickstart", cfg))


def randomized_supernet(space: ShuffleNetSpace, seed: int = 0):
    """A supernet whose BN statistics and affine parameters are far from their defaults."""
    torch.manual_seed(seed)
    return randomize_bn(space.build_supernet(), seed)


def inputs(space: ShuffleNetSpace, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, space.in_channels, space.resolution, space.resolution, generator=g)


def test_layer_one_is_one_normalisation_then_a_bare_3x3_conv():
    space = space_of("tiny-rgb-w")
    supernet = randomized_supernet(space)
    x = inputs(space)
    arch = space.sample(np.random.default_rng(1))
    net = space.build_standalone(arch)
    net.load_state_dict(supernet.extract(arch))
    net.eval()
    mean = torch.tensor(space.mean).view(1, -1, 1, 1)
    std = torch.tensor(space.std).view(1, -1, 1, 1)
    with torch.no_grad():
        for model in (supernet, net):
            z = model.first_layer(x)
            ref = F.conv2d((x - mean) / std, model.first_layer.conv.weight, padding=1)
            # a 3 x 3 conv over the input channels, after one normalisation
            assert_rounding_close(z, ref, terms=9 * x.shape[1], depth=2)
    assert [n for n, _ in supernet.first_layer.named_parameters()] == ["conv.weight"]


def test_archs_sharing_a_layer_choice_share_its_weights():
    space = space_of("tiny", weight_sharing="none")     # candidates own their weights
    supernet = randomized_supernet(space)
    x = inputs(space)
    # same block in layer 2 (ShuffleV2 k3), different ratios there and different choices elsewhere
    a = (1, 9, 4, 9, 0, 9)
    b = (7, 3, 10, 2, 0, 4)
    c = (7, 3, 10, 2, 3, 4)                    # layer 2 uses another block
    with torch.no_grad():
        before = [supernet(x, arch) for arch in (a, b, c)]
        # the first intermediate channel exists at every ratio: both paths must see the change
        supernet.layers[2].candidates[0].pw1.weight[0].mul_(-3.0).add_(0.5)
        after = [supernet(x, arch) for arch in (a, b, c)]
    assert (after[0] - before[0]).abs().max() > 1e-4
    assert (after[1] - before[1]).abs().max() > 1e-4
    assert torch.equal(after[2], before[2])
    # a channel past ratio 1.0's width is used by ratio 2.0 (a) only, not by ratio 1.0 (b)
    with torch.no_grad():
        k = supernet.layers[2].mids[0][4]
        supernet.layers[2].candidates[0].bn2.bias[k] += 1.0     # feeds pw2 directly (no ReLU)
        again = [supernet(x, arch) for arch in (a, b)]
    assert (again[0] - after[0]).abs().max() > 1e-4
    assert torch.equal(again[1], after[1])


def test_single_path_training_touches_only_the_path():
    space = space_of("tiny", weight_sharing="none")     # candidates own their weights
    supernet = randomized_supernet(space).train()
    arch = (2, 4, 5, 1, 19, 3)
    loss = supernet(inputs(space, 4), arch).square().mean()
    loss.backward()
    for i, layer in enumerate(supernet.layers):
        for j, cand in enumerate(layer.candidates):
            grads = [p.grad for p in cand.parameters()]
            if j == arch[2 * i]:
                assert any(g is not None and g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads)
    # sliced weights: rows past the path's width get no gradient
    cand = supernet.layers[1].candidates[5]
    k = supernet.layers[1].mids[5][1]
    assert cand.pw1.weight.grad[k:].abs().sum() == 0 and cand.pw1.weight.grad[:k].abs().sum() > 0


def test_sliced_batchnorm_updates_only_its_slice():
    bn = torch.nn.BatchNorm2d(6)
    x = torch.randn(8, 4, 3, 3) * 2 + 1
    y = sliced_bn(x, bn)
    ref = torch.nn.BatchNorm2d(4)
    terms = 8 * 3 * 3                           # batch statistics sum over N x H x W
    assert_rounding_close(y, ref(x), terms, depth=2)
    assert_rounding_close(bn.running_mean[:4], ref.running_mean, terms)
    assert torch.all(bn.running_mean[4:] == 0)
    assert_rounding_close(bn.running_var[:4], ref.running_var, terms, depth=2)
    assert torch.all(bn.running_var[4:] == 1)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    ref.eval()
    assert_rounding_close(sliced_bn(x, bn), ref(x), terms, depth=2)
    bn.train()
    bn.momentum = None                          # cumulative average, as BN recalibration uses
    sliced_bn(x * 0, bn)
    assert_rounding_close(bn.running_mean[:4], ref.running_mean / 2, terms, depth=2)


def test_relaxed_forward_mixes_and_is_differentiable():
    space = space_of("tiny-subset")
    supernet = randomized_supernet(space)
    x = inputs(space)
    g = torch.Generator().manual_seed(3)
    alpha = [torch.randn(gene.choices, generator=g).requires_grad_() for gene in space.genes]
    probs = [torch.softmax(a, 0) for a in alpha]
    out = supernet.forward_relaxed(x, probs)
    out.square().mean().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alpha)
    # a mixture of two blocks in the last layer is their probability-weighted sum there
    arch = space.sample(np.random.default_rng(4))
    p = one_hot(space, arch)
    last = len(space.layers) - 1
    first_two = [torch.zeros_like(p[2 * last]) for _ in range(2)]
    first_two[0][0], first_two[1][1] = 1.0, 1.0
    mixed = list(p)
    mixed[2 * last] = 0.3 * first_two[0] + 0.7 * first_two[1]
    with torch.no_grad():
        h = supernet.first_layer(x)
        h = F.relu(supernet.stem_bn(h))
        for i, layer in enumerate(supernet.layers[:-1]):
            h = layer(h, arch[2 * i], arch[2 * i + 1])
        r = arch[2 * last + 1]
        mix = 0.3 * supernet.layers[last](h, 0, r) + 0.7 * supernet.layers[last](h, 1, r)
        assert (supernet.forward_relaxed(x, mixed) - supernet.head(mix)).abs().max() < 1e-5


def test_relaxed_forward_rejects_wrong_shapes():
    space = space_of("tiny")
    supernet = space.build_supernet()
    x = inputs(space)
    probs = one_hot(space, space.sample(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="layer0.block needs 18"):
        supernet.forward_relaxed(x, [torch.ones(22) / 22] + probs[1:])
    with pytest.raises(ValueError, match="expected 6"):
        supernet.forward_relaxed(x, probs[:-1])


def test_supernet_rejects_illegal_archs():
    space = space_of("tiny")
    supernet = space.build_supernet()
    with pytest.raises(ValueError, match=r"layer1\.block = 19"):
        supernet(inputs(space), (0, 0, 19, 0, 0, 0))
    with pytest.raises(ValueError, match=r"layer2\.ratio"):
        supernet.extract((0, 0, 0, 0, 0, 10))
