"""Training objectives behind one interface: standard, PGD-AT, FGSM-RS, TRADES, TRADES-YOPO-m-n.

`objective.step(model, x, y, optimizer=None) -> dict` runs its own forward and
backward passes (YOPO needs to control them) and returns metrics as floats.
With an optimizer it zeroes the gradients first and steps at the end; without
one it only accumulates `.grad`, for a caller that steps itself.

Model modes. Every adversary (the PGD/FGSM attacks and YOPO's m outer rounds)
runs the model in eval mode, as the public TRADES and TRADES-YOPO code does:
BatchNorm normalises with its running statistics and the adversary's passes
never change them. The weight update then runs in train mode, so the running
statistics move only with the passes the loss is computed on (for TRADES and
TRADES-YOPO: the clean batch, then the adversarial batch, as two forwards).
One exception, TRADES-YOPO with first_layer_grad="hamiltonian": its rounds
run in train mode (as in the public CE-YOPO code, whose rounds are training
passes) with the BatchNorm running statistics restored afterwards, because
the Pontryagin term it hands to layer one must see the same batch-statistics
BatchNorm as the weight update; taken in eval mode it is not orthogonal to
BatchNorm's scale invariance and inflates layer one's weights (measured on a
toy problem: eval accuracy fell to about 0.5 within five epochs while the
train-mode accuracy stayed above 0.9). Either way only the update's passes
move the running statistics. Each submodule's train/eval flag is restored
when `step` returns.

`adversary_bn="batch"` runs every adversary in train mode with the BatchNorm
buffers restored (`attacks.batch_stats_mode`) instead of eval mode. That is
the setting for supernet training: a supernet's running statistics average
over many recently drawn paths and fit none of them, so an eval-mode
adversary attacks a network other than the sampled subnet.

Randomness (start noise) comes from the `generator` an objective holds; with
None the global torch RNG is used.

Precision (`train.precision`): "bf16" runs the whole step (adversary, loss
passes and their backward) under `torch.autocast` in bfloat16, on CPU and
CUDA alike; the weights, their gradients, the perturbation and every loss
stay float32 (logits are cast up before the softmax), so the optimiser and
the projections see float32 values. bfloat16 keeps float32's exponent
range, so no loss scaling is needed. "fp32" runs no autocast at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.attacks import ADVERSARY_MODES, batch_stats_mode, fgsm, noise_like, pgd, train_mode

OBJECTIVES: dict[str, type[Objective]] = {}
FIRST_LAYER_GRAD = ("discard", "hamiltonian")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}   # train.precision -> autocast dtype


def register_objective(name: str) -> Callable[[type], type]:
    """Class decorator: make an objective buildable by `build_objective` under `name`."""

    def wrap(cls: type) -> type:
        OBJECTIVES[name] = cls
        cls.name = name
        return cls

    return wrap


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) in float32 (a bf16 autocast forward returns bfloat16 logits)."""
    return model(x).float()


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == y).float().mean()


def trades_kl(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """TRADES' KL(f(x) || f(x')) summed over the batch and divided by its size (batchmean)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1),
                    reduction="sum") / logits_adv.shape[0]


def _nonneg(name: str, **values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise ValueError(f"{name}: {key} must be >= 0, got {value}")


class Objective:
    """Base: `step` handles zero_grad / optimizer.step; subclasses fill `_backward`."""

    name = "abstract"
    precision = "fp32"

    def __init__(self, generator: torch.Generator | None = None, adversary_bn: str = "eval"):
        if adversary_bn not in ADVERSARY_MODES:
            raise ValueError(f"train.adversary_bn: {adversary_bn!r} is unknown; choose one of "
                             f"{', '.join(ADVERSARY_MODES)}")
        self.generator = generator
        self.adversary_bn = adversary_bn
        self.adversary_mode = ADVERSARY_MODES[adversary_bn]

    def with_precision(self, precision: str) -> Objective:
        """Run every step in `precision` ("fp32" or "bf16", see the module docstring); returns self."""
        if precision not in PRECISIONS:
            raise ValueError(f"train.precision: {precision!r} is unknown; choose one of "
                             f"{', '.join(PRECISIONS)}")
        self.precision = precision
        return self

    def step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
        """One training step on (x, y); returns metrics as python floats (one host sync)."""
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            metrics = self._backward(model, x, y)
        else:
            with torch.autocast(x.device.type, dtype=dtype):
                metrics = self._backward(model, x, y)
        if optimizer is not None:
            optimizer.step()
        values = torch.stack([v.detach().float() for v in metrics.values()]).tolist()
        return dict(zip(metrics, values))

    def _backward(self, model: nn.Module, x: torch.Tensor,
                  y: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg, generator: torch.Generator | None = None) -> Objective:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k not in ("generator", "adversary_mode")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


def _ce_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               acc_name: str) -> dict[str, torch.Tensor]:
    """Cross-entropy on `x` (clean or adversarial), backward in train mode."""
    with train_mode(model):
        logits = _logits(model, x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
    return {"loss": loss, acc_name: _accuracy(logits, y)}


@register_objective("standard")
class Standard(Objective):
    """Cross-entropy on clean images."""

    def _backward(self, model, x, y):
        return _ce_update(model, x, y, "clean_acc")

    @classmethod
    def from_config(cls, cfg, generator=None):
        return cls(generator=generator)


@register_objective("pgd_at")
class PgdAT(Objective):
    """Madry et al.: cross-entropy on PGD examples (uniform random start)."""

    def __init__(self, eps: float, steps: int, step_size: float,
                 generator: torch.Generator | None = None, adversary_bn: str = "eval"):
        super().__init__(generator, adversary_bn)
        _nonneg("pgd_at", eps=eps, steps=steps, step_size=step_size)
        self.eps, self.steps, self.step_size = eps, steps, step_size

    def _backward(self, model, x, y):
        x_adv = pgd(model, x, y, self.eps, self.steps, self.step_size, generator=self.generator,
                    mode=self.adversary_mode)
        return _ce_update(model, x_adv, y, "adv_acc")

    @classmethod
    def from_config(cls, cfg, generator=None):
        return cls(cfg.eps, cfg.pgd_steps, cfg.pgd_step_size, generator=generator,
                   adversary_bn=cfg.adversary_bn)


@register_objective("fgsm_rs")
class FgsmRS(Objective):
    """Wong et al.: uniform start in the eps-ball, one signed step of `step` (1.25 eps), project."""

    def __init__(self, eps: float, step: float | None = None,
                 generator: torch.Generator | None = None, adversary_bn: str = "eval"):
        super().__init__(generator, adversary_bn)
        step = 1.25 * eps if step is None else step
        _nonneg("fgsm_rs", eps=eps, step=step)
        self.eps, self.step_size = eps, step

    def _backward(self, model, x, y):
        x_adv = fgsm(model, x, y, self.eps, random_start=True, step_size=self.step_size,
                     generator=self.generator, mode=self.adversary_mode)
        return _ce_update(model, x_adv, y, "adv_acc")

    @classmethod
    def from_config(cls, cfg, generator=None):
        return cls(cfg.eps, cfg.fgsm_step * cfg.eps, generator=generator,
                   adversary_bn=cfg.adversary_bn)


def _trades_update(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                   beta: float, logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """CE(f(x), y) + beta KL(f(x) || f(x_adv)), backward in train mode (clean pass first;
    `logits`: that pass, when the caller already ran it in train mode, with its graph)."""
    with train_mode(model):
        if logits is None:
            logits = _logits(model, x)
        logits_adv = _logits(model, x_adv)
        ce = F.cross_entropy(logits, y)
        kl = trades_kl(logits_adv, logits)
        loss = ce + beta * kl
        loss.backward()
    return {"loss": loss, "clean_acc": _accuracy(logits, y), "adv_acc": _accuracy(logits_adv, y),
            "kl": kl}


def _shared_clean_pass(model: nn.Module, x: torch.Tensor, batch_stats_adversary: bool
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(clean logits with their graph, their softmax) when the adversary can share them.

    A batch-statistics adversary's target softmax(f(x)) is the update's clean
    pass (same weights, same BatchNorm arithmetic), so that pass runs first in
    train mode (the adversary restores the buffers to what it left) and serves
    both: one forward less per batch, the same float32 numbers. An eval-mode
    adversary sees running statistics, another function: (None, None).
    """
    if not batch_stats_adversary:
        return None, None
    with train_mode(model):
        logits = _logits(model, x)
    return logits, F.softmax(logits.detach(), dim=1)


@register_objective("trades")
class Trades(Objective):
    """Zhang et al.: CE + beta KL, the adversary is KL-PGD started at x + 0.001 randn."""

    START_STD = 0.001

    def __init__(self, beta: float, eps: float, steps: int, step_size: float,
                 generator: torch.Generator | None = None, adversary_bn: str = "eval"):
        super().__init__(generator, adversary_bn)
        _nonneg("trades", beta=beta, eps=eps, steps=steps, step_size=step_size)
        self.beta, self.eps, self.steps, self.step_size = beta, eps, steps, step_size

    def _backward(self, model, x, y):
        logits, target = _shared_clean_pass(model, x, self.adversary_bn == "batch")
        x_adv = pgd(model, x, y, self.eps, self.steps, self.step_size, loss="kl",
                    generator=self.generator, start_std=self.START_STD, mode=self.adversary_mode,
                    kl_target=target)
        return _trades_update(model, x, x_adv, y, self.beta, logits)

    @classmethod
    def from_config(cls, cfg, generator=None):
        return cls(cfg.beta, cfg.eps, cfg.pgd_steps, cfg.pgd_step_size, generator=generator,
                   adversary_bn=cfg.adversary_bn)


@register_objective("trades_yopo")
class TradesYopo(Objective):
    """TRADES-YOPO-m-n (Zhang et al. 2019, YOPO; paper 004 section III-C).

    The adversary is coupled with layer one only: each of `m` outer rounds
    runs one full forward/backward of KL(q || f(x + eta)) to get
    p = dKL/dz at z = first_layer(clip01(x + eta)), then `n` cheap inner
    steps eta += sigma sign(grad_eta <first_layer(clip01(x + eta)), p>),
    projected to the eps-ball and to [0, 1]. The weights then take the TRADES
    loss CE(f(x), y) + beta KL(f(x) || f(x + eta)). The first inner step of a
    round needs no layer-one pass of its own: at the round's eta its gradient
    is exactly the KL's input gradient, which the round's full backward gives
    by continuing through layer one; so a batch costs m full passes plus
    m (n - 1) layer-one passes, with the same result as the literal loop.

    first_layer_grad="discard" (default, like the public TRADES-YOPO code):
    the weights get only that final loss's gradient. "hamiltonian": layer one
    also receives the Pontryagin term of every round, the gradient of
    <first_layer(clip01(x + eta_j')), p_j> w.r.t. its weights (eta_j' = the
    perturbation after round j's inner steps), scaled by beta / m. Scale: p_j
    is the gradient of the batch-mean KL, the same normalisation as the final
    KL term, so each round's term estimates layer one's gradient of that KL
    term; beta matches its weight in the loss and 1/m averages the m
    estimates, so layer one's extra step does not grow with m (summing them,
    as the CE variant of YOPO does with its m losses, would scale layer one's
    learning rate by m). In this mode the rounds run in train mode (BatchNorm
    statistics restored), see the module docstring.

    The model needs `first_layer` and `forward_from_first(h)` with
    forward(x) == forward_from_first(first_layer(x)).
    """

    START_STD = 0.001

    def __init__(self, m: int = 5, n: int = 3, eps: float = 8 / 255, sigma: float = 0.007,
                 beta: float = 1.0, first_layer_grad: str = "discard",
                 generator: torch.Generator | None = None, adversary_bn: str = "eval"):
        super().__init__(generator, adversary_bn)
        if m < 1 or n < 1:
            raise ValueError(f"trades_yopo: m and n must be >= 1, got m={m}, n={n}")
        _nonneg("trades_yopo", eps=eps, sigma=sigma, beta=beta)
        if first_layer_grad not in FIRST_LAYER_GRAD:
            raise ValueError(f"trades_yopo: first_layer_grad {first_layer_grad!r} is unknown; "
                             f"choose one of {', '.join(FIRST_LAYER_GRAD)}")
        self.m, self.n, self.eps, self.sigma, self.beta = m, n, eps, sigma, beta
        self.first_layer_grad = first_layer_grad

    def _batch_stats_adversary(self) -> bool:
        return self.first_layer_grad == "hamiltonian" or self.adversary_bn == "batch"

    def perturb(self, model: nn.Module, x: torch.Tensor, q: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """The adversary alone: (eta, summed Pontryagin gradients of layer one or None).

        The objective's adversary mode for "discard" (eval by default), train
        mode with BatchNorm statistics restored for "hamiltonian" (module
        docstring); touches no weight, `.grad` or BatchNorm statistic. `q`:
        the KL's target softmax(f(x)) in that mode, when the caller has it.
        """
        hamiltonian = self.first_layer_grad == "hamiltonian"
        if not (hasattr(model, "first_layer") and hasattr(model, "forward_from_first")):
            raise ValueError(f"trades_yopo: {type(model).__name__} has no first_layer / "
                             "forward_from_first; YOPO needs the model split after layer one")
        layer = model.first_layer
        params = [p for p in layer.parameters() if p.requires_grad] if hamiltonian else []
        total = [torch.zeros_like(p) for p in params] if hamiltonian else None
        x = x.detach()
        eta = self.START_STD * noise_like(x, "normal", self.generator)
        mode = batch_stats_mode if hamiltonian else self.adversary_mode
        with mode(model), torch.enable_grad():
            if q is None:
                with torch.no_grad():
                    q = F.softmax(_logits(model, x), dim=1)
            for _ in range(self.m):
                eta.requires_grad_(True)
                z = layer(torch.clamp(x + eta, 0.0, 1.0))
                kl = F.kl_div(F.log_softmax(model.forward_from_first(z).float(), dim=1), q,
                              reduction="batchmean")
                # At the round's own eta the inner gradient grad_eta <z, p> is the input
                # gradient of the KL, so the full backward continues to eta for step one.
                p, g = torch.autograd.grad(kl, [z, eta])
                for k in range(self.n):
                    if k > 0:
                        eta.requires_grad_(True)
                        h = (layer(torch.clamp(x + eta, 0.0, 1.0)) * p).sum()
                        (g,) = torch.autograd.grad(h, eta)
                    eta = torch.clamp(eta.detach() + self.sigma * g.sign(), -self.eps, self.eps)
                    eta = torch.clamp(x + eta, 0.0, 1.0) - x
                if params:
                    h = (layer(torch.clamp(x + eta, 0.0, 1.0)) * p).sum()
                    for acc, g in zip(total, torch.autograd.grad(h, params)):
                        acc.add_(g)
        return eta.detach(), total

    def _backward(self, model, x, y):
        logits, q = _shared_clean_pass(model, x, self._batch_stats_adversary())
        eta, extra = self.perturb(model, x, q)
        metrics = _trades_update(model, x, torch.clamp(x + eta, 0.0, 1.0), y, self.beta, logits)
        if extra is not None:
            params = [p for p in model.first_layer.parameters() if p.requires_grad]
            scale = self.beta / self.m
            for param, g in zip(params, extra):
                if param.grad is None:
                    param.grad = scale * g
                else:
                    param.grad.add_(g, alpha=scale)
        return metrics

    @classmethod
    def from_config(cls, cfg, generator=None):
        return cls(cfg.yopo_m, cfg.yopo_n, cfg.eps, cfg.yopo_sigma, cfg.beta,
                   cfg.first_layer_grad, generator=generator, adversary_bn=cfg.adversary_bn)


def build_objective(train_cfg, generator: torch.Generator | None = None) -> Objective:
    """The objective that `train_cfg.objective` names, set from that `TrainConfig`."""
    name = train_cfg.objective
    if name not in OBJECTIVES:
        raise ValueError(f"train.objective: unknown objective {name!r}; choose one of "
                         f"{', '.join(OBJECTIVES)}")
    objective = OBJECTIVES[name].from_config(train_cfg, generator=generator)
    return objective.with_precision(train_cfg.precision)


__all__ = [
    "OBJECTIVES",
    "PRECISIONS",
    "FgsmRS",
    "Objective",
    "PgdAT",
    "Standard",
    "Trades",
    "TradesYopo",
    "build_objective",
    "register_objective",
    "trades_kl",
]
