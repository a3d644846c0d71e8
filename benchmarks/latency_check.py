"""Latency tables on this machine: build time and how well they predict whole nets.

For each preset x batch x backend: build the table (`tamnas latency build`
settings: warm-up 10, 100 repeats or 2 s per unit, threads pinned), then
time --archs uniformly sampled standalone nets whole in two rounds and score
the table's sum against them (`latency check`), once with every figure read
as the median of its calls and once as the minimum (the same calls: the
table stores both statistics, the nets' times are kept). Beside it: params
scaled to ms by least squares, a constant, and the repeat ceiling (tau
between the two rounds). Writes benchmarks/results/latency_check.json and
prints the Markdown table of benchmarks/RESULTS.md.

    python benchmarks/latency_check.py                       # quickstart + fashion, batch 1 and 32
    python benchmarks/latency_check.py --tiny                # seconds: the code paths only
    python benchmarks/latency_check.py --device cuda         # CUDA events (device_check --only latency)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import tamnas
from tamnas.latency.build import build_table
from tamnas.latency.check import run_check, sample_archs, time_nets
from tamnas.latency.table import LatencyTable
from tamnas.latency.timing import TimingSettings

RESULTS = Path(__file__).parent / "results"
TINY_SPACE = {"space.stem_channels": 4, "space.stage_channels": [8, 16], "space.stage_layers": [1, 2],
              "space.head_channels": 16, "space.fc_channels": 16, "data.resolution": 8}


def measure(preset: str, batch: int, backend: str, device: str = "cpu", archs: int = 30,
            tiny: bool = False, threads: int = 1, seed: int = 0) -> list[dict]:
    """Build one table and check it against whole nets; one row per statistic."""
    space = tamnas.build_space(tamnas.load_config(preset, TINY_SPACE if tiny else {}))
    settings = TimingSettings(batch=batch, backend=backend, device=device, threads=threads,
                              **({"repeats": 3, "warmup": 1, "budget_s": 0.05} if tiny else {}))
    tic = time.perf_counter()
    table = build_table(space, settings, say=lambda m: None)
    build_s = time.perf_counter() - tic
    chosen = sample_archs(space, archs, seed)
    times = time_nets(space, chosen, settings.check(), say=lambda m: None)
    rows = []
    for statistic in ("median", "min"):
        t = LatencyTable.from_dict({**table.to_dict(), "predict_with": statistic})
        s = run_check(space, t, n_archs=archs, seed=seed, times=times, say=lambda m: None).summary
        rows.append({"preset": preset, "batch": batch, "backend": backend, "device": s["device"],
                     "statistic": statistic, "build_s": round(build_s, 1),
                     "entries": len(table.entries), "archs": archs,
                     "mean_ms": float(np.mean([getattr(np, statistic)(x) for x in times[0]])),
                     **{f"{k}_{m}": s[k][m] for k in ("table", "table_corrected", "params",
                                                      "constant")
                        for m in ("rmse_pct", "within10", "tau")},
                     "correction": s["correction"]["kind"],
                     "correction_value": (s["correction"]["offset_ms"]
                                          if s["correction"]["kind"] == "constant"
                                          else s["correction"]["scale"]),
                     "ceiling_tau": s["repeat_ceiling_tau"]})
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| preset | batch | backend | stat | build s | mean ms | table RMSE % / +-10 % / tau "
            "| + correction (LOO) | params RMSE % / tau | const RMSE % | ceiling tau |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in rows:
        corr = (f"{r['correction']} {r['correction_value']:+.3f} ms" if r["correction"] == "constant"
                else f"{r['correction']} x{r['correction_value']:.2f}")
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['backend']} | {r['statistic']} | {r['build_s']:.0f} "
            f"| {r['mean_ms']:.2f} | {r['table_rmse_pct']:.1f} / {100 * r['table_within10']:.0f} % / "
            f"{r['table_tau']:.2f} | {r['table_corrected_rmse_pct']:.1f} / "
            f"{100 * r['table_corrected_within10']:.0f} % / {r['table_corrected_tau']:.2f} ({corr}) "
            f"| {r['params_rmse_pct']:.1f} / {r['params_tau']:.2f} | {r['constant_rmse_pct']:.1f} "
            f"| {r['ceiling_tau']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["quickstart", "fashion"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="tiny space, 3 repeats: the code paths only")
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    rows: list[dict] = []
    out = Path(args.out or RESULTS / f"latency_check{'_tiny' if args.tiny else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        for batch in args.batches:
            for backend in args.backends:
                if backend == "onnxruntime" and args.device != "cpu":
                    continue
                rows += measure(preset, batch, backend, args.device, args.archs, args.tiny,
                                args.threads)
                out.write_text(json.dumps(rows, indent=1))   # partial results survive a kill
                if not args.quiet:
                    print(markdown(rows[-2:]).splitlines()[-2:], flush=True)
    if not args.quiet:
        print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
