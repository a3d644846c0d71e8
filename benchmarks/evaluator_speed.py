"""Evaluator throughput, and its cost against the same work on exported standalone nets.

For each preset: score N sampled archs with the Evaluator (BN recalibration,
clean pass, PGD), then do the same work on each arch's exported standalone
net (same BN images, same validation images, same attack), in one run. Prints
archs/minute, images/second and the supernet/standalone time ratio; writes
benchmarks/results/evaluator_speed.json.

    python benchmarks/evaluator_speed.py --presets quickstart cifar10-tamnas --archs 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.attacks import Attack
from tamnas.search.evaluator import Evaluator


def standalone_work(net, bn_batches, val_x, val_y, attack, batch_size) -> None:
    """What the evaluator does for one arch, on the exported net instead of the supernet path."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
        net.train()
        for i, xb in enumerate(bn_batches):
            for m in bns:
                m.momentum = 1.0 / (i + 1)
            net(xb)
    net.eval()
    wrong = torch.zeros((), dtype=torch.long, device=val_x.device)
    for xb, yb in zip(val_x.split(batch_size), val_y.split(batch_size)):
        with torch.inference_mode():
            wrong += (net(xb).argmax(1) != yb).sum()
        x_adv = attack(net, xb, yb)
        with torch.inference_mode():
            wrong += (net(x_adv).argmax(1) != yb).sum()
    int(wrong)


def bench(preset: str, n_archs: int, n_val: int, n_bn: int, device: torch.device) -> dict:
    cfg = tamnas.load_config(preset)
    space = tamnas.build_space(cfg)
    supernet = space.build_supernet().to(device).eval()
    info = tamnas.data.dataset_info(cfg.data.dataset)
    res = cfg.data.resolution
    g = torch.Generator().manual_seed(0)
    bn_x = torch.rand(n_bn, info.in_channels, res, res, generator=g)
    val_x = torch.rand(n_val, info.in_channels, res, res, generator=g)
    val_y = torch.randint(0, info.num_classes, (n_val,), generator=g)
    attack = Attack.from_config(cfg.attack)
    bs = min(cfg.data.eval_batch_size, n_val)
    ev = Evaluator(space, supernet, bn_images=bn_x, val_images=val_x, val_labels=val_y,
                   attack=attack, device=device, batch_size=bs)
    rng = np.random.default_rng(0)
    lo, hi = cfg.train.params_range_phase2
    archs = [space.sample(rng, None if hi <= 0 else (lo, hi)) for _ in range(n_archs)]
    ev.score(archs[0])  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    tic = time.perf_counter()
    ev.evaluate(archs)
    sync()
    t_super = time.perf_counter() - tic
    nets = []
    for arch in archs:  # exporting is not timed: only the passes are compared
        net = space.build_standalone(arch).to(device)
        net.load_state_dict(supernet.extract(arch))
        nets.append(net)
    tic = time.perf_counter()
    for net in nets:
        standalone_work(net, ev.bn_batches, ev.val_x, ev.val_y, attack, bs)
    sync()
    t_alone = time.perf_counter() - tic
    images = n_archs * (n_bn + n_val * (2 + cfg.attack.steps))
    return {"preset": preset, "device": str(device), "archs": n_archs, "val_images": n_val,
            "bn_images": n_bn, "pgd_steps": cfg.attack.steps,
            "supernet_seconds": round(t_super, 3), "standalone_seconds": round(t_alone, 3),
            "ratio_supernet_to_standalone": round(t_super / t_alone, 3),
            "archs_per_minute": round(60 * n_archs / t_super, 2),
            "images_per_second": round(images / t_super, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["quickstart", "cifar10-tamnas"])
    p.add_argument("--archs", type=int, default=4)
    p.add_argument("--val", type=int, default=256)
    p.add_argument("--bn", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    rows = [bench(name, args.archs, args.val, args.bn, torch.device(args.device))
            for name in args.presets]
    out = Path(__file__).parent / "results" / "evaluator_speed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(f"{r['preset']:>16} on {r['device']}: {r['archs_per_minute']:8.2f} archs/min, "
              f"{r['images_per_second']:9.1f} images/s, supernet/standalone time "
              f"{r['ratio_supernet_to_standalone']:.3f}")


if __name__ == "__main__":
    main()
