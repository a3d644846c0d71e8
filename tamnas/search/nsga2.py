"""NSGA-II over a search space's integer genes (paper 004, Algorithm 2), on pymoo.

pymoo runs the elitist loop (non-dominated sorting, crowding, survival); this
module supplies what is specific to architectures: a vectorised `Problem`
that sends the whole population to the evaluator, sampling from the space
(inside the parameter range), uniform gene crossover, per-gene resampling
mutation, a repair that makes offspring legal and puts them back in the
range, duplicate elimination by arch and a k-way tournament.

Generation 0 is the initial population; each of the `search.generations`
later generations evaluates `n_offsprings` children and keeps `pop_size`
survivors. After every generation the algorithm's state is checkpointed as
tensors, numbers and strings (the population's genes, objectives, ranks and
crowding, the generation counter, the numpy Generator states as JSON); a
resume rebuilds the pymoo objects from them, so it draws the same numbers an
uninterrupted search would have drawn and never unpickles an object.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.selection.tournament import TournamentSelection

from tamnas import distributed as dist
from tamnas.files import atomic_write_json, atomic_write_text
from tamnas.search.archive import arch_key
from tamnas.search.front_table import format_front_table
from tamnas.search.hypervolume import Hypervolume, objective_bounds
from tamnas.search.saved_state import (
    malformed,
    population_from_state,
    population_state,
    rng_state,
    set_rng_state,
)
from tamnas.search.strategy import Strategy, register_strategy
from tamnas.supernets.base import Arch, SearchSpace


# -- problem ------------------------------------------------------------------------------------
class ArchProblem(Problem):
    """Integer genes in [space.lower, space.upper]; F = the chosen scores of each arch.

    The space and the evaluator are attached, not owned: a resumed search
    builds a new problem and attaches them again.
    """

    def __init__(self, space: SearchSpace, evaluator, objectives: Sequence[str],
                 params_range: Sequence[int] | None = None, seed: int = 0, strategy: str = "nsga2"):
        super().__init__(n_var=space.n_genes, n_obj=len(objectives), xl=space.lower,
                         xu=space.upper, vtype=int, requires_kwargs=True)
        self.objectives = list(objectives)
        self.params_range = list(params_range) if params_range else None
        self.strategy = strategy
        # Used only when the installed pymoo hands operators no Generator (pymoo < 0.6.2).
        self.rng = np.random.default_rng([seed, 7])
        self.attach(space, evaluator)

    def attach(self, space: SearchSpace, evaluator) -> None:
        self.space, self.evaluator = space, evaluator
        self.options = [space.allowed_values(g, None) for g in space.genes]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(space=None, evaluator=None, options=None)
        return state

    def _evaluate(self, X, out, *args, algorithm=None, **kwargs):
        archs = [tuple(int(v) for v in x) for x in np.rint(X).astype(np.int64)]
        generation = None
        if algorithm is not None and algorithm.n_iter:
            generation = int(algorithm.n_iter) - 1  # pymoo counts generations from 1
        scores = self.evaluator.evaluate(archs, strategy=self.strategy, generation=generation)
        missing = [o for o in self.objectives if o not in scores[0]]
        if missing:
            raise ValueError(f"search.objectives: the evaluator gives no {', '.join(missing)}; "
                             f"it scores {', '.join(scores[0])} (set search.ood = true for "
                             "ood_aupr_err)")
        out["F"] = np.array([[s[o] for o in self.objectives] for s in scores], dtype=float)


def _rng(problem: ArchProblem, random_state: np.random.Generator | None) -> np.random.Generator:
    return random_state if random_state is not None else problem.rng


# -- operators ----------------------------------------------------------------------------------
class ArchSampling(Sampling):
    """Distinct uniform legal archs, rejection-sampled into the parameter range (`space.sample`).

    Distinct, because pymoo drops duplicates of the initial population
    without drawing replacements.
    """

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        rng = _rng(problem, random_state)
        archs: dict[Arch, None] = {}
        for _ in range(100 * n_samples):
            archs[problem.space.sample(rng, problem.params_range)] = None
            if len(archs) == n_samples:
                break
        return np.array(list(archs), dtype=np.int64)


class GeneCrossover(Crossover):
    """Two parents -> two children; each gene comes from one parent or the other, 50/50.

    pymoo applies it to a mating with probability `p_c` and copies the
    parents otherwise.
    """

    def __init__(self, p_c: float = 0.9):
        super().__init__(n_parents=2, n_offsprings=2, prob=p_c)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        rng = _rng(problem, random_state)
        _, n_matings, n_var = X.shape
        first = rng.random((n_matings, n_var)) < 0.5
        return np.stack([np.where(first, X[0], X[1]), np.where(first, X[1], X[0])])


class ResampleMutation(Mutation):
    """Each gene, with probability `p_m`, takes a different value among its legal ones.

    So `p_m` is the chance that a gene changes (paper 004: "10% opportunity to
    change the block or the channel number"); a gene with one legal value
    never changes.
    """

    def __init__(self, p_m: float = 0.1):
        super().__init__(prob=1.0)
        self.p_m = float(p_m)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        rng = _rng(problem, random_state)
        X = np.rint(X).astype(np.int64)
        hit = rng.random(X.shape) < self.p_m
        for i, j in zip(*np.nonzero(hit)):
            others = [v for v in problem.options[j] if v != X[i, j]]
            if others:
                X[i, j] = others[rng.integers(len(others))]
        return X


def repair_arch(space: SearchSpace, x: Sequence[float], rng: np.random.Generator,
                params_range: Sequence[int] | None = None, max_tries: int = 200) -> Arch:
    """A legal arch near `x`, with its parameters inside `params_range` when one is given.

    Genes are rounded and clipped to their bounds; an arch the space still
    rejects goes through `space.repair(arch, rng)` when the space has that
    hook. Out of range, single genes are redrawn while that brings the count
    closer to the range; if `max_tries` redraws do not get there, a fresh
    sample from the range replaces the arch.
    """
    x = np.clip(np.rint(np.asarray(x, dtype=float)), space.lower, space.upper)
    arch = tuple(int(v) for v in x)
    arch = _legal(space, arch, rng)
    if not params_range or params_range[1] <= 0:
        return arch
    lo, hi = params_range

    def gap(a: Arch) -> int:
        p = space.params(a)
        return max(lo - p, p - hi, 0)

    best = gap(arch)
    options = [space.allowed_values(g, None) for g in space.genes]
    for _ in range(max_tries):
        if best == 0:
            return arch
        j = int(rng.integers(len(arch)))
        cand = list(arch)
        cand[j] = int(options[j][rng.integers(len(options[j]))])
        cand = _legal(space, tuple(cand), rng)
        if gap(cand) < best:
            arch, best = cand, gap(cand)
    return arch if best == 0 else space.sample(rng, params_range)


def _legal(space: SearchSpace, arch: Arch, rng: np.random.Generator) -> Arch:
    try:
        return space.validate(arch)
    except ValueError:
        return space.validate(space.repair(arch, rng))


class ArchRepair(Repair):
    """Every child legal and inside the parameter range (see `repair_arch`)."""

    def _do(self, problem, X, random_state=None, **kwargs):
        rng = _rng(problem, random_state)
        return np.array([repair_arch(problem.space, x, rng, problem.params_range) for x in X],
                        dtype=np.int64)


class ArchDuplicateElimination(DuplicateElimination):
    """Two individuals are duplicates when their rounded genes spell the same arch."""

    def _do(self, pop, other, is_duplicate):
        keys = [tuple(x) for x in np.rint(pop.get("X")).astype(np.int64).tolist()]
        if other is None:
            seen: set = set()
            for i, k in enumerate(keys):
                is_duplicate[i] = k in seen
                seen.add(k)
        else:
            seen = {tuple(x) for x in np.rint(other.get("X")).astype(np.int64).tolist()}
            for i, k in enumerate(keys):
                is_duplicate[i] = is_duplicate[i] or k in seen
        return is_duplicate


def k_way_tournament(pop, P, random_state=None, algorithm=None, **kwargs) -> np.ndarray:
    """Winner of each row of P: lowest non-domination rank, then largest crowding, then chance."""
    rng = random_state if random_state is not None else getattr(algorithm, "random_state", None)
    rng = rng if rng is not None else algorithm.problem.rng  # pymoo < 0.6.2 passes no Generator
    rank = np.asarray(pop.get("rank"), dtype=float)
    crowding = np.asarray(pop.get("crowding"), dtype=float)
    winners = np.empty(len(P), dtype=np.int64)
    for i, cands in enumerate(np.asarray(P)):
        best = cands[rank[cands] == rank[cands].min()]
        best = best[crowding[best] == crowding[best].max()]
        winners[i] = best[0] if len(best) == 1 else best[rng.integers(len(best))]
    return winners[:, None]


def make_selection(tournament_size: int) -> TournamentSelection:
    """pymoo's binary NSGA-II tournament (dominance, then crowding) for 2, else rank/crowding."""
    if tournament_size < 2:
        raise ValueError(f"search.tournament_size: {tournament_size} is too small; use 2 or more")
    func = binary_tournament if tournament_size == 2 else k_way_tournament
    return TournamentSelection(func_comp=func, pressure=tournament_size)


# -- the strategy --------------------------------------------------------------------------------
@register_strategy("nsga2")
class NSGA2Search(Strategy):
    """NSGA-II with the paper's operators; see the module docstring."""

    def __init__(self, space: SearchSpace, evaluator, cfg, run_dir, *, seed: int | None = None,
                 quiet: bool = False, resume: bool = True):
        super().__init__(space, evaluator, cfg, run_dir, seed=seed, quiet=quiet, resume=resume)
        self.generations = int(cfg.search.generations)
        self.algorithm: NSGA2 | None = None
        self.population_rows: list[dict[str, Any]] = []

    def settings(self) -> dict[str, Any]:
        s = self.cfg.search
        return {**super().settings(), "pop_size": s.pop_size, "n_offsprings": s.n_offsprings,
                "p_m": s.p_m, "p_c": s.p_c, "tournament_size": s.tournament_size}

    @property
    def total_steps(self) -> int:
        return self.generations + 1  # generation 0 is the initial population

    def finished(self) -> bool:
        stuck = self.algorithm is not None and self.algorithm.termination.force_termination
        return stuck or super().finished()

    def build_algorithm(self) -> NSGA2:
        s = self.cfg.search
        return NSGA2(pop_size=s.pop_size, n_offsprings=s.n_offsprings, sampling=ArchSampling(),
                     selection=make_selection(s.tournament_size), crossover=GeneCrossover(s.p_c),
                     mutation=ResampleMutation(s.p_m), repair=ArchRepair(),
                     eliminate_duplicates=ArchDuplicateElimination(), seed=self.seed)

    def _new_algorithm(self) -> NSGA2:
        problem = ArchProblem(self.space, self.evaluator, self.objectives, self.params_range,
                              seed=self.seed, strategy=self.name)
        algorithm = self.build_algorithm()
        algorithm.setup(problem, termination=NoTermination(), verbose=False, progress=False)
        return algorithm

    def setup(self) -> None:
        self.algorithm = self._new_algorithm()
        low, high = objective_bounds(self.space, self.objectives, self.params_range, seed=self.seed)
        self.hv = Hypervolume(low, high)
        self.rows, self.population_rows = [], []
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / "reference_point.json",
                              self.hv.to_dict(self.objectives))

    def step(self) -> dict[str, Any]:
        """One generation: the initial population first, then mating + survival."""
        algo = self.algorithm
        algo.next()
        generation = int(algo.n_iter) - 2  # pymoo counts from 1 and has already moved on
        pop = algo.pop
        F, X = pop.get("F"), np.rint(pop.get("X")).astype(np.int64)
        rank = pop.get("rank")
        for x, f, r in zip(X, F, rank):
            scores = dict(zip(self.objectives, map(float, f)))
            self.population_rows.append({"generation": generation, "arch": arch_key(x),
                                         "rank": int(r), **scores})
        return {"generation": generation, "hv": self.front_hv(), "hv_population": self.hv(F),
                "pop_size": len(pop), "offspring": len(algo.off) if algo.off is not None else 0,
                "front_size": int(np.sum(rank == 0))}

    def save(self, front: pd.DataFrame | None = None) -> None:
        super().save(front)
        if dist.is_main() and self.population_rows:
            atomic_write_text(self.run_dir / "population.csv",
                              pd.DataFrame(self.population_rows).to_csv(index=False))

    def state_dict(self) -> dict[str, Any]:
        algo = self.algorithm
        return {**super().state_dict(),
                "algorithm": {"population": population_state(algo.pop),
                              "n_iter": int(algo.n_iter), "n_eval": int(algo.evaluator.n_eval),
                              "rng": rng_state(algo.random_state),
                              "problem_rng": rng_state(algo.problem.rng),
                              "force_termination": bool(algo.termination.force_termination)},
                "hv": {"low": [float(v) for v in self.hv.low],
                       "high": [float(v) for v in self.hv.high]},
                "population_rows": [dict(r) for r in self.population_rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the pymoo algorithm from the saved arrays: a fresh one, as `setup` makes it,
        given the saved population, counters and random states."""
        where = str(self.checkpoint_path)
        saved, hv = state.get("algorithm"), state.get("hv")
        if not isinstance(saved, dict) or not isinstance(hv, dict) \
                or not isinstance(saved.get("n_iter"), int) or saved["n_iter"] < 2:
            raise malformed(where, "no algorithm state")
        super().load_state_dict(state)
        algo = self._new_algorithm()
        algo.pop = population_from_state(saved["population"], self.space.n_genes,
                                         len(self.objectives), where)
        algo.n_iter, algo.is_initialized = saved["n_iter"], True
        algo.evaluator.n_eval = int(saved.get("n_eval", 0))
        set_rng_state(algo.random_state, saved.get("rng"), where)
        set_rng_state(algo.problem.rng, saved.get("problem_rng"), where)
        algo.termination.force_termination = bool(saved.get("force_termination", False))
        algo.start_time = time.time()
        algo._set_optimum()
        self.algorithm = algo
        try:
            self.hv = Hypervolume(hv["low"], hv["high"])
        except (KeyError, TypeError, ValueError):
            raise malformed(where, "hypervolume bounds") from None
        if len(self.hv.low) != len(self.objectives):
            raise malformed(where, "hypervolume bounds")
        self.population_rows = [dict(r) for r in state["population_rows"]]

    def population(self) -> pd.DataFrame:
        """The current population with its objectives and non-domination rank."""
        rows = [r for r in self.population_rows if r["generation"] == self.steps_done - 1]
        return pd.DataFrame(rows)


__all__ = [
    "ArchDuplicateElimination",
    "ArchProblem",
    "ArchRepair",
    "ArchSampling",
    "GeneCrossover",
    "Hypervolume",
    "NSGA2Search",
    "ResampleMutation",
    "format_front_table",
    "k_way_tournament",
    "make_selection",
    "objective_bounds",
    "repair_arch",
]
