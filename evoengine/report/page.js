// evoengine run report: the page. Reads the summary in #evo-data (rows of every closed
// proposal in columns), opens the gzip chunks of texts when needed, and draws with draw.js.
// Candidate text is data, never markup: it reaches the page only through textContent.
(function () {
  "use strict";
  const Evo = window.Evo, make = Evo.make, clear = Evo.clear, fmt = Evo.fmt;
  const $ = id => document.getElementById(id);
  let S = JSON.parse($("evo-data").textContent);
  const LIVE = !!S.live;
  const STATUS_COLOUR = { valid: "#2f9e44", invalid: "#c92a2a", screened: "#e67700", rejected: "#868e96", failed: "#862e9c" };
  const api = window.evoReport = { ready: false, detailsReady: false, data: () => S };

  function money(x) { return "$" + (x || 0).toFixed(x >= 10 ? 2 : 4); }
  function later() { return new Promise(resolve => setTimeout(resolve, 0)); }
  // A small table; a column of numbers (or one named in `numbers`) is right-aligned, header too.
  function table(node, headers, rows, onClick, numbers) {
    clear(node);
    const tr = node.appendChild(make("thead")).appendChild(make("tr"));
    const numeric = headers.map((_, k) => (numbers || []).includes(k) || (rows.length > 0 && rows.every(r => typeof r.cells[k] === "number" || r.cells[k] === null)));
    headers.forEach((h, k) => tr.appendChild(make("th", h, numeric[k] ? "num" : "")));
    const body = node.appendChild(make("tbody"));
    rows.forEach(row => {
      const r = body.appendChild(make("tr"));
      row.cells.forEach((cell, k) => {
        if (cell instanceof Node) r.appendChild(make("td")).appendChild(cell);
        else r.appendChild(make("td", typeof cell === "number" ? fmt(cell) : cell, numeric[k] ? "num" : ""));
      });
      if (row.title) r.title = row.title;
      if (onClick) r.addEventListener("click", () => onClick(row.key));
    });
  }

  // ------------------------------------------------------------ texts, opened lazily

  const details = new Map(), hay = new Map(), chunkOf = new Map();
  let chunks = [], loading = null;
  function addChunks(payload) {
    (payload.chunks || []).forEach(c => { const k = chunks.length; chunks.push({ c: c, done: null }); c.ids.forEach(id => chunkOf.set(id, k)); });
  }
  function openChunk(k) {
    const entry = chunks[k];
    if (!entry.done) {
      const bin = atob(entry.c.gz), bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      entry.done = new Response(stream).text().then(text => {
        JSON.parse(text).forEach(d => {
          details.set(d.id, d);
          hay.set(d.id, [d.text || "", d.feedback || "", d.reason || ""].join("\n").toLowerCase());
        });
      });
    }
    return entry.done;
  }
  function detailOf(id) {
    if (details.has(id)) return Promise.resolve(details.get(id));
    const k = chunkOf.get(id);
    return k === undefined ? Promise.resolve(null) : openChunk(k).then(() => details.get(id) || null);
  }
  function openAll() {  // one chunk at a time, so the page never stalls
    const from = chunks.findIndex(e => !e.done);
    if (from < 0) { api.detailsReady = true; return Promise.resolve(); }
    return openChunk(from).then(later).then(openAll);
  }
  function fetchDetails(after) {
    return fetch("api/details" + (after ? "?after=" + after : ""), { cache: "no-store" })
      .then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then(payload => { addChunks(payload); S.detailsUntil = payload.until; return openAll(); });
  }

  // ------------------------------------------------------------ rows

  let R, n, rowOf, admitted, nodeOf, statusName, deltaOf;
  function index() {
    R = S.rows; n = R.id.length;
    rowOf = new Map(R.id.map((id, i) => [id, i]));
    admitted = [];
    for (let i = 0; i < n; i++) if (R.seq[i] !== null) admitted.push(i);
    admitted.sort((a, b) => R.seq[a] - R.seq[b]);
    nodeOf = new Map(admitted.map((i, k) => [i, k]));
    statusName = i => S.statuses[R.status[i]];
    deltaOf = new Array(n).fill(null);
    for (let i = 0; i < n; i++) {
      const p = rowOf.get(R.parents[i][0]);
      if (p !== undefined && statusName(i) === "valid" && statusName(p) === "valid") deltaOf[i] = R.score[i] - R.score[p];
    }
  }
  function describe(i) {
    return ["#" + R.id[i] + " · " + statusName(i) + (R.score[i] !== null ? " · score " + fmt(R.score[i]) : ""),
            "island " + R.island[i] + " · gen " + R.generation[i] + (R.seq[i] !== null ? " · admitted " + R.seq[i] : ""),
            (R.operator[i] || "?") + (R.model[i] ? " · " + R.model[i] : "") + (R.cost[i] ? " · " + money(R.cost[i]) : "")]
      .concat(R.note[i] ? [R.note[i].slice(0, 90)] : []);
  }

  // ------------------------------------------------------------ header

  function renderHeader() {
    const c = S.run.counts, box = clear($("stats"));
    $("run-name").textContent = S.run.name;
    document.title = "evoengine · " + S.run.name;
    const stat = (id, value, label, title) => {
      const s = box.appendChild(make("span"));
      s.appendChild(make("b", value)).id = id;
      s.appendChild(document.createTextNode(" " + label));
      if (title) s.title = title;
    };
    stat("stat-admitted", c.admitted, "admitted");
    stat("stat-valid", c.valid, "valid");
    stat("stat-invalid", c.invalid, "invalid");
    if (c.screened) stat("stat-screened", c.screened, "screened by the gate");
    stat("stat-rejected", c.rejected, "rejected (" + c.near_duplicates + " near-duplicates, " + c.exact_copies + " exact copies)");
    stat("stat-failed", c.failed, "failed");
    stat("stat-best", S.run.best ? fmt(S.run.best.score) + " (#" + S.run.best.id + ")" : "—", "best");
    stat("stat-spend", money(S.run.spend), "spent");
    if (S.run.stopped) {  // why the run ended (cleared while a resume is under way)
      const s = box.appendChild(make("span", "stopped: "));
      s.appendChild(make("b", S.run.stopped.reason)).id = "stat-stopped";
      s.title = S.run.stopped.message || "";
    }
    if (!LIVE) $("status").textContent = "report of " + new Date(S.generated * 1000).toLocaleString();
  }

  // ------------------------------------------------------------ filters and the candidate table

  const filters = { q: "", status: "", island: "", operator: "", model: "" };
  let matching = [], sortKey = "id", sortDir = 1;
  function options(id, label, values) {
    const sel = $(id), keep = sel.value;
    clear(sel);
    sel.appendChild(make("option", "all " + label)).value = "";
    values.forEach(v => { sel.appendChild(make("option", String(v))).value = String(v); });
    sel.value = values.map(String).includes(keep) ? keep : "";
  }
  function distinct(col) { return Array.from(new Set(R[col].filter(v => v !== null && v !== ""))).sort((a, b) => a < b ? -1 : a > b ? 1 : 0); }
  function matches(i) {
    if (filters.status && statusName(i) !== filters.status) return false;
    if (filters.island !== "" && String(R.island[i]) !== filters.island) return false;
    if (filters.operator && R.operator[i] !== filters.operator) return false;
    if (filters.model && R.model[i] !== filters.model) return false;
    if (filters.q) {
      const text = hay.get(R.id[i]);
      return text !== undefined ? text.includes(filters.q) : (R.note[i] || "").toLowerCase().includes(filters.q);
    }
    return true;
  }
  const COLUMNS = [
    { key: "id", label: "id", w: "64px", num: true, get: i => R.id[i], show: i => "#" + R.id[i] },
    { key: "status", label: "status", w: "74px", get: i => statusName(i), cls: i => "st-" + statusName(i) },
    { key: "score", label: "score", w: "100px", num: true, get: i => R.score[i] },
    { key: "delta", label: "Δ parent", w: "92px", num: true, get: i => deltaOf[i], show: i => Evo.delta(R.score[i], deltaOf[i] === null ? null : R.score[i] - deltaOf[i]) },
    { key: "island", label: "island", w: "58px", num: true, get: i => R.island[i] },
    { key: "generation", label: "gen", w: "46px", num: true, get: i => R.generation[i] },
    { key: "operator", label: "operator", w: "140px", get: i => R.operator[i] || "" },
    { key: "model", label: "model", w: "110px", get: i => R.model[i] || "" },
    { key: "parents", label: "parents", w: "96px", get: i => R.parents[i][0] || 0, show: i => R.parents[i].map(p => "#" + p).join(" ") },
    { key: "cost", label: "cost", w: "70px", num: true, get: i => R.cost[i], show: i => R.cost[i] ? money(R.cost[i]) : "" },
    { key: "tokens", label: "tokens", w: "64px", num: true, get: i => R.tokens[i], show: i => R.tokens[i] || "" },
    { key: "t", label: "min", w: "56px", num: true, get: i => R.t[i], show: i => (R.t[i] / 60).toFixed(1) },
    { key: "note", label: "reason / feedback", w: "minmax(160px, 1fr)", get: i => R.note[i] || "" },
  ];

  // A table of row indices that draws only the rows in sight (any number of rows).
  function VTable(box, columns, onClick) {
    const grid = columns.map(c => c.w).join(" ");
    this.columns = columns; this.rows = []; this.onClick = onClick; this.pool = []; this.selected = null;
    this.head = box.appendChild(make("div", null, "vhead"));
    this.head.style.gridTemplateColumns = grid;
    this.heads = columns.map(c => { const h = this.head.appendChild(make("span", c.label, c.num ? "num" : "")); h.dataset.key = c.key; return h; });
    this.body = box.appendChild(make("div", null, "vbody"));
    this.spacer = this.body.appendChild(make("div"));
    this.grid = grid;
    this.body.addEventListener("scroll", () => this.draw());
  }
  VTable.prototype.H = 22;
  VTable.prototype.set = function (rows) { this.rows = rows; this.spacer.style.height = rows.length * this.H + "px"; this.draw(); };
  VTable.prototype.draw = function () {
    const top = this.body.scrollTop, first = Math.max(0, Math.floor(top / this.H) - 4);
    const count = Math.ceil((this.body.clientHeight || 360) / this.H) + 8;
    let k = 0;
    for (; k < count && first + k < this.rows.length; k++) {
      let el = this.pool[k];
      if (!el) {
        el = this.pool[k] = this.body.appendChild(make("div", null, "vrow"));
        el.style.gridTemplateColumns = this.grid;
        this.columns.forEach(c => el.appendChild(make("span", null, c.num ? "num" : "")));
        el.addEventListener("click", ev => this.onClick(Number(el.dataset.id), ev.shiftKey || ev.altKey || ev.metaKey || ev.ctrlKey));
      }
      const i = this.rows[first + k];
      el.hidden = false;
      el.style.top = (first + k) * this.H + "px";
      el.dataset.id = R.id[i];
      el.classList.toggle("selected", R.id[i] === this.selected);
      this.columns.forEach((c, j) => {
        const cell = el.children[j], v = c.show ? c.show(i) : c.get(i);
        cell.textContent = typeof v === "number" ? fmt(v) : v === null || v === undefined ? "" : v;
        cell.className = (c.num ? "num " : "") + (c.cls ? c.cls(i) : "");
        if (c.key === "note") cell.title = R.note[i] || "";
      });
    }
    for (; k < this.pool.length; k++) this.pool[k].hidden = true;
  };

  let candTable, failTable;
  function sortRows(rows) {
    const col = COLUMNS.find(c => c.key === sortKey);
    const keyed = rows.map(i => [col.get(i), i]);
    keyed.sort((a, b) => {
      const x = a[0], y = b[0];
      if (x === y) return R.id[a[1]] - R.id[b[1]];
      if (x === null || x === undefined || x === "") return 1;
      if (y === null || y === undefined || y === "") return -1;
      return (x < y ? -1 : 1) * sortDir;
    });
    return keyed.map(e => e[1]);
  }
  let sorted = null;  // every row in the table's order (kept until the sort or the rows change)
  function applyFilters() {
    const keep = new Uint8Array(n);
    matching = [];
    for (let i = 0; i < n; i++) if (matches(i)) { keep[i] = 1; matching.push(i); }
    if (!sorted) sorted = sortRows(R.id.map((_, i) => i));
    candTable.set(matching.length === n ? sorted : sorted.filter(i => keep[i]));
    candTable.heads.forEach(h => { h.className = (COLUMNS.find(c => c.key === h.dataset.key).num ? "num " : "") + (h.dataset.key === sortKey ? (sortDir > 0 ? "sorted-asc" : "sorted-desc") : ""); });
    const searching = filters.q && !api.detailsReady ? " (searching reasons only until the texts are open)" : "";
    $("match-note").textContent = matching.length + " of " + n + " proposals" + searching;
    drawTree();
  }
  function setupTable() {
    candTable = new VTable($("cand-table"), COLUMNS, pickRow);
    candTable.heads.forEach(h => h.addEventListener("click", () => {
      sortDir = sortKey === h.dataset.key ? -sortDir : (COLUMNS.find(c => c.key === h.dataset.key).num ? -1 : 1);
      sortKey = h.dataset.key;
      sorted = null;
      applyFilters();
    }));
    const failCols = [COLUMNS[0], COLUMNS[1], { key: "kind", label: "kind", w: "70px", get: i => R.kind[i] || "" },
                      COLUMNS[6], COLUMNS[7], COLUMNS[8], COLUMNS[12]];
    failTable = new VTable($("failures-table"), failCols, pickRow);
    let timer = null;
    $("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { filters.q = $("search").value.trim().toLowerCase(); applyFilters(); }, 120);
    });
    [["f-status", "status"], ["f-island", "island"], ["f-operator", "operator"], ["f-model", "model"]].forEach(([id, key]) =>
      $(id).addEventListener("change", () => { filters[key] = $(id).value; applyFilters(); }));
  }
  function renderTable() {
    options("f-status", "statuses", S.statuses);
    options("f-island", "islands", distinct("island"));
    options("f-operator", "operators", distinct("operator"));
    options("f-model", "models", distinct("model"));
    ["status", "island", "operator", "model"].forEach(k => { filters[k] = $("f-" + k).value; });
    const failed = [];
    for (let i = n - 1; i >= 0; i--) if (R.seq[i] === null) failed.push(i);
    $("failures-panel").hidden = !failed.length;
    failTable.set(failed);
    applyFilters();
  }
  function pickRow(id, compare) { if (compare && selectedRow !== null) setCompare(id); else select(id); }

  // ------------------------------------------------------------ the lineage tree

  let tree, pathOnly = false, selectedRow = null, compareId = null;
  function colourOf(i, by) {
    const st = statusName(i);
    if (by === "island") return Evo.PALETTE[islandList.indexOf(R.island[i]) % Evo.PALETTE.length];
    if (by === "status" || st === "screened") return STATUS_COLOUR[st];
    if (st !== "valid") return "#868e96";
    return Evo.viridis(scoreHi > scoreLo ? (R.score[i] - scoreLo) / (scoreHi - scoreLo) : 0.5);
  }
  let islandList = [], scoreLo = 0, scoreHi = 1;
  function ancestry(row) {  // every ancestor through every parent, and the edges that reach them
    const nodes = new Set(), crossNodes = new Set(), main = [], cross = [];
    const start = row === null ? [] : R.seq[row] !== null ? [row] : R.parents[row].map(p => rowOf.get(p)).filter(p => p !== undefined);
    const stack = start.slice();
    while (stack.length) {
      const i = stack.pop();
      if (nodes.has(i)) continue;
      nodes.add(i);
      R.parents[i].forEach((p, k) => {
        const j = rowOf.get(p);
        if (j === undefined || R.seq[j] === null) return;
        (k === 0 ? main : cross).push([j, i]);
        if (k > 0) crossNodes.add(j);
        stack.push(j);
      });
    }
    return { nodes: nodes, crossNodes: crossNodes, main: main, cross: cross };
  }
  // What the tree draws that filters, colours and selection do not change (redone when the
  // rows or the x axis change).
  let treeBase = null;
  function layoutTree() {
    const bySeq = $("x-by").value === "seq";
    const valid = admitted.filter(i => statusName(i) === "valid" && R.score[i] !== null).map(i => R.score[i]);
    scoreLo = valid.length ? Math.min.apply(null, valid) : 0;
    scoreHi = valid.length ? Math.max.apply(null, valid) : 1;
    islandList = Array.from(new Set(R.island)).sort((a, b) => a - b);
    const parentNode = i => { const j = rowOf.get(R.parents[i][0]); return j !== undefined && nodeOf.has(j) ? nodeOf.get(j) : -1; };
    treeBase = {
      x: admitted.map(i => bySeq ? R.seq[i] : R.generation[i]),
      y: admitted.map(i => R.y[i]),
      parent: admitted.map(parentNode),
      others: admitted.map(i => R.parents[i].slice(1).map(q => nodeOf.get(rowOf.get(q))).filter(k => k !== undefined)),
      crosses: admitted.map(i => { const j = rowOf.get(R.parents[i][0]); return j !== undefined && R.parents[j].length > 0 && R.island[j] !== R.island[i]; }),
      shape: admitted.map(i => ({ invalid: 1, screened: 2 })[statusName(i)] || 0),
    };
  }
  function drawTree() {
    if (!tree) return;
    if (!treeBase) layoutTree();
    const by = $("colour-by").value, toNode = i => nodeOf.get(i);
    const p = ancestry(pathOnly ? rowOf.get(S.run.best ? S.run.best.id : -1) ?? null : selectedRow);
    const path = {
      nodes: new Set(Array.from(p.nodes).map(toNode)), crossNodes: new Set(Array.from(p.crossNodes).map(toNode)),
      main: p.main.map(e => e.map(toNode)), cross: p.cross.map(e => e.map(toNode)),
    };
    if (treeBase.colourBy !== by) { treeBase.colour = admitted.map(i => colourOf(i, by)); treeBase.colourBy = by; }
    tree.set(Object.assign({}, treeBase, {
      shown: admitted.map(matches),
      only: pathOnly ? path.nodes : null,
      path: path.nodes.size ? path : null,
      selected: selectedRow !== null && nodeOf.has(selectedRow) ? nodeOf.get(selectedRow) : -1,
    }));
    treeLegend();
  }
  function treeLegend() {
    const by = $("colour-by").value, items = [];
    const grey = by === "island" ? "#495057" : null;
    if (by === "island") islandList.forEach((isl, k) => items.push({ name: "island " + isl, color: Evo.PALETTE[k % Evo.PALETTE.length], shape: "dot" }));
    else if (by === "status") items.push({ name: "valid", color: STATUS_COLOUR.valid, shape: "dot" });
    else items.push({ name: "valid: score " + fmt(scoreLo, 4) + " (dark) to " + fmt(scoreHi, 4) + " (yellow)", color: Evo.viridis(0.6), shape: "dot" });
    items.push({ name: "invalid", color: grey || (by === "status" ? STATUS_COLOUR.invalid : "#868e96"), shape: "cross" });
    items.push({ name: "screened by the gate", color: grey || STATUS_COLOUR.screened, shape: "diamond" });
    items.push({ name: "ancestry (main parents)", color: Evo.PATH, shape: "line" });
    items.push({ name: "crossover parents", color: Evo.CROSS, shape: "dash" });
    items.push({ name: "child on another island", color: "#91a7ff", shape: "dash" });
    Evo.legend($("lineage"), items);
  }
  function setupTree() {
    tree = new Evo.Tree($("lineage"), {
      height: 560,
      describe: k => describe(admitted[k]),
      onPick: (k, compare) => pickRow(R.id[admitted[k]], compare),
    });
    $("colour-by").addEventListener("change", drawTree);
    $("x-by").addEventListener("change", () => { layoutTree(); drawTree(); tree.fit(pathOnly ? tree.d.only : null); });
    $("fit").addEventListener("click", () => tree.fit(pathOnly ? tree.d.only : null));
    $("best-path").addEventListener("click", () => {
      pathOnly = !pathOnly;
      $("best-path").setAttribute("aria-pressed", String(pathOnly));
      if (pathOnly && S.run.best) select(S.run.best.id);
      drawTree();
      tree.fit(pathOnly ? tree.d.only : null);
    });
    $("goto-form").addEventListener("submit", ev => {
      ev.preventDefault();
      const id = parseInt($("goto").value.replace("#", ""), 10), row = rowOf.get(id);
      $("goto-note").textContent = row === undefined ? "no proposal #" + $("goto").value.replace("#", "") + " in this run" : "";
      if (row === undefined) return;
      select(id);
      if (nodeOf.has(row)) tree.centre(nodeOf.get(row));
      else $("goto-note").textContent = "#" + id + " was " + statusName(row) + ": not in the tree (details on the right)";
    });
  }

  // ------------------------------------------------------------ one candidate

  let selectToken = 0;
  function fact(dl, label, value) {
    dl.appendChild(make("dt", label));
    const dd = dl.appendChild(make("dd"));
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = value;
  }
  function idLinks(ids) {
    const span = make("span");
    ids.forEach((p, k) => {
      if (k) span.appendChild(document.createTextNode(k === 1 ? " × crossover " : ", "));
      const a = span.appendChild(make("a", "#" + p));
      a.addEventListener("click", () => select(p));
    });
    return span;
  }
  function select(id) {
    const row = rowOf.get(id);
    if (row === undefined) return Promise.resolve(null);
    selectedRow = row;
    candTable.selected = failTable.selected = id;
    candTable.draw(); failTable.draw();
    history.replaceState(null, "", "#c=" + id);
    drawTree();
    const st = statusName(row);
    $("detail-title").textContent = "#" + id + " · " + st;
    const dl = clear($("detail-facts"));
    fact(dl, "status", st + (R.kind[row] ? " (" + R.kind[row] + ")" : ""));
    if (R.score[row] !== null) fact(dl, "score", fmt(R.score[row]) + (deltaOf[row] !== null ? " (" + Evo.delta(R.score[row], R.score[row] - deltaOf[row]) + " on its parent)" : ""));
    fact(dl, "made by", (R.operator[row] || "?") + (R.model[row] ? " · " + R.model[row] : ""));
    if (R.parents[row].length) fact(dl, "parents", idLinks(R.parents[row]));
    fact(dl, "island · gen", R.island[row] + " · " + R.generation[row] + (R.seq[row] !== null ? " · admitted " + R.seq[row] : ""));
    if (R.cost[row] || R.tokens[row]) fact(dl, "model", R.calls[row] + " call" + (R.calls[row] === 1 ? "" : "s") + " · " + R.tokens[row] + " tokens · " + money(R.cost[row]));
    if (R.migrated_to[row].length) fact(dl, "migrated to", "island " + R.migrated_to[row].join(", "));
    if (R.origin[row]) fact(dl, "origin", R.origin[row]);
    if (R.seq[row] === null && R.note[row]) fact(dl, "reason", R.note[row]);
    renderAncestry(row);
    const token = ++selectToken;
    $("detail-code").textContent = "(opening…)";
    return detailOf(id).then(d => { if (token === selectToken) renderDetail(row, d); return d; });
  }
  function renderDetail(row, d) {
    d = d || { text: null, feedback: "", reason: R.note[row], calls: [], metrics: {}, features: {}, instances: {}, timings: {}, artifacts: {} };
    const code = clear($("detail-code"));
    if (d.text === null || d.text === undefined) code.textContent = "(no child text: this proposal " + (statusName(row) === "rejected" ? "was a copy of an earlier one" : "failed before it made one") + ")";
    else code.appendChild(Evo.highlight(d.text));
    renderDiff(row, d);
    renderCalls(d);
    $("detail-feedback").textContent = [d.reason ? "reason: " + d.reason : "", d.feedback || (d.reason ? "" : "(no feedback)")].filter(Boolean).join("\n\n");
    const metrics = clear($("detail-metrics"));
    [["metrics", d.metrics], ["features", d.features], ["instances", d.instances], ["timings (s)", d.timings]].forEach(([title, obj]) => {
      const keys = Object.keys(obj || {});
      if (!keys.length) return;
      metrics.appendChild(make("h3", title));
      table(metrics.appendChild(make("table", null, "table")), ["name", "value"], keys.map(k => ({ cells: [k, typeof obj[k] === "number" ? obj[k] : JSON.stringify(obj[k])] })));
    });
    if (!metrics.firstChild) metrics.appendChild(make("p", "no metrics", "note"));
    const arts = clear($("detail-artifacts"));
    Object.keys(d.artifacts || {}).forEach(k => { arts.appendChild(make("h3", k)); arts.appendChild(make("pre", d.artifacts[k], "code")); });
    if (!arts.firstChild) arts.appendChild(make("p", "no artifacts", "note"));
  }
  function setCompare(id) {
    compareId = id;
    $("diff-with").value = "#" + id;
    $("diff-base").value = "other";
    document.querySelector('#detail-tabs button[data-tab="diff"]').click();
    if (selectedRow !== null) detailOf(R.id[selectedRow]).then(d => renderDiff(selectedRow, d));
  }
  let diffRow = null;
  function renderDiff(row, d) {
    // A parent chosen as base stays chosen while its candidate is shown; a new candidate starts
    // from its own main parent (it may share a crossover parent's id with the last one).
    // "another candidate" stays chosen across candidates.
    const base = $("diff-base"), keep = row === diffRow || base.value === "other" ? base.value : null;
    diffRow = row;
    clear(base);
    R.parents[row].forEach((p, k) => { base.appendChild(make("option", (k ? "crossover parent #" : "parent #") + p)).value = String(p); });
    base.appendChild(make("option", "another candidate:")).value = "other";
    base.value = Array.from(base.options).some(o => o.value === keep) && keep ? keep : base.options[0].value;
    const other = base.value === "other" ? compareId : Number(base.value);
    const box = clear($("detail-diff"));
    const edit = clear($("detail-edit"));
    const text = d && d.text;
    if (other === null || other === undefined || isNaN(other)) box.appendChild(make("p", "choose a candidate to compare with (or shift-click one in the tree or table)", "note"));
    else {
      detailOf(other).then(o => {
        if (!o || o.text === null || text === null || text === undefined) { box.appendChild(make("p", "no text to compare (#" + other + " or this proposal has none)", "note")); return; }
        box.appendChild(make("h4", "#" + other + " → #" + R.id[row]));
        Evo.showDiff(box, Evo.unifiedDiff(o.text, text));
      });
    }
    const calls = (d && d.calls) || [];
    const last = calls.slice().reverse().find(c => c.edits || c.edit_error);
    edit.appendChild(make("h4", last ? "parsed edit (reply of call " + (calls.indexOf(last) + 1) + " of " + calls.length + ")" : "change recorded by the operator"));
    if (last && last.edits) last.edits.forEach(([search, replace], k) => {
      edit.appendChild(make("div", "edit " + (k + 1) + ": SEARCH", "note"));
      edit.appendChild(make("pre", search, "search"));
      edit.appendChild(make("div", "REPLACE", "note"));
      edit.appendChild(make("pre", replace, "replace"));
    });
    else if (last) edit.appendChild(make("pre", "the reply's edit could not be parsed: " + last.edit_error, "search"));
    else edit.appendChild(make("pre", (d && d.change) || "(none recorded)"));
  }
  function renderCalls(d) {
    const box = clear($("detail-calls"));
    const calls = (d && d.calls) || [];
    if (!calls.length) { box.appendChild(make("p", "No model call made this proposal (a seed, an import or an offline operator).", "note")); return; }
    calls.forEach((c, k) => {
      const div = box.appendChild(make("div", null, "call"));
      div.appendChild(make("div", "call " + (k + 1) + (k ? " (repair)" : "") + " · " + c.model + " · " + c.purpose + " · " + c.tokens_in + " in / " + c.tokens_out +
        " out tokens · " + fmt(c.latency_s, 3) + " s · " + money(c.cost), "call-head"));
      (c.messages || []).forEach(msg => {
        div.appendChild(make("div", msg.role, "role"));
        div.appendChild(make("pre", msg.content));
      });
      div.appendChild(make("div", "reply", "role"));
      if (c.error) div.appendChild(make("div", "error: " + c.error, "error"));
      if (c.reply !== null && c.reply !== undefined) div.appendChild(make("pre", c.reply));
    });
  }
  function renderAncestry(row) {
    const box = clear($("detail-ancestry"));
    const chain = [];
    let i = R.seq[row] !== null ? row : rowOf.get(R.parents[row][0]);
    const seen = new Set();
    while (i !== undefined && !seen.has(i)) { seen.add(i); chain.push(i); i = rowOf.get(R.parents[i][0]); }
    chain.reverse();
    if (R.seq[row] === null) box.appendChild(make("p", "#" + R.id[row] + " was not admitted; the ancestry of its parent:", "note"));
    const list = box.appendChild(make("ol", null, "ancestry"));
    chain.forEach((j, k) => {
      const li = list.appendChild(make("li"));
      const a = li.appendChild(make("a", "#" + R.id[j], "link"));
      a.addEventListener("click", () => select(R.id[j]));
      const prev = k ? chain[k - 1] : null;
      const change = prev !== null && statusName(j) === "valid" && statusName(prev) === "valid" ? " (" + Evo.delta(R.score[j], R.score[prev]) + ")" : "";
      li.appendChild(document.createTextNode(" " + statusName(j) + (R.score[j] !== null ? " " + fmt(R.score[j]) : "") + change + " · " + (R.operator[j] || "?") + (R.model[j] ? " · " + R.model[j] : "")));
      R.parents[j].slice(1).forEach(q => {
        li.appendChild(document.createTextNode(" × crossover parent "));
        const b = li.appendChild(make("a", "#" + q, "link"));
        b.addEventListener("click", () => select(q));
      });
    });
  }
  function setupDetail() {
    $("detail-tabs").addEventListener("click", ev => {
      const tab = ev.target.closest("button");
      if (!tab) return;
      document.querySelectorAll("#detail-tabs button").forEach(b => b.classList.toggle("active", b === tab));
      document.querySelectorAll("[data-pane]").forEach(p => { p.hidden = p.dataset.pane !== tab.dataset.tab; });
    });
    $("diff-form").addEventListener("submit", ev => {
      ev.preventDefault();
      const id = parseInt($("diff-with").value.replace("#", ""), 10);
      if (rowOf.has(id)) setCompare(id);
    });
    $("diff-base").addEventListener("change", () => { if (selectedRow !== null) detailOf(R.id[selectedRow]).then(d => renderDiff(selectedRow, d)); });
    document.querySelectorAll(".widen").forEach(b => b.addEventListener("click", () => {
      $(b.dataset.widen).classList.toggle("widened");
      window.dispatchEvent(new Event("resize"));
    }));
  }

  // ------------------------------------------------------------ charts

  let charts = {};
  // A valid candidate's score that can be the best: a copy's (kind "copy") is one sample of its original's mean.
  const scored = i => statusName(i) === "valid" && R.kind[i] !== "copy" && R.score[i] !== null;
  // The run's best (`run`) is the engine's, as it changed (`S.bests`, from RunReader.best_curve): with a
  // noisy evaluator, the best of those scored more than once, not the highest single score. An island's
  // is its highest score.
  function bestSoFar(rows, x, run) {
    const told = run ? S.bests : [], rowOf = run ? new Map(R.id.map((id, i) => [id, i])) : null;
    const xs = [], ys = [];
    let best = null, k = 0;
    rows.forEach(i => {
      while (k < told.length && told[k].seq <= R.seq[i]) best = R.score[rowOf.get(told[k++].id)];
      if (!run && scored(i) && (best === null || R.score[i] > best)) best = R.score[i];
      xs.push(x(i)); ys.push(best);
    });
    return [xs, ys];
  }
  function renderCharts() {
    const valid = admitted.filter(i => statusName(i) === "valid" && R.score[i] !== null);
    const seq = i => R.seq[i], minutes = i => R.t[i] / 60;
    const points = x => ({ name: "valid candidate", x: valid.map(x), y: valid.map(i => R.score[i]), ids: valid.map(i => R.id[i]), color: "rgba(59,91,219,0.4)", points: true });
    const best = x => { const [xs, ys] = bestSoFar(admitted, x, true); return { name: "best so far", x: xs, y: ys, color: "#e8590c", step: true, width: 2 }; };
    const vlines = S.events.filter(e => e.seq !== null).map(e => ({ x: e.seq, color: e.kind === "reset" ? "rgba(224,49,49,0.6)" : "rgba(120,120,120,0.45)" }));
    const chart = (id, series, opts) => {
      if (charts[id]) { charts[id].opts = Object.assign(charts[id].opts, opts); charts[id].set(series); }
      else charts[id] = new Evo.XYChart($(id), Object.assign({ series: series, onPick: select }, opts));
    };
    chart("best-seq", [points(seq), best(seq)], { xlabel: "admission", ylabel: "score", vlines: vlines });
    chart("best-island", islandList.map((isl, k) => {
      const [xs, ys] = bestSoFar(admitted.filter(i => R.island[i] === isl), seq);
      return { name: "island " + isl, x: xs, y: ys, color: Evo.PALETTE[k % Evo.PALETTE.length], step: true, width: 1.8 };
    }), { xlabel: "admission", ylabel: "best score" });
    chart("best-time", [points(minutes), best(minutes)], { xlabel: "minutes since start", ylabel: "score" });
    const P = S.models.picks, arms = Object.keys(P.share);
    $("picks-panel").hidden = arms.length < 2;
    $("islands-panel").classList.toggle("span2", arms.length < 2);
    if (arms.length >= 2) chart("models-picks", arms.map((a, k) => ({ name: a, x: P.x, y: P.share[a], color: Evo.PALETTE[k % Evo.PALETTE.length], step: true })),
      { xlabel: "proposal", ylabel: "share of last " + P.window, yRange: [0, 1] });
  }

  let eliteMap = null;
  function renderElites() {
    const E = S.elites, pick = $("elites-pick"), maps = E.maps;
    if (!maps.length) {
      $("elites").hidden = true;
      $("elites-note").textContent = "No MAP-Elites descriptors in this run.";
      return;
    }
    $("elites").hidden = false;
    if (maps.length > 1 && pick.options.length !== maps.length) {
      clear(pick);
      maps.forEach((m, k) => { pick.appendChild(make("option", m.x.name + (m.y ? " × " + m.y.name : ""))).value = k; });
      pick.hidden = false;
    }
    const m = maps[Number(pick.value || 0)] || maps[0];
    if (!eliteMap) eliteMap = new Evo.EliteMap($("elites"), select);
    eliteMap.set(m);
    const st = E.stats || {}, parts = [];
    parts.push(E.source === "engine" ? "the engine's archive: " + (E.kind || "") + (E.cells ? ", " + E.cells + " cells" : "") : "cells binned from admitted candidates' features");
    if (typeof st.filled === "number") parts.push(st.filled + " filled");
    if (typeof st.coverage === "number") parts.push("coverage " + (100 * st.coverage).toFixed(1) + "%");
    if (typeof st.qd_score === "number") parts.push("QD-score " + fmt(st.qd_score));
    if (m.type === "heatmap") {
      parts.push("grey cells are empty");
      [[m.x, m.seen_x], [m.y, m.seen_y]].forEach(([a, seen]) => {
        if (a && seen && (seen[0] < a.low || seen[1] > a.high)) parts.push(a.name + " seen " + fmt(seen[0], 4) + "–" + fmt(seen[1], 4) + " beyond its range " + fmt(a.low, 4) + "–" + fmt(a.high, 4) + ": such elites sit in the edge cells, marked with a red corner");
      });
    } else parts.push("each dot is one cell's elite at its real values" + (m.centres ? "; grey rings are the cells' centres (empty ones included)" : "") + "; the dashed box is the declared range");
    $("elites-note").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------ tables

  function renderTables() {
    const pops = new Map((S.islands || []).map(r => [r.island, r.size]));
    table($("islands-table"), ["island", "population", "admitted", "valid", "invalid", "screened", "best score", "best"],
      islandList.map(isl => {
        const rows = admitted.filter(i => R.island[i] === isl), count = s => rows.filter(i => statusName(i) === s).length;
        const best = rows.filter(scored).sort((a, b) => R.score[b] - R.score[a])[0];
        return { key: best === undefined ? null : R.id[best], cells: [isl, pops.has(isl) ? pops.get(isl) : null, rows.length, count("valid"), count("invalid"), count("screened"),
          best === undefined ? null : R.score[best], best === undefined ? "—" : "#" + R.id[best]] };
      }), id => { if (id !== null) select(id); });
    const c = S.run.counts, nov = S.novelty && typeof S.novelty === "object" ? S.novelty : {};
    $("novelty-note").textContent = "rejected before evaluation: " + c.rejected + " (" + c.near_duplicates + " near-duplicates, " + c.exact_copies + " exact copies)" +
      (nov.embedder ? " · novelty filter " + nov.embedder + (nov.checks !== undefined ? ", " + nov.checks + " checks" : "") + (nov.judged ? ", " + nov.judged + " judged by a model" : "") : "");
    const M = S.models;
    $("arms-panel").hidden = !M.arms.length;
    const bar = a => {
      const b = make("div", null, "bar");
      S.statuses.forEach(s => { if (a[s]) { const part = b.appendChild(make("span")); part.style.width = (100 * a[s] / a.proposals) + "%"; part.style.background = STATUS_COLOUR[s]; part.title = a[s] + " " + s; } });
      return b;
    };
    table($("models-table"), ["arm", "proposals", "valid", "invalid", "screened", "rejected", "failed", "improved", "mean reward", "cost", "outcomes"],
      M.arms.map(a => ({ cells: [a.arm, a.proposals, a.valid, a.invalid, a.screened, a.rejected, a.failed, a.improved, a.mean_reward, money(a.cost), bar(a)] })), null, [8, 9]);
    $("calls-box").hidden = !M.calls.length;
    table($("calls-table"), ["model", "purpose", "calls", "errors", "tokens in", "tokens out", "mean latency (s)", "cost ($)"],
      M.calls.map(c => ({ cells: [c.model, c.purpose, c.calls, c.errors || 0, c.tokens_in || 0, c.tokens_out || 0, c.latency_s, c.cost || 0] })));
    const bandit = M.bandit && typeof M.bandit === "object" ? (M.bandit.arms || M.bandit) : null;
    const armNames = bandit ? Object.keys(bandit).filter(k => bandit[k] && typeof bandit[k] === "object") : [];
    $("bandit-box").hidden = armNames.length < 2;
    if (armNames.length >= 2) {
      const cols = Array.from(new Set([].concat.apply([], armNames.map(k => Object.keys(bandit[k]).filter(c => typeof bandit[k][c] === "number")))));
      table(clear($("bandit")).appendChild(make("table", null, "table")), ["arm"].concat(cols),
        armNames.map(k => ({ cells: [k].concat(cols.map(c => typeof bandit[k][c] === "number" ? bandit[k][c] : null)) })));
    }
    $("config").textContent = S.run.config || "(no config.yaml in the run directory)";
    const meta = S.run.meta || {};
    table($("meta-table"), ["key", "value"], Object.keys(meta).map(k => ({ cells: [k, typeof meta[k] === "string" ? meta[k] : JSON.stringify(meta[k])] })));
  }

  // ------------------------------------------------------------ runs compared

  function renderCompare() {
    $("compare-view").hidden = false;
    $("run-name").textContent = S.runs.map(r => r.name).join(" vs ");
    const runs = S.runs, colour = k => Evo.PALETTE[k % Evo.PALETTE.length];
    table($("runs-table"), ["run", "problem", "admitted", "valid", "invalid", "screened", "rejected", "failed", "start score", "best score", "spend ($)", "tokens", "search time (s)"],
      runs.map(r => ({ cells: [r.name, r.problem || "", r.counts.admitted, r.counts.valid, r.counts.invalid, r.counts.screened, r.counts.rejected, r.counts.failed,
        r.seed_score, r.best_score, r.spend, r.tokens, r.elapsed_s] })));
    table($("differs-table"), ["key"].concat(runs.map(r => r.name)), Object.keys(S.differs).map(k => ({ cells: [k].concat(S.differs[k].map(v => v === null || v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v))) })));
    // several seeds of each setup: each against the first run's, seed by seed, with a 95% interval
    $("setups").hidden = !S.setups;
    if (S.setups) {
      table($("setups-table"), S.setups.rows[0], S.setups.rows.slice(1).map(cells => ({ cells })));
      $("setups-notes").textContent = S.setups.notes.join("; ");
    }
    const series = key => runs.map((r, k) => ({ name: r.name, x: r.curve[key], y: r.curve.best, color: colour(k), step: true, width: 2 }));
    new Evo.XYChart($("cmp-seq"), { series: series("seq"), xlabel: "admission", ylabel: "best score" });
    new Evo.XYChart($("cmp-spend"), { series: series("spend"), xlabel: "spend ($)", ylabel: "best score" });
    new Evo.XYChart($("cmp-time"), { series: series("t"), xlabel: "seconds since start", ylabel: "best score" });
    $("cmp-spend").closest(".panel").hidden = !runs.some(r => r.spend > 0);
    api.ready = true;
  }

  // ------------------------------------------------------------ wiring

  function renderAll() {
    index();
    treeBase = null;
    sorted = null;
    renderHeader();
    renderTable();
    return later().then(() => { renderCharts(); renderElites(); renderTables(); });
  }

  function poll() {
    const status = $("status"), started = performance.now();
    fetch("api/summary?since=" + encodeURIComponent(S.version), { cache: "no-store" })
      .then(r => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then(next => {
        status.className = "status";
        status.textContent = "live · updated " + new Date().toLocaleTimeString();
        if (next.unchanged) return null;
        const until = S.detailsUntil;
        S = next;
        S.detailsUntil = until;
        return fetchDetails(until).then(renderAll).then(() => { if (selectedRow !== null) { const id = R.id[selectedRow]; selectedRow = null; select(id); } });
      })
      .catch(err => {
        status.className = "status error";
        status.textContent = "live · cannot reach the viewer (" + (err.message || err) + ")";
      })
      .then(() => setTimeout(poll, Math.max(2500, 4 * (performance.now() - started))));
  }

  function start() {
    if (S.compare) { renderCompare(); return; }
    $("run-view").hidden = false;
    setupTable();
    setupTree();
    setupDetail();
    $("elites-pick").addEventListener("change", renderElites);
    api.select = select;
    api.drawn = () => tree.drawn().map(k => R.id[admitted[k]]);
    api.nodeScreen = id => {
      const row = rowOf.get(id);
      if (row === undefined || !nodeOf.has(row)) return null;
      tree.surface.drawNow();
      const [x, y] = tree.screen(nodeOf.get(row)), r = tree.surface.canvas.getBoundingClientRect();
      return [r.left + x, r.top + y, x >= 0 && y >= 0 && x <= r.width && y <= r.height];
    };
    api.tableIds = () => candTable.rows.map(i => R.id[i]);
    api.path = () => { const d = tree.d; return d.path ? { main: d.path.main.map(e => e.map(k => R.id[admitted[k]])), cross: d.path.cross.map(e => e.map(k => R.id[admitted[k]])) } : null; };
    api.view = () => Object.assign({}, tree.view);
    api.centre = id => tree.centre(nodeOf.get(rowOf.get(id)));
    api.shapes = () => Object.fromEntries(admitted.map((i, k) => [R.id[i], ["valid", "invalid", "screened"][tree.d.shape[k]]]));
    if (S.details) addChunks(S.details);
    delete S.details;
    const drawn = renderAll();
    const fromHash = /#c=(\d+)/.exec(location.hash);
    const first = fromHash ? parseInt(fromHash[1], 10) : S.run.best ? S.run.best.id : n ? R.id[n - 1] : null;
    const texts = LIVE ? fetchDetails(null) : later().then(openAll);
    const shown = first === null ? null : LIVE ? texts.then(() => select(first)) : select(first);
    Promise.all([drawn, shown]).then(() => {
      api.ready = true;
      if (LIVE) { $("status").textContent = "live"; setTimeout(poll, 2500); }
      return texts;
    }).then(() => { api.detailsReady = true; if (filters.q) applyFilters(); });
  }

  start();
})();
