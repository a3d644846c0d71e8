"""`tamnas search`: score the supernet's subnets and keep the Pareto front (any registered strategy)."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd
import torch

from tamnas import distributed as dist
from tamnas.commands import ON_WEIGHTS, Call, command
from tamnas.config import Config, record_sections, save_config
from tamnas.rundir import move_aside, stamp, writing
from tamnas.session import Session, open_run, say

# The sections whose settings produce search results; config.toml keeps the search's.
SEARCH_SECTIONS = ("search", "attack")


def search(cfg: Config, run_dir: str | Path, *, strategy: str | None = None,
           targets: list[float] | None = None, device: torch.device, quiet: bool = False,
           resume: bool = True, data=None, partial: bool = False) -> pd.DataFrame:
    """Search the run's supernet with `strategy` (default: search.strategy); the front."""
    from tamnas.analysis.stats import arch_labels
    from tamnas.checks import preflight
    from tamnas.search.nsga2 import format_front_table
    from tamnas.search.strategy import get_strategy

    run = open_run(run_dir)
    preflight(cfg)
    recorded = cfg  # --set overrides of the search go on record; --strategy/--targets stay one-off
    if strategy is not None or targets is not None:
        cfg = copy.deepcopy(cfg)
        cfg.search.strategy = strategy or cfg.search.strategy
        if targets is not None:
            cfg.search.mgda_targets = list(targets)
    strategy_cls = get_strategy(cfg.search.strategy)
    with writing(run.root, "tamnas search", "search", enabled=dist.is_main()):
        # MGDA trains the weights itself, from the supernet checkpoint; the others score searched ones.
        session = Session.open(cfg, run, device, quiet=quiet, fresh_archive=not resume,
                               data=data, stale="rebuild", partial=partial,
                               searched=cfg.search.strategy != "mgda")
        if not resume and dist.is_main():
            moved = move_aside(run, ("search",))
            if moved is not None:
                say(f"note: --no-resume: moved the previous search results to {moved}")
        runner = strategy_cls(session.space, session.evaluator, cfg, run.search_dir,
                              seed=cfg.seed, quiet=quiet, resume=resume)
        runner.run_strategy = recorded.search.strategy  # another one writes its own front file
        runner.check_resume()  # a refused resume rewrites nothing, not even search/config.toml
        if dist.is_main():
            save_config(cfg, run.search_config)  # this call's settings, beside its results
        say(f"search: {cfg.search.strategy} over {session.space.name} -> {run.search_dir}", quiet)
        front = runner.run()
        if dist.is_main():
            stamp(runner.front_path, session.fingerprint)
            record_sections(run.config, recorded, SEARCH_SECTIONS)
    s = session.evaluator.stats
    say(f"search: {len(session.archive)} archs in the archive, {s['evaluations']} scored now, "
        f"{s['cache_hits']} cache hits, {s['seconds']:.1f} s scoring")
    say(f"front of {len(front)}: inherited-weight errors on {cfg.search.eval_images} validation "
        "images, ± one standard error; pass a row's front:K to --arch")
    say(format_front_table(front, cfg.search.objectives,
                           layers=arch_labels(session.space, front)))
    return front


def _targets(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"--targets {text!r}: give comma-separated parameter counts, "
                         "e.g. 150000,250000") from None


def _arguments(p: argparse.ArgumentParser) -> None:
    from tamnas.search.strategy import strategy_names

    p.add_argument("--strategy", choices=strategy_names(), default=None,
                   help="search strategy for this call: nsga2 (evolutionary, the paper's), random "
                        "(uniform samples, the baseline to beat) or mgda (gradient search on the "
                        "relaxed supernet); default: search.strategy of the run")
    p.add_argument("--targets", default=None, metavar="P1,P2,...",
                   help="MGDA: comma-separated parameter targets, one search each")


@command("search", "search the trained supernet for the Pareto front", "run",
         arguments=_arguments, options=ON_WEIGHTS,
         check=lambda args: _targets(args.targets))
def main(call: Call) -> pd.DataFrame:
    return search(call.cfg, call.args.run, strategy=call.args.strategy,
                  targets=_targets(call.args.targets), device=call.device, quiet=call.quiet,
                  resume=call.resume, partial=call.args.partial_supernet)
