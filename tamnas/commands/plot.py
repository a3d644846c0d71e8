"""`tamnas plot`: the front, the hypervolume curve, per-layer statistics and retraining figures."""

from __future__ import annotations

from pathlib import Path

from tamnas.commands import CONFIG, Call, command
from tamnas.config import Config
from tamnas.files import read_json, read_table
from tamnas.rundir import RunDir, writing
from tamnas.search.archive import Archive, arch_key, front_table
from tamnas.session import open_run, say

SUMMARY_COLUMNS = ("name", "arch", "init", "params", "inherited_clean_err", "inherited_adv_err",
                   "retrained_clean_err", "retrained_adv_err")


def load_search(run: RunDir):
    """The run's archive and generations table; one line if the search never ran."""
    if not run.archive.exists():
        raise FileNotFoundError(f"{run.root} has no search results; run `tamnas search "
                                f"{run.root}` first")
    archive = Archive.load(run.search_dir)
    fix = f"delete it and run `tamnas search {run.root}` to write it again"
    gens = read_table(run.generations, ("generation", "hv"), fix) \
        if run.generations.exists() else None
    return archive, gens


def load_lego(run: RunDir) -> tuple[tuple[int, ...] | None, dict | None]:
    """The LEGO net's genes and its row for the front figure (key and scores), if exported."""
    from tamnas.analysis.export import read_arch_json
    from tamnas.analysis.export_labels import inherited_scores

    if not run.export_json("lego").is_file():
        return None, None
    _, arch, meta = read_arch_json(run.export_json("lego"))
    scores = inherited_scores(meta)
    return arch, {**scores, "arch": arch_key(arch)}


def plot(cfg: Config, run_dir: str | Path, *, quiet: bool = False) -> list[Path]:
    """Every figure and per-layer table of the run; the files written."""
    from tamnas.analysis import fidelity_plots, plots, stats
    from tamnas.supernets import build_space

    run = open_run(run_dir)
    space = build_space(cfg)
    archive, gens = load_search(run)
    retrained = None
    if run.retrain_summary.exists():
        retrained = read_table(run.retrain_summary, SUMMARY_COLUMNS,
                               f"delete it and run `tamnas retrain {run.root}` again")
    # the run's own strategy's front; the archive scatter shows every strategy's archs
    df = archive.frame()
    front = front_table(archive, cfg.search.objectives, strategy=cfg.search.strategy)
    lego_arch, lego_row = load_lego(run)
    fix = f"delete it and run `tamnas search {run.root}` to write it again"
    reference = read_json(run.search_dir / "reference_point.json", fix) \
        if (run.search_dir / "reference_point.json").is_file() else None
    fmts = cfg.output.formats
    with writing(run.root, "tamnas plot", "figures"):
        figs = run.figures_dir
        written = plots.plot_front(df, front, figs / "front", formats=fmts, lego=lego_row,
                                   objectives=cfg.search.objectives)
        if gens is not None and len(gens):
            written += plots.plot_hypervolume(gens, figs / "hypervolume", formats=fmts,
                                              reference=reference)
        top = stats.top_k(front, cfg.output.top_k, by=cfg.output.top_by)
        for kind in sorted({g.kind for g in space.genes}):
            counts = stats.layer_counts(space, top, kind)
            stats.save_table(counts, run.stats_dir / f"{kind}_counts")
            chosen = stats.layer_choices(space, lego_arch, kind) if lego_arch else None
            written += plots.plot_layer_stats(counts, figs / f"layer_{kind}s", formats=fmts,
                                              legal=stats.layer_legal(space, kind), chosen=chosen,
                                              title=f"{kind} choices among the top-{len(top)}")
        if retrained is not None:
            written += plots.plot_retrained(front, retrained, figs / "front_retrained",
                                            formats=fmts)
            if len(retrained) >= 2:
                written += fidelity_plots.plot_inherited_vs_retrained(
                    retrained, figs / "inherited_vs_retrained", formats=fmts)
        written += replot_validate(run, fmts)
    if cfg.output.tensorboard:  # the front beside the search's curves in TensorBoard
        from tamnas.board import Board

        board = Board(run.search_dir, True)
        board.figure("search/front", plots.front_figure(df, front, lego=lego_row,
                                                        objectives=cfg.search.objectives))
        board.close()
    from tamnas.analysis.explore_files import write_explore

    with writing(run.root, "tamnas plot", "explore"):  # the same run in a browser
        written.append(write_explore(cfg, run))
    say(f"plot: wrote {len(written)} files to {figs} and {run.explore_html.name}", quiet)
    return written


def replot_validate(run: RunDir, formats) -> list[Path]:
    """validate.png again from validate's own files, when `tamnas validate` has run."""
    from tamnas.analysis.fidelity_plots import plot_validate

    summary, corr = run.validate_dir / "summary.csv", run.validate_dir / "correlation.json"
    if not (summary.is_file() and corr.is_file()):
        return []
    fix = f"delete it and run `tamnas validate {run.root}` again"
    return plot_validate(read_table(summary, ("params",), fix), read_json(corr, fix),
                         run.figures_dir / "validate", formats=formats)


@command("plot", "fronts, hypervolume curve, per-layer statistics", "run", options=(CONFIG,))
def main(call: Call) -> list[Path]:
    return plot(call.cfg, call.args.run, quiet=call.quiet)
