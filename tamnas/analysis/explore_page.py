"""The explorer page: plotly figures of `explore_info`'s data and one self-contained HTML file.

Figures are built here with plotly (tested as figures); the page embeds
plotly.js once, the data and the figures as JSON once, and the small script in
`explore.js` that wires axis selectors, budget filters, hover and click. It
needs no server and requests nothing from the network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tamnas.files import atomic_write_text

STRATEGY_STYLE = {  # symbol and colour of a strategy's samples; its front is drawn darker
    "nsga2": ("circle", "#56B4E9", "#0072B2"),
    "random": ("circle", "#BBBBBB", "#555555"),
    "mgda": ("diamond", "#E69F00", "#D55E00"),
}
OTHER_STYLES = [("square", "#CC79A7", "#882255"), ("triangle-up", "#009E73", "#005F46")]
SOURCE_COLORS = {"retrained": "#D55E00", "evaluated": "#7B3294"}
PERCENT_AXES = ("clean_err", "adv_err")


def _style(strategy: str, k: int) -> tuple[str, str, str]:
    return STRATEGY_STYLE.get(strategy, OTHER_STYLES[k % len(OTHER_STYLES)])


def _axis(info: Mapping, name: str) -> dict:
    out = {"title": {"text": info["axis_labels"].get(name, name)}}
    if name in PERCENT_AXES:
        out["tickformat"] = ".0%"
    return out


def _values(info: Mapping, idx: list[int], axis: str) -> list:
    col = info["points"].get(axis)
    return [col[i] if col is not None else None for i in idx]


def default_axes(info: Mapping) -> tuple[str, str]:
    """The first view: adversarial vs clean error (the paper's Fig. 6), else the first two axes."""
    axes = info["axes"]
    if "adv_err" in axes and "clean_err" in axes:
        return "clean_err", "adv_err"
    if len(axes) < 2:
        raise ValueError("explore: the archive has fewer than two scores to plot; run a search "
                         "first")
    return axes[0], axes[1]


def front_figure(info: Mapping, x: str | None = None, y: str | None = None) -> go.Figure:
    """The archive and each strategy's front in two objectives, the LEGO net and standalone
    results; every trace names its role in `meta` and its archive rows in `customdata`."""
    dx, dy = default_axes(info)
    x, y = x or dx, y or dy
    points, fronts = info["points"], info["fronts"]
    on_front = {i for idx in fronts.values() for i in idx}
    strategies = list(dict.fromkeys(s or "archive" for s in points["strategy"]))
    fig = go.Figure()
    for k, s in enumerate(strategies):
        idx = [i for i, t in enumerate(points["strategy"])
               if (t or "archive") == s and i not in on_front]
        symbol, light, _ = _style(s, k)
        fig.add_trace(go.Scattergl(
            x=_values(info, idx, x), y=_values(info, idx, y), customdata=idx, mode="markers",
            name=f"{s} samples", meta={"role": "archive", "strategy": s},
            marker={"symbol": symbol, "color": light, "size": 5, "opacity": 0.55},
            hoverinfo="none"))
    for k, (s, idx) in enumerate(fronts.items()):
        symbol, _, dark = _style(s, strategies.index(s) if s in strategies else k)
        fig.add_trace(go.Scattergl(
            x=_values(info, idx, x), y=_values(info, idx, y), customdata=idx, mode="markers",
            name=f"{s} front" + (" (the run's)" if s == info["strategy"] else ""),
            meta={"role": "front", "strategy": s}, hoverinfo="none",
            marker={"symbol": symbol, "color": dark, "size": 9, "line": {"width": 1,
                                                                      "color": "white"}}))
    lego = info.get("lego")
    if lego is not None:
        i = lego["index"]
        fig.add_trace(go.Scattergl(
            x=[_values(info, [i], x)[0] if i is not None else lego["scores"].get(x)],
            y=[_values(info, [i], y)[0] if i is not None else lego["scores"].get(y)],
            customdata=[-1 if i is None else i], mode="markers", name="LEGO net",
            meta={"role": "lego"}, hoverinfo="none",
            marker={"symbol": "star", "color": "#F0E442", "size": 18,
                    "line": {"width": 1.5, "color": "black"}}))
    for source, color in SOURCE_COLORS.items():
        idx = [j for j, r in enumerate(info["standalone"]) if r["source"] == source]
        if idx:
            fig.add_trace(go.Scatter(
                x=[info["standalone"][j].get(x) for j in idx],
                y=[info["standalone"][j].get(y) for j in idx], customdata=idx, mode="markers",
                name=f"{source} (standalone)", meta={"role": "standalone", "source": source},
                hoverinfo="none", marker={"symbol": "x", "color": color, "size": 10}))
    if info["standalone"]:
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name="inherited -> standalone",
                                 meta={"role": "link"}, hoverinfo="skip",
                                 line={"color": "#777777", "width": 1, "dash": "dot"}))
    fig.update_layout(xaxis=_axis(info, x), yaxis=_axis(info, y), hovermode="closest",
                      margin={"l": 70, "r": 20, "t": 30, "b": 60}, height=560,
                      legend={"orientation": "h", "y": -0.18}, uirevision="front",
                      template="plotly_white")
    return fig


def hv_figure(info: Mapping) -> go.Figure | None:
    """Hypervolume per generation, one line per series, or None without a search log."""
    hv = info.get("hv")
    if not hv:
        return None
    fig = go.Figure([go.Scatter(x=s["x"], y=s["hv"], mode="lines+markers", name=s["name"])
                     for s in hv["series"]])
    fig.update_layout(xaxis={"title": {"text": "generation"}},
                      yaxis={"title": {"text": "hypervolume"}}, height=360,
                      margin={"l": 70, "r": 20, "t": 30, "b": 50}, template="plotly_white")
    return fig


def heatmap_figure(entry: Mapping) -> go.Figure:
    """Per-layer choice counts among the front's top-k; blank cells are illegal choices and
    the LEGO net's choice per layer carries a star."""
    fig = go.Figure(go.Heatmap(
        z=entry["z"], x=entry["choices"], y=entry["layers"], colorscale="Blues",
        hoverongaps=False, colorbar={"title": {"text": "count"}},
        hovertemplate="%{y}: %{x} chosen by %{z} of the top-" + str(entry["top"])
                      + "<extra></extra>"))
    if entry.get("lego"):
        layers = list(entry["lego"])
        fig.add_trace(go.Scatter(x=[entry["lego"][layer] for layer in layers], y=layers,
                                 mode="markers", name="LEGO net",
                                 marker={"symbol": "star", "size": 13, "color": "#F0E442",
                                         "line": {"width": 1, "color": "black"}},
                                 hovertemplate="LEGO net: %{y} takes %{x}<extra></extra>"))
    fig.update_layout(title={"text": f"{entry['kind']} choices among the top-{entry['top']} "
                                     "of the front"},
                      xaxis={"type": "category", "tickangle": -40},
                      yaxis={"type": "category", "autorange": "reversed"},
                      height=max(300, 28 * len(entry["layers"]) + 160), showlegend=False,
                      margin={"l": 80, "r": 20, "t": 50, "b": 120}, template="plotly_white")
    return fig


def _script_json(value) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _standalone_table(info: Mapping) -> str:
    rows = info["standalone"]
    if not rows:
        return ""
    head = ("<tr><th>arch</th><th>source</th><th>clean error</th><th>adv error</th>"
            "<th>inherited clean</th><th>inherited adv</th></tr>")

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    body = "".join(
        f"<tr><td><button class='arch-link' data-arch='{html.escape(r['arch'])}'>"
        f"arch:{html.escape(r['arch'])}</button></td><td>{html.escape(r['source'])}: "
        f"{html.escape(r['label'])}</td><td>{pct(r['clean_err'])}</td><td>{pct(r['adv_err'])}</td>"
        f"<td>{pct(r['inherited_clean_err'])}</td><td>{pct(r['inherited_adv_err'])}</td></tr>"
        for r in rows)
    verdicts = "".join(f"<li>{html.escape(v)}</li>" for v in info["verdicts"])
    verdicts = f"<h3>compare's verdicts</h3><ul id='verdicts'>{verdicts}</ul>" if verdicts else ""
    return (f"<section id='standalone'><h2>Standalone results</h2><table>{head}{body}</table>"
            f"{verdicts}</section>")


def _options(info: Mapping, chosen: str) -> str:
    return "".join(f"<option value='{a}'{' selected' if a == chosen else ''}>"
                   f"{html.escape(info['axis_labels'][a])}</option>" for a in info["axes"])


def _budget_inputs(info: Mapping) -> str:
    units = {"params": "max parameters", "flops": "max FLOPs", "latency": "max latency (ms)"}
    boxes = [f"<label>{units[b]} <input type='number' min='0' step='any' id='max-{b}'></label>"
             for b in info["budgets"]]
    boxes.append("<label>min clean accuracy (%) <input type='number' min='0' max='100' "
                 "step='any' id='min-clean-acc'></label>")
    return " ".join(boxes)


def render_html(info: Mapping) -> str:
    """The page: plotly.js, the data, the figures and the script, in one HTML string."""
    x, y = default_axes(info)
    z = next((a for a in info["axes"] if a not in (x, y)), x)
    front = json.loads(front_figure(info, x, y).to_json())
    for trace in front["data"]:  # the script draws x and y from the data of the chosen axes
        trace.pop("x", None), trace.pop("y", None)
    figures = {"front": front,
               "hv": json.loads(hv_figure(info).to_json()) if info.get("hv") else None,
               "heatmaps": [json.loads(heatmap_figure(e).to_json()) for e in info["heatmaps"]]}
    script = resources.files("tamnas.analysis").joinpath("explore.js").read_text("utf-8")
    title = html.escape(info["title"] or info["run"])
    hv = "<section id='hv-section'><h2>Hypervolume per generation</h2><div id='hv-plot'></div>" \
         "</section>" if figures["hv"] else ""
    layers = "".join(f"<div class='heatmap' id='heatmap-{i}'></div>"
                     for i in range(len(figures["heatmaps"])))
    layers = f"<section id='layers'><h2>Per-layer choices</h2>{layers}</section>" if layers else ""
    n, n_front = len(info["points"]["arch"]), len(info["fronts"].get(info["strategy"], []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tamnas explore: {title}</title>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script></head>
<body>
<header><h1>{title}</h1><p>space {html.escape(info['space'])}, {n} archs scored,
{n_front} on the {html.escape(info['strategy'])} front; objectives
{html.escape(', '.join(info['objectives']))}. Archive scores are inherited from the supernet;
standalone results are marked as retrained or evaluated.</p></header>
<section id="front-section"><h2>Front</h2>
<div class="controls"><label>x <select id="axis-x">{_options(info, x)}</select></label>
<label>y <select id="axis-y">{_options(info, y)}</select></label>
<label><input type="checkbox" id="error-bars"> error bars (1 SE)</label>
<label>z <select id="axis-z">{_options(info, z)}</select></label>
<button id="show-3d">3-D view</button></div>
<div class="controls" id="budget">{_budget_inputs(info)}
<button id="clear-budget">clear</button> <button id="save-csv">save as CSV</button></div>
<p id="budget-result"><span id="budget-count"></span> <span id="budget-best"></span></p>
<div class="row"><div id="front-plot"></div>
<aside id="detail"><p class="hint">Click a point for its layers and the commands to retrain,
evaluate and export it.</p></aside></div>
<div id="plot-3d"></div></section>
{_standalone_table(info)}{hv}{layers}
<script type="application/json" id="explore-data">{_script_json(info)}</script>
<script type="application/json" id="explore-figures">{_script_json(figures)}</script>
<script>{script}</script>
</body></html>
"""


def write_page(info: Mapping, path: str | Path) -> Path:
    """Write the page atomically; the path written."""
    path = Path(path)
    atomic_write_text(path, render_html(info))
    return path


CSS = """
body{font-family:system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
.controls{margin:.4em 0}.controls label{margin-right:1em}
input[type=number]{width:8em}
.row{display:flex;gap:1em;align-items:flex-start}
#front-plot{flex:3;min-width:0}
#detail{flex:2;max-width:34em;font-size:.9em;border-left:1px solid #ddd;padding-left:1em}
#detail table,#standalone table{border-collapse:collapse}
#detail td,#detail th,#standalone td,#standalone th{border:1px solid #ddd;padding:2px 6px}
pre{background:#f4f4f4;padding:4px 6px;white-space:pre-wrap;word-break:break-all;margin:2px 0}
#hover-box{position:fixed;display:none;z-index:10;pointer-events:none;background:#fff;
border:1px solid #999;padding:4px 6px;font-size:.8em;max-width:360px;box-shadow:1px 1px 4px #0003}
.hint{color:#777}button.arch-link{font-family:monospace;cursor:pointer}
"""

__all__ = ["default_axes", "front_figure", "heatmap_figure", "hv_figure", "render_html",
           "write_page"]
