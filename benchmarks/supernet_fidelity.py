"""How well one supernet training recipe trains its subnets: the recipe study behind README's "Weight sharing".

Trains a supernet with the given preset and overrides, then scores archs
spread over the space by parameter count with inherited weights (the
Evaluator: BN recalibration, clean and PGD error on the validation subset).
Prints and appends to benchmarks/results/supernet_fidelity.jsonl one record:
training time, last-epoch training accuracies, and the inherited accuracies
(best, median, worst) of the sampled archs. Ranking against standalone
training is `tamnas validate`'s job; this script is the quick loop for
comparing recipes.

    python benchmarks/supernet_fidelity.py --preset quickstart --label baseline \
        --set space.weight_sharing=none --archs 12
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.config import parse_override
from tamnas.data import load_data
from tamnas.rundir import RunDir
from tamnas.search.evaluator import Evaluator
from tamnas.train import train_supernet


def spread_archs(space, n: int, seed: int, pool: int = 2000) -> list[tuple[int, ...]]:
    """n archs at evenly spaced parameter-count quantiles of `pool` uniform samples."""
    rng = np.random.default_rng(seed)
    archs = sorted({space.sample(rng) for _ in range(pool)}, key=space.params)
    idx = np.linspace(0, len(archs) - 1, n).round().astype(int)
    return [archs[i] for i in idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default="")
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "supernet_fidelity.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = tamnas.load_config(args.preset, dict(parse_override(s) for s in args.overrides))
    device = torch.device("cpu")
    data = load_data(cfg.data, cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(tmp)
        run.ensure()
        tic = time.perf_counter()
        supernet = train_supernet(cfg, run, device, data=data, resume=False, quiet=True)
        train_s = time.perf_counter() - tic
        with open(run.supernet_log, newline="") as f:
            last = list(csv.DictReader(f))[-1]
    space = tamnas.build_space(cfg)
    evaluator = Evaluator.from_config(cfg, space, supernet.eval(), data, device)
    archs = spread_archs(space, args.archs, cfg.seed)
    tic = time.perf_counter()
    scores = evaluator.evaluate(archs)
    eval_s = time.perf_counter() - tic
    clean = np.array([1 - s["clean_err"] for s in scores])
    adv = np.array([1 - s["adv_err"] for s in scores])
    params = [s["params"] for s in scores]
    record = {
        "label": args.label, "preset": args.preset, "overrides": args.overrides,
        "threads": args.threads, "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
        "train_clean_acc": round(float(last["clean_acc"]), 4),
        "train_adv_acc": round(float(last.get("adv_acc") or 0), 4),
        "inherited_clean_acc": {"best": round(clean.max(), 4), "median": round(float(np.median(clean)), 4),
                                "worst": round(clean.min(), 4)},
        "inherited_adv_acc": {"best": round(adv.max(), 4), "median": round(float(np.median(adv)), 4),
                              "worst": round(adv.min(), 4)},
        "params": [min(params), max(params)],
        "per_arch": [{"arch": "-".join(map(str, a)), "params": p, "clean_acc": round(float(c), 4),
                      "adv_acc": round(float(v), 4)} for a, p, c, v in zip(archs, params, clean, adv)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "per_arch"}))


if __name__ == "__main__":
    main()
