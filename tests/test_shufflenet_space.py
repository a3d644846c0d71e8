"""ShuffleNetV2 space: exact cost tables, gene legality, sampling, descriptions and the space summary."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from shufflenet_configs import CONFIGS
from torch import nn

import tamnas
from tamnas.supernets.info import format_space_info, space_info
from tamnas.supernets.shufflenet.space import ShuffleNetSpace

torch.set_num_threads(1)   # tiny tensors: threads only contend on a shared 2-core machine



def space_of(name: str, **extra) -> ShuffleNetSpace:
    return tamnas.build_space(tamnas.load_config("quickstart", {**CONFIGS[name], **extra}))


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_params_exact_on_the_paper_preset():
    space = tamnas.build_space(tamnas.load_config("cifar10-tamnas"))
    assert len(space.layers) == 16 and [s.stride for s in space.layers].count(2) == 3
    rng = np.random.default_rng(2)
    archs = [space.sample(rng) for _ in range(12)]
    # the smallest and the largest arch of the table
    for pick in (np.argmin, np.argmax):
        arch = []
        for t in space.cost_table("params"):
            b, r = np.unravel_index(int(pick(t.numpy())), t.shape)
            arch += [int(b), int(r)]
        archs.append(tuple(arch))
    assert space.params(archs[-2]) == space.params_bounds()[0]
    assert space.params(archs[-1]) == space.params_bounds()[1]
    for arch in archs:
        assert space.params(arch) == n_params(space.build_standalone(arch))


def test_gene_layout_and_index_encoding():
    space = space_of("tiny-subset")
    assert [g.name for g in space.genes[:4]] == ["layer0.block", "layer0.ratio", "layer1.block",
                                                 "layer1.ratio"]
    assert [g.kind for g in space.genes] == ["block", "ratio"] * 3
    assert space.blocks == [0, 5, 9, 14, 18, 21] and space.ratios == [0.4, 1.0, 2.0]
    # stride-2 layers 0 and 1 offer only the ids <= 17 (the first four), stride-1 layers all six
    assert [g.choices for g in space.genes] == [4, 3, 4, 3, 6, 3]
    assert space.ratio_indices([2.0, 0.4]) == [2, 0]
    with pytest.raises(ValueError, match="ratio 1.8 is not offered"):
        space.ratio_indices([1.8])
    desc = space.describe((3, 2, 1, 1, 5, 0))
    assert [(lay["block_id"], lay["ratio"]) for lay in desc["layers"]] == [(14, 2.0), (5, 1.0), (21, 0.4)]
    assert desc["layers"][0]["kernel"] == 7 and desc["layers"][0]["nonlocal"] == "gaussian"
    assert desc["layers"][2]["kernel"] is None and desc["layers"][2]["stride"] == 1
    # mid channels: branch 8/2 = 4 x 2.0; branch 16/2 = 8 x 1.0; pure robust 16 // 2 = 8 x 0.4 -> 3
    assert [lay["mid_channels"] for lay in desc["layers"]] == [8, 8, 3]


def test_space_size_matches_enumeration():
    space = space_of("tiny", **{"space.blocks": [0, 18], "space.ratios": [1.0, 2.0]})
    legal = 0
    for arch in itertools.product(range(2), repeat=6):      # the whole box of indices
        try:
            space.validate(arch)
            legal += 1
        except ValueError:
            pass
    # layers 0 and 1 are stride 2 (block 18 is illegal there), layer 2 takes both blocks
    assert legal == space.n_legal() == (1 * 2) * (1 * 2) * (2 * 2)


@pytest.mark.parametrize("arch, pattern", [
    ((0, 0, 0), r"3 genes, expected 6"),
    ((0, 0, 0, 10, 0, 0), r"gene layer1\.ratio = 10 is illegal; allowed 0\.\.9"),
    ((0, 0, 0, 0, 22, 0), r"gene layer2\.block = 22 is illegal; allowed 0\.\.21"),
    ((0, 0, 0, -1, 0, 0), r"gene layer1\.ratio = -1"),
    ((18, 0, 0, 0, 0, 0), r"gene layer0\.block = 18 .*stride-2 layer 0.*block ids 0-17"),
    ((0, 0, 21, 0, 0, 0), r"gene layer1\.block = 21 .*stride-2 layer 1.*block ids 0-17"),
    ((0, 0, 0, 0, 0, 1.5), r"gene layer2\.ratio = 1\.5 is not an integer"),
])
def test_illegal_archs_raise_naming_the_gene(arch, pattern):
    space = space_of("tiny")
    with pytest.raises(ValueError, match=pattern):
        space.validate(arch)
    with pytest.raises(ValueError):
        space.params(arch)


def test_repair_makes_stride2_layers_legal():
    space = space_of("tiny")
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.repair((21, 12, 21, -3, 19, 4), rng)
        assert space.validate(arch) == arch
        assert arch[0] <= 17 and arch[2] <= 17 and (arch[1], arch[3], arch[4], arch[5]) == (9, 0, 19, 4)


def test_sample_respects_params_range_and_allowed_sets():
    space = tamnas.build_space(tamnas.load_config("cifar10-tamnas"))
    rng = np.random.default_rng(4)
    allowed = {"ratio": space.ratio_indices([1.8, 2.0]), "block": [0, 3, 6, 19]}
    lo, hi = 2_000_000, 2_100_000
    for _ in range(40):
        arch = space.sample(rng, params_range=[lo, hi], allowed=allowed)
        assert lo <= space.params(arch) <= hi
        assert set(arch[1::2]) <= {8, 9}
        assert set(arch[0::2]) <= {0, 3, 6, 19}
        assert all(arch[2 * s.index] != 19 for s in space.layers if s.stride == 2)
    p_lo, p_hi = space.params_bounds(allowed)
    with pytest.raises(ValueError, match="misses this space"):
        space.sample(rng, params_range=[p_hi + 1, p_hi + 10], allowed=allowed)
    assert space.params_bounds(allowed) == (p_lo, p_hi)
    all_lo, all_hi = space.params_bounds()
    assert all_lo < p_lo < lo and hi < p_hi <= all_hi


def test_sample_is_uniform_over_each_gene():
    space = space_of("tiny")
    rng = np.random.default_rng(5)
    draws = np.array([space.sample(rng) for _ in range(4400)])
    for j in (0, 2, 3):          # a stride-2 block gene (18 values), a stride-1 one (22), a ratio (10)
        k = space.genes[j].choices
        counts = np.bincount(draws[:, j], minlength=k)
        assert len(counts) == k
        expected = len(draws) / k
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        # 99.9% quantile of chi-square with 21 dof is about 46.8
        assert chi2 < 47, (j, counts)


def test_expected_cost_equals_the_expectation_enumerated_over_every_arch():
    space = space_of("tiny", **{"space.blocks": [0, 9, 18], "space.ratios": [0.6, 2.0]})
    g = torch.Generator().manual_seed(0)
    probs = [torch.softmax(torch.randn(gene.choices, generator=g, dtype=torch.float64), 0).requires_grad_()
             for gene in space.genes]
    options = [space.allowed_values(gene, None) for gene in space.genes]
    brute = 0.0
    for arch in itertools.product(*options):
        weight = float(np.prod([float(p[v].detach()) for p, v in zip(probs, arch)]))
        brute += weight * space.params(arch)
    got = space.expected_cost("params", probs)
    assert float(got.detach()) == pytest.approx(brute, rel=1e-9)
    got.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in probs)


def test_description_names_the_space_and_its_genes_and_parse_rejects_bad_layers():
    """The round trips themselves are contract tests (tests/contract/test_space_contract.py)."""
    space = space_of("tiny-rgb-w")
    arch = space.sample(np.random.default_rng(7))
    desc = json.loads(json.dumps(space.describe(arch)))
    assert desc["space"] == "shufflenet" and desc["genes"] == list(arch)
    bad = json.loads(json.dumps(space.describe(arch)))
    bad["layers"][0]["block_id"] = 20
    bad.pop("genes")
    with pytest.raises(ValueError, match=r"layer0\.block.*20.*stride-2"):
        space.parse(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        ShuffleNetSpace.from_config({**space.config(), "depth": 3})


def test_width_multiplier_scales_channels():
    narrow = space_of("tiny", **{"space.width_mult": 0.5})
    wide = space_of("tiny", **{"space.width_mult": 2.0})
    assert [s.out_channels for s in narrow.layers] == [4, 8, 8]
    assert [s.out_channels for s in wide.layers] == [16, 32, 32]
    assert narrow.params_bounds()[1] < wide.params_bounds()[0]


def test_space_info_counts_and_formats():
    space = space_of("tiny-subset")
    info = space_info(space, np.random.default_rng(0), n_samples=50)
    assert info["size"] == 4 * 3 * 4 * 3 * 6 * 3
    assert info["log10_size"] == pytest.approx(np.log10(info["size"]))
    assert [r["gene"] for r in info["genes"]] == [g.name for g in space.genes]
    assert info["genes"][0]["values"] == "0, 5, 9, 14" and info["genes"][1]["values"] == "0.4, 1.0, 2.0"
    lo, hi = space.params_bounds()
    assert lo <= info["params"]["min"] <= info["params"]["median"] <= info["params"]["max"] <= hi
    text = format_space_info(info)
    assert "layer2.block" in text and "2592 legal archs" in text
