"""`tamnas explore`: the run's front in a browser, one self-contained explore.html."""

from __future__ import annotations

from pathlib import Path

from tamnas.commands import CONFIG, Call, command
from tamnas.config import Config
from tamnas.rundir import writing
from tamnas.session import open_run, say


def explore(cfg: Config, run_dir: str | Path, *, quiet: bool = False) -> Path:
    """Write RUN/explore.html from the run's tables; its path."""
    from tamnas.analysis.explore_files import write_explore

    run = open_run(run_dir)
    with writing(run.root, "tamnas explore", "explore"):
        path = write_explore(cfg, run)
    say(f"explore: {path} ({path.stat().st_size / 1e6:.1f} MB; open it in a browser, no server "
        "needed)", quiet)
    return path


@command("explore", "the front in a browser: explore.html, self-contained", "run",
         options=(CONFIG,),
         description="Write RUN/explore.html: the archive and each strategy's front with axis "
                     "selectors, hover and click details (with the commands to retrain, evaluate "
                     "and export an arch), budget filters, standalone results, the hypervolume "
                     "curve and per-layer choices. plotly.js is embedded; it opens from disk.")
def main(call: Call) -> Path:
    return explore(call.cfg, call.args.run, quiet=call.quiet)
