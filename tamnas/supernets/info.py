"""Summary of a search space for `tamnas space-info`: size, gene table, params/FLOPs of sampled subnets.

It also estimates how many uniform samples fall inside the training's
params windows: the sampler rejects everything outside, so a window that
holds few samples makes it crawl (`warn_sparse_windows` says so once).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tamnas.supernets.base import SearchSpace

log = logging.getLogger(__name__)
SPARSE_SHARE = 0.05      # below this share of uniform samples a window is worth a warning
WINDOW_SAMPLES = 2000


def _readable(values: list[str], limit: int = 12) -> str:
    """Compress numeric runs (0, 1, 2, 3 -> 0-3) and shorten long lists."""
    try:
        ints = [int(v) for v in values]
    except ValueError:
        ints = None
    if ints is not None and ints == sorted(ints):
        parts, start = [], None
        for i, v in enumerate(ints):
            start = v if start is None else start
            if i + 1 == len(ints) or ints[i + 1] != v + 1:
                parts.append(str(start) if start == v else f"{start}-{v}")
                start = None
        return ", ".join(parts)
    if len(values) > limit:
        return ", ".join(values[:limit // 2] + ["..."] + values[-limit // 2:])
    return ", ".join(values)


def _summary(values: list[int]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "max": int(arr.max())}


def window_share(space: SearchSpace, window: Sequence[int],
                 allowed: Mapping[str, Sequence[int]] | None = None,
                 n_samples: int = WINDOW_SAMPLES, seed: int = 0) -> float:
    """Share of uniform samples (over the `allowed` gene values) whose params lie in [lo, hi].

    Uses its own generator, so estimating never changes a training run's draws.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    lo, hi = int(window[0]), int(window[1])
    rng = np.random.default_rng(seed)
    if hasattr(space, "sample_params"):     # same draws as `sample`, without a Python loop
        params = np.asarray(space.sample_params(rng, n_samples, allowed))
    else:
        params = np.array([space.params(space.sample(rng, allowed=allowed))
                           for _ in range(n_samples)])
    return float(((params >= lo) & (params <= hi)).mean())


def schedule_windows(schedule, n_samples: int = WINDOW_SAMPLES) -> list[dict[str, Any]]:
    """One row per stretch of a SamplingSchedule with its own window and ratio set, with its share.

    Phase 1 is one stretch (widest ratio); phase 2 has one stretch per
    enlargement of the ratio set. Phases without a window are left out.
    """
    rows: list[dict[str, Any]] = []
    for epoch in range(schedule.total_epochs):
        window = schedule.params_range(epoch)
        key = (schedule.phase(epoch), tuple(window or ()), tuple(schedule.ratio_values(epoch)))
        if rows and rows[-1]["key"] == key:
            rows[-1]["epochs"][1] = epoch
        else:
            rows.append({"key": key, "phase": key[0], "epochs": [epoch, epoch],
                         "window": window, "ratios": list(key[2]), "allowed": schedule.allowed(epoch)})
    out = []
    for r in rows:
        if r["window"] is None:
            continue
        share = window_share(schedule.space, r["window"], r["allowed"], n_samples)
        out.append({**{k: r[k] for k in ("phase", "epochs", "window", "ratios")},
                    "share": share, "n_samples": n_samples})
    return out


def _decimal(v: float) -> str:
    text = f"{v:g}"
    return text if "." in text or "e" in text else f"{text}.0"


def format_window(row: Mapping[str, Any]) -> str:
    """One schedule_windows row as text: phase, epochs, ratios, share inside the window."""
    lo, hi = row["window"]
    first, last = row["epochs"]
    r = [_decimal(v) for v in sorted(float(v) for v in row["ratios"])]
    ratios = "" if not r else f", ratio {r[0]}" if len(r) == 1 else f", ratios {r[0]}-{r[-1]}"
    return (f"phase {row['phase']}, epochs {first}-{last}{ratios}: "
            f"{100 * row['share']:.1f}% inside [{_num(lo)}, {_num(hi)}]")


def warn_sparse_windows(schedule, threshold: float = SPARSE_SHARE) -> list[dict[str, Any]]:
    """Log one warning naming every window that holds less than `threshold` of uniform samples."""
    sparse = [r for r in schedule_windows(schedule) if r["share"] < threshold]
    if sparse:
        log.warning("params windows hold under %.0f%% of uniform samples, so rejection sampling "
                    "will be slow: %s. Widen train.params_range_phase1/2 or check the space "
                    "(`tamnas space-info`).", 100 * threshold,
                    "; ".join(format_window(r) for r in sparse))
    return sparse


def space_info(space: SearchSpace, rng: np.random.Generator, n_samples: int = 500,
               schedule=None) -> dict[str, Any]:
    """Size of the space, one row per gene, min/median/max params and FLOPs of sampled subnets.

    With a SamplingSchedule, also the share of uniform samples inside each of its windows.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    size = int(space.n_legal())
    rows = []
    for j, g in enumerate(space.genes):
        labels = space.gene_choices(j)
        rows.append({"gene": g.name, "kind": g.kind, "choices": g.choices,
                     "values": _readable([str(v) for v in labels])})
    archs = [space.sample(rng) for _ in range(n_samples)]
    info: dict[str, Any] = {
        "space": space.name, "n_genes": len(space.genes), "size": size,
        "log10_size": math.log10(size) if size > 0 else float("-inf"), "genes": rows,
        "n_samples": n_samples,
        "params": _summary([space.params(a) for a in archs]),
        "flops": _summary([space.flops(a) for a in archs]),
    }
    try:
        info["params_bounds"] = [int(v) for v in space.params_bounds()]
    except NotImplementedError:
        pass
    info["names"] = _names(space)
    if schedule is not None:
        info["windows"] = schedule_windows(schedule, n_samples)
    return info


def _names(space: SearchSpace) -> dict[str, dict[str, str]]:
    """Per gene kind, code -> readable name of every offered value whose name is not its code."""
    out: dict[str, dict[str, str]] = {}
    for j, g in enumerate(space.genes):
        codes = space.gene_choices(j)
        for v, code in enumerate(codes):
            name = space.gene_label(j, v)
            if name != str(code):
                out.setdefault(g.kind, {})[str(code)] = name
    return out


def _num(v: float) -> str:
    v = float(v)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3f}{unit}"
    return f"{v:g}"


def format_space_info(info: dict[str, Any]) -> str:
    """The `space_info` dict as printable text."""
    lines = [(f"space {info['space']}: {info['n_genes']} genes, {info['size']} legal archs "
              f"(10^{info['log10_size']:.2f})"), ""]
    w_name = max(4, *(len(r["gene"]) for r in info["genes"]))
    w_kind = max(4, *(len(r["kind"]) for r in info["genes"]))
    lines.append(f"{'gene':<{w_name}}  {'kind':<{w_kind}}  choices  values")
    for r in info["genes"]:
        lines.append(f"{r['gene']:<{w_name}}  {r['kind']:<{w_kind}}  {r['choices']:>7}  {r['values']}")
    lines.append("")
    n = info["n_samples"]
    for key in ("params", "flops"):
        s = info[key]
        lines.append(f"{key:<6} over {n} sampled subnets: min {_num(s['min'])}  median {_num(s['median'])}  "
                     f"max {_num(s['max'])}")
    if "params_bounds" in info:
        lo, hi = info["params_bounds"]
        lines.append(f"params reachable in the whole space: {_num(lo)} .. {_num(hi)}")
    if info.get("windows"):
        per = info["windows"][0]["n_samples"]
        lines += ["", f"uniform samples inside the training windows ({per} per window):"]
        lines += [f"  {format_window(r)}" for r in info["windows"]]
    for kind, names in info.get("names", {}).items():
        lines += ["", f"{kind} names: " + ", ".join(f"{c} {n}" for c, n in names.items())]
    return "\n".join(lines)


__all__ = ["format_space_info", "format_window", "schedule_windows", "space_info", "warn_sparse_windows",
           "window_share"]
