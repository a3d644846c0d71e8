"""`tamnas lego`: the LEGO net, per layer the most frequent choice among the front's top-k."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tamnas import distributed as dist
from tamnas.commands import COMPUTE, CONFIG, DATA, PARTIAL, Call, command, write_export
from tamnas.config import Config
from tamnas.files import atomic_write_text
from tamnas.rundir import writing
from tamnas.session import Session, open_run, say


def check_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise ValueError(f"--top {top}: give the number of front members to use, 1 or more")


def lego(cfg: Config, run_dir: str | Path, *, top: int | None = None, device: torch.device,
         quiet: bool = False, data=None, partial: bool = False) -> Path:
    """Build, score (into the archive) and export the LEGO net; its arch JSON."""
    check_top(top)
    run = open_run(run_dir)
    top = top or cfg.output.top_k
    # It adds its scores to the archive, so it excludes a search; the export is its own.
    with writing(run.root, "tamnas lego", "search", enabled=dist.is_main()):
        session = Session.open(cfg, run, device, quiet=quiet, data=data, partial=partial)
        arch = session.lego(top)
        scores = session.evaluator.evaluate([arch], strategy="lego")[0]
        if dist.is_main():
            session.archive.save(run.search_dir)
        paths = write_export(session, arch, "lego", extra={"lego": {
            "top_k": top, "top_by": cfg.output.top_by, "objectives": cfg.search.objectives}})
        net = session.space.build_standalone(arch)
        net.load_state_dict(session.evaluator.calibrated_state(arch))
        per_class = session.per_class_on_test(net)
        if dist.is_main():
            atomic_write_text(run.per_class("lego", retrained=False),
                              per_class.to_csv(index=False, float_format="%.10g"))
    say(f"lego: {'-'.join(map(str, arch))}  params {scores['params']:,}  clean err "
        f"{scores['clean_err']:.3f}  adv err {scores['adv_err']:.3f} -> {paths['json']}")
    return paths["json"]


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top", type=int, default=None, metavar="K",
                   help="use the K best front members by output.top_by (default: output.top_k)")


@command("lego", "the LEGO net from the front's most frequent choices", "run",
         arguments=_arguments, options=(CONFIG, COMPUTE, DATA, PARTIAL),
         check=lambda args: check_top(args.top))
def main(call: Call) -> Path:
    return lego(call.cfg, call.args.run, top=call.args.top, device=call.device, quiet=call.quiet,
                partial=call.args.partial_supernet)
