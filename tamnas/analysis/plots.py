"""Figures of a search: the front (pairwise panels), the front retrained, hypervolume, layers.

Each figure has a builder (`*_figure`, returns a matplotlib Figure, handy for
tests and notebooks) and a writer (`plot_*`, saves PNG/SVG and returns the
paths). The rank-fidelity figures live in `fidelity_plots`, what all
figures share in `figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from tamnas.analysis.figures import (
    FADED,
    LABELS,
    OKABE_ITO,
    arch_colors,
    areas,
    fmt_params,
    index_colormap,
    largest,
    marker_for,
    need,
    new_figure,
    place_labels,
    place_legends,
    save_figure,
    size_legend,
    style_axes,
)

LEGO_EDGE = "black"
ILLEGAL = "0.82"


# --- the front (paper Fig. 6), one panel per pair of objectives --------------------------------
def _lego_row(archive_df: pd.DataFrame, lego: Mapping | None) -> dict | None:
    """The LEGO net's scores: its archive row when scored there, else the scores given."""
    if lego is None:
        if "strategy" not in archive_df:
            return None
        rows = archive_df[archive_df["strategy"] == "lego"].to_dict("records")
        return rows[0] if rows else None
    key = str(lego.get("arch"))
    if "arch" in archive_df:
        rows = archive_df[archive_df["arch"].astype(str) == key].to_dict("records")
        if rows:
            return rows[0]
    return dict(lego)


def _limits(values: Sequence[pd.Series]) -> tuple[float, float] | None:
    v = pd.to_numeric(pd.concat([pd.Series(x, dtype=float) for x in values]), errors="coerce")
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    lo, hi = float(v.min()), float(v.max())
    pad = 0.07 * (hi - lo or abs(hi) or 1.0)
    return lo - pad, hi + pad


def front_figure(archive_df: pd.DataFrame, front_df: pd.DataFrame, *,
                 objectives: Sequence[str] = ("adv_err", "clean_err", "params"),
                 size: str = "params", lego: Mapping | None = None,
                 title: str | None = None) -> Figure:
    """The front in every pair of its objectives; archive faded, members coloured and numbered.

    With three objectives a front member may look dominated in one panel
    (worse on both errors) and be on the front for being smaller: the other
    panels show where. Members are numbered by their row in `front_df`
    (the K of `--arch front:K`); a colourbar maps colour to that number.
    `lego` (arch key and scores) is starred whether or not it is a member.
    """
    objectives = list(dict.fromkeys(objectives))
    if len(objectives) < 2:
        raise ValueError(f"plot_front: objectives {objectives}: give two or more")
    need(front_df, ["arch", *objectives, size], "plot_front")
    need(archive_df, [*objectives, size], "plot_front")
    strategies = [s for s in pd.concat([archive_df.get("strategy", pd.Series(dtype=str)),
                                        front_df.get("strategy", pd.Series(dtype=str))]).dropna()]
    markers = marker_for(strategies) if len(set(strategies) - {"lego"}) > 1 else {}
    biggest = largest(pd.concat([archive_df[size], front_df[size]]))
    colors = arch_colors(front_df["arch"])
    pos_of = {str(a): i for i, a in enumerate(front_df["arch"])}
    lego_row = _lego_row(archive_df, lego)
    lego_pos = pos_of.get(str(lego_row.get("arch"))) if lego_row else None
    others = archive_df[~archive_df["arch"].isin(front_df["arch"])] if "arch" in archive_df \
        else archive_df

    def shapes(df: pd.DataFrame) -> list[str]:
        if not markers or "strategy" not in df:
            return ["o"] * len(df)
        return [markers.get(str(s), "o") for s in df["strategy"]]

    k = len(objectives)
    fig = new_figure((4.9 * (k - 1) + (3.2 if k == 2 else 1.2), 4.5 * (k - 1) + 0.9))
    grid = fig.subplots(k - 1, k - 1, squeeze=False)
    panels = [(grid[i][j], objectives[j], objectives[i + 1])
              for i in range(k - 1) for j in range(i + 1)]
    for i in range(k - 1):
        for j in range(i + 1, k - 1):
            grid[i][j].axis("off")
    limits = {o: _limits([archive_df[o], front_df[o]] + ([pd.Series([lego_row.get(o)])]
                                                          if lego_row else [])) for o in objectives}
    jobs = []
    for ax, x, y in panels:
        for m in dict.fromkeys(shapes(others)):
            sel = others[[s == m for s in shapes(others)]]
            ax.scatter(sel[x], sel[y], s=areas(sel[size], biggest), marker=m, c=FADED, alpha=0.35,
                       linewidths=0, zorder=1)
        for pos, (row, m) in enumerate(zip(front_df.to_dict("records"), shapes(front_df))):
            ax.scatter([row[x]], [row[y]], s=areas([row[size]], biggest), marker=m,
                       c=colors[str(row["arch"])], edgecolors="black", linewidths=0.7, alpha=0.9,
                       zorder=3, gid=f"front:{pos}")
        texts, area = [str(i) for i in range(len(front_df))], list(areas(front_df[size], biggest))
        xs, ys = list(front_df[x]), list(front_df[y])
        if lego_row is not None and pd.notna(lego_row.get(x)) and pd.notna(lego_row.get(y)):
            star = max(float(areas([lego_row.get(size, biggest)], biggest)[0]) * 2.2, 160.0)
            ax.scatter([lego_row[x]], [lego_row[y]], s=star, marker="*", zorder=5, gid="lego",
                       facecolors="none", edgecolors=LEGO_EDGE, linewidths=1.4)
            texts, area = texts + ["LEGO"], area + [star]
            xs, ys = xs + [lego_row[x]], ys + [lego_row[y]]
        jobs.append((ax, xs, ys, texts, area))
        style_axes(ax, x, y)
        for setter, o in ((ax.set_xlim, x), (ax.set_ylim, y)):
            if limits[o] is not None:
                setter(*limits[o])
    handles = [Line2D([], [], ls="", marker="o", mfc=FADED, mec="none", alpha=0.6, ms=7,
                      label=f"evaluated ({len(archive_df)})"),
               Line2D([], [], ls="", marker="o", mfc=OKABE_ITO[4], mec="black", ms=7,
                      label=f"non-dominated ({len(front_df)}), numbered")]
    if lego_row is not None:
        where = f"front member {lego_pos}" if lego_pos is not None else "not on the front"
        handles.append(Line2D([], [], ls="", marker="*", ms=12, mec=LEGO_EDGE, mew=1.4, mfc="none",
                              label=f"LEGO net ({where})"))
    handles += [Line2D([], [], ls="", marker=m, mfc="white", mec="black", ms=7, label=s)
                for s, m in markers.items() if s != "lego"]
    sizes = pd.concat([archive_df[size], front_df[size]]).to_numpy()
    if k == 2:
        place_legends(grid[0][0], handles, size_legend(grid[0][0], sizes, biggest))
    else:
        key = grid[0][k - 2]
        key.legend(handles=handles, loc="upper left", fontsize="small", frameon=True)
        key.add_artist(key.get_legend())
        size_legend(key, sizes, biggest, loc="center left", ncol=3, columnspacing=1.5)
        names = ", ".join(LABELS.get(o, o) for o in objectives)
        key.text(0.0, 0.0, f"Non-dominated over {names}:\na member that looks dominated in one "
                 "panel\nis better in an objective that panel leaves out.", fontsize=8,
                 va="bottom", transform=key.transAxes)
    front_colourbar(fig, [p[0] for p in panels], [colors[str(a)] for a in front_df["arch"]])
    fig.suptitle(title or "Non-dominated front (inherited weights)")
    place_labels(fig, jobs)
    return fig


def front_colourbar(fig: Figure, axes: list, colors: Sequence[str]) -> None:
    """The key from colour to front row K, shared by the front and its retrained figure."""
    if not len(colors):
        return
    cmap, norm = index_colormap(colors)
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, location="right",
                        fraction=0.035, pad=0.02, aspect=40)
    cbar.set_label("front member K (--arch front:K)")
    cbar.ax.yaxis.set_major_locator(MaxNLocator(min(len(colors), 12), integer=True))


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
    need(front_df, ["arch", "adv_err", "clean_err", "params"], "plot_retrained")
    need(retrained_df, ["arch"], "plot_retrained")
    xc, yc = _retrained_cols(retrained_df, "adv_err"), _retrained_cols(retrained_df, "clean_err")
    colors = arch_colors(front_df["arch"])
    pos_of = {str(a): i for i, a in enumerate(front_df["arch"])}
    front_by = front_df.set_index(front_df["arch"].astype(str))
    inits = retrained_df["init"].astype(str).tolist() if "init" in retrained_df else []
    markers = marker_for(inits) if len(set(inits)) > 1 else {}
    params = [float(retrained_df["params"].iloc[i]) if "params" in retrained_df
              else float(front_by["params"].get(str(a), np.nan))
              for i, a in enumerate(retrained_df["arch"])]
    biggest = largest(params + front_df["params"].astype(float).tolist())

    fig = new_figure((8.4, 5.2))
    ax = fig.add_subplot()
    xs, ys, texts, sizes = [], [], [], []
    for i, row in enumerate(retrained_df.to_dict("records")):
        key = str(row["arch"])
        area = areas([params[i]], biggest)[0] if np.isfinite(params[i]) else 40.0
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
        xs, ys, texts, sizes = xs + [row[xc]], ys + [row[yc]], texts + [label], sizes + [area]
    style_axes(ax, "adv_err", "clean_err")
    ax.margins(0.08)
    handles = [Line2D([], [], ls="", marker="o", mfc=OKABE_ITO[4], mec="black", ms=7,
                      label="retrained (test set)")]
    if show_inherited:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec=OKABE_ITO[4], alpha=0.6,
                              ms=7, label="inherited weights (validation)"))
    handles += [Line2D([], [], ls="", marker=m, mfc="white", mec="black", ms=7, label=f"init: {s}")
                for s, m in markers.items()]
    place_legends(ax, handles, size_legend(ax, np.array(params), biggest))
    front_colourbar(fig, [ax], list(colors.values()))
    ax.set_title(title or "Front members after retraining")
    place_labels(fig, [(ax, xs, ys, texts, sizes)])
    return fig


def plot_retrained(front_df: pd.DataFrame, retrained_df: pd.DataFrame, out_base: str | Path,
                   formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the after-retraining front (paper Fig. 7); kwargs go to `retrained_figure`."""
    return save_figure(retrained_figure(front_df, retrained_df, **kwargs), out_base, formats)


# --- hypervolume -----------------------------------------------------------------------------
def reference_text(reference: Mapping | None) -> str:
    """The hypervolume's normalisation and reference point in words (reference_point.json)."""
    if not reference:
        return "reference point not recorded (no search/reference_point.json)"
    names = [LABELS.get(o, o) for o in reference.get("objectives", [])]
    parts = []
    for name, lo, hi, raw in zip(names, reference["low"], reference["high"],
                                 reference["reference_point_raw"]):
        err = "error" in name
        show = (lambda v: f"{100 * v:.0f}%") if err else fmt_params
        parts.append(f"{name} [{show(lo)}, {show(hi)}] -> ref {show(raw)}")
    ref = ", ".join(f"{v:g}" for v in reference["reference_point"])
    return (f"objectives scaled to [0, 1] by (f - low) / (high - low); reference point ({ref}):\n"
            + "; ".join(parts))


def hypervolume_figure(generations_df: pd.DataFrame, *, reference: Mapping | None = None,
                       title: str | None = None) -> Figure:
    """Hypervolume per generation, against the run's fixed normalisation and reference point.

    The subtitle names both, so the number can be compared with another
    run's only when they match. `hv` is that of the strategy's own front (every
    arch it scored so far), the same for every strategy; NSGA-II's current
    population (`hv_population`), when logged, is drawn next to it.
    """
    need(generations_df, ["generation", "hv"], "plot_hypervolume")
    df = generations_df.sort_values("generation")
    fig = new_figure((7.4, 4.6))
    ax = fig.add_subplot()
    ax.plot(df["generation"], df["hv"], marker="o", ms=4, color=OKABE_ITO[4],
            label="front of every arch scored so far")
    if "hv_population" in df and df["hv_population"].notna().any():
        ax.plot(df["generation"], df["hv_population"], ls="--", color=OKABE_ITO[5],
                label="population")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, color="0.9", lw=0.6)
    ax.set_title(reference_text(reference), fontsize=8, loc="left")
    fig.suptitle(title or "Hypervolume per generation (higher is better)")
    return fig


def plot_hypervolume(generations_df: pd.DataFrame, out_base: str | Path,
                     formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the hypervolume curve; kwargs go to `hypervolume_figure`."""
    return save_figure(hypervolume_figure(generations_df, **kwargs), out_base, formats)


# --- per-layer statistics (paper Fig. 8/9, Tables XIV/XV) -----------------------------------
def layer_stats_figure(counts_df: pd.DataFrame, *, legal: pd.DataFrame | None = None,
                       chosen: Mapping[str, str] | None = None, chosen_label: str = "LEGO net",
                       title: str | None = None, xlabel: str | None = None) -> Figure:
    """Heatmap of choice counts per layer; illegal choices greyed, the LEGO choice outlined.

    `legal` (same shape, True where a layer may take a choice) greys what a
    layer cannot hold, so a zero there is not read as unpopular. `chosen`
    maps a layer to the LEGO net's choice; without it each layer's modes
    (count two or more, or a single choice) are outlined instead.
    """
    counts = counts_df.to_numpy(dtype=float)
    n_layers, n_choices = counts.shape
    if legal is not None and legal.shape != counts_df.shape:
        raise ValueError(f"plot_layer_stats: legal mask {legal.shape} does not match the counts "
                         f"{counts_df.shape}")
    fig = new_figure((max(5.0, 0.48 * n_choices + 2.6), max(3.2, 0.38 * n_layers + 2.2)))
    ax = fig.add_subplot()
    vmax = max(float(counts.max()) if counts.size else 1.0, 1.0)
    im = ax.imshow(counts, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    ok = np.ones_like(counts, bool) if legal is None else legal.to_numpy(dtype=bool)
    for i, j in zip(*np.nonzero(~ok)):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fc=ILLEGAL, ec="white", hatch="///",
                               lw=0, zorder=2))
    outlined = np.zeros_like(ok)
    if chosen is not None:
        cols = [str(c) for c in counts_df.columns]
        for i, layer in enumerate(counts_df.index):
            if str(layer) in chosen and str(chosen[str(layer)]) in cols:
                outlined[i, cols.index(str(chosen[str(layer)]))] = True
    else:
        for i in range(n_layers):
            top = counts[i].max() if counts.size else 0
            if top > 1 or (top == 1 and (counts[i] > 0).sum() == 1):  # modes (ties too)
                outlined[i] = counts[i] == top
    for i in range(n_layers):
        for j in range(n_choices):
            if counts[i, j] > 0:
                dark_cell = counts[i, j] / vmax > 0.6
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if dark_cell else "black", zorder=3)
            if outlined[i, j]:
                ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False,
                                       ec=OKABE_ITO[5], lw=2.0, zorder=4))
    long_labels = max((len(str(c)) for c in counts_df.columns), default=0) > 3
    ax.set_xticks(range(n_choices), [str(c) for c in counts_df.columns], fontsize=8,
                  rotation=90 if long_labels else 0)
    ax.set_yticks(range(n_layers), [str(r) for r in counts_df.index], fontsize=8)
    ax.set_xlabel(xlabel or str(counts_df.columns.name or "choice"))
    ax.set_ylabel(str(counts_df.index.name or "layer"))
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label("count")
    cbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    mark = f"{chosen_label}'s choice" if chosen is not None else "most frequent (mode)"
    handles = [Patch(fill=False, ec=OKABE_ITO[5], lw=2.0, label=mark)]
    if not ok.all():
        handles.append(Patch(fc=ILLEGAL, ec="white", hatch="///", label="illegal in this layer"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2,
              fontsize="small", frameon=False, borderaxespad=0)
    fig.suptitle(title or "Choices per layer")
    return fig


def plot_layer_stats(counts_df: pd.DataFrame, out_base: str | Path,
                     formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the per-layer choice heatmap; kwargs go to `layer_stats_figure`."""
    return save_figure(layer_stats_figure(counts_df, **kwargs), out_base, formats)


__all__ = [
    "arch_colors",
    "front_figure",
    "hypervolume_figure",
    "layer_stats_figure",
    "plot_front",
    "plot_hypervolume",
    "plot_layer_stats",
    "plot_retrained",
    "reference_text",
    "retrained_figure",
    "save_figure",
]
