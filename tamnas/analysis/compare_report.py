"""`tamnas compare`'s results: the per-budget summary, its files (JSON, CSV, Markdown) and figure.

Numbers come from `analysis.compare`; this module only arranges them. The
verdicts are on PGD accuracy (what a robust search is for); clean accuracy
differences are shown beside them at the same level.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tamnas.analysis.compare import (
    LEVEL,
    WIDE,
    corrected_level,
    paired_difference,
    points,
    verdict_line,
)
from tamnas.analysis.compare_groups import GROUPS, Member
from tamnas.files import atomic_write_json, atomic_write_text, json_safe
from tamnas.rundir import RunDir

AGAINST = {"random archs": "random archs", "random search": "random search", "plain": "plain"}


def compute_cost(run: RunDir, cfg) -> dict:
    """Seconds the search cost, from the run's own logs: supernet epochs and search steps."""
    from tamnas.search.strategy import get_strategy

    out = {"supernet_seconds": None, "search_seconds": None}
    if run.supernet_log.is_file():
        log = pd.read_csv(run.supernet_log)
        if "seconds" in log:
            out["supernet_seconds"] = round(float(log["seconds"].sum()), 1)
    try:
        log_name = get_strategy(cfg.search.strategy).log_name
    except (KeyError, ValueError):
        log_name = "generations.csv"
    path = run.search_dir / log_name
    if path.is_file():
        log = pd.read_csv(path)
        if "seconds" in log and len(log):
            out["search_seconds"] = round(float(log["seconds"].iloc[-1]), 1)  # a running total
    known = [v for v in out.values() if v is not None]
    out["total_hours"] = round(sum(known) / 3600, 3) if known else None
    return out


def _correct(members: list[Member], results: dict, seeds: int, which: str) -> np.ndarray:
    """(archs, seeds, images) correctness of a group."""
    return np.stack([np.stack([~np.asarray(results[m.key, s][f"{which}_wrong"], dtype=bool)
                               for s in range(seeds)]) for m in members])


def summarise(groups: dict[str, list[Member]], results: dict, seeds: int, settings: dict,
              cost: dict) -> dict:
    """compare.json: per budget the groups' accuracies, the differences and the verdict."""
    n_intervals = sum(len({m.group for m in ms} & set(AGAINST)) for ms in groups.values())
    level = corrected_level(max(n_intervals, 1), LEVEL)
    budgets, lines = [], []
    for label, members in groups.items():
        by = {g: [m for m in members if m.group == g] for g in GROUPS}
        by = {g: ms for g, ms in by.items() if ms}
        correct = {g: {w: _correct(ms, results, seeds, w) for w in ("clean", "adv")}
                   for g, ms in by.items()}
        summary = {g: {"archs": len(ms), "keys": [m.key for m in ms],
                       "params": [m.params for m in ms],
                       "latency_ms": [m.latency_ms for m in ms],
                       "clean_acc": float(correct[g]["clean"].mean()),
                       "adv_acc": float(correct[g]["adv"].mean())} for g, ms in by.items()}
        diffs = {w: {g: paired_difference(correct["front"][w], correct[g][w], level)
                     for g in by if g in AGAINST} for w in ("adv", "clean")}
        verdict = verdict_line(label, {AGAINST[g]: d for g, d in diffs["adv"].items()})
        budgets.append({"budget": label, "groups": summary,
                        "differences": {w: {g: d.to_dict() for g, d in ds.items()}
                                        for w, ds in diffs.items()},
                        "verdict": verdict})
        lines.append(f"compare {label}:")
        for g, s in summary.items():
            lines.append(f"  {g:<14} {s['archs']} arch(s) x {seeds} seed(s): clean "
                         f"{100 * s['clean_acc']:.1f}%, PGD {100 * s['adv_acc']:.1f}% "
                         f"(params {', '.join(f'{p:,}' for p in s['params'])}"
                         f"{_latencies(s, '; ')})")
        for g, d in diffs["adv"].items():
            lines.append(f"  front - {g:<14} PGD {points(d)}, clean {points(diffs['clean'][g])}")
        lines.append(f"  verdict {verdict}")
    rule = (f"intervals: difference +- t(df) x SE (seed/arch spread of each group plus the paired "
            f"image variance), each at {100 * level:.2f}% (Bonferroni over {n_intervals} PGD "
            f"comparisons, {100 * LEVEL:.0f}% together); better/worse when the interval excludes "
            f"0, else no difference beyond noise, or too few seeds/archs to tell when it reaches "
            f"beyond {100 * WIDE:.0f} points")
    spent = cost.get("total_hours")
    lines += [rule, "the search cost " + (
        f"{spent:.2f} core-hours (supernet {cost['supernet_seconds']} s, search "
        f"{cost['search_seconds']} s)" if spent is not None else "an unknown time (no logs)")
        + f"; {settings['search_evaluations']} evaluations"]
    return json_safe({"budgets": budgets, "level": level, "family_level": LEVEL,
                      "correction": "bonferroni", "n_intervals": n_intervals, "rule": rule,
                      "cost": cost, **settings, "lines": lines})


def _latencies(group: dict, lead: str = "") -> str:
    """A group's latencies (ms, predicted; a plain net's measured), or "" when none is known."""
    known = [v for v in group.get("latency_ms", []) if v is not None]
    return f"{lead}latency {', '.join(f'{v:.2f}' for v in known)} ms" if known else ""


def trainings_table(groups: dict[str, list[Member]], results: dict, seeds: int) -> pd.DataFrame:
    """One row per budget, group member and seed (compare.csv)."""
    rows = []
    for label, members in groups.items():
        for m in members:
            for s in range(seeds):
                r = results[m.key, s]
                rows.append({"budget": label, "group": m.group, "key": m.key, "seed": s,
                             "params": m.params, "width": m.width, "matched_to": m.matched_to,
                             "search": m.search,
                             "latency_ms": m.latency_ms,
                             "inherited_clean_err": m.inherited_clean_err,
                             "inherited_adv_err": m.inherited_adv_err,
                             "clean_acc": r["clean_acc"], "adv_acc": r["adv_acc"],
                             "n_test": r["n_test"]})
    return pd.DataFrame(rows)


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def markdown(blob: dict) -> str:
    """compare.md: one table per budget, the differences and the verdict (report.md includes it)."""
    out = [(f"Settings: {blob['seeds']} seed(s), {blob['picks']} front pick(s), "
           f"{blob['random_archs']} random arch(s) per budget, {blob['retrain_epochs']} retrain "
           f"epochs, {blob['test_images']} test images; random search: "
           f"{blob.get('search_seeds', 1)} search(es), {blob['random_search']} "
           f"({blob['random_search_evaluations']} of the search's {blob['search_evaluations']} "
           "evaluations each)."), ""]
    for b in blob["budgets"]:
        timed = any(_latencies(s) for s in b["groups"].values())
        out += [f"### {b['budget']}", "", "| group | archs | params | "
                + ("latency (ms) | " if timed else "") + "clean acc % | PGD acc % |",
                "|---|---|---|" + ("---|" if timed else "") + "---|---|"]
        for g, s in b["groups"].items():
            ms = (_latencies(s).removeprefix("latency ").removesuffix(" ms") or "n/a") + " | " \
                if timed else ""
            out.append(f"| {g} | {s['archs']} | {', '.join(f'{p:,}' for p in s['params'])} | "
                       f"{ms}{_pct(s['clean_acc'])} | {_pct(s['adv_acc'])} |")
        if timed:
            out += ["", ("Latency: the run's table's prediction for archs of the space; the "
                         "plain net's measured here, whole, the way `tamnas latency check` times "
                         "nets.")]
        out += ["", "| front minus | PGD points [interval] | clean points [interval] |",
                "|---|---|---|"]
        for g, d in b["differences"]["adv"].items():
            c = b["differences"]["clean"][g]
            out.append(f"| {g} | {_span(d)} | {_span(c)} |")
        out += ["", f"**Verdict** {b['verdict']}.", ""]
    cost = blob["cost"]
    out += [blob["rule"] + ".", "",
            (f"The search cost {cost['total_hours']} core-hours (supernet "
             f"{cost['supernet_seconds']} s, search {cost['search_seconds']} s).")]
    return "\n".join(out) + "\n"


def _span(d: dict) -> str:
    if d["low"] is None:
        return f"{100 * d['diff']:+.1f} [no interval]"
    return f"{100 * d['diff']:+.1f} [{100 * d['low']:.1f}, {100 * d['high']:.1f}]"


def figure(table: pd.DataFrame) -> Figure:
    """PGD accuracy of every trained net by group, one panel per budget (means as lines; the
    axis does not start at 0, so no bars that would stretch the differences)."""
    budgets = list(dict.fromkeys(table["budget"]))
    fig = Figure(figsize=(3.6 * len(budgets) + 0.6, 3.4))
    axes = fig.subplots(1, len(budgets), squeeze=False)[0]
    for ax, label in zip(axes, budgets):
        sub = table[table["budget"] == label]
        names = [g for g in GROUPS if g in set(sub["group"])]
        for x, g in enumerate(names):
            acc = 100 * sub.loc[sub["group"] == g, "adv_acc"].to_numpy(float)
            ax.hlines(acc.mean(), x - 0.3, x + 0.3, color=f"C{x}", linewidth=2)  # the mean
            jitter = np.linspace(-0.2, 0.2, len(acc)) if len(acc) > 1 else np.zeros(1)
            ax.scatter(x + jitter, acc, s=12, color=f"C{x}", zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("PGD accuracy on test (%)")
        low = 100 * sub["adv_acc"].min()
        ax.set_ylim(max(0.0, low - 5), min(100.0, 100 * sub["adv_acc"].max() + 3))
    fig.suptitle("front picks against nets without the search (dots: archs x seeds)", fontsize=9)
    return fig


def write_outputs(run: RunDir, blob: dict, groups: dict[str, list[Member]], results: dict,
                  formats) -> None:
    """compare.json, compare.csv, compare.md and figures/compare.* in the run."""
    from tamnas.analysis.figures import save_figure

    out = run.compare_dir
    table = trainings_table(groups, results, blob["seeds"])
    atomic_write_json(out / "compare.json", blob)
    atomic_write_text(out / "compare.csv", table.to_csv(index=False))
    atomic_write_text(out / "compare.md", markdown(blob))
    save_figure(figure(table), out / "compare", [f for f in formats if f == "png"] or ["png"])


def report_section(run: RunDir) -> list[str]:
    """report.md's section: compare.md and its figure, when a comparison ran."""
    md = run.compare_dir / "compare.md"
    if not md.is_file():
        return []
    lines = ["## Does the search pay off? (`tamnas compare`)", "", md.read_text().rstrip(), ""]
    if (run.compare_dir / "compare.png").is_file():
        lines += ["![compare](compare/compare.png)", ""]
    return lines


__all__ = ["compute_cost", "figure", "markdown", "report_section", "summarise",
           "trainings_table", "write_outputs"]
