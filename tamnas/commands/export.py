"""`tamnas export`: an arch of the run as JSON + standalone PyTorch weights (+ ONNX)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tamnas import distributed as dist
from tamnas.commands import (
    COMPUTE,
    CONFIG,
    DATA,
    PARTIAL,
    Call,
    add_arch_argument,
    check_arch_argument,
    command,
    write_export,
)
from tamnas.config import Config
from tamnas.rundir import writing
from tamnas.session import Session, open_run, say


def export(cfg: Config, run_dir: str | Path, *, arch: str, fmt: str = "torch",
           weights: str | None = None, device: torch.device, quiet: bool = False,
           partial: bool = False) -> dict:
    """Export the arch `arch` selects to exports/KEY; the paths written."""
    run = open_run(run_dir)
    session = Session.open(cfg, run, device, quiet=quiet, partial=partial)
    a, name = session.resolve_arch(arch)
    if weights is None:
        weights = "retrained" if session.retrained_fresh(name) else "inherited"
    elif weights == "retrained":
        session.check_retrained(name)
    with writing(run.root, "tamnas export", f"exports/{name}", enabled=dist.is_main()):
        paths = write_export(session, a, name, weights=weights, fmt=fmt,
                             extra={"selector": arch})
    say("export: " + ", ".join(str(p) for p in paths.values()))
    return paths


def _arguments(p: argparse.ArgumentParser) -> None:
    add_arch_argument(p)
    p.add_argument("--format", choices=("torch", "onnx"), default="torch",
                   help="torch: arch JSON + state dict (.pt); onnx: also an .onnx file checked "
                        "against PyTorch (needs pip install 'tamnas[onnx]')")
    p.add_argument("--weights", choices=("inherited", "retrained"), default=None,
                   help="inherited (from the supernet, BN recalibrated) or retrained (from "
                        "retrain/NAME); default: retrained when present and fresh")


@command("export", "arch JSON + standalone PyTorch weights (+ ONNX)", "run", arguments=_arguments,
         options=(CONFIG, COMPUTE, DATA, PARTIAL), check=check_arch_argument)
def main(call: Call) -> dict:
    return export(call.cfg, call.args.run, arch=call.args.arch, fmt=call.args.format,
                  weights=call.args.weights, device=call.device, quiet=call.quiet,
                  partial=call.args.partial_supernet)
