// evoengine report: drawing on canvas with no library: line/point charts, MAP-Elites maps
// and the lineage tree. Labels are drawn as canvas text or set with textContent: nothing
// here ever reads markup.
(function () {
  "use strict";
  const Evo = window.Evo = window.Evo || {};

  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                   [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  // Island colours: none of them is the ancestry's red or the crossover's purple.
  Evo.PALETTE = ["#1971c2", "#2f9e44", "#f08c00", "#0c8599", "#8d6e63", "#74b816", "#495057",
                 "#15aabf", "#fab005", "#5c7cfa"];
  Evo.PATH = "#e03131";   // the selected candidate's main-parent line
  Evo.CROSS = "#7048e8";  // its crossover (second) parents

  // Viridis in 64 steps (few distinct colours: the tree draws each colour in one pass).
  const RAMP = [];
  for (let k = 0; k < 64; k++) {
    const p = k / 63 * (VIRIDIS.length - 1), i = Math.min(Math.floor(p), VIRIDIS.length - 2), f = p - i;
    const a = VIRIDIS[i], b = VIRIDIS[i + 1];
    RAMP.push("rgb(" + Math.round(a[0] + (b[0] - a[0]) * f) + "," + Math.round(a[1] + (b[1] - a[1]) * f) + "," +
      Math.round(a[2] + (b[2] - a[2]) * f) + ")");
  }
  Evo.viridis = function (t) { return RAMP[t >= 0 ? Math.min(63, Math.round(t * 63)) : 0]; };

  function make(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  Evo.make = make;
  Evo.clear = function (node) { while (node.firstChild) node.removeChild(node.firstChild); return node; };

  Evo.fmt = function (x, digits) {
    if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) return "—";
    if (typeof x !== "number") return String(x);
    return Number(x.toPrecision(digits || 6)).toString();
  };

  function ticks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= count) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }
  Evo.ticks = ticks;

  // A canvas that fills `box` at the screen's pixel ratio, redrawn by `paint(ctx, w, h)`.
  function Surface(box, height, paint) {
    this.box = box;
    this.canvas = box.appendChild(make("canvas"));
    this.canvas.style.height = height + "px";
    this.height = height;
    this.paint = paint;
    this.pending = false;
    const tip = box.appendChild(make("div", null, "tip"));
    tip.hidden = true;
    this.tip = tip;
    if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(box);
  }
  Surface.prototype.draw = function () {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.drawNow(); });
  };
  Surface.prototype.drawNow = function () {
    const w = this.canvas.clientWidth || this.box.clientWidth, h = this.height, r = window.devicePixelRatio || 1;
    if (!w) return;
    if (this.canvas.width !== Math.round(w * r) || this.canvas.height !== Math.round(h * r)) {
      this.canvas.width = Math.round(w * r);
      this.canvas.height = Math.round(h * r);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    this.w = w;
    this.paint(ctx, w, h);
  };
  Surface.prototype.mouse = function (ev) {
    const rect = this.canvas.getBoundingClientRect();
    return [ev.clientX - rect.left, ev.clientY - rect.top];
  };
  Surface.prototype.showTip = function (x, y, lines) {
    const tip = this.tip;
    if (!lines) { tip.hidden = true; return; }
    Evo.clear(tip);
    lines.forEach(l => tip.appendChild(make("div", l)));
    tip.hidden = false;
    tip.style.left = Math.min(x + 12, Math.max(0, this.w - tip.offsetWidth - 4)) + "px";
    tip.style.top = (y + 12) + "px";
  };
  Evo.Surface = Surface;

  function legend(box, items) {
    let node = box.querySelector(".legend");
    if (!node) node = box.appendChild(make("div", null, "legend"));
    Evo.clear(node);
    items.forEach(it => {
      const item = node.appendChild(make("span", null, "item"));
      const key = item.appendChild(make("span", null, "key " + (it.shape || "line")));
      key.style.setProperty("--c", it.color);
      item.appendChild(make("span", it.name));
    });
    return node;
  }
  Evo.legend = legend;

  function axes(ctx, m, w, h, xs, ys, xlabel, ylabel) {
    ctx.strokeStyle = "#e9ecef";
    ctx.fillStyle = "#6b7280";
    ctx.lineWidth = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ticks(xs.lo, xs.hi, Math.max(2, Math.floor((w - m.l - m.r) / 80))).forEach(v => {
      const px = xs.px(v);
      ctx.beginPath(); ctx.moveTo(px, m.t); ctx.lineTo(px, h - m.b); ctx.stroke();
      ctx.fillText(Evo.fmt(v, 4), px, h - m.b + 4);
    });
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ticks(ys.lo, ys.hi, Math.max(2, Math.floor((h - m.t - m.b) / 40))).forEach(v => {
      const py = ys.px(v);
      ctx.beginPath(); ctx.moveTo(m.l, py); ctx.lineTo(w - m.r, py); ctx.stroke();
      ctx.fillText(Evo.fmt(v, 4), m.l - 4, py);
    });
    ctx.strokeStyle = "#adb5bd";
    ctx.strokeRect(m.l, m.t, w - m.l - m.r, h - m.t - m.b);
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    if (xlabel) ctx.fillText(xlabel, (m.l + w - m.r) / 2, h - 1);
    if (ylabel) {
      ctx.save(); ctx.translate(11, (m.t + h - m.b) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(ylabel, 0, 0); ctx.restore();
    }
  }

  function scale(lo, hi, a, b) {
    if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
    return { lo: lo, hi: hi, px: v => a + (v - lo) / (hi - lo) * (b - a), val: p => lo + (p - a) / (b - a) * (hi - lo) };
  }

  // A chart of series {name, x, y, color, step, points, dash, ids}: wheel zooms x, drag pans,
  // double click resets; hover names the nearest point, a click on a point with an id picks it.
  Evo.XYChart = function (box, opts) {
    const chart = this;
    this.opts = opts;
    this.view = null;
    const m = { l: 58, r: 12, t: 8, b: 32 };
    this.surface = new Surface(box, opts.height || 260, (ctx, w, h) => chart.paint(ctx, w, h, m));
    const c = this.surface.canvas;
    let drag = null;
    c.addEventListener("wheel", ev => {
      if (!chart.xs) return;
      ev.preventDefault();
      const [px] = chart.surface.mouse(ev), at = chart.xs.val(px), f = ev.deltaY > 0 ? 1.25 : 0.8;
      const v = chart.view || [chart.xs.lo, chart.xs.hi];
      chart.view = [at - (at - v[0]) * f, at + (v[1] - at) * f];
      chart.surface.draw();
    }, { passive: false });
    c.addEventListener("mousedown", ev => { drag = { x: chart.surface.mouse(ev)[0], view: [chart.xs.lo, chart.xs.hi], moved: false }; });
    window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
    c.addEventListener("mousemove", ev => {
      const [px, py] = chart.surface.mouse(ev);
      if (drag && ev.buttons) {
        const d = chart.xs.val(drag.x) - chart.xs.val(px);
        if (Math.abs(px - drag.x) > 3) drag.moved = true;
        chart.view = [drag.view[0] + d, drag.view[1] + d];
        chart.surface.draw();
        return;
      }
      const hit = chart.nearest(px, py);
      chart.surface.showTip(px, py, hit && [hit.s.name, (opts.xlabel || "x") + " " + Evo.fmt(hit.x) + " · " +
        (opts.ylabel || "y") + " " + Evo.fmt(hit.y) + (hit.id !== undefined ? " · #" + hit.id : "")]);
    });
    c.addEventListener("mouseleave", () => chart.surface.showTip(0, 0, null));
    c.addEventListener("dblclick", () => { chart.view = null; chart.surface.draw(); });
    c.addEventListener("click", ev => {
      if (drag && drag.moved) return;
      const [px, py] = chart.surface.mouse(ev), hit = chart.nearest(px, py);
      if (hit && hit.id !== undefined && opts.onPick) opts.onPick(hit.id);
    });
    this.set(opts.series);
  };
  Evo.XYChart.prototype.set = function (series) {
    this.series = series;
    legend(this.surface.box, series.filter(s => s.name).map(s => ({ name: s.name, color: s.color, shape: s.points && !s.line ? "dot" : s.dash ? "dash" : "line" })));
    this.surface.draw();
  };
  Evo.XYChart.prototype.paint = function (ctx, w, h, m) {
    let xlo = Infinity, xhi = -Infinity, ylo = Infinity, yhi = -Infinity;
    this.series.forEach(s => s.x.forEach((x, k) => {
      const y = s.y[k];
      if (x === null || y === null || y === undefined) return;
      if (x < xlo) xlo = x; if (x > xhi) xhi = x;
      if (y < ylo) ylo = y; if (y > yhi) yhi = y;
    }));
    if (xlo === Infinity) { xlo = 0; xhi = 1; ylo = 0; yhi = 1; }
    if (this.opts.yRange) { ylo = this.opts.yRange[0]; yhi = this.opts.yRange[1]; }
    const pad = (yhi - ylo) * 0.05 || 0.5;
    const v = this.view || [xlo, xhi];
    const xs = this.xs = scale(v[0], v[1], m.l, w - m.r);
    const ys = this.ys = scale(ylo - pad, yhi + pad, h - m.b, m.t);
    axes(ctx, m, w, h, xs, ys, this.opts.xlabel, this.opts.ylabel);
    ctx.save();
    ctx.beginPath(); ctx.rect(m.l, m.t, w - m.l - m.r, h - m.t - m.b); ctx.clip();
    (this.opts.vlines || []).forEach(l => {
      ctx.strokeStyle = l.color; ctx.setLineDash([3, 3]);
      ctx.beginPath(); ctx.moveTo(xs.px(l.x), m.t); ctx.lineTo(xs.px(l.x), h - m.b); ctx.stroke();
    });
    ctx.setLineDash([]);
    this.series.forEach(s => {
      ctx.strokeStyle = ctx.fillStyle = s.color;
      ctx.lineWidth = s.width || 1.5;
      ctx.setLineDash(s.dash ? [5, 4] : []);
      if (s.points) {
        const r = s.x.length > 2000 ? 1.5 : 2.5;
        s.x.forEach((x, k) => { if (s.y[k] !== null) ctx.fillRect(xs.px(x) - r, ys.px(s.y[k]) - r, 2 * r, 2 * r); });
      }
      if (s.points && !s.line) return;
      ctx.beginPath();
      let open = false, last = null;
      s.x.forEach((x, k) => {
        const y = s.y[k];
        if (y === null || y === undefined) { open = false; return; }
        const px = xs.px(x), py = ys.px(y);
        if (!open) ctx.moveTo(px, py);
        else if (s.step) { ctx.lineTo(px, last); ctx.lineTo(px, py); } else ctx.lineTo(px, py);
        open = true; last = py;
      });
      if (s.step && open && s.extend) ctx.lineTo(xs.px(xs.hi), last);
      ctx.stroke();
    });
    ctx.restore();
  };
  Evo.XYChart.prototype.nearest = function (px, py) {
    if (!this.xs) return null;
    let best = null, bestD = 64;
    this.series.forEach(s => s.x.forEach((x, k) => {
      const y = s.y[k];
      if (y === null || y === undefined) return;
      const dx = this.xs.px(x) - px, dy = this.ys.px(y) - py, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = { s: s, x: x, y: y, id: s.ids ? s.ids[k] : undefined }; }
    }));
    return best;
  };

  // ------------------------------------------------------------ MAP-Elites

  function edges(a) {
    const out = [];
    for (let k = 0; k <= a.bins; k++) {
      out.push(a.scale === "log" ? Math.pow(2, Math.log2(a.low) + (Math.log2(a.high) - Math.log2(a.low)) * k / a.bins)
                                 : a.low + (a.high - a.low) * k / a.bins);
    }
    return out;
  }

  // A grid map: every cell drawn, empty ones light; a cell whose elite lies beyond the
  // declared range carries a mark. A scatter map: elites at their real values, axes wide
  // enough for all of them, the declared range dashed.
  Evo.EliteMap = function (box, onPick) {
    const map = this;
    this.m = { l: 62, r: 74, t: 10, b: 40 };
    this.surface = new Surface(box, 300, (ctx, w, h) => map.paint(ctx, w, h));
    const c = this.surface.canvas;
    c.addEventListener("mousemove", ev => {
      const [px, py] = map.surface.mouse(ev), hit = map.hit(px, py);
      map.surface.showTip(px, py, hit && hit.lines);
    });
    c.addEventListener("mouseleave", () => map.surface.showTip(0, 0, null));
    c.addEventListener("click", ev => {
      const [px, py] = map.surface.mouse(ev), hit = map.hit(px, py);
      if (hit && hit.id !== null && hit.id !== undefined) onPick(hit.id);
    });
  };
  Evo.EliteMap.prototype.set = function (data) { this.data = data; this.surface.draw(); };
  Evo.EliteMap.prototype.range = function () {
    const d = this.data, vals = d.type === "heatmap" ? [].concat.apply([], d.best).filter(v => v !== null) : d.score;
    return vals.length ? [Math.min.apply(null, vals), Math.max.apply(null, vals)] : [0, 1];
  };
  Evo.EliteMap.prototype.paint = function (ctx, w, h) {
    const d = this.data, m = this.m;
    if (!d) return;
    const [lo, hi] = this.range(), colour = v => Evo.viridis(hi > lo ? (v - lo) / (hi - lo) : 0.5);
    ctx.textBaseline = "top";
    if (d.type === "heatmap") {
      const nx = d.x.bins, ny = d.y ? d.y.bins : 1;
      const cw = (w - m.l - m.r) / nx, ch = (h - m.t - m.b) / ny;
      this.cell = { cw: cw, ch: ch, nx: nx, ny: ny };
      for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) {
        const v = d.best[j][i], x = m.l + i * cw, y = h - m.b - (j + 1) * ch;
        ctx.fillStyle = v === null ? "#f1f3f5" : colour(v);
        ctx.fillRect(x, y, cw, ch);
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.strokeRect(x + 0.5, y + 0.5, cw - 1, ch - 1);
        if (d.outside[j][i]) {  // a corner mark: this elite lies beyond the declared range
          ctx.fillStyle = "#e03131";
          ctx.beginPath(); ctx.moveTo(x + cw - 1, y + 1); ctx.lineTo(x + cw - 1, y + 10); ctx.lineTo(x + cw - 10, y + 1); ctx.fill();
        }
      }
      ctx.fillStyle = "#6b7280"; ctx.textAlign = "center";
      const ex = edges(d.x), every = Math.max(1, Math.ceil(nx / Math.max(1, (w - m.l - m.r) / 50)));
      ex.forEach((v, k) => { if (k % every === 0 || k === nx) ctx.fillText(Evo.fmt(v, 3), m.l + k * cw, h - m.b + 3); });
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      if (d.y) {
        const ey = edges(d.y), everyY = Math.max(1, Math.ceil(ny / Math.max(1, (h - m.t - m.b) / 22)));
        ey.forEach((v, k) => { if (k % everyY === 0 || k === ny) ctx.fillText(Evo.fmt(v, 3), m.l - 4, h - m.b - k * ch); });
      }
    } else {
      const cx = (d.centres || []).map(c => c[0]), cy = (d.centres || []).map(c => c[1]);
      const xs = d.px.concat([d.x.low, d.x.high], cx), ys = d.py.concat(d.y ? [d.y.low, d.y.high] : d.py, cy);
      const sx = scale(Math.min.apply(null, xs), Math.max.apply(null, xs), m.l + 6, w - m.r - 6);
      const sy = scale(Math.min.apply(null, ys), Math.max.apply(null, ys), h - m.b - 6, m.t + 6);
      this.sx = sx; this.sy = sy;
      axes(ctx, m, w, h, sx, sy, null, null);
      if (d.y) {
        ctx.setLineDash([4, 3]); ctx.strokeStyle = "#868e96";
        ctx.strokeRect(sx.px(d.x.low), sy.px(d.y.high), sx.px(d.x.high) - sx.px(d.x.low), sy.px(d.y.low) - sy.px(d.y.high));
        ctx.setLineDash([]);
      }
      ctx.strokeStyle = "#ced4da";  // every cell's centre: the empty ones stay visible
      (d.centres || []).forEach(c => { ctx.beginPath(); ctx.arc(sx.px(c[0]), sy.px(c[1]), 3, 0, 2 * Math.PI); ctx.stroke(); });
      d.px.forEach((x, k) => {
        ctx.fillStyle = colour(d.score[k]); ctx.strokeStyle = "#343a40";
        ctx.beginPath(); ctx.arc(sx.px(x), sy.px(d.py[k]), 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      });
    }
    ctx.fillStyle = "#343a40"; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.fillText(d.x.name + (d.x.scale === "log" ? " (log)" : ""), (m.l + w - m.r) / 2, h - 2);
    ctx.save(); ctx.translate(12, (m.t + h - m.b) / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText(d.y ? d.y.name : d.type === "heatmap" ? "" : "score", 0, 0); ctx.restore();
    // the colour bar, in its own margin
    const bx = w - m.r + 16, bh = h - m.t - m.b;
    for (let k = 0; k < bh; k++) { ctx.fillStyle = Evo.viridis(1 - k / bh); ctx.fillRect(bx, m.t + k, 12, 1); }
    ctx.fillStyle = "#6b7280"; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    ctx.fillText(Evo.fmt(hi, 4), bx + 15, m.t + 5);
    ctx.fillText(Evo.fmt(lo, 4), bx + 15, m.t + bh - 5);
  };
  Evo.EliteMap.prototype.hit = function (px, py) {
    const d = this.data, m = this.m;
    if (!d) return null;
    if (d.type === "heatmap") {
      const c = this.cell, h = this.surface.height;
      if (!c) return null;
      const i = Math.floor((px - m.l) / c.cw), j = Math.floor((h - m.b - py) / c.ch);
      if (i < 0 || j < 0 || i >= c.nx || j >= c.ny) return null;
      const ex = edges(d.x), ey = d.y ? edges(d.y) : null, v = d.best[j][i];
      const where = d.x.name + " " + Evo.fmt(ex[i], 3) + "–" + Evo.fmt(ex[i + 1], 3) +
        (ey ? " · " + d.y.name + " " + Evo.fmt(ey[j], 3) + "–" + Evo.fmt(ey[j + 1], 3) : "");
      return { id: d.best_id[j][i], lines: v === null ? [where, "empty cell"] : [where, "best #" + d.best_id[j][i] +
        " score " + Evo.fmt(v), d.count[j][i] + " in this cell" + (d.outside[j][i] ? " · its elite lies outside the declared range" : "")] };
    }
    let best = null, bestD = 64;
    d.px.forEach((x, k) => {
      const dx = this.sx.px(x) - px, dy = this.sy.px(d.py[k]) - py, dd = dx * dx + dy * dy;
      if (dd < bestD) { bestD = dd; best = k; }
    });
    return best === null ? null : { id: d.id[best], lines: ["elite #" + d.id[best] + " score " + Evo.fmt(d.score[best]),
      d.x.name + " " + Evo.fmt(d.px[best]) + " · " + (d.y ? d.y.name : "score") + " " + Evo.fmt(d.py[best])] };
  };

  // ------------------------------------------------------------ the lineage tree

  // Nodes at (x, y) in world units; the view maps a world rectangle onto the canvas. Wheel
  // zooms around the pointer (shift: only y, alt: only x), drag pans, click picks a node.
  Evo.Tree = function (box, opts) {
    const tree = this;
    this.opts = opts;
    this.n = 0;
    this.view = null;
    this.surface = new Surface(box, opts.height || 560, (ctx, w, h) => tree.paint(ctx, w, h));
    const c = this.surface.canvas;
    let drag = null;
    c.addEventListener("wheel", ev => {
      if (!tree.view) return;
      ev.preventDefault();
      const [px, py] = tree.surface.mouse(ev), f = ev.deltaY > 0 ? 1.25 : 0.8, v = tree.view;
      const wx = tree.wx(px), wy = tree.wy(py);
      if (!ev.shiftKey) { v.x0 = wx - (wx - v.x0) * f; v.x1 = wx + (v.x1 - wx) * f; }
      if (!ev.altKey) { v.y0 = wy - (wy - v.y0) * f; v.y1 = wy + (v.y1 - wy) * f; }
      tree.surface.draw();
    }, { passive: false });
    c.addEventListener("mousedown", ev => {
      const [px, py] = tree.surface.mouse(ev);
      drag = { px: px, py: py, v: Object.assign({}, tree.view), moved: false };
    });
    window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
    c.addEventListener("mousemove", ev => {
      const [px, py] = tree.surface.mouse(ev);
      if (drag && ev.buttons) {
        if (Math.abs(px - drag.px) + Math.abs(py - drag.py) > 3) drag.moved = true;
        const dx = (px - drag.px) / tree.sx, dy = (py - drag.py) / tree.sy, v = tree.view;
        v.x0 = drag.v.x0 - dx; v.x1 = drag.v.x1 - dx; v.y0 = drag.v.y0 - dy; v.y1 = drag.v.y1 - dy;
        tree.surface.draw();
        return;
      }
      const i = tree.pick(px, py);
      tree.surface.showTip(px, py, i === null ? null : opts.describe(i));
      c.style.cursor = i === null ? "grab" : "pointer";
    });
    c.addEventListener("mouseleave", () => tree.surface.showTip(0, 0, null));
    c.addEventListener("click", ev => {
      if (drag && drag.moved) return;
      const [px, py] = tree.surface.mouse(ev), i = tree.pick(px, py);
      if (i !== null) opts.onPick(i, ev.shiftKey || ev.altKey || ev.metaKey || ev.ctrlKey);
    });
  };
  const T = Evo.Tree.prototype;
  // d: {x, y (world positions), parent (index or -1), others (index lists), crosses (bool),
  //     colour (css per node), shape (0 circle, 1 cross for invalid, 2 diamond for screened),
  //     shown (bool per node: matches the filters), path: {nodes: Set, main: [[a, b]], cross: [[a, b]]}, selected}
  T.set = function (d) { this.d = d; this.n = d.x.length; if (!this.view) this.fit(); this.surface.draw(); };
  T.fit = function (only) {
    const d = this.d;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < this.n; i++) {
      if (only && !only.has(i)) continue;
      const x = d.x[i], y = d.y[i];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (x0 === Infinity) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
    const px = Math.max(0.5, (x1 - x0) * 0.03), py = Math.max(0.5, (y1 - y0) * 0.03);
    this.view = { x0: x0 - px, x1: x1 + px, y0: y0 - py, y1: y1 + py };
    this.surface.draw();
  };
  T.centre = function (i) {
    const v = this.view, w = v.x1 - v.x0, h = v.y1 - v.y0, x = this.d.x[i], y = this.d.y[i];
    const hh = Math.min(h, 40), ww = Math.min(w, 12);  // close enough to tell neighbours apart
    this.view = { x0: x - ww / 2, x1: x + ww / 2, y0: y - hh / 2, y1: y + hh / 2 };
    this.surface.draw();
  };
  T.px = function (x) { return this.m + (x - this.view.x0) * this.sx; };
  T.py = function (y) { return this.m + (y - this.view.y0) * this.sy; };
  T.wx = function (px) { return this.view.x0 + (px - this.m) / this.sx; };
  T.wy = function (py) { return this.view.y0 + (py - this.m) / this.sy; };
  T.screen = function (i) { return [this.px(this.d.x[i]), this.py(this.d.y[i])]; };
  T.pick = function (px, py) {
    if (!this.n || !this.sx) return null;
    let best = null, bestD = Math.max(36, this.r * this.r * 2);
    for (let i = 0; i < this.n; i++) {
      if (!this.visible(i)) continue;
      const dx = this.px(this.d.x[i]) - px, dy = this.py(this.d.y[i]) - py, dd = dx * dx + dy * dy;
      if (dd < bestD) { bestD = dd; best = i; }
    }
    return best;
  };
  T.visible = function (i) { return this.d.shown[i] && (!this.d.only || this.d.only.has(i)); };
  T.drawn = function () {
    const out = [];
    for (let i = 0; i < this.n; i++) if (this.visible(i)) out.push(i);
    return out;
  };
  T.paint = function (ctx, w, h) {
    const d = this.d;
    if (!d || !this.view) return;
    this.m = 12;
    const v = this.view;
    this.sx = (w - 2 * this.m) / (v.x1 - v.x0);
    this.sy = (h - 2 * this.m) / (v.y1 - v.y0);
    const r = this.r = Math.max(1.6, Math.min(6, 0.4 * this.sy, 0.25 * this.sx));
    const n = this.n, X = i => this.px(d.x[i]), Y = i => this.py(d.y[i]);
    const show = i => this.visible(i);
    // An edge is an elbow: along the parent's row, then down to the child. With many nodes
    // its three segments are drawn as 1-px rectangles (far cheaper to raster than stroked
    // paths), solid; only edges that cross the view are drawn at all.
    const dense = n > 3000;
    const line = (style, width, dash, pairs) => {
      const rects = dense && width === 1;
      ctx.strokeStyle = ctx.fillStyle = style; ctx.lineWidth = width; ctx.setLineDash(dash);
      ctx.beginPath();
      pairs.forEach(([a, b]) => {
        const xa = X(a), xb = X(b), ya = Y(a), yb = Y(b);
        if ((xa < 0 && xb < 0) || (xa > w && xb > w) || (ya < 0 && yb < 0) || (ya > h && yb > h)) return;
        const mid = xb - Math.min((xb - xa) / 2, 8);
        if (rects) {
          ctx.fillRect(Math.min(xa, mid), ya - 0.5, Math.abs(mid - xa), 1);
          ctx.fillRect(mid - 0.5, Math.min(ya, yb), 1, Math.abs(yb - ya));
          ctx.fillRect(Math.min(mid, xb), yb - 0.5, Math.abs(xb - mid), 1);
        } else {
          ctx.moveTo(xa, ya); ctx.lineTo(mid, ya); ctx.lineTo(mid, yb); ctx.lineTo(xb, yb);
        }
      });
      if (!rects) ctx.stroke();
    };
    const plain = [], migrate = [], second = [];
    for (let i = 0; i < n; i++) {
      if (!show(i)) continue;
      const p = d.parent[i];
      if (p >= 0 && show(p)) (d.crosses[i] ? migrate : plain).push([p, i]);
      d.others[i].forEach(q => { if (show(q)) second.push([q, i]); });
    }
    line("#ced4da", 1, [], plain);
    line("#91a7ff", 1, [4, 3], migrate);
    line(dense ? "rgba(112,72,232,0.15)" : "rgba(112,72,232,0.35)", 1, [1, 3], second);
    const path = d.path;
    if (path) {
      line(Evo.CROSS, 2.5, [6, 3], path.cross);
      line(Evo.PATH, 3, [], path.main);
    }
    ctx.setLineDash([]);
    const faded = [];
    for (let i = 0; i < n; i++) if (!d.shown[i] && (!d.only || d.only.has(i))) faded.push(i);
    ctx.fillStyle = "rgba(173,181,189,0.35)";
    faded.forEach(i => { ctx.fillRect(X(i) - 1, Y(i) - 1, 2, 2); });
    const groups = new Map();  // colour -> shape -> node indices: one path per group
    for (let i = 0; i < n; i++) {
      if (!show(i)) continue;
      const x = X(i), y = Y(i);
      if (x < -10 || y < -10 || x > w + 10 || y > h + 10) continue;
      let g = groups.get(d.colour[i]);
      if (!g) groups.set(d.colour[i], g = [[], [], []]);
      g[d.shape[i]].push(i);
    }
    ctx.lineWidth = 1.5;
    groups.forEach((g, colour) => {
      ctx.fillStyle = ctx.strokeStyle = colour;
      if (g[0].length && r < 3) {  // valid: a disc, or a square where nodes are small (cheaper to draw)
        g[0].forEach(i => ctx.fillRect(X(i) - r, Y(i) - r, 2 * r, 2 * r));
      } else if (g[0].length) {
        ctx.beginPath();
        g[0].forEach(i => { const x = X(i), y = Y(i); ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); });
        ctx.fill();
      }
      if (g[1].length) {  // invalid: a cross
        ctx.beginPath();
        g[1].forEach(i => { const x = X(i), y = Y(i); ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r); });
        ctx.stroke();
      }
      if (g[2].length) {  // screened by the gate: a hollow diamond
        ctx.beginPath();
        g[2].forEach(i => { const x = X(i), y = Y(i); ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath(); });
        ctx.stroke();
      }
    });
    if (path) {
      ctx.lineWidth = 2;
      path.nodes.forEach(i => {
        if (!show(i)) return;
        ctx.strokeStyle = path.crossNodes.has(i) ? Evo.CROSS : Evo.PATH;
        ctx.beginPath(); ctx.arc(X(i), Y(i), r + 2.5, 0, 2 * Math.PI); ctx.stroke();
      });
    }
    if (d.selected !== null && d.selected !== undefined && d.selected >= 0) {
      const x = X(d.selected), y = Y(d.selected);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 2.5;
      ctx.beginPath(); ctx.arc(x, y, r + 5, 0, 2 * Math.PI); ctx.stroke();
    }
  };
})();
