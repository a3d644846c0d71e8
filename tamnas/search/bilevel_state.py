"""The bi-level search's resumable state: weights, alphas, optimisers, batch streams, RNGs.

Everything a killed MGDA search needs to continue where it stopped and draw
the numbers an uninterrupted one would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tamnas.search.mgda_variants import (
    ARCH_BETAS,
    ARCH_WEIGHT_DECAY,
    WEIGHT_DECAY,
    WEIGHT_MOMENTUM,
)
from tamnas.seeds import mix_seed

Alpha = list[torch.Tensor]


def ood_train_set(data):
    """The OoD images the search may train on: never those OoD AUPR is measured on."""
    return data.ood_train


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
        self.ood = (BatchStream(ood_train_set(data), bs, mix_seed(seed, 3), workers)
                    if use_ood else None)
        self.gen = torch.Generator().manual_seed(mix_seed(seed, 4))
        self.rng = np.random.default_rng(mix_seed(seed, 5))
        self.last_train: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_ood: torch.Tensor | None = None

    def set_weight_lr(self, lr: float) -> None:
        for group in self.weight_opt.param_groups:
            group["lr"] = lr

    def set_arch_lr(self, lr: float) -> None:
        for opt in self.arch_opts:
            for group in opt.param_groups:
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


__all__ = ["Alpha", "BatchStream", "SearchState", "ood_train_set"]
