"""train.precision = "bf16": training passes under bfloat16 autocast, scoring stays float32."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

import tamnas
from tamnas.adversarial import build_objective
from tamnas.data import load_data
from tamnas.search.evaluator import Evaluator
from tamnas.train import retrain

TINY = {
    "space.stem_channels": 4, "space.stage_channels": [8, 16], "space.stage_layers": [1, 2],
    "space.head_channels": 16, "space.fc_channels": 16, "space.blocks": [0, 3, 6, 18],
    "data.resolution": 8, "data.val_size": 300, "data.batch_size": 32, "data.train_limit": 640,
    "train.yopo_m": 2, "train.yopo_n": 1, "search.bn_images": 128, "search.eval_images": 300,
    "retrain.epochs": 8, "retrain.lr": 0.1, "retrain.lr_milestones": [100],
    "train.objective": "fgsm_rs",     # two passes a step: the learning test stays a few seconds
}
ARCH_SEED = 1


@pytest.fixture(scope="module")
def setup():
    cfg = tamnas.load_config("quickstart", TINY)
    space = tamnas.build_space(cfg)
    arch = space.sample(np.random.default_rng(ARCH_SEED))
    return cfg, space, arch, load_data(cfg.data, cfg.seed)


def _conv_output_dtypes(net: nn.Module) -> tuple[set, list]:
    seen: set = set()
    hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    return seen, hooks


def test_precision_must_be_fp32_or_bf16():
    with pytest.raises(ValueError, match="precision"):
        tamnas.load_config("quickstart", {"train.precision": "fp16"})
    cfg = tamnas.load_config("quickstart")
    assert cfg.train.precision == "fp32"          # the default changes nothing
    with pytest.raises(ValueError, match="train.precision"):
        build_objective(cfg.train).with_precision("half")


@pytest.mark.parametrize("objective", ["standard", "trades", "trades_yopo"])
def test_bf16_step_runs_the_passes_in_bf16_and_keeps_weights_and_gradients_float32(setup, objective):
    cfg, space, arch, _ = setup
    torch.manual_seed(0)
    net = space.build_standalone(arch)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    train_cfg = dataclasses.replace(cfg.train, objective=objective, pgd_steps=2)
    seen, hooks = _conv_output_dtypes(net)
    metrics = build_objective(dataclasses.replace(train_cfg, precision="bf16")).step(net, x, y)
    assert seen == {torch.bfloat16}
    assert all(math.isfinite(v) for v in metrics.values())
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in net.parameters() if p.grad is not None} == {torch.float32}
    seen.clear()
    build_objective(train_cfg).step(net, x, y)
    assert seen == {torch.float32}                # fp32: no autocast anywhere
    for h in hooks:
        h.remove()


def test_bf16_retraining_learns_and_scores_like_fp32_within_binomial_noise(setup, tmp_path,
                                                                           monkeypatch):
    """Same arch, seed and data trained in both precisions; both scored by the float32 evaluator.

    Chance is 90% error. The two error rates are estimates on the same 300
    validation images; their difference must stay within four standard errors
    of a difference of two independent binomial estimates (a conservative
    bound: on shared images the estimates are positively correlated).
    """
    cfg, space, arch, data = setup
    build, seen = space.build_standalone, set()

    def build_watched(a):                     # the net retrain builds, its conv outputs recorded
        net = build(a)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
        return net

    monkeypatch.setattr(space, "build_standalone", build_watched)
    scores = {}
    for precision in ("fp32", "bf16"):
        run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision=precision))
        seen.clear()
        net = retrain(run_cfg, space, arch, tmp_path / precision, torch.device("cpu"), data=data,
                      quiet=True)
        assert seen == ({torch.bfloat16} if precision == "bf16" else {torch.float32})
        seen.clear()
        evaluator = Evaluator.from_config(run_cfg, space, space.build_supernet().eval(), data,
                                          torch.device("cpu"))
        scores[precision] = evaluator.score_model(net, arch)
        assert seen == {torch.float32}            # the scoring attack runs in float32
    bf, fp = scores["bf16"], scores["fp32"]
    assert bf["clean_err"] < 0.4 and bf["adv_err"] < 0.6       # chance: 0.9 (about 0.2 and 0.4 here)
    for key in ("clean_err", "adv_err"):
        n = bf["n_eval"]
        se = math.sqrt(bf[key] * (1 - bf[key]) / n + fp[key] * (1 - fp[key]) / n)
        assert abs(bf[key] - fp[key]) <= 4 * max(se, 1 / n), (key, bf[key], fp[key])
