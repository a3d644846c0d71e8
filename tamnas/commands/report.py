"""`tamnas report`: gather everything a run produced into report.md."""

from __future__ import annotations

from pathlib import Path

from tamnas.commands import Call, command
from tamnas.rundir import writing
from tamnas.session import open_run, say


def report(run_dir: str | Path, *, quiet: bool = False) -> Path:
    from tamnas.analysis.report import write_report

    run = open_run(run_dir)
    with writing(run.root, "tamnas report", "report"):
        path = write_report(run)
    say(f"report: {path}", quiet)
    return path


@command("report", "gather a run into report.md", "run", options=())
def main(call: Call) -> Path:
    return report(call.args.run, quiet=call.quiet)
