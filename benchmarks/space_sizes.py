"""Subnet sizes of the TAM-NAS space for every head layout and ratio base, against the paper's windows.

For each (head, ratio_base) of the preset's space, draws --samples uniform
subnets the way supernet training does before its rejection step (phase 1:
the widest ratio only; phase 2 at its end: every ratio) and reports min /
median / max parameters and the share inside section III-C's windows
[1.823M, 2.375M] (phase 1) and [1.61M, 2.37M] (phase 2), plus the share
inside the preset's own windows when they differ. Writes a JSON file and
prints a Markdown table (the one in benchmarks/RESULTS.md).

    python benchmarks/space_sizes.py --preset cifar10-tamnas --preset cifar10-tamnas-2s
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import tamnas
from tamnas.sampling import SamplingSchedule
from tamnas.supernets.shufflenet.space import HEADS, RATIO_BASES

PAPER = {1: (1_823_000, 2_375_000), 2: (1_610_000, 2_370_000)}


def _share(params: np.ndarray, window) -> float:
    return float(((params >= window[0]) & (params <= window[1])).mean())


def measure(preset: str, head: str, ratio_base: str, samples: int, seed: int) -> dict:
    """Sizes of uniform phase-1 and phase-2 samples of one layout of a preset's space."""
    cfg = tamnas.load_config(preset, {"space.head": head, "space.ratio_base": ratio_base})
    space = tamnas.build_space(cfg)
    schedule = SamplingSchedule(space, cfg.train, tuple(cfg.space.ratios))
    rng = np.random.default_rng(seed)
    row = {"preset": preset, "head": head, "ratio_base": ratio_base,
           "width_mult": cfg.space.width_mult, "samples": samples,
           "bounds": [int(v) for v in space.params_bounds()]}
    for phase, epoch in ((1, 0), (2, schedule.total_epochs - 1)):
        allowed = schedule.allowed(epoch)
        params = np.array([space.params(space.sample(rng, allowed=allowed)) for _ in range(samples)])
        own = schedule.params_range(epoch)
        row[f"phase{phase}"] = {
            "min": int(params.min()), "median": float(np.median(params)), "max": int(params.max()),
            "paper_window": list(PAPER[phase]), "share_paper": _share(params, PAPER[phase]),
            "preset_window": own, "share_preset": None if own is None else _share(params, own)}
    return row


def _m(v: float) -> str:
    return f"{v / 1e6:.3f}M"


def markdown(rows: list[dict]) -> str:
    """The size table: one row per preset and layout."""
    lines = [("| preset | head | ratio base | phase 1 min / median / max | in [1.823M, 2.375M] "
              "| phase 2 min / median / max | in [1.61M, 2.37M] "
              "| in the preset's windows (1 / 2) |"),
             "| --- | --- | --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        p1, p2 = r["phase1"], r["phase2"]
        own = "same" if p1["preset_window"] == p1["paper_window"] and \
            p2["preset_window"] == p2["paper_window"] else \
            f"{100 * (p1['share_preset'] or 0):.1f}% / {100 * (p2['share_preset'] or 0):.1f}%"
        lines.append(
            f"| {r['preset']} | {r['head']} | {r['ratio_base']} "
            f"| {_m(p1['min'])} / {_m(p1['median'])} / {_m(p1['max'])} | {100 * p1['share_paper']:.1f}% "
            f"| {_m(p2['min'])} / {_m(p2['median'])} / {_m(p2['max'])} | {100 * p2['share_paper']:.1f}% "
            f"| {own} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", help="preset(s) to measure (default cifar10-tamnas)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "space_sizes.json"))
    args = ap.parse_args(argv)
    rows = [measure(preset, head, base, args.samples, args.seed)
            for preset in args.preset or ["cifar10-tamnas"] for head in HEADS for base in RATIO_BASES]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows), end="")
    return rows


if __name__ == "__main__":
    main()
