"""Gradient MGDA search on the relaxed supernet (E2RNAS, DSARA, SmoothDARTS; papers 000-003).

One logit vector alpha per gene; probs = softmax(alpha) (illegal values of a
gene masked out) drive `supernet.forward_relaxed`. Each batch is one bi-level
step, lower level first as in E2RNAS (Alg. 1):

* lower level: an SGD step on the network weights with the training CE of the
  relaxed net, on FGSM-RS examples for the adversarial variants, plus the OoD
  KL-to-uniform loss when an OoD set is used, with the SmoothDARTS
  perturbation of softmax(alpha) (uniform noise or a few PGD steps) for the
  `sdarts-*` variants; alpha itself is never modified by the perturbation.
* upper level: the gradient w.r.t. alpha of every active objective (val CE,
  adversarial val CE, OoD KL to uniform, |E[params] - L| / L,
  |E[FLOPs] - F| / F), normalised, min-norm weights gamma
  (`min_norm.min_norm`), an Adam step along sum_t gamma_t g_t. As in Sener &
  Koltun's MGDA-UB, normalisation only chooses gamma; the step uses the raw
  gradients. Second-order mode unrolls one weight step for the val CE term
  and uses DARTS's finite-difference Hessian-vector product.

The search starts every target from a copy of the trained supernet's weights
and trains only that copy: the evaluator keeps scoring derived archs on the
original trained supernet, so MGDA's points and NSGA-II's points are scored
by the same weights and sit on one front. One target L of the sweep is one
run of `mgda_epochs` epochs; every epoch derives a discrete arch and scores it
through the evaluator (strategy="mgda"). After every epoch the whole search
state (alpha, Adam, weights, SGD, data positions, generators) is
checkpointed, so a killed search continues where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from tamnas import distributed as dist
from tamnas.checkpoint import atomic_write_text
from tamnas.metrics import kl_to_uniform
from tamnas.search.archive import arch_key
from tamnas.search.strategy import Strategy
from tamnas.supernets.base import Arch, SearchSpace

log = logging.getLogger(__name__)

EPOCH_LOG = "mgda_epochs.csv"
OBJECTIVES = ("val_ce", "adv_ce", "ood_kl", "params", "flops")
COSTS = ("params", "flops")
# Settings the papers fix and SearchConfig does not (yet) carry.
WEIGHT_MOMENTUM = 0.9          # lower-level SGD (DARTS / E2RNAS)
WEIGHT_DECAY = 3e-4
GRAD_CLIP = 5.0                # DARTS clips the weight gradient norm at 5
ARCH_BETAS = (0.5, 0.999)      # upper-level Adam (E2RNAS IV-B2)
ARCH_WEIGHT_DECAY = 1e-3
SDARTS_EPS = (0.03, 0.3)       # perturbation radius, linear over the epochs (paper 003)
SDARTS_ADV_STEPS = 3           # paper 003 uses 7 PGD steps and reports 1 step loses little
FD_RADIUS = 0.01               # DARTS's finite-difference radius, divided by ||grad_w||
HESSIAN_ITERS = 10             # power iterations for the dominant Hessian eigenvalue
FLOPS_SAMPLES = 201            # sampled archs whose median gives the FLOPs/params ratio
VAL_ATTACKS = ("fgsm_rs", "pgd")


@dataclass(frozen=True)
class Variant:
    """What one named variant optimises and how it trains the weights."""

    objectives: tuple[str, ...]              # upper-level objectives (second stage for dsara)
    first_stage: tuple[str, ...] | None = None   # dsara: objectives of the first half
    lower_adv: bool = False                  # lower level on FGSM-RS examples
    perturb: str | None = None               # SmoothDARTS: "rs" or "adv"


VARIANTS = {
    "darts": Variant(("val_ce",)),
    "e2rnas": Variant(("val_ce", "adv_ce", "ood_kl", "params", "flops"), lower_adv=True),
    "dsara": Variant(("val_ce", "adv_ce"), first_stage=("adv_ce",), lower_adv=True),
    "sdarts-rs": Variant(("val_ce",), perturb="rs"),
    "sdarts-adv": Variant(("val_ce",), perturb="adv"),
}


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               % (2 ** 63 - 1))


class BatchStream:
    """Endless batches of one dataset from a persistent iterator.

    A new seeded shuffle is drawn only when a pass is exhausted. The state is
    (passes, position), so a resumed stream re-creates the pass it was in and
    skips the batches already used: it yields what an uninterrupted one would.
    """

    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int = 0):
        if len(dataset) == 0:
            raise ValueError("mgda: a dataset the search draws batches from is empty")
        self.dataset, self.seed, self.num_workers = dataset, int(seed), num_workers
        self.batch_size = max(1, min(int(batch_size), len(dataset)))
        self.passes, self.position = 0, 0
        self._it = None

    def _open(self) -> None:
        from tamnas.data import make_loader

        loader = make_loader(self.dataset, self.batch_size, shuffle=True,
                             seed=_seed(self.seed, self.passes), num_workers=self.num_workers,
                             drop_last=True)
        self._it = iter(loader)
        for _ in range(self.position):
            next(self._it)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._open()
        try:
            batch = next(self._it)
        except StopIteration:
            self.passes, self.position = self.passes + 1, 0
            self._open()
            batch = next(self._it)
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.passes, self.position = int(state["passes"]), int(state["position"])
        self._it = None


class _TargetRun:
    """Everything one target's search changes: weights, alpha, optimisers, streams, generators."""

    def __init__(self, search: MGDASearch, index: int):
        s, dev = search.cfg.search, search.device
        self.index = index
        # A fresh supernet with the trained weights: the evaluator's own module stays untouched.
        self.model: nn.Module = search.space.build_supernet().to(dev)
        self.model.load_state_dict(search.evaluator.supernet.state_dict())
        self.model.train()
        self.weights = [p for p in self.model.parameters() if p.requires_grad]
        self.alpha = [torch.zeros(g.choices, device=dev, requires_grad=True)
                      for g in search.space.genes]
        self.weight_opt = torch.optim.SGD(self.weights, lr=s.mgda_weight_lr,
                                          momentum=WEIGHT_MOMENTUM, weight_decay=WEIGHT_DECAY)
        self.arch_opt = torch.optim.Adam(self.alpha, lr=s.mgda_arch_lr, betas=ARCH_BETAS,
                                         weight_decay=ARCH_WEIGHT_DECAY)
        bs, workers = search.cfg.data.batch_size, search.cfg.data.num_workers
        data, seed = search.data, search.seed
        self.train = BatchStream(data.train, bs, _seed(seed, index, 1), workers)
        self.val = BatchStream(data.val, bs, _seed(seed, index, 2), workers)
        self.ood = BatchStream(data.ood, bs, _seed(seed, index, 3), workers) \
            if search.use_ood else None
        self.gen = torch.Generator().manual_seed(_seed(seed, index, 4))
        self.rng = np.random.default_rng(_seed(seed, index, 5))
        self.last_train: tuple[torch.Tensor, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "model": self.model.state_dict(),
                "alpha": [a.detach().clone() for a in self.alpha],
                "weight_opt": self.weight_opt.state_dict(), "arch_opt": self.arch_opt.state_dict(),
                "streams": {k: getattr(self, k).state_dict() for k in ("train", "val", "ood")
                            if getattr(self, k) is not None},
                "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for a, saved in zip(self.alpha, state["alpha"]):
                a.copy_(saved)
        self.weight_opt.load_state_dict(state["weight_opt"])
        self.arch_opt.load_state_dict(state["arch_opt"])
        for k, s in state["streams"].items():
            getattr(self, k).load_state_dict(s)
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]


class MGDASearch(Strategy):
    """Bi-level MGDA on the relaxed supernet, one run per params target (module docstring)."""

    name = "mgda"
    log_name = "mgda_log.csv"

    def __init__(self, space: SearchSpace, evaluator, cfg, run_dir: str | Path, *,
                 seed: int | None = None, quiet: bool = False, resume: bool = True, data=None,
                 hessian_eig: bool = False, objectives: Sequence[str] | None = None,
                 flops_targets: Sequence[float] | None = None, val_attack: str = "fgsm_rs"):
        """`objectives` replaces the variant's upper-level objectives (both dsara stages);
        `flops_targets` gives F per target instead of L times the space's FLOPs/params ratio."""
        super().__init__(space, evaluator, cfg, run_dir, seed=seed, quiet=quiet, resume=resume)
        s = cfg.search
        if s.mgda_variant not in VARIANTS:
            raise ValueError(f"search.mgda_variant: unknown variant {s.mgda_variant!r}; choose one "
                             f"of {', '.join(VARIANTS)}")
        if val_attack not in VAL_ATTACKS:
            raise ValueError(f"mgda val_attack: {val_attack!r} is not allowed; choose one of "
                             f"{', '.join(VAL_ATTACKS)}")
        self.variant_name, self.variant = s.mgda_variant, VARIANTS[s.mgda_variant]
        self.stage2 = self._check_objectives(objectives or self.variant.objectives)
        self.stage1 = self.stage2 if objectives or not self.variant.first_stage \
            else self.variant.first_stage
        self.epochs = int(s.mgda_epochs)
        self.device = torch.device(evaluator.device)
        self.hessian_eig, self.val_attack = bool(hessian_eig), val_attack
        if data is None:
            from tamnas.data import load_data

            data = load_data(cfg.data, cfg.seed)
        self.data = data
        self.use_ood = self._resolve_ood()
        if not self.use_ood:
            self.stage1 = tuple(o for o in self.stage1 if o != "ood_kl")
            self.stage2 = tuple(o for o in self.stage2 if o != "ood_kl")
            if not self.stage1 or not self.stage2:
                raise ValueError("mgda objectives: only ood_kl was asked for and there is no OoD "
                                 "set; set data.ood (e.g. \"noise\") or add other objectives")
        self.targets = self._resolve_targets()
        self.flops_targets = self._resolve_flops_targets(flops_targets)
        n = int(s.mgda_batches_per_epoch)
        self.batches_per_epoch = n if n > 0 else max(1, len(data.train) // cfg.data.batch_size)
        self.masks = [torch.tensor([v in set(space.allowed_values(g, None))
                                    for v in range(g.choices)], device=self.device)
                      for g in space.genes]
        self.current: _TargetRun | None = None
        self.final_alpha: dict[int, list[torch.Tensor]] = {}  # target index -> alpha at its end

    # -- configuration ------------------------------------------------------------------------
    @staticmethod
    def _check_objectives(names: Sequence[str]) -> tuple[str, ...]:
        bad = [n for n in names if n not in OBJECTIVES]
        if bad or not names:
            raise ValueError(f"mgda objectives: {bad or 'none'} not allowed; choose from "
                             f"{', '.join(OBJECTIVES)}")
        return tuple(dict.fromkeys(names))

    def _resolve_ood(self) -> bool:
        """OoD loss in both levels when asked (search.ood) or the objectives name it."""
        wanted = self.cfg.search.ood or "ood_kl" in self.stage1 + self.stage2
        if not wanted:
            return False
        if self.data.ood is None:
            if self.cfg.search.ood:
                raise ValueError("search.ood needs an OoD set; set data.ood (e.g. \"noise\")")
            log.info("mgda: no OoD set (data.ood = none), dropping the OoD objective")
            return False
        return True

    def _resolve_targets(self) -> list[float]:
        targets = [float(t) for t in self.cfg.search.mgda_targets]
        if any(t <= 0 for t in targets):
            raise ValueError(f"search.mgda_targets: parameter targets must be positive, got "
                             f"{targets}")
        if not targets:
            lo, hi = self.space.params_bounds()
            targets = [0.5 * (lo + hi)]
        if len(targets) > 1 and not set(COSTS) & set(self.stage1 + self.stage2):
            log.warning("mgda: variant %s has no cost objective, so the targets %s would all give "
                        "the same search; running the first only", self.variant_name, targets)
            targets = targets[:1]
        return targets

    def _resolve_flops_targets(self, given: Sequence[float] | None) -> list[float]:
        if given is not None:
            if len(given) != len(self.targets) or any(f <= 0 for f in given):
                raise ValueError(f"mgda flops_targets: need {len(self.targets)} positive values "
                                 f"(one per params target), got {list(given)}")
            return [float(f) for f in given]
        ratio = self.flops_per_param()
        return [t * ratio for t in self.targets]

    def flops_per_param(self) -> float:
        """FLOPs/params of the median-params arch of a seeded sample: turns L into F."""
        rng = np.random.default_rng(_seed(self.seed, 23))
        archs = sorted((self.space.sample(rng) for _ in range(FLOPS_SAMPLES)),
                       key=self.space.params)
        mid = archs[len(archs) // 2]
        return float(self.space.flops(mid)) / max(1.0, float(self.space.params(mid)))

    def settings(self) -> dict[str, Any]:
        s = self.cfg.search
        return {**super().settings(), "variant": self.variant_name, "epochs": self.epochs,
                "targets": self.targets, "flops_targets": self.flops_targets,
                "stage1": list(self.stage1), "stage2": list(self.stage2),
                "batches_per_epoch": self.batches_per_epoch, "arch_lr": s.mgda_arch_lr,
                "weight_lr": s.mgda_weight_lr, "second_order": s.mgda_second_order,
                "normalization": s.mgda_normalization, "use_ood": self.use_ood,
                "val_attack": self.val_attack}

    # -- strategy hooks -----------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return len(self.targets) * self.epochs

    def setup(self) -> None:
        self.rows, self.current, self.final_alpha = [], None, {}

    def state_dict(self) -> dict[str, Any]:
        current = self.current.state_dict() if self.current is not None else None
        return {**super().state_dict(), "current": current,
                "final_alpha": {k: [a.clone() for a in v] for k, v in self.final_alpha.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.final_alpha = {int(k): list(v) for k, v in state["final_alpha"].items()}
        self.current = None
        if state.get("current") is not None:
            self.current = _TargetRun(self, int(state["current"]["index"]))
            self.current.load_state_dict(state["current"])

    def save(self, front: pd.DataFrame | None = None) -> None:
        super().save(front)
        if dist.is_main():
            atomic_write_text(self.run_dir / EPOCH_LOG, pd.DataFrame(self.rows).to_csv(index=False))

    def stage(self, epoch: int) -> int:
        """dsara: stage 1 for the first half of the epochs, then stage 2; others: always 2."""
        if self.variant.first_stage is None or self.stage1 == self.stage2:
            return 2
        return 1 if epoch < self.epochs // 2 else 2

    def sdarts_eps(self, epoch: int) -> float:
        lo, hi = SDARTS_EPS
        return lo + (hi - lo) * epoch / max(1, self.epochs - 1)

    def step(self) -> dict[str, Any]:
        """One epoch of one target: bi-level steps, then derive, score and log the arch."""
        index, epoch = divmod(self.steps_done, self.epochs)
        if self.current is None or self.current.index != index:
            self.current = _TargetRun(self, index)
        run = self.current
        stage = self.stage(epoch)
        names = self.stage1 if stage == 1 else self.stage2
        eps = self.sdarts_eps(epoch) if self.variant.perturb else 0.0
        loss_sum = dict.fromkeys(names, 0.0)
        gamma_sum = dict.fromkeys(names, 0.0)
        lower_sum = 0.0
        for _ in range(self.batches_per_epoch):
            lower_sum += self.lower_step(run, eps)
            losses, gamma = self.upper_step(run, names, index)
            for k, name in enumerate(names):
                loss_sum[name] += losses[k]
                gamma_sum[name] += gamma[k]
        n = self.batches_per_epoch
        arch = self.derive(run.alpha, run.rng)
        target = self.targets[index]
        scores = self.evaluator.evaluate([arch], strategy=self.name, target=target, epoch=epoch)[0]
        with torch.no_grad():
            probs = self.probs(run.alpha)
            expected = {k: float(self.space.expected_cost(k, probs)) for k in COSTS}
        row: dict[str, Any] = {
            "target_index": index, "target": target, "flops_target": self.flops_targets[index],
            "epoch": epoch, "stage": stage, "variant": self.variant_name, "batches": n,
            "train_loss": lower_sum / n,
            **{f"gamma_{k}": v / n for k, v in gamma_sum.items()},
            **{f"loss_{k}": v / n for k, v in loss_sum.items()},
            "expected_params": expected["params"], "expected_flops": expected["flops"],
            "arch": arch_key(arch), **scores}
        if self.variant.perturb:
            row["sdarts_eps"] = eps
        if self.hessian_eig:
            row["hessian_eig"] = self.dominant_eigenvalue(run)
        if epoch == self.epochs - 1:
            self.final_alpha[index] = [a.detach().cpu().clone() for a in run.alpha]
            self.current = None  # this target is done; the next step starts the next one afresh
        return row

    # -- relaxation ---------------------------------------------------------------------------
    def probs(self, alpha: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """softmax(alpha) per gene, with the gene's illegal values at probability 0."""
        return [torch.softmax(a.masked_fill(~m, float("-inf")), dim=0)
                for a, m in zip(alpha, self.masks)]

    def derive(self, alpha: Sequence[torch.Tensor], rng: np.random.Generator | None = None) -> Arch:
        """The discrete arch of alpha: the space's rule (DARTS top-2), else argmax + repair."""
        logits = [a.detach().masked_fill(~m, float("-inf")) for a, m in zip(alpha, self.masks)]
        if hasattr(self.space, "derive"):
            return self.space.validate(self.space.derive(logits))
        arch = tuple(int(z.argmax()) for z in logits)
        try:
            return self.space.validate(arch)
        except ValueError:
            if not hasattr(self.space, "repair"):
                raise
        rng = rng if rng is not None else np.random.default_rng(_seed(self.seed, 29))
        return self.space.validate(self.space.repair(arch, rng))

    # -- lower level --------------------------------------------------------------------------
    def _to(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _noise(self, run: _TargetRun, like: torch.Tensor, eps: float) -> torch.Tensor:
        """Uniform in [-eps, eps] from the run's CPU generator (the same on any device)."""
        u = torch.rand(like.shape, generator=run.gen, dtype=like.dtype)
        return ((2 * u - 1) * eps).to(like.device)

    def perturb_inputs(self, run: _TargetRun, probs: Sequence[torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, attack: str = "fgsm_rs") -> torch.Tensor:
        """FGSM-RS (random start + one signed step of fgsm_step * eps) or PGD on the relaxed net."""
        if attack == "pgd":
            a = self.cfg.attack
            eps, step, steps = a.eps, a.step_size, a.steps
        else:
            t = self.cfg.train
            eps, step, steps = t.eps, t.fgsm_step * t.eps, 1
        if eps <= 0 or steps <= 0:
            return x
        probs = [p.detach() for p in probs]
        x_adv = (x + self._noise(run, x, eps)).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(run.model.forward_relaxed(x_adv, probs), y)
            grad, = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = torch.min(torch.max(x_adv + step * grad.sign(), x - eps), x + eps)
                x_adv = x_adv.clamp(0, 1)
        return x_adv.detach()

    def perturb_probs(self, run: _TargetRun, probs: list[torch.Tensor], x: torch.Tensor,
                      y: torch.Tensor, eps: float) -> list[torch.Tensor]:
        """SmoothDARTS: softmax(alpha) + delta, delta uniform (rs) or PGD on the train CE (adv)."""
        delta = [self._noise(run, p, eps) for p in probs]
        if self.variant.perturb == "adv":
            step = 2.5 * eps / SDARTS_ADV_STEPS
            for _ in range(SDARTS_ADV_STEPS):
                delta = [d.requires_grad_(True) for d in delta]
                out = run.model.forward_relaxed(x, [p + d for p, d in zip(probs, delta)])
                grads = torch.autograd.grad(F.cross_entropy(out, y), delta)
                with torch.no_grad():
                    delta = [(d + step * g.sign()).clamp(-eps, eps) for d, g in zip(delta, grads)]
        return [(p + d.detach()) * m for p, d, m in zip(probs, delta, self.masks)]

    def lower_step(self, run: _TargetRun, eps: float) -> float:
        """One SGD step on the weights; alpha is read, never written."""
        x, y = self._to(run.train.next())
        run.model.train()
        with torch.no_grad():
            probs = self.probs(run.alpha)
        if self.variant.perturb:
            probs = self.perturb_probs(run, probs, x, y, eps)
        if self.variant.lower_adv:
            x = self.perturb_inputs(run, probs, x, y, "fgsm_rs")
        run.last_train = (x, y)
        loss = F.cross_entropy(run.model.forward_relaxed(x, probs), y)
        if run.ood is not None:
            xo, _ = self._to(run.ood.next())
            loss = loss + kl_to_uniform(run.model.forward_relaxed(xo, probs))
        run.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(run.weights, GRAD_CLIP)
        run.weight_opt.step()
        return float(loss.detach())

    # -- upper level --------------------------------------------------------------------------
    def objective(self, run: _TargetRun, name: str, probs: list[torch.Tensor],
                  batches: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  index: int) -> torch.Tensor:
        """The value of one upper-level objective, differentiable w.r.t. alpha through `probs`."""
        if name == "val_ce":
            x, y = batches["val"]
            return F.cross_entropy(run.model.forward_relaxed(x, probs), y)
        if name == "adv_ce":
            x, y = batches["val"]
            x_adv = self.perturb_inputs(run, probs, x, y, self.val_attack)
            return F.cross_entropy(run.model.forward_relaxed(x_adv, probs), y)
        if name == "ood_kl":
            return kl_to_uniform(run.model.forward_relaxed(batches["ood"][0], probs))
        target = self.targets[index] if name == "params" else self.flops_targets[index]
        return (self.space.expected_cost(name, probs) - target).abs() / target

    def upper_step(self, run: _TargetRun, names: Sequence[str], index: int
                   ) -> tuple[list[float], list[float]]:
        """Gradients of the objectives w.r.t. alpha, min-norm gamma, one Adam step on alpha."""
        from tamnas.search.min_norm import min_norm, normalize_grads

        batches = {"val": self._to(run.val.next())}
        if "ood_kl" in names:
            batches["ood"] = self._to(run.ood.next())
        run.model.train()
        losses, grads = [], []
        for name in names:
            if name == "val_ce" and self.cfg.search.mgda_second_order:
                loss, grad = self.unrolled_val_grad(run, batches["val"])
            else:
                loss = self.objective(run, name, self.probs(run.alpha), batches, index)
                grad = torch.autograd.grad(loss, run.alpha, allow_unused=True)
                grad = [torch.zeros_like(a) if g is None else g for a, g in zip(run.alpha, grad)]
            losses.append(loss.detach())
            grads.append(torch.cat([g.reshape(-1) for g in grad]))
        G, L = torch.stack(grads), torch.stack(losses).to(grads[0].dtype)
        if len(names) == 1:
            gamma = torch.ones(1, dtype=G.dtype, device=G.device)
        else:
            gamma = torch.as_tensor(
                min_norm(normalize_grads(G, L, self.cfg.search.mgda_normalization)),
                dtype=G.dtype, device=G.device)
        direction = (gamma[:, None] * G).sum(0)
        offset = 0
        for a in run.alpha:
            a.grad = direction[offset:offset + a.numel()].view_as(a).clone()
            offset += a.numel()
        run.arch_opt.step()
        run.arch_opt.zero_grad(set_to_none=True)
        return [float(v) for v in L], [float(v) for v in gamma]

    def unrolled_val_grad(self, run: _TargetRun, val: tuple[torch.Tensor, torch.Tensor]
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """DARTS second order for the val CE term.

        grad_a L_val(w', a) - xi * H_aw L_train(w, a) grad_w' L_val(w', a), with
        w' = w - xi (grad_w L_train(w, a) + wd w) and the Hessian-vector product by
        central differences at radius FD_RADIUS / ||grad_w' L_val||.
        """
        xt, yt = run.last_train if run.last_train is not None else self._to(run.train.next())
        xv, yv = val
        xi = run.weight_opt.param_groups[0]["lr"]
        model, weights, alpha = run.model, run.weights, run.alpha
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            probs_fixed = self.probs(alpha)
        g_train = torch.autograd.grad(F.cross_entropy(model.forward_relaxed(xt, probs_fixed), yt),
                                      weights, allow_unused=True)

        def zero_if_none(gs, like):
            return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, like)]

        g_train = zero_if_none(g_train, weights)
        try:
            with torch.no_grad():
                for w, g in zip(weights, g_train):
                    w.sub_(xi * (g + WEIGHT_DECAY * w))
            loss = F.cross_entropy(model.forward_relaxed(xv, self.probs(alpha)), yv)
            grads = zero_if_none(torch.autograd.grad(loss, list(alpha) + weights,
                                                     allow_unused=True), list(alpha) + weights)
            d_alpha, d_w = grads[:len(alpha)], grads[len(alpha):]
            norm = torch.sqrt(sum((g * g).sum() for g in d_w))
            r = FD_RADIUS / float(norm) if float(norm) > 0 else 0.0
            if r == 0.0:
                return loss, d_alpha
            sides = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for w, b, d in zip(weights, backup, d_w):
                        w.copy_(b + sign * r * d)
                out = model.forward_relaxed(xt, self.probs(alpha))
                sides.append(zero_if_none(torch.autograd.grad(F.cross_entropy(out, yt), alpha,
                                                              allow_unused=True), alpha))
            hvp = [(p - m) / (2 * r) for p, m in zip(*sides)]
            return loss, [da - xi * h for da, h in zip(d_alpha, hvp)]
        finally:
            with torch.no_grad():
                for w, b in zip(weights, backup):
                    w.copy_(b)

    # -- diagnostics --------------------------------------------------------------------------
    def dominant_eigenvalue(self, run: _TargetRun, batch=None, iters: int = HESSIAN_ITERS) -> float:
        """Largest-magnitude eigenvalue of the val-CE Hessian w.r.t. alpha (power iteration on
        Hessian-vector products): SmoothDARTS's sharpness diagnostic."""
        x, y = self._to(batch if batch is not None else run.val.next())
        run.model.train()
        loss = F.cross_entropy(run.model.forward_relaxed(x, self.probs(run.alpha)), y)
        grads = torch.autograd.grad(loss, run.alpha, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        mask = torch.cat([m.reshape(-1) for m in self.masks]).to(flat.dtype)
        v = torch.randn(flat.shape, generator=run.gen, dtype=flat.dtype).to(flat.device) * mask
        v = v / v.norm().clamp_min(1e-12)
        eig = 0.0
        for _ in range(iters):
            hv = torch.autograd.grad((flat * v).sum(), run.alpha, retain_graph=True,
                                     allow_unused=True)
            hv = torch.cat([torch.zeros_like(a).reshape(-1) if h is None else h.reshape(-1)
                            for a, h in zip(run.alpha, hv)])
            eig = float(v @ hv)
            norm = hv.norm()
            if float(norm) == 0.0 or not math.isfinite(float(norm)):
                break
            v = hv / norm
        return eig

    def points(self) -> pd.DataFrame:
        """The arch derived at the end of every target's last epoch, with its scores."""
        df = pd.DataFrame(self.rows)
        if df.empty:
            return df
        return df[df["epoch"] == self.epochs - 1].reset_index(drop=True)


__all__ = ["EPOCH_LOG", "OBJECTIVES", "VARIANTS", "BatchStream", "MGDASearch", "Variant"]
