"""What every figure of a run shares: saving, colours, marker sizes, axes style, label placement.

Figures are made without pyplot (an Agg canvas is attached), so no GUI
backend is touched and no figure stays open after it is written. Colours
come from the Okabe-Ito palette (colour-blind safe) or, for more than eight
front members, from viridis; every front member keeps its colour in every
figure.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter, MaxNLocator

from tamnas.files import atomic_write_bytes

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
KNOWN_MARKERS = {"nsga2": "o", "mgda": "s", "lego": "*", "scratch": "o", "supernet": "s"}
FORMATS = ("png", "svg", "pdf")
LABELS = {"adv_err": "adversarial error", "clean_err": "clean error", "params": "parameters",
          "flops": "multiply-adds", "latency": "latency (ms, predicted)",
          "ood_aupr_err": "OoD AUPR error"}
MAX_AREA = 240.0      # marker area (pt^2) of the largest net
FADED = "#B0B0B0"
LABEL_GAP_PT = 1.5    # between a marker's edge and its label
LABEL_BOX = {"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.7}
LABEL_PAD_PT = 2.0    # kept clear around a placed label, so "12" and "22" do not read "1222"


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A constrained-layout figure on an Agg canvas (draws and measures text without pyplot)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_base: str | Path, formats: Sequence[str] = ("png", "svg"),
                dpi: int = 150) -> list[Path]:
    """Write `fig` as `<out_base>.<fmt>` for each format (atomically) and release it."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"figure formats {list(formats)}: choose from {', '.join(FORMATS)}")
    paths = []
    for fmt in dict.fromkeys(formats):
        buf = io.BytesIO()
        metadata = {"Date": None} if fmt in ("svg", "pdf") else None
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
        path = Path(f"{out_base}.{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    fig.clear()
    return paths


# --- colours, markers, sizes ---------------------------------------------------------------
def arch_colors(keys: Sequence[str]) -> dict[str, str]:
    """One colour per arch key, by position: Okabe-Ito for up to 8 archs, viridis beyond."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    if len(keys) <= len(OKABE_ITO):
        return {k: OKABE_ITO[i] for i, k in enumerate(keys)}
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return {k: to_hex(cmap(i / (len(keys) - 1))) for i, k in enumerate(keys)}


def index_colormap(colors: Sequence[str]) -> tuple[ListedColormap, BoundaryNorm]:
    """A discrete colormap whose colour i is `colors[i]`, for a colourbar of front positions."""
    n = max(len(colors), 1)
    cmap = ListedColormap(list(colors) or ["white"])
    return cmap, BoundaryNorm(np.arange(n + 1) - 0.5, n)


def marker_for(values: Sequence[str]) -> dict[str, str]:
    """One marker shape per value; strategy and init names keep their usual shape."""
    out, spare = {}, [m for m in MARKERS if m not in KNOWN_MARKERS.values()] + MARKERS
    for v in dict.fromkeys(str(x) for x in values):
        out[v] = KNOWN_MARKERS.get(v) or spare[len(out) % len(spare)]
    return out


def areas(params, largest: float) -> np.ndarray:
    """Marker area proportional to the parameter count, the largest net at MAX_AREA."""
    return np.clip(np.asarray(params, dtype=float) / max(largest, 1.0), 0.02, None) * MAX_AREA


def largest(values) -> float:
    """The largest finite value (the reference for marker areas); 1 when there is none."""
    v = np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=float)
    v = v[np.isfinite(v)]
    return float(v.max()) if len(v) and v.max() > 0 else 1.0


def fmt_params(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def size_legend(ax, params: np.ndarray, biggest: float, **where):
    """A legend of marker sizes (smallest, median, largest); `where` places it."""
    params = np.asarray(params, dtype=float)
    params = params[np.isfinite(params)]
    if not len(params):
        return None
    refs = sorted({float(params.min()), float(np.median(params)), float(params.max())})
    handles = [Line2D([], [], ls="", marker="o", mfc="none", mec="0.3",
                      ms=float(np.sqrt(areas(np.array([r]), biggest)[0])), label=fmt_params(r))
               for r in refs]
    where = where or {"loc": "lower left", "bbox_to_anchor": (1.02, 0)}
    return ax.legend(handles=handles, title="marker area: parameters", labelspacing=1.2,
                     borderpad=0.9, frameon=True, fontsize="small", title_fontsize="small",
                     **where)


def place_legends(ax, handles: list, size_leg) -> None:
    """The key top right and the size legend below it, outside the axes: no point is hidden."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small",
              frameon=True)
    if size_leg is not None:
        ax.add_artist(size_leg)


# --- axes -------------------------------------------------------------------------------------
class PercentTicks(Formatter):
    """Fractions as percent with the fewest decimals that tell the ticks apart (at most 2)."""

    def __init__(self):
        self.decimals = 0

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        pct = 100.0 * np.asarray(locs, dtype=float)
        self.decimals = next((d for d in range(3)
                              if np.allclose(np.round(pct, d), pct, rtol=0, atol=1e-6)), 2)

    def __call__(self, x, pos=None) -> str:
        return f"{100.0 * x:.{self.decimals}f}%"


def params_ticks(x, pos=None) -> str:
    return fmt_params(float(x))


def style_axes(ax, x: str, y: str, xlabel: str | None = None, ylabel: str | None = None) -> None:
    """Labels, percent ticks for errors, readable counts for params, light grid."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xlabel(xlabel or LABELS.get(x, x))
    ax.set_ylabel(ylabel or LABELS.get(y, y))
    for axis, name in ((ax.xaxis, x), (ax.yaxis, y)):
        axis.set_major_locator(MaxNLocator(6, steps=[1, 2, 5, 10]))
        if name.endswith("_err"):
            axis.set_major_formatter(PercentTicks())
        elif name in ("params", "flops"):
            axis.set_major_formatter(FuncFormatter(params_ticks))
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_axisbelow(True)


def need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the table has no column(s) {missing}; it has "
                         f"{', '.join(map(str, df.columns))}")


# --- labels that neither overlap nor hide points ----------------------------------------------
DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
RINGS = (0.0, 6.0, 14.0, 26.0)   # extra distance (pt) tried when the nearest spots are taken


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(fig: Figure, jobs: Sequence[tuple], fontsize: float = 8) -> list:
    """Label points so that no label covers another label, a point, or leaves its axes.

    Each job is (ax, x, y, texts, marker areas in pt^2). The layout is
    fixed first (one draw, then the layout engine is frozen) so display
    positions stay where the labels were placed. Each label takes the first
    of eight spots around its point, at growing distance, that is free; a
    label pushed away from its point gets a thin leader line.
    """
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72.0
    made = []
    for ax, xs, ys, texts, area in jobs:
        xy = np.column_stack([np.asarray(xs, float), np.asarray(ys, float)])
        ok = np.isfinite(xy).all(axis=1)
        disp = ax.transData.transform(np.where(ok[:, None], xy, 0.0))
        radius = np.sqrt(np.broadcast_to(np.asarray(area, float), len(xy))) / 2 * px
        frame = ax.bbox.extents
        blocked = [(x - r, y - r, x + r, y + r) for (x, y), r, k in zip(disp, radius, ok) if k]
        for (x, y), r, text, k, point in zip(disp, radius, texts, ok, xy):
            if not k:
                continue
            probe = ax.text(0, 0, str(text), fontsize=fontsize)
            bb = probe.get_window_extent(renderer)
            probe.remove()
            w, h = bb.width, bb.height
            best, best_cost = None, math.inf
            for ring in RINGS:
                d = r + (LABEL_GAP_PT + ring) * px
                for dx, dy in DIRECTIONS:
                    s = 0.7071 if dx and dy else 1.0
                    cx, cy = x + dx * (d * s + w / 2), y + dy * (d * s + h / 2)
                    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    outside = (max(frame[0] - box[0], 0) + max(box[2] - frame[2], 0)
                               + max(frame[1] - box[1], 0) + max(box[3] - frame[3], 0))
                    cost = sum(_overlap(box, o) for o in blocked) + 1e3 * outside * (w + h)
                    if cost < best_cost - 1e-9:
                        best, best_cost = (cx - x, cy - y, box, ring), cost
                if best_cost == 0:
                    break
            ox, oy, box, ring = best
            arrow = {"arrowstyle": "-", "color": "0.35", "lw": 0.6, "shrinkA": 0,
                     "shrinkB": r / px} if ring > 0 else None
            made.append(ax.annotate(str(text), tuple(point), xytext=(ox / px, oy / px),
                                    textcoords="offset points", ha="center", va="center",
                                    fontsize=fontsize, zorder=6, arrowprops=arrow,
                                    annotation_clip=False, bbox=LABEL_BOX))
            pad = LABEL_PAD_PT * px
            blocked.append((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
    return made

