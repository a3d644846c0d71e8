"""Supernet training: the sampling schedule, learning, and exact kill-and-resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tamnas
from tamnas.data import load_data
from tamnas.files import load_checkpoint
from tamnas.rundir import RunDir
from tamnas.sampling import SamplingSchedule
from tamnas.search.evaluator import Evaluator
from tamnas.train import lr_at, train_supernet

TINY = {
    "space.stem_channels": 4, "space.stage_channels": [8, 16], "space.stage_layers": [1, 2],
    "space.head_channels": 16, "space.fc_channels": 16, "space.blocks": [0, 3, 6, 18],
    "data.resolution": 8, "data.val_size": 100, "data.batch_size": 32, "data.train_limit": 640,
    "train.yopo_m": 2, "train.yopo_n": 1,
}


def test_lr_schedule_steps_at_milestones_and_restarts_in_phase_two():
    ms = [2, 4, 6, 8]
    assert [lr_at(e, 1.0, ms, 0.1) for e in (0, 1, 2, 3, 4)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    # phase 2 starts at epoch 5 with the full rate again, then steps at 6 and 8
    assert [lr_at(e, 1.0, ms, 0.1, restart_at=5) for e in (4, 5, 6, 8)] == pytest.approx(
        [0.01, 1, 0.1, 0.01])


def test_warmup_ramps_linearly_to_the_schedule():
    ms = [4]
    assert [lr_at(e, 1.0, ms, 0.1, warmup=3) for e in range(6)] == pytest.approx(
        [0.25, 0.5, 0.75, 1, 0.1, 0.1])
    assert [lr_at(e, 1.0, ms, 0.1) for e in range(3)] == pytest.approx([1, 1, 1])


def test_progressive_blocks_add_one_offered_block_every_n_epochs():
    cfg = tamnas.load_config("quickstart-full", {"train.block_enlarge_every": 3})
    space = tamnas.build_space(cfg)
    sched = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    assert [sched.block_count(e) for e in (0, 2, 3, 8, 59, 60, 500)] == [2, 2, 3, 4, 21, 22, 22]
    rng = np.random.default_rng(0)
    block_genes = [i for i, g in enumerate(space.genes) if g.kind == "block"]
    for epoch, ids in ((0, {0, 1}), (3, {0, 1, 2})):
        drawn = {space.describe(sched.sample(rng, epoch))["layers"][i // 2]["block_id"]
                 for _ in range(30) for i in block_genes}
        assert drawn == ids
    # off by default: every block from the first epoch
    plain = tamnas.load_config("quickstart-full").train
    assert SamplingSchedule(space, plain).block_count(0) is None


def test_sampling_schedule_follows_the_preset():
    cfg = tamnas.load_config("cifar10-tamnas", {"train.phase1_epochs": 10, "train.enlarge_every": 3})
    space = tamnas.build_space(cfg)
    sched = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    assert sched.phase(9) == 1 and sched.phase(10) == 2
    assert sched.ratio_values(0) == [2.0] and sched.ratio_values(9) == [2.0]
    assert sched.ratio_values(10) == [2.0, 1.8] and sched.ratio_values(12) == [2.0, 1.8]
    assert sched.ratio_values(13) == [2.0, 1.8, 1.6]
    assert sched.ratio_values(10 + 3 * 20) == sorted(cfg.space.ratios, reverse=True)
    assert sched.params_range(0) == cfg.train.params_range_phase1
    assert sched.params_range(10) == cfg.train.params_range_phase2
    rng = np.random.default_rng(0)
    for epoch in (0, 10, 13):
        allowed = set(sched.ratio_values(epoch))
        lo, hi = sched.params_range(epoch)
        for _ in range(5):
            arch = sched.sample(rng, epoch)
            desc = space.describe(arch)
            assert {layer["ratio"] for layer in desc["layers"]} <= allowed
            assert lo <= space.params(arch) <= hi


def test_resample_every_n_epochs_keeps_one_path():
    cfg = tamnas.load_config("quickstart", {"train.resample_every": "2", "train.phase1_epochs": 3})
    sched = SamplingSchedule(tamnas.build_space(cfg), cfg.train, tuple(cfg.space.ratios))
    assert sched.resample_now(0, 0) and not sched.resample_now(0, 1)
    assert not sched.resample_now(1, 0) and sched.resample_now(2, 0)
    assert sched.resample_now(3, 0)  # first epoch of phase 2


@pytest.fixture(scope="module")
def digits_cfg():
    return tamnas.load_config("quickstart", {**TINY, "train.phase1_epochs": 2,
                                             "train.phase2_epochs": 2, "train.lr": 0.1})


def test_short_supernet_run_learns(digits_cfg, tmp_path):
    cfg = tamnas.load_config("quickstart", {**TINY, "train.phase1_epochs": 3, "train.phase2_epochs": 3,
                                            "train.lr_milestones": [100], "train.lr": 0.1,
                                            "search.bn_images": 128, "search.eval_images": 100})
    run = RunDir(tmp_path / "run")
    train_supernet(cfg, run, torch.device("cpu"), quiet=True)
    log = pd.read_csv(run.supernet_log)
    assert list(log["epoch"]) == list(range(6)) and list(log["phase"]) == [1, 1, 1, 2, 2, 2]
    # with entangled weights six short epochs on 8x8 digits reach about 0.48 (chance: 0.1)
    assert log["clean_acc"].iloc[-1] > 0.35
    assert log["adv_acc"].iloc[-1] > 0.3
    assert load_checkpoint(run.supernet_checkpoint, kind="supernet")["epoch"] == 6
    # and so do its subnets with inherited weights, small and large alike (about 0.43-0.48)
    space = tamnas.build_space(cfg)
    data = load_data(cfg.data, cfg.seed)
    supernet = space.build_supernet()
    supernet.load_state_dict(load_checkpoint(run.supernet_checkpoint, kind="supernet")["model"])
    evaluator = Evaluator.from_config(cfg, space, supernet.eval(), data, torch.device("cpu"))
    scores = evaluator.evaluate(space.spread_by_params(np.random.default_rng(0), 4))
    assert min(1 - s["clean_err"] for s in scores) > 0.3


def test_kill_and_resume_gives_the_same_weights(digits_cfg, tmp_path, monkeypatch):
    data = load_data(digits_cfg.data, digits_cfg.seed)
    ref = train_supernet(digits_cfg, RunDir(tmp_path / "full"), torch.device("cpu"), data=data,
                         quiet=True)

    import tamnas.train as train_module

    real_save, saves = train_module.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed right after epoch 2 was checkpointed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    part = RunDir(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        train_supernet(digits_cfg, part, torch.device("cpu"), data=data, quiet=True)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert load_checkpoint(part.supernet_checkpoint, kind="supernet")["epoch"] == 2
    resumed = train_supernet(digits_cfg, part, torch.device("cpu"), data=data, quiet=True)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert list(pd.read_csv(part.supernet_log)["epoch"]) == [0, 1, 2, 3]


def test_training_warns_once_when_a_window_holds_few_samples(tmp_path, caplog):
    base = tamnas.load_config("quickstart", TINY)
    space = tamnas.build_space(base)
    widest = space.sample_params(np.random.default_rng(0), 4000,
                                 {"ratio": space.ratio_indices([max(space.ratios)])})
    lo = int(np.quantile(widest, 0.99))          # about 1% of phase-1 samples: reachable, sparse
    cfg = tamnas.load_config("quickstart", {
        **TINY, "train.phase1_epochs": 1, "train.phase2_epochs": 0, "train.batches_per_epoch": 1,
        "train.params_range_phase1": [lo, int(widest.max())]})
    with caplog.at_level("WARNING", logger="tamnas"):
        train_supernet(cfg, RunDir(tmp_path / "run"), torch.device("cpu"), quiet=True)
    warnings = [r.getMessage() for r in caplog.records if "params windows" in r.getMessage()]
    assert len(warnings) == 1 and "phase 1, epochs 0-0" in warnings[0]


def test_sandwich_draws_the_widest_and_narrowest_offered_ratios_and_one_random_path():
    cfg = tamnas.load_config("quickstart", {"train.sandwich": True, "train.enlarge_every": 2})
    space = tamnas.build_space(cfg)
    sched = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    rng = np.random.default_rng(0)
    epoch = cfg.train.phase1_epochs + 2          # phase 2 offers the three widest ratios here
    offered = sched.ratio_values(epoch)
    assert len(offered) == 3
    ratio_genes = [i for i, g in enumerate(space.genes) if g.kind == "ratio"]
    for _ in range(5):
        widest, narrowest, other = sched.sandwich(rng, epoch)
        assert {space.ratios[widest[i]] for i in ratio_genes} == {max(offered)}
        assert {space.ratios[narrowest[i]] for i in ratio_genes} == {min(offered)}
        assert {space.ratios[other[i]] for i in ratio_genes} <= set(offered)
    # the blocks stay random on the extremes
    assert len({sched.sandwich(rng, epoch)[0] for _ in range(10)}) > 1


def test_averaged_step_follows_the_mean_gradient_of_the_paths():
    from tamnas.adversarial import build_objective
    from tamnas.train import _averaged_step

    torch.manual_seed(0)
    shared = torch.nn.Linear(5, 3)
    heads = [torch.nn.Sequential(shared, torch.nn.Tanh()), torch.nn.Sequential(shared)]
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    cfg = tamnas.load_config("quickstart", {"train.objective": "standard"})
    objective = build_objective(cfg.train)
    grads = []
    for model in heads:
        shared.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(shared.weight.grad.clone())
    before = shared.weight.detach().clone()
    optimizer = torch.optim.SGD(shared.parameters(), lr=1.0)
    _averaged_step(objective, heads, x, y, optimizer)
    expected = before - (grads[0] + grads[1]) / 2
    assert torch.allclose(shared.weight, expected, atol=1e-6, rtol=0)  # O(1) values, float32


def test_sandwich_supernet_run_learns(tmp_path):
    cfg = tamnas.load_config("quickstart", {**TINY, "train.phase1_epochs": 2,
                                            "train.phase2_epochs": 2, "train.lr_milestones": [100],
                                            "train.sandwich": True})
    run = RunDir(tmp_path / "run")
    train_supernet(cfg, run, torch.device("cpu"), quiet=True)
    log = pd.read_csv(run.supernet_log)
    # as many optimiser steps as plain training: 3 epochs reached 0.29 here (chance: 0.1)
    assert log["clean_acc"].iloc[-1] > 0.25, log


def test_kill_and_resume_inside_a_resample_block_trains_the_same_subnet(tmp_path, monkeypatch):
    """train.resample_every = N epochs: the current subnet travels in the checkpoint."""
    cfg = tamnas.load_config("quickstart", {**TINY, "train.phase1_epochs": 4,
                                            "train.phase2_epochs": 0, "train.lr": 0.1,
                                            "train.resample_every": "4",
                                            "train.batches_per_epoch": 3})
    data = load_data(cfg.data, cfg.seed)
    ref = train_supernet(cfg, RunDir(tmp_path / "full"), torch.device("cpu"), data=data,
                         quiet=True)
    saved = load_checkpoint(RunDir(tmp_path / "full").supernet_checkpoint, kind="supernet")
    assert len(saved["sampler"]["archs"]) == 1

    import tamnas.train as train_module

    real_save, saves = train_module.save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed after epoch 2 of the 4-epoch block

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    part = RunDir(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, part, torch.device("cpu"), data=data, quiet=True)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    mid = load_checkpoint(part.supernet_checkpoint, kind="supernet")
    assert mid["epoch"] == 2 and mid["sampler"] == saved["sampler"]   # one subnet all block
    resumed = train_supernet(cfg, part, torch.device("cpu"), data=data, quiet=True)
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
