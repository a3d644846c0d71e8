"""The arch selector grammar: parsing, budgets, best-under-budget and the knee, against
independent computations on random tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tamnas.analysis.selector import (
    Constraint,
    best_under,
    budget_label,
    knee_position,
    parse_budget,
    parse_selector,
    within_budget,
)


@pytest.mark.parametrize("text, kind, field, value", [
    ("front:0", "front", "index", 0),
    ("front:12", "front", "index", 12),
    ("lego", "lego", "index", None),
    ("knee", "knee", "index", None),
    ("arch:2-0-13-1", "arch", "genes", (2, 0, 13, 1)),
    ("arch:7", "arch", "genes", (7,)),
    ("best:adv", "best", "objective", "adv_err"),
    ("best:clean,params<=2000", "best", "objective", "clean_err"),
    ("runs/x/exports/lego.json", "file", "path", "runs/x/exports/lego.json"),
])
def test_parse_selector_reads_every_form(text, kind, field, value):
    sel = parse_selector(text)
    assert sel.kind == kind and getattr(sel, field) == value and sel.text == text


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("front:", "row number"),
    ("front:-1", "row number"),
    ("front:x", "row number"),
    ("arch:", "genes"),
    ("arch:1--2", "genes"),
    ("arch:1-a", "genes"),
    ("best:fast", "adv or clean"),
    ("best:adv,params<=", "COST<=VALUE"),
    ("best:adv,size<=3", "unknown cost"),
    ("best:adv,params<=2kg", "unknown unit"),
    ("best:adv,latency<=3h", "unknown unit"),
    ("best:adv,params<=0", "positive"),
    ("best:adv,params<=1,params<=2", "twice"),
    ("best:adv,", "empty part"),
    ("lego2", "not a selector"),
    ("front-3", "not a selector"),
])
def test_parse_selector_refuses_in_one_line_with_the_grammar(text, words):
    with pytest.raises(ValueError) as err:
        parse_selector(text)
    message = str(err.value)
    assert words in message and "\n" not in message and "front:K" in message


@pytest.mark.parametrize("text, expected", [
    ("params<=2000", [Constraint("params", "<=", 2000.0)]),
    ("params<2k", [Constraint("params", "<", 2000.0)]),
    ("params<=1.5M", [Constraint("params", "<=", 1.5e6)]),
    ("flops<=2e6", [Constraint("flops", "<=", 2e6)]),
    ("latency<=3ms", [Constraint("latency", "<=", 3.0)]),
    ("latency<=500us", [Constraint("latency", "<=", 0.5)]),
    ("latency<=0.002s", [Constraint("latency", "<=", 2.0)]),
    ("latency<=4", [Constraint("latency", "<=", 4.0)]),
    (" latency <= 3ms , params<=5k ", [Constraint("latency", "<=", 3.0),
                                       Constraint("params", "<=", 5000.0)]),
])
def test_parse_budget_converts_units(text, expected):
    assert list(parse_budget(text)) == expected


def test_budget_label_is_canonical_and_parses_back():
    for text in ("params<=2k", "params<=2000", "latency<=500us,params<1.5M"):
        constraints = parse_budget(text)
        label = budget_label(constraints)
        assert parse_budget(label) == constraints
    assert budget_label(parse_budget("params<=2k")) == "params<=2000"
    assert budget_label(parse_budget("latency<=500us")) == "latency<=0.5ms"


def _table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    # errors on a coarse grid so that ties happen and the tie rule is exercised
    return pd.DataFrame({
        "adv_err": rng.integers(0, 6, n) / 10, "clean_err": rng.integers(0, 4, n) / 10,
        "params": rng.integers(1, 8, n) * 1000, "flops": rng.integers(1, 50, n) * 1e4,
        "order": rng.permutation(n)})


def test_best_under_matches_a_brute_force_scan():
    rng = np.random.default_rng(0)
    for trial in range(200):
        df = _table(rng, int(rng.integers(1, 30)))
        df.index = rng.permutation(len(df)) + 100  # labels, not positions
        objective = ("adv_err", "clean_err")[trial % 2]
        other = "clean_err" if objective == "adv_err" else "adv_err"
        limit = int(rng.integers(1, 9)) * 1000
        constraints = parse_budget(f"params<={limit}")
        fits = [i for i in df.index if df.at[i, "params"] <= limit]
        if not fits:
            with pytest.raises(ValueError, match="no scored arch meets params<="):
                best_under(df, objective, constraints)
            continue
        expected = min(fits, key=lambda i: (df.at[i, objective], df.at[i, other],
                                            df.at[i, "params"], df.at[i, "order"]))
        assert best_under(df, objective, constraints) == expected


def test_best_under_a_strict_limit_and_two_costs():
    df = pd.DataFrame({"adv_err": [0.1, 0.2, 0.3], "clean_err": [0.1, 0.1, 0.1],
                       "params": [2000, 1000, 500], "flops": [10, 90, 10], "order": [0, 1, 2]})
    assert best_under(df, "adv_err", parse_budget("params<=2000")) == 0
    assert best_under(df, "adv_err", parse_budget("params<2000")) == 1
    assert best_under(df, "adv_err", parse_budget("params<2000,flops<=50")) == 2
    assert list(within_budget(df, parse_budget("params<2000,flops<=50"))) == [False, False, True]


def test_a_budget_on_a_missing_cost_names_the_fix():
    df = pd.DataFrame({"adv_err": [0.1], "clean_err": [0.1], "params": [10]})
    with pytest.raises(ValueError, match="latency build"):
        best_under(df, "adv_err", parse_budget("latency<=3ms"))


def test_knee_is_the_member_nearest_the_normalised_ideal_point():
    rng = np.random.default_rng(1)
    objectives = ["adv_err", "clean_err", "params"]
    for _ in range(100):
        front = _table(rng, int(rng.integers(1, 12)))
        F = front[objectives].to_numpy(dtype=float)
        best, best_d = None, np.inf
        for k, row in enumerate(F):  # independent scan, one objective at a time
            d = 0.0
            for j in range(F.shape[1]):
                lo, hi = F[:, j].min(), F[:, j].max()
                d += ((row[j] - lo) / (hi - lo)) ** 2 if hi > lo else 0.0
            if d < best_d - 1e-12:
                best, best_d = k, d
        assert knee_position(front, objectives) == best


def test_knee_of_a_two_point_trade_off_and_a_corner():
    front = pd.DataFrame({"adv_err": [0.1, 0.5, 0.2], "clean_err": [0.9, 0.1, 0.2]})
    assert knee_position(front, ["adv_err", "clean_err"]) == 2
