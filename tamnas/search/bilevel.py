"""The bi-level step of the relaxed search: one weight step, then one alpha step.

`SearchState` holds what the search trains: the supernet's weights (one set,
shared by every parameter target of the sweep), one logit vector alpha per
gene and target, the optimisers, the data streams and the generators.
`BiLevelSteps` is the step itself, lower level first as in E2RNAS (Alg. 1):

* lower level: an SGD step on the weights with the lower-level loss of the
  variant: the training CE of the relaxed net (`forward_relaxed` on
  softmax(alpha)), on adversarial examples when the variant's lower level is
  adversarial (FGSM-RS: E2RNAS workshop; PGD: DSARA), plus the OoD
  KL-to-uniform loss on the OoD training images when an OoD set is used
  (E2RNAS journal, Eq. 8), with softmax(alpha) perturbed, clipped to [0, 1]
  and renormalised for the `sdarts-*` variants; alpha is only read.
* upper level: the gradient w.r.t. alpha of every active objective (val CE,
  adversarial val CE, OoD KL to uniform, the params/FLOPs distances to L and
  F), min-norm weights gamma on the (optionally normalised) gradients
  (`min_norm.descent_direction`) and an Adam step along the combination gamma
  was solved for, so that no objective rises to first order. Second order
  (Eq. 9 of papers 000/001) unrolls one step of the real lower-level loss
  for every weight-dependent objective and uses DARTS's finite-difference
  Hessian-vector product.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tamnas.metrics import kl_to_uniform
from tamnas.search.bilevel_state import Alpha, SearchState
from tamnas.search.mgda_variants import (
    FD_RADIUS,
    GRAD_CLIP,
    HESSIAN_ITERS,
    SDARTS_ADV_STEPS,
    WEIGHT_DECAY,
)
from tamnas.supernets.base import Arch

WEIGHT_OBJECTIVES = ("val_ce", "adv_ce", "ood_kl")   # those that depend on the weights


@dataclass(frozen=True)
class AttackSpec:
    """One adversary of the search: none, FGSM-RS (one step of `step`) or PGD."""

    kind: str
    eps: float
    step: float
    steps: int

    @classmethod
    def of(cls, kind: str, variant) -> AttackSpec:
        if kind == "fgsm_rs":
            return cls(kind, variant.eps, variant.fgsm_step * variant.eps, 1)
        if kind == "pgd":
            return cls(kind, variant.eps, variant.pgd_step, variant.pgd_steps)
        return cls("none", 0.0, 0.0, 0)


def _zero_if_none(grads, like) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


class BiLevelSteps:
    """The lower and upper step (module docstring).

    The host class provides `cfg`, `space`, `device`, `variant` (resolved, see
    `mgda_variants.resolve`), `masks`, `targets`, `flops_targets`,
    `lower_attack` and `upper_attack` (AttackSpec) and `seed`.
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
                       y: torch.Tensor, spec: AttackSpec) -> torch.Tensor:
        """Adversarial examples of the relaxed net: FGSM-RS or PGD, both from a uniform random
        start in the eps-ball, signed steps, projected to the ball and to [0, 1]."""
        if spec.kind == "none" or spec.eps <= 0 or spec.steps <= 0:
            return x
        probs = [p.detach() for p in probs]
        x_adv = (x + self._noise(run, x, spec.eps)).clamp(0, 1)
        for _ in range(spec.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(run.model.forward_relaxed(x_adv, probs), y)
            grad, = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = x_adv + spec.step * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - spec.eps), x + spec.eps).clamp(0, 1)
        return x_adv.detach()

    def project_probs(self, probs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Clip every row to [0, 1] (illegal values at 0) and renormalise it to sum 1.

        As SmoothDARTS's reference does after each perturbation, so that the
        mixture weights stay a distribution; a row clipped to all zeros keeps
        its largest entry.
        """
        out = []
        for p, m in zip(probs, self.masks):
            q = p.clamp(0.0, 1.0) * m
            total = q.sum()
            if not float(total) > 0:
                q = torch.zeros_like(p)
                q[int(p.masked_fill(~m, float("-inf")).argmax())] = 1.0
                total = q.sum()
            out.append(q / total)
        return out

    def perturb_probs(self, run: SearchState, probs: list[torch.Tensor], x: torch.Tensor,
                      y: torch.Tensor, eps: float) -> list[torch.Tensor]:
        """SmoothDARTS: softmax(alpha) + delta, projected back to the simplex rows.

        rs: delta uniform in [-eps, eps]. adv: that random start, then
        SDARTS_ADV_STEPS signed steps of 2 eps / SDARTS_ADV_STEPS up the training
        CE with BatchNorm on running statistics (eval mode), each projected to
        the eps-ball around softmax(alpha) and to the simplex rows; kept only if
        it raised the loss. The weight step that follows runs in train mode.
        """
        probs = [p.detach() for p in probs]
        pert = self.project_probs([p + self._noise(run, p, eps) for p in probs])
        if self.variant.perturb != "adv":
            return pert
        was_training = run.model.training
        run.model.eval()
        try:
            with torch.no_grad():
                before = float(F.cross_entropy(run.model.forward_relaxed(x, probs), y))
            step = 2.0 * eps / SDARTS_ADV_STEPS
            for _ in range(SDARTS_ADV_STEPS):
                pert = [q.detach().requires_grad_(True) for q in pert]
                loss = F.cross_entropy(run.model.forward_relaxed(x, pert), y)
                grads = torch.autograd.grad(loss, pert)
                with torch.no_grad():
                    moved = [(q + step * g.sign() - p).clamp(-eps, eps) + p
                             for q, g, p in zip(pert, grads, probs)]
                    pert = self.project_probs(moved)
            with torch.no_grad():
                after = float(F.cross_entropy(run.model.forward_relaxed(x, pert), y))
        finally:
            run.model.train(was_training)
        return [q.detach() for q in pert] if after >= before else probs

    def lower_loss(self, run: SearchState, probs: Sequence[torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, x_ood: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The lower-level loss (CE, + KL to uniform on OoD images when used) and the logits."""
        logits = run.model.forward_relaxed(x, probs)
        loss = F.cross_entropy(logits, y)
        if x_ood is not None:
            loss = loss + kl_to_uniform(run.model.forward_relaxed(x_ood, probs))
        return loss, logits

    def lower_step(self, run: SearchState, alpha: Alpha, eps: float) -> dict[str, float]:
        """One SGD step on the weights under softmax(alpha); alpha is read, never written."""
        x, y = self._to(run.train.next())
        run.model.train()
        with torch.no_grad():
            probs = self.probs(alpha)
        if self.variant.perturb:
            probs = self.perturb_probs(run, probs, x, y, eps)
        x = self.perturb_inputs(run, probs, x, y, self.lower_attack)
        x_ood = self._to(run.ood.next())[0] if run.ood is not None else None
        run.last_train, run.last_ood = (x, y), x_ood
        loss, logits = self.lower_loss(run, probs, x, y, x_ood)
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
            x_adv = self.perturb_inputs(run, probs, x, y, self.upper_attack)
            return F.cross_entropy(run.model.forward_relaxed(x_adv, probs), y)
        if name == "ood_kl":
            return kl_to_uniform(run.model.forward_relaxed(batches["ood"][0], probs))
        target = self.targets[index] if name == "params" else self.flops_targets[index]
        expected = self.space.expected_cost(name, probs)
        # in millions as the papers (L = 2.5 is 2.5M parameters); cost_unit 0 divides by the
        # target instead, a departure the tiny presets state (their costs are thousands)
        unit = self.variant.cost_unit or target
        if self.variant.params_form == "hinge":          # paper 000, Eq. 6: max(N, L)
            return torch.clamp(expected, min=target) / unit
        return (expected - target).abs() / unit         # paper 001, Eq. 5-6

    def upper_step(self, run: SearchState, index: int, names: Sequence[str]
                   ) -> tuple[list[float], list[float]]:
        """Gradients of the objectives w.r.t. target `index`'s alpha, min-norm gamma, one Adam step."""
        from tamnas.search.min_norm import descent_direction

        alpha = run.alphas[index]
        batches = {"val": self._to(run.val.next())}
        if "ood_kl" in names:
            batches["ood"] = self._to(run.ood.next())
        run.model.train()
        unrolled = [n for n in names if n in WEIGHT_OBJECTIVES] \
            if self.variant.order == "second" else []
        second = self.unrolled_grads(run, alpha, unrolled, batches, index) if unrolled else {}
        losses, grads = [], []
        for name in names:
            if name in second:
                loss, grad = second[name]
            else:
                loss = self.objective(run, name, self.probs(alpha), batches, index)
                grad = _zero_if_none(torch.autograd.grad(loss, alpha, allow_unused=True), alpha)
            losses.append(loss.detach())
            grads.append(torch.cat([g.reshape(-1) for g in grad]))
        G, L = torch.stack(grads), torch.stack(losses).to(grads[0].dtype)
        direction, gamma = descent_direction(G, L, self.variant.normalization)
        offset = 0
        for a in alpha:
            a.grad = direction[offset:offset + a.numel()].view_as(a).clone()
            offset += a.numel()
        run.arch_opts[index].step()
        run.arch_opts[index].zero_grad(set_to_none=True)
        return [float(v) for v in L], [float(v) for v in gamma]

    def unrolled_grads(self, run: SearchState, alpha: Alpha, names: Sequence[str],
                       batches: dict[str, tuple[torch.Tensor, torch.Tensor]], index: int
                       ) -> dict[str, tuple[torch.Tensor, list[torch.Tensor]]]:
        """Second order (Eq. 9 of papers 000/001, DARTS's approximation) for each of `names`.

        grad_a L(w', a) - xi * H_aw L_low(w, a) grad_w' L(w', a), with
        w' = w - xi (grad_w L_low(w, a) + wd w), L_low the real lower-level loss
        on the lower step's own batch (its adversarial examples and OoD images),
        and the Hessian-vector product by central differences at radius
        FD_RADIUS / ||grad_w' L(w', a)||.
        """
        if run.last_train is None:
            run.last_train = self._to(run.train.next())
        xt, yt = run.last_train
        xo = run.last_ood
        xi = run.weight_opt.param_groups[0]["lr"]
        weights = run.weights
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            probs_fixed = self.probs(alpha)
        g_low = _zero_if_none(torch.autograd.grad(
            self.lower_loss(run, probs_fixed, xt, yt, xo)[0], weights, allow_unused=True), weights)
        stepped = [b - xi * (g + WEIGHT_DECAY * b) for b, g in zip(backup, g_low)]
        out = {}
        try:
            for name in names:
                with torch.no_grad():
                    for w, u in zip(weights, stepped):
                        w.copy_(u)
                loss = self.objective(run, name, self.probs(alpha), batches, index)
                grads = _zero_if_none(torch.autograd.grad(loss, list(alpha) + weights,
                                                          allow_unused=True), list(alpha) + weights)
                d_alpha, d_w = grads[:len(alpha)], grads[len(alpha):]
                norm = float(torch.sqrt(sum((g * g).sum() for g in d_w)))
                if not norm > 0:
                    out[name] = (loss, d_alpha)
                    continue
                r = FD_RADIUS / norm
                sides = []
                for sign in (1.0, -1.0):
                    with torch.no_grad():
                        for w, b, d in zip(weights, backup, d_w):
                            w.copy_(b + sign * r * d)
                    low = self.lower_loss(run, self.probs(alpha), xt, yt, xo)[0]
                    sides.append(_zero_if_none(torch.autograd.grad(low, alpha, allow_unused=True),
                                               alpha))
                hvp = [(p - m) / (2 * r) for p, m in zip(*sides)]
                out[name] = (loss, [da - xi * h for da, h in zip(d_alpha, hvp)])
        finally:
            with torch.no_grad():
                for w, b in zip(weights, backup):
                    w.copy_(b)
        return out

    def unrolled_val_grad(self, run: SearchState, alpha: Alpha,
                          val: tuple[torch.Tensor, torch.Tensor]
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Second order for the val CE term alone (see `unrolled_grads`)."""
        return self.unrolled_grads(run, alpha, ["val_ce"], {"val": val}, 0)["val_ce"]

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


__all__ = ["WEIGHT_OBJECTIVES", "AttackSpec", "BiLevelSteps"]
