"""Headless Debian Chromium through Selenium, for explore.html's test and benchmark.

Selenium cannot download a driver here, so it is given /usr/bin/chromedriver;
`missing()` names what is not installed, so a caller can skip (or fail in CI).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver; pip install selenium (the `test` extra)"
LOCAL = ("file:", "data:", "blob:", "about:")


def missing() -> list[str]:
    """What the browser tests need and this machine lacks."""
    out = [p for p in (CHROMIUM, DRIVER) if not (Path(p).exists() or shutil.which(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        out.append("selenium")
    return out


def start(width: int = 1400, height: int = 1000):
    """A headless Chromium with its console and network logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--enable-unsafe-swiftshader", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


EXPLORE_READY = ("const done = arguments[arguments.length - 1];"
                 "window.tamnasExplore.ready.then(() => done(performance.now()), (e) => done(String(e)));")
PLOTLY_READY = ("const done = arguments[arguments.length - 1], t0 = Date.now();"
                "(function wait() { const gd = document.querySelector('.plotly-graph-div');"
                " if (gd && gd._fullLayout && gd.querySelector('.gl-canvas-context')) done(performance.now());"
                " else if (Date.now() - t0 > 60000) done('timeout'); else setTimeout(wait, 10); })();")


def load(driver, page: Path, ready: str = EXPLORE_READY) -> float:
    """Open the page and wait until its front is drawn (`ready`: a script that calls back with
    `performance.now()` when it is); the seconds from navigation start to then."""
    driver.get(Path(page).resolve().as_uri())
    result = driver.execute_async_script(ready)
    if not isinstance(result, (int, float)):
        raise AssertionError(f"the page failed to draw its front: {result}")  # noqa: TRY004
    return result / 1000


def severe(driver) -> list[str]:
    """SEVERE console messages since the last call (JavaScript errors among them)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for: the network log and the page's resource timings."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    urls += driver.execute_script("return performance.getEntries().map(e => e.name)"
                                  ".filter(n => n.includes(':'))")
    return urls


def hover_point(driver, trace: int, point: int) -> float:
    """Move the mouse onto one point of the front plot; seconds until its hover box shows."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    x, y = driver.execute_script(
        "const gd = document.getElementById('front-plot'), t = gd.data[arguments[0]];"
        "const L = gd._fullLayout, i = arguments[1];"
        "const r = gd.querySelector('.nsewdrag').getBoundingClientRect();"
        "return [r.left + L.xaxis.l2p(L.xaxis.d2l(t.x[i])), r.top + L.yaxis.l2p(L.yaxis.d2l(t.y[i]))];",
        trace, point)
    plot = driver.find_element(By.ID, "front-plot")
    t0 = time.perf_counter()
    origin = plot.rect
    ActionChains(driver).move_to_element_with_offset(
        plot, int(x - origin["x"] - origin["width"] / 2),
        int(y - origin["y"] - origin["height"] / 2)).perform()
    WebDriverWait(driver, 30, poll_frequency=0.02).until(
        lambda d: d.find_element(By.ID, "hover-box").is_displayed())
    return time.perf_counter() - t0
