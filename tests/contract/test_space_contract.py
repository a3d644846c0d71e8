"""The SearchSpace / Supernet contract (supernets/base.py), checked on every registered space.

Parametrised over the space registry (timm-style): a space is tested the
day it is registered, once space_cases.py holds a tiny config for it. The
toy space of tests/toyspace.py joins the checks that need no networks.
Space-specific rules (DARTS wiring, ShuffleNet's Table I widths, sharing
levels) stay in the per-space test files.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from flop_hooks import FLOP_RULES, count_flops
from space_cases import ONE_HOT_EXACT, TOY, build_case, space_params
from supernet_checks import assert_extract_matches_path, one_hot, randomize_bn, standalone_of
from tolerances import assert_rounding_close, network_terms_and_depth

from tamnas.cost_kinds import COUNTED_COSTS
from tamnas.supernets import SPACES
from tamnas.supernets.base import SearchSpace, Supernet

NETWORK_CASES = space_params()
ALL_CASES = space_params(with_toy=True)
COST_KINDS = COUNTED_COSTS  # the kinds every space counts without a measured table


@functools.cache
def space_of(name: str, label: str | None) -> SearchSpace:
    return build_case(name, label)


def sampled(space: SearchSpace, n: int, seed: int) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def covering_archs(space: SearchSpace, seed: int = 0) -> list[tuple[int, ...]]:
    """Archs that together offer every legal value of every gene (where the space's rules allow).

    Arch t sets each gene to its t-th allowed value (cycling); an arch the
    rules between genes forbid is repaired, which keeps most of it. Then a
    few sizes from the whole range: the smallest and largest archs matter most.
    """
    rng = np.random.default_rng(seed)
    options = [space.allowed_values(g, None) for g in space.genes]
    archs = []
    for t in range(max(len(o) for o in options)):
        arch = [o[t % len(o)] for o in options]
        try:
            archs.append(space.validate(arch))
        except ValueError:
            archs.append(space.repair(arch, rng))
    archs += space.spread_by_params(rng, 3, steps=100)
    return list(dict.fromkeys(archs))


def randomized_supernet(space: SearchSpace, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    return randomize_bn(space.build_supernet(), seed).double()


def images(space: SearchSpace, n: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, space.in_channels, space.resolution, space.resolution, generator=g,
                      dtype=torch.float64)


def table_cost(space: SearchSpace, kind: str, arch) -> float:
    """cost_constant + the picks of cost_table: each table is indexed by the next genes in order."""
    total, g = float(space.cost_constant(kind)), 0
    for t in space.cost_table(kind):
        total += float(t[tuple(arch[g:g + t.dim()])])
        g += t.dim()
    assert g == len(arch), f"the {kind} tables index {g} genes, the space has {len(arch)}"
    return total


# -- costs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_params_equal_the_standalone_parameter_count(name, label):
    space = space_of(name, label)
    for arch in covering_archs(space) + sampled(space, 6, seed=1):
        net = space.build_standalone(arch)
        assert space.params(arch) == sum(p.numel() for p in net.parameters()), arch


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_flops_equal_a_hook_count_of_the_standalone_net(name, label):
    space = space_of(name, label)
    if name not in FLOP_RULES:
        pytest.fail(f"space {name!r} has no FLOPs counting rules in tests/flop_hooks.py; add them")
    rules = FLOP_RULES[name]()
    x = torch.rand(1, space.in_channels, space.resolution, space.resolution)
    for arch in covering_archs(space, seed=2)[::2] + sampled(space, 3, seed=3):
        assert space.flops(arch) == count_flops(space.build_standalone(arch), x, rules), arch


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_cost_tables_add_up_to_params_and_flops(name, label):
    space = space_of(name, label)
    for arch in sampled(space, 10, seed=4):
        for kind, cost in (("params", space.params), ("flops", space.flops)):
            assert table_cost(space, kind, arch) == cost(arch), (kind, arch)
            # the gradient strategies' expected cost is exact at a one-hot distribution
            expected = space.expected_cost(kind, one_hot(space, arch, torch.float64))
            assert float(expected) == cost(arch), (kind, arch)


# -- the supernet and its standalone nets ---------------------------------------------------------
@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_extract_into_the_standalone_net_reproduces_the_supernet_path(name, label):
    space = space_of(name, label)
    supernet = randomized_supernet(space)
    x = images(space)
    # every block's extract code runs in tests/test_entanglement.py; here a third of the cover
    outs = [assert_extract_matches_path(space, supernet, arch, x)
            for arch in covering_archs(space, seed=5)[::3] + sampled(space, 2, seed=5)]
    # the check can fail: other paths compute other functions
    terms, depth = network_terms_and_depth(space.build_standalone(covering_archs(space)[0]))
    with pytest.raises(AssertionError):
        assert_rounding_close(outs[0], outs[1], terms, depth)


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_relaxed_forward_with_one_hot_probs_equals_the_path(name, label):
    space = space_of(name, label)
    supernet = randomized_supernet(space)
    if type(supernet).forward_relaxed is Supernet.forward_relaxed:
        pytest.skip(f"space {name!r} has no relaxed supernet (forward_relaxed)")
    x = images(space)
    exact = ONE_HOT_EXACT.get(name, lambda space, arch: arch)
    archs = [exact(space, a) for a in sampled(space, 4, seed=6)]
    terms, depth = network_terms_and_depth(space.build_standalone(archs[0]))
    for training in (False, True):          # running statistics, then batch statistics
        supernet.train(training)
        for arch in archs if not training else archs[:1]:
            with torch.no_grad():
                mixed = supernet.forward_relaxed(x, one_hot(space, arch, torch.float64))
                path = supernet(x, arch)
            assert_rounding_close(mixed, path, terms, depth, msg=lambda m, a=arch: f"arch {a}: {m}")


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_forward_splits_after_an_affine_first_layer_with_one_bare_conv(name, label):
    """YOPO's split: forward(x) == forward_from_first(first_layer(x)), layer one affine in x."""
    space = space_of(name, label)
    supernet = randomized_supernet(space)
    arch = sampled(space, 1, seed=7)[0]
    net = standalone_of(space, supernet, arch)
    x, y = images(space, seed=8), images(space, seed=9)
    with torch.no_grad():
        assert torch.equal(supernet(x, arch), supernet.forward_from_first(supernet.first_layer(x), arch))
        assert torch.equal(net(x), net.forward_from_first(net.first_layer(x)))
        for model in (supernet, net):
            layer = model.first_layer
            convs = [m for m in layer.modules() if any(True for _ in m.parameters(recurse=False))]
            assert len(convs) == 1 and isinstance(convs[0], torch.nn.Conv2d), convs
            assert convs[0].bias is None
            # affine: no BN, no ReLU inside layer one (normalisation is a fixed affine map)
            lhs, rhs = layer(x + y) - layer(y), layer(x) - layer(torch.zeros_like(x))
            assert_rounding_close(lhs, rhs, terms=convs[0].weight[0].numel(), depth=2,
                                  scale=float(layer(x + y).abs().max()))


# -- encoding ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "label"), ALL_CASES)
def test_describe_and_parse_round_trip_through_json(name, label):
    space = space_of(name, label)
    for arch in sampled(space, 8, seed=10):
        description = json.loads(json.dumps(space.describe(arch)))
        assert space.parse(description) == arch


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_config_rebuilds_an_equal_space_through_the_registry(name, label):
    space = space_of(name, label)
    config = json.loads(json.dumps(space.config()))
    again = SPACES[space.name].from_config(config)      # as an exported arch JSON is loaded
    assert type(again) is type(space) and again.config() == space.config()
    assert again.genes == space.genes
    for arch in sampled(space, 5, seed=11):
        assert (again.params(arch), again.flops(arch)) == (space.params(arch), space.flops(arch))
        assert again.describe(arch) == space.describe(arch)


@pytest.mark.parametrize(("name", "label"), ALL_CASES)
def test_repair_turns_any_integer_vector_into_a_legal_arch(name, label):
    space = space_of(name, label)
    rng = np.random.default_rng(12)
    upper = space.upper
    for _ in range(40):
        raw = rng.integers(-2, upper + 3)           # out of range on both sides, too
        fixed = space.repair(raw, rng)
        assert space.validate(fixed) == fixed, (raw, fixed)
    for arch in sampled(space, 10, seed=13):        # a legal arch is its own nearest legal arch
        assert space.repair(arch, rng) == arch


@pytest.mark.parametrize(("name", "label"), ALL_CASES)
def test_sample_respects_a_params_range(name, label):
    space = space_of(name, label)
    params = np.sort([space.params(a) for a in sampled(space, 200, seed=14)])
    lo, hi = int(params[50]), int(params[100])      # the second quarter of uniform draws
    rng = np.random.default_rng(15)
    for _ in range(30):
        arch = space.sample(rng, [lo, hi])
        assert space.validate(arch) == arch and lo <= space.params(arch) <= hi
    top = space.params_bounds()[1]
    with pytest.raises(ValueError):
        space.sample(rng, [top + 1, top + 10], max_tries=2000)


@pytest.mark.parametrize(("name", "label"),
                         NETWORK_CASES + [pytest.param(TOY, None, id=TOY)])
def test_spread_by_params_gives_distinct_archs_across_the_size_range(name, label):
    space = space_of(name, label)
    n = 6
    archs = space.spread_by_params(np.random.default_rng(16), n)
    assert len(set(archs)) == n and all(space.validate(a) == a for a in archs)
    lo, hi = space.params_bounds()
    params = np.array([space.params(a) for a in archs], dtype=float)
    slot = (hi - lo) / n
    targets = lo + (np.arange(n) + 0.5) * slot
    # arch i lands in slot i of [lo, hi]: sizes ranked, the whole range covered
    assert np.all(np.abs(params - targets) <= 0.5 * slot), ((params - targets) / slot).round(3)
    assert space.spread_by_params(np.random.default_rng(16), n) == archs      # deterministic


@pytest.mark.parametrize(("name", "label"), NETWORK_CASES)
def test_a_path_runs_and_changes_only_its_path_modules(name, label):
    """Attacks and the evaluator switch and save only `path_modules(arch)`; nothing else may run.

    Forward hooks catch the modules called; sliced BatchNorm runs as a
    function on its module's buffers, so changed buffers are checked too.
    """
    space = space_of(name, label)
    supernet = space.build_supernet().train()
    x = images(space).float()
    everything = set(supernet.modules())
    for arch in sampled(space, 3, seed=7):
        view = supernet.path(arch)
        listed = set(view.modules_run())
        assert view in listed and listed - {view} <= everything
        before = {m: {k: v.clone() for k, v in m.named_buffers(recurse=False)}
                  for m in everything}
        ran: set = set()
        hooks = [m.register_forward_hook(lambda mod, i, o, ran=ran: ran.add(mod))
                 for m in everything]
        try:
            with torch.no_grad():
                view(x)
        finally:
            for h in hooks:
                h.remove()
        changed = {m for m in everything
                   if any(not torch.equal(v, dict(m.named_buffers(recurse=False))[k])
                          for k, v in before[m].items())}
        assert changed, "a train-mode forward moves some BatchNorm statistics"
        assert ran <= listed, sorted(type(m).__name__ for m in ran - listed)
        assert changed <= listed, sorted(type(m).__name__ for m in changed - listed)
