"use strict";
// The zoo page of `hub browse`: reads the JSON embedded in #hub-data and draws the table, its
// filters and details, and feeds the rows the filters keep to the trade-off chart (chart.js,
// inlined before this script). Every value from the data is written with textContent or
// setAttribute, never parsed as HTML.
(() => {
  const data = JSON.parse(document.getElementById("hub-data").textContent);
  if (data.schema !== 1) {
    throw new Error("page data schema " + data.schema + " is not 1: regenerate the page");
  }
  const entries = data.entries;
  const datasets = data.datasets || {};
  const fingerprints = Object.keys(datasets).sort();
  const hasBench = entries.some((e) => e.bench);
  const hasProbe = fingerprints.length > 0;
  const hasCache = Boolean(data.cache_state);
  const $ = (id) => document.getElementById(id);

  // ---------- small helpers ----------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  const dash = "\u2013";
  const fixed = (v, d) => (v == null ? dash : v.toFixed(d));
  const pct = (v) => (v == null ? dash : (100 * v).toFixed(1));
  const rate = (v) => (v == null ? dash : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const yesNo = (v) => (v == null ? dash : v ? "yes" : "no");
  const probeOf = (e) => (state.dataset && e.probe && e.probe[state.dataset]) || null;
  const isUrl = (s) => typeof s === "string" && /^https?:\/\//.test(s);

  const state = { sortKey: "name", sortDir: 1, open: new Set(), dataset: fingerprints[0] || null,
                  x: "gmacs", y: "top1" };

  // ---------- columns ----------
  const columns = [
    { key: "name", label: "name", get: (e) => e.name, cls: "name" },
    { key: "aliases", label: "aliases", get: (e) => e.aliases.join(", "), cls: "aliases" },
    { key: "modality", label: "modality", get: (e) => e.modality },
    { key: "tasks", label: "tasks", get: (e) => e.tasks.join(", "), cls: "tasks" },
    { key: "provider", label: "provider", get: (e) => e.provider },
    { key: "params_m", label: "params (M)", num: true, get: (e) => e.params_m, text: (e) => fixed(e.params_m, 2) },
    { key: "gmacs", label: "GMACs", num: true, get: (e) => e.gmacs, text: (e) => fixed(e.gmacs, 2),
      title: (e) => (e.input_size ? "at " + e.input_size + " px" : null) },
    { key: "top1", label: "top-1\u00a0%", num: true, get: (e) => e.top1, text: (e) => fixed(e.top1, 1),
      title: (e) => (e.top1_source ? e.top1_source.dataset + ": " + e.top1_source.source : null) },
    { key: "license", label: "licence", get: (e) => e.license },
    { key: "pinned", label: "pinned", get: (e) => (e.pinned ? 1 : 0), text: (e) => yesNo(e.pinned),
      klass: (e) => (e.pinned ? "yes" : "no") },
    { key: "pulled", label: "pulled", show: hasCache, get: (e) => (e.pulled == null ? null : e.pulled ? 1 : 0),
      text: (e) => yesNo(e.pulled), klass: (e) => (e.pulled ? "yes" : "no") },
    { key: "items_per_s", label: "items/s (here)", num: true, measured: true, show: hasBench,
      get: (e) => (e.bench ? e.bench.items_per_s : null),
      text: (e) => (e.bench ? rate(e.bench.items_per_s) + (e.bench.random_weights ? "*" : "") : dash),
      title: (e) => benchTitle(e) },
    { key: "latency_ms", label: "latency ms (here)", num: true, measured: true, show: hasBench,
      get: (e) => (e.bench ? e.bench.latency_ms : null), text: (e) => fixed(e.bench ? e.bench.latency_ms : null, 1),
      title: (e) => (e.bench ? "one item at batch 1 (median)" : null) },
    { key: "knn", label: "k-NN % (probe)", num: true, measured: true, show: hasProbe,
      get: (e) => (probeOf(e) ? probeOf(e).knn : null), text: (e) => pct(probeOf(e) ? probeOf(e).knn : null),
      title: (e) => probeTitle(e, "knn") },
    { key: "logreg", label: "logreg % (probe)", num: true, measured: true, show: hasProbe,
      get: (e) => (probeOf(e) ? probeOf(e).logreg : null), text: (e) => pct(probeOf(e) ? probeOf(e).logreg : null),
      title: (e) => probeTitle(e, "logreg") },
  ].filter((c) => c.show !== false);

  function benchTitle(e) {
    if (!e.bench) return null;
    const r = e.bench.record || {};
    const parts = ["median items/s", "batch " + r.batch_size, r.dtype, r.device];
    if (e.bench.random_weights) parts.push("* random weights (speed does not depend on them)");
    return parts.filter((p) => p != null).join(", ");
  }
  function probeTitle(e, kind) {
    const p = probeOf(e);
    if (!p || p[kind] == null) return null;
    const std = p[kind + "_std"];
    return "mean over folds" + (std == null ? "" : " \u00b1 " + (100 * std).toFixed(1)) + " on " + datasets[state.dataset].path;
  }

  // ---------- filters ----------
  function fillSelect(select, label, values) {
    const counts = new Map();
    for (const v of values) counts.set(v, (counts.get(v) || 0) + 1);
    select.replaceChildren(el("option", { value: "", text: "any " + label }));
    for (const v of [...counts.keys()].sort()) {
      select.append(el("option", { value: v, text: v + " (" + counts.get(v) + ")" }));
    }
  }
  function fillChoices(select, choices) {
    select.replaceChildren(...choices.map(([v, t]) => el("option", { value: v, text: t })));
  }
  fillSelect($("f-modality"), "modality", entries.map((e) => e.modality));
  fillSelect($("f-task"), "task", entries.flatMap((e) => e.tasks));
  fillSelect($("f-provider"), "provider", entries.map((e) => e.provider));
  fillChoices($("f-pinned"), [["", "any"], ["yes", "pinned"], ["no", "not pinned"]]);
  fillChoices($("f-pulled"), [["", "any"], ["yes", "pulled"], ["no", "not pulled"]]);
  if (!hasCache) $("f-pulled-label").hidden = true;
  if (hasProbe) {
    fillChoices($("f-dataset"), fingerprints.map((fp) => {
      const d = datasets[fp];
      return [fp, d.path + (d.rows == null ? "" : " (" + d.rows + " rows)")];
    }));
  } else {
    $("f-dataset-label").hidden = true;
  }

  function matches(e) {
    const q = $("f-search").value.trim().toLowerCase();
    if (q) {
      const hay = [e.name, ...e.aliases, e.architecture, e.description, e.provider, e.license,
                   ...e.tasks].join(" ").toLowerCase();
      if (!q.split(/\s+/).every((w) => hay.includes(w))) return false;
    }
    const mod = $("f-modality").value, task = $("f-task").value, prov = $("f-provider").value;
    if (mod && e.modality !== mod) return false;
    if (task && !e.tasks.includes(task)) return false;
    if (prov && e.provider !== prov) return false;
    const lo = parseFloat($("f-pmin").value), hi = parseFloat($("f-pmax").value);
    if (!Number.isNaN(lo) && (e.params_m == null || e.params_m < lo)) return false;
    if (!Number.isNaN(hi) && (e.params_m == null || e.params_m > hi)) return false;
    const pinned = $("f-pinned").value, pulled = $("f-pulled").value;
    if (pinned && e.pinned !== (pinned === "yes")) return false;
    if (hasCache && pulled && Boolean(e.pulled) !== (pulled === "yes")) return false;
    return true;
  }

  // ---------- table ----------
  function sortRows(rows) {
    const col = columns.find((c) => c.key === state.sortKey) || columns[0];
    const dir = state.sortDir;
    return rows.slice().sort((a, b) => {
      const va = col.get(a), vb = col.get(b);
      const na = va == null || va === "", nb = vb == null || vb === "";
      if (na || nb) return na === nb ? a.name.localeCompare(b.name) : na ? 1 : -1; // missing last
      const c = typeof va === "number" && typeof vb === "number" ? va - vb : String(va).localeCompare(String(vb));
      return c !== 0 ? dir * c : a.name.localeCompare(b.name);
    });
  }

  function renderHead() {
    $("zoo-head").replaceChildren(...columns.map((c) => {
      const th = el("th", { scope: "col", "data-key": c.key, class: [c.num ? "num" : "", c.measured ? "measured" : ""].join(" ").trim() || null,
                            title: c.measured ? "measured on this machine" : null, tabindex: "0", text: c.label });
      if (c.key === state.sortKey) th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
      const sortBy = () => {
        if (state.sortKey === c.key) state.sortDir = -state.sortDir;
        else { state.sortKey = c.key; state.sortDir = 1; }
        render();
      };
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(); } });
      return th;
    }));
  }

  function renderBody(rows) {
    const body = $("zoo-body");
    body.replaceChildren();
    for (const e of rows) {
      const open = state.open.has(e.name);
      const tr = el("tr", { class: "row" + (open ? " open" : ""), "data-name": e.name, tabindex: "0",
                            "aria-expanded": open ? "true" : "false" });
      for (const c of columns) {
        const text = c.text ? c.text(e) : c.get(e);
        const klass = [c.cls, c.num ? "num" : "", c.klass ? c.klass(e) : ""].filter(Boolean).join(" ");
        tr.append(el("td", { class: klass || null, "data-key": c.key, title: c.title ? c.title(e) : null,
                             text: text == null || text === "" ? dash : String(text) }));
      }
      const toggle = () => { if (state.open.has(e.name)) state.open.delete(e.name); else state.open.add(e.name); render(); };
      tr.addEventListener("click", toggle);
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") toggle(); });
      body.append(tr);
      if (open) body.append(el("tr", { class: "details", "data-name": e.name },
                               el("td", { colspan: String(columns.length) }, details(e))));
    }
  }

  // ---------- details pane ----------
  function dl(pairs) {
    const node = el("dl");
    for (const [k, v] of pairs) {
      if (v == null || v === "") continue;
      node.append(el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : String(v)));
    }
    return node;
  }
  function table(head, rows, klass) {
    return el("table", { class: klass || null },
              el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
              el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((v) =>
                el("td", {}, v instanceof Node ? v : v == null ? dash : String(v)))))));
  }
  function lines(items) {
    const div = el("div", { class: "mono" });
    items.forEach((s, i) => { if (i) div.append(el("br")); div.append(String(s)); });
    return div;
  }
  function details(e) {
    const box = el("div", { class: "details" });
    if (e.description) box.append(el("p", { text: e.description }));
    const paper = e.paper ? (isUrl(e.paper.url)
      ? el("a", { href: e.paper.url, rel: "noopener noreferrer", target: "_blank", text: e.paper.title })
      : e.paper.title + " (" + e.paper.url + ")") : null;
    const top1 = e.top1 == null ? null : e.top1.toFixed(1) + " % on " + e.top1_source.dataset + " (" + e.top1_source.source + ")";
    box.append(el("h3", { text: "Manifest" }), dl([
      ["architecture", e.architecture + " (provider " + e.provider + ")"], ["modality", e.modality],
      ["aliases", e.aliases.join(", ")], ["tasks", e.tasks.join(", ")], ["licence", e.license],
      ["paper", paper], ["params", e.params_m == null ? null : e.params_m.toFixed(2) + " M"],
      ["GMACs", e.gmacs == null ? null : e.gmacs.toFixed(2) + (e.input_size ? " at " + e.input_size + " px" : "")],
      ["top-1", top1],
      ["from", e.origin ? e.origin.manifest + " (plugin " + e.origin.plugin + ")" : null],
    ]));
    box.append(el("h3", { text: "Weight variants" }));
    if (e.variants.length) {
      const head = ["variant", "description", "format", "pinned", "size", "sha256", "sources", "files", "licence"];
      if (hasCache) head.splice(4, 0, "pulled");
      box.append(table(head, e.variants.map((v) => {
        const row = [v.name + (v.name === e.default_weights ? " (default)" : ""), v.description, v.format,
                     yesNo(v.pinned), v.size == null ? null : (v.size / 1048576).toFixed(1) + " MiB",
                     v.sha256 ? el("span", { class: "mono", text: v.sha256 }) : "recorded on first pull",
                     lines(v.sources), v.files.length ? lines(v.files) : null, v.license || e.license];
        if (hasCache) row.splice(4, 0, yesNo(v.pulled));
        return row;
      }), "variants"));
    } else {
      box.append(el("p", { text: "No pretrained weights: pretrained=False builds the architecture with random weights." }));
    }
    const pre = Object.entries(e.preprocessing).filter(([k]) => k !== "kind")
      .map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v == null ? "tokenizer default" : v]);
    box.append(el("h3", { text: "Preprocessing (" + e.preprocessing.kind + ")" }), dl(pre));
    const out = e.outputs;
    box.append(el("h3", { text: "Outputs" }), dl([
      ["embedding", out.embedding_dim + " (pool " + out.pool + (out.normalize ? ", L2-normalised" : "") + ")"],
      ["layers", out.num_layers],
    ]));
    if (out.stages.length) {
      box.append(table(["stage", "channels", "stride", "layout", "module"],
                       out.stages.map((s) => [s.name, s.channels, s.stride, s.layout, s.module]), "stages"));
    }
    if (e.bench) {
      const r = e.bench.record || {};
      const spread = (m) => (m && m.median != null ? rate(m.median) + " (" + rate(m.min) + " " + dash + " " + rate(m.max) + ")" : null);
      box.append(el("h3", { text: "Speed measured here (hub bench)" }), dl([
        ["items/s", spread(r.items_per_s)], ["latency ms", spread(r.latency_ms)],
        ["peak memory", e.bench.peak_memory_mib == null ? null : e.bench.peak_memory_mib.toFixed(0) + " MiB"],
        ["load", r.load_s == null ? null : Number(r.load_s).toFixed(2) + " s"],
        ["run", [["variant ", r.variant], ["batch ", r.batch_size], ["", r.dtype], ["", r.device],
                 ["", r.threads, " threads"], ["torch ", r.torch], ["GPU ", r.gpu]]
          .filter((p) => p[1] != null).map((p) => p[0] + p[1] + (p[2] || "")).join(", ")],
        ["weights", e.bench.random_weights ? "random (not pulled; speed does not depend on them)" : "pretrained"],
        ["measured", r.measured_at],
      ]), rawRecord(r));
    }
    const probes = Object.entries(e.probe || {});
    if (probes.length) {
      box.append(el("h3", { text: "Probes measured here (hub probe)" }), table(
        ["data", "rows", "classes", "folds", "k-NN %", "logreg %", "measured"],
        probes.map(([fp, p]) => {
          const d = datasets[fp] || {};
          const pm = (m, s) => (m == null ? null : pct(m) + (s == null ? "" : " \u00b1 " + (100 * s).toFixed(1)));
          return [d.path, d.rows, d.classes, p.record.folds, pm(p.knn, p.knn_std), pm(p.logreg, p.logreg_std), p.record.measured_at];
        }), "probes"));
    }
    return box;
  }
  function rawRecord(record) {
    return el("details", {}, el("summary", { text: "record" }), el("pre", { text: JSON.stringify(record, null, 1) }));
  }

  // ---------- chart ----------
  const xAxes = { gmacs: { label: "GMACs per input (manifest; lower is cheaper)", get: (e) => e.gmacs, lowerBetter: true } };
  if (hasBench) xAxes.items_per_s = { label: "items/s measured here (higher is faster)", get: (e) => (e.bench ? e.bench.items_per_s : null), lowerBetter: false };
  const yAxes = { top1: { label: "ImageNet top-1 % (manifest)", get: (e) => e.top1 } };
  if (hasProbe) {
    yAxes.logreg = { label: "logreg probe accuracy % (measured here)", get: (e) => (probeOf(e) && probeOf(e).logreg != null ? 100 * probeOf(e).logreg : null) };
    yAxes.knn = { label: "k-NN probe accuracy % (measured here)", get: (e) => (probeOf(e) && probeOf(e).knn != null ? 100 * probeOf(e).knn : null) };
  }
  fillChoices($("c-x"), Object.entries(xAxes).map(([k, a]) => [k, a.label]));
  fillChoices($("c-y"), Object.entries(yAxes).map(([k, a]) => [k, a.label]));

  const providers = [...new Set(entries.map((e) => e.provider))].sort();

  function renderChart(rows) {
    const xa = xAxes[state.x], ya = yAxes[state.y];
    const points = [];
    for (const e of rows) {
      const x = xa.get(e), y = ya.get(e);
      if (x != null && y != null && x > 0) {
        points.push({ name: e.name, x, y, params_m: e.params_m, group: e.provider });
      }
    }
    const missing = rows.length - points.length;
    $("chart-note").textContent = points.length + " point" + (points.length === 1 ? "" : "s") +
      (missing ? "; " + missing + " of the listed backbones lack one of the two values" : "") +
      ". Point area grows with parameters; the dashed line is the Pareto front.";
    hubChart.draw($("chart"), points, { xLabel: xa.label, yLabel: ya.label, lowerXBetter: xa.lowerBetter,
                                        groups: providers, onSelect: openRow });
  }

  function openRow(name) {
    state.open.add(name);
    render();
    const row = document.querySelector('tr.row[data-name="' + CSS.escape(name) + '"]');
    if (row) row.scrollIntoView({ block: "center" });
  }

  // ---------- header ----------
  function renderHeader() {
    const mach = data.machine;
    const where = mach
      ? "Your catalogue and cache; measurements from this machine (" + mach.cpu + ", " + mach.cores + " cores, id " + mach.id + ")."
      : "Built from the manifests alone: run `hub browse --out DIR` to add your cache and what `hub bench` / `hub probe` measured on your machine.";
    $("summary").textContent = entries.length + " backbones. " + where;
    const notes = $("notes");
    for (const p of data.problems || []) notes.append(el("li", { text: "catalogue problem: " + p }));
    if ((data.unmatched || []).length) {
      notes.append(el("li", { text: "records for backbones not in this catalogue (not shown): " + data.unmatched.join(", ") }));
    }
    if (hasBench && entries.some((e) => e.bench && e.bench.random_weights)) {
      notes.append(el("li", { text: "* speed measured on random weights of the same architecture (the weights were not pulled; speed does not depend on them)." }));
    }
  }

  // ---------- wiring ----------
  function render() {
    const shown = entries.filter(matches);
    $("count").textContent = shown.length + " of " + entries.length + " backbones";
    renderHead();
    renderBody(sortRows(shown));
    renderChart(shown);
  }
  for (const id of ["f-search", "f-pmin", "f-pmax"]) $(id).addEventListener("input", render);
  for (const id of ["f-modality", "f-task", "f-provider", "f-pinned", "f-pulled"]) $(id).addEventListener("change", render);
  $("f-dataset").addEventListener("change", () => { state.dataset = $("f-dataset").value; render(); });
  $("c-x").addEventListener("change", () => { state.x = $("c-x").value; render(); });
  $("c-y").addEventListener("change", () => { state.y = $("c-y").value; render(); });
  $("f-reset").addEventListener("click", () => {
    for (const id of ["f-search", "f-pmin", "f-pmax", "f-modality", "f-task", "f-provider", "f-pinned", "f-pulled"]) $(id).value = "";
    render();
  });
  renderHeader();
  render();
})();
