"""`tamnas compare` end to end on a tiny run: the groups, the files, a rerun that trains nothing,
--no-resume, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_configs import on_cpu, set_args

from tamnas.cli import main
from tamnas.rundir import RESULT_NAMES, RunDir

TINY = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="1",
                search__bn_images="32", search__eval_images="40", retrain__epochs="1",
                retrain__batches_per_epoch="2")
ARGS = ("--budget", "params<=1000000", "--seeds", "2", "--picks", "1", "--random-archs", "2",
        "--test-images", "50")


def _trained(run) -> dict[str, float]:
    return {str(p.parent.name): p.stat().st_mtime for p in
            (RunDir(run).compare_dir / "train").glob("*/scores.json")}


def test_compare_trains_every_group_then_reuses_them(run_copy, capsys):
    assert main(on_cpu("compare", str(run_copy), *ARGS)) == 0
    out = RunDir(run_copy).compare_dir
    blob = json.loads((out / "compare.json").read_text())
    (budget,) = blob["budgets"]
    assert budget["budget"] == "params<=1000000"
    assert set(budget["groups"]) == {"front", "random archs", "random search", "plain"}
    assert budget["groups"]["front"]["archs"] == 1 and budget["groups"]["random archs"]["archs"] == 2
    # 3 comparisons at one budget: each interval at 1 - 0.05 / 3
    assert blob["n_intervals"] == 3 and blob["level"] == pytest.approx(1 - 0.05 / 3)
    table = pd.read_csv(out / "compare.csv")
    assert len(table) == 5 * 2 and set(table["seed"]) == {0, 1}
    assert table["n_test"].eq(50).all() and table["adv_acc"].between(0, 1).all()
    # random archs within 5% of their pick's params; the plain net under the budget
    pick = table[table.group == "front"]["params"].iloc[0]
    rand = table[table.group == "random archs"]["params"]
    assert (abs(rand - pick) <= 0.05 * pick).all()
    assert (table[table.group == "plain"]["params"] <= 1_000_000).all()
    # the random search spent the run's evaluations
    assert blob["random_search_evaluations"] == blob["search_evaluations"] > 0
    assert (out / "compare.md").is_file() and (out / "compare.png").is_file()
    assert "Does the search pay off?" in RunDir(run_copy).report.read_text()
    assert budget["verdict"].startswith("at params<=1000000: ")
    before = _trained(run_copy)
    assert len(before) == len(set(table["key"])) * 2
    capsys.readouterr()

    # a second call trains nothing and gives the same numbers
    assert main(on_cpu("compare", str(run_copy), *ARGS)) == 0
    assert _trained(run_copy) == before
    assert json.loads((out / "compare.json").read_text())["budgets"] == blob["budgets"]

    # --no-resume moves the comparison aside and trains afresh (one seed, to stay quick)
    fresh = [*ARGS[:3], "1", *ARGS[4:]]  # --seeds 1
    assert main(on_cpu("compare", str(run_copy), *fresh, "--no-resume")) == 0
    assert (run_copy / "previous" / "1" / "compare" / "compare.json").is_file()
    assert len(_trained(run_copy)) == len(set(table["key"]))
    assert json.loads((out / "compare.json").read_text())["seeds"] == 1


def test_the_compare_folder_is_a_run_result():
    assert "compare" in RESULT_NAMES  # train-supernet --no-resume moves it aside with the rest


@pytest.mark.parametrize("budget,message", [
    ("params=2000", "is not COST<=VALUE"),
    ("params<=10", "no front member meets params<=10"),
])
def test_bad_budgets_are_one_line(run_copy, capsys, budget, message):
    assert main(on_cpu("compare", str(run_copy), "--budget", budget)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (RunDir(run_copy).compare_dir / "train").exists()


def test_a_random_search_scored_on_other_weights_is_moved_aside_and_run_again(run_copy):
    args = ("--budget", "params<=1000000", "--seeds", "1", "--picks", "1", "--random-archs", "0",
            "--test-images", "20")
    assert main(on_cpu("compare", str(run_copy), *args)) == 0
    path = RunDir(run_copy).compare_dir / "random-search" / "archive.json"
    blob = json.loads(path.read_text())
    blob["supernet_fingerprint"] = "0000000000000000"
    path.write_text(json.dumps(blob))
    assert main(on_cpu("compare", str(run_copy), *args)) == 0
    moved = run_copy / "previous" / "1" / "compare" / "random-search" / "archive.json"
    assert json.loads(moved.read_text())["supernet_fingerprint"] == "0000000000000000"
    assert json.loads(path.read_text())["supernet_fingerprint"] != "0000000000000000"


def test_compare_at_a_latency_budget_matches_random_archs_on_predicted_latency(run_copy, capsys):
    """With the run's latency table, a latency budget picks front members under it and
    random archs within 5 % of the pick's predicted latency (the random search, scored
    before the table existed, gets predicted latency too); the plain net is the widest whose
    measured time fits, timed once and kept; with a table of another device, no plain net."""
    from tamnas.config import load_run_config
    from tamnas.latency.table import attach_latency, run_table
    from tamnas.supernets import build_space

    assert main(on_cpu("latency", "build", str(run_copy), "--repeats", "3", "--warmup", "1",
                       "--budget", "0.05")) == 0
    cfg = load_run_config(run_copy)
    space = build_space(cfg)
    attach_latency(space, run_table(cfg, RunDir(run_copy)))
    front = json.loads((run_copy / "search" / "front.json").read_text())["front"]
    limit = max(space.cost("latency", tuple(r["arch"])) for r in front) * 1.2
    args = ("--budget", f"latency<={limit:.6f}ms", "--seeds", "1", "--picks", "1",
            "--random-archs", "2", "--test-images", "30")
    assert main(on_cpu("compare", str(run_copy), *args)) == 0
    out = RunDir(run_copy).compare_dir
    table = pd.read_csv(out / "compare.csv")
    assert set(table["group"]) == {"front", "random archs", "random search", "plain"}
    space_rows = table[table.group != "plain"]
    latency = {k: space.cost("latency", tuple(int(g) for g in k.split("-")))
               for k in space_rows["key"]}
    assert np.allclose(space_rows["latency_ms"], [latency[k] for k in space_rows["key"]])
    pick = latency[table[table.group == "front"]["key"].iloc[0]]
    for key in table[table.group == "random archs"]["key"]:
        assert abs(latency[key] - pick) <= 0.05 * pick and latency[key] <= limit
    # the plain net: timed here, within the limit, its width in the key and kept for a rerun
    (label,) = json.loads((out / "plain_widths.json").read_text())
    kept = json.loads((out / "plain_widths.json").read_text())[label]
    plain = table[table.group == "plain"].iloc[0]
    assert plain["key"] == f"plain-w{kept['width']}" and plain["width"] == kept["width"]
    assert 0 < kept["latency_ms"] <= limit and plain["latency_ms"] == kept["latency_ms"]
    stamp = (out / "plain_widths.json").stat().st_mtime_ns
    assert main(on_cpu("compare", str(run_copy), *args)) == 0
    assert (out / "plain_widths.json").stat().st_mtime_ns == stamp   # kept, not re-timed
    capsys.readouterr()
    # a table of another chip: predictions still hold, but a plain net cannot be timed here
    (path,) = RunDir(run_copy).latency_tables()
    blob = json.loads(path.read_text())
    blob["device"]["name"] = "some phone's CPU"
    path.write_text(json.dumps(blob))
    assert main(on_cpu("compare", str(run_copy), *args, "--no-resume")) == 0
    assert "no plain net at latency<=" in capsys.readouterr().out
    table = pd.read_csv(out / "compare.csv")
    assert set(table["group"]) == {"front", "random archs", "random search"}


# -- two ranks --------------------------------------------------------------------------------
def _compare_on_rank(rank: int, world: int, port: int, run_dir: str) -> None:
    """One torchrun-like rank of `tamnas compare`; records which nets this rank trained."""
    import os

    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    import tamnas
    from tamnas import distributed as dist
    from tamnas.commands import compare

    assert dist.init_from_env("cpu")
    trained, train_unit = [], compare.train_unit

    def recording(session, member, seed_index, folder, *args, **kwargs):
        trained.append(folder.name)
        return train_unit(session, member, seed_index, folder, *args, **kwargs)

    compare.train_unit = recording
    try:
        cfg = tamnas.load_config(f"{run_dir}/config.toml")
        budgets = [ARGS[1]]
        blob = compare.compare(cfg, run_dir, budgets=budgets, seeds=2, picks=1, random_archs=2,
                               test_images=50, device=torch.device("cpu"), quiet=True)
        assert (blob is None) == (rank != 0)
    finally:
        dist.shutdown()
    with open(f"{run_dir}/trained-by-rank{rank}.json", "w") as f:
        json.dump(trained, f)


def test_two_ranks_share_the_trainings_and_give_the_one_rank_result(run_copy, tmp_path):
    import shutil

    from ranks import run_ranks

    two = tmp_path / "two"
    shutil.copytree(run_copy, two)
    assert main(on_cpu("compare", str(run_copy), *ARGS)) == 0
    assert run_ranks(_compare_on_rank, (str(two),), timeout=240,
                     preload=["tamnas.commands.compare", "test_compare_cli"]) == [0, 0]
    shares = [json.loads((two / f"trained-by-rank{r}.json").read_text()) for r in range(2)]
    assert all(shares) and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(_trained(run_copy))
    one_blob, two_blob = (json.loads((RunDir(d).compare_dir / "compare.json").read_text())
                          for d in (run_copy, two))
    assert two_blob["budgets"] == one_blob["budgets"]
    assert (RunDir(two).compare_dir / "compare.csv").read_text() == \
        (RunDir(run_copy).compare_dir / "compare.csv").read_text()


def test_each_search_seed_adds_the_pick_of_its_own_random_search(run_copy):
    from tamnas.search.archive import Archive

    args = ("--budget", "params<=1000000", "--seeds", "1", "--picks", "1", "--random-archs",
            "0", "--search-seeds", "2", "--test-images", "20")
    assert main(on_cpu("compare", str(run_copy), *args)) == 0
    out = RunDir(run_copy).compare_dir
    blob = json.loads((out / "compare.json").read_text())
    assert blob["search_seeds"] == 2
    assert blob["budgets"][0]["groups"]["random search"]["archs"] == 2
    table = pd.read_csv(out / "compare.csv")
    picks = table[table.group == "random search"].sort_values("search")
    assert picks["search"].tolist() == [0, 1]
    # two searches of the run's size, with different seeds, each giving its own best arch
    frames = [Archive.load(out / name).frame() for name in ("random-search", "random-search-s1")]
    assert [len(f) for f in frames] == [blob["search_evaluations"]] * 2
    assert set(frames[0]["arch"]) != set(frames[1]["arch"])
    for frame, key in zip(frames, picks["key"]):
        best = frame.sort_values(["adv_err", "clean_err", "params", "order"]).iloc[0]
        assert frame.loc[frame["arch"] == key, "adv_err"].iloc[0] == best["adv_err"]


def test_search_seeds_below_one_are_one_line(run_copy, capsys):
    assert main(on_cpu("compare", str(run_copy), "--budget", "params<=1000000",
                       "--search-seeds", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert "--search-seeds 0" in err and len(err.splitlines()) == 1
