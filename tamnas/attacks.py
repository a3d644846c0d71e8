"""L-inf attacks in pixel space [0, 1]: FGSM, PGD (cross-entropy or TRADES KL), AutoAttack adapter.

Every attack runs the model in eval mode and puts each submodule's train/eval
flag back afterwards; gradients are taken with `torch.autograd.grad` w.r.t. the
input only, so weights, their `.grad` and BatchNorm statistics are untouched.
The step loops stay on the device: no per-example Python work, no host syncs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tamnas.errors import MissingExtraError
from tamnas.supernets.base import SubnetView

LOSSES = ("ce", "kl")
KINDS = ("pgd", "fgsm")
AUTOATTACK_HINT = "AutoAttack needs the optional extra: pip install 'tamnas[attacks]'"


def modules_run(model: nn.Module) -> list[nn.Module]:
    """The modules a forward of `model` runs: a supernet path's own, else all of them.

    A supernet path touches a fraction of the supernet's modules (a quarter
    of the quickstart's, less on wider spaces); switching and saving only
    those is what keeps the mode switches below cheap (4 ms -> about 1 ms per
    switch on the quickstart, 34 ms -> a few on `cifar10-tamnas`, one core).
    """
    return model.modules_run() if isinstance(model, SubnetView) else list(model.modules())


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    layers = modules_run(model)
    flags = [m.training for m in layers]
    for m in layers:
        m.training = training
    try:
        yield model
    finally:
        for m, flag in zip(layers, flags):
            m.training = flag


def eval_mode(model: nn.Module):
    """Eval mode inside; every submodule's own flag restored on exit (mixed modes survive)."""
    return _mode(model, False)


def train_mode(model: nn.Module):
    """Train mode inside; every submodule's own flag restored on exit."""
    return _mode(model, True)


@contextmanager
def preserved_bn_state(model: nn.Module) -> Iterator[nn.Module]:
    """Every BatchNorm buffer and momentum as it was, on exit, whatever ran inside.

    Inside, each layer works on copies of its buffers; on exit the untouched
    originals go back in place. Writing the old values back instead would
    bump the buffers' version counters and break the backward of a graph
    built before (the update's clean pass that TRADES-YOPO runs first).
    """
    layers = [m for m in modules_run(model) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(dict(m._buffers), m.momentum) for m in layers]
    for m in layers:
        for k, v in m._buffers.items():
            if v is not None:
                m._buffers[k] = v.clone()
    try:
        yield model
    finally:
        for m, (buffers, momentum) in zip(layers, saved):
            m._buffers.update(buffers)
            m.momentum = momentum


@contextmanager
def batch_stats_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode (BatchNorm on batch statistics) with every BatchNorm buffer put back on exit.

    What an adversary inside supernet training runs in: the running
    statistics of a supernet are an average over recently drawn paths and
    belong to none of them, so an eval-mode adversary attacks a network that
    is not the one being trained.
    """
    with preserved_bn_state(model), train_mode(model):
        yield model


ADVERSARY_MODES = {"eval": eval_mode, "batch": batch_stats_mode}


def noise_like(x: torch.Tensor, kind: str = "uniform",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """U(-1, 1) or N(0, 1) noise shaped like x, on x's device.

    With a generator the noise is drawn on the generator's device and moved,
    so a CPU generator drives a CUDA run reproducibly; without one the global
    RNG of x's device is used.
    """
    device = generator.device if generator is not None else x.device
    if kind == "uniform":
        out = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype) * 2 - 1
    elif kind == "normal":
        out = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
    else:
        raise ValueError(f"noise kind {kind!r} is unknown; choose uniform or normal")
    return out.to(x.device, non_blocking=True)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A detached tensor that autograd may use (inference-mode tensors cannot be)."""
    x = x.detach()
    return x.clone() if x.is_inference() else x


def _check(eps: float, steps: int, restarts: int, loss: str) -> None:
    if eps < 0:
        raise ValueError(f"attack eps must be >= 0, got {eps}")
    if steps < 0:
        raise ValueError(f"attack steps must be >= 0, got {steps}")
    if restarts < 1:
        raise ValueError(f"attack restarts must be >= 1, got {restarts}")
    if loss not in LOSSES:
        raise ValueError(f"attack loss {loss!r} is unknown; choose one of {', '.join(LOSSES)}")


def _objective(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-example loss the adversary maximises: CE on labels, or KL(clean softmax || adv)."""
    if loss == "ce":
        return F.cross_entropy(logits, target, reduction="none")
    return F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none").sum(1)


def _target(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, loss: str) -> torch.Tensor:
    if loss == "ce":
        if y is None:
            raise ValueError("attack loss 'ce' needs labels y")
        return y
    with torch.no_grad():
        return F.softmax(model(x), dim=1)


def _pgd_once(model: nn.Module, x: torch.Tensor, target: torch.Tensor, lo: torch.Tensor,
              hi: torch.Tensor, eps: float, steps: int, step_size: float, loss: str,
              random_start: bool, start_std: float | None,
              generator: torch.Generator | None) -> torch.Tensor:
    if not random_start:
        x_adv = x.clone()
    elif start_std is not None:
        x_adv = torch.clamp(x + start_std * noise_like(x, "normal", generator), lo, hi)
    else:
        x_adv = torch.clamp(x + eps * noise_like(x, "uniform", generator), lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        value = _objective(model(x_adv), target, loss).sum()
        (grad,) = torch.autograd.grad(value, x_adv)
        x_adv = torch.clamp(x_adv.detach() + step_size * grad.sign(), lo, hi)
    return x_adv.detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float, steps: int,
        step_size: float, restarts: int = 1, loss: str = "ce", random_start: bool = True,
        generator: torch.Generator | None = None, start_std: float | None = None,
        mode=eval_mode, kl_target: torch.Tensor | None = None) -> torch.Tensor:
    """L-inf PGD (Madry et al.); loss "kl" is TRADES' inner maximisation of KL(f(x) || f(x')).

    `mode` is the context the model runs in: eval mode for evaluation,
    `batch_stats_mode` for an adversary inside training (see there).
    `kl_target`: softmax(f(x)) in that mode, when the caller already has it.

    The random start is uniform in the eps-ball, or N(0, start_std^2) when
    `start_std` is given (TRADES starts at x + 0.001 randn: its KL has zero
    gradient at x itself). With several restarts each example keeps its worst
    case: a misclassified example beats a correct one, then the higher loss
    wins. eps = 0 or steps = 0 returns x.
    """
    _check(eps, steps, restarts, loss)
    x = _plain(x)
    if eps == 0 or steps == 0:
        return x
    lo, hi = torch.clamp(x - eps, min=0.0), torch.clamp(x + eps, max=1.0)
    with mode(model), torch.enable_grad():
        target = kl_target if loss == "kl" and kl_target is not None else _target(model, x, y, loss)
        best = best_wrong = best_loss = None
        for _ in range(restarts):
            x_adv = _pgd_once(model, x, target, lo, hi, eps, steps, step_size, loss,
                              random_start, start_std, generator)
            if restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = model(x_adv)
                value = _objective(logits, target, loss)
                wrong = logits.argmax(1) != y if y is not None else \
                    torch.zeros_like(value, dtype=torch.bool)
            if best is None:
                best, best_wrong, best_loss = x_adv, wrong, value
                continue
            better = (wrong & ~best_wrong) | ((wrong == best_wrong) & (value > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x_adv, best)
            best_wrong, best_loss = best_wrong | wrong, torch.where(better, value, best_loss)
    return best


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
         random_start: bool = False, step_size: float | None = None,
         generator: torch.Generator | None = None, mode=eval_mode) -> torch.Tensor:
    """One signed gradient step (Goodfellow et al.); random_start=True is FGSM-RS.

    Plain FGSM steps eps from x. FGSM-RS (Wong et al., "Fast is better than
    free") starts uniformly in the eps-ball and steps `step_size` (default
    1.25 eps), then projects back to the ball and to [0, 1].
    """
    _check(eps, 1, 1, "ce")
    x = _plain(x)
    if eps == 0:
        return x
    lo, hi = torch.clamp(x - eps, min=0.0), torch.clamp(x + eps, max=1.0)
    if random_start:
        start = torch.clamp(x + eps * noise_like(x, "uniform", generator), lo, hi)
        step = 1.25 * eps if step_size is None else step_size
    else:
        start, step = x, eps
    with mode(model), torch.enable_grad():
        x_adv = start.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
    return torch.clamp(start + step * grad.sign(), lo, hi).detach()


@dataclass
class Attack:
    """A configured attack: `attack(model, x, y) -> x_adv`.

    kind "pgd" uses every field; kind "fgsm" is plain FGSM (one eps step from
    x) and ignores steps, step_size, restarts, loss and random_start.
    """

    kind: str = "pgd"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float = 2 / 255
    restarts: int = 1
    loss: str = "ce"
    random_start: bool = True
    generator: torch.Generator | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"attack kind {self.kind!r} is unknown; choose one of "
                             f"{', '.join(KINDS)}")
        _check(self.eps, self.steps, self.restarts, self.loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "fgsm":
            return fgsm(model, x, y, self.eps)
        return pgd(model, x, y, self.eps, self.steps, self.step_size, restarts=self.restarts,
                   loss=self.loss, random_start=self.random_start, generator=self.generator)

    @classmethod
    def from_config(cls, cfg, kind: str = "pgd",
                    generator: torch.Generator | None = None) -> Attack:
        """From a `tamnas.config.AttackConfig` (eps, steps, step_size, restarts, loss)."""
        return cls(kind=kind, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                   restarts=cfg.restarts, loss=cfg.loss, generator=generator)


def error_masks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack=None,
                batch_size: int = 256, device: torch.device | str | None = None,
                keep_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None,
                                                   torch.Tensor | None]:
    """Per-image wrong masks, clean and under `attack` (None: clean only), and the clean logits.

    The one place every scorer (evaluator, test-set scores, robustness grid)
    counts errors: batch by batch, a clean pass, then the attack on that batch
    and its pass, masks kept on the device. Eval mode for the duration.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"error_masks: x has {len(x)} images and y {len(y)} labels; give the "
                         "same non-zero number")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    clean_wrong, adv_wrong, logits_all = [], [], []
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            with torch.inference_mode():
                logits = model(xb)
            clean_wrong.append(logits.argmax(1) != yb)
            if keep_logits:
                logits_all.append(logits)
            if attack is not None:
                x_adv = attack(model, xb, yb)
                with torch.inference_mode():
                    adv_wrong.append(model(x_adv).argmax(1) != yb)
    return (torch.cat(clean_wrong), torch.cat(adv_wrong) if attack is not None else None,
            torch.cat(logits_all) if keep_logits else None)


def robust_accuracy(model: nn.Module, data, attack=None, device: torch.device | str | None = None,
                    batch_size: int = 256) -> float:
    """Accuracy under `attack` (clean accuracy when None).

    `data` is a pair of tensors (x, y), or any iterable of (x, y) batches.
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2
            and isinstance(data[0], torch.Tensor)):
        batches = list(data)
        if not batches:
            raise ValueError("robust_accuracy: the data holds no examples")
        data = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    x, y = data
    if len(x) == 0:
        raise ValueError("robust_accuracy: the data holds no examples")
    clean, adv, _ = error_masks(model, x, y, attack, batch_size, device)
    wrong = adv if adv is not None else clean
    return 1.0 - int(wrong.sum()) / len(y)


def autoattack_class():
    """The AutoAttack class of `pyautoattack` (PyPI) or of the official `autoattack` git package."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        try:
            from autoattack import AutoAttack
        except ImportError:
            raise MissingExtraError(AUTOATTACK_HINT) from None
    return AutoAttack


def autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               version: str = "standard", device: torch.device | str | None = None,
               batch_size: int = 250, seed: int | None = 0,
               attacks: list[str] | None = None) -> torch.Tensor:
    """Adversarial examples from AutoAttack (L-inf); needs the optional extra `attacks`.

    `version` is AutoAttack's ("standard", "plus", "rand"); a list of
    `attacks` (e.g. ["apgd-ce"]) runs those alone (version "custom"). The
    model runs in eval mode (flags restored afterwards); a fixed `seed` makes
    the run repeatable.
    """
    cls = autoattack_class()
    official = cls.__module__.startswith("autoattack")  # the git package names its keywords apart
    device = torch.device(device) if device is not None else x.device
    x, y = _plain(x).to(device), y.to(device)
    kwargs = {"norm": "Linf", "eps": eps, "version": version, "device": device, "seed": seed}
    if attacks is not None:
        kwargs["version"] = "custom"
        kwargs["attacks_to_run" if official else "attacks"] = list(attacks)
    with eval_mode(model):
        adversary = cls(model, **kwargs)
        adversary.verbose = False
        out = adversary.run_standard_evaluation(x, y, bs=batch_size) if official else \
            adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    x_adv = out[0] if isinstance(out, tuple) else out
    return x_adv.detach()


__all__ = [
    "ADVERSARY_MODES",
    "AUTOATTACK_HINT",
    "Attack",
    "MissingExtraError",
    "autoattack",
    "batch_stats_mode",
    "eval_mode",
    "fgsm",
    "noise_like",
    "pgd",
    "preserved_bn_state",
    "robust_accuracy",
    "train_mode",
]
