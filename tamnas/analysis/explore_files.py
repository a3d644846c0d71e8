"""What the explorer reads from a run directory: its tables, through RunDir, into `explore_info`.

Only the archive is required; every other result (search log, LEGO export,
retrain summary, robustness grids, validate, compare) adds a section to the page
when present and is left out when absent.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tamnas.analysis.explore import explore_info, grid_scores, standalone_rows
from tamnas.analysis.explore_page import write_page
from tamnas.analysis.export_labels import inherited_scores
from tamnas.files import read_json, read_table
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive, parse_key

STANDALONE = ("arch", "standalone_clean_err", "standalone_adv_err")


def _evaluated(run: RunDir, eps: float, steps: int) -> list[dict]:
    """`tamnas evaluate`'s grids at the search attack, one row per evaluated net."""
    from tamnas.analysis.robustness import read_grid

    rows = []
    for path in sorted(run.retrain_root.glob("*/robustness.csv")):
        name = path.parent.name
        scores = path.parent / "scores.json"
        blob = read_json(scores, f"delete it and retrain {name} again") if scores.is_file() else {}
        key = blob.get("arch") if isinstance(blob, dict) else None
        try:
            key = "-".join(map(str, parse_key(key or name)))  # newer folders are named by key
        except ValueError:
            continue  # an older folder (front-3, lego) without scores.json names no arch
        grid = read_grid(path)
        at = grid_scores(grid, eps, steps)
        if at is not None:
            weights = str(grid.attrs.get("weights", ""))
            how = "inherited weights" if weights.startswith("inherited") else "retrained weights"
            rows.append({"arch": key, "label": f"evaluate retrain/{name} ({how})", **at})
    return rows


def _compared(run: RunDir) -> tuple[pd.DataFrame | None, list[str]]:
    """compare's standalone rows (a CSV with arch and standalone errors) and its verdicts."""
    folder = run.compare_dir
    if not folder.is_dir():
        return None, []
    tables = []
    for path in sorted(folder.glob("*.csv")):
        df = pd.read_csv(path)
        if all(c in df.columns for c in STANDALONE):
            tables.append(df.dropna(subset=list(STANDALONE)))
    verdicts: list[str] = []
    for path in sorted(folder.glob("*.json")):
        blob = read_json(path, f"delete it and run `tamnas compare {run.root}` again")
        found = blob.get("verdicts", blob.get("verdict")) if isinstance(blob, dict) else None
        if isinstance(found, str):
            verdicts.append(found)
        elif isinstance(found, dict):
            verdicts += [f"{k}: {v}" for k, v in found.items()]
        elif isinstance(found, list):
            verdicts += [str(v) for v in found]
    return (pd.concat(tables, ignore_index=True) if tables else None), verdicts


def run_info(cfg, run: RunDir) -> dict:
    """`explore_info` of a run, from its files."""
    from tamnas.analysis.export import read_arch_json
    from tamnas.supernets import build_space

    if not run.archive.exists():
        raise FileNotFoundError(f"{run.root} has no search results; run `tamnas search "
                                f"{run.root}` first")
    space = build_space(cfg)
    df = Archive.load(run.search_dir).frame()
    fix = f"delete it and run `tamnas search {run.root}` to write it again"
    gens = read_table(run.generations, ("hv",), fix) if run.generations.is_file() else None
    lego_arch, lego_scores = None, None
    if run.export_json("lego").is_file():
        _, lego_arch, meta = read_arch_json(run.export_json("lego"))
        lego_scores = inherited_scores(meta)
    retrained = read_table(run.retrain_summary, ("name", "arch", "retrained_clean_err",
                                                 "retrained_adv_err"),
                           f"delete it and run `tamnas retrain {run.root}` again") \
        if run.retrain_summary.is_file() else None
    validate_csv = run.validate_dir / "summary.csv"
    validated = read_table(validate_csv, STANDALONE,
                           f"delete it and run `tamnas validate {run.root}` again") \
        if validate_csv.is_file() else None
    compared, verdicts = _compared(run)
    standalone = standalone_rows(retrained=retrained, validated=validated,
                                 evaluated=_evaluated(run, cfg.attack.eps, cfg.attack.steps),
                                 compared=compared)
    return explore_info(space, df, objectives=cfg.search.objectives,
                        run_root=str(run.root.resolve()),  # commands that work from any folder
                        strategy=cfg.search.strategy, title=f"{run.root.name} ({cfg.preset})",
                        lego_arch=lego_arch, lego_scores=lego_scores, generations=gens,
                        standalone=standalone, verdicts=verdicts, top=cfg.output.top_k,
                        top_by=cfg.output.top_by)


def write_explore(cfg, run: RunDir) -> Path:
    """explore.html of a run (from its files); the path written."""
    return write_page(run_info(cfg, run), run.explore_html)


__all__ = ["run_info", "write_explore"]
