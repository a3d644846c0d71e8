"""The explorer page's data: plain lists and dicts computed from a run's tables, no HTML.

`explore_info` joins what the page shows (the archive's points, each strategy's
front, the LEGO net, standalone results, the hypervolume curve, per-layer choice
counts) into one JSON-ready dict; `explore_page` renders it. Keeping the two
apart lets the data be tested without a browser, as optuna's visualization
modules do. Arch names on the page are `arch:<genes>` selectors, which name any
point of the archive, not only front members.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tamnas.analysis import stats
from tamnas.analysis.selector import Constraint, best_under
from tamnas.analysis.selector import within_budget as selector_budget
from tamnas.metrics import binomial_se
from tamnas.search.archive import arch_key, non_dominated
from tamnas.search.fronts import visited_by

AXES = ("clean_err", "adv_err", "params", "flops", "latency")
AXIS_LABELS = {"clean_err": "clean error", "adv_err": "adversarial error", "params": "parameters",
               "flops": "multiply-adds (FLOPs)", "latency": "latency (ms)"}
POINT_COLUMNS = (*AXES, "clean_err_se", "adv_err_se")
BUDGETS = ("params", "flops", "latency")   # the costs a user caps; min clean accuracy besides
SIGNIFICANT = 6   # digits kept per number: far below any score's noise, and it keeps pages small


def _num(v: Any) -> float | None:
    """A JSON number (rounded to SIGNIFICANT digits), or None for a missing value."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2 ** 53 else float(f"{f:.{SIGNIFICANT}g}")


def _column(df: pd.DataFrame, name: str) -> list | None:
    if name not in df.columns:
        return None
    values = [_num(v) for v in pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)]
    return values if any(v is not None for v in values) else None


def axes_of(df: pd.DataFrame) -> list[str]:
    """The objectives the page offers as axes: those of AXES with a value in the archive."""
    return [a for a in AXES if a in df.columns and pd.to_numeric(df[a], errors="coerce").notna().any()]


def points_info(df: pd.DataFrame) -> dict:
    """The archive as columns: arch keys, strategy, generation and every score with its SE."""
    out: dict[str, Any] = {"arch": [str(a) for a in df["arch"]]}
    out["strategy"] = [None if pd.isna(s) else str(s) for s in df["strategy"]] \
        if "strategy" in df.columns else [None] * len(df)
    for name in (*POINT_COLUMNS, "generation"):
        col = _column(df, name)
        if col is not None:
            out[name] = col
    return out


def strategy_fronts(df: pd.DataFrame, objectives: Sequence[str]) -> dict[str, list[int]]:
    """Each strategy's own front: positions (into `df`) of its non-dominated rows over
    `objectives`, ordered like the front table (objectives in order, then archive order).

    A strategy's front is taken over its own rows only, so a random search never
    moves the NSGA-II front; the LEGO net is a single arch, not a strategy.
    """
    objectives = [o for o in objectives if o in df.columns]
    if "strategy" not in df.columns or len(objectives) < 2:
        groups = {"archive": np.arange(len(df))}
    else:
        seen = df["strategy"].dropna().astype(str).tolist()
        if "strategies" in df.columns:  # every strategy that visited a row, not only the first
            seen += [n for v in df["strategies"].dropna() for n in str(v).split(",") if n]
        names = [s for s in dict.fromkeys(seen) if s != "lego"]
        groups = {s: np.flatnonzero(visited_by(df, s).to_numpy()) for s in names}
    fronts = {}
    for name, pos in groups.items():
        sub = df.iloc[pos]
        usable = pos[sub[objectives].notna().all(axis=1).to_numpy()] if objectives else pos
        if not len(usable) or len(objectives) < 2:
            continue
        member = usable[non_dominated(df.iloc[usable][objectives].to_numpy(dtype=float))]
        order = df["order"].to_numpy()[member] if "order" in df.columns else member
        keys = [df[o].to_numpy(dtype=float)[member] for o in reversed(objectives)]
        fronts[name] = [int(member[i]) for i in np.lexsort([order, *keys])]
    return fronts


def gene_info(space) -> list[dict]:
    """Per gene: its name, the layer row it belongs to, its kind and every value's label, so
    the page can turn any arch's genes into a readable layer table."""
    return [{"name": g.name, "layer": row, "kind": g.kind,
             "labels": [stats.gene_label(space, i, v) for v in range(g.choices)]}
            for i, (g, row) in enumerate(zip(space.genes, stats.row_names(space)))]


def layer_table(space, arch: Sequence[int]) -> pd.DataFrame:
    """One arch as the detail panel shows it: a row per layer, a column per gene kind."""
    arch = space.validate(arch)
    rows: dict[str, dict[str, str]] = {}
    for i, (g, row) in enumerate(zip(space.genes, stats.row_names(space))):
        rows.setdefault(row, {})[g.kind] = stats.gene_label(space, i, arch[i])
    out = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    out.index.name = "layer"
    return out


def lego_info(df: pd.DataFrame, arch: Sequence[int] | None, scores: Mapping | None) -> dict | None:
    """The LEGO net: its key, its archive row (position) when scored there, else its scores."""
    if arch is None:
        return None
    key = arch_key(arch)
    hits = np.flatnonzero(df["arch"].astype(str).to_numpy() == key)
    own = [p for p in hits if df["strategy"].iloc[p] == "lego"] if "strategy" in df.columns else []
    index = int(own[0] if own else hits[0]) if len(hits) else None
    values = {k: _num(v) for k, v in (scores or {}).items() if k in POINT_COLUMNS}
    return {"arch": key, "index": index, "scores": values}


def _se(err: Any, n: Any) -> float | None:
    try:
        return _num(binomial_se(float(err), int(n)))
    except (TypeError, ValueError):
        return None


def standalone_rows(*, retrained: pd.DataFrame | None = None, validated: pd.DataFrame | None = None,
                    evaluated: Sequence[Mapping] = (), compared: pd.DataFrame | None = None
                    ) -> list[dict]:
    """Standalone results, one dict each: arch key, source, label, the standalone errors with
    SEs and the inherited errors they are compared with (None where a source has none)."""
    rows: list[dict] = []

    def add(arch, source, label, clean, adv, clean_se=None, adv_se=None, inh_clean=None,
            inh_adv=None):
        rows.append({"arch": str(arch), "source": source, "label": str(label),
                     "clean_err": _num(clean), "adv_err": _num(adv), "clean_err_se": _num(clean_se),
                     "adv_err_se": _num(adv_se), "inherited_clean_err": _num(inh_clean),
                     "inherited_adv_err": _num(inh_adv)})

    for r in (retrained.to_dict("records") if retrained is not None else []):
        n = r.get("n_test")
        add(r["arch"], "retrained", f"retrain/{r['name']} ({r.get('init', 'scratch')})",
            r["retrained_clean_err"], r["retrained_adv_err"], _se(r["retrained_clean_err"], n),
            _se(r["retrained_adv_err"], n), r.get("inherited_clean_err"), r.get("inherited_adv_err"))
    for r in (validated.to_dict("records") if validated is not None else []):
        add(r["arch"], "retrained", "validate (mean of seeds)", r["standalone_clean_err"],
            r["standalone_adv_err"], r.get("standalone_clean_err_se"),
            r.get("standalone_adv_err_se"), r.get("inherited_clean_err"), r.get("inherited_adv_err"))
    for r in evaluated:
        add(r["arch"], "evaluated", r["label"], r["clean_err"], r["adv_err"],
            _se(r["clean_err"], r.get("n")), _se(r["adv_err"], r.get("n")))
    for r in (compared.to_dict("records") if compared is not None else []):
        add(r["arch"], "retrained", f"compare ({r.get('group', 'standalone')})",
            r["standalone_clean_err"], r["standalone_adv_err"], r.get("standalone_clean_err_se"),
            r.get("standalone_adv_err_se"), r.get("inherited_clean_err"),
            r.get("inherited_adv_err"))
    return rows


def grid_scores(grid: pd.DataFrame, eps: float, steps: int) -> dict | None:
    """Clean and PGD error of a robustness grid (accuracies, rows by eps) at the search attack:
    the row nearest `eps` and the `pgd-<steps>` column, or None if the grid lacks them."""
    col = f"pgd-{int(steps)}"
    if col not in grid.columns or "clean" not in grid.columns or not len(grid):
        return None
    eps_values = np.asarray(grid.index, dtype=float)
    nearest = int(np.argmin(np.abs(eps_values - eps)))
    if abs(eps_values[nearest] - eps) > 1e-6:  # the grid never ran the search's eps
        return None
    row = grid.iloc[nearest]
    return {"clean_err": 1 - float(row["clean"]), "adv_err": 1 - float(row[col]),
            "n": grid.attrs.get("n")}


def hv_info(generations: pd.DataFrame | None) -> dict | None:
    """The hypervolume per generation (per strategy when the log names several)."""
    if generations is None or "hv" not in generations.columns or not len(generations):
        return None
    x = "generation" if "generation" in generations.columns else None
    groups = generations.groupby("strategy", sort=False) if "strategy" in generations.columns \
        else [("hv", generations)]
    series = []
    for name, g in groups:
        xs = g[x] if x else pd.Series(range(len(g)))
        series.append({"name": str(name), "x": [_num(v) for v in xs], "hv": _column(g, "hv")})
        if "hv_archive" in g.columns and _column(g, "hv_archive"):
            series.append({"name": f"{name} (archive)", "x": [_num(v) for v in xs],
                           "hv": _column(g, "hv_archive")})
    return {"series": series}


def heatmap_info(space, front: pd.DataFrame, top: int, by: str,
                 lego_arch: Sequence[int] | None) -> list[dict]:
    """Per gene kind: how often each choice occurs per layer among the front's top-k (None
    where a layer may not take a choice) and the LEGO net's choice per layer."""
    if not len(front):
        return []
    objectives = [o for o in stats.DEFAULT_OBJECTIVES if o in front.columns]
    top_df = stats.top_k(front, top, by=by, objectives=objectives)
    out = []
    for kind in sorted({g.kind for g in space.genes}):
        counts = stats.layer_counts(space, top_df, kind)
        legal = stats.layer_legal(space, kind)
        z = [[int(c) if ok else None for c, ok in zip(cr, lr)]
             for cr, lr in zip(counts.to_numpy(), legal.to_numpy())]
        out.append({"kind": kind, "layers": list(counts.index), "choices": list(counts.columns),
                    "z": z, "top": len(top_df),
                    "lego": stats.layer_choices(space, lego_arch, kind) if lego_arch else None})
    return out


def budget_constraints(*, params: float | None = None, flops: float | None = None,
                       latency: float | None = None) -> tuple[Constraint, ...]:
    """The page's cost caps as the selector grammar's constraints (COST<=VALUE)."""
    caps = (("params", params), ("flops", flops), ("latency", latency))
    return tuple(Constraint(cost, "<=", float(v)) for cost, v in caps if v is not None)


def within_budget(df: pd.DataFrame, *, params: float | None = None, flops: float | None = None,
                  latency: float | None = None, min_clean_acc: float | None = None) -> pd.Series:
    """Rows meeting every given cap (costs at most the cap, clean accuracy at least the floor);
    a row missing a capped value does not meet the cap."""
    mask = selector_budget(df, budget_constraints(params=params, flops=flops, latency=latency))
    if min_clean_acc is not None:
        mask &= (1 - pd.to_numeric(df["clean_err"], errors="coerce")) >= min_clean_acc
    return mask


def best_row(df: pd.DataFrame) -> int | None:
    """Position of the best row (the selector's `best:adv`): lowest adversarial error, ties by
    clean error, params, archive order; None when no row has an adversarial error."""
    if df.empty or df["adv_err"].notna().sum() == 0:
        return None
    return int(df.index.get_loc(best_under(df, "adv_err")))


def command_lines(run_root: str | Path) -> dict[str, str]:
    """The commands the detail panel offers, with `{arch}` where the selector goes."""
    run = shlex.quote(str(run_root))
    return {"retrain": f"tamnas retrain {run} --arch {{arch}}",
            "evaluate": f"tamnas evaluate {run} --arch {{arch}}",
            "export": f"tamnas export {run} --arch {{arch}}"}


def explore_info(space, archive_df: pd.DataFrame, *, objectives: Sequence[str], run_root: str,
                 strategy: str, title: str = "", lego_arch: Sequence[int] | None = None,
                 lego_scores: Mapping | None = None, generations: pd.DataFrame | None = None,
                 standalone: Sequence[Mapping] = (), verdicts: Sequence[str] = (),
                 top: int = 10, top_by: str = "adv_err") -> dict:
    """Everything the page shows, as JSON-ready data (see the module docstring)."""
    df = archive_df.reset_index(drop=True)
    fronts = strategy_fronts(df, objectives)
    own = fronts.get(strategy) or next(iter(fronts.values()), [])
    return {"title": title, "space": space.name, "run": str(run_root), "strategy": strategy,
            "objectives": list(objectives), "axes": axes_of(df),
            "axis_labels": {a: AXIS_LABELS[a] for a in AXES},
            "budgets": [b for b in BUDGETS if b in axes_of(df)],
            "points": points_info(df), "fronts": fronts, "lego": lego_info(df, lego_arch,
                                                                            lego_scores),
            "genes": gene_info(space), "commands": command_lines(run_root),
            "standalone": list(standalone), "verdicts": [str(v) for v in verdicts],
            "hv": hv_info(generations),
            "heatmaps": heatmap_info(space, df.iloc[own], top, top_by, lego_arch)}


__all__ = ["AXES", "axes_of", "best_row", "budget_constraints", "command_lines", "explore_info", "gene_info",
           "grid_scores", "heatmap_info", "hv_info", "layer_table", "lego_info", "points_info",
           "standalone_rows", "strategy_fronts", "within_budget"]
