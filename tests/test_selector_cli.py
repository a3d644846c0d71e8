"""`--arch` through the selector on a finished tiny run: each form picks the arch an
independent reading of the run's tables names, outputs are named by the arch's key and
record the rule, and a rule that fits nothing is one line that changes no file."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_configs import front_key, on_cpu, set_args, snapshot

from tamnas.cli import main

TINY = set_args(data__train_limit="192", data__val_size="64", search__pop_size="6",
                search__n_offsprings="4", search__generations="2", search__bn_images="32",
                search__eval_images="40", output__top_k="2", output__formats='["png"]')


def cli(*argv: str) -> int:
    return main(on_cpu(*argv))


def exported_genes(run, key: str) -> str:
    blob = json.loads((run / "exports" / f"{key}.json").read_text())
    return "-".join(map(str, blob["genes"])), blob.get("selector")


def test_front_and_arch_selectors_export_under_the_arch_key(run_copy):
    key = front_key(run_copy, 0)
    assert cli("export", str(run_copy), "--arch", "front:0") == 0
    assert exported_genes(run_copy, key) == (key, "front:0")
    archive = pd.read_csv(run_copy / "search" / "archive.csv")
    front = {"-".join(map(str, r["arch"])) for r in
             json.loads((run_copy / "search" / "front.json").read_text())["front"]}
    off_front = [k for k in archive["arch"] if k not in front]
    target = off_front[0] if off_front else key
    assert cli("export", str(run_copy), "--arch", f"arch:{target}") == 0
    assert exported_genes(run_copy, target) == (target, f"arch:{target}")


def test_best_under_a_budget_picks_what_a_scan_of_the_archive_picks(run_copy):
    archive = pd.read_csv(run_copy / "search" / "archive.csv")
    archive = archive[archive["strategy"] == "nsga2"]
    limit = int(archive["params"].median())
    fits = archive[archive["params"] <= limit]
    expected = fits.sort_values(["adv_err", "clean_err", "params", "order"]).iloc[0]["arch"]
    assert cli("export", str(run_copy), "--arch", f"best:adv,params<={limit}") == 0
    assert exported_genes(run_copy, expected) == (expected, f"best:adv,params<={limit}")


def test_knee_is_a_front_member(run_copy):
    front = {"-".join(map(str, r["arch"])) for r in
             json.loads((run_copy / "search" / "front.json").read_text())["front"]}
    assert cli("export", str(run_copy), "--arch", "knee") == 0
    names = {p.stem for p in (run_copy / "exports").glob("*.json")} - {"lego"}
    assert len(names) == 1 and names <= front


@pytest.mark.parametrize("spec, words", [
    ("best:adv,params<=1", "no scored arch meets params<=1"),
    ("front:999", "the front has rows 0.."),
    ("arch:1-2", "arch"),
    ("best:fast", "best: takes adv or clean"),
    ("frnt:0", "not a selector"),
])
def test_a_selector_that_fits_nothing_is_one_line_and_changes_no_file(run_copy, capsys, spec,
                                                                       words):
    before = snapshot(run_copy)
    capsys.readouterr()
    assert cli("export", str(run_copy), "--arch", spec) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert snapshot(run_copy) == before
