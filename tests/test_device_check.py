"""benchmarks/device_check.py: the GPU check runs end to end on CPU at --tiny sizes."""

from __future__ import annotations

import json

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def device_check():
    return load_benchmark("device_check")


def _run(n_images: int, clean: float, adv: float, best_clean: float, best_adv: float) -> dict:
    return {"curve": {"clean_acc": [clean] * 12, "adv_acc": [adv] * 12,
                      "images_per_epoch": [n_images] * 12},
            "best_clean_err": best_clean, "best_adv_err": best_adv, "n_eval": 500}


def test_quickstart_comparison_flags_a_difference_beyond_binomial_noise(device_check):
    ref = _run(896, 0.80, 0.60, 0.05, 0.20)
    same = device_check.compare_quickstart(ref, ref)
    assert same["within_noise"] and all(v["z"] == 0 for v in same.values() if isinstance(v, dict))
    # 10 epochs x 896 images: 0.80 vs 0.79 is 1.66 standard errors, 0.80 vs 0.70 is 15.6
    close = device_check.compare_quickstart(_run(896, 0.79, 0.60, 0.05, 0.20), ref)
    assert close["within_noise"] and close["last10_clean_acc"]["z"] == pytest.approx(1.66, abs=0.01)
    far = device_check.compare_quickstart(_run(896, 0.70, 0.60, 0.05, 0.20), ref)
    assert not far["within_noise"]
    # front errors on 500 images: 0.20 vs 0.30 is about 3.7 standard errors, 0.20 vs 0.32 above 4
    assert device_check.compare_quickstart(_run(896, 0.8, 0.6, 0.05, 0.30), ref)["within_noise"]
    assert not device_check.compare_quickstart(_run(896, 0.8, 0.6, 0.05, 0.32), ref)["within_noise"]


def test_latency_part_runs_on_cpu_at_tiny_size(device_check, tmp_path):
    out = tmp_path / "latency.json"
    result = device_check.main(["--device", "cpu", "--tiny", "--only", "latency", "--out", str(out),
                                "--quiet"])
    rows = result["parts"]["latency"]
    assert json.loads(out.read_text()) == result
    assert [r["statistic"] for r in rows] == ["median", "min"] and rows[0]["batch"] == 1
    assert all(0 <= r["table_within10"] <= 1 and r["archs"] == 4 for r in rows)
    assert "latency, quickstart batch 1" in device_check.table(result)


def test_paper_epoch_and_evaluator_parts_run_on_cpu(device_check, tmp_path):
    out = tmp_path / "check.json"
    result = device_check.main(["--device", "cpu", "--tiny", "--only", "paper_epoch", "evaluator",
                                "--out", str(out), "--quiet"])
    assert json.loads(out.read_text()) == result
    epochs = result["parts"]["paper_epoch"]
    assert [r["precision"] for r in epochs] == ["fp32", "bf16"]
    for r in epochs:
        assert r["batches_timed"] == r["batches_per_epoch"] - 1 and not r["extrapolated"]
        assert r["epoch_seconds"] > 0 and r["peak_memory_mib"] is None
    e = result["parts"]["evaluator"]
    assert e["archs"] == 2 and e["archs_per_second"] > 0 and e["pgd_steps"] == 10
    assert "evaluator, PGD-10" in device_check.table(result)


@pytest.mark.slow
def test_the_whole_check_runs_on_cpu_and_compares_with_a_reference(device_check, tmp_path):
    """--tiny end to end (the quickstart through the CLI), then against its own result as reference."""
    first = device_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "cpu.json"),
                               "--reference", str(tmp_path / "cpu.json"), "--quiet"])
    qs = first["parts"]["quickstart"]
    assert "against_cpu" not in qs and len(qs["curve"]["clean_acc"]) == 2 and qs["front"]
    second = device_check.main(["--device", "cpu", "--tiny", "--only", "quickstart",
                                "--out", str(tmp_path / "again.json"),
                                "--reference", str(tmp_path / "cpu.json"), "--quiet"])
    cmp = second["parts"]["quickstart"]["against_cpu"]
    assert cmp["within_noise"]          # the same CPU run twice: identical, z = 0
    assert all(v["z"] == 0 for v in cmp.values() if isinstance(v, dict))
