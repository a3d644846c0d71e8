"""`tamnas train-supernet`: Algorithm 1, the weight-sharing supernet trained with sampled paths."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tamnas import distributed as dist
from tamnas.checks import check_data, fit_to_data, preflight
from tamnas.commands import Call, command
from tamnas.config import Config, save_config
from tamnas.files import atomic_write_json, read_json, save_checkpoint
from tamnas.rundir import (
    RunDir,
    move_aside,
    record_training_settings,
    recorded_training_settings,
    settings_diff,
    training_settings,
    writing,
)
from tamnas.session import one_shot_epochs, say, supernet_epochs_done


def prepare_run(cfg: Config, run: RunDir, resume: bool, quiet: bool = False,
                data=None) -> None:
    """Write the run's config and data record; refuse to mix training settings or data on
    resume.

    `resume=False` moves the results already there into `previous/N/` rather
    than overwriting them, so a new run starts clean and nothing stale survives.
    """
    from tamnas.data.record import check_data_record, data_record

    trained = resume and run.supernet_checkpoint.exists()
    if run.config.exists() and trained:
        saved = recorded_training_settings(run)
        diff = settings_diff(saved, training_settings(cfg)) if saved is not None else []
        if diff:
            raise ValueError(f"{run.root} holds a run with other training settings ({diff[0]}"
                             f"{' ...' if len(diff) > 1 else ''}); pass --no-resume to start over "
                             "or choose another --out")
        if run.data_record.exists():
            check_data_record(read_json(run.data_record, fix=NEW_RUN), cfg.data)
    if dist.is_main():
        if not resume:
            moved = move_aside(run)
            if moved is not None:
                say(f"note: --no-resume: moved the previous results of {run.root} to {moved}")
        if not run.supernet_checkpoint.exists():
            record_training_settings(run, cfg)
        save_config(cfg, run.config)
        if data is not None and not (trained and run.data_record.exists()):
            atomic_write_json(run.data_record, data_record(cfg.data, data))
    dist.barrier()


NEW_RUN = "start the run again with `tamnas run PRESET --out DIR --no-resume`"


def _initial_supernet(cfg: Config, run: RunDir) -> None:
    """The supernet checkpoint at epoch 0: seeded initial weights for a search that trains them."""
    from tamnas.supernets import build_space

    torch.manual_seed(cfg.seed)
    net = build_space(cfg).build_supernet()
    if dist.is_main():
        save_checkpoint(run.supernet_checkpoint, {"model": net.state_dict(), "epoch": 0},
                        kind="supernet")
    dist.barrier()


def train_supernet(cfg: Config, out: str | Path, *, device: torch.device, quiet: bool = False,
                   resume: bool = True, data=None, sources: dict | None = None) -> RunDir:
    """Train (or resume) the run's supernet in `out`; the run directory. Without `data`, the
    data is read and the image counts fitted to it (`sources`: see `run`)."""
    from tamnas.train import train_supernet as train

    preflight(cfg)
    if data is None:
        cfg, data = fit_to_data(cfg, sources, quiet)  # before any file exists
    else:
        check_data(cfg, data)
    with writing(out, "tamnas train-supernet", enabled=dist.is_main()) as run:
        prepare_run(cfg, run, resume, quiet, data=data)
        total = one_shot_epochs(cfg)
        done = supernet_epochs_done(run) if resume else 0
        if total == 0:  # no one-shot stage (the DARTS presets): the MGDA search trains the weights
            if not run.supernet_checkpoint.exists():
                _initial_supernet(cfg, run)
            say("supernet: no one-shot training (train.phase1/2_epochs = 0); the search trains "
                "the weights from their initial values", quiet)
            return run
        if done >= total:
            say(f"supernet: complete ({done} epochs) in {run.supernet_checkpoint}", quiet)
            return run
        say(f"supernet: training epochs {done + 1}-{total} on {device} -> {run.supernet_dir}",
            quiet)
        train(cfg, run, device, data=data, resume=resume, quiet=quiet)
    return run


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory to create or resume")


@command("train-supernet", "train the weight-sharing supernet (Algorithm 1)", "preset",
         arguments=_arguments)
def main(call: Call) -> RunDir:
    return train_supernet(call.cfg, call.args.out, device=call.device, quiet=call.quiet,
                          resume=call.resume, sources=call.sources)
