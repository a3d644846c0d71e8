"""explore.html in a real browser: Debian's headless Chromium through Selenium.

The page of a small run must load without a console error, show a clicked
front point's arch and a retrain command whose selector names that arch,
narrow the points to a budget with the count and best arch Python computes,
answer hover, and request nothing from the network. Without a browser the
tests skip, except under CI (env `CI` set), where they fail.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from explore_browser import (
    INSTALL,
    LOCAL,
    hover_point,
    load,
    missing,
    requested_urls,
    severe,
    start,
)
from explore_runs import synthetic_run

import tamnas
from tamnas.analysis import explore
from tamnas.analysis.selector import best_under, parse_selector
from tamnas.cli import build_parser, main
from tamnas.rundir import RunDir
from tamnas.search.archive import Archive, parse_key

ROUNDING = 0.5 * 10.0 ** (1 - explore.SIGNIFICANT)  # the page keeps SIGNIFICANT digits

if missing():
    if os.environ.get("CI"):
        pytest.fail(f"CI needs a browser for explore.html: {', '.join(missing())} missing; "
                    f"{INSTALL}", pytrace=False)
    pytest.skip(f"no browser for explore.html ({', '.join(missing())} missing): {INSTALL}",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # only once selenium is known to be here


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    run = RunDir(synthetic_run(tmp_path_factory.mktemp("browser") / "run", n=120, latency=True))
    assert main(["explore", str(run.root), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def frame(run) -> pd.DataFrame:
    return Archive.load(run.search_dir).frame()


@pytest.fixture(scope="module")
def space(run):
    return tamnas.build_space(tamnas.load_config(run.config))


@pytest.fixture(scope="module")
def browser(run):
    driver = start()
    try:
        load(driver, run.explore_html)
        yield driver
    finally:
        driver.quit()


def resolve(selector: str) -> tuple[int, ...]:
    """The genes a `--arch` selector names, without opening the run's weights."""
    parsed = parse_selector(selector)
    assert parsed.kind == "arch", selector
    return tuple(parsed.genes)


def test_the_page_loads_without_console_errors(browser):
    assert severe(browser) == []
    assert browser.find_element(By.ID, "budget-count").text.startswith("120 archs")


def test_a_click_on_a_front_point_shows_its_arch_and_commands(browser, run, frame, space):
    fronts = explore.strategy_fronts(frame, ("adv_err", "clean_err", "params"))
    pos = fronts["nsga2"][len(fronts["nsga2"]) // 2]
    key = frame["arch"].iloc[pos]
    browser.execute_script(
        "const gd = document.getElementById('front-plot');"
        "const c = gd.data.findIndex(t => t.meta.role === 'front' && t.meta.strategy === 'nsga2');"
        "const p = Array.from(gd.data[c].customdata).indexOf(arguments[0]);"
        "gd.emit('plotly_click', {points: [{curveNumber: c, pointNumber: p, data: gd.data[c],"
        " customdata: arguments[0]}]});", pos)
    assert browser.find_element(By.ID, "detail-name").text == f"arch:{key}"
    retrain = browser.find_element(By.ID, "cmd-retrain").text.split()
    assert retrain[:3] == ["tamnas", "retrain", str(run.root.resolve())] and retrain[3] == "--arch"
    assert resolve(retrain[4]) == space.validate(parse_key(key))
    for what in ("retrain", "evaluate", "export"):  # each line is one the CLI accepts
        words = browser.find_element(By.ID, f"cmd-{what}").text.split()
        args = build_parser().parse_args(words[1:])
        assert (args.command, args.run, args.arch) == (what, str(run.root.resolve()), f"arch:{key}")
    cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in browser.find_elements(By.CSS_SELECTOR, "#detail-layers tr")[1:]]
    table = explore.layer_table(space, parse_key(key))
    assert cells == [[layer, *row] for layer, row in zip(table.index, table.values.tolist())]
    assert severe(browser) == []


def test_a_budget_narrows_the_points_and_names_the_best_arch(browser, frame):
    cap, floor = float(np.median(frame["params"])), 0.6
    browser.find_element(By.ID, "max-params").send_keys(str(int(cap)))
    browser.find_element(By.ID, "min-clean-acc").send_keys("60")
    keep = frame[(frame["params"] <= int(cap)) & (1 - frame["clean_err"] >= floor - 1e-12)]
    best = keep.sort_values(["adv_err", "clean_err", "params", "order"]).iloc[0]["arch"]
    assert 0 < len(keep) < len(frame)
    assert browser.find_element(By.ID, "budget-count").text == \
        f"{len(keep)} of {len(frame)} archs meet the budget."
    assert browser.find_element(By.CSS_SELECTOR, "#budget-best button").text == f"arch:{best}"
    drawn = browser.execute_script(
        "return document.getElementById('front-plot').data.filter(t => t.meta.role === 'archive'"
        " || t.meta.role === 'front').flatMap(t => Array.from(t.customdata));")
    assert sorted(drawn) == sorted(frame.index.get_indexer(keep.index).tolist())
    csv = browser.execute_script("return window.tamnasExplore.filteredCsv()").splitlines()
    assert sorted(line.split(",")[0] for line in csv[1:]) == sorted(keep["arch"])
    assert browser.find_elements(By.ID, "budget-rule") == []  # a clean floor is no selector rule
    browser.find_element(By.ID, "min-clean-acc").clear()
    rule = browser.find_element(By.ID, "budget-rule").text
    assert rule == f"best:adv,params<={int(cap)}"
    parsed = parse_selector(rule)
    expected = best_under(frame, parsed.objective, parsed.constraints)
    assert browser.find_element(By.CSS_SELECTOR, "#budget-best button").text == \
        f"arch:{frame.loc[expected, 'arch']}"
    browser.find_element(By.ID, "clear-budget").click()
    assert browser.find_element(By.ID, "budget-count").text.startswith(f"{len(frame)} archs")
    assert severe(browser) == []


def test_hover_and_the_3d_view_answer_without_errors(browser):
    trace = browser.execute_script(
        "return document.getElementById('front-plot').data.findIndex(t => t.meta.role === 'front')")
    browser.execute_script("window.scrollTo(0, 0)")
    hover_point(browser, trace, 0)
    label = browser.find_element(By.ID, "hover-box").text
    assert label.startswith("arch:") and "clean acc" in label and "params" in label
    browser.find_element(By.ID, "show-3d").click()
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1], t0 = Date.now();"
        "(function wait() { const el = document.getElementById('plot-3d');"
        " if (el.data && el._fullLayout && el.querySelector('.gl-container')) done(1);"
        " else if (Date.now() - t0 > 30000) done(0); else setTimeout(wait, 50); })();")
    assert len(browser.execute_script("return document.getElementById('plot-3d').data")) >= 4
    assert severe(browser) == []


def test_axis_selectors_and_error_bars_redraw_from_the_data(browser, frame):
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "axis-x")).select_by_value("latency")
    browser.find_element(By.ID, "error-bars").click()
    traces = browser.execute_script(
        "return document.getElementById('front-plot').data.filter(t => t.meta.role === 'front')"
        ".map(t => ({idx: Array.from(t.customdata), x: Array.from(t.x), y: Array.from(t.y),"
        " se: t.error_y && t.error_y.visible ? Array.from(t.error_y.array) : null,"
        " sex: t.error_x && t.error_x.visible}))")
    assert traces
    for t in traces:
        rows = frame.iloc[t["idx"]]
        np.testing.assert_allclose(t["x"], rows["latency"], rtol=ROUNDING)
        np.testing.assert_allclose(t["y"], rows["adv_err"], rtol=ROUNDING)
        np.testing.assert_allclose(t["se"], rows["adv_err_se"], rtol=ROUNDING)
        assert not t["sex"]  # latency has no standard error to draw
    Select(browser.find_element(By.ID, "axis-x")).select_by_value("clean_err")
    browser.find_element(By.ID, "error-bars").click()
    assert severe(browser) == []


def test_the_page_requests_nothing_from_the_network(browser):  # last: after every action
    urls = requested_urls(browser)
    assert urls, "the network log recorded nothing, not even the page itself"
    assert [u for u in urls if not u.startswith(LOCAL)] == []
