"""ShuffleNet head layouts and ratio bases: the paper's model sizes, exact counts, readable names."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from torch import nn

import tamnas
from tamnas.sampling import SamplingSchedule
from tamnas.supernets.info import format_space_info, space_info, warn_sparse_windows, window_share
from tamnas.supernets.shufflenet.layout import BLOCKS, HEADS, RATIO_BASES

PHASE1 = (1_823_000, 2_375_000)   # section III-C
PHASE2 = (1_610_000, 2_370_000)


def paper_space(preset: str = "cifar10-tamnas", **overrides):
    cfg = tamnas.load_config(preset, overrides)
    return cfg, tamnas.build_space(cfg)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_presets_put_most_uniform_samples_inside_the_papers_windows():
    cfg, space = paper_space()
    svhn_cfg, svhn = paper_space("svhn-tamnas")     # SVHN: the same 10-class 32x32 RGB space
    assert svhn_cfg.space == cfg.space and svhn.params_bounds() == space.params_bounds()
    assert svhn_cfg.train.params_range_phase1 == cfg.train.params_range_phase1
    assert svhn_cfg.train.params_range_phase2 == cfg.train.params_range_phase2
    assert cfg.train.params_range_phase1 == list(PHASE1)
    assert cfg.train.params_range_phase2 == list(PHASE2)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    rng = np.random.default_rng(0)
    for epoch, (lo, hi) in ((0, PHASE1), (schedule.total_epochs - 1, PHASE2)):
        # what training draws before rejection: phase 1 the widest ratio, phase 2 (end) all ratios
        params = np.array([space.params(space.sample(rng, allowed=schedule.allowed(epoch)))
                           for _ in range(2000)])
        assert ((params >= lo) & (params <= hi)).mean() >= 0.5, epoch


def test_vectorised_sample_params_draws_like_sample():
    _, space = paper_space()
    rng = np.random.default_rng(3)
    allowed = {"ratio": [8, 9]}
    fast = space.sample_params(rng, 2000, allowed)
    slow = np.array([space.params(space.sample(rng, allowed=allowed)) for _ in range(2000)])
    lo, hi = space.params_bounds(allowed)
    assert lo <= fast.min() and fast.max() <= hi
    # two means of 2000 draws each: their difference has std sqrt(2 / 2000) * sigma
    assert abs(fast.mean() - slow.mean()) < 4 * slow.std() * np.sqrt(2 / 2000)


def test_todays_layout_misses_the_windows_and_stays_the_default():
    _, compact = paper_space(**{"space.head": "compact", "space.ratio_base": "half"})
    assert window_share(compact, PHASE1, {"ratio": [9]}, n_samples=500) == 0.0
    default = tamnas.load_config("quickstart").space
    assert (default.head, default.ratio_base) == ("compact", "half")
    # the quickstart as it was when the options came: the same sizes as before them
    quick = tamnas.load_config("quickstart", {
        "space.ratios": [0.4, 0.8, 1.2, 1.6, 2.0], "space.stem_channels": 8,
        "space.stage_channels": [16, 32, 48], "space.head_channels": 48,
        "space.fc_channels": 96})
    space = tamnas.build_space(quick)
    assert space.params_bounds() == (14_396, 44_416)
    assert space.fc_channels == (96,)
    keys = space.build_standalone(space.sample(np.random.default_rng(0))).state_dict()
    assert not any(k.startswith("head.expand") for k in keys)


def test_table1_head_adds_the_920_wide_layer():
    _, compact = paper_space(**{"space.head": "compact"})
    _, table1 = paper_space()
    assert table1.fc_channels == (920, 1024) and compact.fc_channels == (1024,)
    arch = compact.sample(np.random.default_rng(1))
    extra = (176 * 920 + 920) + (920 * 1024 + 1024) - (176 * 1024 + 1024)
    assert table1.params(arch) - compact.params(arch) == extra


def test_full_ratio_base_doubles_the_shuffle_widths_only():
    _, half = paper_space(**{"space.ratio_base": "half"})
    _, full = paper_space()
    last = len(full.layers) - 1
    for b, bid in enumerate(full.choices[last]):
        for r, ratio in enumerate(full.ratios):
            expect = half.mids[last][b, r] if BLOCKS[bid].family == "robust" else \
                max(1, int(np.floor(ratio * 192 + 0.5)))
            assert full.mids[last][b, r] == expect, (bid, ratio)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("ratio_base", RATIO_BASES)
def test_params_equal_numel_at_paper_widths_for_every_layout(head, ratio_base):
    _, space = paper_space(**{"space.head": head, "space.ratio_base": ratio_base})
    rng = np.random.default_rng(7)
    archs = [space.sample(rng) for _ in range(2)]
    for pick in (np.argmin, np.argmax):       # the smallest and the largest arch of the table
        arch = []
        for t in space.cost_table("params"):
            b, r = np.unravel_index(int(pick(t.numpy())), t.shape)
            arch += [int(b), int(r)]
        archs.append(tuple(arch))
    for arch in archs:                        # counted, not run: cifar10 widths are slow on CPU
        assert space.params(arch) == n_params(space.build_standalone(arch)), arch


def test_two_s_preset_doubles_every_width_and_keeps_its_windows_reachable():
    cfg, space = paper_space("cifar10-tamnas-2s")
    _, single = paper_space()
    assert cfg.space.width_mult == 2.0
    assert [s.out_channels for s in space.layers] == [2 * s.out_channels for s in single.layers]
    assert space.fc_channels == (1840, 2048) and space.head_channels == 352
    widest = {"ratio": space.ratio_indices([max(space.ratios)])}
    assert window_share(space, cfg.train.params_range_phase1, widest, n_samples=1000) >= 0.5
    assert window_share(space, cfg.train.params_range_phase2, None, n_samples=1000) >= 0.5


def test_blocks_and_ratios_have_readable_names():
    _, space = paper_space()
    assert [b.name for b in BLOCKS[:3]] == ["shuffle-se k3", "shuffle-se k5", "shuffle-se k7"]
    assert BLOCKS[10].name == "xception-se-nlEG k5" and BLOCKS[14].name == "shuffle-se-nlG k7"
    assert [b.name for b in BLOCKS[18:]] == ["robust-nlEG-se-bn", "robust-nlEG-se",
                                             "robust-nlG-se-bn", "robust-nlG-se"]
    assert len({b.name for b in BLOCKS}) == len(BLOCKS)
    assert space.gene_label(3, 5) == "1.2" and space.gene_label(3, 9) == "2.0"
    arch = [0] * len(space.genes)
    arch[2], arch[3] = 21, 8            # layer 1 (stride 1): block id 21, ratio 1.8
    names = space.layer_names(arch)
    assert names[0] == "shuffle-se k3 x0.2" and names[1] == "robust-nlG-se x1.8"
    assert space.arch_label(arch).startswith("shuffle-se k3 x0.2, robust-nlG-se x1.8, ")
    assert space.describe(arch)["layers"][1]["block"] == "robust-nlG-se"
    with pytest.raises(ValueError, match="layer0.block"):
        space.gene_label(0, 18)          # stride-2 layer: no pure robust block


def test_space_info_prints_the_share_inside_each_window():
    cfg, space = paper_space(**{"train.enlarge_every": 250})
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    info = space_info(space, np.random.default_rng(0), n_samples=200, schedule=schedule)
    rows = info["windows"]
    assert [r["phase"] for r in rows] == [1, 2, 2]
    assert rows[0]["epochs"] == [0, 499] and rows[0]["ratios"] == [2.0]
    assert rows[2]["epochs"] == [750, 999] and len(rows[2]["ratios"]) == 3
    assert all(0.0 <= r["share"] <= 1.0 for r in rows)
    text = format_space_info(info)
    assert f"phase 1, epochs 0-499, ratio 2.0: {100 * rows[0]['share']:.1f}% inside " \
           "[1.823M, 2.375M]" in text
    assert "21 robust-nlG-se" in text


def test_training_warns_once_about_a_window_few_samples_reach(caplog):
    cfg, space = paper_space(**{"train.params_range_phase1": [3_100_000, 3_200_000]})
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    with caplog.at_level(logging.WARNING, logger="tamnas"):
        sparse = warn_sparse_windows(schedule)
    assert [r["phase"] for r in sparse] == [1]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "phase 1" in warnings[0].getMessage()
    caplog.clear()
    cfg, paper = paper_space()
    with caplog.at_level(logging.WARNING, logger="tamnas"):
        assert warn_sparse_windows(SamplingSchedule(paper, cfg.train, tuple(cfg.space.ratios))) == []
    assert not caplog.records


def test_an_exported_table1_full_arch_rebuilds_with_its_layout(tmp_path):
    import torch
    from shufflenet_configs import CONFIGS

    from tamnas.analysis.export import export_arch, load_arch

    space = tamnas.build_space(tamnas.load_config("quickstart", CONFIGS["tiny-table1-full"]))
    supernet = space.build_supernet().eval()
    arch = space.sample(np.random.default_rng(2))
    paths = export_arch(space, arch, tmp_path, "a", state_dict=supernet.extract(arch))
    net = load_arch(paths["json"], weights=True).eval()
    assert any(k.startswith("head.expand.0.") for k in net.state_dict())
    x = torch.rand(3, space.in_channels, space.resolution, space.resolution)
    with torch.no_grad():   # same weights, same float32 ops: logits of order 1 agree to ~1e-6
        torch.testing.assert_close(net(x), supernet(x, arch), rtol=1e-4, atol=1e-5)
