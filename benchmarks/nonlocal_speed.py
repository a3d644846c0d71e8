"""Non-local layer, forward + backward: the fused attention call against the explicit formula.

The layers are the non-local layers of a preset's supernet at their widest
inner width (one of each shape), each in both pairwise kinds (embedded
Gaussian and Gaussian, whichever the preset offers), at the preset's resolution and at
every extra --resolution given (28x28 is the shape the profile of issue 22
was taken at). "old" is the layer as first written (theta^T phi, an N x N
softmax, two bmm, its 1x1 convolutions through plain `F.conv2d`), "new" is
`NonLocal.forward` (one `scaled_dot_product_attention`, the 1x1 convolutions
through `fastconv`, a matmul on CPU). Old and new take turns repetition by
repetition, so drifting load on a shared machine hits both alike; each
layer's time is its median repetition, and a resolution's ratio (new / old,
the target is <= 0.35) is one of the layers' summed medians. Writes
benchmarks/results/nonlocal_speed.json.

    python benchmarks/nonlocal_speed.py --preset quickstart --resolution 28 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import tamnas
from tamnas.supernets.fastconv import plain_convolutions
from tamnas.supernets.shufflenet.blocks import NonLocal

MODES = ("embedded", "gaussian")


def old_forward(nl: NonLocal, x: torch.Tensor) -> torch.Tensor:
    """The explicit formula the fused call replaced (full width, no mask), plain convolutions."""
    with plain_convolutions():
        return _explicit(nl, x)


def _explicit(nl: NonLocal, x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    g = nl.g(x).flatten(2)
    if nl.mode == "embedded":
        theta, phi = nl.theta(x).flatten(2), nl.phi(x).flatten(2)
        f = torch.bmm(theta.transpose(1, 2), phi)
    else:
        xf = x.flatten(2)
        f = torch.bmm(xf.transpose(1, 2), xf)
    y = torch.bmm(g, f.softmax(dim=-1).transpose(1, 2)).view(b, -1, h, w)
    z = nl.w(y)
    if nl.w_bn is not None:
        z = nl.w_bn(z)
    return z + x


def layer_shapes(preset: str, resolution: int | None, samples: int = 40) -> list[dict]:
    """One entry per distinct non-local layer the preset's supernet runs, with its input shape."""
    cfg = tamnas.load_config(preset, {} if resolution is None else {"data.resolution": resolution})
    space = tamnas.build_space(cfg)
    net = space.build_supernet().eval()
    seen: dict[tuple, dict] = {}

    def hook(m, inputs, _):
        _, c, h, w = inputs[0].shape
        for mode in MODES:   # both pairwise kinds at every shape, whichever the preset offers
            key = (c, h, w, m.inner, mode, m.w_bn is not None)
            seen.setdefault(key, {"channels": c, "height": h, "width": w, "inner": m.inner,
                                  "mode": mode, "bn": m.w_bn is not None})

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, NonLocal)]
    x = torch.rand(1, space.in_channels, space.resolution, space.resolution)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(samples):        # enough random paths to visit every candidate
            net(x, space.sample(rng))
    for h in handles:
        h.remove()
    return [seen[k] for k in sorted(seen)]


def time_layer(shape: dict, batch: int, reps: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    nl = NonLocal(shape["channels"], shape["inner"], shape["mode"], bn=shape["bn"]).to(device).train()
    x = torch.randn(batch, shape["channels"], shape["height"], shape["width"], device=device,
                    requires_grad=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fns = {"old": lambda: old_forward(nl, x), "new": lambda: nl(x)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for rep in range(reps + 1):
        for name, fn in fns.items():
            sync()
            tic = time.perf_counter()
            fn().square().mean().backward()
            sync()
            if rep:                      # repetition 0 warms up
                times[name].append(time.perf_counter() - tic)
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    return {**shape, "positions": shape["height"] * shape["width"],
            "old_ms": round(1000 * old, 3), "new_ms": round(1000 * new, 3),
            "ratio": round(new / old, 3)}


def run(args) -> dict:
    device = torch.device(args.device)
    sets = []
    for res in [None, *args.resolution]:
        shapes = layer_shapes(args.preset, res)
        rows = [time_layer(s, args.batch, args.reps, device) for s in shapes]
        old = sum(r["old_ms"] for r in rows)
        new = sum(r["new_ms"] for r in rows)
        cfg_res = tamnas.load_config(args.preset).data.resolution if res is None else res
        sets.append({"input_resolution": cfg_res, "rows": rows, "old_ms": round(old, 3),
                     "new_ms": round(new, 3), "ratio": round(new / old, 3)})
        if not args.quiet:
            print(f"  input {cfg_res}x{cfg_res}: ratio {new / old:.3f}", flush=True)
    return {"preset": args.preset, "batch": args.batch, "reps": args.reps, "device": str(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "sets": sets}


def table(result: dict) -> str:
    lines = [(f"{result['preset']} supernet's non-local layers (widest inner width), batch "
              f"{result['batch']}, forward + backward, {result['reps']} repetitions, "
              f"{result['device']}, {result['threads']} threads"),
             ("| input | layer input (C x H x W) | inner | pairwise | W + BN | old (ms) | new (ms) "
              "| new / old |"),
             "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |"]
    for s in result["sets"]:
        res = s["input_resolution"]
        for r in s["rows"]:
            lines.append(f"| {res}x{res} | {r['channels']} x {r['height']} x {r['width']} | "
                         f"{r['inner']} | {r['mode']} | {'yes' if r['bn'] else 'no'} | "
                         f"{r['old_ms']:.2f} | {r['new_ms']:.2f} | {r['ratio']:.3f} |")
        lines.append(f"| {res}x{res} | all layers above | | | | {s['old_ms']:.2f} | "
                     f"{s['new_ms']:.2f} | **{s['ratio']:.3f}** |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--resolution", type=int, nargs="*", default=[28],
                   help="input sizes to time besides the preset's own")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default="")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / "nonlocal_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
