// tamnas explore: axis selectors, budget filters, hover text and the detail panel of explore.html.
// Reads the page's two JSON blocks (data, figures); talks to nothing but the page.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("explore-data").textContent);
  const F = JSON.parse(document.getElementById("explore-figures").textContent);
  const P = D.points, N = P.arch.length;
  const $ = (id) => document.getElementById(id);
  const gd = $("front-plot");
  const CONFIG = { responsive: true, displaylogo: false, showLink: false, showSendToCloud: false,
    showEditInChartStudio: false };

  const byKey = new Map();
  P.arch.forEach((k, i) => { if (!byKey.has(k)) byKey.set(k, i); });
  const frontOf = new Map();
  Object.entries(D.fronts).forEach(([s, idx]) => idx.forEach((i) => frontOf.set(i, s)));
  const standaloneOf = new Map();
  D.standalone.forEach((r, j) => {
    if (!standaloneOf.has(r.arch)) standaloneOf.set(r.arch, []);
    standaloneOf.get(r.arch).push(j);
  });
  const state = { x: $("axis-x").value, y: $("axis-y").value, errors: false, mask: null };
  const traces = F.front.data.map((t) => ({ role: (t.meta || {}).role, base: t.customdata || [] }));
  let shown = traces.map((t) => t.base.slice());

  // --- values and text --------------------------------------------------------------------
  function value(i, col) {
    if (i < 0) return D.lego && D.lego.scores[col] !== undefined ? D.lego.scores[col] : null;
    const c = P[col];
    return c ? c[i] : null;
  }
  function standaloneValue(j, col) {
    const r = D.standalone[j];
    if (r[col] !== undefined && r[col] !== null) return r[col];
    const i = byKey.get(r.arch);
    return i === undefined ? null : value(i, col);  // costs are the arch's, whoever trained it
  }
  const pct = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(2) + "%");
  function acc(err, se) {
    if (err === null || err === undefined) return "-";
    return (100 * (1 - err)).toFixed(2) + "%" + (se !== null && se !== undefined
      ? " \u00b1 " + (100 * se).toFixed(2) : "");
  }
  const count = (v) => (v === null || v === undefined ? "-" : Number(v).toLocaleString("en"));
  function keyOf(i) { return i < 0 ? D.lego.arch : P.arch[i]; }
  function hoverText(i) {
    const key = keyOf(i);
    const lines = ["<b>arch:" + key + "</b>"];
    const s = i >= 0 ? P.strategy[i] : "lego";
    lines.push("strategy " + (s || "-") + (frontOf.has(i) ? ", on its front" : "")
      + (D.lego && D.lego.arch === key ? ", the LEGO net" : ""));
    lines.push("params " + count(value(i, "params")) + ", FLOPs " + count(value(i, "flops"))
      + (P.latency ? ", latency " + (value(i, "latency") === null ? "-" : value(i, "latency").toFixed(3) + " ms") : ""));
    lines.push("inherited: clean acc " + acc(value(i, "clean_err"), value(i, "clean_err_se"))
      + ", adv acc " + acc(value(i, "adv_err"), value(i, "adv_err_se")));
    (standaloneOf.get(key) || []).forEach((j) => lines.push(standaloneText(j)));
    return lines.join("<br>");
  }
  function standaloneText(j) {
    const r = D.standalone[j];
    return r.source + " (" + r.label + "): clean acc " + acc(r.clean_err, r.clean_err_se)
      + ", adv acc " + acc(r.adv_err, r.adv_err_se);
  }
  function hover(role, i) {
    if (role === "standalone") return "<b>arch:" + D.standalone[i].arch + "</b><br>" + standaloneText(i);
    return hoverText(i);
  }
  // The 2-D view's hover box: text made for the one point under the mouse, not for every point
  // up front (20,000 labels cost more than drawing the points).
  const tip = document.createElement("div");
  tip.id = "hover-box";
  document.body.appendChild(tip);
  const mouse = { x: 0, y: 0 };
  gd.addEventListener("mousemove", (e) => { mouse.x = e.clientX; mouse.y = e.clientY; });
  function onHover(ev) {
    const pt = ev && ev.points && ev.points[0];
    if (!pt) return;
    const role = (pt.data && pt.data.meta && pt.data.meta.role) || "archive";
    const idx = pt.customdata !== undefined ? pt.customdata : shown[pt.curveNumber][pt.pointNumber];
    if (idx === undefined || role === "link") return;
    tip.textContent = "";
    hover(role, idx).split("<br>").forEach((line, k) => {
      const el = document.createElement(k === 0 ? "b" : "div");
      el.textContent = line.replace(/<\/?b>/g, "");
      tip.appendChild(el);
    });
    const e = ev.event || {};
    const x = e.clientX !== undefined ? e.clientX : mouse.x, y = e.clientY !== undefined ? e.clientY : mouse.y;
    tip.style.left = Math.min(x + 14, window.innerWidth - 380) + "px";
    tip.style.top = (y + 14) + "px";
    tip.style.display = "block";
  }

  // --- budget -----------------------------------------------------------------------------
  function number(id) {
    const el = $(id);
    if (!el || el.value.trim() === "") return null;
    const v = Number(el.value);
    return Number.isFinite(v) ? v : null;
  }
  function budget() {
    const caps = {};
    D.budgets.forEach((b) => { const v = number("max-" + b); if (v !== null) caps[b] = v; });
    const acc = number("min-clean-acc");
    return { caps: caps, minAcc: acc === null ? null : acc / 100 };
  }
  function passes(i, b) {
    for (const [col, cap] of Object.entries(b.caps)) {
      const v = value(i, col);
      if (v === null || !(v <= cap)) return false;
    }
    if (b.minAcc !== null) {
      const e = value(i, "clean_err");
      if (e === null || !(1 - e >= b.minAcc - 1e-12)) return false;
    }
    return true;
  }
  function better(i, j) {  // adv error, then clean error, then params, then archive order
    for (const col of ["adv_err", "clean_err", "params"]) {
      let a = value(i, col), c = value(j, col);
      a = a === null ? Infinity : a; c = c === null ? Infinity : c;
      if (a !== c) return a < c;
    }
    return i < j;
  }
  function applyBudget() {
    const b = budget();
    const active = Object.keys(b.caps).length > 0 || b.minAcc !== null;
    state.mask = active ? new Uint8Array(N) : null;
    let n = 0, best = -1;
    for (let i = 0; i < N; i++) {
      if (active && !passes(i, b)) continue;
      if (active) state.mask[i] = 1;
      n++;
      if (best < 0 || better(i, best)) best = i;
    }
    $("budget-count").textContent = active ? n + " of " + N + " archs meet the budget."
      : N + " archs; set a budget to narrow them.";
    const el = $("budget-best");
    el.textContent = "";
    if (active && best >= 0) {
      el.appendChild(document.createTextNode("Best under the budget (lowest adversarial error): "));
      el.appendChild(archButton(P.arch[best]));
      if (b.minAcc === null) {  // costs only: the same choice as a selector rule
        const rule = cell("code", "best:adv," + Object.entries(b.caps).map(([k, v]) => k + "<=" + v
          + (k === "latency" ? "ms" : "")).join(","));
        rule.id = "budget-rule";
        el.appendChild(document.createTextNode(" = "));
        el.appendChild(rule);
      }
    } else if (active) {
      el.textContent = "Nothing meets this budget.";
    }
    state.best = active && best >= 0 ? P.arch[best] : null;
    state.count = n;
    return redraw();
  }
  const visible = (i) => state.mask === null || i < 0 || state.mask[i] === 1;

  // --- drawing ----------------------------------------------------------------------------
  function errorBars(vals) {
    return { type: "data", array: vals, visible: true, thickness: 1, width: 0 };
  }
  function redraw() {
    const data = F.front.data.map((t, k) => {
      const tr = traces[k];
      const out = Object.assign({}, t);
      if (tr.role === "link") {
        const xs = [], ys = [];
        D.standalone.forEach((r, j) => {
          const i = byKey.get(r.arch);
          if (i === undefined || !visible(i)) return;
          const inh = (col) => (col === "clean_err" || col === "adv_err") && r["inherited_" + col] !== null
            ? r["inherited_" + col] : value(i, col);
          xs.push(inh(state.x), standaloneValue(j, state.x), null);
          ys.push(inh(state.y), standaloneValue(j, state.y), null);
        });
        out.x = xs; out.y = ys;
        return out;
      }
      const standalone = tr.role === "standalone";
      const idx = tr.base.filter((i) => (standalone ? (byKey.get(D.standalone[i].arch) === undefined
        || visible(byKey.get(D.standalone[i].arch))) : visible(i)));
      shown[k] = idx;
      const get = standalone ? standaloneValue : value;
      out.customdata = idx;
      out.x = idx.map((i) => get(i, state.x));
      out.y = idx.map((i) => get(i, state.y));
      out.hoverinfo = "none";  // the hover box answers instead (onHover)
      for (const [axis, key] of [["x", "error_x"], ["y", "error_y"]]) {
        const col = state[axis] + "_se";
        out[key] = state.errors && (state[axis] === "clean_err" || state[axis] === "adv_err")
          ? errorBars(idx.map((i) => get(i, col))) : { visible: false };
      }
      return out;
    });
    const layout = Object.assign({}, F.front.layout);
    layout.xaxis = axisLayout(state.x);
    layout.yaxis = axisLayout(state.y);
    return Plotly.react(gd, data, layout, CONFIG);
  }
  function axisLayout(name) {
    const out = { title: { text: D.axis_labels[name] || name } };
    if (name === "clean_err" || name === "adv_err") out.tickformat = ".0%";
    return out;
  }

  // --- the detail panel -------------------------------------------------------------------
  function archButton(key) {
    const b = document.createElement("button");
    b.className = "arch-link";
    b.textContent = "arch:" + key;
    b.dataset.arch = key;
    b.addEventListener("click", () => showDetail(key));
    return b;
  }
  function cell(tag, text) { const c = document.createElement(tag); c.textContent = text; return c; }
  function layerTable(key) {
    const genes = key.split("-").map(Number);
    const kinds = [...new Set(D.genes.map((g) => g.kind))];
    const rows = new Map();
    D.genes.forEach((g, k) => {
      if (!rows.has(g.layer)) rows.set(g.layer, {});
      rows.get(g.layer)[g.kind] = g.labels[genes[k]] === undefined ? String(genes[k]) : g.labels[genes[k]];
    });
    const table = document.createElement("table");
    table.id = "detail-layers";
    const head = document.createElement("tr");
    ["layer", ...kinds].forEach((k) => head.appendChild(cell("th", k)));
    table.appendChild(head);
    rows.forEach((r, layer) => {
      const tr = document.createElement("tr");
      tr.appendChild(cell("td", layer));
      kinds.forEach((k) => tr.appendChild(cell("td", r[k] === undefined ? "" : r[k])));
      table.appendChild(tr);
    });
    return table;
  }
  function copy(text, button) {
    const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1200); };
    const fallback = () => {
      const area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "select and copy by hand"; }
      area.remove();
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }
  function showDetail(key) {
    const panel = $("detail");
    panel.textContent = "";
    const i = byKey.get(key);
    const name = cell("h3", "arch:" + key);
    name.id = "detail-name";
    panel.appendChild(name);
    if (i !== undefined) {
      panel.appendChild(cell("p", "strategy " + (P.strategy[i] || "-")
        + (frontOf.has(i) ? ", on the " + frontOf.get(i) + " front" : "")
        + (D.lego && D.lego.arch === key ? ", the LEGO net" : "")));
      panel.appendChild(cell("p", "params " + count(value(i, "params")) + ", FLOPs "
        + count(value(i, "flops")) + (P.latency ? ", latency " + value(i, "latency") + " ms" : "")));
      panel.appendChild(cell("p", "inherited: clean acc " + acc(value(i, "clean_err"), value(i, "clean_err_se"))
        + ", adv acc " + acc(value(i, "adv_err"), value(i, "adv_err_se"))));
    } else if (D.lego && D.lego.arch === key) {
      panel.appendChild(cell("p", "the LEGO net (not in the archive): " + hoverText(-1).split("<br>").slice(2).join("; ")));
    }
    (standaloneOf.get(key) || []).forEach((j) => panel.appendChild(cell("p", standaloneText(j))));
    panel.appendChild(layerTable(key));
    panel.appendChild(cell("h4", "commands"));
    Object.entries(D.commands).forEach(([what, line]) => {
      const text = line.replace("{arch}", "arch:" + key);
      const pre = cell("pre", text);
      pre.id = "cmd-" + what;
      const button = cell("button", "copy");
      button.addEventListener("click", () => copy(text, button));
      panel.appendChild(cell("div", what + ":"));
      panel.appendChild(pre);
      panel.appendChild(button);
    });
  }
  function onClick(ev) {
    const pt = ev && ev.points && ev.points[0];
    if (!pt) return;
    const role = (pt.data && pt.data.meta && pt.data.meta.role) || "archive";
    let idx = pt.customdata;
    if (idx === undefined && pt.curveNumber !== undefined) idx = shown[pt.curveNumber][pt.pointNumber];
    if (idx === undefined || idx === null) return;
    showDetail(role === "standalone" ? D.standalone[idx].arch : keyOf(idx));
  }

  // --- CSV and 3-D ------------------------------------------------------------------------
  const CSV_COLUMNS = ["params", "flops", "latency", "clean_err", "clean_err_se", "adv_err", "adv_err_se"];
  function filteredCsv() {
    const cols = CSV_COLUMNS.filter((c) => P[c]);
    const lines = [["arch", "strategy", ...cols].join(",")];
    for (let i = 0; i < N; i++) {
      if (!visible(i)) continue;
      lines.push([P.arch[i], P.strategy[i] || "", ...cols.map((c) => (P[c][i] === null ? "" : P[c][i]))].join(","));
    }
    return lines.join("\n") + "\n";
  }
  function saveCsv() {
    const url = URL.createObjectURL(new Blob([filteredCsv()], { type: "text/csv" }));
    const a = document.createElement("a");
    a.href = url; a.download = "explore-filtered.csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  function show3d() {
    const z = $("axis-z").value;
    const data = traces.map((tr, k) => ({ tr: tr, t: F.front.data[k], idx: shown[k] }))
      .filter((o) => o.tr.role === "archive" || o.tr.role === "front" || o.tr.role === "lego")
      .map((o) => ({
        type: "scatter3d", mode: "markers", name: o.t.name, customdata: o.idx, meta: o.t.meta,
        x: o.idx.map((i) => value(i, state.x)), y: o.idx.map((i) => value(i, state.y)),
        z: o.idx.map((i) => value(i, z)), text: o.idx.map((i) => hover(o.tr.role, i)), hoverinfo: "text",
        marker: { size: o.tr.role === "archive" ? 2 : 4, color: o.t.marker.color, opacity: o.tr.role === "archive" ? 0.5 : 1 },
      }));
    const el = $("plot-3d");
    el.style.height = "600px";
    Plotly.newPlot(el, data, {
      scene: { xaxis: axisLayout(state.x), yaxis: axisLayout(state.y), zaxis: axisLayout(z) },
      margin: { l: 0, r: 0, t: 30, b: 0 }, template: F.front.layout.template,
    }, CONFIG).then(() => el.on("plotly_click", onClick));
  }

  // --- wiring -----------------------------------------------------------------------------
  $("axis-x").addEventListener("change", (e) => { state.x = e.target.value; redraw(); });
  $("axis-y").addEventListener("change", (e) => { state.y = e.target.value; redraw(); });
  $("error-bars").addEventListener("change", (e) => { state.errors = e.target.checked; redraw(); });
  $("show-3d").addEventListener("click", show3d);
  $("save-csv").addEventListener("click", saveCsv);
  $("clear-budget").addEventListener("click", () => {
    document.querySelectorAll("#budget input").forEach((el) => { el.value = ""; });
    applyBudget();
  });
  document.querySelectorAll("#budget input").forEach((el) => {
    el.addEventListener("input", applyBudget);
    el.addEventListener("change", applyBudget);
  });
  document.querySelectorAll("#standalone button.arch-link").forEach((b) =>
    b.addEventListener("click", () => showDetail(b.dataset.arch)));
  const ready = applyBudget().then(() => {  // the front first; the figures below it after
    gd.on("plotly_click", onClick);
    gd.on("plotly_hover", onHover);
    gd.on("plotly_unhover", () => { tip.style.display = "none"; });
    if (F.hv) Plotly.newPlot($("hv-plot"), F.hv.data, F.hv.layout, CONFIG);
    F.heatmaps.forEach((h, k) => Plotly.newPlot($("heatmap-" + k), h.data, h.layout, CONFIG));
  });
  window.tamnasExplore = { ready: ready, applyBudget: applyBudget, showDetail: showDetail,
    filteredCsv: filteredCsv, state: state };
})();
