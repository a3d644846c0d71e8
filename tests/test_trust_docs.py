"""docs/trust.md's tables are the noise model's output, not typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_trust_docs_tables_are_the_scripts_output():
    spec = importlib.util.spec_from_file_location("precision_tables",
                                                  ROOT / "benchmarks" / "precision_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    page = (ROOT / "docs" / "trust.md").read_text()
    block = page.split(tables.BEGIN, 1)[1].split(tables.END, 1)[0]
    assert block.strip() == tables.render().strip(), \
        "docs/trust.md is stale: run `python benchmarks/precision_tables.py --write`"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_compare(root: Path, errors: dict[str, list[float]], n: int, rng) -> None:
    """A compare folder: one budget whose groups hold `errors`' keys, and per key and seed a
    wrong.npz with that error rate (exactly: the first round(err * n) images wrong, shuffled)."""
    import json

    import numpy as np

    keys = list(errors)
    groups = {"front": {"keys": keys[:2]}, "random archs": {"keys": keys[2:-1]},
              "plain": {"keys": keys[-1:]}}
    (root / "compare" / "train").mkdir(parents=True)
    (root / "compare" / "compare.json").write_text(json.dumps(
        {"budgets": [{"budget": "params<=100", "groups": groups}]}))
    for k, (key, per_seed) in enumerate(errors.items()):
        for s, err in enumerate(per_seed):
            folder = root / "compare" / "train" / f"{key}-s{s}"
            folder.mkdir()
            wrong = rng.permutation(np.arange(n) < round(err * n))
            np.savez(folder / "wrong.npz", clean=wrong, adv=wrong)
            (folder / "scores.json").write_text(json.dumps({"params": 100 + k}))


def test_compare_ceiling_reads_the_space_archs_seeds_and_agreement(tmp_path):
    import numpy as np

    ceiling = _module("compare_ceiling")
    rng = np.random.default_rng(0)
    # six archs whose two seeds agree in order; a seventh with one seed; the plain net
    errors = {f"a{i}": [0.10 + 0.05 * i, 0.12 + 0.05 * i] for i in range(6)}
    errors["lone"] = [0.3]
    errors["plain-w4"] = [0.2, 0.9]
    _fake_compare(tmp_path, errors, 2000, rng)
    budgets = ceiling.space_archs(tmp_path / "compare")
    assert budgets == {"params<=100": [f"a{i}" for i in range(6)] + ["lone"]}
    st = ceiling.study(tmp_path / "compare", budgets["params<=100"], rng)
    assert st["keys"] == [f"a{i}" for i in range(6)] and st["params"] == list(range(100, 106))
    s = st["adv"]
    assert s["ceiling_seeds"] == 1.0   # the seeds order the six archs the same way
    assert np.allclose(s["errors"], [[0.10 + 0.05 * i for i in range(6)],
                                     [0.12 + 0.05 * i for i in range(6)]])
    assert s["seed_sd"] == pytest.approx(0.02 / np.sqrt(2))   # every arch's two seeds 2 points apart
    assert s["seeds_needed"] == 1 and s["ceiling_images"] > 0.9   # 2,000 images, 5-point steps
    # seeds that order the archs in opposite ways: no agreement, no number of seeds helps
    flipped = {f"b{i}": [0.10 + 0.05 * i, 0.40 - 0.05 * i] for i in range(6)}
    _fake_compare(tmp_path / "flipped", {**flipped, "plain-w4": [0.2, 0.2]}, 2000, rng)
    st = ceiling.study(tmp_path / "flipped" / "compare", list(flipped), rng)
    assert st["adv"]["ceiling_seeds"] == -1.0 and np.isinf(st["adv"]["seeds_needed"])
