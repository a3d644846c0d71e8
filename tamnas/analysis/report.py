"""`report.md`: all one run produced: config, front, figures, statistics, LEGO, retraining, attacks.

The report reads only files of the run directory, so it can be written at any
stage: a piece that is missing shows as "not run" instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from tamnas.analysis.compare_report import report_section as compare_section
from tamnas.analysis.export_labels import inherited_scores
from tamnas.analysis.report_data import data_section, per_class_section
from tamnas.analysis.report_files import (
    ci_text,
    fmt_value,
    percent_table,
    points_text,
    read_config,
    read_csv,
    read_json,
)
from tamnas.analysis.stats import arch_labels, markdown_table
from tamnas.files import atomic_write_text
from tamnas.rundir import RunDir

log = logging.getLogger("tamnas")

NOT_RUN = "_not run_"
# (section, key, label) of the settings the report shows.
KEY_SETTINGS = [
    ("", "preset", "preset"), ("", "seed", "seed"),
    ("data", "dataset", "dataset"), ("data", "resolution", "resolution"),
    ("space", "name", "search space"), ("space", "width_mult", "width multiplier"),
    ("space", "stage_layers", "choice layers per stage"),
    ("space", "stage_channels", "stage channels"),
    ("train", "objective", "supernet objective"), ("train", "phase1_epochs", "phase-1 epochs"),
    ("train", "phase2_epochs", "phase-2 epochs"), ("train", "eps", "training eps"),
    ("attack", "eps", "search attack eps"), ("attack", "steps", "search attack steps"),
    ("search", "strategy", "strategy"), ("search", "objectives", "objectives"),
    ("search", "pop_size", "population"), ("search", "generations", "generations"),
    ("output", "top_k", "top-k"), ("output", "top_by", "top-k ranked by"),
]
# Known figures first, in reading order, with their captions; others follow alphabetically.
FIGURE_CAPTIONS = {
    "front": "Non-dominated front with inherited weights (paper Fig. 6), in every pair of "
             "objectives: marker area = parameters, colour and number = row K (`front:K`), "
             "star = the LEGO net.",
    "front_retrained": "The same archs after retraining (paper Fig. 7); colours match the front.",
    "inherited_vs_retrained": "Inherited (validation) vs retrained (test) errors of the retrained "
                              "archs, with Kendall tau and n.",
    "validate": "Rank fidelity: inherited vs standalone errors of archs spread by parameters "
                "(bars: one standard error; colour: parameters).",
    "hypervolume": "Hypervolume per generation; the subtitle names its normalisation and "
                   "reference point.",
    "layer_blocks": "Block choices per layer among the top-k (paper Fig. 8, Table XIV); outlined: "
                    "the LEGO net's choice, hatched: illegal in that layer.",
    "layer_ratios": "Channel-ratio choices per layer among the top-k (paper Fig. 9, Table XV); "
                    "outlined: the LEGO net's choice.",
}
DESCRIPTION_COLUMNS = ["layer", "stride", "block", "kernel", "ratio", "mid_channels"]
ERR_COLUMNS = ("adv_err", "clean_err", "ood_aupr_err")


# --- sections ---------------------------------------------------------------------------------
def _config_section(cfg: dict | None) -> list[str]:
    lines = ["## Configuration", ""]
    if cfg is None:
        return lines + [f"{NOT_RUN} (no readable config.toml)", ""]
    rows = []
    for section, key, label in KEY_SETTINGS:
        table = cfg if not section else cfg.get(section, {})
        if isinstance(table, dict) and key in table:
            rows.append({"setting": label, "key": f"{section}.{key}" if section else key,
                         "value": fmt_value(table[key])})
    table = pd.DataFrame(rows, columns=["setting", "key", "value"])
    lines.append(markdown_table(table, index=False))
    return lines + ["The full configuration is in `config.toml`.", ""]


def _training_section(run: RunDir) -> list[str]:
    lines = ["## Supernet training", ""]
    df = read_csv(run.supernet_log)
    if df is None or not len(df):
        return lines + [NOT_RUN, ""]
    return lines + [f"{len(df)} epochs logged in `supernet/train_log.csv`; the last one:", "",
                    markdown_table(df.tail(1).reset_index(drop=True), index=False)]


def front_table(archive: pd.DataFrame, objectives: Iterable[str],
                strategy: str | None = None) -> pd.DataFrame:
    """The non-dominated rows of an archive table in the order of `front:K` (archive.front_table):
    by the objectives in turn, ties by archive order; with `strategy`, of its archs only (when
    the table records strategies)."""
    from tamnas.search.archive import non_dominated, visited_by

    objectives = [o for o in objectives if o in archive.columns]
    if not objectives:
        raise ValueError("report: the archive has none of the objectives")
    usable = archive[archive[objectives].notna().all(axis=1)]
    if strategy is not None and visited_by(usable, strategy).any():
        usable = usable[visited_by(usable, strategy)]
    front = usable.iloc[non_dominated(usable[objectives].to_numpy(dtype=float))]
    keys = objectives + (["order"] if "order" in front.columns else [])
    return front.sort_values(keys, kind="stable").reset_index(drop=True)


def _space(run: RunDir):
    """The run's search space rebuilt from its config.toml (for layer names), or None."""
    from tamnas.config import load_config
    from tamnas.supernets import build_space

    try:
        return build_space(load_config(run.config))
    except (ValueError, FileNotFoundError) as err:
        log.warning("report: layers not named, the space of %s cannot be built (%s)",
                    run.config, str(err).splitlines()[0])
        return None


def _search_section(run: RunDir, cfg: dict | None) -> list[str]:
    lines = ["## Search", ""]
    archive = read_csv(run.search_dir / "archive.csv")
    gens = read_csv(run.generations)
    if archive is None or not len(archive):
        return lines + [NOT_RUN, ""]
    strategies = []
    if "strategy" in archive:
        strategies = sorted(archive["strategy"].dropna().astype(str).unique())
    lines.append(f"{len(archive)} architectures evaluated"
                 + (f" by {', '.join(strategies)}" if strategies else "") + ".")
    if gens is not None and len(gens):
        last = gens.iloc[-1]
        parts = [f"{len(gens)} generations/steps logged"]
        if "hv" in gens:
            parts.append(f"final hypervolume {float(last['hv']):.4g}")
        for col, label in (("evaluations", "archs scored"), ("cache_hits", "cache hits")):
            if col in gens:
                parts.append(f"{label} {int(last[col])}")
        if "seconds" in gens:
            parts.append(f"{float(last['seconds']):.1f} s")
        lines.append("; ".join(parts) + ".")
    objectives = (cfg or {}).get("search", {}).get("objectives", ["adv_err", "clean_err", "params"])
    front = front_table(archive, objectives, (cfg or {}).get("search", {}).get("strategy"))
    shown = ("arch", "adv_err", "adv_err_se", "clean_err", "clean_err_se", "params", "flops",
             "latency", "ood_aupr_err", "strategy", "generation")
    cols = [c for c in shown if c in front.columns]
    table = percent_table(front[cols])
    space = _space(run) if cfg is not None else None
    names = arch_labels(space, front) if space is not None else None
    if names is not None:
        table.insert(cols.index("arch") + 1 if "arch" in cols else 0, "layers", names)
    table.index.name = "front"
    noise = ""
    if "n_eval" in front and front["n_eval"].notna().any():
        noise = (f" Errors are ± one binomial standard error of each score alone, over the "
                 f"{int(front['n_eval'].max())} validation images; all archs share those images, "
                 "so the noise of a difference is that of the per-image difference, usually "
                 "smaller (docs/trust.md), and a retrained net adds training-seed noise.")
    run_strategy = (cfg or {}).get("search", {}).get("strategy")
    of = (f"The front of the run's strategy, {run_strategy} (another strategy's archs never "
          "enter it). ") if run_strategy else ""
    lines += ["", f"### Non-dominated front ({len(front)} archs over {', '.join(objectives)})", "",
              of + "Row K is `--arch front:K`"
              + (" (layers: block xratio per choice layer)." if names is not None else ".")
              + noise, "",
              markdown_table(table, index=True)]
    return lines


def _figures_section(run: RunDir, base: Path) -> list[str]:
    lines = ["## Figures", ""]
    figs = sorted(run.figures_dir.glob("*.png")) if run.figures_dir.is_dir() else []
    if not figs:
        return lines + [f"{NOT_RUN} (no figures; `tamnas plot` makes them)", ""]
    known = list(FIGURE_CAPTIONS)
    figs.sort(key=lambda p: (known.index(p.stem) if p.stem in known else len(known), p.stem))
    for fig in figs:
        rel = Path(os.path.relpath(fig.resolve(), base.resolve())).as_posix()
        link = f"<{rel}>" if " " in rel else rel
        caption = FIGURE_CAPTIONS.get(fig.stem, fig.stem.replace("_", " "))
        lines += [f"![{fig.stem}]({link})", "", f"*{caption}*", ""]
    return lines


def _stats_section(run: RunDir, cfg: dict | None) -> list[str]:
    top = (cfg or {}).get("output", {})
    lines = ["## Per-layer statistics of the top-k", ""]
    tables = sorted(run.stats_dir.glob("*_counts.csv"))
    if not tables:
        return lines + [NOT_RUN, ""]
    if top:
        lines += [(f"Top {top.get('top_k', '?')} front members ranked by {top.get('top_by', '?')}; "
                   "each cell counts how often a layer holds a choice "
                   "(paper Tables XIV and XV)."), ""]
    for path in tables:
        df = read_csv(path)
        if df is None:
            continue
        df = df.set_index(df.columns[0])
        kind = path.stem.replace("_counts", "")
        lines += [f"### {kind} choices", "", markdown_table(df, index=True)]
    return lines


def description_table(description: Any) -> pd.DataFrame | None:
    """The per-layer list inside an arch description as a table (layer, stride, block, ...)."""
    if not isinstance(description, dict):
        return None
    candidates = [description.get("layers")] + list(description.values())
    for value in candidates:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            df = pd.DataFrame(value)
            first = [c for c in DESCRIPTION_COLUMNS if c in df.columns]
            df = df[first + [c for c in df.columns if c not in first]]
            for col in df.columns:
                df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
            return df
    return None


def _lego_section(run: RunDir) -> list[str]:
    lines = ["## LEGO net", ""]
    blob = read_json(run.export_json("lego"))
    if not isinstance(blob, dict):
        return lines + [f"{NOT_RUN} (`tamnas lego` writes exports/lego.json)", ""]
    genes = blob.get("genes", [])
    key = "-".join(map(str, genes))
    lines += [(f"Genes `{key}` in space `{blob.get('space', '?')}`: per layer the most frequent "
               "block and ratio among the top-k (ties: the best-ranked arch's choice; "
               "illegal modes replaced by the most frequent legal choice)."), ""]
    scores = {k: v for k, v in inherited_scores(blob).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scores:
        lines += ["Inherited-weight scores (validation split):", "",
                  markdown_table(percent_table(pd.DataFrame([scores])), index=False)]
    else:
        lines += ["Scores: not recorded.", ""]
    table = description_table(blob.get("description"))
    if table is not None:
        lines += ["Layers:", "", markdown_table(table, index=False)]
    return lines


def _retrain_section(run: RunDir) -> list[str]:
    lines = ["## Retraining", ""]
    summary = read_csv(run.retrain_summary)
    if summary is None or not len(summary):
        return lines + [NOT_RUN, ""]
    return lines + [("Test-set errors of standalone nets after retraining, next to their "
                     "inherited-weight (validation) errors."), "",
                    markdown_table(percent_table(summary), index=False)] + _retrain_tau(summary)


def _retrain_tau(summary: pd.DataFrame) -> list[str]:
    """Kendall tau of inherited (validation) vs retrained (test) errors, with n and an interval,
    or why it is not worth reading: retraining a handful of front members is common."""
    from tamnas.analysis.rank_fidelity import min_tau_archs, tau_summary

    parts, least = [], min_tau_archs()
    for which, label in (("clean", "clean error"), ("adv", "adversarial error")):
        cols = [f"inherited_{which}_err", f"retrained_{which}_err"]
        if any(c not in summary.columns for c in cols):
            continue
        s = tau_summary(summary[cols[0]], summary[cols[1]])
        ci = s["ci"] if s["readable"] else None
        tau = "n/a" if s["tau"] != s["tau"] else ci_text(s["tau"], ci)
        parts.append(f"{label} {tau} over {s['n']} archs")
    if not parts or len(summary) < 2:
        return []
    text = ("Rank agreement (Kendall tau) of the inherited errors (supernet weights, validation "
            "images) with the retrained errors (test set) of the same archs: "
            + "; ".join(parts) + ".")
    if len(summary) < least:
        text += (f" Not meaningful: below {least} archs even a perfect ranking cannot be told from "
                 "chance (two-sided, 5%); `tamnas validate RUN --archs 20` measures it properly.")
    else:
        text += " Brackets: 95% bootstrap interval over the archs."
    return [text, ""]


def _seeds_needed_text(s: dict) -> str:
    """"3 [2, 9]" from correlation.json's seeds_needed (numbers or "never"), "n/a" if unknown."""
    def one(v) -> str:
        return "n/a" if v is None else str(v) if isinstance(v, str) else str(int(v))
    k, ci = s.get("seeds_needed"), s.get("seeds_needed_ci") or [None, None]
    return "n/a" if k is None else f"{one(k)} [{one(ci[0])}, {one(ci[1])}]"


def _validate_section(run: RunDir) -> list[str]:
    lines = ["## Rank fidelity", ""]
    corr = read_json(run.validate_dir / "correlation.json")
    summary = read_csv(run.validate_dir / "summary.csv")
    if not isinstance(corr, dict) or summary is None or not len(summary):
        return lines + [(f"{NOT_RUN} (`tamnas validate RUN --archs N` checks whether inherited "
                         "scores rank archs as standalone training does)"), ""]
    seeds = int(corr.get("seeds", 1))
    lines += [(f"{corr.get('n_archs', len(summary))} archs drawn over the space by parameter "
               f"count (not from the front), each retrained standalone ({seeds} seed"
               f"{'s' if seeds > 1 else ''}, {corr.get('retrain_epochs', '?')} epochs) and scored "
               f"with inherited weights and standalone on the same {corr.get('n_eval', '?')} "
               "validation images under the same attack. Supernet fingerprint "
               f"`{corr.get('supernet_fingerprint', '?')}`."), "",
              f"**{corr.get('verdict', '')}**", ""]
    rows = []
    for which, label in (("clean", "clean error"), ("adv", "adversarial error")):
        s = corr.get(which) or {}
        rows.append({"error": label,
                     "Kendall tau [95% CI]": ci_text(s.get("kendall_tau"), s.get("kendall_tau_ci")),
                     "Spearman rho [95% CI]": ci_text(s.get("spearman_rho"),
                                                  s.get("spearman_rho_ci")),
                     "ceiling tau [95% CI]": f"{ci_text(s.get('ceiling'), s.get('ceiling_seeds_ci'))} "
                                             f"({s.get('ceiling_source')})",
                     "reachable tau [95% CI]": ci_text(s.get("ceiling_for_mean", s.get("ceiling")),
                                                       s.get("ceiling_for_mean_ci")),
                     "seeds needed [95% CI]": _seeds_needed_text(s),
                     "size-controlled tau [95% CI] (seeds)": (
                         f"{ci_text(s.get('partial_tau'), s.get('partial_tau_ci'))} "
                         f"({ci_text(s.get('partial_ceiling'), None)})"),
                     "standalone std / range (points)": " / ".join(
                         points_text(s.get(k)) for k in ("standalone_std", "standalone_range")),
                     "noise per score (points)": points_text(s.get("standalone_noise")),
                     "mean gap (points)": "n/a" if s.get("mean_gap") is None
                     else f"{100 * float(s['mean_gap']):+.1f}",
                     "readable": s.get("readable", "?"), "front trusted": s.get("trust", "?")})
    lines += [markdown_table(pd.DataFrame(rows), index=False)]
    lines += [f"- {(corr.get(w) or {}).get('verdict', '')}" for w in ("clean", "adv")] + [""]
    lines += [("The ceiling is the Kendall tau of two standalone measurements of the same archs: "
               "two training seeds (`--seeds 2` or more; interval over archs), or, with one seed, "
               "two samples of the evaluation images (an upper bound that leaves out training "
               "noise). The reachable tau is the most any predictor can reach against the "
               "standalone reference used here (the mean of the seeds, Spearman-Brown on the seed "
               "ceiling, with the image noise added); readability is judged on it alone, and "
               "'seeds needed' is how many seeds make it reach 0.70 (docs/trust.md states the "
               "rules). The noise per score is that of one arch's score against another's on the "
               "same images (paired), seeds included when measured. The size-controlled tau is Kendall's partial tau "
               "with parameter count held fixed: how well inherited scores order archs of similar "
               "size, which is what the search needs (params are known without a supernet); in "
               "brackets, the same between the two seeds. The gap is inherited minus standalone "
               "error. Per "
               "arch (errors in %, ± one binomial standard error):"), ""]
    cols = ["index", "arch", "params"] + [
        c for c in summary.columns if c.startswith(("inherited_", "standalone_"))
        and (seeds > 1 or "_s0" not in c)]
    lines += [markdown_table(percent_table(summary[[c for c in cols if c in summary.columns]]),
                             index=False)]
    return lines


def _robustness_section(run: RunDir) -> list[str]:
    lines = ["## Robustness", ""]
    grids = sorted(run.retrain_root.glob("*/robustness.csv"))
    found = False
    for path in grids:
        df = read_csv(path)
        if df is None:
            continue
        found = True
        md = path.with_suffix(".md")  # the grid module's own rendering (percent) wins when present
        body = md.read_text(encoding="utf-8").rstrip() + "\n" if md.is_file() else \
            markdown_table(df, index=False)
        lines += [f"### {path.parent.name}", "", body]
        aa = read_json(path.parent / "autoattack.json")
        if isinstance(aa, dict) and "accuracy" in aa:
            lines += [(f"AutoAttack accuracy {float(aa['accuracy']):.4f} at eps "
                       f"{float(aa.get('eps', float('nan'))):.4f}."), ""]
    if not found:
        lines += [f"{NOT_RUN} (`tamnas evaluate` writes the eps x steps grid)", ""]
    return lines


def write_report(run: RunDir | str | Path, out: str | Path | None = None,
                 title: str | None = None) -> Path:
    """Gather a run directory into `report.md` (or `out`) with relative links to its figures."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.root.is_dir():
        raise FileNotFoundError(f"run directory {run.root} does not exist")
    cfg = read_config(run.config)
    path = Path(out) if out is not None else run.report
    lines = [f"# {title or f'tamnas report: {run.root.resolve().name}'}", ""]
    for section in (data_section(run), _config_section(cfg), _training_section(run),
                    _search_section(run, cfg), _figures_section(run, path.parent),
                    _stats_section(run, cfg), _lego_section(run), per_class_section(run),
                    _retrain_section(run),
                    _validate_section(run), compare_section(run), _robustness_section(run)):
        lines += section
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


__all__ = ["description_table", "front_table", "write_report"]
