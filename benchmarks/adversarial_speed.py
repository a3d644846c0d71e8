"""Objectives' epoch time as ratios to TRADES-PGD-10, and PGD-20 accuracy after one budget.

Same model (one standalone net of the preset's space, same initial weights),
same digits batches, same batch size for every objective: trades_yopo(5, 3)
(first-layer gradient discarded, the default, and kept as YOPO's Hamiltonian),
trades (PGD-10), pgd_at (PGD-10), fgsm_rs and standard. Each trains for
--epochs epochs of --batches batches; the table reports the median epoch time,
its ratio to TRADES-PGD-10 (the pass count predicts about 0.55-0.6 for
YOPO-5-3 on a large net) and clean / PGD-20 test accuracy after that budget;
the objectives take turns batch by batch so that load on a shared machine
hits all alike, and the ratio is one of total times. Writes
benchmarks/results/adversarial_speed.json (adversarial_speed_toy.json with --toy).

    python benchmarks/adversarial_speed.py --space-preset quickstart --batches 10 --epochs 3
    python benchmarks/adversarial_speed.py --toy          # a small CNN instead of the space's net
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tamnas
from tamnas.adversarial import build_objective
from tamnas.attacks import Attack, robust_accuracy

# (label, objective name, TrainConfig overrides); PGD steps follow the names.
OBJECTIVES = [
    ("trades_yopo-5-3", "trades_yopo", {"yopo_m": 5, "yopo_n": 3}),
    ("trades_yopo-5-3-hamiltonian", "trades_yopo",
     {"yopo_m": 5, "yopo_n": 3, "first_layer_grad": "hamiltonian"}),
    ("trades-pgd10", "trades", {"pgd_steps": 10}),
    ("pgd_at-10", "pgd_at", {"pgd_steps": 10}),
    ("fgsm_rs", "fgsm_rs", {}),
    ("standard", "standard", {}),
]
REFERENCE = "trades-pgd10"


class ToyCNN(nn.Module):
    """A small CNN with YOPO's split, for testing this script without a search space."""

    def __init__(self, in_channels: int, classes: int, width: int = 16):
        super().__init__()
        self.first_layer = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        self.rest = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), *conv(width, 2 * width, 1),
            *conv(2 * width, 2 * width, 2), *conv(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        return self.rest(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_first(self.first_layer(x))


def digits(resolution: int, seed: int) -> tuple[torch.Tensor, ...]:
    """scikit-learn digits as 1 x res x res images in [0, 1]; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[perm[:cut]], y[perm[:cut]], x[perm[cut:]], y[perm[cut:]]


def model_factory(cfg, toy: bool, seed: int):
    """A function returning the same freshly initialised model each call, and its description."""
    if toy:
        def make() -> nn.Module:
            torch.manual_seed(seed)
            return ToyCNN(1, 10)
        return make, "toy-cnn"
    space = tamnas.build_space(cfg)
    arch = space.sample(np.random.default_rng(seed))

    def make() -> nn.Module:
        torch.manual_seed(seed)
        return space.build_standalone(arch)
    return make, f"{cfg.space.name} standalone {list(arch)}"


def run(args) -> dict:
    device = torch.device(args.device)
    cfg = tamnas.load_config(args.space_preset, {"data.dataset": "digits"})
    res = args.resolution or cfg.data.resolution
    x_tr, y_tr, x_te, y_te = digits(res, args.seed)
    x_te, y_te = x_te[:args.eval_images], y_te[:args.eval_images]
    bs = args.batch_size or cfg.data.batch_size
    need = args.batches * bs
    if need > len(x_tr):
        raise ValueError(f"--batches {args.batches} x batch size {bs} needs {need} images; digits "
                         f"has {len(x_tr)} for training")
    make, description = model_factory(cfg, args.toy, args.seed)
    eps = cfg.train.eps
    step10 = 2.5 * eps / 10  # Madry et al.'s rule: 2.5 eps / steps
    eval_attack = Attack(eps=eps, steps=20, step_size=2.5 * eps / 20,
                         generator=torch.Generator().manual_seed(args.seed + 1))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runs = []
    order_gen = torch.Generator().manual_seed(args.seed)  # every objective sees the same batches
    for label, name, overrides in OBJECTIVES:
        train_cfg = dataclasses.replace(cfg.train, objective=name, pgd_step_size=step10,
                                        **overrides)
        objective = build_objective(train_cfg, generator=torch.Generator().manual_seed(args.seed))
        model = make().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=cfg.train.momentum,
                              weight_decay=cfg.train.weight_decay)
        objective.step(model, x_tr[:bs].to(device), y_tr[:bs].to(device))  # warm-up, not timed
        opt.zero_grad(set_to_none=True)
        runs.append((label, objective, model, opt, []))
    # Batches interleave the objectives, so drifting load on a shared machine hits all alike.
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_tr), generator=order_gen)[:need]
        batches = [(x_tr[i].to(device), y_tr[i].to(device)) for i in perm.split(bs)]
        for _, _, _, _, times in runs:
            times.append(0.0)
        for xb, yb in batches:
            for _, objective, model, opt, times in runs:
                sync()
                tic = time.perf_counter()
                objective.step(model, xb, yb, optimizer=opt)
                sync()
                times[-1] += time.perf_counter() - tic
        if not args.quiet:
            print(f"  epoch {epoch + 1}/{args.epochs}: " + ", ".join(
                f"{r[0]} {r[4][-1]:.3f}s" for r in runs), flush=True)
    rows = []
    for label, objective, model, opt, times in runs:
        clean = robust_accuracy(model, (x_te, y_te), None, device, batch_size=256)
        adv = robust_accuracy(model, (x_te, y_te), eval_attack, device, batch_size=256)
        rows.append({"objective": label, "epoch_seconds": round(statistics.median(times), 4),
                     "total_seconds": round(sum(times), 4),
                     "clean_acc": round(clean, 4), "pgd20_acc": round(adv, 4)})
    ref = next(r["total_seconds"] for r in rows if r["objective"] == REFERENCE)
    for r in rows:  # ratio of total times: every batch was timed back to back for all objectives
        r["ratio_to_trades_pgd10"] = round(r["total_seconds"] / ref, 3)
    params = sum(p.numel() for p in make().parameters())
    return {"preset": args.space_preset, "model": description, "params": params,
            "device": str(device), "threads": torch.get_num_threads(), "resolution": res,
            "batch_size": bs, "batches_per_epoch": args.batches, "epochs": args.epochs,
            "eps": eps, "pgd10_step_size": step10, "yopo_sigma": cfg.train.yopo_sigma,
            "lr": args.lr, "eval_images": len(y_te), "rows": rows}


def table(result: dict) -> str:
    lines = [(f"{result['model']} ({result['params']} params) on {result['device']}, batch "
             f"{result['batch_size']} x {result['batches_per_epoch']} batches/epoch, "
             f"{result['epochs']} epochs, eps {result['eps']:.4f}"),
             "| objective | s/epoch | ratio to TRADES-PGD-10 | clean acc | PGD-20 acc |",
             "| --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['objective']} | {r['epoch_seconds']:.3f} | "
                     f"{r['ratio_to_trades_pgd10']:.3f} | {r['clean_acc']:.3f} | "
                     f"{r['pgd20_acc']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space-preset", default="quickstart")
    p.add_argument("--toy", action="store_true", help="a small CNN instead of the space's net")
    p.add_argument("--batches", type=int, default=10, help="batches per timed epoch")
    p.add_argument("--epochs", type=int, default=3, help="training budget (all alike)")
    p.add_argument("--batch-size", type=int, default=0, help="0: the preset's data.batch_size")
    p.add_argument("--resolution", type=int, default=0, help="0: the preset's data.resolution")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-images", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    name = "adversarial_speed_toy.json" if args.toy else "adversarial_speed.json"
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
