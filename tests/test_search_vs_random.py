"""benchmarks/search_vs_random.py on a tiny run: equal evaluations, shards that split the work,
one training per picked arch and seed, and a rerun that adds nothing."""

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
    assert main(on_cpu("train-supernet", "quickstart", "--out", str(out), *TINY)) == 0
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

    # With one budget above every arch, each strategy's pick is its best arch by adversarial
    # error; the searches only reload, and each picked (arch, seed) is trained once.
    _call(script, monkeypatch, *common, "--budgets", "1000000", "--retrain-seeds", "2")
    lines = _lines(jobs)
    assert lines[:2] == searches
    trained = [(r["arch"], r["seed_index"]) for r in lines[2:]]
    assert all(r["kind"] == "retrain" for r in lines[2:])
    assert len(trained) == len(set(trained)) and len(trained) in (2, 4)
    assert {s for _, s in trained} == {0, 1}
    for r in lines[2:]:
        assert 0.0 <= r["clean_err"] <= 1.0 and 0.0 <= r["adv_err"] <= 1.0
    # the summary: hypervolume after every n_offsprings evaluations, ending at the recorded one
    out = json.loads((tmp_path / "search_vs_random.json").read_text())
    for r in searches:
        curve = out["hv_curves"][f"{r['strategy']}-s0"]
        assert len(curve) == 3 and curve == sorted(curve)  # a front only gains volume
        assert curve[-1] == pytest.approx(r["hv"], abs=1e-4)

    # A rerun finds everything done and appends nothing.
    _call(script, monkeypatch, *common, "--budgets", "1000000", "--retrain-seeds", "2")
    assert _lines(jobs) == lines


def test_a_budget_is_won_only_beyond_two_standard_errors_of_the_difference(script):
    def rows(strategy, arch, advs, budget=100):
        return [{"budget": budget, "strategy": strategy, "arch": arch, "params": 50,
                 "inherited_adv_err": 0.4, "adv_err": a, "clean_err": 0.2, "seed_index": s}
                for s, a in enumerate(advs)]

    # nsga2 0.30 +- 0.01 (3 seeds) vs random 0.40 +- 0.01: se of the difference 0.0082
    table = pd.DataFrame(rows("nsga2", "a", [0.29, 0.30, 0.31])
                         + rows("random", "b", [0.39, 0.40, 0.41])
                         + rows("nsga2", "a", [0.29, 0.30, 0.31], 200)
                         + rows("random", "c", [0.30, 0.35, 0.40], 200))
    summary, verdicts = script.summarise(table)
    assert summary.loc[(100, "nsga2", "a"), "seeds"] == 3
    assert summary.loc[(100, "random", "b"), "adv_err"] == pytest.approx(0.40)
    first = verdicts.loc[100]
    assert first["adv_err_diff"] == pytest.approx(-0.10)
    assert first["adv_err_diff_se"] == pytest.approx((0.01 ** 2 / 3 * 2) ** 0.5)
    assert first["adv_err_winner"] == "nsga2" and first["clean_err_winner"] == "tie"
    # 0.05 apart, but the noisier pick's seeds make that less than two standard errors (0.059)
    assert verdicts.loc[200, "adv_err_diff"] == pytest.approx(-0.05)
    assert verdicts.loc[200, "adv_err_winner"] == "tie"
    one_seed = pd.DataFrame(rows("nsga2", "a", [0.3]) + rows("random", "b", [0.5]))
    assert script.summarise(one_seed)[1].loc[100, "adv_err_winner"] == "unknown"
