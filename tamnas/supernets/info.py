"""Summary of a search space for `tamnas space-info`: size, gene table, params/FLOPs of sampled subnets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tamnas.supernets.base import SearchSpace


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


def space_info(space: SearchSpace, rng: np.random.Generator, n_samples: int = 500) -> dict[str, Any]:
    """Size of the space, one row per gene, and min/median/max params and FLOPs of sampled subnets."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if hasattr(space, "n_legal"):
        size = int(space.n_legal())
    else:
        size = math.prod(len(space.allowed_values(g, None)) for g in space.genes)
    rows = []
    for j, g in enumerate(space.genes):
        labels = (space.gene_labels(j) if hasattr(space, "gene_labels")
                  else [str(v) for v in space.allowed_values(g, None)])
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
    return info


def _num(v: float) -> str:
    v = float(v)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3f}{unit}"
    return f"{v:g}"


def format_space_info(info: dict[str, Any]) -> str:
    """The `space_info` dict as printable text."""
    lines = [f"space {info['space']}: {info['n_genes']} genes, {info['size']} legal archs "
             f"(10^{info['log10_size']:.2f})", ""]
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
    return "\n".join(lines)


__all__ = ["format_space_info", "space_info"]
