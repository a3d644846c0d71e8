"""FLOPs of a network counted by forward hooks, from the shapes each layer really sees.

The independent check of every space's closed-form `flops(arch)`: one
counter, and per space the counting rules its paper uses (a rule per module
type). Every leaf module must have a rule, so a new layer type that the
space's cost table forgets cannot slip through as an uncounted zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], int]


def conv_macs(m: nn.Conv2d, x: torch.Tensor, out: torch.Tensor) -> int:
    return out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]


def linear_macs(m: nn.Linear, x: torch.Tensor, out: torch.Tensor) -> int:
    return m.in_features * m.out_features


def nothing(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    return 0


def count_flops(net: nn.Module, x: torch.Tensor, rules: Mapping[type, Rule]) -> int:
    """Operations of `net` on the first image of `x` in eval mode, summed over its modules.

    A module takes the rule of the first type in `rules` it is an instance of;
    containers without a rule count nothing themselves (their children do).
    """
    containers = (nn.ModuleList, nn.ModuleDict, nn.Sequential)   # may be empty: no leaf
    leaves = [m for m in net.modules() if not list(m.children()) and not isinstance(m, containers)]
    missing = {type(m).__name__ for m in leaves if not isinstance(m, tuple(rules))}
    assert not missing, f"no FLOPs rule for leaf modules {sorted(missing)}"
    total = 0

    def hook(rule: Rule):
        def count(m, inputs, out):
            nonlocal total
            total += int(rule(m, inputs[0][:1] if inputs else None, out[:1]))
        return count

    handles = []
    for m in net.modules():
        rule = next((r for t, r in rules.items() if isinstance(m, t)), None)
        if rule is not None:
            handles.append(m.register_forward_hook(hook(rule)))
    try:
        with torch.no_grad():
            net.eval()(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


# -- the rules of each space --------------------------------------------------------------------------
def shufflenet_rules() -> dict[type, Rule]:
    """Multiply-adds of convolutions, linear layers and the non-local layers' two matmuls."""
    from tamnas.supernets.shufflenet.blocks import NonLocal

    def nonlocal_matmuls(m, x, out):
        # the pairwise term (N x N over `pair` channels) and the aggregation (N x N over inner)
        _, c, h, w = x.shape
        n, inner = h * w, m.g.out_channels
        pair = c if m.mode == "gaussian" else inner
        return n * n * pair + n * n * inner

    return {nn.Conv2d: conv_macs, nn.Linear: linear_macs, NonLocal: nonlocal_matmuls,
            nn.BatchNorm2d: nothing}


def e2rnas_rules() -> dict[type, Rule]:
    """The E2RNAS rules (paper 001, IV-B2): BN two ops per output, ReLU and pooling one per element."""
    from tamnas.supernets.darts.ops import Normalize

    return {nn.Conv2d: conv_macs, nn.Linear: linear_macs,
            nn.BatchNorm2d: lambda m, x, out: 2 * out.numel(),
            nn.ReLU: lambda m, x, out: x.numel(),
            nn.AvgPool2d: lambda m, x, out: out.numel(),
            nn.AdaptiveAvgPool2d: lambda m, x, out: x.numel(),
            nn.MaxPool2d: nothing, nn.Identity: nothing, Normalize: nothing}


# space name -> its counting rules; a space registered without an entry fails the contract test
FLOP_RULES: dict[str, Callable[[], dict[type, Rule]]] = {
    "shufflenet": shufflenet_rules,
    "darts": e2rnas_rules,
}
