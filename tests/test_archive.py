"""The archive: exact persistence, no duplicates, fronts matching a brute-force dominance check."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from toyspace import ToySpace, toy_scores

from tamnas.search.archive import (
    ANY_WEIGHTS,
    Archive,
    arch_key,
    front_records,
    mixed_weights,
    non_dominated,
    parse_key,
)

OBJECTIVES = ["adv_err", "clean_err", "params", "flops"]


def brute_force_front(F: np.ndarray) -> set[int]:
    """Rows that no other row weakly beats everywhere and strictly somewhere."""
    keep = set()
    for i in range(len(F)):
        if not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(len(F)) if j != i):
            keep.add(i)
    return keep


def random_archive(n: int = 60, seed: int = 0) -> Archive:
    """Coarse random scores, so that ties and partial ties are common."""
    rng = np.random.default_rng(seed)
    archive = Archive("toy", 5)
    while len(archive) < n:
        arch = tuple(int(v) for v in rng.integers(0, 4, size=5))
        scores = {"adv_err": float(rng.integers(0, 6)) / 10,
                  "clean_err": float(rng.integers(0, 6)) / 10,
                  "params": int(rng.integers(1, 6)) * 1000,
                  "flops": int(rng.integers(1, 4)) * 10**6}
        archive.add(arch, scores, strategy="test", generation=int(len(archive) // 10))
    return archive


def test_save_load_round_trip_is_exact(tmp_path):
    archive = random_archive()
    # a float that only survives an exact (repr) round trip, and a score only some rows have
    first = archive.archs()[0]
    archive._scores[(first, None)]["clean_err"] = 0.1 + 0.2
    archive.add((9, 9, 9, 9, 9), {"adv_err": 0.5, "clean_err": 1 / 3, "params": 7, "flops": 8,
                                  "ood_aupr_err": 0.25}, strategy="mgda", generation=None)
    archive.save(tmp_path)
    loaded = Archive.load(tmp_path)
    assert loaded == archive
    assert loaded.get(first)["clean_err"] == 0.1 + 0.2
    assert loaded.archs() == archive.archs()
    pd.testing.assert_frame_equal(loaded.frame(), archive.frame())
    csv = pd.read_csv(tmp_path / "archive.csv")
    assert list(csv["arch"]) == [arch_key(a) for a in archive.archs()]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_duplicate_add_keeps_first_scores_and_size():
    archive = Archive("toy", 3)
    assert archive.add((1, 2, 3), {"adv_err": 0.4, "clean_err": 0.2}, generation=0)
    assert not archive.add([1, 2, 3], {"adv_err": 0.9, "clean_err": 0.9}, generation=5)
    assert len(archive) == 1 and (1, 2, 3) in archive and (np.int64(1), 2, 3) in archive
    assert archive.get((1, 2, 3)) == {"adv_err": 0.4, "clean_err": 0.2}
    assert archive.meta((1, 2, 3)) == {"order": 0, "generation": 0}
    assert archive.get((3, 2, 1)) is None and (3, 2, 1) not in archive


def test_add_rejects_wrong_length_and_numpy_values_become_plain():
    archive = Archive("toy", 3)
    with pytest.raises(ValueError, match="expected 3"):
        archive.add((1, 2), {"adv_err": 0.1})
    archive.add(np.array([0, 1, 2]), {"adv_err": np.float32(0.5), "params": np.int64(12)})
    s = archive.get((0, 1, 2))
    assert type(s["adv_err"]) is float and type(s["params"]) is int


def test_frame_columns_and_types():
    archive = random_archive(12)
    df = archive.frame()
    assert list(df.columns[:6]) == ["arch", "g0", "g1", "g2", "g3", "g4"]
    assert all(df[f"g{i}"].dtype == np.int64 for i in range(5))
    assert {"adv_err", "clean_err", "params", "flops", "strategy", "generation", "order"} <= set(df)
    assert list(df["order"]) == list(range(12))
    for _, row in df.iterrows():
        assert parse_key(row["arch"]) == tuple(int(row[f"g{i}"]) for i in range(5))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_front_matches_brute_force_for_every_objective_subset(k):
    archive = random_archive(60, seed=k)
    df = archive.frame()
    for objectives in itertools.combinations(OBJECTIVES, k):
        front = archive.front(list(objectives))
        expected = brute_force_front(df[list(objectives)].to_numpy(dtype=float))
        assert set(front.index) == expected, objectives


def test_non_dominated_handles_ties_and_empty_input():
    F = np.array([[1, 2], [1, 2], [2, 1], [2, 2], [0, 5]], dtype=float)
    assert list(non_dominated(F)) == [0, 1, 2, 4]
    assert len(non_dominated(np.zeros((0, 3)))) == 0


def test_front_skips_rows_without_the_objective_and_checks_names():
    archive = Archive("toy", 2)
    archive.add((0, 0), {"adv_err": 0.5, "clean_err": 0.5})
    archive.add((0, 1), {"adv_err": 0.1, "clean_err": 0.1, "ood_aupr_err": 0.9})
    archive.add((1, 1), {"adv_err": 0.2, "clean_err": 0.2, "ood_aupr_err": 0.1})
    front = archive.front(["adv_err", "ood_aupr_err"])
    assert set(front["arch"]) == {"0-1", "1-1"}
    with pytest.raises(ValueError, match="unknown objectives"):
        archive.front(["adv_err", "latency"])


def test_load_missing_corrupt_and_foreign(tmp_path):
    with pytest.raises(FileNotFoundError):
        Archive.load(tmp_path / "nothing")
    empty = Archive.load(tmp_path / "nothing", missing_ok=True, space_name="toy", n_genes=4)
    assert len(empty) == 0 and empty.n_genes == 4
    random_archive(5).save(tmp_path)
    with pytest.raises(ValueError, match="belongs to space toy"):
        Archive.load(tmp_path, space_name="shufflenet", n_genes=5)
    text = (tmp_path / "archive.json").read_text()
    (tmp_path / "archive.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        Archive.load(tmp_path)
    truncated = {"format": "tamnas-archive-v1", "space": "toy"}
    (tmp_path / "archive.json").write_text(json.dumps(truncated))
    with pytest.raises(ValueError, match="corrupt"):
        Archive.load(tmp_path)


def test_update_merges_missing_archs_only():
    a, b = Archive("toy", 2), Archive("toy", 2)
    a.add((0, 0), {"adv_err": 0.5}, generation=0)
    b.add((0, 0), {"adv_err": 0.9}, generation=3)
    b.add((1, 0), {"adv_err": 0.1}, generation=4)
    assert a.update(b) == 1
    assert a.get((0, 0)) == {"adv_err": 0.5} and a.meta((1, 0)) == {"order": 1, "generation": 4}
    with pytest.raises(ValueError, match="cannot merge"):
        a.update(Archive("toy", 3))


def test_front_records_describe_each_arch():
    space = ToySpace()
    archive = Archive(space.name, space.n_genes)
    for arch in space.legal_archs()[::997]:
        archive.add(arch, toy_scores(space, arch))
    front = archive.front(["adv_err", "params"])
    records = front_records(space, front)
    assert len(records) == len(front)
    for rec, (_, row) in zip(records, front.iterrows()):
        arch = tuple(rec["arch"])
        assert space.parse(rec["description"]) == arch
        assert rec["scores"] == toy_scores(space, arch)
        assert row["arch"] == arch_key(arch)
    json.dumps(records)  # plain JSON types only


def test_scores_with_an_image_count_get_the_binomial_standard_error():
    archive = Archive("toy", 2)
    archive.add((0, 1), {"adv_err": 0.33, "clean_err": 0.1, "params": 5, "n_eval": 300})
    scores = archive.get((0, 1))
    assert scores["adv_err_se"] == pytest.approx(np.sqrt(0.33 * 0.67 / 300), rel=1e-12)
    assert scores["clean_err_se"] == pytest.approx(np.sqrt(0.1 * 0.9 / 300), rel=1e-12)
    df = archive.frame()
    assert df.loc[0, "adv_err_se"] == scores["adv_err_se"]
    # an error of 0 or 1 has no binomial spread
    archive.add((1, 1), {"adv_err": 1.0, "clean_err": 0.0, "n_eval": 10})
    assert archive.get((1, 1))["adv_err_se"] == 0.0 == archive.get((1, 1))["clean_err_se"]


def test_an_archive_without_noise_columns_still_loads_and_prints(tmp_path):
    from tamnas.search.nsga2 import format_front_table

    old = {"format": "tamnas-archive-v1", "space": "toy", "n_genes": 2, "entries": [
        {"arch": [0, 1], "scores": {"adv_err": 0.5, "clean_err": 0.25, "params": 7},
         "meta": {"order": 0, "strategy": "nsga2"}}]}
    (tmp_path / "archive.json").write_text(json.dumps(old))
    archive = Archive.load(tmp_path)
    assert archive.get((0, 1)) == {"adv_err": 0.5, "clean_err": 0.25, "params": 7}
    assert "adv_err_se" not in archive.frame()
    table = format_front_table(archive.frame(), ["adv_err", "clean_err", "params"])
    assert "50.00" in table and "±" not in table
    archive.add((1, 1), {"adv_err": 0.4, "clean_err": 0.3, "params": 9, "n_eval": 100})
    table = format_front_table(archive.frame(), ["adv_err", "clean_err", "params"])
    se = 100 * np.sqrt(0.4 * 0.6 / 100)
    assert f"40.00 ± {se:.2f}" in table and "50.00 " in table


# -- scores on named weights -------------------------------------------------------------------
def test_an_arch_scored_on_two_weight_sets_keeps_both_and_lookups_never_cross():
    archive = Archive("toy", 2, fingerprint="oneshot")
    assert archive.add((0, 1), {"adv_err": 0.5, "clean_err": 0.4}, strategy="nsga2")
    # the same arch on other weights is a new entry, not a cache hit
    assert archive.add((0, 1), {"adv_err": 0.2, "clean_err": 0.1}, weights="searched",
                       strategy="mgda")
    assert not archive.add((0, 1), {"adv_err": 0.9}, weights="searched")
    assert len(archive) == 2 and archive.weight_sets() == ["oneshot", "searched"]
    assert archive.get((0, 1)) == {"adv_err": 0.5, "clean_err": 0.4}          # current weights
    assert archive.get((0, 1), weights="searched") == {"adv_err": 0.2, "clean_err": 0.1}
    assert archive.get((0, 1), weights="elsewhere") is None
    assert archive.meta((0, 1), weights="searched")["strategy"] == "mgda"
    archive.fingerprint = "elsewhere"          # another session's weights: nothing is cached
    assert (0, 1) not in archive and archive.get((0, 1)) is None
    assert archive.get((0, 1), weights=ANY_WEIGHTS) == {"adv_err": 0.5, "clean_err": 0.4}
    df = archive.frame()
    assert list(df["weights"]) == ["oneshot", "searched"] and list(df["arch"]) == ["0-1", "0-1"]
    assert list(archive.frame(weights="searched")["strategy"]) == ["mgda"]
    sub = archive.subset("searched")
    assert len(sub) == 1 and sub.fingerprint == "searched" and sub.get((0, 1))["adv_err"] == 0.2


def test_weights_column_round_trips_and_a_v1_archive_takes_its_fingerprint(tmp_path):
    archive = Archive("toy", 2, fingerprint="a")
    archive.add((0, 0), {"adv_err": 0.5, "clean_err": 0.5})
    archive.add((0, 0), {"adv_err": 0.3, "clean_err": 0.6}, weights="b")
    archive.save(tmp_path)
    loaded = Archive.load(tmp_path)
    assert loaded == archive and loaded.get((0, 0), weights="b")["adv_err"] == 0.3
    assert list(pd.read_csv(tmp_path / "archive.csv")["weights"]) == ["a", "b"]
    old = {"format": "tamnas-archive-v1", "space": "toy", "n_genes": 2,
           "supernet_fingerprint": "f1", "entries": [
               {"arch": [1, 1], "scores": {"adv_err": 0.1}, "meta": {"order": 0}}]}
    (tmp_path / "archive.json").write_text(json.dumps(old))
    v1 = Archive.load(tmp_path)
    assert v1.get((1, 1)) == {"adv_err": 0.1} and v1.frame()["weights"].tolist() == ["f1"]


def test_a_front_over_two_weight_sets_says_so():
    archive = Archive("toy", 2, fingerprint="a")
    archive.add((0, 0), {"adv_err": 0.5, "clean_err": 0.2})
    archive.add((1, 1), {"adv_err": 0.2, "clean_err": 0.5})
    one = archive.front(["adv_err", "clean_err"])
    assert not one.attrs["mixed_weights"] and not mixed_weights(one)
    archive.add((1, 0), {"adv_err": 0.1, "clean_err": 0.1}, weights="b")
    archive.add((0, 1), {"adv_err": 0.9, "clean_err": 0.9}, weights="b")
    both = archive.front(["adv_err", "clean_err"])
    assert set(both["weights"]) == {"b"} and not mixed_weights(both)   # b dominates all of a
    archive.add((0, 1), {"adv_err": 0.05, "clean_err": 0.6}, weights="a")
    mixed = archive.front(["adv_err", "clean_err"])
    assert mixed.attrs["mixed_weights"] and mixed_weights(mixed)
    assert set(zip(mixed["arch"], mixed["weights"])) == {("1-0", "b"), ("0-1", "a")}
    only_a = archive.front(["adv_err", "clean_err"], weights="a")
    assert set(only_a["weights"]) == {"a"} and not only_a.attrs["mixed_weights"]
    records = front_records(_TwoGenes(), mixed)
    assert sorted(r["weights"] for r in records) == ["a", "b"]


class _TwoGenes:
    n_genes = 2

    def describe(self, arch):
        return {"genes": list(arch)}
