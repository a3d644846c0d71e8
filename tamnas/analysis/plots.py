"""Figures of a run: fronts before/after retraining, inherited vs retrained, hypervolume, layers.

Each figure has a builder (`*_figure`, returns a matplotlib Figure, handy for
tests and notebooks) and a writer (`plot_*`, saves PNG/SVG and returns the
paths). Figures are made without pyplot, so no GUI backend is touched and
no figure stays open after it is written. Colours come from the Okabe-Ito
palette (colour-blind safe) or, for more than eight front members, from
viridis; every front member keeps its colour in every figure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tamnas.analysis.rank_fidelity import kendall_tau
from tamnas.files import atomic_write_bytes

OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
KNOWN_MARKERS = {"nsga2": "o", "mgda": "s", "lego": "*", "scratch": "o", "supernet": "s"}
FORMATS = ("png", "svg", "pdf")
LABELS = {"adv_err": "adversarial error", "clean_err": "clean error", "params": "parameters",
          "flops": "multiply-adds", "ood_aupr_err": "OoD AUPR error"}
MAX_AREA = 320.0      # marker area (pt^2) of the largest net
FADED = "#B0B0B0"


# --- helpers -------------------------------------------------------------------------------
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


def arch_colors(keys: Sequence[str]) -> dict[str, str]:
    """One colour per arch key, by position: Okabe-Ito for up to 8 archs, viridis beyond."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    if len(keys) <= len(OKABE_ITO):
        return {k: OKABE_ITO[i] for i, k in enumerate(keys)}
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return {k: to_hex(cmap(i / (len(keys) - 1))) for i, k in enumerate(keys)}


def _marker_for(values: Sequence[str]) -> dict[str, str]:
    out, spare = {}, [m for m in MARKERS if m not in KNOWN_MARKERS.values()] + MARKERS
    for v in dict.fromkeys(str(x) for x in values):
        out[v] = KNOWN_MARKERS.get(v) or spare[len(out) % len(spare)]
    return out


def _areas(params: np.ndarray, largest: float) -> np.ndarray:
    """Marker area proportional to the parameter count, the largest net at MAX_AREA."""
    return np.clip(np.asarray(params, dtype=float) / max(largest, 1.0), 0.02, None) * MAX_AREA


def _largest(values) -> float:
    """The largest finite value (the reference for marker areas); 1 when there is none."""
    v = np.asarray(pd.to_numeric(pd.Series(list(values)), errors="coerce"), dtype=float)
    v = v[np.isfinite(v)]
    return float(v.max()) if len(v) and v.max() > 0 else 1.0


def _fmt_params(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else f"{n:.0f}"


def _size_legend(ax, params: np.ndarray, largest: float):
    """A legend of marker sizes (smallest, median, largest), right of the axes below the key."""
    params = np.asarray(params, dtype=float)
    params = params[np.isfinite(params)]
    if not len(params):
        return None
    refs = sorted({float(params.min()), float(np.median(params)), float(params.max())})
    handles = [Line2D([], [], ls="", marker="o", mfc="none", mec="0.3",
                      ms=float(np.sqrt(_areas(np.array([r]), largest)[0])), label=_fmt_params(r))
               for r in refs]
    return ax.legend(handles=handles, title="parameters", loc="lower left", bbox_to_anchor=(1.02, 0),
                     labelspacing=1.2,
                     borderpad=0.9, frameon=True, fontsize="small", title_fontsize="small")


def _place_legends(ax, handles: list, size_leg) -> None:
    """The key top right and the size legend below it, outside the axes: no point is hidden."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize="small",
              frameon=True)
    if size_leg is not None:
        ax.add_artist(size_leg)


def _percent_axes(ax, x: str, y: str) -> None:
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    for axis, name in ((ax.xaxis, x), (ax.yaxis, y)):
        if name.endswith("_err"):
            axis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_axisbelow(True)


def _need(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the table has no column(s) {missing}; it has "
                         f"{', '.join(map(str, df.columns))}")


# --- the front (paper Fig. 6) ----------------------------------------------------------------
def front_figure(archive_df: pd.DataFrame, front_df: pd.DataFrame, *, x: str = "adv_err",
                 y: str = "clean_err", size: str = "params", title: str | None = None) -> Figure:
    """Adversarial vs clean error; marker area = params; archive faded; front coloured and numbered.

    Front members are numbered by their position in `front_df` (the K of
    `--arch front:K` for the pipeline's front table). When the archive holds
    several strategies, marker shape tells them apart.
    """
    _need(front_df, ["arch", x, y, size], "plot_front")
    _need(archive_df, [x, y, size], "plot_front")
    strategies = [s for s in pd.concat([archive_df.get("strategy", pd.Series(dtype=str)),
                                        front_df.get("strategy", pd.Series(dtype=str))]).dropna()]
    markers = _marker_for(strategies) if len(set(strategies)) > 1 else {}
    largest = _largest(pd.concat([archive_df[size], front_df[size]]))
    colors = arch_colors(front_df["arch"])

    fig = Figure(figsize=(8.4, 5.2), layout="constrained")
    ax = fig.add_subplot()

    def marker_of(df: pd.DataFrame) -> list[str]:
        if not markers or "strategy" not in df:
            return ["o"] * len(df)
        return [markers.get(str(s), "o") for s in df["strategy"]]

    others = archive_df
    if "arch" in archive_df:
        others = archive_df[~archive_df["arch"].isin(front_df["arch"])]
    for m in dict.fromkeys(marker_of(others)):
        sel = others[[mm == m for mm in marker_of(others)]]
        ax.scatter(sel[x], sel[y], s=_areas(sel[size], largest), marker=m, c=FADED, alpha=0.35,
                   linewidths=0, zorder=1)
    front_markers = marker_of(front_df)
    for pos, (row, m) in enumerate(zip(front_df.itertuples(index=False), front_markers)):
        r = row._asdict()
        ax.scatter([r[x]], [r[y]], s=_areas([r[size]], largest), marker=m, c=colors[str(r["arch"])],
                   edgecolors="black", linewidths=0.7, alpha=0.9, zorder=3)
        ax.annotate(str(pos), (r[x], r[y]), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, zorder=4)
    if "strategy" in archive_df:  # the LEGO net stands out wherever it lands
        for r in archive_df[archive_df["strategy"] == "lego"].to_dict("records"):
            ax.scatter([r[x]], [r[y]], s=_areas([r[size]], largest)[0] * 1.6, marker="*", c="black",
                       zorder=5)
            ax.annotate("LEGO", (r[x], r[y]), xytext=(5, -10), textcoords="offset points",
                        fontsize=8, zorder=5)
    _percent_axes(ax, x, y)
    size_leg = _size_legend(ax, pd.concat([archive_df[size], front_df[size]]).to_numpy(), largest)
    handles = [Line2D([], [], ls="", marker="o", mfc=FADED, mec="none", alpha=0.6, ms=7,
                      label=f"evaluated ({len(archive_df)})"),
               Line2D([], [], ls="", marker="o", mfc=OKABE_ITO[4], mec="black", ms=7,
                      label=f"non-dominated ({len(front_df)})")]
    handles += [Line2D([], [], ls="", marker=m, mfc="white", mec="black", ms=7, label=s)
                for s, m in markers.items()]
    _place_legends(ax, handles, size_leg)
    ax.set_title(title or "Non-dominated front (inherited weights)")
    return fig


def plot_front(archive_df: pd.DataFrame, front_df: pd.DataFrame, out_base: str | Path,
               formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the front figure (paper Fig. 6); kwargs go to `front_figure`."""
    return save_figure(front_figure(archive_df, front_df, **kwargs), out_base, formats)


# --- after retraining (paper Fig. 5/7) -------------------------------------------------------
def _retrained_cols(df: pd.DataFrame, which: str) -> str:
    for col in (f"retrained_{which}", which):
        if col in df.columns:
            return col
    raise ValueError(f"plot_retrained: the retrained table has no retrained_{which} or {which} "
                     f"column; it has {', '.join(map(str, df.columns))}")


def retrained_figure(front_df: pd.DataFrame, retrained_df: pd.DataFrame, *,
                     title: str | None = None, show_inherited: bool = True) -> Figure:
    """Retrained nets at their new (adv, clean) errors, each front member in its Fig. 6 colour.

    A faded ring and a thin line mark where the same arch stood with
    inherited weights. Archs not on the front (e.g. the LEGO net) are black
    stars labelled by name; marker shape tells init modes apart when several.
    """
    _need(front_df, ["arch", "adv_err", "clean_err", "params"], "plot_retrained")
    _need(retrained_df, ["arch"], "plot_retrained")
    xc, yc = _retrained_cols(retrained_df, "adv_err"), _retrained_cols(retrained_df, "clean_err")
    colors = arch_colors(front_df["arch"])
    pos_of = {str(a): i for i, a in enumerate(front_df["arch"])}
    front_by = front_df.set_index(front_df["arch"].astype(str))
    inits = retrained_df["init"].astype(str).tolist() if "init" in retrained_df else []
    markers = _marker_for(inits) if len(set(inits)) > 1 else {}
    params = [float(retrained_df["params"].iloc[i]) if "params" in retrained_df
              else float(front_by["params"].get(str(a), np.nan))
              for i, a in enumerate(retrained_df["arch"])]
    largest = _largest(params + front_df["params"].astype(float).tolist())

    fig = Figure(figsize=(8.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    for i, row in enumerate(retrained_df.to_dict("records")):
        key = str(row["arch"])
        area = _areas([params[i]], largest)[0] if np.isfinite(params[i]) else 40.0
        m = markers.get(str(row.get("init")), "o")
        if key in colors:
            color, label = colors[key], str(pos_of[key])
            if show_inherited:
                fx, fy = float(front_by.loc[key, "adv_err"]), float(front_by.loc[key, "clean_err"])
                ax.scatter([fx], [fy], s=area, marker=m, facecolors="none", edgecolors=color,
                           alpha=0.5, linewidths=1.0, zorder=1)
                ax.plot([fx, row[xc]], [fy, row[yc]], color=color, alpha=0.4, lw=0.8, zorder=1)
        else:
            color, label, m = "black", str(row.get("name", key)), "*"
        ax.scatter([row[xc]], [row[yc]], s=area, marker=m, c=color, edgecolors="black",
                   linewidths=0.7, alpha=0.9, zorder=3)
        ax.annotate(label, (row[xc], row[yc]), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, zorder=4)
    _percent_axes(ax, "adv_err", "clean_err")
    size_leg = _size_legend(ax, np.array(params), largest)
    handles = [Line2D([], [], ls="", marker="o", mfc=OKABE_ITO[4], mec="black", ms=7,
                      label="retrained")]
    if show_inherited:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec=OKABE_ITO[4], alpha=0.6,
                              ms=7, label="inherited weights (before)"))
    handles += [Line2D([], [], ls="", marker=m, mfc="white", mec="black", ms=7, label=f"init: {s}")
                for s, m in markers.items()]
    _place_legends(ax, handles, size_leg)
    ax.set_title(title or "Front members after retraining")
    return fig


def plot_retrained(front_df: pd.DataFrame, retrained_df: pd.DataFrame, out_base: str | Path,
                   formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the after-retraining front (paper Fig. 7); kwargs go to `retrained_figure`."""
    return save_figure(retrained_figure(front_df, retrained_df, **kwargs), out_base, formats)


# --- inherited vs retrained ------------------------------------------------------------------
def _error_axes(ax, xlabel: str, ylabel: str, name: str) -> None:
    """Percent axes, light grid and title of one error-vs-error scatter panel."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(PercentFormatter(xmax=1.0))
        axis.set_major_locator(MaxNLocator(6))
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_title(name.capitalize())


def inherited_vs_retrained_figure(df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Two panels (clean, adversarial): inherited score vs retrained score with Kendall tau.

    Tau measures whether supernet weights rank architectures as training
    them alone does, the premise of one-shot search.
    """
    cols = [f"{p}_{w}_err" for w in ("clean", "adv") for p in ("inherited", "retrained")]
    _need(df, cols, "plot_inherited_vs_retrained")
    fig = Figure(figsize=(10.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    colors = [OKABE_ITO[4]] * len(df)
    for ax, which, name in zip(axes, ("clean", "adv"), ("clean error", "adversarial error")):
        xs = df[f"inherited_{which}_err"].astype(float)
        ys = df[f"retrained_{which}_err"].astype(float)
        ax.scatter(xs, ys, c=colors, edgecolors="black", linewidths=0.6, s=45, zorder=3)
        for label, xv, yv in zip(df.get("name", pd.Series(range(len(df)))), xs, ys):
            ax.annotate(str(label), (xv, yv), xytext=(4, 3), textcoords="offset points", fontsize=7)
        both = pd.concat([xs, ys]).dropna()
        if len(both):
            lo, hi = float(both.min()), float(both.max())
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="0.6", lw=0.8,
                    label="y = x")
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            ax.set_aspect("equal", adjustable="box")
        tau = kendall_tau(xs, ys)
        text = f"Kendall τ = {tau:.3f}" if np.isfinite(tau) else "Kendall τ = n/a"
        ax.text(0.03, 0.97, f"{text}\nn = {len(df)}", transform=ax.transAxes, va="top",
                fontsize=9, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        _error_axes(ax, f"inherited {name} (supernet weights)", f"retrained {name}", name)
    fig.suptitle(title or "Inherited vs retrained scores")
    return fig


def plot_inherited_vs_retrained(df: pd.DataFrame, out_base: str | Path,
                                formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the inherited-vs-retrained scatter; kwargs go to `inherited_vs_retrained_figure`."""
    return save_figure(inherited_vs_retrained_figure(df, **kwargs), out_base, formats)


# --- hypervolume -----------------------------------------------------------------------------
def hypervolume_figure(generations_df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Hypervolume per generation (reference point fixed for the run), archs scored on a twin axis.

    `evaluations` may be running totals (as the strategies log them) or
    per-generation counts; a decreasing column is taken as the latter.
    """
    _need(generations_df, ["generation", "hv"], "plot_hypervolume")
    df = generations_df.sort_values("generation")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(df["generation"], df["hv"], marker="o", ms=4, color=OKABE_ITO[4], label="hypervolume")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, color="0.9", lw=0.6)
    lines = ax.get_lines()
    if "evaluations" in df.columns and df["evaluations"].notna().all():
        evals = df["evaluations"].astype(float)
        if (evals.diff().dropna() < 0).any():  # per-generation counts: accumulate them
            evals = evals.cumsum()
        twin = ax.twinx()
        twin.plot(df["generation"], evals, ls="--", color=OKABE_ITO[5],
                  label="archs scored (total)")
        twin.set_ylabel("archs scored (total)")
        twin.yaxis.set_major_locator(MaxNLocator(integer=True))
        lines = lines + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize="small")
    ax.set_title(title or "Hypervolume per generation")
    return fig


def plot_hypervolume(generations_df: pd.DataFrame, out_base: str | Path,
                     formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the hypervolume curve; kwargs go to `hypervolume_figure`."""
    return save_figure(hypervolume_figure(generations_df, **kwargs), out_base, formats)


# --- per-layer statistics (paper Fig. 8/9, Tables XIV/XV) -----------------------------------
def layer_stats_figure(counts_df: pd.DataFrame, *, title: str | None = None,
                       xlabel: str | None = None) -> Figure:
    """Heatmap of choice counts per layer, counts in the cells, each layer's modes outlined.

    A layer whose choices all occur once has no mode worth marking, so
    outlines need a count of two or more (or a single choice).
    """
    counts = counts_df.to_numpy(dtype=float)
    n_layers, n_choices = counts.shape
    fig = Figure(figsize=(max(4.5, 0.42 * n_choices + 2.2), max(2.8, 0.36 * n_layers + 1.6)),
                 layout="constrained")
    ax = fig.add_subplot()
    vmax = max(float(counts.max()) if counts.size else 1.0, 1.0)
    im = ax.imshow(counts, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for i in range(n_layers):
        for j in range(n_choices):
            if counts[i, j] > 0:
                dark_cell = counts[i, j] / vmax > 0.6
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if dark_cell else "black")
        top = counts[i].max() if counts.size else 0
        if top > 1 or (top == 1 and (counts[i] > 0).sum() == 1):  # outline the modes (ties too)
            for j in np.flatnonzero(counts[i] == counts[i].max()):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=OKABE_ITO[5],
                                       lw=1.6))
    long_labels = max((len(str(c)) for c in counts_df.columns), default=0) > 3
    ax.set_xticks(range(n_choices), [str(c) for c in counts_df.columns], fontsize=8,
                  rotation=90 if long_labels else 0)
    ax.set_yticks(range(n_layers), [str(r) for r in counts_df.index], fontsize=8)
    ax.set_xlabel(xlabel or str(counts_df.columns.name or "choice"))
    ax.set_ylabel(str(counts_df.index.name or "layer"))
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label("count")
    ax.set_title(title or "Choices per layer")
    return fig


def plot_layer_stats(counts_df: pd.DataFrame, out_base: str | Path,
                     formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the per-layer choice heatmap; kwargs go to `layer_stats_figure`."""
    return save_figure(layer_stats_figure(counts_df, **kwargs), out_base, formats)


# --- rank fidelity (tamnas validate) ---------------------------------------------------------
def validate_figure(summary: pd.DataFrame, stats: dict | None = None, *,
                    title: str | None = None) -> Figure:
    """Two panels (clean, adversarial): inherited vs standalone error of archs drawn by params.

    Error bars are one binomial standard error, so a reader sees whether the
    archs' differences stand out of the noise at all; the box gives tau
    with its interval and its ceiling.
    """
    cols = [f"{p}_{w}_err{s}" for w in ("clean", "adv") for p in ("inherited", "standalone")
            for s in ("", "_se")]
    _need(summary, cols + ["params"], "plot_validate")
    fig = Figure(figsize=(10.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    params = summary["params"].to_numpy(dtype=float)
    for ax, which, name in zip(axes, ("clean", "adv"), ("clean error", "adversarial error")):
        xs = summary[f"standalone_{which}_err"].to_numpy(dtype=float)
        ys = summary[f"inherited_{which}_err"].to_numpy(dtype=float)
        ax.errorbar(xs, ys, xerr=summary[f"standalone_{which}_err_se"].to_numpy(dtype=float),
                    yerr=summary[f"inherited_{which}_err_se"].to_numpy(dtype=float), fmt="none",
                    ecolor="0.6", elinewidth=0.8, zorder=2)
        points = ax.scatter(xs, ys, c=params, cmap="viridis", edgecolors="black",
                            linewidths=0.6, s=45, zorder=3)
        for label, xv, yv in zip(summary.get("index", pd.Series(range(len(summary)))), xs, ys):
            ax.annotate(str(label), (xv, yv), xytext=(4, 3), textcoords="offset points", fontsize=7)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        lo, hi = min(x0, y0), max(x1, y1)
        ax.plot([lo, hi], [lo, hi], ls="--", color="0.6", lw=0.8, label="y = x")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        s = (stats or {}).get(which) or {}
        lines = [f"n = {len(summary)} archs"]
        tau, ci = s.get("kendall_tau"), s.get("kendall_tau_ci") or [None, None]
        if tau is not None and ci[0] is not None:
            lines.insert(0, f"Kendall τ = {tau:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")
        if s.get("ceiling") is not None:
            reach = s.get("ceiling_for_mean")
            more = (f", reachable {reach:.2f}" if reach is not None
                    and s.get("ceiling_source") == "seeds" else "")
            lines.insert(1, f"ceiling τ = {s['ceiling']:.2f} ({s.get('ceiling_source', '?')}{more})")
        if s.get("mean_gap") is not None:
            lines.append(f"mean gap {100 * s['mean_gap']:+.1f} points")
        ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=9,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        _error_axes(ax, f"standalone {name} (trained alone)", f"inherited {name} (supernet weights)",
                    name)
    fig.colorbar(points, ax=axes, label="parameters", shrink=0.8)
    fig.suptitle(title or "Rank fidelity: inherited vs standalone (archs spread by parameters)")
    return fig


def plot_validate(summary: pd.DataFrame, stats: dict | None, out_base: str | Path,
                  formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the validate scatter; kwargs go to `validate_figure`."""
    return save_figure(validate_figure(summary, stats, **kwargs), out_base, formats)


__all__ = [
    "arch_colors",
    "front_figure",
    "hypervolume_figure",
    "inherited_vs_retrained_figure",
    "layer_stats_figure",
    "plot_front",
    "plot_hypervolume",
    "plot_inherited_vs_retrained",
    "plot_layer_stats",
    "plot_retrained",
    "plot_validate",
    "retrained_figure",
    "save_figure",
    "validate_figure",
]
