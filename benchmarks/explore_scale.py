"""How explore.html scales: page size, build time, load and hover time in headless Chromium.

A synthetic run of the paper's CIFAR-10 space (32 genes per arch) with N archs
(three strategies, latency column, a LEGO export and two retrained nets) gets
its page from `tamnas explore`; Debian's Chromium (through Selenium and
/usr/bin/chromedriver) opens it from disk. "load" is navigation start until
the 2-D front is drawn (plotly's promise resolved), cold (the first page a
fresh browser opens: plotly.js parsed and compiled from nothing) and warm
(the median of --repeats reloads); "hover" is a mouse move onto a front point
until plotly's hover label is in the page. A bare plotly page with as many
WebGL points (plotly's own HTML writer) is measured the same way beside it,
so the overhead of the explorer is a ratio that survives a busy machine.
Writes results/explore_scale.json and prints the table in RESULTS.md.

    python benchmarks/explore_scale.py --sizes 1000 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from explore_browser import (
    EXPLORE_READY,
    PLOTLY_READY,
    hover_point,
    load,
    missing,
    severe,
    start,
)
from explore_runs import synthetic_run

from tamnas.cli import main as cli

RESULTS = Path(__file__).parent / "results"


def bare_page(path: Path, n: int, seed: int = 0) -> Path:
    """The baseline: plotly.js and n WebGL points, nothing else (plotly's own HTML writer)."""
    import numpy as np
    import plotly.graph_objects as go

    rng = np.random.default_rng(seed)
    fig = go.Figure(go.Scattergl(x=rng.random(n).tolist(), y=rng.random(n).tolist(),
                                 mode="markers"))
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def measure(page: Path, repeats: int, ready: str = EXPLORE_READY, hover: bool = True) -> dict:
    """The first load in a fresh browser (cold: nothing compiled or cached), then `repeats`
    reloads (warm); hover after the last load."""
    driver = start()
    try:
        loads = [load(driver, page, ready) for _ in range(repeats + 1)]
        row = {"cold_load_s": loads[0], "warm_load_s": statistics.median(loads[1:]),
               "loads": loads}
        if hover:
            trace = driver.execute_script(
                "return document.getElementById('front-plot').data"
                ".findIndex(t => t.meta.role === 'front')")
            row["hover_s"] = hover_point(driver, trace, 0)
        errors = severe(driver)
        if errors:
            raise AssertionError(f"console errors on {page}: {errors}")
    finally:
        driver.quit()
    return row


def run(sizes: list[int], repeats: int, preset: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = synthetic_run(Path(tmp) / f"run{n}", n=n, latency=True, preset=preset)
            t0 = time.perf_counter()
            if cli(["explore", str(out), "--quiet"]) != 0:
                raise SystemExit(f"tamnas explore failed on {out}")
            build = time.perf_counter() - t0
            page = out / "explore.html"
            bare = bare_page(Path(tmp) / f"bare{n}.html", n)
            base = measure(bare, repeats, PLOTLY_READY, hover=False)
            row = {"archs": n, "preset": preset, "size_mb": page.stat().st_size / 1e6,
                   "build_s": build, **measure(page, repeats),
                   "bare_size_mb": bare.stat().st_size / 1e6,
                   "bare_cold_load_s": base["cold_load_s"],
                   "bare_warm_load_s": base["warm_load_s"]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| archs | page (MB) | `tamnas explore` (s) | front drawn, cold (s) | "
            "front drawn, warm (s) | hover (s) | bare plotly page (MB) | bare, cold (s) | "
            "bare, warm (s) |")
    lines = [head, "| ---: " * 9 + "|"]
    lines += [f"| {r['archs']:,} | {r['size_mb']:.1f} | {r['build_s']:.1f} | "
              f"{r['cold_load_s']:.2f} | {r['warm_load_s']:.2f} | {r['hover_s']:.2f} | "
              f"{r['bare_size_mb']:.1f} | {r['bare_cold_load_s']:.2f} | "
              f"{r['bare_warm_load_s']:.2f} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="cifar10-tamnas")
    ap.add_argument("--out", type=Path, default=RESULTS / "explore_scale.json")
    args = ap.parse_args()
    if missing():
        raise SystemExit(f"needs {', '.join(missing())}: apt-get install chromium "
                         "chromium-driver; pip install selenium")
    rows = run(args.sizes, args.repeats, args.preset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
