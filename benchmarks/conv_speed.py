"""CPU convolutions: `tamnas.supernets.fastconv` against plain `F.conv2d`, in one process.

Two levels, each timed with plain and fast convolutions taking turns
(ABBA, so drifting load hits both alike), medians reported:

- layers: forward + backward of single convolutions at the shapes tiny spaces
  use (1x1, depthwise 3x3 to 7x7, the stem's 3x3), batch 64;
- steps: one supernet training step of each preset (its objective, a fresh
  random path each step, batch 64) and one evaluator scoring (BN
  recalibration, clean pass, PGD) of a sampled arch.

Ratio = fast / plain (below 1: faster). Writes benchmarks/results/conv_speed.json.

    python benchmarks/conv_speed.py --presets quickstart fashion --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import tamnas
from tamnas.adversarial import build_objective
from tamnas.attacks import Attack
from tamnas.search.evaluator import Evaluator
from tamnas.supernets.fastconv import conv2d, plain_convolutions

# (in channels, out channels, size, kernel, stride, groups)
LAYERS = [(4, 2, 8, 1, 1, 1), (8, 8, 8, 1, 1, 1), (24, 24, 4, 1, 1, 1), (16, 32, 16, 1, 1, 1),
          (4, 4, 16, 3, 1, 4), (8, 8, 8, 7, 2, 8), (12, 12, 4, 7, 1, 12), (32, 32, 8, 5, 1, 32),
          (1, 4, 16, 3, 1, 1), (1, 16, 16, 3, 1, 1)]


def alternate(fns: dict[str, Callable[[], object]], reps: int, block: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, run in turns of `block` calls.

    The order flips every repetition (ABBA), so drifting load and whichever
    primitives the previous turn left in oneDNN's cache hit both alike;
    repetition 0 warms up.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for rep in range(reps + 1):
        for name in names if rep % 2 == 0 else names[::-1]:
            with plain_convolutions() if name == "plain" else nullcontext():
                tic = time.perf_counter()
                for _ in range(block):
                    fns[name]()
                if rep:
                    times[name].append((time.perf_counter() - tic) / block)
    return {k: statistics.median(v) for k, v in times.items()}


def layer_rows(reps: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for cin, cout, size, k, stride, groups in LAYERS:
        x = torch.randn(64, cin, size, size, generator=g, requires_grad=True)
        w = torch.randn(cout, cin // groups, k, k, generator=g, requires_grad=True)

        def run(x=x, w=w, stride=stride, k=k, groups=groups):
            # Defaults bind this layer's tensors and shape, never a later layer's.
            conv2d(x, w, None, stride, k // 2, 1, groups).square().mean().backward()

        t = alternate({"plain": run, "fast": run}, reps)
        with torch.no_grad():
            diff = (conv2d(x, w, None, stride, k // 2, 1, groups)
                    - F.conv2d(x, w, None, stride, k // 2, 1, groups)).abs().max().item()
        rows.append({"shape": f"64x{cin}x{size}x{size} -> {cout}, k{k} s{stride} g{groups}",
                     "plain_ms": round(1e3 * t["plain"], 3), "fast_ms": round(1e3 * t["fast"], 3),
                     "ratio": round(t["fast"] / t["plain"], 3), "max_abs_diff": diff})
    return rows


def step_rows(preset: str, reps: int) -> list[dict]:
    cfg = tamnas.load_config(preset)
    space = tamnas.build_space(cfg)
    torch.manual_seed(0)
    net = space.build_supernet()
    objective = build_objective(cfg.train, torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    r = cfg.data.resolution
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, space.in_channels, r, r, generator=g)
    y = torch.randint(0, space.num_classes, (64,), generator=g)

    def train_step():
        objective.step(net.path(space.sample(rng)), x, y, optimizer=optimizer)

    n_val = min(cfg.search.eval_images, 500)
    val = (torch.rand(n_val, space.in_channels, r, r, generator=g),
           torch.randint(0, space.num_classes, (n_val,), generator=g))
    bn = torch.rand(cfg.search.bn_images, space.in_channels, r, r, generator=g)
    attack = Attack("pgd", cfg.attack.eps, cfg.attack.steps, cfg.attack.step_size)
    evaluator = Evaluator(space, net, bn_images=bn, val_images=val[0], val_labels=val[1],
                          attack=attack, device=torch.device("cpu"),
                          batch_size=cfg.data.eval_batch_size)

    def score():
        evaluator.score(space.sample(rng))

    rows = []
    for what, fn in (("training step (batch 64)", train_step),
                     (f"evaluator, one arch ({n_val} images)", score)):
        t = alternate({"plain": fn, "fast": fn}, reps, block=4 if "step" in what else 1)
        rows.append({"preset": preset, "what": what, "plain_ms": round(1e3 * t["plain"], 1),
                     "fast_ms": round(1e3 * t["fast"], 1),
                     "ratio": round(t["fast"] / t["plain"], 3)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["quickstart", "fashion"])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "conv_speed.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__,
              "layers": layer_rows(3 * args.reps),
              "steps": [row for preset in args.presets for row in step_rows(preset, args.reps)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU, {result['threads']} threads, torch {result['torch']}")
    print("| convolution (forward + backward) | plain (ms) | fast (ms) | fast / plain |")
    print("| --- | ---: | ---: | ---: |")
    for row in result["layers"]:
        print(f"| {row['shape']} | {row['plain_ms']:.2f} | {row['fast_ms']:.2f} | {row['ratio']:.3f} |")
    print("\n| preset | work | plain (ms) | fast (ms) | fast / plain |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in result["steps"]:
        print(f"| {row['preset']} | {row['what']} | {row['plain_ms']:.1f} | {row['fast_ms']:.1f} "
              f"| {row['ratio']:.3f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
