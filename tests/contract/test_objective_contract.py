"""The Objective contract (adversarial.py), checked on every registered training objective.

Parametrised over the objective registry: an objective is tested the day it
is registered, built from a TrainConfig as `tamnas train` builds it.
"""

from __future__ import annotations

import pytest
import torch
from toymodels import TinyMLP, robust_feature_data

from tamnas.adversarial import OBJECTIVES, build_objective
from tamnas.attacks import robust_accuracy
from tamnas.config import TrainConfig

# the toy data's budget: above the weak features' shift (0.05), below the robust margin (0.3)
EPS = 0.1
# Feature 0 alone is right with probability 0.9 (its label flip rate is 0.1); chance is 0.5.
# An objective that learns gets at least halfway from chance to that.
LEARNED = 0.5 + 0.5 * (0.9 - 0.5)


def objective_config(name: str) -> TrainConfig:
    """Every setting an objective may read, sized for a 17-feature toy problem."""
    return TrainConfig(objective=name, eps=EPS, beta=1.0, pgd_steps=3, pgd_step_size=EPS / 2,
                       fgsm_step=1.25, yopo_m=2, yopo_n=2, yopo_sigma=EPS / 2)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_learns_a_toy_problem(name):
    g = torch.Generator().manual_seed(0)
    x, y = robust_feature_data(768, g)
    x_test, y_test = robust_feature_data(400, g)
    torch.manual_seed(0)
    model = TinyMLP(x.shape[1], 32, 2)
    before = robust_accuracy(model, (x_test, y_test))
    objective = build_objective(objective_config(name), generator=torch.Generator().manual_seed(1))
    assert objective.name == name
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    order = torch.Generator().manual_seed(2)
    for _ in range(6):      # 72 steps: plain CE leaves its plateau in the third or fourth epoch
        for idx in torch.randperm(len(x), generator=order).split(64):
            metrics = objective.step(model, x[idx], y[idx], optimizer=opt)
            assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics
    after = robust_accuracy(model, (x_test, y_test))
    assert after >= LEARNED and after > before, (before, after)
