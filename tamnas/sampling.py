"""Which subnets supernet training draws, when (Algorithm 1 of paper 004).

Phase 1 samples blocks only at the widest ratio; phase 2 samples blocks and
ratios, the ratio set growing downward from {1.8, 2.0} every `enlarge_every`
epochs; a new subnet every batch or every N epochs, each inside the phase's
parameter range; optionally progressive blocks and the sandwich rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tamnas.config import TrainConfig
from tamnas.supernets import SearchSpace


@dataclass
class SamplingSchedule:
    """Which subnets phase 1 and phase 2 of Algorithm 1 may draw in a given epoch."""

    space: SearchSpace
    train: TrainConfig
    ratios: tuple[float, ...] = ()   # the ratios the space offers (space.ratios of the config)

    @property
    def total_epochs(self) -> int:
        return self.train.phase1_epochs + self.train.phase2_epochs

    def phase(self, epoch: int) -> int:
        return 1 if epoch < self.train.phase1_epochs else 2

    def ratio_values(self, epoch: int) -> list[float]:
        """Phase 1: the widest ratio only; phase 2: the two widest, then one more every N epochs."""
        offered = sorted(self.ratios, reverse=True)
        if self.phase(epoch) == 1:
            return offered[:1]
        k = 2 + (epoch - self.train.phase1_epochs) // self.train.enlarge_every
        return offered[:min(k, len(offered))]

    def block_count(self, epoch: int) -> int | None:
        """Progressive blocks: how many offered blocks (in id order) may be drawn; None: all."""
        every = self.train.block_enlarge_every
        n = max((g.choices for g in self.space.genes if g.kind == "block"), default=0)
        if not every or not n:
            return None
        return min(n, 2 + epoch // every)

    def allowed(self, epoch: int) -> dict[str, list[int]] | None:
        allowed = {}
        ratios = self.space.ratio_indices(self.ratio_values(epoch)) if self.ratios else None
        if ratios is not None:
            allowed["ratio"] = ratios
        k = self.block_count(epoch)
        if k is not None:  # block gene values index the layer's offered ids in ascending order
            allowed["block"] = list(range(k))
        return allowed or None

    def params_range(self, epoch: int) -> list[int] | None:
        r = self.train.params_range_phase1 if self.phase(epoch) == 1 else self.train.params_range_phase2
        return None if r[1] <= 0 else list(r)

    def sample(self, rng: np.random.Generator, epoch: int):
        return self.space.sample(rng, self.params_range(epoch), self.allowed(epoch))

    def sandwich(self, rng: np.random.Generator, epoch: int) -> list:
        """The sandwich rule's paths: the widest and narrowest offered ratio, then a random path.

        Blocks stay random on the extremes. They bound every other subnet's width,
        so training them each step keeps the smallest subnets from lagging behind
        (BigNAS); without ratios to choose from, three random paths.
        """
        allowed = self.allowed(epoch)
        if allowed is None or "ratio" not in allowed:
            return [self.sample(rng, epoch) for _ in range(3)]
        ratios, params = allowed["ratio"], self.params_range(epoch)  # index order = width order
        extremes = [self.space.sample(rng, params, {**allowed, "ratio": [r]})
                    for r in (max(ratios), min(ratios))]
        return [*extremes, self.sample(rng, epoch)]

    def resample_now(self, epoch: int, batch: int) -> bool:
        if self.train.resample_every == "batch":
            return True
        every = int(self.train.resample_every)
        first_of_phase = epoch in (0, self.train.phase1_epochs)
        return batch == 0 and (epoch % every == 0 or first_of_phase)


__all__ = ["SamplingSchedule"]
