"""Gradient MGDA search on the relaxed supernet (E2RNAS, DSARA, SmoothDARTS; papers 000-003).

The driver of the sweep: one logit vector alpha per gene and parameter target
L; probs = softmax(alpha) (illegal values masked out) drive
`supernet.forward_relaxed`; `bilevel.BiLevelSteps` is the bi-level step and
`mgda_variants` the variants. As in the papers the search trains the
network weights itself (lower level) together with alpha (upper level), from
whatever weights the evaluator's supernet holds: the initial ones when the
preset has no one-shot pre-training (the DARTS presets), or a pre-trained
supernet when one was trained.

One set of weights serves every target: each round of an epoch runs one
bi-level step per target, in turn, on the shared weights (the papers run one
search per L; sharing gives one searched supernet that scores every derived
arch, NSGA-II's included, for the cost of one target's weight training per
target step). The search trains the evaluator's own supernet in place, and
when it ends writes those weights to `supernet.pt` in the search directory,
which later commands load (`load_searched`).

Every epoch derives each target's discrete arch (DARTS top-2 rule) and logs
it to `mgda_epochs.csv`. At the end the searched weights go to
`search/supernet.pt`; the archs of the last epoch then get a short warm start
of their own paths on a copy of those weights (`finetune`,
search.mgda_finetune_epochs, written to `search/finetuned.pt`) and are scored
through the evaluator (strategy="mgda") with BatchNorm recalibrated for the
arch: MGDA's points. Every weight file carries a fingerprint of its tensors
(`weights_fingerprint`), and every archive row names the weights it was
scored on, so MGDA's points never pass for scores on the one-shot supernet or
on the plain searched weights, and NSGA-II run later on `search/supernet.pt`
scores on weights that never trained MGDA's discrete paths alone. After every
epoch the whole state (weights, alphas, optimisers, data positions,
generators) is checkpointed, so a killed search continues where it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.files import atomic_write_text, save_checkpoint
from tamnas.search.archive import arch_key
from tamnas.search.bilevel import AttackSpec, BiLevelSteps
from tamnas.search.bilevel_state import SearchState, ood_train_set
from tamnas.search.mgda_variants import (
    COSTS,
    FLOPS_SAMPLES,
    OBJECTIVES,
    SDARTS_EPS,
    VAL_ATTACKS,
    VARIANTS,
    WEIGHT_DECAY,
    WEIGHT_MOMENTUM,
    Variant,
    resolve,
)
from tamnas.search.searched_weights import (
    FINETUNED_WEIGHTS,
    SEARCHED_WEIGHTS,
    weights_fingerprint,
)
from tamnas.search.strategy import Strategy, register_strategy
from tamnas.seeds import mix_seed
from tamnas.supernets.base import SearchSpace

log = logging.getLogger(__name__)

EPOCH_LOG = "mgda_epochs.csv"
@register_strategy("mgda")
class MGDASearch(BiLevelSteps, Strategy):
    """Bi-level MGDA on the relaxed supernet, a sweep of params targets (module docstring)."""

    log_name = "mgda_log.csv"

    def __init__(self, space: SearchSpace, evaluator, cfg, run_dir: str | Path, *,
                 seed: int | None = None, quiet: bool = False, resume: bool = True, data=None,
                 hessian_eig: bool = False, objectives: Sequence[str] | None = None,
                 flops_targets: Sequence[float] | None = None, val_attack: str | None = None):
        """`objectives` replaces the variant's upper-level objectives (both dsara stages);
        `flops_targets` gives F per target instead of L times the space's FLOPs/params ratio;
        `val_attack` replaces the variant's upper-level adversary."""
        super().__init__(space, evaluator, cfg, run_dir, seed=seed, quiet=quiet, resume=resume)
        s = cfg.search
        if val_attack is not None and val_attack not in VAL_ATTACKS:
            raise ValueError(f"mgda val_attack: {val_attack!r} is not allowed; choose one of "
                             f"{', '.join(VAL_ATTACKS)}")
        self.variant_name, self.variant = s.mgda_variant, resolve(s.mgda_variant, s)
        if val_attack is not None:
            self.variant = replace(self.variant, upper_attack=val_attack)
        self.lower_attack = AttackSpec.of(self.variant.lower_adv, self.variant)
        self.upper_attack = AttackSpec.of(self.variant.upper_attack, self.variant)
        self.scored_weights: str | None = None   # fingerprint MGDA's points were scored on
        self.stage2 = self._check_objectives(objectives or self.variant.objectives)
        self.stage1 = self.stage2 if objectives or not self.variant.first_stage \
            else self.variant.first_stage
        self.epochs = int(s.mgda_epochs)
        self.device = torch.device(evaluator.device)
        self.hessian_eig = bool(hessian_eig)
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
        self.state: SearchState | None = None
        self.epoch_rows: list[dict[str, Any]] = []
        self.final_alpha: dict[int, list[torch.Tensor]] = {}  # target index -> alpha at the end

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
        if ood_train_set(self.data) is None:
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
        rng = np.random.default_rng(mix_seed(self.seed, 23))
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
                "weight_lr": s.mgda_weight_lr, "use_ood": self.use_ood,
                "settings": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in asdict(self.variant).items()}}

    # -- strategy hooks -----------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.epochs

    def _new_state(self) -> SearchState:
        return SearchState(self.evaluator.supernet, self.space, len(self.targets), self.cfg,
                           self.data, self.seed, self.use_ood, self.device)

    def setup(self) -> None:
        self.rows, self.epoch_rows, self.final_alpha = [], [], {}
        self.state = self._new_state()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "search": self.state.state_dict(),
                "scored_weights": self.scored_weights,
                "epoch_rows": [dict(r) for r in self.epoch_rows],
                "final_alpha": {k: [a.clone() for a in v] for k, v in self.final_alpha.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epoch_rows = [dict(r) for r in state["epoch_rows"]]
        self.final_alpha = {int(k): list(v) for k, v in state["final_alpha"].items()}
        self.scored_weights = state.get("scored_weights")
        self.state = self._new_state()
        self.state.load_state_dict(state["search"])

    def save(self, front: pd.DataFrame | None = None) -> None:
        super().save(front)
        if dist.is_main():
            atomic_write_text(self.run_dir / EPOCH_LOG,
                              pd.DataFrame(self.epoch_rows).to_csv(index=False))

    def _save_weights(self, name: str, state: dict[str, torch.Tensor], **info: Any) -> str:
        """Write one weight file (rank 0) and return its fingerprint."""
        fingerprint = weights_fingerprint(state)
        if dist.is_main():
            save_checkpoint(self.run_dir / name,
                            {"model": state, "epoch": self.epochs, "fingerprint": fingerprint,
                             "source": f"mgda {self.variant_name}", **info}, kind="supernet")
        return fingerprint

    def stage1_epochs(self) -> int:
        """dsara: the first stage's epochs (the variant's share, 20 of 30); others: none."""
        if self.variant.first_stage is None or self.stage1 == self.stage2:
            return 0
        return round(self.variant.stage1_share * self.epochs)

    def stage(self, epoch: int) -> int:
        """dsara: stage 1 for its first epochs, then stage 2; others: always 2."""
        return 1 if epoch < self.stage1_epochs() else 2

    def sdarts_eps(self, epoch: int) -> float:
        lo, hi = SDARTS_EPS
        return lo + (hi - lo) * epoch / max(1, self.epochs - 1)

    def weight_lr(self, epoch: int) -> float:
        """DARTS's cosine annealing of the weight lr over the search, down to WEIGHT_LR_MIN."""
        hi = self.cfg.search.mgda_weight_lr
        lo = min(self.variant.weight_lr_min, hi)
        return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * epoch / max(1, self.epochs)))

    def step(self) -> dict[str, Any]:
        """One epoch: rounds of one bi-level step per target, then derive (and at the end score)."""
        if self.state is None:
            self.state = self._new_state()
        run, epoch = self.state, self.steps_done
        stage = self.stage(epoch)
        names = self.stage1 if stage == 1 else self.stage2
        eps = self.sdarts_eps(epoch) if self.variant.perturb else 0.0
        lr = self.weight_lr(epoch)
        run.set_weight_lr(lr)
        ratio = self.variant.stage2_arch_lr_ratio if stage == 2 and self.stage1_epochs() else 1.0
        run.set_arch_lr(self.cfg.search.mgda_arch_lr * ratio)
        n_targets = len(self.targets)
        sums = [dict.fromkeys([f"loss_{k}" for k in names] + [f"gamma_{k}" for k in names]
                              + ["train_loss", "train_acc"], 0.0) for _ in range(n_targets)]
        for _ in range(self.batches_per_epoch):
            for t in range(n_targets):
                lower = self.lower_step(run, run.alphas[t], eps)
                losses, gamma = self.upper_step(run, t, names)
                sums[t]["train_loss"] += lower["loss"]
                sums[t]["train_acc"] += lower["acc"]
                for k, name in enumerate(names):
                    sums[t][f"loss_{name}"] += losses[k]
                    sums[t][f"gamma_{name}"] += gamma[k]
        n, last = self.batches_per_epoch, epoch == self.epochs - 1
        archs = [self.derive(a, run.rng) for a in run.alphas]
        scores = [{}] * n_targets
        if last:
            scores = self.score_points(archs, epoch)
        for t, arch in enumerate(archs):
            with torch.no_grad():
                probs = self.probs(run.alphas[t])
                expected = {k: float(self.space.expected_cost(k, probs)) for k in COSTS}
            row: dict[str, Any] = {
                "target_index": t, "target": self.targets[t],
                "flops_target": self.flops_targets[t], "epoch": epoch, "stage": stage,
                "variant": self.variant_name, "batches": n, "weight_lr": lr,
                **{k: v / n for k, v in sums[t].items()},
                "expected_params": expected["params"], "expected_flops": expected["flops"],
                "arch": arch_key(arch), "arch_params": int(self.space.params(arch)), **scores[t]}
            if self.variant.perturb:
                row["sdarts_eps"] = eps
            if self.hessian_eig:
                row["hessian_eig"] = self.dominant_eigenvalue(run, run.alphas[t])
            self.epoch_rows.append(row)
            if last:
                self.final_alpha[t] = [a.detach().cpu().clone() for a in run.alphas[t]]
        return {"epoch": epoch, "stage": stage, "weight_lr": lr, "hv": self.front_hv(),
                "train_loss": sum(s["train_loss"] for s in sums) / (n * n_targets),
                "train_acc": sum(s["train_acc"] for s in sums) / (n * n_targets)}

    def score_points(self, archs: Sequence[tuple[int, ...]], epoch: int) -> list[dict[str, Any]]:
        """Save the searched weights, warm-start the derived paths on them, score, restore.

        The evaluator's supernet ends holding the searched weights again and
        its `weights` naming them; the points' rows name the fine-tuned ones.
        """
        run = self.state
        searched = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        searched_fp = self._save_weights(SEARCHED_WEIGHTS, searched)
        self.scored_weights = searched_fp
        try:
            if self.finetune(archs):
                self.scored_weights = self._save_weights(
                    FINETUNED_WEIGHTS, {k: v.detach().clone()
                                        for k, v in run.model.state_dict().items()},
                    archs=[list(a) for a in dict.fromkeys(archs)], base=searched_fp)
            with self.evaluator.scoring_on(self.scored_weights):
                return [self.evaluator.evaluate([a], strategy=self.name, target=self.targets[t],
                                                epoch=epoch)[0] for t, a in enumerate(archs)]
        finally:
            run.model.load_state_dict(searched)
            self.evaluator.weights = searched_fp

    def finetune(self, archs: Sequence[tuple[int, ...]]) -> bool:
        """A short warm start of the derived archs' paths on the searched weights, before scoring.

        The relaxed net computes every edge as a mixture; one discrete path of
        its weights has never run alone, and its inherited score measures that
        gap more than the arch. `search.mgda_finetune_epochs` epochs per arch of
        the training objective (train.objective), the derived paths taking turns
        batch by batch, close it at the cost of a few cheap discrete passes.
        """
        from tamnas.adversarial import build_objective

        unique = list(dict.fromkeys(archs))
        per_arch = round(self.cfg.search.mgda_finetune_epochs * self.batches_per_epoch)
        steps = per_arch * len(unique)
        if steps <= 0:
            return False
        run = self.state
        objective = build_objective(self.cfg.train, generator=run.gen)
        opt = torch.optim.SGD(run.weights, lr=self.cfg.search.mgda_weight_lr,
                              momentum=WEIGHT_MOMENTUM, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        run.model.train()
        for i in range(steps):
            x, y = self._to(run.train.next())
            objective.step(run.model.path(unique[i % len(unique)]), x, y, optimizer=opt)
            sched.step()
        return True

    def points(self) -> pd.DataFrame:
        """The arch of every target derived (and scored) at the end of the last epoch."""
        df = pd.DataFrame(self.epoch_rows)
        if df.empty:
            return df
        return df[df["epoch"] == self.epochs - 1].reset_index(drop=True)


__all__ = ["EPOCH_LOG", "OBJECTIVES", "SDARTS_EPS", "VARIANTS", "WEIGHT_DECAY", "MGDASearch",
           "Variant"]
