"""`tamnas space-info`: a preset's space: size, genes, params/FLOPs of sampled subnets."""

from __future__ import annotations

import argparse

import numpy as np

from tamnas.commands import CONFIG, DATA, Call, command
from tamnas.config import Config, preset_names


def space_info(cfg: Config, n_samples: int = 500) -> str:
    """The space report of a config, as text."""
    from tamnas.sampling import SamplingSchedule
    from tamnas.supernets import build_space
    from tamnas.supernets.info import format_space_info
    from tamnas.supernets.info import space_info as info

    if n_samples < 1:
        raise ValueError(f"--samples {n_samples}: give 1 or more subnets to sample")
    space = build_space(cfg)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    return format_space_info(info(space, np.random.default_rng(cfg.seed), n_samples=n_samples,
                                  schedule=schedule))


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--samples", type=int, default=500, metavar="N",
                   help="subnets sampled for the params/FLOPs statistics (default: 500)")


@command("space-info", "space size, gene table, params/FLOPs of sampled subnets", "preset",
         arguments=_arguments, options=(CONFIG, DATA),
         description="Describe a preset's search space: how many archs it holds, its genes and "
                     "their choices, and the parameter/FLOP spread of uniformly sampled subnets "
                     "against the training windows.")
def main(call: Call) -> str:
    if call.args.list:
        text = "\n".join(preset_names())
    else:
        text = space_info(call.cfg, n_samples=call.args.samples)
    print(text)
    return text
