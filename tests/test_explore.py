"""The explorer's data (no browser): fronts per strategy, budgets, layer tables, standalone
results, the figures built from that data and the page's self-containment."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from explore_runs import synthetic_run

import tamnas
from tamnas.analysis import explore, explore_page, stats
from tamnas.analysis.explore_files import run_info
from tamnas.cli import main
from tamnas.rundir import RESULT_NAMES, RunDir, move_aside
from tamnas.search.archive import Archive, parse_key

OBJECTIVES = ("adv_err", "clean_err", "params")
ROUNDING = 0.5 * 10.0 ** (1 - explore.SIGNIFICANT)  # the page keeps SIGNIFICANT digits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return RunDir(synthetic_run(tmp_path_factory.mktemp("explore") / "run", n=80, latency=True))


@pytest.fixture(scope="module")
def cfg(run):
    return tamnas.load_config(run.config)


@pytest.fixture(scope="module")
def space(cfg):
    return tamnas.build_space(cfg)


@pytest.fixture(scope="module")
def frame(run):
    return Archive.load(run.search_dir).frame()


@pytest.fixture(scope="module")
def info(cfg, run):
    return run_info(cfg, run)


def dominated(F: np.ndarray) -> np.ndarray:
    """Brute force: row i is dominated if some row is <= everywhere and < somewhere."""
    le = (F[None, :, :] <= F[:, None, :]).all(axis=2)
    lt = (F[None, :, :] < F[:, None, :]).any(axis=2)
    return (le & lt).any(axis=1)


def test_each_strategy_front_is_its_own_rows_non_dominated_set_in_front_table_order(frame):
    fronts = explore.strategy_fronts(frame, OBJECTIVES)
    assert set(fronts) == {"nsga2", "random", "mgda"}
    for name, members in fronts.items():
        own = np.flatnonzero(frame["strategy"].to_numpy() == name)
        F = frame.iloc[own][list(OBJECTIVES)].to_numpy(dtype=float)
        assert sorted(members) == sorted(own[~dominated(F)].tolist())
        rows = frame.iloc[members]
        expected = rows.sort_values([*OBJECTIVES, "order"], kind="stable")
        assert list(rows["arch"]) == list(expected["arch"])


def test_a_random_sample_that_dominates_everything_leaves_the_nsga2_front_alone(frame):
    best = frame.iloc[[0]].copy()
    best[list(OBJECTIVES)] = [0.0, 0.0, 1]
    best["strategy"], best["arch"], best["order"] = "random", "best", len(frame)
    grown = pd.concat([frame, best], ignore_index=True)
    before, after = explore.strategy_fronts(frame, OBJECTIVES), \
        explore.strategy_fronts(grown, OBJECTIVES)
    assert after["nsga2"] == before["nsga2"]
    assert after["random"] == [len(frame)]


def test_points_carry_every_score_and_binomial_standard_errors(info, frame):
    points = info["points"]
    assert points["arch"] == list(frame["arch"])
    assert points["strategy"] == list(frame["strategy"])
    for col in ("params", "flops", "latency", "clean_err", "adv_err"):
        np.testing.assert_allclose(points[col], frame[col].to_numpy(float), rtol=ROUNDING)
    for err in ("clean_err", "adv_err"):
        p = frame[err].to_numpy(float)
        np.testing.assert_allclose(points[f"{err}_se"], np.sqrt(p * (1 - p) / 500), rtol=ROUNDING)
    assert info["axes"] == ["clean_err", "adv_err", "params", "flops", "latency"]
    assert info["budgets"] == ["params", "flops", "latency"]


def test_the_layer_table_names_what_the_space_describes(space, frame):
    arch = parse_key(frame["arch"].iloc[5])
    table = explore.layer_table(space, arch)
    layers = space.describe(arch)["layers"]
    assert list(table.index) == [f"layer{d['layer']}" for d in layers]
    assert list(table["block"]) == [d["block"] for d in layers]
    assert [float(r) for r in table["ratio"]] == [d["ratio"] for d in layers]
    genes = explore.gene_info(space)  # what the page turns genes into, the same labels
    assert [genes[i]["labels"][g] for i, g in enumerate(arch) if genes[i]["kind"] == "block"] \
        == list(table["block"])


def budget_reference(frame: pd.DataFrame, params=None, flops=None, latency=None, acc=None):
    """Loop over the rows: those within the caps, and the best by (adv, clean, params, order)."""
    keep = []
    for pos, r in enumerate(frame.to_dict("records")):
        ok = (params is None or r["params"] <= params) and (flops is None or r["flops"] <= flops) \
            and (latency is None or r["latency"] <= latency) \
            and (acc is None or 1 - r["clean_err"] >= acc)
        if ok:
            keep.append(pos)
    rows = frame.to_dict("records")
    best = min(keep, key=lambda p: (rows[p]["adv_err"], rows[p]["clean_err"], rows[p]["params"],
                                    p)) if keep else None
    return keep, best


@pytest.mark.parametrize("caps", [{"params": None}, {"params": 4000}, {"flops": 80_000},
                                  {"latency": 0.15, "acc": 0.6}, {"params": 1}])
def test_budget_filter_and_best_arch_match_a_row_by_row_loop(frame, caps):
    params = caps.get("params")
    mask = explore.within_budget(frame, params=params, flops=caps.get("flops"),
                                 latency=caps.get("latency"), min_clean_acc=caps.get("acc"))
    keep, best = budget_reference(frame, params, caps.get("flops"), caps.get("latency"),
                                  caps.get("acc"))
    assert np.flatnonzero(mask.to_numpy()).tolist() == keep
    pos = explore.best_row(frame[mask.to_numpy()])
    assert (None if pos is None else keep[pos]) == best


def test_a_budget_on_a_missing_cost_is_refused(frame):
    with pytest.raises(ValueError, match="no latency column here; build a latency table"):
        explore.within_budget(frame.drop(columns="latency"), latency=1.0)


def test_lego_and_standalone_results_point_at_their_archive_rows(info, frame):
    lego = info["lego"]
    assert lego["arch"] == frame["arch"].iloc[1] and lego["index"] == 1
    retrained = [r for r in info["standalone"] if r["source"] == "retrained"]
    assert [r["arch"] for r in retrained] == list(frame["arch"].head(2))
    for r in retrained:
        row = frame[frame["arch"] == r["arch"]].iloc[0]
        assert r["inherited_adv_err"] == pytest.approx(row["adv_err"])
        se = np.sqrt(r["adv_err"] * (1 - r["adv_err"]) / 1000)
        assert r["adv_err_se"] == pytest.approx(se, rel=ROUNDING)


def test_grid_scores_read_the_search_attack_cell():
    grid = pd.DataFrame({"clean": [0.9, 0.9], "fgsm": [0.6, 0.5], "pgd-2": [0.55, 0.4],
                         "pgd-4": [0.5, 0.3]}, index=pd.Index([0.025, 0.05], name="eps"))
    grid.attrs["n"] = 200
    got = explore.grid_scores(grid, 0.05, 4)
    assert got == {"clean_err": pytest.approx(0.1), "adv_err": pytest.approx(0.7), "n": 200}
    assert explore.grid_scores(grid, 0.03, 4) is None   # that eps never ran
    assert explore.grid_scores(grid, 0.05, 10) is None  # nor those steps


def test_hypervolume_series_split_by_strategy():
    gens = pd.DataFrame({"generation": [0, 1, 0, 1], "hv": [0.1, 0.2, 0.05, 0.07],
                         "strategy": ["nsga2", "nsga2", "random", "random"]})
    hv = explore.hv_info(gens)
    assert [(s["name"], s["x"], s["hv"]) for s in hv["series"]] == \
        [("nsga2", [0, 1], [0.1, 0.2]), ("random", [0, 1], [0.05, 0.07])]
    assert explore.hv_info(None) is None


def test_heatmaps_count_the_top_k_per_layer_and_blank_illegal_choices(info, space, frame, cfg):
    front = frame.iloc[info["fronts"]["nsga2"]]
    top = stats.top_k(front, cfg.output.top_k, by=cfg.output.top_by)
    for entry in info["heatmaps"]:
        counts = stats.layer_counts(space, top, entry["kind"])
        legal = stats.layer_legal(space, entry["kind"]).to_numpy()
        z = np.array([[np.nan if v is None else v for v in row] for row in entry["z"]])
        assert np.array_equal(np.isnan(z), ~legal)
        np.testing.assert_array_equal(np.nan_to_num(z), np.where(legal, counts.to_numpy(), 0))
        assert (np.nansum(z, axis=1) == len(top)).all()
        lego = parse_key(info["lego"]["arch"])
        assert entry["lego"] == stats.layer_choices(space, lego, entry["kind"])


def test_front_figure_draws_every_archive_row_once_at_its_scores(info, frame):
    fig = explore_page.front_figure(info, "params", "adv_err")
    roles = [t.meta["role"] for t in fig.data]
    assert roles.count("lego") == 1 and "link" in roles and "standalone" in roles
    drawn = [i for t in fig.data if t.meta["role"] in ("archive", "front") for i in t.customdata]
    assert sorted(drawn) == list(range(len(frame)))
    for t in fig.data:
        if t.meta["role"] in ("archive", "front"):
            idx = list(t.customdata)
            np.testing.assert_allclose(t.x, frame["params"].to_numpy(float)[idx])
            np.testing.assert_allclose(t.y, frame["adv_err"].to_numpy(float)[idx], rtol=ROUNDING)
            assert t.type == "scattergl"
    fronts = [t for t in fig.data if t.meta["role"] == "front"]
    assert {t.meta["strategy"]: list(t.customdata) for t in fronts} == info["fronts"]
    assert len({t.marker.symbol for t in fronts}) > 1  # MGDA's picks look different
    assert fig.layout.xaxis.title.text == "parameters"


def test_hv_and_heatmap_figures(info):
    hv = explore_page.hv_figure(info)
    assert list(hv.data[0].y) == [0.2, 0.3, 0.35, 0.36]
    heat = explore_page.heatmap_figure(info["heatmaps"][0])
    assert heat.data[0].type == "heatmap" and heat.data[1].name == "LEGO net"


def test_the_page_embeds_plotly_once_and_links_to_nothing(info):
    from plotly.offline import get_plotlyjs

    page = explore_page.render_html(info)
    js = get_plotlyjs()
    assert page.count(js) == 1
    links = []

    class Tags(HTMLParser):  # script bodies are data to the parser: only real tags count
        def handle_starttag(self, tag, attrs):
            links.extend((tag, k, v) for k, v in attrs if k in ("src", "href", "data", "action"))

    Tags().feed(page)
    assert links == []
    ours = page.replace(js, "")
    assert "http://" not in ours and "https://" not in ours
    blob = re.search(r'<script type="application/json" id="explore-data">(.*?)</script>', page,
                     re.DOTALL).group(1)
    assert json.loads(blob) == json.loads(json.dumps(info))


def test_explore_command_writes_the_page_and_no_resume_moves_it(run, tmp_path, capsys):
    assert main(["explore", str(run.root), "--quiet"]) == 0
    assert run.explore_html.is_file() and run.explore_html.stat().st_size > 1e6
    assert "explore.html" in RESULT_NAMES and "compare" in RESULT_NAMES
    copy = RunDir(tmp_path / "copy")
    copy.root.mkdir()
    copy.explore_html.write_text("old page")
    dest = move_aside(copy)
    assert (dest / "explore.html").read_text() == "old page" and not copy.explore_html.exists()


def test_explore_refuses_a_run_without_a_search(tmp_path, capsys):
    out = tmp_path / "bare"
    out.mkdir()
    tamnas.config.save_config(tamnas.load_config("quickstart"), out / "config.toml")
    assert main(["explore", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no search results" in err


def test_validate_evaluate_and_compare_results_reach_the_page(run, frame, cfg, tmp_path):
    import shutil

    from tamnas.analysis.robustness import save_grid

    copy = RunDir(tmp_path / "run")
    shutil.copytree(run.root, copy.root)
    a, b, c = frame["arch"].iloc[3], frame["arch"].iloc[4], frame["arch"].iloc[5]
    copy.validate_dir.mkdir()
    pd.DataFrame({"arch": [a], "standalone_clean_err": [0.15], "standalone_adv_err": [0.4],
                  "standalone_clean_err_se": [0.01], "standalone_adv_err_se": [0.02],
                  "inherited_clean_err": [0.2], "inherited_adv_err": [0.5]}
                 ).to_csv(copy.validate_dir / "summary.csv", index=False)
    eps, steps = cfg.attack.eps, cfg.attack.steps
    grid = pd.DataFrame({"clean": [0.9, 0.8], "fgsm": [0.7, 0.6], f"pgd-{steps}": [0.65, 0.55]},
                        index=pd.Index([eps / 2, eps], name="eps"))
    grid.attrs.update({"n": 400, "weights": "retrained:abc"})
    save_grid(grid, copy.retrain_dir(b) / "robustness")
    copy.compare_dir.mkdir()
    pd.DataFrame({"arch": [c], "group": ["front"], "standalone_clean_err": [0.3],
                  "standalone_adv_err": [0.6]}).to_csv(copy.compare_dir / "archs.csv", index=False)
    (copy.compare_dir / "verdict.json").write_text(json.dumps(
        {"verdicts": {"front vs random": "the front wins by 3.1 points (2.2 SE)"}}))
    got = run_info(cfg, copy)
    by_label = {r["label"]: r for r in got["standalone"]}
    assert by_label["validate (mean of seeds)"]["arch"] == a
    evaluated = [r for r in got["standalone"] if r["source"] == "evaluated"]
    assert [(r["arch"], r["clean_err"], r["adv_err"]) for r in evaluated] == \
        [(b, pytest.approx(0.2), pytest.approx(0.45))]  # the row of the search's eps
    assert evaluated[0]["adv_err_se"] == pytest.approx(np.sqrt(0.45 * 0.55 / 400), rel=ROUNDING)
    assert by_label["compare (front)"]["arch"] == c
    assert got["verdicts"] == ["front vs random: the front wins by 3.1 points (2.2 SE)"]
    page = explore_page.render_html(got)
    assert "compare&#x27;s verdicts" in page or "compare's verdicts" in page


def test_a_space_of_one_gene_per_layer_names_its_rows_by_gene():
    space = tamnas.build_space(tamnas.load_config("quickstart-darts"))
    arch = space.sample(np.random.default_rng(0))
    table = explore.layer_table(space, arch)
    assert list(table.index) == [g.name for g in space.genes]
    assert list(table["op"]) == [stats.gene_label(space, i, v) for i, v in enumerate(arch)]
    assert [g["layer"] for g in explore.gene_info(space)] == list(table.index)


def test_a_strategy_front_counts_the_archs_it_revisited():
    """An arch first scored by random search and later visited by NSGA-II (a cache hit) is
    one of NSGA-II's archs, as the archive's `strategies` column records."""
    frame = pd.DataFrame({"arch": ["0", "1", "2"], "strategy": ["random", "nsga2", "nsga2"],
                          "strategies": ["random,nsga2", "nsga2", "nsga2"],
                          "adv_err": [0.1, 0.3, 0.2], "clean_err": [0.1, 0.3, 0.4],
                          "order": [0, 1, 2]})
    fronts = explore.strategy_fronts(frame, ["adv_err", "clean_err"])
    assert fronts["nsga2"] == [0] and fronts["random"] == [0]
