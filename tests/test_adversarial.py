"""Training objectives: all step; TRADES-YOPO against hand computations; YOPO buys robustness."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_rounding_close, rounding_tolerance
from toymodels import LinearModel, TinyCNN, TinyMLP, robust_feature_data

from tamnas.adversarial import (
    OBJECTIVES,
    FgsmRS,
    PgdAT,
    Standard,
    Trades,
    TradesYopo,
    build_objective,
)
from tamnas.attacks import Attack, batch_stats_mode, pgd, robust_accuracy
from tamnas.config import TrainConfig

SETTINGS = {"standard": {},
            "pgd_at": {"eps": 0.1, "steps": 2, "step_size": 0.05},
            "fgsm_rs": {"eps": 0.1},
            "trades": {"beta": 1.0, "eps": 0.1, "steps": 2, "step_size": 0.05},
            "trades_yopo": {"m": 2, "n": 2, "eps": 0.1, "sigma": 0.04, "beta": 1.0}}


# TinyCNN on 8 images of 1 x 8 x 8: a gradient entry sums over every pixel of the batch, and a
# backward pass chains five reductions (conv, BN, conv, BN, linear)
TERMS, DEPTH = 8 * 8 * 8, 5


def cnn_batch(seed: int = 0, n: int = 8):
    torch.manual_seed(seed)
    model = TinyCNN(1, 4, 10)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.9 + 0.05
    y = torch.randint(0, 10, (n,), generator=g)
    return model, x, y


def test_config_accepts_exactly_the_registered_objectives():
    from tamnas import load_config

    assert set(OBJECTIVES) == set(SETTINGS)
    for name in OBJECTIVES:
        assert load_config("quickstart", {"train.objective": name}).train.objective == name
    with pytest.raises(ValueError, match="train.objective: 'nope' is not allowed; choose one of"):
        load_config("quickstart", {"train.objective": "nope"})


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_objective_steps_returns_finite_metrics_and_changes_weights(name):
    model, x, y = cnn_batch()
    model.eval()  # the caller's mode must come back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    objective = OBJECTIVES[name](**SETTINGS[name], generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = objective.step(model, x, y, optimizer=optimizer)
    assert "loss" in metrics and ("clean_acc" in metrics or "adv_acc" in metrics)
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert not model.training and not any(m.training for m in model.modules())
    for k, p in model.named_parameters():
        assert not torch.equal(p, before[k]), f"{name} did not move {k}"
    # train-mode passes moved the BatchNorm statistics
    assert not torch.equal(model.state_dict()["rest.0.running_mean"], before["rest.0.running_mean"])


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_without_optimizer_gradients_accumulate_and_weights_stay(name):
    model, x, y = cnn_batch(1)
    before = {k: v.clone() for k, v in model.named_parameters()}
    OBJECTIVES[name](**SETTINGS[name], generator=torch.Generator().manual_seed(0)).step(model, x, y)
    for k, p in model.named_parameters():
        assert torch.equal(p, before[k]) and p.grad is not None and p.grad.abs().sum() > 0, k


def test_build_objective_reads_the_train_config():
    cfg = TrainConfig(objective="trades_yopo", yopo_m=4, yopo_n=2, eps=0.1, yopo_sigma=0.03,
                      beta=6.0, first_layer_grad="hamiltonian")
    g = torch.Generator()
    obj = build_objective(cfg, generator=g)
    assert isinstance(obj, TradesYopo) and obj.generator is g
    assert (obj.m, obj.n, obj.eps, obj.sigma, obj.beta, obj.first_layer_grad) == \
        (4, 2, 0.1, 0.03, 6.0, "hamiltonian")
    cfg = TrainConfig(objective="fgsm_rs", eps=0.08, fgsm_step=1.25)
    f = build_objective(cfg)
    assert isinstance(f, FgsmRS) and f.step_size == pytest.approx(0.1)
    cfg = TrainConfig(objective="trades", eps=0.1, pgd_steps=7, pgd_step_size=0.02, beta=3.0)
    t = build_objective(cfg)
    assert isinstance(t, Trades) and (t.beta, t.eps, t.steps, t.step_size) == (3.0, 0.1, 7, 0.02)
    p = build_objective(TrainConfig(objective="pgd_at", eps=0.1, pgd_steps=5, pgd_step_size=0.03))
    assert isinstance(p, PgdAT) and (p.eps, p.steps, p.step_size) == (0.1, 5, 0.03)
    assert isinstance(build_objective(TrainConfig(objective="standard")), Standard)


def test_bad_objective_settings_are_clear_errors():
    cfg = TrainConfig()
    cfg.objective = "free_at"
    with pytest.raises(ValueError, match="train.objective: unknown objective 'free_at'"):
        build_objective(cfg)
    with pytest.raises(ValueError, match="first_layer_grad 'keep'.*discard, hamiltonian"):
        TradesYopo(first_layer_grad="keep")
    with pytest.raises(ValueError, match="m and n"):
        TradesYopo(m=0)
    with pytest.raises(ValueError, match="no first_layer"):
        TradesYopo().step(torch.nn.Linear(4, 2), torch.rand(3, 4), torch.tensor([0, 1, 0]))


# --- TRADES-YOPO against plain autograd -----------------------------------------------------------

def kl_q_p(q, logits):
    """KL(q || softmax(logits)), batch mean, written out."""
    return (q * (q.log() - F.log_softmax(logits, 1))).sum(1).mean()


def hand_yopo_m_1(model, x, eps, sigma, seed, train, m=1):
    """YOPO-m-1's perturbations by plain autograd on the whole model.

    With n = 1 each inner step's gradient <dz/deta, p> with p = dKL/dz at
    the round's eta is, by the chain rule, the full input gradient of the KL
    there, so YOPO-m-1 is m plain signed steps on KL(q || f(clip(x + eta)))
    from eta0 = 0.001 randn. Returns [eta0, ..., eta_m] and [p_0, ..., p_{m-1}].
    """
    model.train(train)
    etas = [0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))]
    ps = []
    with torch.no_grad():
        q = F.softmax(model(x), 1)
    for _ in range(m):
        e = etas[-1].clone().requires_grad_(True)
        z = model.first_layer((x + e).clamp(0, 1))
        g_eta, p = torch.autograd.grad(kl_q_p(q, model.forward_from_first(z)), [e, z])
        nxt = (etas[-1] + sigma * g_eta.sign()).clamp(-eps, eps)
        etas.append((x + nxt).clamp(0, 1) - x)
        ps.append(p)
    return etas, ps


def hand_trades_loss(model, x, x_adv, y, beta):
    model.train()
    logits, logits_adv = model(x), model(x_adv)
    p_clean = F.softmax(logits, 1)
    kl = (p_clean * (F.log_softmax(logits, 1) - F.log_softmax(logits_adv, 1))).sum() / len(x)
    return F.cross_entropy(logits, y) + beta * kl


@pytest.mark.parametrize("m", [1, 3])
def test_yopo_m_1_step_matches_a_hand_computed_step(m):
    model, x, y = cnn_batch(2)
    hand = copy.deepcopy(model)
    eps, sigma, beta, lr, seed = 0.05, 0.02, 2.0, 0.1, 7
    for p in model.parameters():  # junk gradients: step must zero them first
        p.grad = torch.full_like(p, 3.0)
    objective = TradesYopo(m, 1, eps, sigma, beta, generator=torch.Generator().manual_seed(seed))
    metrics = objective.step(model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=lr))

    etas, _ = hand_yopo_m_1(hand, x, eps, sigma, seed, train=False, m=m)
    loss = hand_trades_loss(hand, x, (x + etas[-1]).clamp(0, 1), y, beta)
    loss.backward()
    with torch.no_grad():
        for p in hand.parameters():
            p -= lr * p.grad
    assert metrics["loss"] == pytest.approx(loss.item(), rel=0, abs=rounding_tolerance(
        abs(loss.item()), TERMS, DEPTH))
    for (k, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        if a.is_floating_point():  # weights and BatchNorm statistics
            assert_rounding_close(a, b, TERMS, DEPTH, msg=k)
        else:
            assert torch.equal(a, b), k


@pytest.mark.parametrize("m", [1, 3])
def test_batch_statistics_step_reuses_its_clean_pass_and_matches_a_hand_computed_step(m):
    """adversary_bn="batch": the update's clean pass doubles as the adversary's target.

    The result must be the step as written out: the adversary in train mode
    on a copy (BN buffers untouched), then the TRADES loss's clean and
    adversarial passes, each moving the running statistics once.
    """
    model, x, y = cnn_batch(7)
    hand, adversary_copy = copy.deepcopy(model), copy.deepcopy(model)
    eps, sigma, beta, seed = 0.1, 0.03, 2.0, 13
    TradesYopo(m, 1, eps, sigma, beta, generator=torch.Generator().manual_seed(seed),
               adversary_bn="batch").step(model, x, y)
    etas, _ = hand_yopo_m_1(adversary_copy, x, eps, sigma, seed, train=True, m=m)
    hand_trades_loss(hand, x, (x + etas[-1]).clamp(0, 1), y, beta).backward()
    for name, p in model.named_parameters():
        assert_rounding_close(p.grad, hand.get_parameter(name).grad, TERMS, DEPTH, msg=name)
    for (k, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        if a.is_floating_point():        # running statistics: clean pass, then adversarial
            assert_rounding_close(a, b, TERMS, DEPTH, msg=k)
        else:
            assert torch.equal(a, b), k


def test_trades_batch_statistics_step_shares_its_clean_pass_and_matches_the_written_out_step():
    model, x, y = cnn_batch(8)
    hand, adversary_copy = copy.deepcopy(model), copy.deepcopy(model)
    eps, steps, step_size, beta, seed = 0.1, 3, 0.04, 3.0, 17
    Trades(beta, eps, steps, step_size, generator=torch.Generator().manual_seed(seed),
           adversary_bn="batch").step(model, x, y)
    x_adv = pgd(adversary_copy, x, y, eps, steps, step_size, loss="kl",
                generator=torch.Generator().manual_seed(seed), start_std=Trades.START_STD,
                mode=batch_stats_mode)
    hand_trades_loss(hand, x, x_adv, y, beta).backward()
    for name, p in model.named_parameters():
        assert_rounding_close(p.grad, hand.get_parameter(name).grad, TERMS, DEPTH, msg=name)
    for (k, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        if a.is_floating_point():
            assert_rounding_close(a, b, TERMS, DEPTH, msg=k)
        else:
            assert torch.equal(a, b), k


@pytest.mark.parametrize("m", [1, 3])
def test_hamiltonian_mode_adds_the_pontryagin_term_to_layer_one_only(m):
    model, x, y = cnn_batch(3)
    hand, pontryagin_model = copy.deepcopy(model), copy.deepcopy(model)
    eps, sigma, beta, seed = 0.1, 0.03, 2.0, 11
    TradesYopo(m, 1, eps, sigma, beta, "hamiltonian",
               generator=torch.Generator().manual_seed(seed)).step(model, x, y)

    # the adversary in train mode (batch statistics), on a copy whose BN buffers may change
    etas, ps = hand_yopo_m_1(pontryagin_model, x, eps, sigma, seed, train=True, m=m)
    layer = pontryagin_model.first_layer
    names = [n for n, _ in layer.named_parameters()]
    extra = {n: torch.zeros_like(p) for n, p in layer.named_parameters()}
    for eta_after, p in zip(etas[1:], ps):  # round j: <layer(x + eta_{j+1}), p_j>
        h = (layer((x + eta_after).clamp(0, 1)) * p).sum()
        for n, g in zip(names, torch.autograd.grad(h, list(layer.parameters()))):
            extra[n] += g
    hand_trades_loss(hand, x, (x + etas[-1]).clamp(0, 1), y, beta).backward()

    for name, p in model.named_parameters():
        expected = hand.get_parameter(name).grad
        if name.startswith("first_layer."):
            extra_part = beta / m * extra[name[len("first_layer."):]]
            # m + 1 backward passes add up in layer one's gradient
            tol = assert_rounding_close(p.grad, expected + extra_part, TERMS, DEPTH * (m + 1),
                                        msg=name)
            # the term is far above float noise, so layer one's gradient differs from discard's
            assert (p.grad - expected).abs().max() > 2 * tol
        else:
            assert_rounding_close(p.grad, expected, TERMS, DEPTH, msg=name)
    for (k, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        if a.is_floating_point():  # the adversary left the BN statistics alone
            assert_rounding_close(a, b, TERMS, DEPTH, msg=k)
        else:
            assert torch.equal(a, b), k


def test_discard_mode_gives_layer_one_only_the_final_loss_gradient():
    model, x, y = cnn_batch(4)
    hand = copy.deepcopy(model)
    objective = TradesYopo(2, 3, 0.05, 0.02, 1.0, generator=torch.Generator().manual_seed(5))
    twin = TradesYopo(2, 3, 0.05, 0.02, 1.0, generator=torch.Generator().manual_seed(5))
    eta, extra = twin.perturb(copy.deepcopy(model), x)
    assert extra is None
    objective.step(model, x, y)
    hand_trades_loss(hand, x, (x + eta).clamp(0, 1), y, 1.0).backward()
    for name, p in model.named_parameters():
        assert_rounding_close(p.grad, hand.get_parameter(name).grad, TERMS, DEPTH, msg=name)


def literal_yopo_eta(model, x, eps, sigma, seed, m, n):
    """The m x n loop written out as paper 004 (section III-C) states it, in eval mode."""
    model.eval()
    eta = 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        q = F.softmax(model(x), 1)
    for _ in range(m):
        z = model.first_layer((x + eta).clamp(0, 1)).detach().requires_grad_(True)
        (p,) = torch.autograd.grad(kl_q_p(q, model.forward_from_first(z)), z)
        for _ in range(n):
            e = eta.clone().requires_grad_(True)
            (g,) = torch.autograd.grad((model.first_layer((x + e).clamp(0, 1)) * p).sum(), e)
            eta = (x + (eta + sigma * g.sign()).clamp(-eps, eps)).clamp(0, 1) - x
    return eta


def test_yopo_perturbation_equals_the_literal_m_by_n_loop():
    model, x, _ = cnn_batch(6)
    objective = TradesYopo(2, 3, 0.1, 0.02, 1.0, generator=torch.Generator().manual_seed(4))
    eta, _ = objective.perturb(model, x)
    expected = literal_yopo_eta(copy.deepcopy(model), x, 0.1, 0.02, 4, 2, 3)
    # sign steps and clamps: only the additions of x round, one per step (m * n of them)
    assert_rounding_close(eta, expected, depth=2 * 3 + 1, scale=1.0)  # images in [0, 1]


@pytest.mark.parametrize("mode", ["discard", "hamiltonian"])
def test_yopo_inner_updates_increase_the_kl(mode):
    model, x, _ = cnn_batch(5, n=16)
    with torch.no_grad():
        model.train()
        model(x)  # BN statistics that fit the data
        model.eval()
        q = F.softmax(model(x), 1)

    def kl(eta):
        with torch.no_grad():
            return kl_q_p(q, model((x + eta).clamp(0, 1))).item()

    eta0 = 0.001 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    values = [kl(eta0)]
    for m, n in [(1, 1), (1, 3), (3, 3)]:
        eta, _ = TradesYopo(m, n, 0.1, 0.02, 1.0, mode,
                            generator=torch.Generator().manual_seed(0)).perturb(model, x)
        assert (eta.abs() <= 0.1 + 1e-6).all() and ((x + eta) >= 0).all() and ((x + eta) <= 1).all()
        values.append(kl(eta))
    assert all(b > a for a, b in itertools.pairwise(values)), values
    assert values[-1] > 100 * values[0]


def test_yopo_training_is_more_robust_than_standard_training():
    g = torch.Generator().manual_seed(0)
    x, y = robust_feature_data(768, g)
    x_test, y_test = robust_feature_data(400, g)
    eps = 0.1  # above the weak features' shift (0.05), below the robust feature's margin (0.3)
    attack = Attack(eps=eps, steps=20, step_size=eps / 4,
                    generator=torch.Generator().manual_seed(1))

    def train(objective):
        torch.manual_seed(0)
        model = TinyMLP(x.shape[1], 32, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        order = torch.Generator().manual_seed(0)
        for _ in range(4):
            perm = torch.randperm(len(x), generator=order)
            for idx in perm.split(64):
                objective.step(model, x[idx], y[idx], optimizer=opt)
        data = (x_test, y_test)
        return robust_accuracy(model, data), robust_accuracy(model, data, attack)

    std_clean, std_adv = train(Standard())
    yopo_clean, yopo_adv = train(TradesYopo(3, 2, eps, 0.04, 1.0,
                                            generator=torch.Generator().manual_seed(2)))
    assert std_clean > 0.9 and yopo_clean > 0.8
    assert yopo_adv > std_adv + 0.4, (std_adv, yopo_adv)


def test_yopo_works_on_a_model_whose_layer_one_is_the_whole_model():
    g = torch.Generator().manual_seed(0)
    model = LinearModel(6, 2)
    x, y = torch.rand(10, 6, generator=g), torch.randint(0, 2, (10,), generator=g)
    metrics = TradesYopo(2, 2, 0.1, 0.05, 1.0, "hamiltonian", generator=g).step(
        model, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert set(metrics) == {"loss", "clean_acc", "adv_acc", "kl"} and metrics["kl"] >= 0


def test_objectives_train_a_supernet_path_through_the_subnet_view():
    import numpy as np

    import tamnas

    cfg = tamnas.load_config("quickstart", {
        "space.stem_channels": 4, "space.stage_channels": [8, 16], "space.stage_layers": [1, 1],
        "space.head_channels": 16, "space.fc_channels": 16, "data.resolution": 8})
    try:
        space = tamnas.build_space(cfg)
    except ValueError as e:  # the space is registered by another module
        pytest.skip(f"shufflenet space not available: {e}")
    torch.manual_seed(0)
    supernet = space.build_supernet()
    arch = space.sample(np.random.default_rng(0))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
    stem = supernet.first_layer.conv.weight if hasattr(supernet.first_layer, "conv") else \
        next(supernet.first_layer.parameters())
    before = stem.detach().clone()
    for mode in ("discard", "hamiltonian"):
        objective = TradesYopo(2, 2, 0.1, 0.03, 1.0, mode, generator=g)
        metrics = objective.step(supernet.path(arch), x, y,
                                 optimizer=torch.optim.SGD(supernet.parameters(), lr=0.1))
        assert all(np.isfinite(v) for v in metrics.values())
    assert not torch.equal(stem, before)


@pytest.mark.parametrize("m", [1, 3])
def test_batch_statistics_adversary_is_the_train_mode_perturbation_and_keeps_bn_buffers(m):
    """adversary_bn="batch": YOPO's rounds see batch-statistics BN, as the weight update does."""
    model, x, _y = cnn_batch(4)
    with torch.no_grad():                    # running statistics far from the batch's own
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.fill_(0.7)
                mod.running_var.fill_(3.0)
    eps, sigma, seed = 0.1, 0.03, 5
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    objective = TradesYopo(m, 1, eps, sigma, 1.0, generator=torch.Generator().manual_seed(seed),
                           adversary_bn="batch")
    eta, _ = objective.perturb(model, x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())
    train_etas, _ = hand_yopo_m_1(copy.deepcopy(model), x, eps, sigma, seed, train=True, m=m)
    eval_etas, _ = hand_yopo_m_1(copy.deepcopy(model), x, eps, sigma, seed, train=False, m=m)
    # signs of float32 gradients may flip where a gradient is ~0: compare the bulk, not every pixel
    assert (eta - train_etas[-1]).abs().le(1e-6).float().mean() > 0.99
    assert (eta - eval_etas[-1]).abs().le(1e-6).float().mean() < 0.9
    with pytest.raises(ValueError, match="adversary_bn"):
        TradesYopo(m, 1, eps, sigma, 1.0, adversary_bn="running")
