"use strict";
// The trade-off chart of the `hub browse` page: a scatter plot drawn as inline SVG, with the
// Pareto front marked. Knows nothing of backbones: page.js gives it points and labels.
const hubChart = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    return node;
  }
  const palette = ["#1f77b4", "#e8710a", "#2ca02c", "#9467bd", "#8c564b", "#d62789", "#17becf", "#7f7f7f"];
  const radius = (m) => (m == null ? 4 : 2.5 + 0.9 * Math.sqrt(m));

  function paretoFront(points, lowerBetter) {
    const sorted = points.slice().sort((a, b) => (lowerBetter ? a.x - b.x : b.x - a.x) || b.y - a.y);
    const front = [];
    let best = -Infinity;
    for (const p of sorted) if (p.y > best) { front.push(p); best = p.y; }
    return front;
  }
  // a label box that overlaps none placed so far: the first free of a few vertical offsets
  function place(placed, x, y, w) {
    const free = (b) => placed.every((o) => b.x + w < o.x || o.x + o.w < b.x || b.y + 2 < o.y - 11 || o.y + 2 < b.y - 11);
    for (const dy of [0, 11, -11, 22, -22, 33]) {
      const b = { x, y: y + dy, w };
      if (free(b)) { placed.push(b); return b; }
    }
    const b = { x, y, w };
    placed.push(b);
    return b;
  }
  function linearTicks(lo, hi, n) {
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(+v.toFixed(10));
    return ticks;
  }
  function logTicks(lo, hi) {
    const ticks = [];
    for (let d = Math.floor(Math.log10(lo)); d <= Math.ceil(Math.log10(hi)); d++) {
      for (const m of [1, 2, 5]) { const v = m * Math.pow(10, d); if (v >= lo && v <= hi) ticks.push(v); }
    }
    return ticks;
  }
  const tickText = (v) => (Math.abs(v) >= 1000 ? (v / 1000) + "k" : String(+v.toPrecision(3)));

  /**
   * Draw points into container as an SVG scatter plot.
   * points: [{name, x, y, params_m, group}]; opts: {xLabel, yLabel, lowerXBetter, groups, onSelect}.
   * Point area grows with params_m, colour by group (in the order of opts.groups), the Pareto
   * front (best y for its x; lower x better when opts.lowerXBetter) dashed and labelled; x is
   * on a log scale when it spans more than a factor of 20. A click on a point calls onSelect(name).
   */
  function draw(container, points, opts) {
    const colour = (g) => palette[Math.max(0, opts.groups.indexOf(g)) % palette.length];
    const W = 960, H = 440, m = { l: 58, r: 150, t: 16, b: 46 };
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": opts.yLabel + " against " + opts.xLabel });
    if (!points.length) {
      root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
                      "No backbone in the list has both values."));
      container.replaceChildren(root);
      return;
    }
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    const log = x1 / x0 > 20;
    if (log) { x0 /= 1.3; x1 *= 1.3; } else { const pad = (x1 - x0) * 0.06 || Math.abs(x0) * 0.1 || 1; x0 = Math.max(0, x0 - pad); x1 += pad; }
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    const ypad = (y1 - y0) * 0.08 || 1; y0 -= ypad; y1 += ypad;
    const pw = W - m.l - m.r, ph = H - m.t - m.b;
    const sx = (v) => m.l + pw * (log ? Math.log(v / x0) / Math.log(x1 / x0) : (v - x0) / (x1 - x0));
    const sy = (v) => m.t + ph * (1 - (v - y0) / (y1 - y0));

    const axes = svg("g", { class: "axis" });
    for (const t of log ? logTicks(x0, x1) : linearTicks(x0, x1, 8)) {
      axes.append(svg("line", { x1: sx(t), x2: sx(t), y1: m.t, y2: m.t + ph, class: "grid" }),
                  svg("text", { x: sx(t), y: m.t + ph + 15, "text-anchor": "middle" }, tickText(t)));
    }
    for (const t of linearTicks(y0, y1, 6)) {
      axes.append(svg("line", { x1: m.l, x2: m.l + pw, y1: sy(t), y2: sy(t), class: "grid" }),
                  svg("text", { x: m.l - 6, y: sy(t) + 4, "text-anchor": "end" }, tickText(t)));
    }
    axes.append(svg("path", { d: "M" + m.l + "," + m.t + "V" + (m.t + ph) + "H" + (m.l + pw), fill: "none" }),
                svg("text", { x: m.l + pw / 2, y: H - 8, "text-anchor": "middle", class: "axis-label" }, opts.xLabel + (log ? " (log scale)" : "")),
                svg("text", { x: 14, y: m.t + ph / 2, "text-anchor": "middle", class: "axis-label",
                              transform: "rotate(-90 14 " + (m.t + ph / 2) + ")" }, opts.yLabel));
    root.append(axes);

    const front = paretoFront(points, opts.lowerXBetter);
    const onFront = new Set(front.map((p) => p.name));
    const line = front.slice().sort((a, b) => a.x - b.x).map((p) => sx(p.x).toFixed(1) + "," + sy(p.y).toFixed(1));
    if (line.length > 1) root.append(svg("polyline", { points: line.join(" "), class: "front" }));
    const dots = svg("g", { class: "points" }), labels = svg("g", { class: "labels" });
    const labelAll = points.length <= 15;
    const placed = [];
    for (const p of points.slice().sort((a, b) => (b.params_m || 0) - (a.params_m || 0))) {
      const pareto = onFront.has(p.name), r = radius(p.params_m);
      const c = svg("circle", { cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: r.toFixed(1), fill: colour(p.group),
                                class: "point" + (pareto ? " pareto" : ""), "data-name": p.name });
      c.append(svg("title", {}, p.name + ": " + opts.yLabel.split(" (")[0] + " " + p.y.toFixed(1) + ", " +
                    opts.xLabel.split(" (")[0] + " " + tickText(p.x) + ", " + (p.params_m == null ? "?" : p.params_m.toFixed(1)) + " M params" +
                    (pareto ? " (Pareto front)" : "")));
      c.addEventListener("click", () => opts.onSelect(p.name));
      dots.append(c);
      if (pareto || labelAll) {
        const w = 6.3 * p.name.length, right = sx(p.x) + r + 3;  // left of the point near the legend
        const at = place(placed, right + w > m.l + pw + 12 ? sx(p.x) - r - 3 - w : right, sy(p.y) + 3.5, w);
        labels.append(svg("text", { x: at.x.toFixed(1), y: at.y.toFixed(1),
                                    class: "label" + (pareto ? " pareto" : "") }, p.name));
      }
    }
    root.append(dots, labels);

    const legend = svg("g", { class: "legend", transform: "translate(" + (W - m.r + 16) + "," + (m.t + 6) + ")" });
    let ly = 0;
    for (const g of opts.groups.filter((g) => points.some((p) => p.group === g))) {
      legend.append(svg("rect", { x: 0, y: ly - 8, width: 10, height: 10, fill: colour(g) }),
                    svg("text", { x: 16, y: ly + 1 }, g));
      ly += 17;
    }
    ly += 6;
    legend.append(svg("line", { x1: 0, x2: 22, y1: ly - 3, y2: ly - 3, class: "front" }),
                  svg("text", { x: 28, y: ly + 1 }, "Pareto front"));
    ly += 22;
    for (const pm of [5, 25, 100]) {
      legend.append(svg("circle", { cx: 10, cy: ly, r: radius(pm), fill: "none", stroke: "#9aa4b1" }),
                    svg("text", { x: 34, y: ly + 4 }, pm + " M params"));
      ly += 2 * radius(pm) + 8;
    }
    root.append(legend);
    container.replaceChildren(root);
  }

  return { draw, paretoFront };
})();
