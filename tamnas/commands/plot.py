"""`tamnas plot`: the front, the hypervolume curve, per-layer statistics and retraining figures."""

from __future__ import annotations

from pathlib import Path

from tamnas.commands import CONFIG, Call, command
from tamnas.config import Config
from tamnas.files import read_table
from tamnas.rundir import RunDir, writing
from tamnas.search.archive import Archive, front_table
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


def plot(cfg: Config, run_dir: str | Path, *, quiet: bool = False) -> list[Path]:
    """Every figure and per-layer table of the run; the files written."""
    from tamnas.analysis import plots, stats
    from tamnas.supernets import build_space

    run = open_run(run_dir)
    space = build_space(cfg)
    archive, gens = load_search(run)
    retrained = None
    if run.retrain_summary.exists():
        retrained = read_table(run.retrain_summary, SUMMARY_COLUMNS,
                               f"delete it and run `tamnas retrain {run.root}` again")
    df, front = archive.frame(), front_table(archive, cfg.search.objectives)
    fmts = cfg.output.formats
    with writing(run.root, "tamnas plot", "figures"):
        figs = run.figures_dir
        written = plots.plot_front(df, front, figs / "front", formats=fmts)
        if gens is not None and len(gens):
            written += plots.plot_hypervolume(gens, figs / "hypervolume", formats=fmts)
        top = stats.top_k(front, cfg.output.top_k, by=cfg.output.top_by)
        for kind in sorted({g.kind for g in space.genes}):
            counts = stats.layer_counts(space, top, kind)
            stats.save_table(counts, run.stats_dir / f"{kind}_counts")
            written += plots.plot_layer_stats(counts, figs / f"layer_{kind}s", formats=fmts,
                                              title=f"{kind} choices among the top-{len(top)}")
        if retrained is not None:
            written += plots.plot_retrained(front, retrained, figs / "front_retrained",
                                            formats=fmts)
            if len(retrained) >= 2:
                written += plots.plot_inherited_vs_retrained(
                    retrained, figs / "inherited_vs_retrained", formats=fmts)
    say(f"plot: wrote {len(written)} files to {figs}", quiet)
    return written


@command("plot", "fronts, hypervolume curve, per-layer statistics", "run", options=(CONFIG,))
def main(call: Call) -> list[Path]:
    return plot(call.cfg, call.args.run, quiet=call.quiet)
