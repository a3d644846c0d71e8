"""NSGA-II strategy on the toy space: legal operators, a front near the true one, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pymoo.core.population import Population
from toyspace import ROBUST, STRIDE2, ToyEvaluator, ToySpace, toy_scores

import tamnas
from tamnas.search.archive import Archive, non_dominated
from tamnas.search.nsga2 import (
    ArchDuplicateElimination,
    ArchProblem,
    ArchRepair,
    ArchSampling,
    GeneCrossover,
    Hypervolume,
    NSGA2Search,
    ResampleMutation,
    format_front_table,
    k_way_tournament,
    make_selection,
    objective_bounds,
    repair_arch,
)
from tamnas.search.strategy import resolve_params_range

SPACE = ToySpace()
GENES = [f"g{i}" for i in range(SPACE.n_genes)]
TIME_COLUMNS = ["eval_seconds", "seconds"]


def toy_cfg(**search):
    overrides = {"search.pop_size": 12, "search.n_offsprings": 12, "search.generations": 6,
                 "search.params_range": [0, 0], "train.params_range_phase2": [0, 0]}
    overrides.update({f"search.{k}": v for k, v in search.items() if k != "seed"})
    overrides["seed"] = search.get("seed", 0)
    return tamnas.load_config("quickstart", overrides)


def run_search(run_dir, evaluator=None, resume=True, **search):
    evaluator = evaluator if evaluator is not None else ToyEvaluator(SPACE)
    strategy = NSGA2Search(SPACE, evaluator, toy_cfg(**search), run_dir, quiet=True, resume=resume)
    return strategy, strategy.run()


def archs_of(df: pd.DataFrame) -> set:
    return {tuple(int(v) for v in row) for row in df[GENES].to_numpy()}


def is_legal(arch) -> bool:
    try:
        SPACE.validate(arch)
        return True
    except ValueError:
        return False


def problem(params_range=None, seed=0) -> ArchProblem:
    return ArchProblem(SPACE, ToyEvaluator(SPACE), ["adv_err", "clean_err", "params"],
                       params_range, seed=seed)


def random_legal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([SPACE.sample(rng) for _ in range(n)], dtype=np.int64)


# -- operators -------------------------------------------------------------------------------------
def test_sampling_is_legal_in_range_and_seeded():
    prob = problem(params_range=[2500, 3500])
    X = ArchSampling().do(prob, 200, random_state=np.random.default_rng(3)).get("X")
    assert all(is_legal(x) and 2500 <= SPACE.params(tuple(x)) <= 3500 for x in X)
    assert len(set(map(tuple, X))) == 200  # distinct: pymoo would drop duplicates unreplaced
    again = ArchSampling().do(prob, 200, random_state=np.random.default_rng(3)).get("X")
    assert np.array_equal(X, again)
    # without a Generator from pymoo, the problem's seeded fallback is used
    a = ArchSampling()._do(problem(seed=5), 20)
    b = ArchSampling()._do(problem(seed=5), 20)
    assert np.array_equal(a, b)


def test_crossover_takes_each_gene_from_one_parent():
    rng = np.random.default_rng(0)
    X = np.stack([random_legal(500, 1), random_legal(500, 2)])
    kids = GeneCrossover(1.0)._do(problem(), X, random_state=rng)
    assert kids.shape == X.shape
    from_first = kids[0] == X[0]
    assert np.all(from_first | (kids[0] == X[1]))
    assert np.array_equal(np.where(from_first, X[1], X[0]), kids[1])  # complementary children
    differ = X[0] != X[1]
    assert abs(from_first[differ].mean() - 0.5) < 0.03
    assert all(is_legal(k) for k in kids.reshape(-1, SPACE.n_genes))


def test_crossover_probability_zero_copies_the_parents():
    pop = Population.new("X", random_legal(20, 4))
    parents = np.arange(20).reshape(10, 2)
    off = GeneCrossover(0.0).do(problem(), pop, parents, random_state=np.random.default_rng(0))
    assert sorted(map(tuple, off.get("X"))) == sorted(map(tuple, pop.get("X")))


@pytest.mark.parametrize("p_m", [0.1, 0.3])
def test_mutation_changes_genes_at_rate_p_m(p_m):
    X = random_legal(3000, 5)
    Y = ResampleMutation(p_m)._do(problem(), X.copy(), random_state=np.random.default_rng(6))
    changed = (X != Y).mean()
    sd = np.sqrt(p_m * (1 - p_m) / X.size)
    assert abs(changed - p_m) < 5 * sd
    assert all(is_legal(y) for y in Y)
    assert np.array_equal(ResampleMutation(0.0)._do(problem(), X.copy(),
                                                    random_state=np.random.default_rng(0)), X)


def test_mutation_draws_uniformly_among_other_legal_values():
    X = np.zeros((6000, SPACE.n_genes), dtype=np.int64)  # block 0, ratio 0 everywhere
    Y = ResampleMutation(1.0)._do(problem(), X, random_state=np.random.default_rng(1))
    stride2_blocks = Y[:, [2 * layer for layer in STRIDE2]].ravel()
    assert set(stride2_blocks) == {1, 2}  # never stays 0, never the illegal robust block
    assert abs((stride2_blocks == 1).mean() - 0.5) < 0.03
    assert set(Y[:, 2].ravel()) == {1, 2, ROBUST}  # a stride-1 layer may take the robust block


def test_repair_makes_archs_legal_and_puts_them_in_range():
    rng = np.random.default_rng(0)
    bad = random_legal(300, 7)
    bad[:100, 0] = ROBUST            # pure robust block in a stride-2 layer
    bad[100:200, 1] = 9              # beyond the gene's bound
    bad[200:, 4] = -2
    fixed = ArchRepair()._do(problem(params_range=[2500, 3500]), bad.astype(float),
                             random_state=rng)
    assert all(is_legal(x) and 2500 <= SPACE.params(tuple(x)) <= 3500 for x in fixed)
    legal = [a for a in random_legal(50, 8) if 2500 <= SPACE.params(tuple(a)) <= 3500]
    for arch in legal:  # nothing to repair: unchanged
        assert repair_arch(SPACE, arch, rng, [2500, 3500]) == tuple(arch)
    # out of range but close: single-gene moves keep most genes of the child
    arch = (2, 2, 2, 2, 1, 2, 2, 2)
    assert SPACE.params(arch) > 3500
    moved = repair_arch(SPACE, arch, np.random.default_rng(2), [2500, 3500])
    assert 2500 <= SPACE.params(moved) <= 3500 and sum(a != b for a, b in zip(arch, moved)) <= 4


def test_duplicates_eliminated_by_arch():
    X = np.array([[0] * 8, [1] * 8, [0] * 8, [2] * 8, [1] * 8], dtype=float)
    pop = ArchDuplicateElimination().do(Population.new("X", X))
    assert sorted(map(tuple, pop.get("X").astype(int))) == [(0,) * 8, (1,) * 8, (2,) * 8]
    other = Population.new("X", np.array([[2] * 8], dtype=float))
    pop = ArchDuplicateElimination().do(Population.new("X", X), other)
    assert sorted(map(tuple, pop.get("X").astype(int))) == [(0,) * 8, (1,) * 8]


def test_k_way_tournament_prefers_rank_then_crowding():
    rng = np.random.default_rng(0)
    rank = rng.integers(0, 3, size=30)
    crowding = rng.choice([0.1, 0.5, 1.0, np.inf], size=30)
    pop = Population.new("rank", rank, "crowding", crowding)
    P = np.array([rng.choice(30, size=5, replace=False) for _ in range(400)])
    winners = k_way_tournament(pop, P, random_state=rng)[:, 0]
    for row, w in zip(P, winners):
        assert w in row
        best_rank = rank[row].min()
        assert rank[w] == best_rank
        assert crowding[w] == crowding[row][rank[row] == best_rank].max()
    assert make_selection(10).pressure == 10 and make_selection(2).pressure == 2
    with pytest.raises(ValueError, match="tournament_size"):
        make_selection(1)


def test_hypervolume_against_hand_computed_value():
    hv = Hypervolume(low=[0.0, 0.0], high=[1.0, 1.0])
    # rectangles to (1.1, 1.1): 1.0 * 0.6 + 0.6 * 1.0 - 0.6 * 0.6 overlap
    assert hv(np.array([[0.1, 0.5], [0.5, 0.1]])) == pytest.approx(0.84)
    assert hv(np.array([[0.1, 0.5], [0.5, 0.1], [1.2, 0.0]])) == pytest.approx(0.84)
    assert hv(np.zeros((0, 2))) == 0.0
    scaled = Hypervolume(low=[0.0, 1000.0], high=[1.0, 2000.0])
    assert scaled(np.array([[0.1, 1500.0]])) == pytest.approx(1.0 * 0.6)


def test_params_range_falls_back_to_phase2_then_none():
    cfg = toy_cfg()
    assert resolve_params_range(cfg) is None
    cfg.train.params_range_phase2 = [100, 200]
    assert resolve_params_range(cfg) == [100, 200]
    cfg.search.params_range = [10, 20]
    assert resolve_params_range(cfg) == [10, 20]


# -- the search ------------------------------------------------------------------------------------
def test_every_evaluated_arch_is_legal_in_range_and_scored_per_population(tmp_path):
    ev = ToyEvaluator(SPACE)
    _strategy, _front = run_search(tmp_path, ev, params_range=[2500, 3500], tournament_size=4,
                                 generations=5)
    seen = [a for call in ev.calls for a in call]
    assert all(is_legal(a) and 2500 <= SPACE.params(a) <= 3500 for a in seen)
    assert len(ev.calls) == 6 and len(ev.calls[0]) == 12  # one vectorised call per generation
    assert all(len(set(call)) == len(call) for call in ev.calls)  # no duplicates in a population
    df = ev.archive.frame()
    assert set(df["strategy"]) == {"nsga2"} and sorted(set(df["generation"])) == list(range(6))


def test_front_approaches_the_true_two_objective_front(tmp_path):
    objectives = ["adv_err", "clean_err"]
    archs = SPACE.legal_archs()
    F = np.array([[toy_scores(SPACE, a)[o] for o in objectives] for a in archs])
    true_front = {archs[i] for i in non_dominated(F)}
    strategy, front = run_search(tmp_path, objectives=objectives, pop_size=20, n_offsprings=20,
                                 generations=30, seed=1)
    found = archs_of(front)
    assert len(found & true_front) >= 0.6 * len(true_front)  # random search: ~0.6 archs expected
    hv = strategy.hv
    assert hv(front[objectives].to_numpy(dtype=float)) >= 0.98 * hv(F)
    log = pd.read_csv(tmp_path / "generations.csv")
    # the true front (14 points) fits in the population, so elitism never loses volume
    assert np.all(np.diff(log["hv_population"]) >= -1e-12)
    # hv is that of every arch NSGA-II scored so far: it can only grow, and covers the population's
    assert np.all(np.diff(log["hv"]) >= -1e-12)
    assert np.all(log["hv_population"] <= log["hv"] + 1e-12)
    assert log["hv"].iloc[-1] == pytest.approx(hv(front[objectives].to_numpy(dtype=float)),
                                               abs=1e-12)


def test_three_objective_hypervolume_near_the_true_front(tmp_path):
    objectives = ["adv_err", "clean_err", "params"]
    archs = SPACE.legal_archs()
    F = np.array([[toy_scores(SPACE, a)[o] for o in objectives] for a in archs])
    true_front = {archs[i] for i in non_dominated(F)}
    strategy, front = run_search(tmp_path, pop_size=24, n_offsprings=24, generations=15)
    hv = Hypervolume(*objective_bounds(SPACE, objectives, None))
    assert hv(front[objectives].to_numpy(dtype=float)) >= 0.9 * hv(F)
    budget = len(strategy.archive)
    random_hits = len(true_front) * budget / len(archs)  # true-front archs random search expects
    assert len(archs_of(front) & true_front) >= 1.5 * random_hits


def test_outputs_written(tmp_path):
    strategy, front = run_search(tmp_path, generations=4)
    archive = Archive.load(tmp_path)
    assert archive == strategy.archive
    records = json.loads((tmp_path / "front.json").read_text())
    assert records["objectives"] == ["adv_err", "clean_err", "params"]
    assert [r["arch"] for r in records["front"]] == [list(a) for a in
                                                     front[GENES].itertuples(index=False)]
    assert archs_of(front) == archs_of(archive.front(["adv_err", "clean_err", "params"]))
    log = pd.read_csv(tmp_path / "generations.csv")
    assert list(log["generation"]) == [0, 1, 2, 3, 4]
    assert log["evaluations"].iloc[-1] == len(archive)
    assert np.all(log["eval_seconds"] <= log["seconds"])
    ref = json.loads((tmp_path / "reference_point.json").read_text())
    assert ref["reference_point"] == [1.1, 1.1, 1.1]
    lo, hi = SPACE.params_bounds()
    assert ref["reference_point_raw"][:2] == pytest.approx([1.1, 1.1])
    assert ref["reference_point_raw"][2] == pytest.approx(lo + 1.1 * (hi - lo))
    pop = pd.read_csv(tmp_path / "population.csv")
    assert len(pop[pop["generation"] == 4]) == 12
    table = format_front_table(front, ["adv_err", "clean_err", "params"]).splitlines()
    assert len(table) == min(len(front), 30) + 2 + (len(front) > 30)
    assert "adv err %" in table[0] and f"{100 * front['adv_err'].iloc[0]:.2f}" in table[2]


def _comparable(strategy, run_dir):
    log = pd.read_csv(run_dir / "generations.csv").drop(columns=TIME_COLUMNS)
    return strategy.archive.frame(), pd.read_csv(run_dir / "population.csv"), log


def test_resume_after_three_generations_equals_uninterrupted_run(tmp_path):
    first, _ = run_search(tmp_path / "a", generations=3, tournament_size=3)
    n_after_three = len(first.archive)
    ev = ToyEvaluator(SPACE)  # a new process: empty archive, the saved one is merged back
    resumed, front_a = run_search(tmp_path / "a", ev, generations=6, tournament_size=3)
    straight, front_b = run_search(tmp_path / "b", generations=6, tournament_size=3)
    pd.testing.assert_frame_equal(front_a, front_b)
    assert resumed.archive == straight.archive
    for x, y in zip(_comparable(resumed, tmp_path / "a"), _comparable(straight, tmp_path / "b")):
        pd.testing.assert_frame_equal(x, y)
    assert ev.stats["evaluations"] == len(straight.archive) - n_after_three


class CrashingEvaluator(ToyEvaluator):
    """Dies on its n-th call, like a killed process."""

    def __init__(self, space, crash_at: int):
        super().__init__(space)
        self.crash_at = crash_at

    def evaluate(self, archs, **meta):
        if len(self.calls) == self.crash_at:
            raise KeyboardInterrupt
        return super().evaluate(archs, **meta)


def test_killed_mid_generation_resumes_to_the_same_result(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path / "a", CrashingEvaluator(SPACE, crash_at=4), generations=6)
    resumed, front_a = run_search(tmp_path / "a", generations=6)
    straight, front_b = run_search(tmp_path / "b", generations=6)
    pd.testing.assert_frame_equal(front_a, front_b)
    assert resumed.archive == straight.archive
    for x, y in zip(_comparable(resumed, tmp_path / "a"), _comparable(straight, tmp_path / "b")):
        pd.testing.assert_frame_equal(x, y)


def test_resume_rules(tmp_path):
    _first, front = run_search(tmp_path, generations=2)
    ev = ToyEvaluator(SPACE)
    _again, front_again = run_search(tmp_path, ev, generations=2)  # already complete
    assert ev.stats["evaluations"] == 0
    pd.testing.assert_frame_equal(front, front_again)
    with pytest.raises(ValueError, match="pop_size"):
        run_search(tmp_path, pop_size=14, generations=3)
    _fresh, front_fresh = run_search(tmp_path, resume=False, generations=2, seed=1)
    _other, front_other = run_search(tmp_path / "other", generations=2, seed=1)
    pd.testing.assert_frame_equal(front_fresh, front_other)


def test_unknown_objective_and_missing_score_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="ood_aupr_err"):
        run_search(tmp_path, objectives=["adv_err", "ood_aupr_err"], generations=1)


def test_the_console_front_table_names_rows_as_arch_specs_not_ranks():
    front = pd.DataFrame({"params": [900, 500], "clean_err": [0.1, 0.3], "adv_err": [0.4, 0.5],
                          "clean_err_se": [0.03, 0.046], "adv_err_se": [0.049, 0.05],
                          "arch": ["0-1", "1-0"]})
    lines = format_front_table(front, ["adv_err", "clean_err", "params"]).splitlines()
    assert lines[0].split()[:2] == ["front", "params"] and "rank" not in lines[0]
    assert "clean err % ± SE" in lines[0] and "adv err % ± SE" in lines[0]
    assert lines[2].split()[:2] == ["front:0", "900"] and lines[3].split()[0] == "front:1"
    assert "10.00 ± 3.00" in lines[2] and "50.00 ± 5.00" in lines[3]
