"""Supernet training (Algorithm 1 of paper 004) and standalone retraining.

Both loops share one epoch function: draw a model (a supernet path or a
standalone net), let the objective run its own forward/backward/step, log
one CSV row per epoch and checkpoint atomically so `--resume` continues a
killed run with the same result.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tamnas import distributed as dist
from tamnas.adversarial import build_objective
from tamnas.config import Config, TrainConfig
from tamnas.data import DataBundle, load_data, make_loader, resident
from tamnas.files import json_safe, load_checkpoint, require_keys, save_checkpoint
from tamnas.progress import progress
from tamnas.rundir import NOT_TRAINING_KEYS, RunDir
from tamnas.sampling import SamplingSchedule
from tamnas.supernets import SearchSpace, build_space
from tamnas.supernets.info import warn_sparse_windows


def lr_at(epoch: int, lr: float, milestones: Iterable[int], gamma: float,
          restart_at: int | None = None, warmup: int = 0) -> float:
    """Step schedule; with `restart_at` the count of passed milestones starts again there.

    `warmup` > 0 scales epoch e < warmup by (e + 1) / (warmup + 1): a linear ramp
    that keeps the first steps of a randomly initialised supernet small.
    """
    start = restart_at if restart_at is not None and epoch >= restart_at else 0
    passed = sum(1 for m in milestones if start < m <= epoch)
    ramp = (epoch + 1) / (warmup + 1) if epoch < warmup else 1.0
    return lr * gamma ** passed * ramp


class CsvLog:
    """Append-only CSV log that survives restarts (rows past a resumed epoch are dropped)."""

    def __init__(self, path: Path, fields: list[str], tensorboard: bool = False):
        from tamnas.board import Board

        self.path, self.fields = path, fields
        self.board = Board(path.parent, tensorboard)  # the same rows as TensorBoard scalars

    def truncate_after(self, epoch: int) -> None:
        if not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
        self._write(rows, "w")

    def append(self, row: dict) -> None:
        self._write([row], "a")
        self.board.scalars(self.path.parent.name, row, int(row["epoch"]))

    def _write(self, rows: list[dict], mode: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = mode == "w" or not self.path.exists()
        with open(self.path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)


LOG_FIELDS = ["epoch", "phase", "lr", "loss", "clean_acc", "adv_acc", "ratios", "batches",
              "seconds"]


def _rng_state(rng: np.random.Generator, gen: torch.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch_gen": gen.get_state(),
            "torch_global": torch.get_rng_state()}


def _restore_rng(state: dict, rng: np.random.Generator, gen: torch.Generator) -> None:
    rng.bit_generator.state = state["numpy"]
    gen.set_state(state["torch_gen"])
    torch.set_rng_state(state["torch_global"])


def run_epochs(*, model_for_batch: Callable[[int, int], nn.Module | list[nn.Module]],
               module: nn.Module, objective, optimizer: torch.optim.Optimizer,
               loader_for_epoch: Callable, epochs: int, lr_for_epoch: Callable[[int], float],
               batches_per_epoch: int,
               checkpoint_path: Path, checkpoint_kind: str, log: CsvLog, device: torch.device,
               rng: np.random.Generator, gen: torch.Generator, resume: bool, quiet: bool,
               extra_row: Callable[[int], dict] | None = None, desc: str = "train",
               sampler_state: tuple[Callable[[], dict], Callable[[dict], None]] | None = None,
               memory_format: torch.memory_format = torch.preserve_format) -> int:
    """The shared epoch loop; returns the number of epochs completed (for logs).

    `model_for_batch` gives one model per batch, or several (the sandwich rule),
    whose gradients are averaged into one optimiser step. `sampler_state`
    (get, set) carries what the caller's sampler holds across epochs (the
    current subnet when it is kept for N epochs) through the checkpoint, so a
    run resumed inside such a block trains the same subnet. Batches are moved
    to `device` in `memory_format` (channels-last on CUDA, see `_memory_format`).
    """
    start = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, kind=checkpoint_kind)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _restore_rng(state["rng"], rng, gen)
        if sampler_state is not None and "sampler" in state:
            sampler_state[1](state["sampler"])
        start = state["epoch"]
    if dist.is_main():
        log.truncate_after(start)
    bar = progress(range(start, epochs), desc=desc, disable=quiet or not dist.is_main(),
                   initial=start, total=epochs, unit="epoch")
    for epoch in bar:
        lr = lr_for_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tic = time.perf_counter()
        sums: dict[str, float] = {}
        n = 0
        for i, (x, y) in enumerate(loader_for_epoch(epoch)):
            if batches_per_epoch and i >= batches_per_epoch:
                break
            model = model_for_batch(epoch, i)
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            if isinstance(model, nn.Module):
                metrics = objective.step(model, x, y, optimizer=optimizer)
            else:
                metrics = _averaged_step(objective, model, x, y, optimizer)
            dist.average_buffers(module)  # one BatchNorm state on every rank (no-op alone)
            if not math.isfinite(float(metrics.get("loss", 0.0))):
                raise ValueError(
                    f"{desc}: the loss is not finite at epoch {epoch + 1}, batch {i + 1} (lr "
                    f"{lr:g}, objective {getattr(objective, 'name', type(objective).__name__)}); "
                    f"training stopped, {checkpoint_path} keeps the last finite epoch: lower the "
                    "lr and start again with --no-resume")
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        if n == 0:
            raise ValueError(f"{desc}: epoch {epoch + 1} had no full batch to train on; the "
                             "training split is smaller than data.batch_size")
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            raise ValueError(f"{desc}: weights are not finite after epoch {epoch + 1} (lr {lr:g}); "
                             f"{checkpoint_path} keeps the last finite epoch: lower the lr and "
                             "start again with --no-resume")
        row = {"epoch": epoch, "lr": lr, "batches": n, "seconds": round(time.perf_counter() - tic, 3)}
        row.update({k: v / max(n, 1) for k, v in dist.average_metrics(sums, n).items()})
        if extra_row:
            row.update(extra_row(epoch))
        if dist.is_main():
            log.append(row)
            extra = {"sampler": sampler_state[0]()} if sampler_state is not None else {}
            save_checkpoint(checkpoint_path, {
                "model": module.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": _rng_state(rng, gen), "epoch": epoch + 1, **extra}, kind=checkpoint_kind)
        dist.barrier()
        bar.set_postfix(loss=f"{row.get('loss', 0):.3f}", acc=f"{row.get('clean_acc', 0):.2f}",
                        adv=f"{row.get('adv_acc', 0):.2f}")
    return epochs - start


def _averaged_step(objective, models: list[nn.Module], x: torch.Tensor, y: torch.Tensor,
                   optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One optimiser step on the mean gradient of several paths (the sandwich rule)."""
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    for model in models:
        for k, v in objective.step(model, x, y).items():  # backward only: gradients add up
            sums[k] = sums.get(k, 0.0) + v
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.div_(len(models))
    optimizer.step()
    return {k: v / len(models) for k, v in sums.items()}


def _sgd(params, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return dist.GradAveragingSGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _train_loader(cfg: Config, train_set: Dataset, epoch: int):
    """A fresh shuffle per epoch from (seed, epoch): resumable, and the same on every rank.

    Under torchrun each rank takes data.batch_size // world_size images of
    every global batch, so the ranks' batches together are the one-process
    batch (a batch size that is no multiple of the world size loses the
    remainder; crop/flip augmentation is drawn per rank).
    """
    per_rank = cfg.data.batch_size // dist.world_size()
    if per_rank < 1:
        raise ValueError(f"data.batch_size: {cfg.data.batch_size} is smaller than the "
                         f"{dist.world_size()} ranks; use at least {dist.world_size()}")
    return make_loader(train_set, per_rank, shuffle=True,
                       seed=cfg.seed * 100_003 + epoch, num_workers=cfg.data.num_workers,
                       drop_last=True, rank=dist.rank(), world_size=dist.world_size())


def _memory_format(train_cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """channels_last on CUDA when train.channels_last (cuDNN's fast layout); CPU stays as it was."""
    if device.type == "cuda" and train_cfg.channels_last:
        return torch.channels_last
    return torch.preserve_format


def _generators(seed: int, device: torch.device) -> tuple[np.random.Generator, torch.Generator]:
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator(device="cpu").manual_seed(seed + 1)


def check_training_split(cfg: Config, data: DataBundle) -> None:
    """One line before any work if the training split yields no full batch (drop_last)."""
    n, b = len(data.train), cfg.data.batch_size
    if n < b:
        limit = f", data.train_limit {cfg.data.train_limit}" if cfg.data.train_limit else ""
        raise ValueError(f"data.batch_size {b} is larger than the {n} training images left "
                         f"(data.val_size {cfg.data.val_size} held out{limit}): no full batch "
                         "to train on; lower data.batch_size or data.val_size")


def train_supernet(cfg: Config, run: RunDir, device: torch.device, *, data: DataBundle | None = None,
                   resume: bool = True, quiet: bool = False) -> nn.Module:
    """Algorithm 1: train the weight-sharing supernet with sampled paths; returns the supernet."""
    space = build_space(cfg)
    data = data if data is not None else load_data(cfg.data, cfg.seed)
    check_training_split(cfg, data)
    rng, gen = _generators(cfg.seed, device)
    supernet = space.build_supernet().to(device)
    dist.broadcast_module(supernet)
    layout = _memory_format(cfg.train, device)
    supernet.to(memory_format=layout)
    train_set = resident(data.train, device)   # on CUDA: images in device memory when they fit
    objective = build_objective(cfg.train, generator=gen)
    optimizer = _sgd(supernet.parameters(), cfg.train.lr, cfg.train.momentum, cfg.train.weight_decay)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    if dist.is_main():
        warn_sparse_windows(schedule)  # rejection sampling crawls in a window few subnets reach
    current: dict = {}

    def model_for_batch(epoch: int, i: int) -> nn.Module | list[nn.Module]:
        # Every rank draws from the same generator, so all ranks train the same path.
        if "archs" not in current or schedule.resample_now(epoch, i):
            current["archs"] = (schedule.sandwich(rng, epoch) if cfg.train.sandwich
                                else [schedule.sample(rng, epoch)])
        paths = [supernet.path(a) for a in current["archs"]]
        return paths if cfg.train.sandwich else paths[0]

    restart = cfg.train.phase1_epochs if cfg.train.phase2_lr_reset else None
    run_epochs(
        model_for_batch=model_for_batch, module=supernet, objective=objective, optimizer=optimizer,
        loader_for_epoch=lambda e: _train_loader(cfg, train_set, e), epochs=schedule.total_epochs,
        lr_for_epoch=lambda e: lr_at(e, cfg.train.lr, cfg.train.lr_milestones, cfg.train.lr_gamma,
                                     restart, cfg.train.warmup_epochs),
        batches_per_epoch=cfg.train.batches_per_epoch, checkpoint_path=run.supernet_checkpoint,
        checkpoint_kind="supernet", log=CsvLog(run.supernet_log, LOG_FIELDS,
                                               cfg.output.tensorboard), device=device,
        rng=rng, gen=gen, resume=resume, quiet=quiet, desc="supernet", memory_format=layout,
        sampler_state=(lambda: {k: [list(a) for a in v] for k, v in current.items()},
                       lambda s: current.update({k: [tuple(int(g) for g in a) for a in v]
                                                 for k, v in s.items()})),
        extra_row=lambda e: {"phase": schedule.phase(e),
                             "ratios": " ".join(map(str, schedule.ratio_values(e)))})
    return supernet


def load_trained_supernet(cfg: Config, run: RunDir, device: torch.device) -> tuple[SearchSpace, nn.Module]:
    """The space and the supernet weights of a finished (or partial) training run."""
    if not run.supernet_checkpoint.exists():
        raise FileNotFoundError(f"{run.root} has no trained supernet ({run.supernet_checkpoint}); "
                                f"run `tamnas train-supernet` first")
    space = build_space(cfg)
    supernet = space.build_supernet()
    state = load_checkpoint(run.supernet_checkpoint, kind="supernet")
    require_keys(state, ("model", "epoch"), run.supernet_checkpoint)
    try:
        supernet.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"{run.supernet_checkpoint} does not fit the space in {run.config} "
                         f"({str(e).splitlines()[0]})") from None
    bad = [k for k, v in supernet.state_dict().items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{run.supernet_checkpoint} holds non-finite weights ({bad[0]}"
                         f"{' ...' if len(bad) > 1 else ''}); its training diverged: train it "
                         "again with a lower train.lr (--no-resume)")
    return space, supernet.to(device).eval()


# Train keys that shape only the supernet's training; the rest (objective, eps, ...) retrains too.
SUPERNET_ONLY_TRAIN_KEYS = frozenset({
    "phase1_epochs", "phase2_epochs", "batches_per_epoch", "lr", "momentum", "weight_decay",
    "lr_milestones", "lr_gamma", "phase2_lr_reset", "params_range_phase1", "params_range_phase2",
    "enlarge_every", "resample_every", "adversary_bn", "sandwich", "block_enlarge_every",
    "warmup_epochs"})


def standalone_recipe(cfg: Config, arch, seed: int) -> dict:
    """Everything a standalone training's result depends on (validate's and retrain's)."""
    d = cfg.to_dict()
    data = {k: v for k, v in d["data"].items() if k not in NOT_TRAINING_KEYS}
    train = {k: v for k, v in d["train"].items() if k not in SUPERNET_ONLY_TRAIN_KEYS}
    return json.loads(json.dumps(json_safe({
        "arch": list(arch), "seed": int(seed), "data": data, "space": d["space"],
        "train": train, "retrain": d["retrain"], "attack": d["attack"]})))


def retrain(cfg: Config, space: SearchSpace, arch, out_dir: Path, device: torch.device, *,
            init_state: dict | None = None, data: DataBundle | None = None, resume: bool = True,
            quiet: bool = False, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """Train the standalone net of `arch` (from scratch, or from `init_state`, e.g. extract(arch)).

    `build`: make and train this module instead of the space's net of `arch` (a
    baseline outside the space, e.g. `supernets.plain.PlainNet`), with the same
    recipe. It is called after the seed is set, like the space's nets, so its
    initial weights are the seed's, not whatever the process drew before.
    """
    data = data if data is not None else load_data(cfg.data, cfg.seed)
    check_training_split(cfg, data)
    rng, gen = _generators(cfg.seed, device)
    net = build() if build is not None else space.build_standalone(arch)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device)
    dist.broadcast_module(net)
    layout = _memory_format(cfg.train, device)
    net.to(memory_format=layout)
    train_set = resident(data.train, device)
    r = cfg.retrain
    objective = build_objective(dataclasses.replace(cfg.train, adversary_bn=r.adversary_bn),
                                generator=gen)
    optimizer = _sgd(net.parameters(), r.lr, r.momentum, r.weight_decay)

    run_epochs(
        model_for_batch=lambda e, i: net, module=net, objective=objective,
        optimizer=optimizer, loader_for_epoch=lambda e: _train_loader(cfg, train_set, e),
        epochs=r.epochs,
        lr_for_epoch=lambda e: lr_at(e, r.lr, r.lr_milestones, r.lr_gamma),
        batches_per_epoch=r.batches_per_epoch, checkpoint_path=out_dir / "checkpoint.pt",
        checkpoint_kind="retrain",
        log=CsvLog(out_dir / "train_log.csv", LOG_FIELDS, cfg.output.tensorboard),
        device=device, rng=rng, gen=gen, resume=resume, quiet=quiet, desc="retrain",
        extra_row=lambda e: {"phase": 0}, memory_format=layout)
    return net.eval()
