"""Run-directory semantics of the commands: a one-off --set stays one-off and is recorded with
the outputs it made; a refused command changes no file; a retrain keeps its recipe."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_configs import front_key, on_cpu, set_args, snapshot

import tamnas
from tamnas.cli import main

TINY = set_args(data__train_limit="192", data__val_size="64", search__pop_size="4",
                search__n_offsprings="4", search__generations="1", search__bn_images="32",
                search__eval_images="40", output__top_k="2", output__formats='["png"]',
                retrain__epochs="1", retrain__batches_per_epoch="2")


def cli(*argv: str) -> int:
    return main(on_cpu(*argv))


def test_a_one_off_set_on_retrain_leaves_the_run_config_and_is_kept_with_the_retrain(run_copy):
    config = (run_copy / "config.toml").read_bytes()
    assert cli("retrain", str(run_copy), "--arch", "front:0", "--set", "retrain.epochs=2",
               "--set", "train.lr=0.2") == 0
    assert (run_copy / "config.toml").read_bytes() == config     # the supernet's lr stays 0.1
    front0 = front_key(run_copy)
    recipe = json.loads((run_copy / "retrain" / front0 / "recipe.json").read_text())
    assert recipe["retrain"]["epochs"] == 2 and recipe["init"] == "scratch"
    assert "lr" not in recipe["train"]                          # a supernet-only key
    summary = pd.read_csv(run_copy / "retrain" / "summary.csv")
    assert list(summary["epochs"]) == [2] and summary["recipe"].str.len().tolist() == [8]
    # a later plain retrain of another arch uses the run's recipe, not the earlier one-off
    assert cli("retrain", str(run_copy), "--arch", "front:1") == 0
    summary = pd.read_csv(run_copy / "retrain" / "summary.csv").set_index("name")
    front1 = front_key(run_copy, 1)
    assert summary.loc[front1, "epochs"] == 1 and summary.loc[front0, "epochs"] == 2
    assert summary.loc[front1, "recipe"] != summary.loc[front0, "recipe"]
    assert summary.loc[front1, "selector"] == "front:1"
    assert summary.loc[front0, "selector"] == "front:0"


def test_a_retrain_writes_its_errors_per_class_from_the_same_attack_as_its_summary(run_copy):
    from tamnas.files import file_digest

    assert cli("retrain", str(run_copy), "--arch", "front:0") == 0
    out = run_copy / "retrain" / front_key(run_copy)
    row = pd.read_csv(run_copy / "retrain" / "summary.csv").iloc[0]
    per_class = pd.read_csv(out / "per_class.csv")
    assert per_class["images"].sum() == row["n_test"]
    for which in ("clean_err", "adv_err"):  # class errors weighted by images: the whole's
        wrong = (per_class[which] * per_class["images"]).sum()
        assert wrong == pytest.approx(row[f"retrained_{which}"] * row["n_test"], abs=1e-6)
    assert set(per_class["weights"]) == {f"retrained:{file_digest(out / 'model.pt')}"}
    assert cli("report", str(run_copy), "--quiet") == 0
    errors = (run_copy / "report.md").read_text().split("## Errors per class", 1)[1]
    assert f"`{front_key(run_copy)}` (standalone weights):" in errors.split("\n## ", 1)[0]


def test_resuming_a_retrain_under_another_recipe_is_refused_unless_no_resume(run_copy, capsys):
    assert cli("retrain", str(run_copy), "--arch", "front:0") == 0
    before = snapshot(run_copy)
    capsys.readouterr()
    assert cli("retrain", str(run_copy), "--arch", "front:0", "--set", "retrain.epochs=3") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another recipe (different retrain)" in err, err
    assert "--no-resume" in err and snapshot(run_copy) == before
    assert cli("retrain", str(run_copy), "--arch", "front:0", "--set", "retrain.epochs=3",
               "--no-resume") == 0
    assert len(pd.read_csv(run_copy / "retrain" / front_key(run_copy) / "train_log.csv")) == 3
    kept = run_copy / "previous" / "1" / "retrain" / front_key(run_copy)
    assert json.loads((kept / "recipe.json").read_text())["retrain"]["epochs"] == 1


def test_search_settings_that_made_the_results_are_recorded_the_rest_stays_one_off(run_copy):
    assert cli("search", str(run_copy), "--set", "search.generations=2",
               "--set", "data.eval_batch_size=16") == 0
    cfg = tamnas.load_config(run_copy / "config.toml")
    assert cfg.search.generations == 2               # what produced search/
    assert cfg.data.eval_batch_size != 16            # one-off
    call = tamnas.load_config(run_copy / "search" / "config.toml")
    assert call.search.generations == 2 and call.data.eval_batch_size == 16
    assert len(pd.read_csv(run_copy / "search" / "generations.csv")) == 3


@pytest.mark.parametrize("argv", [
    ["search", "--set", 'search.objectives=["adv_err","clean_err","flops","speed"]'],
    ["search", "--set", "search.params_range=[1,5]"],
    ["retrain", "--arch", "front:99", "--set", "retrain.epochs=7"],
    ["lego", "--top", "0"],
])
def test_a_refused_command_changes_no_file(argv, finished, capsys):
    before = snapshot(finished)
    assert cli(argv[0], str(finished), *argv[1:]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert snapshot(finished) == before


def test_evaluate_keeps_every_setting_and_a_cell_alone_equals_the_grid(run_copy):
    from tamnas.analysis import robustness

    grid = ["--set", "output.eval_eps=[0.025,0.05]", "--set", "output.eval_steps=[2,3]",
            "--set", "attack.eps=0.05", "--set", "attack.steps=3"]
    assert cli("evaluate", str(run_copy), "--arch", "front:0", *grid) == 0
    path = run_copy / "retrain" / front_key(run_copy) / "robustness.csv"
    full = robustness.read_grid(path)
    assert full.shape == (2, 4)
    assert cli("evaluate", str(run_copy), "--arch", "front:0", "--no-grid", *grid) == 0
    after = robustness.read_grid(path)
    pd.testing.assert_frame_equal(after, full)    # the one-cell call kept the grid, same number


def _front_and_lego(run_dir):
    import torch

    from tamnas.rundir import RunDir
    from tamnas.session import Session

    cfg = tamnas.load_config(run_dir / "config.toml")
    session = Session.open(cfg, RunDir(run_dir), torch.device("cpu"), quiet=True)
    return list(session.front()["arch"]), session.resolve_arch("front:0")[0], session.lego()


def test_random_search_joins_the_archive_on_the_same_budget_and_stays_one_off(run_copy):
    n_before = len(pd.read_csv(run_copy / "search" / "archive.csv"))
    front_json = (run_copy / "search" / "front.json").read_text()
    before = _front_and_lego(run_copy)
    assert cli("search", str(run_copy), "--strategy", "random") == 0
    archive = pd.read_csv(run_copy / "search" / "archive.csv")
    log = pd.read_csv(run_copy / "search" / "random_log.csv")
    assert len(log) == 2                       # generation 0 and one more, as NSGA-II's budget
    assert "random" in set(archive["strategy"]) and len(archive) > n_before
    assert log["hv"].is_monotonic_increasing
    assert tamnas.load_config(run_copy / "config.toml").search.strategy == "nsga2"
    # its own front: NSGA-II's front table, front:K and LEGO net stay as they were
    assert _front_and_lego(run_copy) == before
    assert (run_copy / "search" / "front.json").read_text() == front_json
    assert json.loads((run_copy / "search" / "random_front.json").read_text())["strategy"] \
        == "random"
