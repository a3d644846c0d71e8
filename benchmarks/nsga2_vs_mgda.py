"""NSGA-II against MGDA on both spaces, each strategy with the same wall-clock budget.

Each strategy starts from nothing and gets `--budget` seconds on one space,
its own training included, as a user would run it:
- NSGA-II: one-shot supernet training on sampled single paths (the preset's
  train.objective; `--train-share` of the budget), then NSGA-II generations
  scored with inherited weights until the budget is spent;
- MGDA: the bi-level search from scratch (weights and alpha together), in
  short epochs of MGDA_BATCHES rounds, their number sized from the first
  epoch's time so that the last epoch (derive, fine-tune, score) ends within
  the budget.
The spaces are the two quickstarts: `quickstart` (ShuffleNetV2) and
`quickstart-darts` (DARTS cells). The terms are equal in budget and in
measurement, not in weights: each strategy's archs are scored on the weights
it trained itself (NSGA-II: its one-shot supernet; MGDA: its searched weights
after the derived paths' warm start), by an Evaluator with the same BN
images, validation images and PGD attack. The JSON names both weight sets
(`weights`, the fingerprints the archive rows carry) and says that the union
front mixes them (`union_mixed_weights`). The hypervolume uses NSGA-II's
fixed normalisation and reference point on (adv err, clean err, params).
Prints a table, writes benchmarks/results/nsga2_vs_mgda.json.

    python benchmarks/nsga2_vs_mgda.py --budget 60
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.config import parse_override, save_config
from tamnas.data import load_data
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive
from tamnas.search.evaluator import Evaluator
from tamnas.search.mgda import MGDASearch
from tamnas.search.nsga2 import Hypervolume, NSGA2Search, objective_bounds
from tamnas.search.searched_weights import weights_fingerprint
from tamnas.search.strategy import resolve_params_range
from tamnas.train import load_trained_supernet, train_supernet

RESULTS = Path(__file__).resolve().parent / "results" / "nsga2_vs_mgda.json"
PRESETS = {"shufflenet": "quickstart", "darts": "quickstart-darts"}
MGDA_BATCHES = 6


class TimedNSGA2(NSGA2Search):
    """NSGA-II that stops after the generation during which its deadline passed (one at least)."""

    deadline = float("inf")

    def finished(self) -> bool:
        late = self.steps_done > 0 and time.perf_counter() >= self.deadline
        return super().finished() or late


class TimedMGDA(MGDASearch):
    """MGDA whose number of epochs is cut, after the first, to what fits before the deadline."""

    deadline = float("inf")

    def step(self):
        tic = time.perf_counter()
        row = super().step()
        if self.steps_done == 0 and self.epochs > 1:  # the first epoch (rows grow after step)
            per_epoch = time.perf_counter() - tic
            left = self.deadline - time.perf_counter()
            # The last epoch also fine-tunes and scores: reserve one more epoch's time for it.
            self.epochs = int(max(2, min(self.epochs, 1 + left // per_epoch - 1)))
        return row


def run_nsga2(preset: str, budget: float, train_share: float, device, work: Path,
              overrides: dict) -> dict:
    cfg = tamnas.load_config(preset, {**overrides, "search.strategy": "nsga2",
                                      "search.generations": 10_000})
    if cfg.train.phase1_epochs + cfg.train.phase2_epochs == 0:  # DARTS quickstart: no one-shot
        cfg.train.phase1_epochs, cfg.train.phase2_epochs = 0, 40
    data = load_data(cfg.data, cfg.seed)
    run = RunDir(work / f"nsga2-{preset}").ensure()
    save_config(cfg, run.config)
    start = time.perf_counter()
    # Train epoch by epoch (resuming), so that training stops at its share of the budget.
    total, epoch = cfg.train.phase1_epochs + cfg.train.phase2_epochs, 0
    while epoch < total and time.perf_counter() - start < train_share * budget:
        epoch += 1
        c = copy.deepcopy(cfg)  # the full schedule, cut after `epoch` epochs
        c.train.phase1_epochs = min(cfg.train.phase1_epochs, epoch)
        c.train.phase2_epochs = max(0, epoch - cfg.train.phase1_epochs)
        train_supernet(c, run, device, data=data, resume=True, quiet=True)
    t_train = time.perf_counter() - start
    space, supernet = load_trained_supernet(cfg, run, device)
    weights = weights_fingerprint(supernet.state_dict())
    ev = Evaluator.from_config(cfg, space, supernet, data, device,
                               archive=Archive(space.name, space.n_genes, weights))
    s = TimedNSGA2(space, ev, cfg, run.root / "search", seed=cfg.seed, quiet=True, resume=False)
    s.deadline = start + budget
    front = s.run()
    return {"cfg": cfg, "space": space, "F": front, "evaluations": ev.stats["evaluations"],
            "weights": weights,
            "seconds": time.perf_counter() - start, "train_seconds": t_train,
            "train_epochs": epoch, "generations": len(s.rows)}


def run_mgda(preset: str, budget: float, device, work: Path, overrides: dict) -> dict:
    # Short epochs (MGDA_BATCHES bi-level rounds), so that the budget sets how many there are.
    cfg = tamnas.load_config(preset, {"search.mgda_batches_per_epoch": MGDA_BATCHES, **overrides,
                                      "search.strategy": "mgda", "search.mgda_epochs": 1000})
    data = load_data(cfg.data, cfg.seed)
    space = tamnas.build_space(cfg)
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    supernet = space.build_supernet().to(device)
    if not cfg.search.mgda_targets:
        lo, hi = space.params_bounds()
        cfg.search.mgda_targets = [float(lo + q * (hi - lo)) for q in (0.25, 0.75)]
    ev = Evaluator.from_config(cfg, space, supernet, data, device,
                               archive=Archive(space.name, space.n_genes))
    s = TimedMGDA(space, ev, cfg, work / f"mgda-{preset}", seed=cfg.seed, quiet=True,
                  resume=False, data=data)
    s.deadline = start + budget
    s.run()
    points = s.points()
    return {"cfg": cfg, "space": space, "F": points, "evaluations": ev.stats["evaluations"],
            "weights": s.scored_weights,
            "seconds": time.perf_counter() - start, "epochs": s.epochs,
            "targets": cfg.search.mgda_targets}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=60.0, help="seconds per strategy and space")
    p.add_argument("--train-share", type=float, default=0.5,
                   help="NSGA-II: share of the budget for one-shot supernet training")
    p.add_argument("--spaces", nargs="*", default=sorted(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both presets, e.g. data.train_limit=200")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    device = torch.device(args.device)
    overrides = dict(parse_override(text) for text in args.set)
    result = {"budget_s": args.budget, "train_share": args.train_share, "device": str(device),
              "overrides": overrides,
              "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
              "spaces": {}}
    print(f"{'space':<10} {'strategy':<8} {'hv':>7} {'points':>6} {'evals':>6} {'wall s':>7}  "
          "detail")
    with tempfile.TemporaryDirectory(prefix="tamnas-nsga2-vs-mgda-") as tmp:
        for name in args.spaces:
            preset = PRESETS[name]
            n = run_nsga2(preset, args.budget, args.train_share, device, Path(tmp), overrides)
            m = run_mgda(preset, args.budget, device, Path(tmp), overrides)
            cfg, space = n["cfg"], n["space"]
            objectives = list(cfg.search.objectives)
            low, high = objective_bounds(space, objectives, resolve_params_range(cfg),
                                         seed=cfg.seed)
            hv = Hypervolume(low, high)
            F_n = n["F"][objectives].to_numpy(dtype=float)
            F_m = m["F"][objectives].to_numpy(dtype=float)
            entry = {
                "preset": preset, "objectives": objectives,
                "reference": hv.to_dict(objectives),
                "nsga2": {"hv": hv(F_n), "points": len(F_n), "evaluations": n["evaluations"],
                          "seconds": n["seconds"], "train_seconds": n["train_seconds"],
                          "train_epochs": n["train_epochs"], "generations": n["generations"],
                          "weights": n["weights"],
                          "best_adv_err": float(F_n[:, 0].min()) if len(F_n) else None},
                "mgda": {"hv": hv(F_m), "points": len(F_m), "evaluations": m["evaluations"],
                         "seconds": m["seconds"], "epochs": m["epochs"], "targets": m["targets"],
                         "weights": m["weights"],
                         "best_adv_err": float(F_m[:, 0].min()) if len(F_m) else None},
                "hv_union": hv(np.concatenate([F_n, F_m])),
                "union_mixed_weights": n["weights"] != m["weights"],
                "terms": "equal wall-clock budget from nothing; same BN/val images and attack; "
                         "each strategy scored on its own weights",
            }
            result["spaces"][name] = entry
            nsga_detail = (f"{n['train_epochs']} train epochs ({n['train_seconds']:.0f} s), "
                           f"{n['generations']} generations")
            for strat, detail in (("nsga2", nsga_detail),
                                  ("mgda", f"{m['epochs']} epochs, targets {m['targets']}")):
                r = entry[strat]
                print(f"{name:<10} {strat:<8} {r['hv']:7.4f} {r['points']:6d} "
                      f"{r['evaluations']:6d} {r['seconds']:7.1f}  {detail}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
