"""Random search: uniform samples of the space, scored like every other strategy's.

The baseline a NAS result must beat (Li & Talwalkar 2019; Yu et al. 2020).
It draws archs uniformly under the same parameter range, scores them with
the same evaluator into the same archive, and spends NSGA-II's budget by
default: `pop_size` archs in step 0, then `n_offsprings` new ones in each of
`generations` steps. Its `hv` is that of its own archive front, as NSGA-II's,
on the same bounds and reference point, so the two curves compare directly;
its archs never enter NSGA-II's front.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tamnas import distributed as dist
from tamnas.files import atomic_write_json
from tamnas.search.strategy import Strategy, register_strategy
from tamnas.supernets.base import Arch

MAX_DRAWS_PER_ARCH = 200  # new-arch draws before a small space is taken as exhausted


@register_strategy("random")
class RandomSearch(Strategy):
    """Uniform samples under the params range, NSGA-II's evaluation budget; module docstring."""

    log_name = "random_log.csv"

    def __init__(self, space, evaluator, cfg, run_dir, *, seed: int | None = None,
                 quiet: bool = False, resume: bool = True):
        super().__init__(space, evaluator, cfg, run_dir, seed=seed, quiet=quiet, resume=resume)
        self.generations = int(cfg.search.generations)
        self.rng = np.random.default_rng([self.seed, 0x4A4D])
        self.drawn: list[Arch] = []

    def settings(self) -> dict[str, Any]:
        s = self.cfg.search
        return {**super().settings(), "pop_size": s.pop_size, "n_offsprings": s.n_offsprings}

    @property
    def total_steps(self) -> int:
        return self.generations + 1

    def setup(self) -> None:
        self.rng = np.random.default_rng([self.seed, 0x4A4D])
        self.rows, self.drawn = [], []
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / "random_reference_point.json",
                              self.hv.to_dict(self.objectives))

    def _draw(self, n: int) -> list[Arch]:
        """n archs not drawn before (fewer if the space runs out), uniform under the range."""
        seen, new = set(self.drawn), []
        for _ in range(n * MAX_DRAWS_PER_ARCH):
            if len(new) == n:
                break
            arch = self.space.sample(self.rng, self.params_range)
            if arch not in seen:
                seen.add(arch)
                new.append(arch)
        return new

    def step(self) -> dict[str, Any]:
        s = self.cfg.search
        batch = self._draw(s.pop_size if self.steps_done == 0 else s.n_offsprings)
        self.drawn += batch
        self.evaluator.evaluate(batch, strategy=self.name, generation=self.steps_done)
        return {"generation": self.steps_done, "hv": self.front_hv(), "sampled": len(batch),
                "drawn_total": len(self.drawn), "front_size": len(self.front())}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self.rng.bit_generator.state,
                "drawn": [list(a) for a in self.drawn]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.bit_generator.state = state["rng"]
        self.drawn = [tuple(int(g) for g in a) for a in state["drawn"]]


__all__ = ["RandomSearch"]
