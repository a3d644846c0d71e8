"""`tamnas validate`: does the supernet rank archs as standalone training does?

N archs are drawn spread over the space by parameter count (not from the
front), each is retrained standalone with the run's retrain recipe (one folder
per arch and seed under RUN/validate/, resumable; under torchrun the archs are
split over the ranks) and scored twice through the one Evaluator: with
inherited weights and standalone, on the same validation images with the same
per-arch attack. The statistics are in `rank_fidelity`.
"""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tamnas import distributed as dist
from tamnas.analysis import rank_fidelity
from tamnas.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_safe,
    save_checkpoint,
)
from tamnas.metrics import binomial_se
from tamnas.search.archive import arch_key
from tamnas.supernets.base import Arch, SearchSpace

DIR_NAME = "validate"
MIN_ARCHS = 3           # fewer archs have no rank correlation worth a number
MIN_BOOTSTRAP = 100     # fewer resamples give no 95% interval
SEED_CHOICES = (1, 2)
# Train keys that shape only the supernet's training; the rest (objective, eps, ...) retrains too.
SUPERNET_ONLY_TRAIN_KEYS = frozenset({
    "phase1_epochs", "phase2_epochs", "batches_per_epoch", "lr", "momentum", "weight_decay",
    "lr_milestones", "lr_gamma", "phase2_lr_reset", "params_range_phase1", "params_range_phase2",
    "enlarge_every", "resample_every", "adversary_bn", "sandwich", "block_enlarge_every",
    "warmup_epochs"})
OBJECTIVES = ("clean", "adv")


def check_request(n_archs: int, seeds: int, bootstrap: int) -> None:
    """The command-line numbers, checked before any work starts."""
    if n_archs < MIN_ARCHS:
        raise ValueError(f"--archs {n_archs}: a rank correlation needs at least {MIN_ARCHS} archs "
                         "(20 or more give a usable interval)")
    if seeds not in SEED_CHOICES:
        raise ValueError(f"--seeds {seeds}: use 1 or 2 (2 measures the seed-to-seed ceiling)")
    if bootstrap < MIN_BOOTSTRAP:
        raise ValueError(f"--bootstrap {bootstrap}: use at least {MIN_BOOTSTRAP} resamples "
                         "for a 95% interval")


def draw_archs(space: SearchSpace, n: int, seed: int,
               params_range: list[int] | None = None) -> list[Arch]:
    """N distinct archs spread evenly by parameter count over the space (or `params_range`).

    Not quantiles of uniform samples: those crowd around the median size, where
    archs trained alone differ little, so no predictor could rank them.
    """
    rng = np.random.default_rng([int(seed), 0x5A11D])  # a stream of its own, apart from search's
    archs = space.spread_by_params(rng, n, bounds=params_range)
    return sorted(archs, key=lambda a: (space.params(a), a))


@dataclass(frozen=True)
class Job:
    """One standalone training: arch number `index`, training seed number `seed_index`."""

    index: int
    arch: Arch
    seed_index: int

    def folder(self, root: Path) -> Path:
        return root / f"{self.index:02d}-{arch_key(self.arch)}" / f"seed{self.seed_index}"


def recipe(cfg, job: Job) -> dict:
    """Everything a standalone result depends on; a result with another recipe is redone."""
    d = cfg.to_dict()
    data = {k: v for k, v in d["data"].items() if k not in ("root", "download", "num_workers")}
    train = {k: v for k, v in d["train"].items() if k not in SUPERNET_ONLY_TRAIN_KEYS}
    return json.loads(json.dumps(json_safe({
        "arch": list(job.arch), "seed": cfg.seed + job.seed_index, "data": data,
        "space": d["space"], "train": train, "retrain": d["retrain"], "attack": d["attack"],
        "eval_images": d["search"]["eval_images"]})))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _load_result(folder: Path, want: dict) -> dict | None:
    """A finished job's scores and per-image masks, or None if unfinished or of another recipe."""
    scores = _read_json(folder / "scores.json")
    masks = folder / "wrong.npz"
    if scores is None or scores.get("recipe") != want or not masks.is_file():
        return None
    with np.load(masks) as z:
        scores["clean_wrong"], scores["adv_wrong"] = z["clean"], z["adv"]
    return scores


def _run_job(ctx, evaluator, job: Job, root: Path, resume: bool, quiet: bool) -> dict:
    """Retrain one arch standalone (resuming its checkpoint); score it as its inherited self."""
    from tamnas.train import retrain

    folder = job.folder(root)
    want = recipe(ctx.cfg, job)
    same_recipe = _read_json(folder / "recipe.json") == want
    cfg = copy.deepcopy(ctx.cfg)
    cfg.seed = ctx.cfg.seed + job.seed_index
    atomic_write_json(folder / "recipe.json", want)
    net = retrain(cfg, ctx.space, job.arch, folder, ctx.device, data=ctx.data,
                  resume=resume and same_recipe, quiet=quiet)
    save_checkpoint(folder / "model.pt", net.state_dict(), kind="standalone_weights")
    scores = evaluator.score_model(net, job.arch, per_image=True)
    clean, adv = scores.pop("clean_wrong"), scores.pop("adv_wrong")
    buf = io.BytesIO()
    np.savez_compressed(buf, clean=clean, adv=adv)
    atomic_write_bytes(folder / "wrong.npz", buf.getvalue())
    result = {"index": job.index, "arch": arch_key(job.arch), "seed_index": job.seed_index,
              **scores, "recipe": want}
    atomic_write_json(folder / "scores.json", result)
    return {**result, "clean_wrong": clean, "adv_wrong": adv}


def standalone_results(ctx, evaluator, jobs: list[Job], root: Path, resume: bool,
                       quiet: bool) -> dict[Job, dict]:
    """Every job's result: finished ones read back, the rest trained, split over the ranks."""
    results: dict[Job, dict] = {}
    todo = []
    for job in jobs:
        done = _load_result(job.folder(root), recipe(ctx.cfg, job)) if resume else None
        if done is not None:
            results[job] = done
        else:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    if dist.is_main() and not quiet:
        print(f"validate: {skipped} of {len(jobs)} standalone trainings done already, "
              f"{len(todo)} to go on {dist.world_size()} rank(s) -> {root}", flush=True)
    mine = dist.shard(todo)
    bars = quiet or not dist.is_main()
    local = []
    with dist.local_only():  # each rank trains its own archs alone: no gradient averaging
        for job in mine:
            if not bars:
                print(f"validate: arch {job.index} ({arch_key(job.arch)}), seed {job.seed_index}",
                      flush=True)
            local.append(_run_job(ctx, evaluator, job, root, resume, bars))
    for job, result in zip(todo, dist.gather_sharded(local, len(todo))):
        results[job] = result
    return results


def summary_frame(space: SearchSpace, archs: list[Arch], inherited: list[dict],
                  results: dict[Job, dict], seeds: int) -> pd.DataFrame:
    """One row per arch: params, inherited and standalone errors (per seed and mean), their SEs."""
    rows = []
    for i, (arch, inh) in enumerate(zip(archs, inherited)):
        n = int(inh["n_eval"])
        row = {"index": i, "arch": arch_key(arch), "params": int(space.params(arch)),
               "flops": int(space.flops(arch)), "n_eval": n}
        for which in OBJECTIVES:
            row[f"inherited_{which}_err"] = float(inh[f"{which}_err"])
            row[f"inherited_{which}_err_se"] = float(inh[f"{which}_err_se"])
        for s in range(seeds):
            res = results[Job(i, arch, s)]
            for which in OBJECTIVES:
                row[f"standalone_{which}_err_s{s}"] = float(res[f"{which}_err"])
                row[f"standalone_{which}_err_s{s}_se"] = float(res[f"{which}_err_se"])
        for which in OBJECTIVES:
            mean = float(np.mean([row[f"standalone_{which}_err_s{s}"] for s in range(seeds)]))
            row[f"standalone_{which}_err"] = mean
            row[f"standalone_{which}_err_se"] = binomial_se(mean, n)  # over the same n images
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(summary: pd.DataFrame, archs: list[Arch], results: dict[Job, dict],
                 seeds: int, n_boot: int, seed: int) -> dict:
    """correlation.json's numbers from the summary and the per-image standalone masks."""
    col = {w: summary[f"standalone_{w}_err"].to_numpy(float) for w in OBJECTIVES}
    per_seed = {w: [summary[f"standalone_{w}_err_s{s}"].to_numpy(float) for s in range(seeds)]
                for w in OBJECTIVES}
    # The noise is that of one measurement: the standard errors of every arch and seed.
    se = {w: np.concatenate([summary[f"standalone_{w}_err_s{s}_se"].to_numpy(float)
                             for s in range(seeds)]) for w in OBJECTIVES}
    wrong = {w: np.stack([np.mean([results[Job(i, a, s)][f"{w}_wrong"] for s in range(seeds)],
                                  axis=0) for i, a in enumerate(archs)]) for w in OBJECTIVES}
    inherited = {w: summary[f"inherited_{w}_err"].to_numpy(float) for w in OBJECTIVES}
    rng = np.random.default_rng([int(seed), 0xB007])
    return rank_fidelity.assess(inherited, col, se, per_seed, wrong, rng, n_boot)


def _clean_json(value):
    """NaN and infinity as null, so correlation.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def validate_run(ctx, *, n_archs: int, seeds: int = 1, bootstrap: int = 1000,
                 resume: bool = True, quiet: bool = False) -> dict | None:
    """The whole check on a loaded run (pipeline.Context); rank 0 returns correlation.json."""
    from tamnas.analysis.plots import plot_validate
    from tamnas.search.evaluator import Evaluator
    from tamnas.search.strategy import resolve_params_range

    check_request(n_archs, seeds, bootstrap)
    cfg, run = ctx.cfg, ctx.run
    root = run.root / DIR_NAME
    archs = draw_archs(ctx.space, n_archs, cfg.seed, resolve_params_range(cfg))
    # A fresh archive: these archs are not search results, and every score here carries its SE.
    evaluator = Evaluator.from_config(cfg, ctx.space, ctx.supernet, ctx.data, ctx.device,
                                      quiet=quiet)
    inherited = evaluator.evaluate(archs)
    jobs = [Job(i, a, s) for i, a in enumerate(archs) for s in range(seeds)]
    results = standalone_results(ctx, evaluator, jobs, root, resume, quiet)
    if not dist.is_main():
        return None
    summary = summary_frame(ctx.space, archs, inherited, results, seeds)
    stats = correlations(summary, archs, results, seeds, bootstrap, cfg.seed)
    blob = _clean_json(json_safe({
        "n_archs": n_archs, "seeds": seeds, "bootstrap": bootstrap,
        "n_eval": int(summary["n_eval"].iloc[0]), "retrain_epochs": cfg.retrain.epochs,
        "attack": cfg.to_dict()["attack"],
        "supernet_fingerprint": ctx.fingerprint,
        **stats, "verdict": rank_fidelity.overall_verdict(stats)}))
    atomic_write_text(root / "summary.csv", summary.to_csv(index=False))
    atomic_write_json(root / "correlation.json", blob)
    plot_validate(summary, blob, run.figures_dir / "validate", formats=cfg.output.formats)
    return blob


def format_result(blob: dict) -> str:
    """The console lines: the verdict, then one line per objective."""
    lines = [f"validate: {blob['verdict']}"]
    lines += [f"  {blob[w]['verdict']}" for w in OBJECTIVES]
    return "\n".join(lines)


__all__ = ["Job", "check_request", "draw_archs", "format_result", "recipe", "summary_frame",
           "validate_run"]
