"""`tamnas validate`: do inherited scores rank archs as standalone training does?

N archs spread by parameter count are retrained standalone with the run's
retrain recipe (one folder per arch and seed under validate/, resumable;
under torchrun the archs are split over the ranks) and scored twice through
one Evaluator: with inherited weights and standalone, on the same validation
images with the same per-arch attack. The statistics are `analysis.validate`'s.
"""

from __future__ import annotations

import argparse
import copy
import io
import time
from pathlib import Path

import numpy as np
import torch

from tamnas import distributed as dist
from tamnas.analysis.validate import (
    Job,
    check_request,
    correlations,
    draw_archs,
    format_result,
    result_blob,
    summary_frame,
)
from tamnas.commands import ON_WEIGHTS, Call, command
from tamnas.config import Config
from tamnas.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_json,
    save_checkpoint,
)
from tamnas.progress import counter
from tamnas.search.archive import arch_key
from tamnas.session import Session, open_run, require_finished, say


def job_recipe(cfg: Config, job: Job) -> dict:
    """Everything a job's result depends on; a result with another recipe is redone."""
    from tamnas.train import standalone_recipe

    return {**standalone_recipe(cfg, job.arch, cfg.seed + job.seed_index),
            "eval_images": cfg.search.eval_images}


def _read(path: Path) -> dict | None:
    """A job file, or None when absent or cut short by a kill (the job is then redone)."""
    try:
        return read_json(path, "") if path.is_file() else None
    except ValueError:
        return None


def _load_result(folder: Path, want: dict) -> dict | None:
    """A finished job's scores and per-image masks, or None if unfinished or of another recipe."""
    scores = _read(folder / "scores.json")
    masks = folder / "wrong.npz"
    if scores is None or scores.get("recipe") != want or not masks.is_file():
        return None
    with np.load(masks) as z:
        scores["clean_wrong"], scores["adv_wrong"] = z["clean"], z["adv"]
    return scores


def run_job(session: Session, evaluator, job: Job, root: Path, resume: bool,
            quiet: bool) -> dict:
    """Retrain one arch standalone (resuming its checkpoint); score it as its inherited self."""
    from tamnas.train import retrain

    folder = job.folder(root)
    want = job_recipe(session.cfg, job)
    same_recipe = _read(folder / "recipe.json") == want
    cfg = copy.deepcopy(session.cfg)
    cfg.seed = session.cfg.seed + job.seed_index
    atomic_write_json(folder / "recipe.json", want)
    net = retrain(cfg, session.space, job.arch, folder, session.device, data=session.data,
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


def standalone_results(session: Session, evaluator, jobs: list[Job], root: Path, resume: bool,
                       quiet: bool) -> dict[Job, dict]:
    """Every job's result: finished ones read back, the rest trained, split over the ranks."""
    results: dict[Job, dict] = {}
    todo = []
    for job in jobs:
        done = _load_result(job.folder(root), job_recipe(session.cfg, job)) if resume else None
        if done is not None:
            results[job] = done
        else:
            todo.append(job)
    dist.barrier()  # every rank has read what is done before any rank writes a new result
    say(f"validate: {len(jobs) - len(todo)} of {len(jobs)} standalone trainings done already, "
        f"{len(todo)} to go on {dist.world_size()} rank(s) -> {root}", quiet)
    bars = quiet or not dist.is_main()
    mine, local = dist.shard(todo), []  # shared out before local_only, which hides the ranks
    with dist.local_only():  # each rank trains its own archs alone: no gradient averaging
        start = time.monotonic()
        for k, job in enumerate(mine, 1):
            say(f"validate: training {counter(k, len(mine), start)}: arch {job.index} "
                f"({arch_key(job.arch)}), seed {job.seed_index}", bars)
            local.append(run_job(session, evaluator, job, root, resume, bars))
    for job, result in zip(todo, dist.gather_sharded(local, len(todo))):
        results[job] = result
    return results


def validate(cfg: Config, run_dir: str | Path, *, n_archs: int = 10, seeds: int = 1,
             bootstrap: int = 1000, device: torch.device, quiet: bool = False,
             resume: bool = True, partial: bool = False) -> dict | None:
    """Rank fidelity of the run's supernet; correlation.json's contents (rank 0)."""
    from tamnas.analysis.fidelity_plots import plot_validate
    from tamnas.analysis.report import write_report
    from tamnas.rundir import writing
    from tamnas.search.evaluator import Evaluator
    from tamnas.search.strategy import resolve_params_range

    check_request(n_archs, seeds, bootstrap)
    run = open_run(run_dir)
    if not partial:
        require_finished(cfg, run)  # before the lock: a refusal changes no file
    with writing(run.root, "tamnas validate", "validate", enabled=dist.is_main()):
        session = Session.open(cfg, run, device, quiet=quiet, partial=partial)
        say(f"validate: {n_archs} archs x {seeds} seed(s), {cfg.retrain.epochs} retrain epochs "
            f"each -> {run.validate_dir}", quiet)
        archs = draw_archs(session.space, n_archs, cfg.seed, resolve_params_range(cfg))
        # A fresh archive: these archs are not search results, and every score carries its SE.
        evaluator = Evaluator.from_config(cfg, session.space, session.supernet, session.data,
                                          device, quiet=quiet)
        inherited = evaluator.evaluate(archs)
        jobs = [Job(i, a, s) for i, a in enumerate(archs) for s in range(seeds)]
        results = standalone_results(session, evaluator, jobs, run.validate_dir, resume, quiet)
        if not dist.is_main():
            return None
        summary = summary_frame(session.space, archs, inherited, results, seeds)
        stats = correlations(summary, archs, results, seeds, bootstrap, cfg.seed,
                             num_classes=session.data.info.num_classes)
        blob = result_blob(summary, stats, n_archs=n_archs, seeds=seeds, bootstrap=bootstrap,
                           retrain_epochs=cfg.retrain.epochs, attack=cfg.to_dict()["attack"],
                           fingerprint=session.fingerprint)
        atomic_write_text(run.validate_dir / "summary.csv", summary.to_csv(index=False))
        atomic_write_json(run.validate_dir / "correlation.json", blob)
        plot_validate(summary, blob, run.figures_dir / "validate", formats=cfg.output.formats)
        write_report(run)
    say(format_result(blob))
    return blob


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archs", type=int, default=10, metavar="N",
                   help="archs drawn by parameter count, 3 or more (default: 10)")
    p.add_argument("--seeds", type=int, default=1, metavar="S",
                   help="standalone trainings per arch, 1 or more: 2 or more measure the "
                        "training noise, the seed ceiling and the seeds a readable ranking needs; "
                        "with 1 the readability stays unknown (default: 1)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="resamples for the 95%% intervals (default: 1000)")


@command("validate", "rank fidelity: do inherited scores rank archs as standalone training "
         "does?", "run", arguments=_arguments, options=ON_WEIGHTS,
         check=lambda args: check_request(args.archs, args.seeds, args.bootstrap))
def main(call: Call) -> dict | None:
    return validate(call.cfg, call.args.run, n_archs=call.args.archs, seeds=call.args.seeds,
                    bootstrap=call.args.bootstrap, device=call.device, quiet=call.quiet,
                    resume=call.resume, partial=call.args.partial_supernet)
