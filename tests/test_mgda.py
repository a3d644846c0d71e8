"""MGDA strategy: every variant searches and scores legal archs, the cost objective reaches its
target, the search trains the supernet it is given, second-order and Hessian diagnostics match
exact autograd, and a killed search resumes."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import tamnas
from tamnas.attacks import Attack
from tamnas.data import ImageTensorDataset, load_data, stack
from tamnas.files import load_checkpoint
from tamnas.metrics import kl_to_uniform
from tamnas.search.bilevel_state import BatchStream
from tamnas.search.evaluator import Evaluator
from tamnas.search.mgda import EPOCH_LOG, SDARTS_EPS, VARIANTS, WEIGHT_DECAY, MGDASearch
from tamnas.search.searched_weights import (
    FINETUNED_WEIGHTS,
    SEARCHED_WEIGHTS,
    load_searched,
    searched_fingerprint,
    weights_fingerprint,
)
from tamnas.supernets.base import Gene, SearchSpace, Supernet

torch.set_num_threads(1)

TINY = {"data.resolution": 8, "data.batch_size": 16, "data.val_size": 64, "data.train_limit": 128,
        "data.ood_size": 32, "search.mgda_epochs": 2, "search.mgda_batches_per_epoch": 2,
        "search.bn_images": 32, "search.eval_images": 32, "attack.steps": 2, "train.eps": 0.05}
TIME_COLUMNS = ["eval_seconds", "seconds"]


# -- a tiny differentiable space: 3 layers, ops identity / conv1x1 / conv3x3 ---------------------
C, N_LAYERS, N_OPS = 4, 3, 3


class RelaxToySpace(SearchSpace):
    """Layer 0 must not be the identity (a rule the gene bounds do not express)."""

    name = "relaxtoy"

    def __init__(self):
        self.genes = [Gene(f"layer{i}.op", "op", N_OPS, i) for i in range(N_LAYERS)]
        self.const = C * 9 + 2 * C + C * 10 + 10            # stem conv, its BN, classifier
        self.table = [0, C * C, C * C * 9]

    def allowed_values(self, gene, allowed):
        values = super().allowed_values(gene, allowed)
        return [v for v in values if not (gene.layer == 0 and v == 0)]

    def validate(self, arch):
        arch = super().validate(arch)
        if arch[0] == 0:
            raise ValueError("relaxtoy: gene layer0.op = 0 is illegal")
        return arch

    def params(self, arch):
        return self.const + sum(self.table[a] for a in arch)

    def flops(self, arch):
        return 64 * self.params(arch)

    def expected_cost(self, kind, probs):
        table = torch.tensor(self.table, dtype=probs[0].dtype, device=probs[0].device)
        total = self.const + sum((p * table).sum() for p in probs)
        return total * (64 if kind == "flops" else 1)

    def params_bounds(self, allowed=None):
        opts = [self.allowed_values(g, allowed) for g in self.genes]
        return (self.const + sum(min(self.table[v] for v in o) for o in opts),
                self.const + sum(max(self.table[v] for v in o) for o in opts))

    def describe(self, arch):
        return {"ops": list(self.validate(arch))}

    def parse(self, description):
        return self.validate(description["ops"])

    def config(self):
        return {"name": self.name}

    def legal_archs(self):
        return list(itertools.product(*[self.allowed_values(g, None) for g in self.genes]))

    def build_supernet(self):
        torch.manual_seed(0)
        return RelaxToyNet()


class RelaxToyNet(Supernet):
    def __init__(self):
        super().__init__()
        self.first_layer = nn.Conv2d(1, C, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(C)
        self.ops = nn.ModuleList(nn.ModuleList([nn.Identity(), nn.Conv2d(C, C, 1, bias=False),
                                                nn.Conv2d(C, C, 3, padding=1, bias=False)])
                                 for _ in range(N_LAYERS))
        self.fc = nn.Linear(C, 10)

    def _head(self, h):
        return self.fc(h.mean((2, 3)))

    def forward_from_first(self, h, arch):
        h = torch.relu(self.bn(h))
        for ops, a in zip(self.ops, arch):
            h = torch.tanh(ops[a](h))
        return self._head(h)

    def forward_relaxed(self, x, probs):
        h = torch.relu(self.bn(self.first_layer(x)))
        for ops, p in zip(self.ops, probs):
            h = sum(p[k] * torch.tanh(op(h)) for k, op in enumerate(ops))
        return self._head(h)


# -- fixtures ----------------------------------------------------------------------------------
def tiny_cfg(**overrides):
    values = dict(TINY)
    values.update({k if "." in k else f"search.{k}": v for k, v in overrides.items()})
    return tamnas.load_config("quickstart", values)


@pytest.fixture(scope="module")
def data():
    return load_data(tiny_cfg().data, 0)


def make_evaluator(cfg, space, data, supernet=None):
    supernet = supernet if supernet is not None else space.build_supernet()
    bn_x, _ = stack(data.train_plain, 32, generator_seed=1)
    val_x, val_y = stack(data.val, 32, generator_seed=2)
    return Evaluator(space, supernet, bn_images=bn_x, val_images=val_x, val_labels=val_y,
                     attack=Attack.from_config(cfg.attack), device=torch.device("cpu"),
                     batch_size=32)


def search(tmp_path, data, space=None, evaluator=None, resume=False, **overrides):
    kwargs = {k: overrides.pop(k) for k in ("objectives", "hessian_eig") if k in overrides}
    cfg = tiny_cfg(**overrides)
    space = space if space is not None else RelaxToySpace()
    evaluator = evaluator if evaluator is not None else make_evaluator(cfg, space, data)
    return MGDASearch(space, evaluator, cfg, tmp_path, quiet=True, resume=resume, data=data,
                      **kwargs)


def flat(alpha):
    return torch.cat([a.detach().reshape(-1) for a in alpha])


# -- behaviour -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_moves_alpha_and_scores_a_legal_arch(tmp_path, data, variant):
    # the workshop's max(N, L) is flat below L (see the hinge test): aim below the start
    extra = {"mgda_targets": [float(RelaxToySpace().params_bounds()[0])]} \
        if variant == "e2rnas-2obj" else {}
    s = search(tmp_path, data, mgda_variant=variant, **extra)
    front = s.run()
    space = s.space
    assert len(s.rows) == 2 and [r["epoch"] for r in s.epoch_rows] == [0, 1]
    alpha = flat(s.final_alpha[0])
    masked = torch.cat([~m for m in s.masks])
    assert alpha[~masked].abs().max() > 0          # alpha moved away from its zero start
    for row in s.epoch_rows:
        arch = tuple(int(g) for g in row["arch"].split("-"))
        assert space.validate(arch) == arch        # legal (layer0 never the identity)
        assert row["arch_params"] == space.params(arch)
        if row["epoch"] == 1:                      # the last epoch's archs are scored
            assert s.archive.meta(arch, weights=s.scored_weights)["strategy"] == "mgda"
            assert row["params"] == space.params(arch)
        gammas = [v for k, v in row.items() if k.startswith("gamma_") and not pd.isna(v)]
        assert gammas and math.isclose(sum(gammas), 1.0, abs_tol=1e-5)
        assert min(gammas) >= -1e-6
    log = pd.read_csv(tmp_path / EPOCH_LOG)
    assert len(log) == 2 and (tmp_path / "archive.json").is_file()
    assert (tmp_path / "front.json").is_file() and len(front) >= 1
    if variant.startswith("sdarts"):
        assert [r["sdarts_eps"] for r in s.epoch_rows] == pytest.approx(list(SDARTS_EPS))


def test_e2rnas_uses_five_objectives_and_dsara_two_stages(tmp_path, data):
    s = search(tmp_path / "e", data, mgda_variant="e2rnas", mgda_epochs=1)
    s.run()
    gammas = {k for k in s.epoch_rows[0] if k.startswith("gamma_")}
    assert gammas == {f"gamma_{o}" for o in ("val_ce", "adv_ce", "ood_kl", "params", "flops")}
    d = search(tmp_path / "d", data, mgda_variant="dsara", mgda_epochs=3,
               mgda_batches_per_epoch=1)
    d.run()
    log = pd.DataFrame(d.epoch_rows)
    assert log["stage"].tolist() == [1, 1, 2]          # 2/3 of the epochs (paper: 20 of 30)
    # stage 2 steps alpha at 5e-5 where stage 1 used 3e-4 (paper 002, 5.3)
    assert d.state.arch_opts[0].param_groups[0]["lr"] == pytest.approx(
        d.cfg.search.mgda_arch_lr * 5e-5 / 3e-4)
    assert d.weight_lr(3) == pytest.approx(0.0)        # annealed to zero
    first, second = log[log.stage == 1], log[log.stage == 2]
    assert (first["gamma_adv_ce"] == 1.0).all() and first["gamma_val_ce"].isna().all()
    assert second[["gamma_val_ce", "gamma_adv_ce"]].notna().all().all()


def test_params_objective_pulls_the_arch_to_its_target(tmp_path, data):
    space = RelaxToySpace()
    lo, hi = space.params_bounds()
    legal = space.legal_archs()
    found = {}
    for name, target in (("small", lo), ("large", hi)):
        # a toy of hundreds of parameters: in the papers' millions its gradient would vanish
        # under Adam's epsilon, so the scale-free unit (cost / target) as the tiny presets use
        s = search(tmp_path / name, data, space=space, objectives=["params"],
                   mgda_targets=[float(target)], mgda_arch_lr=0.3, mgda_epochs=3,
                   mgda_batches_per_epoch=3, mgda_cost_unit=0.0)
        s.run()
        found[name] = space.params(tuple(int(g) for g in s.epoch_rows[-1]["arch"].split("-")))
        probs = s.probs(s.final_alpha[0])
        legal_probs = [p[m] for p, m in zip(probs, s.masks)]
        # The cheapest (small) or dearest (large) legal op of every layer gained probability.
        costs = [torch.tensor([space.table[v] for v in space.allowed_values(g, None)])
                 for g in space.genes]
        pick = [int(c.argmin() if name == "small" else c.argmax()) for c in costs]
        assert all(p[k] > 1.0 / len(p) + 0.05 for p, k in zip(legal_probs, pick))
    # Brute force: the legal archs closest to each target.
    assert found["small"] == min(space.params(a) for a in legal)
    assert found["large"] == max(space.params(a) for a in legal)


def test_targets_sweep_gives_one_alpha_and_point_per_target(tmp_path, data):
    space = RelaxToySpace()
    lo, hi = space.params_bounds()
    s = search(tmp_path, data, space=space, mgda_targets=[float(lo), float(hi)], mgda_epochs=1)
    s.run()
    assert [r["target"] for r in s.epoch_rows] == [lo, hi]
    assert not torch.equal(flat(s.final_alpha[0]), flat(s.final_alpha[1]))
    assert sorted(s.final_alpha) == [0, 1]
    assert len(s.points()) == 2
    # Empty list: one run at the midpoint of the space's parameter range.
    m = search(tmp_path / "mid", data, space=space, mgda_targets=[], mgda_epochs=1)
    assert m.targets == [0.5 * (lo + hi)]


def test_search_trains_the_evaluators_supernet_and_leaves_its_weights(tmp_path, data):
    space = RelaxToySpace()
    cfg = tiny_cfg()
    evaluator = make_evaluator(cfg, space, data)
    before = {k: v.clone() for k, v in evaluator.supernet.state_dict().items()}
    search(tmp_path, data, space=space, evaluator=evaluator, mgda_variant="darts").run()
    after = evaluator.supernet.state_dict()
    assert not torch.equal(before["first_layer.weight"], after["first_layer.weight"])
    fresh = space.build_supernet()
    assert (tmp_path / SEARCHED_WEIGHTS).is_file() and load_searched(tmp_path, fresh)
    assert all(torch.equal(fresh.state_dict()[k], after[k]) for k in after)
    assert not load_searched(tmp_path / "elsewhere", fresh)


class _Relaxed(nn.Module):
    """forward = the wrapped supernet's forward_relaxed, so torch.func can swap its weights."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, probs):
        return self.net.forward_relaxed(x, probs)


@pytest.mark.parametrize("variant", ["darts", "e2rnas"])
def test_second_order_gradient_matches_exact_unrolled_derivative(tmp_path, data, variant):
    """The unrolled step uses the real lower-level loss: CE (darts), CE + OoD KL (e2rnas)."""
    s = search(tmp_path, data, mgda_variant=variant, mgda_order="second", mgda_weight_lr=0.05)
    s.setup()
    s.step()                                          # non-trivial weights and alpha
    run = s.state
    run.model.eval()                                  # BN on running stats: a smooth function
    xt, yt = run.last_train
    xo = run.last_ood
    assert (xo is not None) == (variant == "e2rnas")
    xv, yv = s._to(run.val.next())
    xi = run.weight_opt.param_groups[0]["lr"]
    _, approx = s.unrolled_val_grad(run, run.alphas[0], (xv, yv))

    wrapped = _Relaxed(run.model)
    names = [f"net.{n}" for n, _ in run.model.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in run.model.parameters()]
    alpha = [a.detach().clone().requires_grad_(True) for a in run.alphas[0]]

    def loss(params, x, y):
        return F.cross_entropy(functional_call(wrapped, dict(zip(names, params)),
                                               (x, s.probs(alpha))), y)

    def low(params):
        out = loss(params, xt, yt)
        if xo is not None:
            out = out + kl_to_uniform(functional_call(wrapped, dict(zip(names, params)),
                                                      (xo, s.probs(alpha))))
        return out

    g = torch.autograd.grad(low(weights), weights, create_graph=True)
    unrolled = [w - xi * (gi + WEIGHT_DECAY * w) for w, gi in zip(weights, g)]
    exact = torch.autograd.grad(loss(unrolled, xv, yv), alpha)
    assert torch.allclose(flat(approx), flat(exact), rtol=1e-2, atol=1e-6)
    # The Hessian term matters here, so the check can tell second order from first order.
    first = torch.autograd.grad(loss(weights, xv, yv), alpha)
    assert (flat(first) - flat(exact)).norm() > 10 * (flat(approx) - flat(exact)).norm()


def test_hessian_eigenvalue_matches_dense_hessian(tmp_path, data):
    s = search(tmp_path, data, mgda_variant="darts")
    s.setup()
    s.step()
    run = s.state
    run.model.eval()
    batch = run.val.next()
    eig = s.dominant_eigenvalue(run, run.alphas[0], batch, iters=200)
    x, y = batch
    sizes = [a.numel() for a in run.alphas[0]]

    def val_loss(v):
        alpha = list(torch.split(v, sizes))
        return F.cross_entropy(run.model.forward_relaxed(x, s.probs(alpha)), y)

    H = torch.autograd.functional.hessian(val_loss, flat(run.alphas[0]).clone())
    keep = torch.cat([m for m in s.masks])
    values = torch.linalg.eigvalsh(H[keep][:, keep].double())
    dominant = values[values.abs().argmax()]
    assert eig == pytest.approx(float(dominant), rel=2e-2)


def test_sdarts_perturbation_is_clipped_renormalised_and_leaves_alpha(tmp_path, data):
    for variant in ("sdarts-rs", "sdarts-adv"):
        s = search(tmp_path / variant, data, mgda_variant=variant)
        s.setup()
        s.step()
        run = s.state
        alpha = flat(run.alphas[0]).clone()
        x, y = s._to(run.train.next())
        with torch.no_grad():
            probs = s.probs(run.alphas[0])
        state = run.gen.get_state()
        pert = s.perturb_probs(run, probs, x, y, 0.3)
        assert torch.equal(flat(run.alphas[0]), alpha)
        for q, m in zip(pert, s.masks):               # every row a distribution on legal values
            assert float(q.min()) >= 0 and float(q.max()) <= 1
            assert abs(float(q.sum()) - 1) < 1e-6 and (q[~m] == 0).all()
        assert (flat(pert) - flat(probs)).abs().max() > 0.01
        if variant == "sdarts-rs":                    # independent: clip(p + U) / row sum
            gen = torch.Generator().manual_seed(0)
            gen.set_state(state)
            want = []
            for p, m in zip(probs, s.masks):
                u = torch.rand(p.shape, generator=gen, dtype=p.dtype)
                q = (p + (2 * u - 1) * 0.3).clamp(0, 1) * m
                want.append(q / q.sum())
            assert torch.allclose(flat(pert), flat(want), atol=1e-6)
        else:                                         # PGD (eval mode) raises the training loss
            run.model.eval()
            with torch.no_grad():
                clean = F.cross_entropy(run.model.forward_relaxed(x, probs), y)
                worst = F.cross_entropy(run.model.forward_relaxed(x, pert), y)
            assert worst > clean


def test_batch_stream_reshuffles_only_when_exhausted_and_resumes(monkeypatch):
    import tamnas.data as tdata

    opened = []
    real = tdata.make_loader

    def counting(*args, **kwargs):
        opened.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tdata, "make_loader", counting)
    ds = ImageTensorDataset(torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous(),
                            torch.arange(10), 2)
    full = BatchStream(ds, 4, seed=3)
    seen = [full.next()[1].tolist() for _ in range(5)]
    assert len(opened) == 3                           # 2 batches per pass (drop_last), 5 draws
    assert all(len(b) == 4 for b in seen)
    assert sorted(seen[0] + seen[1]) == sorted(set(seen[0] + seen[1]))   # no repeat in a pass
    part = BatchStream(ds, 4, seed=3)
    for _ in range(3):
        part.next()
    resumed = BatchStream(ds, 4, seed=3)
    resumed.load_state_dict(part.state_dict())
    assert [resumed.next()[1].tolist() for _ in range(2)] == seen[3:]


class _Killed(Exception):
    pass


def test_killed_search_resumes_to_the_same_result(tmp_path, data, monkeypatch):
    space = RelaxToySpace()            # build_supernet is seeded: every evaluator starts alike
    overrides = {"mgda_variant": "e2rnas", "mgda_targets": [3000.0, 4000.0], "mgda_epochs": 3,
                 "mgda_finetune_epochs": 1.0}
    full = search(tmp_path / "full", data, space=space,
                  evaluator=make_evaluator(tiny_cfg(), space, data), **overrides)
    full.run()

    steps = {"n": 0}
    real_step = MGDASearch.step

    def dying_step(self):
        if steps["n"] == 2:
            raise _Killed
        steps["n"] += 1
        return real_step(self)

    monkeypatch.setattr(MGDASearch, "step", dying_step)
    with pytest.raises(_Killed):
        search(tmp_path / "cut", data, space=space,
               evaluator=make_evaluator(tiny_cfg(), space, data), **overrides).run()
    saved = load_checkpoint(tmp_path / "cut" / "mgda_state.pt", kind="mgda")
    assert len(saved["rows"]) == 2 and len(saved["epoch_rows"]) == 4   # killed mid-search
    monkeypatch.setattr(MGDASearch, "step", real_step)
    # A fresh process: a new evaluator with an empty archive, the state from disk.
    resumed = search(tmp_path / "cut", data, space=space, resume=True,
                     evaluator=make_evaluator(tiny_cfg(), space, data), **overrides)
    resumed.run()
    cols = [c for c in pd.DataFrame(full.rows).columns if c not in TIME_COLUMNS]
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.rows)[cols], pd.DataFrame(full.rows)[cols])
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.epoch_rows), pd.DataFrame(full.epoch_rows))
    for k in full.final_alpha:
        assert torch.equal(flat(full.final_alpha[k]), flat(resumed.final_alpha[k]))


def test_unknown_settings_are_one_line_errors(tmp_path, data):
    with pytest.raises(ValueError, match="mgda objectives"):
        search(tmp_path, data, objectives=["latency"])
    with pytest.raises(ValueError, match="mgda_targets"):
        search(tmp_path, data, mgda_targets=[-5.0])


# -- the real spaces (DARTS: tests/contract/test_strategy_contract.py) ---------------------------
REAL_SPACES = {
    # Block 18 (pure robust) is offered only in the stride-1 layer, so alpha gets masked genes.
    "shufflenet": {"space.name": "shufflenet", "space.stem_channels": 4,
                   "space.stage_channels": [8, 8, 8], "space.stage_layers": [1, 2, 1],
                   "space.head_channels": 8, "space.fc_channels": 8, "space.blocks": [0, 6, 18],
                   "space.ratios": [1.0, 2.0]},
}


@pytest.mark.parametrize("name", sorted(REAL_SPACES))
def test_mgda_runs_end_to_end_on_the_real_spaces(tmp_path, data, name):
    cfg = tiny_cfg(**REAL_SPACES[name], mgda_variant="e2rnas", mgda_epochs=1,
                   mgda_batches_per_epoch=1, **{"data.batch_size": 8})
    space = tamnas.build_space(cfg)
    evaluator = make_evaluator(cfg, space, data)
    s = MGDASearch(space, evaluator, cfg, tmp_path, quiet=True, resume=False, data=data)
    front = s.run()
    arch = tuple(int(g) for g in s.epoch_rows[0]["arch"].split("-"))
    assert space.validate(arch) == arch
    assert s.archive.meta(arch, weights=s.scored_weights)["strategy"] == "mgda"
    assert len(front) >= 1
    assert flat(s.final_alpha[0]).abs().max() > 0


# -- the variants as their papers state them ---------------------------------------------------
def test_each_variant_trains_and_attacks_as_its_paper_says(tmp_path, data):
    eps = 2 / 255
    e = search(tmp_path / "e", data, mgda_variant="e2rnas")
    assert e.lower_attack.kind == "none"                              # 001: L_tr + L_ood
    assert (e.upper_attack.kind, e.upper_attack.eps, e.upper_attack.steps) == ("fgsm_rs", eps, 1)
    assert e.upper_attack.step == pytest.approx(1.25 * eps) and e.variant.order == "second"
    assert e.use_ood and e.variant.normalization == "none"
    w = search(tmp_path / "w", data, mgda_variant="e2rnas-2obj")
    assert (w.lower_attack.kind, w.lower_attack.eps) == ("fgsm_rs", eps)   # 000: FGSM-RS in LL
    assert w.stage2 == ("val_ce", "params") and w.variant.params_form == "hinge"
    d = search(tmp_path / "d", data, mgda_variant="dsara")
    for spec in (d.lower_attack, d.upper_attack):                     # 002: PGD-7, 1/510, 2/255
        assert (spec.kind, spec.eps, spec.steps) == ("pgd", eps, 7)
        assert spec.step == pytest.approx(1 / 510)
    assert d.variant.order == "first"
    # today's behaviour stays reachable as a named option: E2RNAS "w/ AT in LL" (Table VI)
    a = search(tmp_path / "a", data, mgda_variant="e2rnas", mgda_lower_adv="fgsm_rs",
               mgda_eps=0.05, mgda_order="first")
    assert (a.lower_attack.kind, a.lower_attack.eps, a.variant.order) == ("fgsm_rs", 0.05, "first")


def test_e2rnas_lower_step_is_clean_ce_plus_kl_on_the_ood_training_images(tmp_path, data):
    import copy

    s = search(tmp_path, data, mgda_variant="e2rnas")
    s.setup()
    run = s.state
    x, y = s._to(run.train.next())
    xo = s._to(run.ood.next())[0]
    run.train.next, run.ood.next = (lambda: (x, y)), (lambda: (xo, torch.zeros(len(xo))))
    twin = copy.deepcopy(run.model).train()
    with torch.no_grad():
        probs = s.probs(run.alphas[0])
        want = (F.cross_entropy(twin.forward_relaxed(x, probs), y)
                + kl_to_uniform(twin.forward_relaxed(xo, probs)))
    got = s.lower_step(run, run.alphas[0], 0.0)["loss"]
    assert got == pytest.approx(float(want), abs=1e-5)
    assert torch.equal(run.last_train[0], x)          # no adversarial examples in the lower level
    # the search's OoD stream reads the training OoD images, the evaluator's AUPR the others
    assert run.ood.dataset is data.ood_train and data.ood_eval is not data.ood_train


def test_workshop_params_objective_is_the_hinge_max_of_n_and_l(tmp_path, data):
    space = RelaxToySpace()
    lo, hi = space.params_bounds()
    target = 0.5 * (lo + hi)
    # the papers' units (millions) by default; cost_unit 0 divides by the target instead
    for (variant, form), unit in itertools.product(
            (("e2rnas-2obj", "hinge"), ("e2rnas", "distance")), (-1.0, 0.0)):
        s = search(tmp_path / f"{variant}{unit}", data, space=space, mgda_variant=variant,
                   mgda_targets=[target], mgda_cost_unit=unit)
        s.setup()
        scale = 1e6 if unit < 0 else target
        for logits in (torch.zeros(N_OPS), torch.tensor([0.0, 0.0, 4.0]),
                       torch.tensor([0.0, 4.0, -4.0])):
            alpha = [logits.clone() for _ in space.genes]
            probs = s.probs(alpha)
            n = float(space.expected_cost("params", probs))
            got = float(s.objective(s.state, "params", probs, {}, 0))
            want = max(n, target) / scale if form == "hinge" else abs(n - target) / scale
            assert got == pytest.approx(want, rel=1e-6)
    # Below L the hinge has zero gradient, so Eq. 11 puts all weight on it (gamma_val = 0)
    # and the step is zero: the workshop method stops moving alpha once E[N] < L.
    s = search(tmp_path / "flat", data, space=space, mgda_variant="e2rnas-2obj",
               mgda_targets=[float(hi) * 2], mgda_epochs=1, mgda_finetune_epochs=0.0)
    s.run()
    assert flat(s.final_alpha[0]).abs().max() == 0 and s.epoch_rows[0]["gamma_val_ce"] == 0


def test_evaluator_measures_aupr_on_ood_images_the_search_never_trains_on():
    cfg = tiny_cfg(**{"search.ood": True, "data.ood": "noise", "search.eval_images": 16})
    bundle = load_data(cfg.data, cfg.seed)
    space = RelaxToySpace()
    ev = Evaluator.from_config(cfg, space, space.build_supernet(), bundle, torch.device("cpu"))
    train_rows = {r.numpy().tobytes() for r in stack(bundle.ood_train)[0]}
    eval_rows = {r.numpy().tobytes() for r in stack(bundle.ood_eval)[0]}
    used = {r.numpy().tobytes() for r in ev.ood_x}
    assert used and used <= eval_rows and used.isdisjoint(train_rows)


def test_mgda_points_name_their_weights_and_cache_hits_never_cross_weights(tmp_path, data):
    space = RelaxToySpace()
    cfg = tiny_cfg()
    evaluator = make_evaluator(cfg, space, data)
    evaluator.archive.fingerprint = evaluator.weights = "oneshot"
    s = search(tmp_path, data, space=space, evaluator=evaluator, mgda_variant="darts",
               mgda_finetune_epochs=1.0, mgda_epochs=1)
    s.run()
    searched = searched_fingerprint(tmp_path / SEARCHED_WEIGHTS)
    tuned = searched_fingerprint(tmp_path / FINETUNED_WEIGHTS)
    assert len({"oneshot", searched, tuned}) == 3 and s.scored_weights == tuned
    # the evaluator's supernet holds the searched weights again, and says so
    assert evaluator.weights == searched
    assert weights_fingerprint(evaluator.supernet.state_dict()) == searched
    arch = tuple(int(g) for g in s.epoch_rows[0]["arch"].split("-"))
    df = s.archive.frame()
    assert df.loc[df["arch"] == s.epoch_rows[0]["arch"], "weights"].tolist() == [tuned]
    # the same arch asked for on the searched weights is scored anew, not returned from cache
    mgda_score = s.archive.get(arch, weights=tuned)
    hits = evaluator.stats["cache_hits"]
    fresh = evaluator.evaluate([arch], strategy="nsga2")[0]
    assert evaluator.stats["cache_hits"] == hits and len(s.archive) == 2
    assert s.archive.get(arch, weights=searched) == fresh
    assert s.archive.get(arch, weights=tuned) == mgda_score
    # loading by fingerprint gives back the very weights each row was scored on
    net = space.build_supernet()
    assert load_searched(tmp_path, net, tuned) == tuned
    assert load_searched(tmp_path, net) == searched
    front = s.archive.front(["adv_err", "clean_err"])
    assert front.attrs["mixed_weights"] == (front["weights"].nunique() > 1)
