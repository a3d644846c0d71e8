"""`tamnas run`: the main job, chaining supernet -> search -> LEGO export -> plots -> report."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tamnas import distributed as dist
from tamnas.checks import fit_to_data, preflight
from tamnas.commands import Call, command
from tamnas.commands.lego import lego
from tamnas.commands.plot import plot
from tamnas.commands.report import report
from tamnas.commands.search import search
from tamnas.commands.train_supernet import train_supernet
from tamnas.config import Config
from tamnas.progress import Stages
from tamnas.rundir import RunDir, writing


def run(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
        resume: bool = True, sources: dict | None = None) -> RunDir:
    """The main job on a preset: every stage in order; a finished stage is skipped on resume.
    `sources` ({key: where its value came from}) tells the preset's image counts, which are
    fitted to the data, from those the user set, which must fit."""
    preflight(cfg)
    cfg, data = fit_to_data(cfg, sources, quiet)  # a missing dataset stops here, before --out
    stages = Stages(stage_work(cfg, data), "run", quiet=quiet or not dist.is_main())
    with writing(out, "tamnas run", enabled=dist.is_main()):
        with stages.stage("supernet"):
            run_dir = train_supernet(cfg, out, device=device, quiet=quiet, resume=resume,
                                     data=data)
        with stages.stage("search"):
            search(cfg, run_dir.root, device=device, quiet=quiet, resume=resume, data=data)
        if dist.is_main():
            with dist.local_only():  # the other ranks are done: no collective may wait for them
                with stages.stage("lego"):
                    lego(cfg, run_dir.root, device=device, quiet=quiet, data=data)
                with stages.stage("plots and report"):
                    plot(cfg, run_dir.root, quiet=quiet)
                    report(run_dir.root, quiet=quiet)
    return run_dir


def stage_work(cfg: Config, data) -> list[tuple[str, float]]:
    """The work each stage of `run` is expected to do, in image passes (a backward pass
    counting two), for the overall ETA; the pace measured so far turns it into time."""
    t, s = cfg.train, cfg.search
    batches = len(data.train) // cfg.data.batch_size
    if t.batches_per_epoch:
        batches = min(batches, t.batches_per_epoch)
    supernet = (t.phase1_epochs + t.phase2_epochs) * batches * cfg.data.batch_size \
        * 3 * (t.yopo_m + 1)
    per_arch = s.bn_images + s.eval_images * (1 + 3 * cfg.attack.steps)
    searched = (s.pop_size + s.n_offsprings * s.generations) * per_arch
    lego_work = per_arch + len(data.test) * (1 + 3 * cfg.attack.steps)
    return [("supernet", supernet), ("search", searched), ("lego", lego_work),
            ("plots and report", 0.02 * (supernet + searched))]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory to create or resume")


@command("run", "the main job: supernet -> search -> LEGO export -> plots -> report", "preset",
         arguments=_arguments)
def main(call: Call) -> RunDir:
    return run(call.cfg, call.args.out, device=call.device, quiet=call.quiet, resume=call.resume,
               sources=call.sources)
