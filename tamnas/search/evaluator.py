"""The evaluation core: archs -> scores with weights inherited from the supernet.

Every strategy scores architectures only through `Evaluator.evaluate`. For
each new arch it re-estimates BatchNorm statistics on one fixed set of
training images (the supernet's running statistics belong to no single
subnet), measures clean and PGD error on one fixed validation subset (with
the image count `n_eval` and each error's binomial standard error), and
reads params/FLOPs from the space's tables. `score_model` scores any other
net of an arch (a standalone one) on the same images under the same attack. Scores are cached in the
archive under (arch, `weights`), the fingerprint of the weights the supernet
holds, so a duplicate or a resumed search costs nothing and a score made on
other weights is never returned. OoD AUPR is measured on the bundle's
`ood_eval` images, never on the OoD images the search trains on. The supernet's
weights and buffers are the same, bit for bit, after a call.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from tamnas import distributed as dist
from tamnas.attacks import (Attack, error_masks, eval_mode, modules_run, preserved_bn_state,
                            train_mode)
from tamnas.metrics import ood_aupr, with_standard_errors
from tamnas.progress import progress
from tamnas.search.archive import Archive
from tamnas.supernets.base import Arch, SearchSpace, Supernet


@contextmanager
def preserved_supernet(path: nn.Module) -> Iterator[None]:
    """Eval mode inside; the BatchNorm buffers, momenta and train/eval flags of every module
    `path` runs (`attacks.modules_run`) as they were, on exit."""
    with preserved_bn_state(path), eval_mode(path):
        yield


def check_image_counts(cfg, data) -> None:
    """One line before any scoring if the BN or validation image counts do not fit their split."""
    for key, n, split, name in (("search.bn_images", cfg.search.bn_images, data.train_plain,
                                 "training"),
                                ("search.eval_images", cfg.search.eval_images, data.val,
                                 "validation")):
        if n < 1 or n > len(split):
            raise ValueError(f"{key} {n}: the {name} split holds {len(split)} images; choose "
                             f"1..{len(split)}")


def ood_eval_set(data):
    """The OoD images AUPR is measured on: held apart from those the search trains on."""
    return getattr(data, "ood_eval", None)


class Evaluator:
    """Scores archs of one supernet on fixed data; see the module docstring."""

    def __init__(self, space: SearchSpace, supernet: Supernet, *, bn_images: torch.Tensor,
                 val_images: torch.Tensor, val_labels: torch.Tensor, attack: Attack,
                 device: torch.device, archive: Archive | None = None,
                 ood_images: torch.Tensor | None = None, batch_size: int = 256,
                 bn_batch_size: int | None = None, quiet: bool = True, seed: int = 0,
                 weights: str | None = None):
        """`weights`: fingerprint of the supernet's weights (default: the archive's)."""
        self.space, self.supernet, self.attack, self.device = space, supernet, attack, device
        self.seed = int(seed)
        self.archive = archive if archive is not None else Archive(space.name, space.n_genes)
        self.weights = weights if weights is not None else self.archive.fingerprint
        self.batch_size = batch_size
        bn_bs = bn_batch_size or batch_size
        n_bn = (len(bn_images) // bn_bs) * bn_bs or len(bn_images)  # equal-sized batches
        self.bn_batches = list(bn_images[:n_bn].to(device).split(bn_bs))
        self.val_x = val_images.to(device)
        self.val_y = val_labels.to(device)
        self.ood_x = ood_images.to(device) if ood_images is not None else None
        self.quiet = quiet
        self.stats = {"evaluations": 0, "cache_hits": 0, "seconds": 0.0}

    @classmethod
    def from_config(cls, cfg, space: SearchSpace, supernet: Supernet, data, device: torch.device,
                    archive: Archive | None = None, quiet: bool = True) -> Evaluator:
        """Fixed BN and validation subsets drawn once from the run seed."""
        from tamnas.data import stack

        check_image_counts(cfg, data)
        bn_x, _ = stack(data.train_plain, cfg.search.bn_images, generator_seed=cfg.seed + 11)
        val_x, val_y = stack(data.val, cfg.search.eval_images, generator_seed=cfg.seed + 12)
        ood_x = None
        if cfg.search.ood or "ood_aupr_err" in cfg.search.objectives:
            ood_eval = ood_eval_set(data)
            if ood_eval is None:
                raise ValueError("search.ood needs an OoD set; set data.ood (e.g. \"noise\")")
            ood_x, _ = stack(ood_eval, cfg.search.eval_images, generator_seed=cfg.seed + 13)
        return cls(space, supernet, bn_images=bn_x, val_images=val_x, val_labels=val_y,
                   attack=Attack.from_config(cfg.attack), device=device, archive=archive,
                   ood_images=ood_x, batch_size=cfg.data.eval_batch_size, quiet=quiet,
                   seed=cfg.seed)

    # -- public API ---------------------------------------------------------------------
    @contextmanager
    def scoring_on(self, weights: str | None) -> Iterator[None]:
        """Score under another weights fingerprint (the caller has loaded those weights)."""
        before, self.weights = self.weights, weights
        try:
            yield
        finally:
            self.weights = before

    def evaluate(self, archs: Sequence[Sequence[int]], **meta: Any) -> list[dict[str, float]]:
        """Scores in the order of `archs` on the current weights; archs not yet scored on them
        are scored (sharded over ranks) and archived under (arch, weights)."""
        archs = [self.space.validate(a) for a in archs]
        todo = list(dict.fromkeys(a for a in archs
                                  if self.archive.get(a, weights=self.weights) is None))
        self.stats["cache_hits"] += len(archs) - len(todo)
        if todo:
            tic = time.perf_counter()
            # Every rank calls this (rank-0-only callers run inside `dist.local_only()`).
            local = [self.score(a) for a in progress(dist.shard(todo), desc="evaluate",
                                                     leave=False, unit="arch",
                                                     disable=self.quiet or not dist.is_main())]
            for arch, scores in zip(todo, dist.gather_sharded(local, len(todo))):
                self.archive.add(arch, scores, weights=self.weights, **meta)
            self.stats["evaluations"] += len(todo)
            self.stats["seconds"] += time.perf_counter() - tic
        if meta.get("strategy") is not None:  # a cache hit is a visit too: it joins that front
            for a in archs:
                self.archive.visit(a, meta["strategy"], weights=self.weights)
        return [dict(self.archive.get(a, weights=self.weights)) for a in archs]

    def score(self, arch: Arch) -> dict[str, float]:
        """Score one arch now, bypassing the archive."""
        model = self.supernet.path(arch)
        with preserved_supernet(model):
            self._recalibrate(model)
            scores, logits = self._model_scores(model, arch)
            if self.ood_x is not None:
                with torch.inference_mode():
                    ood_logits = torch.cat([model(xb) for xb in self.ood_x.split(self.batch_size)])
                scores["ood_aupr_err"] = 1.0 - ood_aupr(logits, ood_logits)
        return scores

    def score_model(self, model: nn.Module, arch: Arch,
                    per_image: bool = False) -> dict[str, float | int | np.ndarray]:
        """Score any net of `arch` (e.g. a standalone one) exactly as the arch is scored inherited.

        Same validation images, same attack with the same per-arch random
        start, so the two scores differ only by the weights. `per_image`
        adds the boolean masks `clean_wrong` / `adv_wrong` (one per image).
        """
        arch = self.space.validate(arch)
        with eval_mode(model):
            scores, _ = self._model_scores(model, arch, per_image=per_image)
        return scores

    def _model_scores(self, model: nn.Module, arch: Arch, per_image: bool = False):
        clean, adv, logits = self._errors(model, self._attack_for(arch))
        n = len(self.val_y)
        scores = with_standard_errors({"clean_err": int(clean.sum()) / n,
                                       "adv_err": int(adv.sum()) / n, "n_eval": n,
                                       "params": int(self.space.params(arch)),
                                       "flops": int(self.space.flops(arch))})
        if per_image:
            scores["clean_wrong"], scores["adv_wrong"] = clean.cpu().numpy(), adv.cpu().numpy()
        return scores, logits

    def calibrated_state(self, arch: Arch) -> dict[str, torch.Tensor]:
        """`extract(arch)` with BatchNorm statistics recalibrated for this arch (for export)."""
        path = self.supernet.path(arch)
        with preserved_supernet(path):
            self._recalibrate(path)
            return {k: v.detach().clone() for k, v in self.supernet.extract(arch).items()}

    # -- internals ----------------------------------------------------------------------
    def _recalibrate(self, path: nn.Module) -> None:
        """Running statistics := exact mean of the batch statistics over the fixed BN batches.

        Batch i is folded in with momentum 1/(i+1), so the result is the plain
        average over equal-sized batches, independent of what ran before. Only
        the path's own BatchNorm layers are touched (the caller restores them).
        """
        layers = [m for m in modules_run(path) if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad(), train_mode(path):
            for m in layers:
                m.reset_running_stats()
            for i, xb in enumerate(self.bn_batches):
                for m in layers:
                    m.momentum = 1.0 / (i + 1)
                path(xb)

    def _attack_for(self, arch: Arch):
        """The attack with its random start drawn from (seed, arch) unless it brings a generator.

        So an arch's score does not depend on what was scored before it in
        this process: the same with one rank or several, in any order.
        """
        if getattr(self.attack, "generator", None) is not None \
                or not dataclasses.is_dataclass(self.attack):
            return self.attack
        seq = np.random.SeedSequence([self.seed & (2**64 - 1), *arch])
        key = int(seq.generate_state(1, np.uint64)[0])
        return dataclasses.replace(self.attack, generator=torch.Generator().manual_seed(key))

    def _errors(self, model: nn.Module, attack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image wrong masks, clean and under attack, kept on device, and the clean logits."""
        return error_masks(model, self.val_x, self.val_y, attack, self.batch_size,
                           self.device, keep_logits=True)
