"""benchmarks/search_vs_random.py on a tiny run: equal evaluations, shards that split the work,
the standalone comparison through `tamnas compare`, and a rerun that adds nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from benchmark_scripts import load_benchmark
from cli_configs import on_cpu, set_args

from tamnas.cli import main

TINY = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="2",
                search__bn_images="32", search__eval_images="40", retrain__epochs="1",
                retrain__batches_per_epoch="2")


@pytest.fixture(scope="module")
def script():
    return load_benchmark("search_vs_random")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("svr") / "run"
    assert main(on_cpu("run", "quickstart", "--out", str(out), *TINY)) == 0
    return out


def _call(script, monkeypatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["search_vs_random.py", *argv])
    script.main()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shards_split_the_searches_and_the_picks_are_trained_once(script, run_dir, tmp_path,
                                                                   monkeypatch):
    jobs = tmp_path / "jobs.jsonl"
    common = [str(run_dir), "--seeds", "1", "--jobs", str(jobs)]
    # Without budgets a shard runs only its own searches: nsga2 is job 0, random job 1.
    _call(script, monkeypatch, *common, "--shard", "0/2")
    assert [(r["kind"], r["strategy"]) for r in _lines(jobs)] == [("search", "nsga2")]
    _call(script, monkeypatch, *common, "--shard", "1/2")
    searches = _lines(jobs)
    assert [r["strategy"] for r in searches] == ["nsga2", "random"]
    # Random search spends as many evaluations as NSGA-II: pop_size + generations x offspring.
    assert [r["evaluations"] for r in searches] == [4 + 2 * 4] * 2
    assert all(0.0 <= r["hv"] <= 1.0 for r in searches)

    # With one budget above every arch, the standalone comparison is `tamnas compare`'s: the
    # searches only reload, compare trains its groups once, and its budgets are copied here.
    more = ["--budgets", "1000000", "--retrain-seeds", "2", "--random-archs", "1"]
    _call(script, monkeypatch, *common, *more)
    assert _lines(jobs) == searches
    out = json.loads((tmp_path / "search_vs_random.json").read_text())
    (budget,) = out["compare"]["budgets"]
    assert budget["budget"] == "params<=1000000"
    assert set(budget["groups"]) == {"front", "random archs", "random search", "plain"}
    table = pd.read_csv(run_dir / "compare" / "compare.csv")
    assert len(table) == 4 * 2 and table["adv_acc"].between(0, 1).all()
    # the hypervolume after every n_offsprings evaluations, ending at the recorded one
    for r in searches:
        curve = out["hv_curves"][f"{r['strategy']}-s0"]
        assert len(curve) == 3 and curve == sorted(curve)  # a front only gains volume
        assert curve[-1] == pytest.approx(r["hv"], abs=1e-4)

    # A rerun finds everything done: no search is appended and no net trained again.
    trained = {p: p.stat().st_mtime for p in (run_dir / "compare" / "train").glob("*/scores.json")}
    _call(script, monkeypatch, *common, *more)
    assert _lines(jobs) == searches
    assert {p: p.stat().st_mtime for p in (run_dir / "compare" / "train").glob("*/scores.json")} \
        == trained
