"""Figures: the front in pairwise panels with the LEGO star, labels that do not collide, the
hypervolume's reference, per-layer legality, rank-fidelity panels and their tick labels."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.legend import Legend
from matplotlib.text import Text
from scipy.stats import kendalltau
from test_analysis import FakeShuffleSpace, assert_written, retrained_table, search_frames

from tamnas.analysis import fidelity_plots, lego, plots, rank_fidelity, stats
from tamnas.analysis.figures import PercentTicks, arch_colors

REFERENCE = {"objectives": ["adv_err", "clean_err", "params"], "low": [0.0, 0.0, 1389.0],
             "high": [1.0, 1.0, 5983.0], "reference_point": [1.1, 1.1, 1.1],
             "reference_point_raw": [1.1, 1.1, 6442.4]}


@pytest.fixture
def space() -> FakeShuffleSpace:
    return FakeShuffleSpace()


def points_at(ax) -> list[tuple[float, float]]:
    """Centres of the front members (gid front:K) and the LEGO star of an axes."""
    return [tuple(c.get_offsets()[0]) for c in ax.collections
            if str(c.get_gid()).startswith("front:") or c.get_gid() == "lego"]


def point_color(fig, x: float, y: float) -> tuple:
    """Face colour of the opaque scatter point drawn at (x, y) in the first panel."""
    for coll in fig.axes[0].collections:
        offsets = coll.get_offsets()
        if len(offsets) == 1 and np.allclose(offsets[0], (x, y)) and len(coll.get_facecolors()):
            return tuple(np.round(coll.get_facecolors()[0][:3], 4))
    raise AssertionError(f"no point at {(x, y)}")


def legend_texts(fig) -> set[str]:
    return {t.get_text() for leg in fig.findobj(Legend) for t in leg.get_texts()}


def panels(fig) -> list:
    """The axes that hold data (not the legend cell, not the colourbar)."""
    return [ax for ax in fig.axes if ax.axison and ax.get_xlabel() and ax.collections
            and "front member" not in ax.get_ylabel()]


def lego_stars(ax) -> list:
    return [c for c in ax.collections if c.get_gid() == "lego"]


# --- the front -------------------------------------------------------------------------------
def test_front_has_one_panel_per_pair_of_objectives_with_every_member_in_place(space):
    _, df, front = search_frames(space)
    fig = plots.front_figure(df, front)
    axes = panels(fig)
    pairs = [(ax.get_xlabel(), ax.get_ylabel()) for ax in axes]
    assert pairs == [("adversarial error", "clean error"), ("adversarial error", "parameters"),
                     ("clean error", "parameters")]
    for ax, (x, y) in zip(axes, [("adv_err", "clean_err"), ("adv_err", "params"),
                                 ("clean_err", "params")]):
        drawn = sorted(points_at(ax))
        expected = sorted(zip(front[x].astype(float), front[y].astype(float)))
        np.testing.assert_allclose(drawn, expected, rtol=0, atol=0)
        numbers = sorted(int(t.get_text()) for t in ax.texts)
        assert numbers == list(range(len(front)))


def test_front_with_two_objectives_is_one_panel(space):
    _, df, front = search_frames(space)
    fig = plots.front_figure(df, front, objectives=["adv_err", "clean_err"])
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in panels(fig)] == \
        [("adversarial error", "clean error")]
    with pytest.raises(ValueError, match="two or more"):
        plots.front_figure(df, front, objectives=["adv_err"])


def test_front_colourbar_maps_each_member_number_to_its_colour(space):
    _, df, front = search_frames(space)
    fig = plots.front_figure(df, front)
    cbars = [ax for ax in fig.axes if "front member" in ax.get_ylabel()]
    assert len(cbars) == 1
    mesh = next(c for c in cbars[0].collections if isinstance(c, QuadMesh))
    shown = [tuple(np.round(c[:3], 4)) for c in mesh.to_rgba(mesh.get_array().ravel())]
    from matplotlib.colors import to_rgb

    expected = [tuple(np.round(to_rgb(c), 4)) for c in arch_colors(front["arch"]).values()]
    assert shown == expected
    for k, row in front.iterrows():      # the member numbered k is drawn in colour k of the bar
        assert point_color(fig, row["adv_err"], row["clean_err"]) == expected[k]


@pytest.mark.parametrize("member", [True, False])
def test_lego_net_is_starred_in_every_panel_whether_or_not_a_member(space, member):
    _, df, front = search_frames(space)
    if member:
        row = front.iloc[2]
        lego_row = {"arch": row["arch"]}            # scored in the archive: its row is used
        where = (row["adv_err"], row["clean_err"], row["params"])
    else:
        lego_row = {"arch": "9-9-9-9", "adv_err": 0.61, "clean_err": 0.37, "params": 2500}
        where = (0.61, 0.37, 2500)
    fig = plots.front_figure(df, front, lego=lego_row)
    at = {"adv_err": where[0], "clean_err": where[1], "params": where[2]}
    names = {"adversarial error": "adv_err", "clean error": "clean_err", "parameters": "params"}
    for ax in panels(fig):
        stars = lego_stars(ax)
        assert len(stars) == 1
        np.testing.assert_allclose(stars[0].get_offsets()[0],
                                   (at[names[ax.get_xlabel()]], at[names[ax.get_ylabel()]]))
        filled = stars[0].get_facecolors()
        assert len(filled) == 0 or filled[0][3] == 0   # hollow: a member's colour shows through
        assert "LEGO" in {t.get_text() for t in ax.texts}
    label = "LEGO net (front member 2)" if member else "LEGO net (not on the front)"
    assert label in legend_texts(fig)


def test_front_stars_a_lego_row_of_the_archive_when_no_lego_is_given(space):
    _, df, front = search_frames(space)
    off = df[~df["arch"].isin(front["arch"])].index[0]
    df.loc[off, "strategy"] = "lego"
    fig = plots.front_figure(df, front)
    star = lego_stars(fig.axes[0])
    np.testing.assert_allclose(star[0].get_offsets()[0],
                               (df.loc[off, "adv_err"], df.loc[off, "clean_err"]))


def crowded_front(space) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Members packed within a hair of each other, the "124" case of the quickstart."""
    _, df, front = search_frames(space)
    front = front.copy()
    base = front.loc[0, ["adv_err", "clean_err", "params"]].astype(float)
    for k in (1, 2, 4, 5):
        front.loc[k, "adv_err"] = base["adv_err"] + 0.001 * k
        front.loc[k, "clean_err"] = base["clean_err"] - 0.001 * k
        front.loc[k, "params"] = base["params"] + 5 * k
    return df, front


def test_front_labels_neither_overlap_nor_cover_members_nor_leave_the_axes(space):
    df, front = crowded_front(space)
    lego_row = {"arch": front.loc[3, "arch"]}
    fig = plots.front_figure(df, front, lego=lego_row)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in panels(fig):
        boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]
        assert len(boxes) == len(front) + 1
        for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
            assert not ba.overlaps(bb), (ax.get_xlabel(), ax.get_ylabel(), a, b)
        frame = ax.bbox
        centres = ax.transData.transform(np.array(points_at(ax), dtype=float))
        for text, box in boxes:
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1, text
            assert frame.y0 <= box.y0 and box.y1 <= frame.y1, text
            for cx, cy in centres:
                assert not box.contains(cx, cy), (text, cx, cy)


def test_front_figure_copes_with_an_empty_front(space):
    _, df, front = search_frames(space, n=5)
    fig = plots.front_figure(df, front.iloc[:0])
    assert len(fig.axes[0].texts) == 0 and fig.axes[0].get_xlabel() == "adversarial error"


def test_front_figure_marks_strategies_and_writes_png_svg(tmp_path, space):
    _, df, front = search_frames(space)
    fig = plots.front_figure(df, front)
    texts = legend_texts(fig)
    assert {"nsga2", "mgda", f"non-dominated ({len(front)}), numbered"} <= texts
    assert_written(plots.plot_front(df, front, tmp_path / "figs" / "front"),
                   tmp_path / "figs" / "front")


# --- after retraining --------------------------------------------------------------------------
def test_retrained_figure_keeps_each_archs_front_colour(tmp_path, space):
    _, df, front = search_frames(space)
    retrained = retrained_table(front)
    before, after = plots.front_figure(df, front), plots.retrained_figure(front, retrained)
    for _, row in retrained.iterrows():
        f = front[front["arch"] == row["arch"]].iloc[0]
        assert point_color(before, f["adv_err"], f["clean_err"]) == \
            point_color(after, row["retrained_adv_err"], row["retrained_clean_err"])
    ax = after.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("adversarial error", "clean error")
    # An arch off the front (the LEGO net) is drawn in black and labelled by name.
    lego_row = {"name": "lego", "arch": "9-9-9-9-9-9-9-9", "init": "scratch", "params": 3000,
                "retrained_clean_err": 0.33, "retrained_adv_err": 0.44}
    with_lego = plots.retrained_figure(front, pd.concat([retrained, pd.DataFrame([lego_row])]))
    assert point_color(with_lego, 0.44, 0.33) == (0.0, 0.0, 0.0)
    assert "lego" in {t.get_text() for t in with_lego.axes[0].texts}
    assert "retraining" in ax.get_title().lower()
    assert_written(plots.plot_retrained(front, retrained, tmp_path / "front_retrained"),
                   tmp_path / "front_retrained")


# --- hypervolume -------------------------------------------------------------------------------
def test_hypervolume_figure_names_its_reference_point_and_normalisation(tmp_path):
    gens = pd.DataFrame({"generation": [0, 1, 2, 3], "hv": [0.1, 0.2, 0.25, 0.3],
                         "hv_population": [0.1, 0.18, 0.24, 0.3], "evaluations": [10, 18, 25, 30]})
    fig = plots.hypervolume_figure(gens, reference=REFERENCE)
    assert len(fig.axes) == 1                          # no twin axis of archs scored
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("generation", "hypervolume")
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), gens["hv"])
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), gens["hv_population"])
    sub = ax.get_title(loc="left")
    assert "reference point (1.1, 1.1, 1.1)" in sub and "(f - low) / (high - low)" in sub
    assert "parameters [1.4k, 6.0k] -> ref 6.4k" in sub
    assert "adversarial error [0%, 100%] -> ref 110%" in sub
    bare = plots.hypervolume_figure(gens[["generation", "hv"]])
    assert "reference point not recorded" in bare.axes[0].get_title(loc="left")
    assert_written(plots.plot_hypervolume(gens, tmp_path / "hv", reference=REFERENCE),
                   tmp_path / "hv")


def test_figure_formats_are_checked(tmp_path):
    gens = pd.DataFrame({"generation": [0, 1], "hv": [0.1, 0.2]})
    paths = plots.plot_hypervolume(gens, tmp_path / "hv", formats=["png"])
    assert [p.suffix for p in paths] == [".png"]
    with pytest.raises(ValueError, match="formats"):
        plots.plot_hypervolume(gens, tmp_path / "hv", formats=["bmp"])


# --- per-layer statistics ----------------------------------------------------------------------
def test_layer_legal_greys_what_a_stride_two_layer_cannot_hold(space):
    legal = stats.layer_legal(space, "block")
    expected = np.array([[b <= 17 or stride == 1 for b in space.BLOCKS]
                         for stride in space.STRIDES])
    np.testing.assert_array_equal(legal.to_numpy(), expected)
    assert list(legal.columns) == [str(b) for b in space.BLOCKS]
    assert stats.layer_legal(space, "ratio").to_numpy().all()
    arch = (1, 2, 4, 1, 1, 2, 1, 1)
    assert stats.layer_choices(space, arch, "block") == {"layer0": "4", "layer1": "20",
                                                          "layer2": "4", "layer3": "4"}


def test_layer_figure_greys_illegal_choices_outlines_the_lego_choice_and_says_so(tmp_path, space):
    _, _, front = search_frames(space)
    top = stats.top_k(front, 5)
    counts = stats.layer_counts(space, top, "block")
    arch = lego.lego_arch(space, top)
    chosen = stats.layer_choices(space, arch, "block")
    fig = plots.layer_stats_figure(counts, legal=stats.layer_legal(space, "block"), chosen=chosen)
    ax = fig.axes[0]
    greyed = sorted((int(p.get_x() + 0.5), int(p.get_y() + 0.5)) for p in ax.patches
                    if p.get_hatch())
    assert greyed == [(3, 0), (4, 0)]                 # blocks 18 and 20 in the stride-2 layer0
    outlined = sorted((round(p.get_y() + 0.45), round(p.get_x() + 0.45)) for p in ax.patches
                      if not p.get_fill())
    cols = list(counts.columns)
    assert outlined == sorted((i, cols.index(chosen[f"layer{i}"])) for i in range(4))
    texts = legend_texts(fig)
    assert {"LEGO net's choice", "illegal in this layer"} <= texts
    shown = sorted(int(t.get_text()) for t in ax.texts)
    assert shown == sorted(int(v) for v in counts.to_numpy().ravel() if v > 0)
    modes = plots.layer_stats_figure(counts)          # no LEGO net: the modes, said so
    assert "most frequent (mode)" in legend_texts(modes)
    assert_written(plots.plot_layer_stats(counts, tmp_path / "layer_blocks", chosen=chosen),
                   tmp_path / "layer_blocks")


# --- rank fidelity -----------------------------------------------------------------------------
def test_percent_ticks_use_the_fewest_decimals_that_tell_ticks_apart():
    for locs, expected in (([0.1, 0.2, 0.3], ["10%", "20%", "30%"]),
                           ([0.1, 0.125, 0.15], ["10.0%", "12.5%", "15.0%"]),
                           ([0.2, 0.2025, 0.205], ["20.00%", "20.25%", "20.50%"])):
        fmt = PercentTicks()
        fmt.set_locs(locs)
        assert [fmt(v) for v in locs] == expected


def validate_summary(n: int = 8, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0.05, 0.12, n)
    adv = rng.uniform(0.2, 0.3, n)
    return pd.DataFrame({"index": range(n), "params": rng.integers(1500, 6000, n),
                         "inherited_clean_err": clean + rng.normal(0, 0.01, n),
                         "standalone_clean_err": clean, "inherited_adv_err": adv + 0.02,
                         "standalone_adv_err": adv, **{f"{p}_{w}_err_se": 0.01
                                                       for p in ("inherited", "standalone")
                                                       for w in ("clean", "adv")}})


def test_validate_ticks_are_short_and_statistics_sit_above_the_points(tmp_path):
    summary = validate_summary()
    blob = {"clean": {"kendall_tau": 0.43, "kendall_tau_ci": [0.1, 0.8], "ceiling": 0.6,
                      "ceiling_source": "bootstrap", "mean_gap": 0.01}, "adv": {}}
    fig = fidelity_plots.validate_figure(summary, blob)
    fig.canvas.draw()
    for ax in fig.axes[:2]:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            shown = [t.get_text() for t in labels if t.get_text()]
            assert all(re.fullmatch(r"\d+(\.\d)?%", s) for s in shown), shown
            assert len(set(shown)) == len(shown)
        assert all(t.get_text().isdigit() for t in ax.texts)  # only the arch labels inside
    assert "Kendall τ = 0.43 [0.10, 0.80], n = 8 archs" in fig.axes[0].get_title()
    assert "ceiling τ = 0.60 (bootstrap)" in fig.axes[0].get_title()
    assert fig.axes[1].get_title().endswith("n = 8 archs")
    assert_written(fidelity_plots.plot_validate(summary, blob, tmp_path / "validate"),
                   tmp_path / "validate")


def test_min_tau_archs_is_where_a_perfect_ranking_first_beats_chance():
    def p_perfect(n: int) -> float:   # share of orders whose tau is +1 or -1, by enumeration
        ranks = list(range(n))
        hits = sum(math.isclose(abs(kendalltau(ranks, perm)[0]), 1.0, abs_tol=1e-12)
                   for perm in itertools.permutations(ranks))
        return hits / math.factorial(n)

    expected = next(n for n in range(2, 8) if p_perfect(n) < 0.05)
    assert rank_fidelity.min_tau_archs() == expected == 5
    assert rank_fidelity.min_tau_archs(0.01) == next(n for n in range(2, 8) if p_perfect(n) < 0.01)


def test_inherited_vs_retrained_states_tau_n_and_whether_it_means_anything(tmp_path, space):
    _, _, front = search_frames(space)
    table = retrained_table(front).head(3)
    fig = fidelity_plots.inherited_vs_retrained_figure(table)
    for ax, which, name in zip(fig.axes, ("clean", "adv"), ("clean", "adversarial")):
        assert ax.get_xlabel().startswith(f"inherited {name} error")
        assert "validation" in ax.get_xlabel() and "test set" in ax.get_ylabel()
        tau = kendalltau(table[f"inherited_{which}_err"], table[f"retrained_{which}_err"])[0]
        assert f"Kendall τ = {tau:.2f}, n = 3: too few archs" in ax.get_title()
        np.testing.assert_allclose(ax.collections[0].get_offsets(),
                                   table[[f"inherited_{which}_err", f"retrained_{which}_err"]])
    rng = np.random.default_rng(7)
    big = pd.DataFrame({"name": [f"front-{k}" for k in range(8)],
                        **{f"{p}_{w}_err": rng.uniform(0.1, 0.5, 8)
                           for p in ("inherited", "retrained") for w in ("clean", "adv")}})
    title = fidelity_plots.inherited_vs_retrained_figure(big).axes[0].get_title()
    tau = kendalltau(big["inherited_clean_err"], big["retrained_clean_err"])[0]
    assert re.search(rf"Kendall τ = {tau:.2f} \[-?\d\.\d\d, -?\d\.\d\d\] \(95% bootstrap\), "
                     r"n = 8", title)
    assert_written(fidelity_plots.plot_inherited_vs_retrained(table, tmp_path / "ivr"),
                   tmp_path / "ivr")


def test_validate_panel_titles_repeat_a_verdict_that_the_ranking_cannot_be_used():
    base = {"kendall_tau": 0.3, "kendall_tau_ci": [0.1, 0.5], "readable": "yes"}
    lines = fidelity_plots.validate_lines(base, 12)
    assert lines[0].startswith("Kendall τ = 0.30") and not any("cannot" in s for s in lines)
    untrained = fidelity_plots.validate_lines({**base, "untrained": 3, "readable": "no"}, 12)
    assert untrained[-1] == "cannot be judged: 3 of 12 standalone nets near chance"
    noise = fidelity_plots.validate_lines({**base, "readable": "no", "untrained": 0}, 12)
    assert noise[-1].startswith("cannot be read")
