"""The commands of the CLI, registered by name; `cli.py` builds one subcommand per entry.

Each module here is one command: a plain function a Python user can call and
a `main(call)` that the CLI dispatches to, registered with `@command`.
Commands never call each other; only `run` chains them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# Common option groups a command may take (the CLI adds only those that mean something there).
CONFIG, COMPUTE, DATA, RESUME, PARTIAL = "config", "compute", "data", "resume", "partial"
ALL_OPTIONS = (CONFIG, COMPUTE, DATA, RESUME)
ON_WEIGHTS = (*ALL_OPTIONS, PARTIAL)  # commands that score or derive from the supernet
MODULES = ("run", "train_supernet", "search", "plot", "lego", "export", "retrain", "evaluate",
           "validate", "compare", "report", "space_info", "config_keys", "explore", "latency")


@dataclass
class Call:
    """One command invocation: its config (run's record + this call's overrides) and options."""

    cfg: Any
    args: argparse.Namespace
    device: torch.device | None = None
    quiet: bool = False
    resume: bool = True
    sources: dict | None = None   # {key: default|preset|run|--config|--set...}: where values came from


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    target: str                               # "preset", "run" or "none"
    main: Callable[[Call], Any]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    options: tuple[str, ...] = field(default=ALL_OPTIONS)
    description: str = ""
    check: Callable[[argparse.Namespace], None] | None = None  # the arguments, before any work


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, target: str, *,
            arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            options: tuple[str, ...] = ALL_OPTIONS, description: str = "",
            check: Callable[[argparse.Namespace], None] | None = None) -> Callable:
    """Register `main(call)` as the CLI command `name`; `check(args)` runs before the config
    is read, so a bad argument is refused before anything else."""

    def wrap(main: Callable[[Call], Any]) -> Callable[[Call], Any]:
        COMMANDS[name] = Command(name, help, target, main, arguments, options,
                                 description or help, check)
        return main

    return wrap


def add_arch_argument(p: argparse.ArgumentParser, default: str | None = "lego") -> None:
    """`--arch SPEC`, the way every command names an arch of the run (analysis/selector.py)."""
    from tamnas.analysis.selector import SELECTOR_HELP

    p.add_argument("--arch", default=default, metavar="SPEC",
                   help=f"{SELECTOR_HELP} (default: {default or 'every retrained net'}); quote "
                        "rules with < in them")


def check_arch_argument(args: argparse.Namespace) -> None:
    """A malformed --arch is one line before any work."""
    from tamnas.analysis.selector import parse_selector

    if getattr(args, "arch", None) is not None:
        parse_selector(args.arch)


def write_export(session, arch, name: str, weights: str = "inherited", fmt: str = "torch",
                 extra: dict | None = None) -> dict:
    """Export `arch` of a run (inherited or retrained weights) with every score known for those
    weights, each labelled with its source, split and standard error, and the input the net
    expects; the paths written (rank 0 writes)."""
    from tamnas import distributed as dist
    from tamnas.analysis.export import export_arch
    from tamnas.files import load_checkpoint
    from tamnas.rundir import stamp

    if weights == "retrained":
        state = load_checkpoint(session.check_retrained(name), kind="standalone_weights")
    else:
        state = session.evaluator.calibrated_state(arch)
    res = session.cfg.data.resolution
    channels = session.data.info.in_channels
    shape = (1, channels, res, res)
    scores, convention = export_labels(session, arch, name, weights)
    paths = export_arch(session.space, arch, session.run.exports_dir, name, state_dict=state,
                        scores=scores, onnx=fmt == "onnx", example_input_shape=shape,
                        extra={"weights_source": weights,
                               "weights_fingerprint": session.evaluator.weights,
                               "input": convention, **(extra or {})})
    if dist.is_main():
        stamp(paths["json"], session.fingerprint)
    return paths


def export_labels(session, arch, name: str, weights: str) -> tuple[dict, dict]:
    """(scores by source, input convention) of an export: the inherited scores always; the
    retrained and evaluated ones when they were measured on the weights being exported."""
    from tamnas.analysis import robustness
    from tamnas.analysis.export_labels import (
        evaluated_entry,
        inherited_entry,
        input_convention,
        retrained_entry,
    )
    from tamnas.data.record import RESIZE
    from tamnas.files import file_digest, read_json

    inherited = session.evaluator.evaluate([arch])[0]
    scores = {"inherited": inherited_entry(inherited),
              "params": inherited.get("params"), "flops": inherited.get("flops")}
    folder = session.run.retrain_dir(name)
    if weights == "retrained":
        scores["retrained"] = retrained_entry(read_json(folder / "scores.json",
                                                        f"delete it and retrain {name} again"))
        made_by = f"retrained:{file_digest(folder / 'model.pt')}"
    else:
        made_by = f"inherited:{session.fingerprint}"
    grid_path = folder / "robustness.csv"
    if grid_path.is_file():
        grid = robustness.read_grid(grid_path)
        if grid.attrs.get("weights") == made_by:
            attack = session.cfg.attack
            scores["evaluated"] = evaluated_entry(grid, attack.eps, attack.steps,
                                                  f"retrain/{name}/robustness.csv")
    res = session.cfg.data.resolution
    convention = input_convention(session.data.info.in_channels, res, RESIZE.format(res=res))
    return {k: v for k, v in scores.items() if v is not None}, convention


def load_commands() -> dict[str, Command]:
    """Import every command module (registration happens on import), in CLI order."""
    for module in MODULES:
        importlib.import_module(f"tamnas.commands.{module}")
    order = [m.replace("_", "-") for m in MODULES]
    return dict(sorted(COMMANDS.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                       else len(order)))


__all__ = ["ALL_OPTIONS", "COMMANDS", "COMPUTE", "CONFIG", "DATA", "ON_WEIGHTS", "PARTIAL", "RESUME", "Call", "Command",
           "add_arch_argument", "check_arch_argument", "command", "export_labels",
           "load_commands",
           "write_export"]
