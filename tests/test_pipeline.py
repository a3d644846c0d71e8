"""The whole workflow through the CLI on a tiny digits run: run, search again, export, retrain,
evaluate, MGDA, report — the outputs each stage promises, and their numbers checked."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from cli_configs import front_key, lego_key, on_cpu, set_args

import tamnas
from tamnas.analysis import robustness
from tamnas.cli import main
from tamnas.data import load_data
from tamnas.rundir import RunDir
from tamnas.search.evaluator import Evaluator
from tamnas.train import load_trained_supernet

TINY = set_args(search__pop_size="6", search__n_offsprings="6", search__generations="2",
                search__bn_images="64", search__eval_images="60", output__top_k="3",
                retrain__epochs="1", output__eval_eps="[0.025,0.05]", output__eval_steps="[2,4]")


def cli(*argv: str) -> None:
    assert main(on_cpu(*argv)) == 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    cli("run", "quickstart", "--out", str(out), *TINY)
    return out


def test_run_writes_every_stage_and_a_consistent_front(run_dir):
    run = RunDir(run_dir)
    for rel in ("config.toml", "supernet/checkpoint.pt", "supernet/train_log.csv",
                "search/archive.csv", "search/front.json", "search/generations.csv",
                "exports/lego.json", "exports/lego.pt", "report.md", "explore.html"):
        assert (run_dir / rel).stat().st_size > 0, rel
    assert list((run_dir / "figures").glob("*.png"))
    front = json.loads((run_dir / "search" / "front.json").read_text())["front"]
    archive = pd.read_csv(run_dir / "search" / "archive.csv")
    assert len(archive) >= 6 and front
    # every front member is in the archive with the same scores, and none dominates another
    scores = [tuple(r["scores"][k] for k in ("adv_err", "clean_err", "params")) for r in front]
    for i, a in enumerate(scores):
        for j, b in enumerate(scores):
            assert i == j or not (all(x <= y for x, y in zip(a, b)) and a != b)
    assert len(pd.read_csv(run.supernet_log)) == 2


def test_a_finished_search_is_skipped_and_keeps_its_outputs(run_dir):
    before = (run_dir / "search" / "archive.csv").read_text()
    cli("search", str(run_dir))
    assert (run_dir / "search" / "archive.csv").read_text() == before


def test_exported_front_member_reproduces_its_archived_clean_error(run_dir):
    """The export carries the arch's recalibrated BN statistics, so the standalone module
    scores exactly what the search archived for it on the search's validation images."""
    cli("export", str(run_dir), "--arch", "front:0")
    exported = [run_dir / "exports" / f"{front_key(run_dir, 0)}.json"]
    assert exported[0].is_file()
    record = json.loads(exported[0].read_text())
    net = tamnas.load_arch(exported[0], weights=True).eval()
    cfg = tamnas.load_config(run_dir / "config.toml")
    space, supernet = load_trained_supernet(cfg, RunDir(run_dir), torch.device("cpu"))
    evaluator = Evaluator.from_config(cfg, space, supernet, load_data(cfg.data, cfg.seed),
                                      torch.device("cpu"))
    with torch.no_grad():
        wrong = int((net(evaluator.val_x).argmax(1) != evaluator.val_y).sum())
    wrong /= len(evaluator.val_y)
    front = json.loads((run_dir / "search" / "front.json").read_text())["front"]
    assert tuple(record["genes"]) == tuple(front[0]["arch"])
    assert wrong == pytest.approx(front[0]["scores"]["clean_err"], abs=1e-9)


def test_retrain_then_evaluate_writes_logs_and_a_monotone_grid(run_dir):
    cli("retrain", str(run_dir), "--arch", "lego")
    logs = list((run_dir / "retrain").glob("*/train_log.csv"))
    assert logs and len(pd.read_csv(logs[0])) == 1
    cli("evaluate", str(run_dir), "--arch", "lego")
    grid = robustness.read_grid(run_dir / "retrain" / lego_key(run_dir) / "robustness.csv")
    assert list(grid.index) == [0.025, 0.05]
    assert {"clean", "fgsm", "pgd-2", "pgd-4"} <= set(grid.columns)
    assert robustness.sanity_checks(grid) == []
    cli("report", str(run_dir))
    report = (run_dir / "report.md").read_text()
    assert "LEGO" in report and "etrain" in report


def test_mgda_points_join_the_same_archive(run_dir):
    n_before = len(pd.read_csv(run_dir / "search" / "archive.csv"))
    nsga2_log = (run_dir / "search" / "generations.csv").read_text()
    cli("search", str(run_dir), "--strategy", "mgda", "--set", "search.mgda_epochs=1",
        "--set", "search.mgda_batches_per_epoch=2", "--set", "search.mgda_targets=[3000]")
    archive = pd.read_csv(run_dir / "search" / "archive.csv")
    assert len(archive) > n_before and "mgda" in set(archive["strategy"])
    assert len(pd.read_csv(run_dir / "search" / "mgda_log.csv")) >= 1
    assert (run_dir / "search" / "generations.csv").read_text() == nsga2_log
    # --strategy is for this command only: the run's recorded strategy stays NSGA-II
    assert tamnas.load_config(run_dir / "config.toml").search.strategy == "nsga2"


def test_all_front_retraining_writes_the_rank_correlation_table(run_dir):
    cli("retrain", str(run_dir), "--all-front", "--init", "supernet")
    summary = pd.read_csv(run_dir / "retrain" / "summary.csv")
    front = json.loads((run_dir / "search" / "front.json").read_text())["front"]
    assert len(summary) >= len(front)
    corr = json.loads((run_dir / "retrain" / "correlation.json").read_text())
    for which in ("clean", "adv"):
        pair = summary[[f"inherited_{which}_err", f"retrained_{which}_err"]]
        for key, method in (("spearman_rho", "spearman"), ("kendall_tau", "kendall")):
            expected = pair.corr(method).iloc[0, 1]
            assert corr[f"{key}_{which}"] == pytest.approx(expected, nan_ok=True)


def test_nsga2_runs_end_to_end_on_the_darts_space(tmp_path):
    out = tmp_path / "darts"
    cli("run", "quickstart", "--out", str(out), "--set", "space.name=darts",
        "--set", "space.cells=3", "--set", "space.init_channels=4", *TINY)
    front = json.loads((out / "search" / "front.json").read_text())
    assert front["front"] and (out / "exports" / "lego.json").exists()
    space = tamnas.build_space(tamnas.load_config(out / "config.toml"))
    assert space.name == "darts"
    for record in front["front"]:
        space.validate(record["arch"])
