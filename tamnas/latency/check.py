"""Check a latency table against whole nets: predicted vs measured, beside naive predictors.

N archs are sampled uniformly, each built as `build_standalone` builds it
(what export writes) and timed whole exactly as the table's units were
(same backend, batch, threads, repeats, statistic), in two independent
rounds: round A is "measured", and Kendall tau between rounds A and B is the
repeat ceiling, the best rank agreement any predictor can show on this
machine. Beside the table: params scaled to ms by least squares (a + b
params, fitted on these nets), and a constant (their mean measured time).

Where the sum of unit times misses the whole net systematically (per-call
overhead the units do not see, or, on a loaded machine, preemptions that a
long call suffers more often than a short one), a correction is fitted to
the raw sums: a constant offset (measured = sum + c) or a factor
(measured = k sum), each by least squares. Both are scored leave-one-out
(each net's correction fitted on the other nets) and the better one is
stored in the table when its leave-one-out RMSE beats the raw sum's; the
printed corrected figures are those leave-one-out ones, not flattered by
the fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from tamnas.latency.table import (
    NO_CORRECTION,
    LatencyTable,
    attach_latency,
    describe_device,
    device_fingerprint,
    same_device,
)
from tamnas.latency.timing import TimingSettings, time_module
from tamnas.supernets.base import Arch, SearchSpace


def settings_of(table: LatencyTable) -> TimingSettings:
    """The timing settings the table was built with (whole nets are timed the same way)."""
    s = table.settings
    device = s.get("device", table.device.get("device", "cpu"))
    return TimingSettings(batch=table.batch, repeats=int(s.get("repeats", 100)),
                          warmup=int(s.get("warmup", 10)), budget_s=float(s.get("budget_s", 2.0)),
                          threads=int(table.device.get("threads", 1)),
                          backend=str(table.device.get("backend", "torch")), device=device,
                          clock=str(s.get("clock", "wall")))


def require_here(table: LatencyTable, settings: TimingSettings) -> None:
    """Refuse, in one line naming both, a table measured on another device."""
    here = device_fingerprint(settings.device, settings.threads, settings.backend)
    if not same_device(table.device, here):
        raise ValueError(f"this table describes {describe_device(table.device)}, but this machine is "
                         f"{describe_device(here)}; check a table on the device it was built on")


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    """RMSE (ms and % of the mean measured), share within +-10 %, Kendall tau."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    rmse = float(np.sqrt(np.mean((pred - meas) ** 2)))
    tau = float(kendalltau(pred, meas).statistic) if np.ptp(pred) > 0 else None  # a constant ranks nothing
    return {"rmse_ms": rmse, "rmse_pct": 100.0 * rmse / float(np.mean(meas)),
            "within10": float(np.mean(np.abs(pred - meas) <= 0.1 * meas)), "tau": tau}


def loo_corrections(raw: np.ndarray, meas: np.ndarray) -> dict[str, tuple[np.ndarray, dict]]:
    """Per correction kind: leave-one-out predictions and the fit on all nets."""
    n = len(raw)
    resid = meas - raw
    offsets = (resid.sum() - resid) / max(n - 1, 1)
    pm, pp = raw * meas, raw * raw
    scales = (pm.sum() - pm) / np.maximum(pp.sum() - pp, 1e-300)
    return {"constant": (raw + offsets, {"kind": "constant", "offset_ms": float(resid.mean()),
                                         "scale": 1.0}),
            "scale": (raw * scales, {"kind": "scale", "offset_ms": 0.0,
                                     "scale": float(pm.sum() / pp.sum())})}


@dataclass
class CheckResult:
    frame: pd.DataFrame          # arch, params, predicted, measured (rounds a, b), baselines
    summary: dict                # per predictor: metrics; ceiling; correction


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    rng = np.random.default_rng([seed, 33])
    archs: list[Arch] = []
    for _ in range(50 * n):
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
        if len(archs) == n:
            return archs
    raise ValueError(f"could not draw {n} distinct archs from this space; ask for fewer (--archs)")


def time_nets(space: SearchSpace, archs: list[Arch], settings: TimingSettings,
              say: Callable[[str], None] = print) -> list[list[np.ndarray]]:
    """Per round (two), per arch, the per-call times (ms) of its standalone net, whole."""
    shape = (space.in_channels, space.resolution, space.resolution)
    nets = [space.build_standalone(a) for a in archs]
    rounds = []
    for r in ("a", "b"):
        rounds.append([time_module(net, shape, settings, seed=i) for i, net in enumerate(nets)])
        say(f"round {r}: {len(nets)} whole nets timed, "
            f"{np.mean([np.median(t) for t in rounds[-1]]):.3f} ms mean median")
    return rounds


def run_check(space: SearchSpace, table: LatencyTable, n_archs: int = 30, seed: int = 0,
              say: Callable[[str], None] = print, times: list[list[np.ndarray]] | None = None
              ) -> CheckResult:
    """Time `n_archs` whole nets twice and compare them with the table's predictions.

    `times` (from `time_nets` on the same archs) reuses timings already made, e.g. to
    score the median and the minimum of the same calls."""
    if n_archs < 4:
        raise ValueError(f"--archs {n_archs}: give 4 or more nets (a rank correlation needs them)")
    settings = settings_of(table).check()
    require_here(table, settings)
    raw_table = LatencyTable.from_dict({**table.to_dict(), "correction": dict(NO_CORRECTION)})
    attach_latency(space, raw_table)
    archs = sample_archs(space, n_archs, seed)
    times = times if times is not None else time_nets(space, archs, settings, say)
    stat = np.min if table.statistic == "min" else np.median
    meas, meas_b = (np.array([float(stat(t)) for t in rnd]) for rnd in times)
    raw = np.array([space.cost("latency", a) for a in archs])
    attach_latency(space, table)           # the space keeps the table as stored
    params = np.array([space.params(a) for a in archs], dtype=float)
    design = np.stack([np.ones_like(params), params], axis=1)
    coef = np.linalg.lstsq(design, meas, rcond=None)[0]
    fits = loo_corrections(raw, meas)
    best = min(fits, key=lambda k: metrics(fits[k][0], meas)["rmse_ms"])
    corrected, fitted = fits[best]
    frame = pd.DataFrame({"arch": ["-".join(map(str, a)) for a in archs],
                          "params": params.astype(int), "predicted_ms": raw,
                          "measured_ms": meas, "measured_b_ms": meas_b, "corrected_ms": corrected,
                          "params_scaled_ms": design @ coef,
                          "constant_ms": np.full(len(meas), meas.mean())})
    raw_m, corr_m = metrics(raw, meas), metrics(corrected, meas)
    summary = {"n_archs": len(archs), "device": describe_device(table.device), "batch": table.batch,
               "statistic": table.statistic, "table": raw_m, "table_corrected": corr_m,
               "params": metrics(frame["params_scaled_ms"].to_numpy(), meas),
               "constant": metrics(frame["constant_ms"].to_numpy(), meas),
               "repeat_ceiling_tau": float(kendalltau(meas, meas_b).statistic),
               "repeat_rmse_pct": 100.0 * float(np.sqrt(np.mean((meas - meas_b) ** 2))) / meas.mean(),
               "mean_residual_ms": float((meas - raw).mean()),
               "mean_residual_se_ms": float((meas - raw).std(ddof=1) / math.sqrt(len(meas))),
               "correction": {**fitted, "fitted_on_archs": len(archs), "seed": seed},
               "correction_helps": bool(corr_m["rmse_ms"] < raw_m["rmse_ms"]),
               "correction_before": dict(table.correction)}
    return CheckResult(frame, summary)


def store_correction(table: LatencyTable, result: CheckResult) -> bool:
    """Replace the table's correction by the check's when it helps out of sample; whether it did."""
    s = result.summary
    if not s["correction_helps"]:
        return False
    table.correction = dict(s["correction"])
    return True


def format_summary(s: dict) -> str:
    """The check as a small table: one row per predictor, then the ceiling and the correction."""
    kind = s["correction"]["kind"]
    rows = [("table (sum of entries)", s["table"]), (f"table + {kind} correction (LOO)",
                                                      s["table_corrected"]),
            ("params, scaled (a + b params)", s["params"]), ("constant (mean)", s["constant"])]
    lines = [(f"latency check: {s['n_archs']} nets, batch {s['batch']}, {s['statistic']} of "
              f"each timing, {s['device']}"),
             f"{'predictor':32s} {'RMSE ms':>8s} {'RMSE %':>7s} {'+-10 %':>7s} {'tau':>6s}"]
    for name, m in rows:
        tau = "   n/a" if m["tau"] is None else f"{m['tau']:6.2f}"
        lines.append(f"{name:32s} {m['rmse_ms']:8.3f} {m['rmse_pct']:7.1f} {100 * m['within10']:6.0f}% "
                     f"{tau}")
    lines.append(f"repeat ceiling: tau {s['repeat_ceiling_tau']:.2f} between two timing rounds "
                 f"(their RMSE {s['repeat_rmse_pct']:.1f} %)")
    c = s["correction"]
    what = f"{c['offset_ms']:+.3f} ms" if c["kind"] == "constant" else f"x {c['scale']:.3f}"
    verdict = "better out of sample" if s["correction_helps"] else "no gain out of sample"
    lines.append(f"mean residual (measured - table) {s['mean_residual_ms']:+.3f} ms "
                 f"(+- {s['mean_residual_se_ms']:.3f}); correction {c['kind']} {what}: {verdict}")
    return "\n".join(lines)


def plot_check(result: CheckResult, path_stem) -> list:
    """Predicted vs measured with the +-10 % band (PNG and SVG); the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = result.frame
    hi = 1.1 * float(max(f["measured_ms"].max(), f["predicted_ms"].max(), f["corrected_ms"].max()))
    x = np.linspace(0, hi, 50)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.fill_between(x, 0.9 * x, 1.1 * x, color="0.85", label="+-10 %")
    ax.plot(x, x, color="0.4", lw=1)
    ax.scatter(f["measured_ms"], f["predicted_ms"], s=16, label="table")
    ax.scatter(f["measured_ms"], f["corrected_ms"], s=16, marker="x",
               label=f"table + {result.summary['correction']['kind']} correction (LOO)")
    ax.scatter(f["measured_ms"], f["params_scaled_ms"], s=12, marker="^", alpha=0.6,
               label="params (scaled)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("measured whole net (ms)")
    ax.set_ylabel("predicted (ms)")
    s = result.summary
    ax.set_title(f"tau {s['table']['tau']:.2f} (ceiling {s['repeat_ceiling_tau']:.2f}), "
                 f"batch {s['batch']}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = []
    for ext in ("png", "svg"):
        p = f"{path_stem}.{ext}"
        fig.savefig(p, dpi=120)
        out.append(p)
    plt.close(fig)
    return out


__all__ = ["CheckResult", "format_summary", "loo_corrections", "metrics", "plot_check", "require_here",
           "run_check", "sample_archs", "settings_of", "store_correction", "time_nets"]
