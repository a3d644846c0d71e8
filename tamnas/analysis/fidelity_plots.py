"""Figures of rank fidelity: inherited vs retrained (front members), inherited vs standalone.

Both ask whether supernet weights rank architectures as training them alone
does, the premise of one-shot search. Each panel states its Kendall tau
and n above the axes, so no statistic covers a point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tamnas.analysis.figures import (
    OKABE_ITO,
    need,
    new_figure,
    params_ticks,
    place_labels,
    save_figure,
    style_axes,
)
from tamnas.analysis.rank_fidelity import min_tau_archs, tau_summary


def tau_text(s: dict) -> str:
    """One line: tau [interval], n; or why the tau is not worth reading."""
    if not np.isfinite(s["tau"]):
        return f"Kendall τ = n/a (n = {s['n']}: no ranking)"
    if not s["readable"]:
        return (f"Kendall τ = {s['tau']:.2f}, n = {s['n']}: too few archs to mean anything "
                f"(needs {min_tau_archs()})")
    lo, hi = s["ci"]
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
    return f"Kendall τ = {s['tau']:.2f}{ci} (95% bootstrap), n = {s['n']}"


def _diagonal(ax) -> bool:
    """The y = x line across the view, so a point's distance from it reads as the gap;
    False when the two ranges do not meet (every point is far off it)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lo, hi = max(x0, y0), min(x1, y1)
    if lo < hi:
        ax.plot([lo, hi], [lo, hi], ls="--", color="0.6", lw=0.8, zorder=1)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return lo < hi


def _diagonal_note(shown: list[bool]) -> str:
    return "dashed: y = x" if any(shown) else "y = x out of view"


def short_names(names: Sequence) -> list[str]:
    """Front members by their number K (as in the front figure), other nets by name."""
    return [str(n).removeprefix("front-") for n in names]


# --- inherited vs retrained (front members) ----------------------------------------------------
def inherited_vs_retrained_figure(df: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Two panels (clean, adversarial): inherited validation error vs retrained test error.

    The pairing is what `tamnas retrain` has: the search's inherited scores on
    validation images, the retrained nets' on the test set; the axis labels
    say so. Below `min_tau_archs` archs the tau is shown as unreadable.
    """
    cols = [f"{p}_{w}_err" for w in ("clean", "adv") for p in ("inherited", "retrained")]
    need(df, cols, "plot_inherited_vs_retrained")
    fig = new_figure((10.0, 5.2))
    axes = fig.subplots(1, 2)
    names = short_names(df.get("name", pd.Series(range(len(df)))))
    jobs, diagonal = [], []
    for ax, which, name in zip(axes, ("clean", "adv"), ("clean error", "adversarial error")):
        xs = df[f"inherited_{which}_err"].to_numpy(dtype=float)
        ys = df[f"retrained_{which}_err"].to_numpy(dtype=float)
        ax.scatter(xs, ys, c=OKABE_ITO[4], edgecolors="black", linewidths=0.6, s=45, zorder=3)
        ax.margins(0.1)
        diagonal.append(_diagonal(ax))
        style_axes(ax, f"{which}_err", f"{which}_err", f"inherited {name}\n(supernet weights, "
                   "validation images)", f"retrained {name} (test set)")
        ax.set_title(f"{name.capitalize()}\n{tau_text(tau_summary(xs, ys))}", fontsize=9)
        jobs.append((ax, xs, ys, names, 45.0))
    fig.suptitle(title or f"Inherited vs retrained errors (numbers: front:K; "
                 f"{_diagonal_note(diagonal)})")
    place_labels(fig, jobs, fontsize=7)
    return fig


def plot_inherited_vs_retrained(df: pd.DataFrame, out_base: str | Path,
                                formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the inherited-vs-retrained scatter; kwargs go to `inherited_vs_retrained_figure`."""
    return save_figure(inherited_vs_retrained_figure(df, **kwargs), out_base, formats)


# --- rank fidelity (tamnas validate) ---------------------------------------------------------
def validate_lines(s: dict, n: int) -> list[str]:
    """The statistics of one objective of correlation.json, shortest first."""
    lines = [f"n = {n} archs"]
    tau, ci = s.get("kendall_tau"), s.get("kendall_tau_ci") or [None, None]
    if tau is not None and ci[0] is not None:
        lines[0] = f"Kendall τ = {tau:.2f} [{ci[0]:.2f}, {ci[1]:.2f}], n = {n} archs"
    more = []
    if s.get("ceiling") is not None:
        reach = s.get("ceiling_for_mean")
        more.append(f"ceiling τ = {s['ceiling']:.2f} ({s.get('ceiling_source', '?')})")
        if reach is not None and s.get("ceiling_source") == "seeds":
            more.append(f"reachable {reach:.2f}")
            need = s.get("seeds_needed")
            if need is not None:
                more.append(f"seeds needed {need}")
    if s.get("mean_gap") is not None:
        more.append(f"mean gap {100 * s['mean_gap']:+.1f} points")
    size = []
    ptau, pci = s.get("partial_tau"), s.get("partial_tau_ci") or [None, None]
    if ptau is not None and pci[0] is not None:
        size.append(f"size held fixed: τ = {ptau:.2f} [{pci[0]:.2f}, {pci[1]:.2f}]")
        if s.get("partial_ceiling") is not None:
            size[-1] += f", seeds {s['partial_ceiling']:.2f}"
    verdict = []
    if s.get("untrained"):
        verdict.append(f"cannot be judged: {s['untrained']} of {n} standalone nets near chance")
    elif s.get("readable") == "no":
        verdict.append("cannot be read: the standalone order is noise")
    elif s.get("readable") == "unknown":
        verdict.append("readability unknown: one seed leaves the training noise unmeasured")
    return lines + ([", ".join(more)] if more else []) + size + verdict


def validate_figure(summary: pd.DataFrame, stats: dict | None = None, *,
                    title: str | None = None) -> Figure:
    """Two panels (clean, adversarial): inherited vs standalone error of archs drawn by params.

    Error bars are one binomial standard error, so a reader sees whether the
    archs' differences stand out of the noise at all; the lines above each
    panel give tau with its interval and its ceiling.
    """
    cols = [f"{p}_{w}_err{s}" for w in ("clean", "adv") for p in ("inherited", "standalone")
            for s in ("", "_se")]
    need(summary, cols + ["params"], "plot_validate")
    fig = new_figure((10.0, 5.4))
    axes = fig.subplots(1, 2)
    params = summary["params"].to_numpy(dtype=float)
    labels = [str(v) for v in summary.get("index", pd.Series(range(len(summary))))]
    jobs, points, diagonal = [], None, []
    for ax, which, name in zip(axes, ("clean", "adv"), ("clean error", "adversarial error")):
        xs = summary[f"standalone_{which}_err"].to_numpy(dtype=float)
        ys = summary[f"inherited_{which}_err"].to_numpy(dtype=float)
        ax.errorbar(xs, ys, xerr=summary[f"standalone_{which}_err_se"].to_numpy(dtype=float),
                    yerr=summary[f"inherited_{which}_err_se"].to_numpy(dtype=float), fmt="none",
                    ecolor="0.6", elinewidth=0.8, zorder=2)
        points = ax.scatter(xs, ys, c=params, cmap="viridis", edgecolors="black",
                            linewidths=0.6, s=45, zorder=3)
        ax.margins(0.08)
        diagonal.append(_diagonal(ax))
        style_axes(ax, f"{which}_err", f"{which}_err", f"standalone {name} (trained alone)",
                   f"inherited {name} (supernet weights)")
        s = (stats or {}).get(which) or {}
        ax.set_title("\n".join([name.capitalize()] + validate_lines(s, len(summary))), fontsize=9)
        jobs.append((ax, xs, ys, labels, 45.0))
    fig.colorbar(points, ax=axes, label="parameters", shrink=0.8, format=params_ticks)
    fig.suptitle(title or "Rank fidelity: inherited vs standalone (archs spread by parameters; "
                 f"{_diagonal_note(diagonal)})")
    place_labels(fig, jobs, fontsize=7)
    return fig


def plot_validate(summary: pd.DataFrame, stats: dict | None, out_base: str | Path,
                  formats: Sequence[str] = ("png", "svg"), **kwargs) -> list[Path]:
    """Write the validate scatter; kwargs go to `validate_figure`."""
    return save_figure(validate_figure(summary, stats, **kwargs), out_base, formats)


__all__ = ["inherited_vs_retrained_figure", "plot_inherited_vs_retrained", "plot_validate",
           "tau_text", "validate_figure", "validate_lines"]
