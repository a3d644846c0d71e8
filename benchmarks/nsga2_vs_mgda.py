"""NSGA-II's front against MGDA's points on one trained supernet: hypervolume and search time.

Both strategies score archs through their own Evaluator over the same
supernet, BN images, validation images and attack, so no cache is shared and
each wall time is the whole search. The hypervolume uses NSGA-II's fixed
normalisation and reference point (`objective_bounds`, `Hypervolume`) on the
search objectives. MGDA sweeps `--targets` parameter targets (default: the
quartiles of the space's parameter range), one E2RNAS run per target; its
"points" are the archs derived at the end of each run, and "all points" every
arch it derived after any epoch. Prints a table and writes
benchmarks/results/nsga2_vs_mgda.json.

    python benchmarks/nsga2_vs_mgda.py --run /tmp/qs_run          # reuse a trained quickstart run
    python benchmarks/nsga2_vs_mgda.py --run '' --set train.phase1_epochs=1 --set space.blocks=[0,3]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.checkpoint import RunDir
from tamnas.config import parse_override, save_config
from tamnas.data import load_data
from tamnas.search.archive import Archive
from tamnas.search.evaluator import Evaluator
from tamnas.search.mgda import MGDASearch
from tamnas.search.nsga2 import Hypervolume, NSGA2Search, objective_bounds
from tamnas.search.strategy import resolve_params_range
from tamnas.train import load_trained_supernet, train_supernet

RESULTS = Path(__file__).resolve().parent / "results" / "nsga2_vs_mgda.json"


def trained_run(args, overrides: dict, device) -> RunDir:
    """The run directory holding a trained supernet: `--run` if it has one, else a fresh
    (short, with `--set train.*`) training into `--train-dir` or a temporary folder."""
    if args.run and (Path(args.run) / "supernet" / "checkpoint.pt").is_file():
        return RunDir(args.run)
    cfg = tamnas.load_config(args.preset, overrides)
    root = Path(args.train_dir or tempfile.mkdtemp(prefix="tamnas-bench-"))
    run = RunDir(root).ensure()
    save_config(cfg, run.config)
    tic = time.perf_counter()
    train_supernet(cfg, run, device, quiet=args.quiet)
    print(f"trained the supernet in {time.perf_counter() - tic:.1f} s -> {root}")
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--run", default="/tmp/qs_run", help="run dir with a trained supernet (used "
                   "when it has one)")
    p.add_argument("--train-dir", default=None, help="where to train a supernet when --run has "
                   "none (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.phase1_epochs=1 (repeatable)")
    p.add_argument("--targets", type=float, nargs="*", default=None,
                   help="MGDA parameter targets (default: quartiles of the params range)")
    p.add_argument("--variant", default="e2rnas")
    p.add_argument("--mgda-epochs", type=int, default=10)
    p.add_argument("--mgda-batches", type=int, default=8, help="bi-level steps per MGDA epoch")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()

    torch.manual_seed(0)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    overrides = dict(parse_override(text) for text in args.set)
    run = trained_run(args, overrides, device)
    search_over = {"search.mgda_variant": args.variant, "search.mgda_epochs": args.mgda_epochs,
                   "search.mgda_batches_per_epoch": args.mgda_batches}
    cfg = tamnas.load_config(run.config if run.config.is_file() else args.preset,
                             {**overrides, **search_over})
    space, supernet = load_trained_supernet(cfg, run, device)
    data = load_data(cfg.data, cfg.seed)
    lo, hi = space.params_bounds()
    targets = args.targets if args.targets else [lo + q * (hi - lo) for q in (0.25, 0.5, 0.75)]
    cfg.search.mgda_targets = [float(t) for t in targets]

    def evaluator() -> Evaluator:
        return Evaluator.from_config(cfg, space, supernet, data, device,
                                     archive=Archive(space.name, space.n_genes), quiet=True)

    work = Path(tempfile.mkdtemp(prefix="tamnas-nsga2-vs-mgda-"))
    try:
        ev_n = evaluator()
        tic = time.perf_counter()
        nsga = NSGA2Search(space, ev_n, cfg, work / "nsga2", seed=cfg.seed, quiet=args.quiet,
                           resume=False)
        front_n = nsga.run()
        t_nsga = time.perf_counter() - tic

        ev_m = evaluator()
        tic = time.perf_counter()
        mgda = MGDASearch(space, ev_m, cfg, work / "mgda", seed=cfg.seed, quiet=args.quiet,
                          resume=False, data=data)
        mgda.run()
        t_mgda = time.perf_counter() - tic
    finally:
        shutil.rmtree(work, ignore_errors=True)

    objectives = list(cfg.search.objectives)
    low, high = objective_bounds(space, objectives, resolve_params_range(cfg), seed=cfg.seed)
    hv = Hypervolume(low, high)
    final = mgda.points()
    all_mgda = ev_m.archive.frame()
    F_n = front_n[objectives].to_numpy(dtype=float)
    F_m = final[objectives].to_numpy(dtype=float)
    F_all = all_mgda[objectives].to_numpy(dtype=float)
    result = {
        "preset": cfg.preset, "space": space.name, "device": str(device),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "objectives": objectives, "reference": hv.to_dict(objectives),
        "overrides": {k: v for k, v in overrides.items()},
        "nsga2": {"hv": hv(F_n), "front_size": len(F_n), "evaluations": ev_n.stats["evaluations"],
                  "eval_seconds": ev_n.stats["seconds"], "search_seconds": t_nsga,
                  "pop_size": cfg.search.pop_size, "generations": cfg.search.generations},
        "mgda": {"hv": hv(F_m), "hv_all_epochs": hv(F_all), "points": len(F_m),
                 "evaluations": ev_m.stats["evaluations"], "eval_seconds": ev_m.stats["seconds"],
                 "search_seconds": t_mgda, "variant": cfg.search.mgda_variant,
                 "targets": cfg.search.mgda_targets, "epochs": cfg.search.mgda_epochs,
                 "batches_per_epoch": mgda.batches_per_epoch,
                 "final_archs": json.loads(final[["target", "arch"] + objectives]
                                           .to_json(orient="records"))},
        "hv_union": hv(np.concatenate([F_n, F_all])),
        "time_ratio_mgda_over_nsga2": t_mgda / t_nsga if t_nsga > 0 else float("nan"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'strategy':<8} {'hv':>7} {'points':>6} {'evals':>6} {'search s':>9} {'eval s':>7}")
    for name, key, n in (("nsga2", "nsga2", "front_size"), ("mgda", "mgda", "points")):
        r = result[key]
        print(f"{name:<8} {r['hv']:7.4f} {r[n]:6d} {r['evaluations']:6d} "
              f"{r['search_seconds']:9.1f} {r['eval_seconds']:7.1f}")
    print(f"mgda hv over every epoch's arch: {result['mgda']['hv_all_epochs']:.4f}; "
          f"union hv: {result['hv_union']:.4f}; time mgda/nsga2: "
          f"{result['time_ratio_mgda_over_nsga2']:.2f} -> {out}")


if __name__ == "__main__":
    main()
