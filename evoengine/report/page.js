// evoengine run report: draws the data in #evo-data with plotly.
// Candidate text is data, never markup: it reaches the page only through textContent,
// and every label handed to plotly (which reads a little HTML) is entity-escaped first.
(function () {
  "use strict";

  let S = JSON.parse(document.getElementById("evo-data").textContent);
  const LIVE = !!S.live;
  const details = new Map(Object.entries(S.details || {}));
  delete S.details;
  const GL = hasWebGL();
  const GL_FROM = 1000;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const CONFIG = {
    responsive: true, displaylogo: false, scrollZoom: true, displayModeBar: "hover",
    modeBarButtonsToRemove: ["select2d", "lasso2d", "toggleSpikelines"],
  };
  let selectedId = null;  // the candidate shown in the detail panel
  let index = new Map();  // candidate id -> position in S.nodes

  // ------------------------------------------------------------ small helpers

  function $(id) { return document.getElementById(id); }
  function hasWebGL() {
    try {
      const c = document.createElement("canvas");
      return !!(window.WebGLRenderingContext && (c.getContext("webgl") || c.getContext("experimental-webgl")));
    } catch (e) { return false; }
  }
  function make(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function fmt(x, digits) {
    if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) return "—";
    if (typeof x !== "number") return String(x);
    return Number(x.toPrecision(digits || 6)).toString();
  }
  function money(x) { return "$" + (x || 0).toFixed(x >= 10 ? 2 : 4); }
  // For plotly labels only: plotly renders a small HTML subset, so escape everything.
  function esc(s) {
    return String(s === null || s === undefined ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function table(node, headers, rows, onClick) {
    clear(node);
    const thead = node.appendChild(make("thead"));
    const tr = thead.appendChild(make("tr"));
    headers.forEach(h => tr.appendChild(make("th", h)));
    const tbody = node.appendChild(make("tbody"));
    rows.forEach(row => {
      const r = tbody.appendChild(make("tr"));
      row.cells.forEach(cell => {
        const td = r.appendChild(make("td", typeof cell === "number" ? fmt(cell) : cell));
        if (typeof cell === "number") td.className = "num";
      });
      if (row.cls) r.lastChild.className = row.cls;
      if (row.title) r.title = row.title;
      if (onClick) r.addEventListener("click", () => onClick(row.key));
    });
  }
  function plot(id, traces, layout) {
    const base = {
      margin: { l: 50, r: 10, t: 28, b: 40 }, uirevision: "keep", hovermode: "closest",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff", font: { size: 11 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
    };
    return Plotly.react($(id), traces, Object.assign(base, layout || {}), CONFIG).then(gd => {
      // Clicking a point that carries a candidate id (customdata) selects that candidate.
      if (!gd._evoClick) {
        gd.on("plotly_click", ev => {
          const pt = ev.points && ev.points[0];
          if (pt && typeof pt.customdata === "number") select(pt.customdata);
        });
        gd._evoClick = true;
      }
      return gd;
    });
  }
  // WebGL pays off for big traces only; each WebGL plot also costs a GL context.
  function scatterType(points) { return GL && points > GL_FROM ? "scattergl" : "scatter"; }

  // ------------------------------------------------------------ header

  function renderHeader() {
    const run = S.run, c = run.counts;
    $("run-name").textContent = run.name;
    document.title = "evoengine · " + run.name;
    $("stat-admitted").textContent = S.nodes.id.length;
    $("stat-valid").textContent = c.valid;
    $("stat-failed").textContent = c.failed - (c.near_duplicates || 0);
    $("stat-dupes").textContent = c.near_duplicates || 0;
    $("stat-best").textContent = run.best ? fmt(run.best.score) + " (#" + run.best.id + ")" : "—";
    $("stat-spend").textContent = money(run.spend);
    if (!LIVE) $("status").textContent = "report of " + new Date(S.generated * 1000).toLocaleString();
  }

  // ------------------------------------------------------------ lineage

  function nodeX(i) {
    return $("x-by").value === "seq" ? S.nodes.seq[i] : S.nodes.generation[i];
  }

  function lineageTraces() {
    const N = S.nodes, n = N.id.length;
    const byIsland = $("colour-by").value === "island";
    const islands = Array.from(new Set(N.island)).sort((a, b) => a - b);
    const size = n < 300 ? 10 : n < 3000 ? 7 : 5;
    const edges = { main: [[], []], migration: [[], []], second: [[], []] };
    function addEdge(kind, a, b) {
      const e = edges[kind];
      e[0].push(nodeX(a), nodeX(b), null);
      e[1].push(N.y[a], N.y[b], null);
    }
    for (let i = 0; i < n; i++) {
      const p = N.parent[i];
      if (p !== null && index.has(p)) addEdge(N.crosses[i] ? "migration" : "main", index.get(p), i);
      for (const q of N.others[i]) if (index.has(q)) addEdge("second", index.get(q), i);
    }
    const line = (e, name, color, width, dash) => ({
      type: scatterType(n), mode: "lines", name: name, x: e[0], y: e[1], hoverinfo: "skip",
      line: { color: color, width: width, dash: dash || "solid" }, showlegend: e[0].length > 0,
    });
    const groups = { valid: [], invalid: [] };
    for (let i = 0; i < n; i++) (N.valid[i] && N.score[i] !== null ? groups.valid : groups.invalid).push(i);
    const hover = (i) => "#" + N.id[i] + "  score " + fmt(N.score[i]) + (N.valid[i] ? "" : " (invalid)") +
      "<br>island " + N.island[i] + " · gen " + N.generation[i] + " · seq " + N.seq[i] +
      "<br>" + esc(N.operator[i]) + (N.model[i] ? " · " + esc(N.model[i]) : "") +
      (N.cost[i] ? "<br>cost " + money(N.cost[i]) : "") +
      (N.migrated_to[i].length ? "<br>migrated to island " + N.migrated_to[i].join(", ") : "");
    const islandColour = (i) => PALETTE[islands.indexOf(N.island[i]) % PALETTE.length];
    const nodes = (idx, name, valid) => {
      const marker = { size: size, line: { width: 0.5, color: "#333" } };
      if (byIsland) marker.color = idx.map(islandColour);
      else if (valid) {
        marker.color = idx.map(i => N.score[i]);
        marker.colorscale = "Viridis";
        marker.showscale = true;
        marker.colorbar = { title: { text: "score" }, thickness: 10 };
      } else marker.color = "#b8bcc4";
      if (!valid) marker.symbol = "x";
      return {
        type: scatterType(n), mode: "markers", name: name, meta: "nodes",
        x: idx.map(nodeX), y: idx.map(i => N.y[i]), customdata: idx.map(i => N.id[i]),
        text: idx.map(hover), hovertemplate: "%{text}<extra></extra>", marker: marker,
      };
    };
    const traces = [
      line(edges.main, "parent", "rgba(90,100,120,0.45)", 1),
      line(edges.migration, "parent from another island", "rgba(214,39,40,0.55)", 1),
      line(edges.second, "crossover parent", "rgba(255,127,14,0.35)", 1, "dot"),
      nodes(groups.valid, "valid", true),
      nodes(groups.invalid, "invalid", false),
    ];
    // The selected candidate's ancestry, drawn on top.
    const chain = selectedId !== null && index.has(selectedId) ? ancestry(index.get(selectedId)) : [];
    const hx = [], hy = [];
    chain.forEach(i => { hx.push(nodeX(i)); hy.push(N.y[i]); });
    traces.push({
      type: scatterType(n), mode: "lines+markers", name: "selected ancestry", x: hx, y: hy,
      hoverinfo: "skip", line: { color: "#e8590c", width: 2.5 },
      marker: { size: size + 4, color: "rgba(0,0,0,0)", line: { color: "#e8590c", width: 2 } },
      showlegend: chain.length > 0,
    });
    return traces;
  }

  function ancestry(i) {
    const chain = [i], seen = new Set([i]);
    let p = S.nodes.parent[i];
    while (p !== null && index.has(p) && !seen.has(index.get(p))) {
      const j = index.get(p);
      chain.push(j); seen.add(j);
      p = S.nodes.parent[j];
    }
    return chain.reverse();
  }

  function renderLineage() {
    const xTitle = $("x-by").value === "seq" ? "admission order" : "generation";
    return plot("lineage", lineageTraces(), {
      dragmode: "pan", xaxis: { title: { text: xTitle }, zeroline: false },
      yaxis: { visible: false, zeroline: false }, margin: { l: 10, r: 10, t: 8, b: 40 },
      legend: { orientation: "h", y: 1.0, yanchor: "bottom", x: 0 },
    });
  }

  // ------------------------------------------------------------ the selected candidate

  function getDetail(id) {
    const key = String(id);
    if (details.has(key)) return Promise.resolve(details.get(key));
    if (!LIVE) return Promise.reject(new Error("no details for #" + id + " in this report"));
    return fetch("api/candidate/" + encodeURIComponent(key), { cache: "no-store" })
      .then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then(d => { details.set(key, d); return d; });
  }

  function select(id) {
    if (!index.has(id)) return;
    selectedId = id;
    try { history.replaceState(null, "", "#c=" + id); } catch (e) { /* some browsers refuse on file:// */ }
    renderLineage();
    $("detail-title").textContent = "Candidate #" + id;
    getDetail(id).then(showDetail, err => {
      clear($("detail-code")).textContent = String(err.message || err);
    });
  }

  function showDetail(d) {
    if (selectedId !== d.id) return;
    const facts = clear($("detail-facts"));
    const add = (k, v) => { facts.appendChild(make("dt", k)); facts.appendChild(make("dd", v)); };
    add("score", fmt(d.score) + (d.valid ? "" : " (invalid)"));
    add("parents", d.parents.length ? d.parents.map(p => "#" + p).join(", ") : "none (seed)");
    add("made by", (d.operator || "?") + (d.model ? " · " + d.model : ""));
    add("island · gen", d.island + " · " + d.generation);
    add("cost", money(d.cost) + (d.reward !== null && d.reward !== undefined ? " · reward " + fmt(d.reward, 4) : ""));
    if (d.origin) add("origin", d.origin);
    $("detail-code").textContent = d.text;
    const diff = clear($("detail-diff"));
    if (!d.diffs.length) diff.appendChild(make("p", "no parent to compare with", "note"));
    d.diffs.forEach(entry => {
      diff.appendChild(make("h4", "against #" + entry.parent));
      if (!entry.diff) diff.appendChild(make("span", "(identical text)", "meta"));
      entry.diff.split("\n").forEach(lineText => {
        if (!entry.diff) return;
        let cls = "";
        if (lineText.startsWith("+++") || lineText.startsWith("---")) cls = "meta";
        else if (lineText.startsWith("@@")) cls = "hunk";
        else if (lineText.startsWith("+")) cls = "add";
        else if (lineText.startsWith("-")) cls = "del";
        diff.appendChild(make("span", lineText || " ", cls));
      });
    });
    const metrics = clear($("detail-metrics"));
    [["metrics", d.metrics], ["features", d.features], ["instances", d.instances], ["timings (s)", d.timings]]
      .forEach(([title, obj]) => {
        const keys = Object.keys(obj || {});
        if (!keys.length) return;
        metrics.appendChild(make("h3", title));
        const t = metrics.appendChild(make("table", null, "table"));
        table(t, ["name", "value"], keys.map(k => ({ cells: [k, obj[k]] })));
      });
    if (!metrics.firstChild) metrics.appendChild(make("p", "no metrics", "note"));
    $("detail-feedback").textContent = d.feedback || "(no feedback)";
    $("detail-change").textContent = d.change || "(no change recorded)";
    const arts = clear($("detail-artifacts"));
    Object.keys(d.artifacts || {}).forEach(k => {
      arts.appendChild(make("h3", k));
      arts.appendChild(make("pre", d.artifacts[k], "code"));
    });
    if (!arts.firstChild) arts.appendChild(make("p", "no artifacts", "note"));
  }

  function setupTabs() {
    $("detail-tabs").addEventListener("click", ev => {
      const tab = ev.target.closest("button");
      if (!tab) return;
      document.querySelectorAll("#detail-tabs button").forEach(b => b.classList.toggle("active", b === tab));
      document.querySelectorAll("[data-pane]").forEach(p => { p.hidden = p.dataset.pane !== tab.dataset.tab; });
    });
  }

  // ------------------------------------------------------------ scores

  function renderScores() {
    const N = S.nodes, n = N.id.length;
    const ok = [];
    for (let i = 0; i < n; i++) if (N.valid[i] && N.score[i] !== null) ok.push(i);
    const valid = ok.map(i => N.score[i]);
    const lo = valid.length ? Math.min.apply(null, valid) : 0;
    const hi = valid.length ? Math.max.apply(null, valid) : 1;
    const ev = { migration: [[], []], reset: [[], []] };
    S.events.forEach(e => {
      const bucket = ev[e.kind];
      if (bucket && e.seq !== null) { bucket[0].push(e.seq, e.seq, null); bucket[1].push(lo, hi, null); }
    });
    const points = (xs) => ({
      type: scatterType(ok.length), mode: "markers", name: "valid candidate", x: ok.map(xs), y: valid,
      customdata: ok.map(i => N.id[i]), marker: { size: 4, color: "rgba(59,91,219,0.35)" },
      hovertemplate: "#%{customdata} score %{y}<extra></extra>",
    });
    const best = (xs) => ({
      type: "scatter", mode: "lines", name: "best so far", x: N.id.map((_, i) => xs(i)),
      y: N.best_so_far, line: { shape: "hv", color: "#e8590c", width: 2 }, hoverinfo: "x+y",
    });
    const evTrace = (kind, color) => ({
      type: "scatter", mode: "lines", name: kind, x: ev[kind][0], y: ev[kind][1], hoverinfo: "skip",
      line: { color: color, width: 1, dash: "dot" }, showlegend: ev[kind][0].length > 0,
    });
    plot("best-seq", [points(i => N.seq[i]), best(i => N.seq[i]),
                      evTrace("migration", "rgba(120,120,120,0.5)"), evTrace("reset", "rgba(214,39,40,0.6)")],
         { xaxis: { title: { text: "admission" } }, yaxis: { title: { text: "score" } } });
    const minutes = (i) => N.elapsed[i] / 60;
    plot("best-time", [points(minutes), best(minutes)],
         { xaxis: { title: { text: "minutes since start" } }, yaxis: { title: { text: "score" } } });
  }

  // ------------------------------------------------------------ MAP-Elites

  function renderElites() {
    const E = S.elites, pick = $("elites-pick");
    const maps = E.maps;
    if (!maps.length) {
      Plotly.purge($("elites"));
      $("elites")._evoClick = false;
      $("elites").style.height = "auto";
      $("elites-note").textContent = "No MAP-Elites descriptors in this run.";
      return;
    }
    if (maps.length > 1 && pick.options.length !== maps.length) {
      clear(pick);
      maps.forEach((m, k) => pick.appendChild(make("option", m.x.name + (m.y ? " × " + m.y.name : ""))).value = k);
      pick.hidden = false;
    }
    const m = maps[Number(pick.value || 0)] || maps[0];
    const axis = (a, fallback) => a ? { title: { text: esc(a.name) }, type: a.scale === "log" ? "log" : "linear" }
                                     : { title: { text: fallback } };
    let trace;
    if (m.type === "heatmap") {
      const hover = m.best.map((row, j) => row.map((v, i) => v === null ? "empty" :
        "best #" + m.best_id[j][i] + " score " + fmt(v) + (m.count[j][i] ? "<br>" + m.count[j][i] + " in cell" : "")));
      trace = {
        type: "heatmap", x: m.x_centres, y: m.y_centres, z: m.best, customdata: m.best_id,
        text: hover, hovertemplate: esc(m.x.name) + " %{x:.3g}" + (m.y ? "<br>" + esc(m.y.name) + " %{y:.3g}" : "") +
          "<br>%{text}<extra></extra>", colorscale: "Viridis", colorbar: { thickness: 10 }, hoverongaps: false,
      };
    } else {
      trace = {
        type: "scatter", mode: "markers", x: m.px, y: m.py, customdata: m.id,
        marker: { color: m.score, colorscale: "Viridis", showscale: true, colorbar: { thickness: 10 }, size: 9,
                  line: { width: 0.5, color: "#333" } },
        text: m.score.map(fmt), hovertemplate: "elite #%{customdata} score %{text}<br>" + esc(m.x.name) +
          " %{x:.3g}<br>" + (m.y ? esc(m.y.name) : "score") + " %{y:.3g}<extra></extra>",
      };
    }
    plot("elites", [trace], {
      xaxis: Object.assign(axis(m.x, ""), m.type === "heatmap" ? {} : { range: rangeOf(m.x) }),
      yaxis: Object.assign(axis(m.y, m.type === "heatmap" ? "" : "score"),
                           m.type === "heatmap" ? { visible: !!m.y } : (m.y ? { range: rangeOf(m.y) } : {})),
    });
    const st = E.stats || {};
    let note = E.source === "engine"
      ? "the engine's archive: " + (E.kind || "") + (E.cells ? ", " + E.cells + " cells" : "")
      : "cells binned from admitted candidates' features";
    if (typeof st.filled === "number") note += " · " + st.filled + " filled";
    if (typeof st.coverage === "number") note += " · coverage " + (100 * st.coverage).toFixed(1) + "%";
    if (typeof st.qd_score === "number") note += " · QD-score " + fmt(st.qd_score);
    if (m.type === "scatter") note += " · each point is one cell's elite";
    $("elites-note").textContent = note;
  }
  function rangeOf(a) {
    if (a.scale === "log") return [Math.log10(a.low), Math.log10(a.high)];
    return [a.low, a.high];
  }

  // ------------------------------------------------------------ models and bandit

  function renderModels() {
    const M = S.models, arms = M.arms.map(a => a.arm);
    const bar = (key, name, color) => ({
      type: "bar", name: name, x: arms.map(esc), y: M.arms.map(a => a[key]), marker: { color: color },
    });
    plot("models-outcomes", [bar("valid", "valid", "#2f9e44"), bar("invalid", "invalid", "#f08c00"),
                             bar("failed", "failed (no child)", "#c92a2a"),
                             bar("rejected", "rejected (near-duplicate)", "#adb5bd")],
         { barmode: "stack", yaxis: { title: { text: "proposals" } } });
    // Each arm's share of recent proposals: how the bandit shifted its choices.
    const P = M.picks, picked = Object.keys(P.share);
    plot("models-picks", picked.map((a, k) => ({
      type: "scatter", mode: "lines", name: esc(a), x: P.x, y: P.share[a],
      line: { color: PALETTE[k % PALETTE.length], shape: "hv" },
    })), { xaxis: { title: { text: "proposal" } },
           yaxis: { title: { text: "share of last " + P.window + " proposals" }, range: [0, 1.02] } });
    const spend = {};
    M.calls.forEach(c => { spend[c.model] = (spend[c.model] || 0) + (c.cost || 0); });
    const names = Object.keys(spend);
    $("spend-note").textContent = names.length ? "total " + money(S.run.spend) + " over " +
      M.calls.reduce((n, c) => n + c.calls, 0) + " model calls" : "No model calls in this run (offline operators).";
    if (names.length) {
      $("models-spend").hidden = false;
      plot("models-spend", [{
        type: "bar", name: "model calls", x: names.map(esc), y: names.map(k => spend[k]), marker: { color: "#3b5bdb" },
      }], { yaxis: { title: { text: "US$" } } });
    } else {
      $("models-spend").hidden = true;
    }
    table($("models-table"), ["arm", "proposals", "valid", "invalid", "failed", "near-duplicates", "improved",
                              "mean reward", "cost"],
      M.arms.map(a => ({ cells: [a.arm, a.proposals, a.valid, a.invalid, a.failed, a.rejected, a.improved,
                                  a.mean_reward === null ? "—" : a.mean_reward, money(a.cost)] })));
    table($("calls-table"), ["model", "purpose", "calls", "errors", "tokens in", "tokens out", "cost"],
      M.calls.map(c => ({ cells: [c.model, c.purpose, c.calls, c.errors || 0, c.tokens_in || 0,
                                   c.tokens_out || 0, money(c.cost)] })));
    renderBandit(M.bandit);
  }

  function renderBandit(state) {
    const box = clear($("bandit"));
    if (state === null || state === undefined) {
      box.appendChild(make("p", "The engine recorded no bandit state.", "note"));
      return;
    }
    // A map of arm -> {numbers} reads best as a table; anything else as JSON text.
    const arms = state && typeof state === "object" && (state.arms || state);
    const rows = arms && typeof arms === "object" && !Array.isArray(arms) ? Object.keys(arms) : [];
    const tabular = rows.length && rows.every(k => arms[k] && typeof arms[k] === "object" && !Array.isArray(arms[k]));
    if (tabular) {
      const cols = Array.from(new Set([].concat.apply([], rows.map(k => Object.keys(arms[k])))));
      const t = box.appendChild(make("table", null, "table"));
      table(t, ["arm"].concat(cols), rows.map(k => ({
        cells: [k].concat(cols.map(c => {
          const v = arms[k][c];
          return typeof v === "number" ? v : v === undefined ? "" : JSON.stringify(v);
        })),
      })));
    }
    if (!tabular || arms !== state) box.appendChild(make("pre", JSON.stringify(state, null, 1), "code"));
  }

  // ------------------------------------------------------------ tables

  function renderTables() {
    const N = S.nodes;
    const ranked = N.id.map((_, i) => i).filter(i => N.valid[i] && N.score[i] !== null)
      .sort((a, b) => N.score[b] - N.score[a] || N.seq[a] - N.seq[b]).slice(0, 20);
    table($("top-table"), ["id", "score", "island", "gen", "operator", "model"],
      ranked.map(i => ({ key: N.id[i], cells: ["#" + N.id[i], N.score[i], N.island[i], N.generation[i],
                                               N.operator[i], N.model[i] || ""] })),
      id => select(id));
    table($("failures-table"), ["id", "operator", "model", "reason"],
      S.failures.map(f => ({
        cells: ["#" + f.id, f.operator || "", f.model || "",
                (f.reason || "").length > 300 ? f.reason.slice(0, 300) + "…" : (f.reason || "")],
        cls: "reason", title: f.reason || "",
      })));
    table($("islands-table"), ["island", "population", "admitted", "invalid", "best score", "best"],
      (S.islands || []).map(r => ({ key: r.best_id, cells: [r.island, r.size, r.admitted, r.invalid, r.best_score,
                                                            r.best_id === null ? "—" : "#" + r.best_id] })),
      id => { if (id !== null) select(id); });
    const nov = S.novelty;
    $("novelty-note").textContent = nov && typeof nov === "object"
      ? "novelty (" + (nov.embedder || "?") + "): " + (nov.checks || 0) + " checks, " + (nov.rejected || 0) +
        " near-duplicates rejected" + (nov.judged ? ", " + nov.judged + " judged by a model" : "")
      : "";
    $("config").textContent = S.run.config || "(no config.yaml in the run directory)";
    const meta = S.run.meta || {};
    table($("meta-table"), ["key", "value"], Object.keys(meta).map(k => ({
      cells: [k, typeof meta[k] === "string" ? meta[k] : JSON.stringify(meta[k])],
    })));
  }

  // ------------------------------------------------------------ wiring

  // The lineage first, so the page is usable at once; the other panels a moment later.
  function later(fn) {
    return new Promise(resolve => setTimeout(() => { try { fn(); } finally { resolve(); } }, 0));
  }
  function renderAll() {
    index = new Map(S.nodes.id.map((id, i) => [id, i]));
    renderHeader();
    renderLineage();
    return later(renderScores).then(() => later(renderElites)).then(() => later(renderModels))
      .then(() => later(renderTables));
  }

  // Polls every 2.5 s, or slower when a big run takes long to fetch and draw.
  function poll() {
    const status = $("status"), started = performance.now();
    fetch("api/summary?since=" + encodeURIComponent(S.version), { cache: "no-store" })
      .then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then(next => {
        status.className = "status";
        status.textContent = "live · updated " + new Date().toLocaleTimeString();
        if (next.unchanged) return null;
        S = next;
        return renderAll();
      })
      .catch(err => {
        status.className = "status error";
        status.textContent = "live · cannot reach the viewer (" + (err.message || err) + ")";
      })
      .then(() => setTimeout(poll, Math.max(2500, 4 * (performance.now() - started))));
  }

  function start() {
    setupTabs();
    ["colour-by", "x-by"].forEach(id => $(id).addEventListener("change", renderLineage));
    $("elites-pick").addEventListener("change", renderElites);
    $("goto-form").addEventListener("submit", ev => {
      ev.preventDefault();
      const id = parseInt($("goto").value.replace("#", ""), 10);
      if (index.has(id)) select(id);
    });
    window.evoReport = { select: select, data: () => S, ready: false };
    const rendered = renderAll();
    const fromHash = /#c=(\d+)/.exec(location.hash);
    const first = fromHash ? parseInt(fromHash[1], 10) : (S.run.best ? S.run.best.id : S.nodes.id[S.nodes.id.length - 1]);
    if (first !== undefined && index.has(first)) select(first);
    rendered.then(() => {
      if (LIVE) { $("status").textContent = "live"; setTimeout(poll, 2500); }
      window.evoReport.ready = true;
    });
  }

  start();
})();
