"""Can a preset's archs be ranked at all? The seed-to-seed ceiling without a supernet.

Draws N archs spread by parameter count exactly as `tamnas validate` does,
trains each standalone twice (the preset's retrain recipe, seeds 0 and 1) in
parallel worker processes of one thread each, scores both on the preset's
validation images under its attack, and prints the spread of the standalone
errors against their binomial noise and Kendall's tau between the two seeds:
the best tau any supernet could reach on these settings. It is the quick loop
for choosing a quickstart (widths, ratios, eps, retrain epochs) on which the
ranking can be read; `tamnas validate --seeds 2` measures the same ceiling on
a trained run. Appends one record to benchmarks/results/rank_ceiling.jsonl.

    python benchmarks/rank_ceiling.py --preset quickstart --archs 16 --workers 2 \
        --set retrain.epochs=20 --label "20 epochs"
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import tamnas
from tamnas.analysis import rank_fidelity
from tamnas.analysis.validate import draw_archs
from tamnas.config import parse_override
from tamnas.data import load_data
from tamnas.search.evaluator import Evaluator
from tamnas.search.strategy import resolve_params_range


def _setup(preset: str, overrides: list[str]):
    cfg = tamnas.load_config(preset, dict(parse_override(s) for s in overrides))
    space = tamnas.build_space(cfg)
    data = load_data(cfg.data, cfg.seed)
    return cfg, space, data


def _train_and_score(preset: str, overrides: list[str], arch: tuple[int, ...], seed_index: int):
    """One standalone training, retrained and scored by validate's own job (seed + seed_index)."""
    from tamnas.analysis.validate import Job, _run_job

    torch.set_num_threads(1)
    cfg, space, data = _setup(preset, overrides)
    device = torch.device("cpu")
    ctx = SimpleNamespace(cfg=cfg, space=space, data=data, device=device)
    evaluator = Evaluator.from_config(cfg, space, space.build_supernet(), data, device)
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scores = _run_job(ctx, evaluator, Job(0, arch, seed_index), Path(tmp), resume=False,
                          quiet=True)
    return {**{k: scores[k] for k in ("clean_err", "adv_err", "clean_err_se", "adv_err_se")},
            "seconds": time.perf_counter() - tic}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--archs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "rank_ceiling.jsonl")
    args = ap.parse_args()
    cfg, space, _ = _setup(args.preset, args.overrides)
    archs = draw_archs(space, args.archs, cfg.seed, resolve_params_range(cfg))
    jobs = [(a, s) for a in archs for s in (0, 1)]
    tic = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(_train_and_score, args.preset, args.overrides, a, s)
                   for a, s in jobs]
        results = [f.result() for f in futures]
    wall = time.perf_counter() - tic
    by = {(tuple(a), s): r for (a, s), r in zip(jobs, results)}
    record = {"label": args.label, "preset": args.preset, "overrides": args.overrides,
              "archs": len(archs), "wall_seconds": round(wall, 1),
              "train_seconds_per_job": round(float(np.mean([r["seconds"] for r in results])), 1),
              "params": [int(space.params(archs[0])), int(space.params(archs[-1]))]}
    for which in ("clean", "adv"):
        s0 = np.array([by[(a, 0)][f"{which}_err"] for a in archs])
        s1 = np.array([by[(a, 1)][f"{which}_err"] for a in archs])
        se = np.array([by[(a, s)][f"{which}_err_se"] for a in archs for s in (0, 1)])
        spread = rank_fidelity.spread_and_noise((s0 + s1) / 2, se)
        record[which] = {
            "ceiling_tau": round(rank_fidelity.kendall_tau(s0, s1), 3),
            "size_tau": round(rank_fidelity.kendall_tau([-space.params(a) for a in archs],
                                                        (s0 + s1) / 2), 3),
            **{k: round(v, 4) for k, v in spread.items()},
            "acc_range": [round(1 - max(s0.max(), s1.max()), 4),
                          round(1 - min(s0.min(), s1.min()), 4)]}
    record["per_arch"] = [{"arch": "-".join(map(str, a)), "params": int(space.params(a)),
                           **{f"{w}_err_s{s}": by[(a, s)][f"{w}_err"] for w in ("clean", "adv")
                              for s in (0, 1)}} for a in archs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "per_arch"}, indent=1))


if __name__ == "__main__":
    main()
