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
    python benchmarks/latency_check.py --fronts RUN          # a latency search's front vs a params one

--fronts compares the front of RUN's search (objectives adv_err, clean_err,
latency) with the one set aside in RUN/previous/N/ (adv_err, clean_err,
params), both scored on the same supernet and read with the same table:
their sizes, latency and params spans, the hypervolume of each in (adv_err,
clean_err, latency) with the same bounds, and the best adversarial error
each offers under latency budgets.
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
            tiny: bool = False, threads: int = 1, seed: int = 0, clock: str = "wall") -> list[dict]:
    """Build one table and check it against whole nets; one row per statistic."""
    space = tamnas.build_space(tamnas.load_config(preset, TINY_SPACE if tiny else {}))
    settings = TimingSettings(batch=batch, backend=backend, device=device, threads=threads, clock=clock,
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
                     "clock": clock, "statistic": statistic, "build_s": round(build_s, 1),
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


def compare_fronts(run_dir: str) -> dict:
    """The latency search's front of RUN against the params search's in RUN/previous/N."""
    from tamnas.latency.table import attach_latency, load_table
    from tamnas.rundir import RunDir
    from tamnas.search.hypervolume import Hypervolume, objective_bounds

    run = RunDir(run_dir)
    from tamnas.config import load_run_config

    cfg = load_run_config(run.config)
    space = tamnas.build_space(cfg)
    attach_latency(space, load_table(run.latency_tables()[0]))
    fronts = {}
    for label, path in (("latency", run.front),
                        ("params", max(run.previous_root.glob("*/search/front.json")))):
        blob = json.loads(Path(path).read_text())
        rows = [{**r["scores"], "latency": space.cost("latency", tuple(r["arch"]))}
                for r in blob["front"]]
        fronts[label] = {"objectives": blob["objectives"], "rows": rows}
    objs = ["adv_err", "clean_err", "latency"]
    hv = Hypervolume(*objective_bounds(space, objs, None))
    lat_all = [r["latency"] for f in fronts.values() for r in f["rows"]]
    budgets = np.quantile(lat_all, [0.1, 0.25, 0.5])
    out = {}
    for label, f in fronts.items():
        rows = f["rows"]
        F = np.array([[r[o] for o in objs] for r in rows])
        out[label] = {"objectives": f["objectives"], "size": len(rows),
                      "latency_ms": [float(F[:, 2].min()), float(F[:, 2].max())],
                      "params": [int(min(r["params"] for r in rows)),
                                 int(max(r["params"] for r in rows))],
                      "hv_adv_clean_latency": float(hv(F)),
                      "best_adv_under": {f"{b:.3f}ms": (float(F[F[:, 2] <= b, 0].min())
                                                        if (F[:, 2] <= b).any() else None)
                                         for b in budgets}}
    return out


def markdown(rows: list[dict]) -> str:
    head = ("| preset | batch | backend | clock, stat | build s | mean ms | table RMSE % / +-10 % / tau "
            "| + correction (LOO) | params RMSE % / tau | const RMSE % | ceiling tau |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in rows:
        corr = (f"{r['correction']} {r['correction_value']:+.3f} ms" if r["correction"] == "constant"
                else f"{r['correction']} x{r['correction_value']:.2f}")
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['backend']} | {r.get('clock', 'wall')}, "
            f"{r['statistic']} | {r['build_s']:.0f} "
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
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="cpu: the thread's CPU time (one thread; a machine shared with other jobs)")
    p.add_argument("--tiny", action="store_true", help="tiny space, 3 repeats: the code paths only")
    p.add_argument("--out", default=None)
    p.add_argument("--fronts", default=None, metavar="RUN",
                   help="compare RUN's latency-search front with its previous params-search one")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.fronts:
        result = compare_fronts(args.fronts)
        print(json.dumps(result, indent=1))
        (RESULTS / "latency_fronts.json").write_text(json.dumps(result, indent=1))
        return [result]
    rows: list[dict] = []
    out = Path(args.out or RESULTS / f"latency_check{'_tiny' if args.tiny else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        for batch in args.batches:
            for backend in args.backends:
                if backend == "onnxruntime" and args.device != "cpu":
                    continue
                rows += measure(preset, batch, backend, args.device, args.archs, args.tiny,
                                args.threads, clock=args.clock)
                out.write_text(json.dumps(rows, indent=1))   # partial results survive a kill
                if not args.quiet:
                    print(markdown(rows[-2:]).splitlines()[-2:], flush=True)
    if not args.quiet:
        print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
