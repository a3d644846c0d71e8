"""The base every search strategy shares: the step loop, per-step log, outputs and resume.

A strategy sees the space contract, the evaluator protocol and the search
config, nothing else. `run()` repeats `step()` until `finished()`; after each
step it appends one row to `generations.csv`, saves the archive and
its own front (`front.json` for the run's strategy, `<name>_front.json` for
another one), and checkpoints `state_dict()`, so a killed search restarted
with `resume=True` continues from the last completed step and ends where an
uninterrupted run would have ended. With `resume=False` the checkpoint is
ignored and overwritten; the evaluator's archive stays a cache either way.
Settings that shape the search (objectives, range, seed, operator settings)
must match the checkpoint's; the number of generations may grow.

Each strategy's front is the non-dominated set of the archs it visited
(scored or met in the archive), never another strategy's; `hv` in every log
is the hypervolume of that front on the run's fixed bounds and reference
point (`front_hv`), so the curves of all strategies compare directly.

`generations.csv` columns: the strategy's own (for NSGA-II: generation, hv,
hv_population, pop_size, offspring, front_size), then archive_size and the
running totals evaluations, cache_hits, eval_seconds (inside the evaluator)
and seconds (inside steps; writing outputs excluded), summed over resumes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from tamnas import distributed as dist
from tamnas.board import Board
from tamnas.config import SCORE_NAMES
from tamnas.files import atomic_write_json, atomic_write_text, load_checkpoint, save_checkpoint
from tamnas.progress import progress
from tamnas.search.archive import Archive, front_records, front_table, mixed_weights
from tamnas.search.hypervolume import Hypervolume, objective_bounds
from tamnas.supernets.base import SearchSpace

LOG_NAME = "generations.csv"
FRONT_NAME = "front.json"


def resolve_params_range(cfg) -> list[int] | None:
    """search.params_range, else train.params_range_phase2; [0, 0] in both means no range."""
    for r in (cfg.search.params_range, cfg.train.params_range_phase2):
        if len(r) == 2 and r[1] > 0:
            return [int(r[0]), int(r[1])]
    return None


STRATEGIES: dict[str, type[Strategy]] = {}
BUILTIN_MODULES = ("tamnas.search.nsga2", "tamnas.search.random", "tamnas.search.mgda")


def register_strategy(name: str):
    """Class decorator: make a strategy usable as `--strategy name` / `search.strategy`."""

    def wrap(cls: type[Strategy]) -> type[Strategy]:
        STRATEGIES[name] = cls
        cls.name = name
        return cls

    return wrap


def strategy_names() -> list[str]:
    """Every registered strategy (the built-in ones imported first)."""
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return sorted(STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    if name not in strategy_names():
        raise ValueError(f"search.strategy: unknown strategy {name!r}; choose one of "
                         f"{', '.join(strategy_names())}")
    return STRATEGIES[name]


class Strategy:
    """Loop, log, outputs and resume; subclasses fill `setup`, `step` and the state hooks."""

    name = "strategy"
    log_name = LOG_NAME  # one log per strategy, so NSGA-II's and MGDA's share a run directory
    run_strategy: str | None = None  # the run's own strategy (search.strategy); None: this one

    def __init__(self, space: SearchSpace, evaluator, cfg, run_dir: str | Path, *,
                 seed: int | None = None, quiet: bool = False, resume: bool = True):
        objectives = list(cfg.search.objectives)
        bad = [o for o in objectives if o not in SCORE_NAMES]
        if bad or len(objectives) < 2:
            raise ValueError(f"search.objectives: need two or more of {', '.join(SCORE_NAMES)}; "
                             f"got {objectives}")
        self.space, self.evaluator, self.cfg = space, evaluator, cfg
        self.run_dir = Path(run_dir)
        self.seed = int(cfg.seed if seed is None else seed)
        self.quiet, self.resume = quiet, resume
        self.objectives = objectives
        self.params_range = resolve_params_range(cfg)
        # one normalisation and reference point for every strategy of the run
        self.hv = Hypervolume(*objective_bounds(space, objectives, self.params_range,
                                                seed=self.seed))
        self.rows: list[dict[str, Any]] = []
        self.board = Board(self.run_dir, bool(cfg.output.tensorboard) and dist.is_main())
        self.totals = {"evaluations": 0, "cache_hits": 0, "eval_seconds": 0.0, "seconds": 0.0}
        self._checked: dict[str, Any] | None = None  # the checkpoint, once check_resume read it

    # -- hooks for subclasses ---------------------------------------------------------------
    def setup(self) -> None:
        """Prepare a fresh search."""

    def step(self) -> dict[str, Any]:
        """Do one generation/epoch; return its log columns (the base adds counters and times)."""
        raise NotImplementedError

    @property
    def steps_done(self) -> int:
        return len(self.rows)

    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    def finished(self) -> bool:
        return self.steps_done >= self.total_steps

    def settings(self) -> dict[str, Any]:
        """What a resumed search must share with the one that wrote the checkpoint."""
        return {"strategy": self.name, "space": self.space.name, "n_genes": self.space.n_genes,
                "objectives": self.objectives, "params_range": self.params_range, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"settings": self.settings(), "rows": [dict(r) for r in self.rows],
                "totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.totals = dict(state["totals"])

    # -- paths and outputs ----------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / f"{self.name}_state.pt"

    @property
    def archive(self) -> Archive:
        return self.evaluator.archive

    def front(self) -> pd.DataFrame:
        """This strategy's front: the non-dominated archs it visited, sorted by the objectives."""
        return front_table(self.archive, self.objectives, strategy=self.name)

    def front_hv(self) -> float:
        """Hypervolume of `front()` on the run's fixed bounds and reference point: the same
        set definition and yardstick for every strategy (the `hv` log column)."""
        front = self.front()
        return self.hv(front[self.objectives].to_numpy(dtype=float)) if len(front) else 0.0

    @property
    def front_path(self) -> Path:
        """front.json for the run's strategy, <name>_front.json for a one-off other one."""
        own = self.run_strategy in (None, self.name)
        return self.run_dir / (FRONT_NAME if own else f"{self.name}_front.json")

    def save(self, front: pd.DataFrame | None = None) -> None:
        """Archive, front.json, generations.csv, then the checkpoint (rank 0 only)."""
        if not dist.is_main():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.archive.save(self.run_dir)
        front = self.front() if front is None else front
        atomic_write_json(self.front_path,
                          {"objectives": self.objectives, "source": "archive",
                           "strategy": self.name,
                           "mixed_weights": mixed_weights(front),
                           "front": front_records(self.space, front)})
        atomic_write_text(self.run_dir / self.log_name, pd.DataFrame(self.rows).to_csv(index=False))
        save_checkpoint(self.checkpoint_path, self.state_dict(), kind=self.name)

    # -- the loop ---------------------------------------------------------------------------
    def check_resume(self) -> dict[str, Any] | None:
        """The checkpoint's state if resuming and one exists, after checking it was written by
        this search; ValueError (one line) otherwise. Reads only, so a command can refuse
        before it writes anything."""
        path = self.checkpoint_path
        if (path.exists() or path.is_symlink()) and not (path.is_file() and not path.is_symlink()):
            raise ValueError(f"{path} is not a regular file; remove it, or pass --no-resume to "
                             "move the search results aside")
        if not (self.resume and path.is_file()):
            return None
        if self._checked is None:
            state = load_checkpoint(self.checkpoint_path, kind=self.name)
            saved, now = state.get("settings"), self.settings()
            if not isinstance(saved, dict) or not isinstance(state.get("rows"), list) \
                    or not isinstance(state.get("totals"), dict):
                raise ValueError(f"{self.checkpoint_path} is malformed (no settings, rows or "
                                 "totals); delete it or pass --no-resume")
            diff = [k for k in now if saved.get(k) != now[k]]
            if diff:
                detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now[k]!r}" for k in diff)
                raise ValueError(f"{self.checkpoint_path} was written by a different search "
                                 f"({detail}); restore those settings or pass --no-resume")
            self._checked = state
        return self._checked

    def _restore(self) -> bool:
        """Load the checkpoint if resuming and one exists; True if it was loaded."""
        state = self.check_resume()
        if state is None:
            return False
        self._checked = None
        self.archive.update(Archive.load(self.run_dir, missing_ok=True, space_name=self.space.name,
                                         n_genes=self.space.n_genes))
        self.load_state_dict(state)
        return True

    def run(self) -> pd.DataFrame:
        """Search until `finished()`, resuming from the checkpoint when asked; the final front."""
        if not self._restore():
            self.setup()
        bar = progress(total=self.total_steps, initial=min(self.steps_done, self.total_steps),
                       desc=self.name, unit="step",
                       disable=self.quiet or not dist.is_main())
        try:
            while not self.finished():
                tic, before = time.perf_counter(), dict(self.evaluator.stats)
                row = self.step()
                stats = self.evaluator.stats
                self.totals["evaluations"] += stats["evaluations"] - before["evaluations"]
                self.totals["cache_hits"] += stats["cache_hits"] - before["cache_hits"]
                self.totals["eval_seconds"] += stats["seconds"] - before["seconds"]
                self.totals["seconds"] += time.perf_counter() - tic
                self.rows.append({**row, "archive_size": len(self.archive), **self.totals})
                if dist.is_main():
                    self.board.scalars(f"search/{self.name}", self.rows[-1], self.steps_done - 1)
                self.save()
                bar.update(1)
                bar.set_postfix({k: row[k] for k in ("hv",) if k in row})
        finally:
            bar.close()
        front = self.front()
        self.save(front)
        return front


__all__ = ["FRONT_NAME", "LOG_NAME", "STRATEGIES", "Strategy", "get_strategy", "register_strategy",
           "resolve_params_range", "strategy_names"]
