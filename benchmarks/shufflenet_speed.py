"""Forward + backward time per batch of the smallest, median and largest sampled ShuffleNetV2 subnet.

Samples --samples archs of the preset's space (uniform, no parameter range),
picks the ones with the fewest, the median and the most parameters, and times
one training step's forward + backward (no optimiser) on random images, both
on the supernet path (what supernet training runs) and on the exported
standalone net. Writes benchmarks/results/shufflenet_speed.json.

    python benchmarks/shufflenet_speed.py --preset cifar10-tamnas --batch 64 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import tamnas


def step_time(model, x: torch.Tensor, y: torch.Tensor, repeats: int, warmup: int = 1) -> float:
    """Median seconds of forward + cross-entropy + backward."""
    model.train()
    times = []
    for i in range(warmup + repeats):
        model.zero_grad(set_to_none=True)
        tic = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar10-tamnas")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "shufflenet_speed.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = tamnas.load_config(args.preset)
    space = tamnas.build_space(cfg)
    rng = np.random.default_rng(args.seed)
    archs = sorted({space.sample(rng) for _ in range(args.samples)}, key=space.params)
    picks = {"smallest": archs[0], "median": archs[len(archs) // 2], "largest": archs[-1]}
    supernet = space.build_supernet()
    g = torch.Generator().manual_seed(args.seed)
    res = space.resolution
    x = torch.rand(args.batch, space.in_channels, res, res, generator=g)
    y = torch.randint(0, space.num_classes, (args.batch,), generator=g)
    rows = []
    for label, arch in picks.items():
        net = space.build_standalone(arch)
        net.load_state_dict(supernet.extract(arch))
        rows.append({"subnet": label, "arch": list(arch), "params": space.params(arch),
                     "flops": space.flops(arch),
                     "supernet_path_s": step_time(supernet.path(arch), x, y, args.repeats),
                     "standalone_s": step_time(net, x, y, args.repeats)})
    result = {"preset": args.preset, "batch": args.batch, "resolution": res, "threads": args.threads,
              "samples": args.samples, "device": "cpu", "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{args.preset}: forward+backward per batch of {args.batch} at {res}x{res}, "
          f"{args.threads} threads")
    print(f"{'subnet':<9} {'params':>9} {'MMACs':>8} {'supernet path s':>16} {'standalone s':>13}")
    for r in rows:
        print(f"{r['subnet']:<9} {r['params']:>9} {r['flops'] / 1e6:>8.1f} {r['supernet_path_s']:>16.3f} "
              f"{r['standalone_s']:>13.3f}")
    return result


if __name__ == "__main__":
    main()
