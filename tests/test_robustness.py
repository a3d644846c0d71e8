"""Robustness grid: shape, step-size rule, self-checks on a trained net and a bad table, files."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tamnas.analysis import robustness
from tamnas.errors import MissingExtraError


def _reference_fgsm(model, x, y, eps):
    """Goodfellow et al.'s FGSM written out here, independent of tamnas.attacks."""
    x = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


@pytest.fixture
def attacks():
    import tamnas.attacks

    return tamnas.attacks


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def synthetic_task(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class = the brighter half of an 8x8 image; spread margins make robustness fall with eps."""
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.rand((n, 1, 8, 8), generator=gen) * 0.5 + 0.25
    margin = torch.rand(n, generator=gen) * 0.2
    sign = (y * 2 - 1).float().view(n, 1, 1)
    x[:, 0, :, :4] += (sign * margin.view(n, 1, 1)).expand(n, 8, 4)
    x[:, 0, :, 4:] -= (sign * margin.view(n, 1, 1)).expand(n, 8, 4)
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = synthetic_task(1024, gen)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for epoch in range(20):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    xt, yt = synthetic_task(200, gen)
    return model.eval(), xt, yt


def test_step_size_rule():
    assert robustness.step_size(8 / 255, 10) == pytest.approx(2.5 * 8 / 255 / 10)
    assert robustness.step_size(0.1, 4, "1.25*eps/steps") == pytest.approx(0.03125)
    assert robustness.step_size(0.1, 4, 0.01) == 0.01
    with pytest.raises(ValueError, match="step_size_rule"):
        robustness.step_size(0.1, 4, "eps/2")


def test_grid_shape_clean_column_and_self_checks_on_a_trained_net(trained, attacks):
    model, x, y = trained
    eps_list, steps_list = [0.15, 0.0, 0.05, 0.1], [6, 2, 4]      # unsorted on purpose
    table = robustness.robustness_grid(model, x, y, eps_list, steps_list, batch_size=64,
                                       generator=torch.Generator().manual_seed(1))
    assert list(table.index) == [0.0, 0.05, 0.1, 0.15] and table.index.name == "eps"
    assert list(table.columns) == ["clean", "fgsm", "pgd-2", "pgd-4", "pgd-6"]
    assert table.attrs["n"] == 200 and table.attrs["step_size_rule"] == "2.5*eps/steps"
    with torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum()) / len(y)
    assert clean > 0.9
    assert (table["clean"] == clean).all()
    assert (table.loc[0.0] == clean).all()             # no budget, no change
    assert table.loc[0.15, "pgd-6"] < clean - 0.2      # the attack really bites
    assert robustness.sanity_checks(table) == []
    counts = (table * 200).to_numpy()
    assert np.allclose(counts, np.round(counts))       # accuracies are counts over all 200 images
    again = robustness.robustness_grid(model, x, y, eps_list, steps_list, batch_size=64,
                                       generator=torch.Generator().manual_seed(1))
    pd.testing.assert_frame_equal(again, table)        # the seed fixes the random starts


def test_grid_calls_pgd_with_the_rule_on_every_batch(trained, attacks, monkeypatch):
    model, x, y = trained
    calls = []

    def recording_pgd(model_, xb, yb, eps, steps, step_size, restarts=1, generator=None, **kw):
        calls.append((len(xb), eps, steps, step_size, restarts))
        return xb.clone()

    monkeypatch.setattr(attacks, "pgd", recording_pgd)
    table = robustness.robustness_grid(model, x[:50], y[:50], [0.1], [10, 20], batch_size=32,
                                       restarts=2)
    assert sorted(calls) == sorted([(32, 0.1, 10, 0.025, 2), (18, 0.1, 10, 0.025, 2),
                                    (32, 0.1, 20, 0.0125, 2), (18, 0.1, 20, 0.0125, 2)])
    assert table.loc[0.1, "pgd-10"] == table.loc[0.1, "clean"]   # identity "attack"
    robustness.robustness_grid(model, x[:8], y[:8], [0.1], [10], step_size_rule=0.003)
    assert calls[-1][3] == 0.003


def test_grid_refuses_an_attack_that_leaves_the_ball(trained, attacks, monkeypatch):
    model, x, y = trained
    monkeypatch.setattr(attacks, "fgsm", lambda m, xb, yb, eps: (xb + 2 * eps).clamp(0, 1))
    with pytest.raises(RuntimeError, match="fgsm"):
        robustness.robustness_grid(model, x[:8], y[:8], [0.05], [2])


def test_grid_rejects_bad_lists(trained, attacks):
    model, x, y = trained
    with pytest.raises(ValueError, match="eps_list"):
        robustness.robustness_grid(model, x, y, [8], [10])
    with pytest.raises(ValueError, match="steps_list"):
        robustness.robustness_grid(model, x, y, [0.1], [0])
    with pytest.raises(ValueError, match="labels"):
        robustness.robustness_grid(model, x, y[:5], [0.1], [10])


def acc_clean(model, x, y) -> float:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum()) / len(y)


def grid(rows: dict) -> pd.DataFrame:
    columns = ["clean", "fgsm", "pgd-10", "pgd-30", "pgd-50"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index.name = "eps"
    table.attrs["n"] = 1000
    return table


GOOD = {0.0: [0.80, 0.80, 0.80, 0.80, 0.80], 2 / 255: [0.80, 0.66, 0.62, 0.61, 0.61],
        4 / 255: [0.80, 0.55, 0.52, 0.52, 0.51], 8 / 255: [0.80, 0.35, 0.31, 0.30, 0.30]}


def test_sanity_checks_accept_a_consistent_grid_and_noise_within_tolerance():
    assert robustness.sanity_checks(grid(GOOD)) == []
    noisy = {**GOOD, 4 / 255: [0.80, 0.55, 0.52, 0.524, 0.51]}   # +0.4% with more steps: noise
    assert robustness.sanity_checks(grid(noisy)) == []
    assert robustness.sanity_checks(grid(noisy), tol=0.001) != []


def test_sanity_checks_flag_each_violation():
    # n = 1000: random starts move an accuracy near 0.5 by at most ~1.6% (one binomial SE),
    # so each violation below is several of those
    bad = {0.0: [0.80, 0.78, 0.80, 0.80, 0.80],      # fgsm at eps 0 differs from clean
           2 / 255: [0.80, 0.45, 0.62, 0.61, 0.61],   # pgd beats fgsm
           4 / 255: [0.80, 0.55, 0.52, 0.62, 0.51],   # fgsm rises with eps; pgd-30 > pgd-10
           8 / 255: [0.80, 0.35, 0.31, 0.30, 0.30]}
    warnings = robustness.sanity_checks(grid(bad))
    text = "\n".join(warnings)
    assert any(w.startswith("fgsm at eps 0") for w in warnings)
    assert "fgsm accuracy rises with eps: 0.4500 at 2/255 -> 0.5500 at 4/255" in text
    assert "accuracy rises with PGD steps at eps 4/255: pgd-10 0.5200 -> pgd-30 0.6200" in text
    assert "pgd-10 beats FGSM at eps 2/255" in text and "pgd-30 beats FGSM at eps 4/255" in text
    above_clean = {**GOOD, 2 / 255: [0.60, 0.66, 0.60, 0.60, 0.60]}
    assert any("above clean" in w for w in robustness.sanity_checks(grid(above_clean)))


def test_noise_tolerance_is_two_binomial_standard_errors_and_at_least_one_image():
    se = math.sqrt((0.5 * 0.5 + 0.4 * 0.6) / 1000)
    assert robustness.noise_tolerance(0.5, 0.4, 1000) == pytest.approx(2 * se, rel=1e-12)
    assert robustness.noise_tolerance(0.5, None, 1000) == pytest.approx(
        2 * math.sqrt(0.25 / 1000), rel=1e-12)              # clean accuracy has no noise
    assert robustness.noise_tolerance(1.0, 1.0, 50) == 1 / 50   # nothing can flip: one image
    assert robustness.noise_tolerance(0.5, 0.5, None) == robustness.DEFAULT_TOL
    assert robustness.noise_tolerance(0.5, 0.5, 1000, tol=0.001) == 0.001


def test_two_images_on_a_healthy_net_are_noise_not_a_warning():
    # the reported case: pgd-5 0.3928 -> pgd-10 0.3983 on 364 test images (2 images)
    table = pd.DataFrame({"clean": [0.6, 0.6], "pgd-5": [0.6, 0.3928], "pgd-10": [0.6, 0.3983]},
                         index=[0.0, 8 / 255])
    table.attrs["n"] = 364
    assert robustness.sanity_checks(table) == []


def test_random_start_noise_rarely_crosses_the_tolerance():
    # Simulate two attacks of equal strength: image i survives each with probability p_i;
    # the tolerance bounds their difference, so a false warning is rare (< 2.5%, z = 2).
    rng = np.random.default_rng(0)
    n, trials = 400, 4000
    for p in (rng.uniform(0, 1, n), np.full(n, 0.5), (rng.uniform(0, 1, n) < 0.4) * 0.9):
        a = (rng.uniform(size=(trials, n)) < p).mean(1)
        b = (rng.uniform(size=(trials, n)) < p).mean(1)
        tol = np.array([robustness.noise_tolerance(x, y, n) for x, y in zip(a, b)])
        assert np.mean(b > a + tol) < 0.025


def test_format_and_save_grid_round_trip(tmp_path):
    table = grid(GOOD)
    text = robustness.format_grid(table)
    lines = text.splitlines()
    assert lines[0].split() == ["eps", "clean", "fgsm", "pgd-10", "pgd-30", "pgd-50"]
    assert lines[2].split() == ["2/255", "20.00", "34.00", "38.00", "39.00", "39.00"]  # error %
    assert lines[-1].startswith("error %")
    paths = robustness.save_grid(table, tmp_path / "out" / "robustness")
    out = tmp_path / "out"
    assert paths == {"csv": out / "robustness.csv", "md": out / "robustness.md",
                     "json": out / "robustness.json"}
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| eps | clean | fgsm | pgd-10 | pgd-30 | pgd-50 |"
    assert md[5] == "| 8/255 | 20.00 | 65.00 | 69.00 | 70.00 | 70.00 |"
    raw = pd.read_csv(paths["csv"])
    assert list(raw.columns) == ["eps", "eps_255", "clean_err", "fgsm_err", "pgd-10_err",
                                 "pgd-30_err", "pgd-50_err"]
    assert raw["clean_err"].tolist() == pytest.approx([0.2] * 4)
    assert raw["eps_255"].tolist() == pytest.approx([0, 2, 4, 8])
    back = robustness.read_grid(paths["csv"])
    pd.testing.assert_frame_equal(back, table.sort_index(), check_exact=False, rtol=1e-9)


def test_autoattack_accuracy_evaluates_in_eval_mode(trained, attacks, monkeypatch):
    model, x, y = trained
    seen = {}

    def fake_autoattack(model_, xb, yb, eps, version="standard", device=None):
        seen["training"], seen["version"] = model_.training, version
        return _reference_fgsm(model_, xb, yb, eps)

    monkeypatch.setattr(attacks, "autoattack", fake_autoattack)
    model.train()
    acc = robustness.autoattack_accuracy(model, x, y, 0.1, device="cpu")
    assert seen == {"training": False, "version": "standard"}
    x_adv = _reference_fgsm(model, x, y, 0.1)
    with torch.no_grad():
        expected = int((model(x_adv).argmax(1) == y).sum()) / len(y)
    assert expected < acc_clean(model, x, y) - 0.1                # the attack changed the answer
    assert acc == pytest.approx(expected)


HAVE_AUTOATTACK = any(importlib.util.find_spec(m) is not None
                      for m in ("pyautoattack", "autoattack"))


@pytest.mark.skipif(HAVE_AUTOATTACK, reason="an AutoAttack package is installed")
def test_autoattack_without_the_extra_names_it(trained, attacks):
    model, x, y = trained
    with pytest.raises(MissingExtraError, match=r"tamnas\[attacks\]"):   # the CLI's exit-2 error
        robustness.autoattack_accuracy(model, x[:4], y[:4], 0.1)


def test_a_cell_gives_the_same_number_alone_or_in_a_grid(trained):
    model, x, y = trained
    x, y = x[:64], y[:64]
    alone = robustness.robustness_grid(model, x, y, [0.1], [5], batch_size=32, seed=3)
    grid_ = robustness.robustness_grid(model, x, y, [0.05, 0.1], [2, 5], batch_size=32, seed=3)
    assert alone.at[0.1, "pgd-5"] == grid_.at[0.1, "pgd-5"]
    assert alone.at[0.1, "fgsm"] == grid_.at[0.1, "fgsm"]


def test_grids_of_one_net_merge_and_keep_every_cell(trained, tmp_path):
    model, x, y = trained
    x, y = x[:64], y[:64]
    big = robustness.robustness_grid(model, x, y, [0.05, 0.1], [2, 5], batch_size=32, seed=3)
    small = robustness.robustness_grid(model, x, y, [0.1], [5], batch_size=32, seed=3)
    merged = robustness.merge_grids(big, small)
    pd.testing.assert_frame_equal(merged, big)       # nothing lost, the common cell agrees
    robustness.save_grid(merged, tmp_path / "r")
    back = robustness.read_grid(tmp_path / "r.csv")
    assert back.attrs["n"] == 64 and back.shape == (2, 4)
    other = robustness.robustness_grid(model, x[:32], y[:32], [0.1], [5], batch_size=32, seed=3)
    assert robustness.merge_grids(big, other) is other   # another image set: no mixing
