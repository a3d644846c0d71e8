"""One archive, one front per strategy: a random search in a run never moves NSGA-II's front,
`front:K` or LEGO net; every visit is recorded (and read back from older archives); the hv
column is the same quantity for every strategy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pymoo.indicators.hv import HV
from toyspace import ToyEvaluator, ToySpace, toy_scores

import tamnas
from tamnas.analysis import stats
from tamnas.analysis.lego import lego_arch
from tamnas.search.archive import Archive, front_table, visited_by
from tamnas.search.hypervolume import REF_MARGIN, objective_bounds
from tamnas.search.nsga2 import NSGA2Search
from tamnas.search.random import RandomSearch

SPACE = ToySpace()
OBJECTIVES = ["adv_err", "clean_err", "params"]


def toy_cfg(pop: int, generations: int):
    return tamnas.load_config("quickstart", {
        "search.pop_size": pop, "search.n_offsprings": pop, "search.generations": generations,
        "search.params_range": [0, 0], "train.params_range_phase2": [0, 0],
        "search.objectives": OBJECTIVES, "seed": 0})


def lego_of(front: pd.DataFrame):
    return lego_arch(SPACE, stats.top_k(front, 3, by="adv_err"))


def test_a_random_search_changes_neither_front_k_nor_lego_of_the_nsga2_front(tmp_path):
    evaluator = ToyEvaluator(SPACE)
    NSGA2Search(SPACE, evaluator, toy_cfg(6, 1), tmp_path, quiet=True).run()
    nsga2_front = front_table(evaluator.archive, OBJECTIVES, strategy="nsga2")
    front_json = (tmp_path / "front.json").read_text()
    lego = lego_of(nsga2_front)

    random = RandomSearch(SPACE, evaluator, toy_cfg(40, 4), tmp_path, quiet=True)
    random.run_strategy = "nsga2"      # a one-off random search in an NSGA-II run
    random_front = random.run()
    after = front_table(evaluator.archive, OBJECTIVES, strategy="nsga2")
    # front:K is row K: the same archs in the same order, and the same LEGO net
    assert list(after["arch"]) == list(nsga2_front["arch"])
    assert lego_of(after) == lego
    assert (tmp_path / "front.json").read_text() == front_json
    written = json.loads((tmp_path / "random_front.json").read_text())
    assert written["strategy"] == "random" and len(written["front"]) == len(random_front)
    # ...although the random archs would have changed a front over the whole archive
    mixed = front_table(evaluator.archive, OBJECTIVES)
    assert list(mixed["arch"]) != list(nsga2_front["arch"])
    assert visited_by(random_front, "random").all()
    assert not set(random_front["arch"]) <= set(nsga2_front["arch"])


def test_every_visit_is_recorded_and_saved_and_older_archives_read_back(tmp_path):
    archive = Archive(SPACE.name, SPACE.n_genes, "w0")
    rng = np.random.default_rng(0)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    assert archive.add(a, toy_scores(SPACE, a), strategy="nsga2", generation=0)
    assert not archive.add(a, toy_scores(SPACE, a), strategy="random", generation=3)
    archive.add(b, toy_scores(SPACE, b), strategy="random", generation=0)
    archive.visit(b, "random")                       # a second visit adds nothing
    assert archive.strategies(a) == ["nsga2", "random"] and archive.strategies(b) == ["random"]
    assert archive.meta(a)["strategy"] == "nsga2" and archive.meta(a)["generation"] == 0
    assert list(archive.frame()["strategies"]) == ["nsga2,random", "random"]
    archive.save(tmp_path)
    assert Archive.load(tmp_path) == archive
    csv = pd.read_csv(tmp_path / "archive.csv")
    assert list(visited_by(csv, "nsga2")) == [True, False]
    # an archive written before visits were recorded: its first scorer is its one strategy
    blob = json.loads((tmp_path / "archive.json").read_text())
    for entry in blob["entries"]:
        entry.pop("strategies")
    old = Archive.from_dict(blob)
    assert old.strategies(a) == ["nsga2"] and old.strategies(b) == ["random"]
    merged = Archive(SPACE.name, SPACE.n_genes, "w0")
    merged.update(archive)
    assert merged.strategies(a) == ["nsga2", "random"]
    with pytest.raises(ValueError, match="never scored"):
        archive.visit(SPACE.sample(rng), "nsga2")


def test_an_archive_without_any_strategy_has_one_front_of_everything():
    archive = Archive(SPACE.name, SPACE.n_genes)
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = SPACE.sample(rng)
        archive.add(arch, toy_scores(SPACE, arch))
    assert list(front_table(archive, OBJECTIVES, strategy="nsga2")["arch"]) == \
        list(front_table(archive, OBJECTIVES)["arch"])


def test_two_strategies_given_the_same_scored_set_get_the_same_hv(tmp_path):
    evaluator = ToyEvaluator(SPACE)
    nsga2 = NSGA2Search(SPACE, evaluator, toy_cfg(8, 2), tmp_path, quiet=True)
    random = RandomSearch(SPACE, evaluator, toy_cfg(8, 2), tmp_path, quiet=True)
    rng = np.random.default_rng(2)
    archs = list(dict.fromkeys(SPACE.sample(rng) for _ in range(30)))
    evaluator.evaluate(archs, strategy="nsga2")
    evaluator.evaluate(archs, strategy="random")     # all cache hits: visits only
    assert np.array_equal(nsga2.hv.low, random.hv.low)
    assert np.array_equal(nsga2.hv.high, random.hv.high)
    assert np.array_equal(nsga2.hv.ref, random.hv.ref)
    # independently: pymoo's HV of the non-dominated normalised points against REF_MARGIN
    low, high = objective_bounds(SPACE, OBJECTIVES, None, seed=0)
    F = np.array([[toy_scores(SPACE, a)[o] for o in OBJECTIVES] for a in archs], dtype=float)
    expected = HV(ref_point=np.full(3, REF_MARGIN))((F - low) / (high - low))
    assert nsga2.front_hv() == pytest.approx(expected, rel=1e-12)
    assert random.front_hv() == pytest.approx(expected, rel=1e-12)
    # a strategy that met only part of the set has its own, smaller or equal, volume
    evaluator.evaluate(archs[:5], strategy="mgda")
    part = front_table(evaluator.archive, OBJECTIVES, strategy="mgda")
    assert len(part) <= 5 and nsga2.hv(part[OBJECTIVES].to_numpy(float)) <= expected + 1e-12
    assert nsga2.front_hv() == pytest.approx(expected, rel=1e-12)   # unchanged by mgda
