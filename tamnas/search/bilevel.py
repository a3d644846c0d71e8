"""The bi-level step of the relaxed search: one weight step, then one alpha step.

`SearchState` holds what the search trains: the supernet's weights (one set,
shared by every parameter target of the sweep), one logit vector alpha per
gene and target, the optimisers, the data streams and the generators.
`BiLevelSteps` is the step itself, lower level first as in E2RNAS (Alg. 1):

* lower level: an SGD step on the weights with the training CE of the relaxed
  net (`forward_relaxed` on softmax(alpha)), on FGSM-RS examples for the
  adversarial variants (PGD-AT's when train.objective is pgd_at, DSARA), plus the OoD KL-to-uniform loss when an OoD set is
  used, with the SmoothDARTS perturbation of softmax(alpha) (uniform noise or
  a few PGD steps) for the `sdarts-*` variants; alpha is only read.
* upper level: the gradient w.r.t. alpha of every active objective (val CE,
  adversarial val CE, OoD KL to uniform, |E[params] - L| / L,
  |E[FLOPs] - F| / F), normalised, min-norm weights gamma
  (`min_norm.min_norm`), an Adam step along sum_t gamma_t g_t. As in Sener &
  Koltun's MGDA-UB, normalisation only chooses gamma; the step uses the raw
  gradients. Second-order mode unrolls one weight step for the val CE term
  and uses DARTS's finite-difference Hessian-vector product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tamnas.metrics import kl_to_uniform
from tamnas.search.mgda_variants import (
    ARCH_BETAS,
    ARCH_WEIGHT_DECAY,
    FD_RADIUS,
    GRAD_CLIP,
    HESSIAN_ITERS,
    SDARTS_ADV_STEPS,
    WEIGHT_DECAY,
    WEIGHT_MOMENTUM,
)
from tamnas.supernets.base import Arch

Alpha = list[torch.Tensor]


def mix_seed(*parts: int) -> int:
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
                             seed=mix_seed(self.seed, self.passes), num_workers=self.num_workers,
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


class SearchState:
    """Everything the search changes: weights, one alpha per target, optimisers, streams, RNGs."""

    def __init__(self, model: nn.Module, space, n_targets: int, cfg, data, seed: int,
                 use_ood: bool, device: torch.device):
        s = cfg.search
        self.model = model.to(device).train()
        self.weights = [p for p in self.model.parameters() if p.requires_grad]
        self.alphas: list[Alpha] = [
            [torch.zeros(g.choices, device=device, requires_grad=True) for g in space.genes]
            for _ in range(n_targets)]
        self.weight_opt = torch.optim.SGD(self.weights, lr=s.mgda_weight_lr,
                                          momentum=WEIGHT_MOMENTUM, weight_decay=WEIGHT_DECAY)
        self.arch_opts = [torch.optim.Adam(a, lr=s.mgda_arch_lr, betas=ARCH_BETAS,
                                           weight_decay=ARCH_WEIGHT_DECAY) for a in self.alphas]
        bs, workers = cfg.data.batch_size, cfg.data.num_workers
        self.train = BatchStream(data.train, bs, mix_seed(seed, 1), workers)
        self.val = BatchStream(data.val, bs, mix_seed(seed, 2), workers)
        self.ood = BatchStream(data.ood, bs, mix_seed(seed, 3), workers) if use_ood else None
        self.gen = torch.Generator().manual_seed(mix_seed(seed, 4))
        self.rng = np.random.default_rng(mix_seed(seed, 5))
        self.last_train: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_weight_lr(self, lr: float) -> None:
        for group in self.weight_opt.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(),
                "alphas": [[a.detach().clone() for a in alpha] for alpha in self.alphas],
                "weight_opt": self.weight_opt.state_dict(),
                "arch_opts": [o.state_dict() for o in self.arch_opts],
                "streams": {k: getattr(self, k).state_dict() for k in ("train", "val", "ood")
                            if getattr(self, k) is not None},
                "gen": self.gen.get_state(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            for alpha, saved in zip(self.alphas, state["alphas"]):
                for a, v in zip(alpha, saved):
                    a.copy_(v)
        self.weight_opt.load_state_dict(state["weight_opt"])
        for opt, saved in zip(self.arch_opts, state["arch_opts"]):
            opt.load_state_dict(saved)
        for k, s in state["streams"].items():
            getattr(self, k).load_state_dict(s)
        self.gen.set_state(state["gen"])
        self.rng.bit_generator.state = state["rng"]


def _zero_if_none(grads, like) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


class BiLevelSteps:
    """The lower and upper step (module docstring).

    The host class provides `cfg`, `space`, `device`, `variant`, `masks`,
    `targets`, `flops_targets`, `val_attack` and `seed`.
    """

    # -- relaxation ---------------------------------------------------------------------------
    def probs(self, alpha: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """softmax(alpha) per gene, with the gene's illegal values at probability 0."""
        return [torch.softmax(a.masked_fill(~m, float("-inf")), dim=0)
                for a, m in zip(alpha, self.masks)]

    def derive(self, alpha: Sequence[torch.Tensor], rng: np.random.Generator | None = None) -> Arch:
        """The discrete arch of alpha: the space's rule (DARTS top-2), else argmax + repair."""
        logits = [a.detach().masked_fill(~m, float("-inf")) for a, m in zip(alpha, self.masks)]
        return self.space.validate(self.space.derive(logits))

    # -- lower level --------------------------------------------------------------------------
    def _to(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _noise(self, run: SearchState, like: torch.Tensor, eps: float) -> torch.Tensor:
        """Uniform in [-eps, eps] from the run's CPU generator (the same on any device)."""
        u = torch.rand(like.shape, generator=run.gen, dtype=like.dtype)
        return ((2 * u - 1) * eps).to(like.device)

    def perturb_inputs(self, run: SearchState, probs: Sequence[torch.Tensor], x: torch.Tensor,
                       y: torch.Tensor, attack: str = "fgsm_rs") -> torch.Tensor:
        """FGSM-RS (random start + one signed step of fgsm_step * eps) or PGD on the relaxed net.

        `attack="train"`: the lower level's attack, PGD-AT's when train.objective is
        pgd_at (DSARA), FGSM-RS's otherwise (E2RNAS).
        """
        t = self.cfg.train
        if attack == "train" and t.objective == "pgd_at":
            eps, step, steps = t.eps, t.pgd_step_size, t.pgd_steps
        elif attack == "pgd":
            a = self.cfg.attack
            eps, step, steps = a.eps, a.step_size, a.steps
        else:
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

    def perturb_probs(self, run: SearchState, probs: list[torch.Tensor], x: torch.Tensor,
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

    def lower_step(self, run: SearchState, alpha: Alpha, eps: float) -> dict[str, float]:
        """One SGD step on the weights under softmax(alpha); alpha is read, never written."""
        x, y = self._to(run.train.next())
        run.model.train()
        with torch.no_grad():
            probs = self.probs(alpha)
        if self.variant.perturb:
            probs = self.perturb_probs(run, probs, x, y, eps)
        if self.variant.lower_adv:
            x = self.perturb_inputs(run, probs, x, y, "train")
        run.last_train = (x, y)
        logits = run.model.forward_relaxed(x, probs)
        loss = F.cross_entropy(logits, y)
        if run.ood is not None:
            xo, _ = self._to(run.ood.next())
            loss = loss + kl_to_uniform(run.model.forward_relaxed(xo, probs))
        run.weight_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(run.weights, GRAD_CLIP)
        run.weight_opt.step()
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": float(loss.detach()), "acc": float(acc)}

    # -- upper level --------------------------------------------------------------------------
    def objective(self, run: SearchState, name: str, probs: list[torch.Tensor],
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

    def upper_step(self, run: SearchState, index: int, names: Sequence[str]
                   ) -> tuple[list[float], list[float]]:
        """Gradients of the objectives w.r.t. target `index`'s alpha, min-norm gamma, one Adam step."""
        from tamnas.search.min_norm import min_norm, normalize_grads

        alpha = run.alphas[index]
        batches = {"val": self._to(run.val.next())}
        if "ood_kl" in names:
            batches["ood"] = self._to(run.ood.next())
        run.model.train()
        losses, grads = [], []
        for name in names:
            if name == "val_ce" and self.cfg.search.mgda_second_order:
                loss, grad = self.unrolled_val_grad(run, alpha, batches["val"])
            else:
                loss = self.objective(run, name, self.probs(alpha), batches, index)
                grad = _zero_if_none(torch.autograd.grad(loss, alpha, allow_unused=True), alpha)
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
        for a in alpha:
            a.grad = direction[offset:offset + a.numel()].view_as(a).clone()
            offset += a.numel()
        run.arch_opts[index].step()
        run.arch_opts[index].zero_grad(set_to_none=True)
        return [float(v) for v in L], [float(v) for v in gamma]

    def unrolled_val_grad(self, run: SearchState, alpha: Alpha,
                          val: tuple[torch.Tensor, torch.Tensor]
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """DARTS second order for the val CE term.

        grad_a L_val(w', a) - xi * H_aw L_train(w, a) grad_w' L_val(w', a), with
        w' = w - xi (grad_w L_train(w, a) + wd w) and the Hessian-vector product by
        central differences at radius FD_RADIUS / ||grad_w' L_val||.
        """
        xt, yt = run.last_train if run.last_train is not None else self._to(run.train.next())
        xv, yv = val
        xi = run.weight_opt.param_groups[0]["lr"]
        model, weights = run.model, run.weights
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            probs_fixed = self.probs(alpha)
        g_train = _zero_if_none(torch.autograd.grad(
            F.cross_entropy(model.forward_relaxed(xt, probs_fixed), yt), weights,
            allow_unused=True), weights)
        try:
            with torch.no_grad():
                for w, g in zip(weights, g_train):
                    w.sub_(xi * (g + WEIGHT_DECAY * w))
            loss = F.cross_entropy(model.forward_relaxed(xv, self.probs(alpha)), yv)
            grads = _zero_if_none(torch.autograd.grad(loss, list(alpha) + weights,
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
                sides.append(_zero_if_none(torch.autograd.grad(F.cross_entropy(out, yt), alpha,
                                                               allow_unused=True), alpha))
            hvp = [(p - m) / (2 * r) for p, m in zip(*sides)]
            return loss, [da - xi * h for da, h in zip(d_alpha, hvp)]
        finally:
            with torch.no_grad():
                for w, b in zip(weights, backup):
                    w.copy_(b)

    # -- diagnostics --------------------------------------------------------------------------
    def dominant_eigenvalue(self, run: SearchState, alpha: Alpha, batch=None,
                            iters: int = HESSIAN_ITERS) -> float:
        """Largest-magnitude eigenvalue of the val-CE Hessian w.r.t. alpha (power iteration on
        Hessian-vector products): SmoothDARTS's sharpness diagnostic."""
        x, y = self._to(batch if batch is not None else run.val.next())
        run.model.train()
        loss = F.cross_entropy(run.model.forward_relaxed(x, self.probs(alpha)), y)
        grads = torch.autograd.grad(loss, alpha, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        mask = torch.cat([m.reshape(-1) for m in self.masks]).to(flat.dtype)
        v = torch.randn(flat.shape, generator=run.gen, dtype=flat.dtype).to(flat.device) * mask
        v = v / v.norm().clamp_min(1e-12)
        eig = 0.0
        for _ in range(iters):
            hv = torch.autograd.grad((flat * v).sum(), alpha, retain_graph=True, allow_unused=True)
            hv = torch.cat([torch.zeros_like(a).reshape(-1) if h is None else h.reshape(-1)
                            for a, h in zip(alpha, hv)])
            eig = float(v @ hv)
            norm = hv.norm()
            if float(norm) == 0.0 or not math.isfinite(float(norm)):
                break
            v = hv / norm
        return eig


__all__ = ["BatchStream", "BiLevelSteps", "SearchState", "mix_seed"]
