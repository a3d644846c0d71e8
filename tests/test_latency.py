"""Latency tables: structure and coverage, exact sums as an objective, refusals, and the
build -> check -> probes -> import round trip on a tiny space (timings are never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from cli_configs import TINY_RUN, on_cpu, set_args
from toyspace import N_BLOCKS, N_LAYERS, N_RATIOS, ToyEvaluator, ToySpace

import tamnas
from tamnas.cli import main as cli
from tamnas.latency.build import build_table
from tamnas.latency.check import format_summary, loo_corrections, run_check, store_correction
from tamnas.latency.plan import make_plan, picks
from tamnas.latency.table import (
    LatencyTable,
    attach_latency,
    load_table,
    space_digest,
    with_latency,
)
from tamnas.latency.timing import TimingSettings
from tamnas.search.evaluator import measured_costs
from tamnas.search.nsga2 import NSGA2Search

TINY = set_args(search__pop_size="4", search__n_offsprings="4", search__generations="1",
                search__bn_images="64", search__eval_images="60", output__formats="[\"png\"]")
FAST = TimingSettings(repeats=3, warmup=1, budget_s=0.05)


def tiny_space(preset: str = "quickstart", **overrides):
    sets = {k: (json.loads(v) if v[0] in "[0123456789" else v) for k, v in TINY_RUN.items()}
    if preset != "quickstart":
        sets = {k: v for k, v in sets.items() if not k.startswith("space.")}
    sets.update(overrides)
    return tamnas.build_space(tamnas.load_config(preset, sets))


def synthetic_table(space, rng: np.random.Generator, scale: float = 1.0, offset: float = 0.0
                    ) -> LatencyTable:
    """A table with random unit times in the space's plan, built without timing anything."""
    plan = make_plan(space)
    entries = {}
    for sig in plan.units:
        m = float(rng.uniform(0.01, 1.0))
        entries[sig] = {"median": m, "p90": 1.2 * m, "min": 0.9 * m, "count": 100}
    config = space.config()
    return LatencyTable(device={"device": "cpu", "name": "synthetic", "threads": 1,
                                "backend": "torch"},
                        space={"name": space.name, "config": config, "digest": space_digest(config)},
                        batch=1, entries=entries, fixed=list(plan.fixed), decisions=plan.decisions,
                        correction={"kind": "scale", "offset_ms": offset, "scale": scale})


def independent_sum(d: dict, chosen: list[list[str]]) -> float:
    """latency(arch) from a table's JSON, as its docs state it: scale * fsum(fixed) + offset +
    the decisions' scale * fsum(cell)."""
    k, c = d["correction"]["scale"], d["correction"]["offset_ms"]
    val = d["predict_with"]
    fixed = math.fsum([k * math.fsum(d["entries"][s][val] for s in d["fixed"]), c])
    return math.fsum([fixed, *(k * math.fsum(d["entries"][s][val] for s in cell) for cell in chosen)])


# -- structure and coverage ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["quickstart", "quickstart-darts"])
def test_a_built_table_covers_every_option_of_the_space_and_round_trips_through_json(preset, tmp_path):
    space = tiny_space(preset)
    table = build_table(space, FAST, say=lambda m: None)
    shapes = [tuple(np.shape(t)) for t in space.cost_table("params")]
    assert [t.shape for t in table.tables()] == shapes
    used = set(table.fixed) | {s for d in table.decisions for s in np.ravel(
        np.asarray(d, dtype=object)).tolist() for s in (s if isinstance(s, list) else [s])}
    assert used == set(table.entries)
    for e in table.entries.values():
        assert 1 <= e["count"] <= FAST.repeats and 0 <= e["min"] <= e["median"] <= e["p90"]
    for key in ("device", "name", "threads", "torch", "dtype", "backend"):
        assert key in table.device
    assert table.device["threads"] == 1 and table.settings["repeats"] == 3
    table.save(tmp_path / "t.json")
    again = load_table(tmp_path / "t.json")
    assert again.to_dict() == table.to_dict()


def test_a_darts_option_adds_its_op_once_per_cell_sharing_the_gene_and_none_adds_nothing():
    space = tiny_space("quickstart-darts")
    plan = make_plan(space)
    lay = space.layout
    for g in range(len(space.genes)):
        ctype = g // lay.n_edges
        n_cells = sum(spec.ctype == ctype for spec in lay.cells)
        assert plan.decisions[g][0] == []
        assert all(len(cell) == n_cells for cell in plan.decisions[g][1:])


# -- the objective is the table's sum, exactly --------------------------------------------------
def toy_table(rng) -> dict:
    entries, decisions = {}, []
    for layer in range(N_LAYERS):
        grid = []
        for b in range(N_BLOCKS):
            row = []
            for r in range(N_RATIOS):
                sig = f"l{layer}b{b}r{r}"
                entries[sig] = {"median": float(rng.uniform(0.01, 2)), "p90": 3.0, "count": 9}
                row.append([sig])
            grid.append(row)
        decisions.append(grid)
    entries["stem"] = {"median": 0.123456789, "p90": 0.2, "count": 9}
    return {"format": "tamnas-latency-table/1", "device": {"device": "cpu", "name": "toy"},
            "space": {"name": "toy", "config": {"name": "toy"},
                      "digest": space_digest({"name": "toy"})},
            "batch": 1, "predict_with": "median",
            "correction": {"kind": "constant", "offset_ms": 0.0371, "scale": 1.0},
            "fixed": ["stem"], "decisions": decisions, "entries": entries}


def test_toy_latency_equals_the_table_sum_for_every_arch_and_is_what_nsga2_minimises(tmp_path):
    space = ToySpace()
    d = toy_table(np.random.default_rng(3))
    attach_latency(space, LatencyTable.from_dict(d))
    for arch in space.legal_archs():
        chosen = [d["decisions"][layer][arch[2 * layer]][arch[2 * layer + 1]]
                  for layer in range(N_LAYERS)]
        assert space.cost("latency", arch) == independent_sum(d, chosen)

    class LatencyEvaluator(ToyEvaluator):
        def evaluate(self, archs, **meta):
            scores = super().evaluate(archs, **meta)
            self.archive.set_cost("latency", lambda a: space.cost("latency", a))
            return [{**s, **measured_costs(self.space, a)} for a, s in zip(archs, scores)]

    cfg = tamnas.load_config("quickstart", {"search.pop_size": 8, "search.n_offsprings": 8,
                                            "search.generations": 2,
                                            "search.objectives": ["adv_err", "latency"]})
    strategy = NSGA2Search(space, LatencyEvaluator(space), cfg, tmp_path, quiet=True)
    strategy.run()
    pop = strategy.algorithm.pop
    for x, f in zip(pop.get("X"), pop.get("F")):
        assert f[1] == space.cost("latency", tuple(int(v) for v in x))


def test_quickstart_latency_equals_the_table_sum_for_1000_sampled_archs_and_relaxes_exactly():
    space = tamnas.build_space(tamnas.load_config("quickstart"))
    table = synthetic_table(space, np.random.default_rng(0), scale=1.0 + 1 / 7, offset=0.013)
    d = table.to_dict()
    attach_latency(space, table)
    plan = make_plan(space)
    rng = np.random.default_rng(1)
    for _ in range(1000):
        arch = space.sample(rng)
        assert space.cost("latency", arch) == independent_sum(d, picks(plan, space, arch))
    # the gradient strategies' route: one-hot probabilities give the cost, and it has a gradient
    arch = space.sample(rng)
    logits = [torch.zeros(g.choices, dtype=torch.float64, requires_grad=True) for g in space.genes]
    one_hot = [torch.nn.functional.one_hot(torch.tensor(v), g.choices).double()
               for v, g in zip(arch, space.genes)]
    exp = space.expected_cost("latency", one_hot)
    assert float(exp) == pytest.approx(space.cost("latency", arch), rel=1e-12)
    soft = space.expected_cost("latency", [torch.softmax(z, 0) for z in logits])
    soft.backward()
    assert all(z.grad is not None and torch.isfinite(z.grad).all() for z in logits)
    assert any(float(z.grad.abs().sum()) > 0 for z in logits)
    lo, hi = space.cost_bounds("latency")
    values = [space.cost("latency", space.sample(rng)) for _ in range(200)]
    assert lo <= min(values) and max(values) <= hi


def test_with_latency_adds_the_predicted_column_for_a_selector():
    space = tiny_space()
    table = synthetic_table(space, np.random.default_rng(2))
    archs = [space.sample(np.random.default_rng(i)) for i in range(5)]
    df = pd.DataFrame([{**{f"g{i}": v for i, v in enumerate(a)}, "adv_err": 0.1} for a in archs])
    out = with_latency(space, df, table)
    assert list(out["latency"]) == [space.cost("latency", a) for a in archs]
    assert "latency" not in df


# -- refusals -------------------------------------------------------------------------------------
def test_a_table_of_another_space_is_refused_in_one_line():
    table = synthetic_table(tiny_space(), np.random.default_rng(0))
    wider = tiny_space(**{"space.stage_channels": [8, 24]})
    with pytest.raises(ValueError, match="another space") as err:
        attach_latency(wider, table)
    assert "\n" not in str(err.value) and "stage_channels" in str(err.value)
    darts = tiny_space("quickstart-darts")
    with pytest.raises(ValueError, match="another space"):
        attach_latency(darts, table)


def test_latency_without_a_table_is_refused_in_one_line():
    space = tiny_space()
    with pytest.raises(ValueError, match="no latency table is attached"):
        space.cost("latency", space.sample(np.random.default_rng(0)))
    assert not space.has_cost("latency")


def test_a_table_of_another_device_is_refused_by_the_check_naming_both(tmp_path, capsys):
    space = tiny_space()
    table = synthetic_table(space, np.random.default_rng(0))
    table.device = {**table.device, "name": "Cortex-A72 (board)"}
    with pytest.raises(ValueError, match="Cortex-A72.*but this machine is"):
        run_check(space, table, n_archs=4)
    table.save(tmp_path / "board.json")
    assert cli(["latency", "check", str(tmp_path / "board.json"), "--archs", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Cortex-A72" in err


# -- the correction ---------------------------------------------------------------------------
def test_leave_one_out_corrections_match_a_refit_without_each_net():
    rng = np.random.default_rng(5)
    raw = rng.uniform(1, 3, 12)
    meas = 1.3 * raw + rng.normal(0, 0.05, 12)
    fits = loo_corrections(raw, meas)
    for i in range(12):
        keep = np.arange(12) != i
        c = np.mean(meas[keep] - raw[keep])
        k = np.linalg.lstsq(raw[keep, None], meas[keep], rcond=None)[0][0]
        assert fits["constant"][0][i] == pytest.approx(raw[i] + c, rel=1e-12)
        assert fits["scale"][0][i] == pytest.approx(k * raw[i], rel=1e-12)
    assert fits["scale"][1]["scale"] == pytest.approx(
        np.linalg.lstsq(raw[:, None], meas, rcond=None)[0][0], rel=1e-12)


# -- build -> check -> probes -> import, on the CPU in seconds -------------------------------------
def test_build_check_probes_and_import_round_trip(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    table_file = tmp_path / "t.json"
    assert cli(["latency", "build", "--preset", "quickstart", *TINY, "--out", str(table_file),
                "--repeats", "3", "--warmup", "1", "--budget", "0.05", "--quiet"]) == 0
    table = load_table(table_file)
    space = tiny_space()
    result = run_check(space, table, n_archs=5, say=lambda m: None)
    s = result.summary
    assert len(result.frame) == 5 and s["n_archs"] == 5
    for name in ("table", "table_corrected", "params", "constant"):
        assert set(s[name]) == {"rmse_ms", "rmse_pct", "within10", "tau"}
        assert s[name]["rmse_ms"] >= 0 and 0 <= s[name]["within10"] <= 1
    # the constant predictor is the mean measured time; its RMSE is their standard deviation
    assert s["constant"]["rmse_ms"] == pytest.approx(float(np.std(result.frame["measured_ms"])))
    assert "repeat ceiling" in format_summary(s)
    if store_correction(table, result):
        attach_latency(space, table)
        k, c = table.scale, table.offset_ms
        arch = space.sample(np.random.default_rng(0))
        raw = LatencyTable.from_dict({**table.to_dict(), "correction": {"kind": "none"}})
        assert space.cost("latency", arch) == independent_sum(
            table.to_dict(), picks(make_plan(space), space, arch))
        assert (k, c) != (1.0, 0.0) and raw.scale == 1.0
    assert cli(["latency", "check", str(table_file), "--archs", "4", "--quiet"]) == 0
    check_dir = next(tmp_path.glob("check-*"))
    assert (check_dir / "predicted_vs_measured.png").exists()
    assert len(pd.read_csv(check_dir / "check.csv")) == 4
    probes = tmp_path / "probes"
    assert cli(["latency", "probes", "--preset", "quickstart", *TINY, "--out", str(probes),
                "--quiet"]) == 0
    manifest = json.loads((probes / "manifest.json").read_text())
    assert {p["signature"] for p in manifest["probes"]} == set(table.entries)
    subprocess.run([sys.executable, "time_probes.py", "--repeats", "2", "--warmup", "0",
                    "--budget", "0.01"], cwd=probes, check=True, capture_output=True)
    imported = tmp_path / "imported.json"
    assert cli(["latency", "import", str(probes / "result.json"), "--preset", "quickstart", *TINY,
                "--out", str(imported), "--quiet"]) == 0
    board = load_table(imported)
    assert board.device["backend"] == "onnxruntime" and set(board.entries) == set(table.entries)
    attach_latency(space, board)   # covers the space
    capsys.readouterr()


# -- a run: the latency objective in a search, with its table recorded ------------------------------
def test_a_run_searches_latency_and_records_the_table_with_each_row(finished, tmp_path):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(finished, run)
    assert cli(["latency", "build", str(run), "--repeats", "3", "--warmup", "0", "--budget",
                "0.05", "--quiet"]) == 0
    tables = sorted((run / "latency").glob("*.json"))
    assert len(tables) == 1
    d = json.loads(tables[0].read_text())
    assert cli(on_cpu("search", str(run), "--no-resume", "--set",
                      'search.objectives=["adv_err","clean_err","latency"]')) == 0
    archive = json.loads((run / "search" / "archive.json").read_text())
    space = tiny_space()
    plan = make_plan(space)
    table = load_table(tables[0])
    assert archive["entries"]
    for e in archive["entries"]:
        arch = tuple(e["arch"])
        assert e["scores"]["latency"] == independent_sum(d, picks(plan, space, arch))
        assert e["meta"]["latency_table_digest"] == table.digest()


def test_a_search_with_a_table_of_another_space_is_refused_in_one_line(finished, tmp_path, capsys):
    other = synthetic_table(tiny_space(**{"space.stage_channels": [8, 24]}), np.random.default_rng(0))
    other.save(tmp_path / "other.json")
    before = sorted(p.name for p in finished.rglob("*"))
    assert cli(on_cpu("search", str(finished), "--set",
                      'search.objectives=["adv_err","latency"]', "--set",
                      f"search.latency_table={tmp_path / 'other.json'}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another space" in err
    assert sorted(p.name for p in finished.rglob("*")) == before


def test_a_latency_objective_without_a_table_says_how_to_build_one(finished, capsys):
    assert cli(on_cpu("search", str(finished), "--set",
                      'search.objectives=["adv_err","latency"]')) == 2
    assert "tamnas latency build" in capsys.readouterr().err


def test_a_latency_budget_chooses_among_the_runs_archs_by_the_tables_prediction(finished, tmp_path):
    import shutil

    from tamnas.config import load_run_config
    from tamnas.rundir import RunDir
    from tamnas.search.archive import arch_key
    from tamnas.session import Session

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    space = tiny_space()
    table = synthetic_table(space, np.random.default_rng(4))
    (run / "latency").mkdir()
    table.save(run / "latency" / "synthetic.json")
    session = Session.open(load_run_config(run / "config.toml"), RunDir(run), torch.device("cpu"),
                           quiet=True)
    attach_latency(space, table)    # an independent copy of the run's space, same table
    rows = session.candidates()
    assert list(rows["latency"]) == [space.cost("latency", tuple(int(r[f"g{i}"])
                                                                   for i in range(space.n_genes)))
                                     for _, r in rows.iterrows()]
    budget = float(np.median(rows["latency"]))
    arch, name = session.resolve_arch(f"best:adv,latency<={budget}ms")
    fits = rows[rows["latency"] <= budget]
    assert space.cost("latency", arch) <= budget and name == arch_key(arch)
    assert float(rows.loc[rows["arch"] == arch_key(arch), "adv_err"].iloc[0]) == fits["adv_err"].min()


def test_the_cpu_clock_times_one_thread_and_is_recorded_for_the_check():
    with pytest.raises(ValueError, match="one thread"):
        TimingSettings(clock="cpu", threads=2).check()
    space = tiny_space()
    table = build_table(space, TimingSettings(clock="cpu", repeats=3, warmup=0, budget_s=0.05),
                        say=lambda m: None)
    assert table.settings["clock"] == "cpu"
    assert all(e["median"] > 0 for e in table.entries.values())
    from tamnas.latency.check import settings_of

    assert settings_of(table).clock == "cpu"
