"""Attacks: closed-form worst cases, monotone accuracy, no side effects, restarts, AutoAttack."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_rounding_close
from toymodels import LinearModel, TinyCNN, TinyMLP, robust_feature_data

from tamnas.attacks import (
    AUTOATTACK_HINT,
    Attack,
    MissingExtraError,
    autoattack,
    fgsm,
    pgd,
    robust_accuracy,
)
from tamnas.config import AttackConfig


def linear_setup(seed: int = 0, n: int = 32, d: int = 20):
    g = torch.Generator().manual_seed(seed)
    model = LinearModel(d, 2)
    with torch.no_grad():  # moderate logits: no saturated softmax, every gradient sign defined
        model.first_layer.weight.copy_(torch.randn(2, d, generator=g) * 0.5)
        model.first_layer.bias.zero_()
    x = torch.rand(n, d, generator=g) * 0.96 + 0.02
    x[:, :3] = torch.tensor([0.0, 1.0, 0.99])  # some coordinates on or near the box edge
    y = torch.randint(0, 2, (n,), generator=g)
    return model, x, y


def closed_form_worst_case(model: LinearModel, x, y, eps):
    """Two-class logits W x + b: the CE worst case is x - eps sign(w_y - w_other), in [0, 1]."""
    w = model.first_layer.weight.detach()
    direction = w[y] - w[1 - y]
    return (x - eps * direction.sign()).clamp(0, 1)


def test_pgd_reaches_the_closed_form_worst_case_of_a_linear_model():
    model, x, y = linear_setup()
    eps = 0.1
    x_adv = pgd(model, x, y, eps, steps=12, step_size=0.025,
                generator=torch.Generator().manual_seed(1))
    # images in [0, 1]; each of the 12 steps rounds one addition and one projection
    assert_rounding_close(x_adv, closed_form_worst_case(model, x, y, eps), depth=2 * 12,
                          scale=1.0)


def test_fgsm_reaches_the_closed_form_worst_case_in_one_step():
    model, x, y = linear_setup(seed=3)
    eps = 0.05
    worst = closed_form_worst_case(model, x, y, eps)
    assert_rounding_close(fgsm(model, x, y, eps), worst, depth=2, scale=1.0)
    rs = fgsm(model, x, y, eps, random_start=True, generator=torch.Generator().manual_seed(0))
    # FGSM-RS by its definition: uniform start in the ball, 1.25 eps along the (constant) worst sign
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    start = torch.max(torch.min(x + eps * u, hi), lo)
    w = model.first_layer.weight.detach()
    expected = torch.max(torch.min(start - 1.25 * eps * (w[y] - w[1 - y]).sign(), hi), lo)
    assert_rounding_close(rs, expected, depth=4, scale=1.0)
    assert (rs == worst).float().mean() > 0.5  # most coordinates reach the far face


@pytest.mark.parametrize("kind", ["pgd", "pgd-kl", "fgsm", "fgsm-rs"])
def test_adversarial_examples_stay_in_the_eps_ball_and_the_pixel_box(kind):
    torch.manual_seed(0)
    model = TinyCNN(1, 4, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    eps = 0.1
    x_adv = {"pgd": lambda: pgd(model, x, y, eps, 3, 0.07, generator=g),
             "pgd-kl": lambda: pgd(model, x, y, eps, 3, 0.07, loss="kl", generator=g),
             "fgsm": lambda: fgsm(model, x, y, eps),
             "fgsm-rs": lambda: fgsm(model, x, y, eps, random_start=True, generator=g)}[kind]()
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()


@pytest.fixture(scope="module")
def trained():
    """A tiny MLP trained with plain CE on a problem whose weak features break at eps 0.05."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = robust_feature_data(768, g)
    x_test, y_test = robust_feature_data(300, g)
    model = TinyMLP(x.shape[1], 32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(240):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval(), x_test, y_test


def test_accuracy_never_rises_with_eps_and_eps_zero_is_clean_accuracy(trained):
    model, x, y = trained
    clean = robust_accuracy(model, (x, y))
    accs = [robust_accuracy(model, (x, y), Attack(eps=eps, steps=10, step_size=max(eps / 4, 1e-3),
                                                  generator=torch.Generator().manual_seed(0)))
            for eps in (0.0, 0.02, 0.05, 0.1, 0.2)]
    assert clean > 0.9
    assert accs[0] == clean
    assert all(b <= a for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] < clean - 0.3  # the attack really bites


def test_accuracy_never_rises_with_steps(trained):
    model, x, y = trained
    accs = [robust_accuracy(model, (x, y), Attack(eps=0.06, steps=steps, step_size=0.015,
                                                  generator=torch.Generator().manual_seed(0)))
            for steps in (0, 1, 3, 10, 30)]
    assert accs[0] == robust_accuracy(model, (x, y))
    assert all(b <= a for a, b in itertools.pairwise(accs)), accs
    fgsm_acc = robust_accuracy(model, (x, y), Attack(kind="fgsm", eps=0.06))
    assert accs[-1] <= fgsm_acc  # PGD never beats FGSM here (no gradient masking)


def test_restarts_keep_the_worst_case_per_example(trained):
    model, x, y = trained
    eps, steps, size = 0.04, 3, 0.02
    g = torch.Generator().manual_seed(5)
    singles = [pgd(model, x, y, eps, steps, size, restarts=1, generator=g) for _ in range(3)]
    with torch.no_grad():
        correct = torch.stack([model(s).argmax(1) == y for s in singles])
    best = pgd(model, x, y, eps, steps, size, restarts=3,
               generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        best_correct = model(best).argmax(1) == y
    # misclassified under restarts=3 exactly where any of the same three restarts misclassifies
    assert torch.equal(best_correct, correct.all(0))
    assert correct.float().mean(1).min() > best_correct.float().mean()  # restarts helped
    # among examples no restart breaks, the kept one has the highest loss of the three
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(s), y, reduction="none") for s in singles])
        kept = F.cross_entropy(model(best), y, reduction="none")
    robust = correct.all(0)
    assert_rounding_close(kept[robust], losses.max(0).values[robust], terms=10, depth=3)


def test_kl_attack_increases_the_trades_kl(trained):
    model, x, y = trained
    with torch.no_grad():
        p = F.softmax(model(x), 1)

    def kl(x_adv):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(model(x_adv), 1), p, reduction="batchmean").item()

    start = pgd(model, x, y, 0.05, 0, 0.01, loss="kl")
    one = pgd(model, x, y, 0.05, 1, 0.01, loss="kl", start_std=0.001,
              generator=torch.Generator().manual_seed(0))
    ten = pgd(model, x, y, 0.05, 10, 0.01, loss="kl", start_std=0.001,
              generator=torch.Generator().manual_seed(0))
    assert torch.equal(start, x) and abs(kl(start)) < 1e-6
    assert 0 < kl(one) < kl(ten)
    assert torch.equal(pgd(model, x, None, 0.05, 10, 0.01, loss="kl", start_std=0.001,
                           generator=torch.Generator().manual_seed(0)), ten)  # no labels needed


def bn_model_with_state():
    torch.manual_seed(0)
    model = TinyCNN(1, 4, 10)
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 8, 8))  # non-trivial running statistics
    F.cross_entropy(model(torch.rand(4, 1, 8, 8)), torch.arange(4)).backward()  # non-zero .grad
    return model


@pytest.mark.parametrize("make", [
    lambda m, x, y: pgd(m, x, y, 0.1, 3, 0.03, generator=torch.Generator().manual_seed(0)),
    lambda m, x, y: pgd(m, x, y, 0.1, 2, 0.03, restarts=2, loss="kl"),
    lambda m, x, y: fgsm(m, x, y, 0.1, random_start=True),
    lambda m, x, y: Attack(kind="fgsm", eps=0.1)(m, x, y),
])
def test_attack_leaves_weights_grads_bn_statistics_and_modes_untouched(make):
    model = bn_model_with_state()
    model.rest[0].eval()  # a mixed mode must come back as it was
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    make(model, x, y)
    assert {name: m.training for name, m in model.named_modules()} == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for k, p in model.named_parameters():
        assert torch.equal(p.grad, grads[k]), k


def test_attack_runs_in_eval_mode():
    model = bn_model_with_state()
    seen = []
    model.rest[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    pgd(model, torch.rand(4, 1, 8, 8), torch.arange(4), 0.1, 2, 0.05)
    assert seen and not any(seen) and model.training


def test_zero_eps_or_zero_steps_returns_the_input():
    model, x, y = linear_setup()
    assert torch.equal(pgd(model, x, y, 0.0, 10, 0.01), x)
    assert torch.equal(pgd(model, x, y, 0.1, 0, 0.01), x)
    assert torch.equal(fgsm(model, x, y, 0.0), x)


def test_same_generator_seed_gives_the_same_examples():
    model, x, y = linear_setup(n=8)
    a = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(3))
    b = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(3))
    c = pgd(model, x, y, 0.1, 1, 0.01, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_attack_from_config_and_bad_settings():
    cfg = AttackConfig(eps=0.1, steps=7, step_size=0.02, restarts=2, loss="kl")
    attack = Attack.from_config(cfg)
    assert (attack.kind, attack.eps, attack.steps, attack.step_size, attack.restarts, attack.loss) \
        == ("pgd", 0.1, 7, 0.02, 2, "kl")
    with pytest.raises(ValueError, match="kind 'cw'.*pgd, fgsm"):
        Attack(kind="cw")
    with pytest.raises(ValueError, match="loss 'l2'.*ce, kl"):
        Attack(loss="l2")
    with pytest.raises(ValueError, match="restarts"):
        Attack(restarts=0)


def test_robust_accuracy_takes_tensors_or_a_loader_and_matches_a_direct_count():
    model, x, y = linear_setup(n=40)
    attack = Attack(kind="fgsm", eps=0.05)
    with torch.no_grad():
        expected = (model(fgsm(model, x, y, 0.05)).argmax(1) == y).float().mean().item()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    assert robust_accuracy(model, (x, y), attack, batch_size=9) == pytest.approx(expected)
    assert robust_accuracy(model, loader, attack) == pytest.approx(expected)


def test_autoattack_without_the_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # None in sys.modules makes import fail
    monkeypatch.setitem(sys.modules, "autoattack", None)
    model, x, y = linear_setup(n=4)
    with pytest.raises(ImportError) as err:
        autoattack(model, x, y, 0.1)
    assert isinstance(err.value, MissingExtraError)
    assert str(err.value) == AUTOATTACK_HINT == \
        "AutoAttack needs the optional extra: pip install 'tamnas[attacks]'"


def test_autoattack_adapter_breaks_a_linear_model_at_its_closed_form_margin():
    pytest.importorskip("pyautoattack")
    model, x, y = linear_setup(n=6)
    eps = 0.2
    x_adv = autoattack(model, x, y, eps, attacks=["apgd-ce"])
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= eps + 1e-5
    with torch.no_grad():
        worst = model(closed_form_worst_case(model, x, y, eps)).argmax(1) != y
        broken = model(x_adv).argmax(1) != y
    assert torch.equal(broken, worst)  # APGD breaks exactly the examples the worst case breaks
