"""Checks every supernet path must pass, shared by the contract suite and the per-space tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tolerances import assert_rounding_close, network_terms_and_depth
from torch import nn

from tamnas.supernets.base import Arch, SearchSpace, Supernet


def randomize_bn(net: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and affine parameters far from their defaults, so no path is trivial.

    Fresh BN layers (mean 0, var 1, weight 1, bias 0) make a supernet path and a
    wrongly wired standalone net agree more often than they should.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                    m.bias.copy_(0.3 * torch.randn(n, generator=gen))
    return net.eval()


def one_hot(space: SearchSpace, arch: Sequence[int], dtype=torch.float32) -> list[torch.Tensor]:
    """Per gene a probability vector with all its mass on the arch's value."""
    return [nn.functional.one_hot(torch.tensor(int(v)), g.choices).to(dtype)
            for v, g in zip(arch, space.genes)]


def standalone_of(space: SearchSpace, supernet: Supernet, arch: Arch) -> nn.Module:
    """build_standalone(arch) holding exactly the supernet's weights of the path (strict load)."""
    net = space.build_standalone(arch)
    state = supernet.extract(arch)
    assert set(state) == set(net.state_dict()), "extract() and the standalone net name different tensors"
    net.load_state_dict(state)
    return net.to(next(supernet.parameters()).dtype).eval()


def assert_extract_matches_path(space: SearchSpace, supernet: Supernet, arch: Arch,
                                x: torch.Tensor) -> torch.Tensor:
    """The extracted standalone net gives the supernet path's eval-mode outputs; returns them.

    Both compute the same sums, perhaps in another order (sliced weights), so
    they may differ by the rounding of the net's largest fan-in over its depth.
    """
    net = standalone_of(space, supernet, arch)
    supernet.eval()
    with torch.no_grad():
        expected, got = supernet(x, arch), net(x)
    terms, depth = network_terms_and_depth(net)
    assert_rounding_close(got, expected, terms, depth, msg=lambda m: f"arch {arch}: {m}")
    return expected
