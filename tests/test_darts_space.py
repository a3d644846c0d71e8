"""The DARTS cell space: the two-inputs rule, E2RNAS op costs, placements, the relaxed supernet.

Params/FLOPs against the standalone nets, extract -> standalone, one-hot
mixtures, round trips and repair legality are contract tests for every space
(tests/contract/test_space_contract.py).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from tolerances import rounding_tolerance
from torch import nn

import tamnas
from tamnas.data import dataset_info
from tamnas.supernets import SPACES
from tamnas.supernets.darts.ops import PRIMITIVES, Normalize, op_flops, op_params
from tamnas.supernets.darts.space import DartsSpace


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is fastest, and on a shared machine by far."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_space(preset: str = "cifar10-e2rnas", cells: int = 4, init_channels: int = 4,
               resolution: int = 8, **extra) -> DartsSpace:
    cfg = tamnas.load_config(preset, overrides={"space.cells": cells,
                                                "space.init_channels": init_channels,
                                                "data.resolution": resolution, **extra})
    info = dataset_info(cfg.data.dataset)
    return DartsSpace(cfg.space, num_classes=info.num_classes, in_channels=info.in_channels,
                      resolution=cfg.data.resolution, mean=info.mean, std=info.std)


def one_hot(arch) -> list[torch.Tensor]:
    return [nn.functional.one_hot(torch.tensor(v), len(PRIMITIVES)).double() for v in arch]


def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics, so that no path is trivially equal to another."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                if m.affine:
                    m.weight.copy_(1 + 0.3 * torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))
    return net.eval()


def test_darts_is_registered_and_built_from_presets():
    assert SPACES["darts"] is DartsSpace
    space = make_space()
    assert space.name == "darts" and len(space.genes) == 2 * 14
    assert len(make_space("cifar10-dsara").genes) == 3 * 14
    assert {g.kind for g in space.genes} == {"op"} and PRIMITIVES[0] == "none"


def test_op_flops_follow_the_e2rnas_formulas_at_stride_one():
    C, H = 12, 7
    chw, c2hw = C * H * H, C * C * H * H
    assert op_flops("sep_conv_3x3", C, 1, H) == 2 * (chw + c2hw + 9 * chw + 2 * chw)
    assert op_flops("sep_conv_5x5", C, 1, H) == 2 * (chw + c2hw + 25 * chw + 2 * chw)
    assert op_flops("dil_conv_3x3", C, 1, H) == chw + c2hw + 9 * chw + 2 * chw
    assert op_flops("dil_conv_5x5", C, 1, H) == chw + c2hw + 25 * chw + 2 * chw
    assert op_flops("avg_pool_3x3", C, 1, H) == chw
    for name in ("max_pool_3x3", "skip_connect", "none"):
        assert op_flops(name, C, 1, H) == 0
    assert op_params("sep_conv_3x3", C, 1) == 2 * (9 * C + C * C + 2 * C)


def test_mixture_normalises_pool_outputs_without_affine_and_the_path_does_not():
    from tamnas.supernets.darts.supernet import MixedEdge

    edge = randomize(MixedEdge(6, 1), seed=3).double()
    x = torch.rand(2, 6, 7, 7, dtype=torch.float64)
    for name, pool in (("max_pool_3x3", lambda t: nn.functional.max_pool2d(t, 3, 1, 1)),
                       ("avg_pool_3x3", lambda t: nn.functional.avg_pool2d(
                           t, 3, 1, 1, count_include_pad=False))):
        o = PRIMITIVES.index(name)
        bn = edge.pool_bn[str(o)]
        assert not bn.affine and bn.weight is None
        p = nn.functional.one_hot(torch.tensor(o), len(PRIMITIVES)).double()
        with torch.no_grad():
            mean, var = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
            want = (pool(x) - mean) / torch.sqrt(var + bn.eps)
            assert torch.allclose(edge.mixed(x, p), want, atol=1e-12)
            assert torch.allclose(edge.ops[o](x), pool(x), atol=1e-12)    # the path: bare pool
    # in training mode the mixture uses the batch statistics: zero mean, unit variance per channel
    edge.train()
    o = PRIMITIVES.index("avg_pool_3x3")
    y = edge.mixed(x, nn.functional.one_hot(torch.tensor(o), len(PRIMITIVES)).double())
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    # the pool BNs hold no parameters, so params and extract are unchanged
    assert sum(p.numel() for p in edge.pool_bn.parameters()) == 0


def test_relaxed_forward_is_differentiable_in_the_probabilities():
    space = make_space(cells=3)
    supernet = randomize(space.build_supernet(), seed=2)
    probs = [torch.full((len(PRIMITIVES),), 1.0 / len(PRIMITIVES), requires_grad=True)
             for _ in space.genes]
    supernet.forward_relaxed(torch.rand(2, 3, 8, 8), probs).sum().backward()
    grads = torch.stack([p.grad for p in probs])
    assert torch.all(grads[:, 0] == 0)            # the zero op changes nothing
    assert float(grads[:, 1:].abs().min()) > 0
    with pytest.raises(ValueError, match="probability vectors"):
        supernet.forward_relaxed(torch.rand(1, 3, 8, 8), probs[:-1])


def test_first_layer_is_normalisation_plus_a_bare_convolution():
    space = make_space(cells=3)
    supernet = space.build_supernet()
    norm, conv = supernet.first_layer
    assert type(norm) is Normalize and isinstance(conv, nn.Conv2d) and conv.bias is None


def _brute_force_legal(space: DartsSpace):
    """Every legal arch of a tiny space, from the rule itself (two non-none inputs per node)."""
    per_node = []
    for nodes in space.node_genes:
        for genes in nodes:
            options = []
            for pair in itertools.combinations(genes, 2):
                for ops in itertools.product(range(1, len(PRIMITIVES)), repeat=2):
                    options.append(dict(zip(pair, ops)))
            per_node.append(options)
    for choice in itertools.product(*per_node):
        arch = [0] * len(space.genes)
        for part in choice:
            for g, op in part.items():
                arch[g] = op
        yield tuple(arch)


def test_bounds_and_sampling_agree_with_brute_force_on_a_tiny_space():
    space = make_space(cells=3, init_channels=2, **{"space.nodes": 1})
    archs = list(_brute_force_legal(space))
    assert len(archs) == (7 * 7) ** 2      # one node per cell type, both its edges present
    params = [space.params(a) for a in archs]
    flops = [space.flops(a) for a in archs]
    assert space.params_bounds() == (min(params), max(params))
    assert space.flops_bounds() == (min(flops), max(flops))
    allowed = {"op": [4, 5]}
    sub = [p for a, p in zip(archs, params) if set(a) <= {0, 4, 5}]
    assert space.params_bounds(allowed) == (min(sub), max(sub))
    rng = np.random.default_rng(0)
    lo, hi = sorted(params)[len(params) // 4], sorted(params)[len(params) // 2]
    for _ in range(30):
        arch = space.sample(rng, [lo, hi])
        assert lo <= space.params(arch) <= hi and arch in set(archs)
        assert set(space.sample(rng, allowed=allowed)) <= {0, 4, 5}
    with pytest.raises(ValueError, match="misses this space"):
        space.sample(rng, [max(params) + 1, max(params) + 10])


def test_samples_are_legal_and_cover_every_edge_and_op():
    space = make_space("cifar10-dsara")
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(300)]
    for arch in archs:
        assert space.validate(arch) == arch
    values = np.array(archs)
    assert all(set(values[:, g]) == set(range(len(PRIMITIVES))) for g in range(2, len(space.genes))
               if space.genes[g].name.split(".")[1] != "node2")
    # Node 2 reads exactly two edges, both always present: never none.
    assert all(0 not in set(values[:, g]) for g in (0, 1, 14, 15, 28, 29))


@pytest.mark.parametrize("preset", ["cifar10-e2rnas", "cifar10-dsara"])
def test_derived_genotypes_follow_the_darts_rule(preset):
    space = make_space(preset)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        alphas = [torch.randn(len(PRIMITIVES), generator=gen) for _ in space.genes]
        arch = space.derive(alphas)
        assert space.validate(arch) == arch
        w = np.stack([torch.softmax(a, 0).numpy() for a in alphas])
        strength = w[:, 1:].max(1)
        for nodes in space.node_genes:
            for genes in nodes:
                chosen = [g for g in genes if arch[g] != 0]
                dropped = [g for g in genes if arch[g] == 0]
                assert len(chosen) == 2
                assert all(strength[c] >= strength[d] for c in chosen for d in dropped)
                assert all(arch[c] == 1 + int(w[c, 1:].argmax()) for c in chosen)
    # A strong `none` does not hide an edge: only non-none ops rank the edges.
    alphas = [torch.zeros(len(PRIMITIVES)) for _ in space.genes]
    alphas[0] = torch.tensor([9.0, 0, 0, 0, 3.0, 0, 0, 0])
    assert space.derive(alphas)[0] == 4
    assert space.derive([torch.softmax(a, 0) for a in alphas], from_probs=True)[0] == 4


def test_illegal_archs_raise_value_error_naming_the_node():
    space = make_space()
    arch = list(space.sample(np.random.default_rng(2)))
    node3 = space.node_genes[0][1]                     # normal cell, node 3: edges from 0, 1, 2
    three = list(arch)
    for g in node3:
        three[g] = 4
    with pytest.raises(ValueError, match="normal cell node 3 has 3 incoming ops"):
        space.validate(three)
    one = list(arch)
    for g in node3:
        one[g] = 0
    one[node3[0]] = 5
    with pytest.raises(ValueError, match="node 3 has 1 incoming"):
        space.validate(one)
    with pytest.raises(ValueError, match="allowed 0..7"):
        space.validate(arch[:-1] + [8])
    with pytest.raises(ValueError, match="genes, expected"):
        space.validate(arch[:-1])
    with pytest.raises(ValueError):
        space.build_standalone(three)


def test_repair_keeps_the_ops_of_the_edges_it_keeps():
    space = make_space("cifar10-dsara")
    rng = np.random.default_rng(4)
    for _ in range(50):
        raw = rng.integers(-1, len(PRIMITIVES) + 1, size=len(space.genes))
        fixed = space.repair(raw, rng)
        kept = [g for g in range(len(raw)) if 0 < raw[g] < len(PRIMITIVES) and fixed[g] != 0]
        assert all(fixed[g] == raw[g] for g in kept)   # ops on surviving edges are untouched


def test_expected_cost_is_linear_between_archs_and_its_gradient_is_the_table():
    space = make_space("cifar10-dsara", cells=5)
    rng = np.random.default_rng(6)
    a, b = space.sample(rng), space.sample(rng)
    for kind, cost in (("params", space.params), ("flops", space.flops)):
        half = [0.5 * p + 0.5 * q for p, q in zip(one_hot(a), one_hot(b))]
        got = space.expected_cost(kind, half)
        # a sum over every gene's choices, in the probabilities' precision
        tol = rounding_tolerance(max(cost(a), cost(b)), sum(len(p) for p in half), dtype=got.dtype)
        assert float(got) == pytest.approx(0.5 * cost(a) + 0.5 * cost(b), rel=0, abs=tol)
    probs = [torch.full((8,), 0.125, requires_grad=True) for _ in space.genes]
    space.expected_cost("params", probs).backward()
    assert torch.equal(probs[3].grad, space.cost_table("params")[3])
    with pytest.raises(ValueError, match="no latency table is attached"):
        space.expected_cost("latency", probs)   # a measured kind needs its table first


def test_placements_give_the_filter_ratios_of_the_papers():
    standard = make_space("cifar10-e2rnas", cells=8, init_channels=4)
    dsara = make_space("cifar10-dsara", cells=8, init_channels=4)
    assert [s.c for s in standard.layout.cells] == [4, 4, 8, 8, 8, 16, 16, 16]     # 1-2-4
    assert [s.c for s in dsara.layout.cells] == [4, 4, 8, 8, 8, 8, 8, 8]           # 1-2-2
    names = [dsara.cell_types[s.ctype] for s in dsara.layout.cells]
    assert names == ["accurate", "accurate", "reduce", "accurate", "accurate", "reduce", "robust",
                     "robust"]
    assert [s.size for s in dsara.layout.cells] == [8, 8, 8, 4, 4, 4, 2, 2]
    assert [standard.cell_types[s.ctype] for s in standard.layout.cells].count("reduce") == 2


def test_parse_reads_genes_or_cells_alone_and_rejects_bad_descriptions():
    space = make_space("cifar10-dsara")
    arch = space.sample(np.random.default_rng(7))
    desc = json.loads(json.dumps(space.describe(arch)))
    assert set(desc["cells"]) == {"accurate", "robust", "reduce"}
    assert all(len(node) == 2 for nodes in desc["cells"].values() for node in nodes)
    assert space.parse({"genes": list(arch)}) == arch
    assert space.parse({"cells": desc["cells"]}) == arch
    bad = json.loads(json.dumps(desc))
    bad["cells"]["robust"][0][0][0] = "conv_7x7"
    with pytest.raises(ValueError, match="conv_7x7"):
        space.parse(bad)
    bad = json.loads(json.dumps(desc))
    bad["genes"][0] = (bad["genes"][0] % 7) + 1
    with pytest.raises(ValueError, match="disagree"):
        space.parse(bad)


def test_from_config_rejects_unknown_keys_and_placements():
    space = make_space("cifar10-dsara", cells=4, init_channels=5, resolution=9)
    config = json.loads(json.dumps(space.config()))
    with pytest.raises(ValueError, match="unknown keys"):
        DartsSpace.from_config({**config, "width": 2})
    with pytest.raises(ValueError, match="placement"):
        DartsSpace.from_config({**config, "placement": "grid"})


def test_genes_are_labelled_by_their_op_names_in_tables_and_the_explorer():
    from tamnas.analysis.explore import gene_info, layer_table

    space = make_space()
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    assert space.gene_choices(0) == [str(v) for v in range(len(PRIMITIVES))]  # arch codes
    from tamnas.supernets.info import space_info

    legend = space_info(space, rng, n_samples=2)["names"]["op"]  # space-info's code -> op legend
    assert legend == {str(v): name for v, name in enumerate(PRIMITIVES)}
    assert [space.gene_label(i, v) for i, v in enumerate(arch)] == [PRIMITIVES[v] for v in arch]
    info = gene_info(space)
    assert len(info) == len(space.genes) and all(g["labels"] == list(PRIMITIVES) for g in info)
    cells = layer_table(space, arch).to_numpy().ravel()
    assert {str(c) for c in cells if isinstance(c, str)} <= set(PRIMITIVES)
    assert any(c in PRIMITIVES[1:] for c in cells)  # a legal arch has ops, not only "none"
    # per-layer tables: a row per edge named after it (an edge is not a layer), ops as columns
    from tamnas.analysis.stats import layer_counts

    table = pd.DataFrame([arch], columns=[f"g{i}" for i in range(len(arch))])
    counts = layer_counts(space, table, "op")
    assert list(counts.index) == [g.name for g in space.genes]
    assert list(counts.columns) == list(PRIMITIVES) and counts.to_numpy().sum() == len(arch)
