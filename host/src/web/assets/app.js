// The web page of a running streamhost pipeline (docs/web-page.md).
// Plain JavaScript, no framework: it reads the admin API (/api/graph once,
// /metrics every second, /plugins, /api/alerts, /api/dead-letters and
// /api/checkpoints every two seconds) and draws the DAG as SVG.
"use strict";

const METRICS_EVERY_MS = 1000;
const DETAILS_EVERY_MS = 2000;
const TOKEN_KEY = "streamhost-admin-token";
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  graph: null,
  // The previous /metrics sample: {t (ms), values: Map(series key -> value)}.
  previous: null,
  // Per node id: what the page shows (also read by the browser test).
  nodeFigures: new Map(),
  metricsAvailable: null,
};

// ---- helpers ---------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) e.append(c);
  return e;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Fetches an admin API path with the token, if one was given; a 401 asks
// for it.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
  }
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (_) { /* not JSON */ }
    throw new HttpError(response.status, message);
  }
  return response;
}

async function getJson(path) {
  return (await api(path)).json();
}

function fmtCount(n) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  return Math.round(n).toLocaleString("en-US");
}

function fmtRate(r) {
  if (r === null || r === undefined || !isFinite(r)) return "–";
  if (r >= 1e6) return (r / 1e6).toFixed(2) + "M/s";
  if (r >= 1e4) return (r / 1e3).toFixed(1) + "k/s";
  if (r >= 100) return Math.round(r) + "/s";
  return r.toFixed(1) + "/s";
}

function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  const a = Math.abs(s);
  if (a < 1) return Math.round(s * 1000) + " ms";
  if (a < 120) return s.toFixed(1) + " s";
  if (a < 7200) return (s / 60).toFixed(1) + " min";
  if (a < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function fmtShare(x) {
  if (x === null || x === undefined || !isFinite(x)) return "–";
  return Math.round(Math.min(Math.max(x, 0), 1) * 100) + "%";
}

function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) {
    b /= 1024;
    i++;
  }
  return (i === 0 ? b : b.toFixed(1)) + " " + units[i];
}

function fmtTime(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

function fmtAgo(ms) {
  if (!ms) return "–";
  return fmtSeconds((Date.now() - ms) / 1000) + " ago";
}

function shortHash(h) {
  return h ? h.slice(0, 12) : "–";
}

function setStatus(id, text, ok) {
  const s = document.getElementById(id);
  s.textContent = text;
  s.className = "status " + (ok ? "ok" : "bad");
}

// ---- Prometheus text format --------------------------------------------------

// Parses the Prometheus text exposition format into [{name, labels, value}].
function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    let i = 0;
    while (i < line.length && /[A-Za-z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === "{") {
      i++;
      while (i < line.length && line[i] !== "}") {
        while (line[i] === " " || line[i] === ",") i++;
        if (line[i] === "}") break;
        const eq = line.indexOf("=", i);
        const key = line.slice(i, eq).trim();
        i = eq + 1;
        if (line[i] !== '"') return samples; // malformed: keep what was read
        i++;
        let value = "";
        while (i < line.length && line[i] !== '"') {
          if (line[i] === "\\" && i + 1 < line.length) {
            const n = line[i + 1];
            value += n === "n" ? "\n" : n;
            i += 2;
          } else {
            value += line[i++];
          }
        }
        i++; // closing quote
        labels[key] = value;
      }
      i++; // closing brace
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const v = rest[0];
    const value = v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v);
    if (name && rest[0] !== undefined && !Number.isNaN(value)) samples.push({ name, labels, value });
  }
  return samples;
}

function seriesKey(s) {
  const labels = Object.keys(s.labels).sort().map((k) => k + "=" + s.labels[k]).join(",");
  return s.name + "{" + labels + "}";
}

// ---- live figures from /metrics -------------------------------------------------

// What the page shows per node, from two samples of /metrics.
function nodeFigures(graph, samples, previous, dt) {
  const prev = (s) => (previous ? previous.values.get(seriesKey(s)) : undefined);
  // Sum (and rate of the sum) of `name` over the series whose labels match.
  const total = (name, match) => {
    let sum = 0, found = false, delta = 0, comparable = previous !== null;
    for (const s of samples) {
      if (s.name !== name || !match(s.labels)) continue;
      found = true;
      sum += s.value;
      const p = prev(s);
      if (p === undefined) comparable = false;
      else delta += s.value - p;
    }
    return { value: found ? sum : null, rate: found && comparable && dt > 0 ? Math.max(delta, 0) / dt : null };
  };
  const max = (name, match) => {
    let m = null;
    for (const s of samples) if (s.name === name && match(s.labels) && (m === null || s.value > m)) m = s.value;
    return m;
  };
  // Mean over the workers of a stage of a counter's rate (a share of time).
  const stageShare = (name, stage) => {
    const prefix = stage + ".";
    let sum = 0, n = 0;
    for (const s of samples) {
      if (s.name !== name || !(s.labels.worker || "").startsWith(prefix)) continue;
      const p = prev(s);
      if (p === undefined || dt <= 0) continue;
      sum += Math.max(s.value - p, 0) / dt;
      n++;
    }
    return n ? sum / n : null;
  };
  const figures = new Map();
  for (const n of graph.sources) {
    const is = (l) => l.source === n.name;
    const events = total("streamhost_source_events_total", is);
    const blocked = total("streamhost_source_blocked_seconds_total", is);
    figures.set(n.id, {
      events: events.value,
      rate: events.rate,
      lag: max("streamhost_source_watermark_lag_seconds", is),
      backpressure: blocked.rate === null ? null : Math.min(blocked.rate, 1),
      busy: null,
    });
  }
  for (const n of graph.steps) {
    const is = (l) => l.step === n.name;
    const events = total("streamhost_step_events_in_total", is);
    figures.set(n.id, {
      events: events.value,
      rate: events.rate,
      lag: max("streamhost_step_watermark_lag_seconds", is),
      backpressure: stageShare("streamhost_worker_blocked_seconds_total", n.stage),
      busy: stageShare("streamhost_worker_busy_seconds_total", n.stage),
    });
  }
  for (const n of graph.sinks) {
    const events = total("streamhost_sink_events_total", (l) => l.sink === n.name);
    figures.set(n.id, { events: events.value, rate: events.rate, lag: null, backpressure: null, busy: null });
  }
  return figures;
}

async function refreshMetrics() {
  if (!state.graph) return;
  let text;
  try {
    text = await (await api("/metrics")).text();
  } catch (e) {
    state.metricsAvailable = false;
    setStatus("metrics-status", e.status === 404 ? "metrics: not served by this host (404)" : "metrics: " + e.message, false);
    return;
  }
  const t = performance.now();
  const samples = parsePrometheus(text);
  const dt = state.previous ? (t - state.previous.t) / 1000 : 0;
  state.nodeFigures = nodeFigures(state.graph, samples, state.previous, dt);
  state.previous = { t, values: new Map(samples.map((s) => [seriesKey(s), s.value])) };
  state.metricsAvailable = true;
  setStatus("metrics-status", "metrics: " + samples.length + " series", true);
  showFigures();
}

function showFigures() {
  for (const [id, f] of state.nodeFigures) {
    const line = [fmtRate(f.rate), "lag " + fmtSeconds(f.lag), "bp " + fmtShare(f.backpressure)].join(" · ");
    const text = document.querySelector(`g.node[data-node="${CSS.escape(id)}"] text.figures`);
    if (text) text.textContent = line;
    const row = document.querySelector(`#nodes tr[data-node="${CSS.escape(id)}"]`);
    if (!row) continue;
    const cell = (field, shown, value) => {
      const c = row.querySelector(`[data-field="${field}"]`);
      c.textContent = shown;
      c.dataset.value = value === null || value === undefined ? "" : String(value);
    };
    cell("events", fmtCount(f.events), f.events);
    cell("rate", fmtRate(f.rate), f.rate);
    cell("lag", fmtSeconds(f.lag), f.lag);
    cell("backpressure", fmtShare(f.backpressure), f.backpressure);
    cell("busy", fmtShare(f.busy), f.busy);
  }
}

// ---- the DAG -----------------------------------------------------------------

const BOX_W = 230, BOX_H = 70, COL_GAP = 90, ROW_GAP = 26, PAD = 16;
// The slot of a waypoint of an edge that skips layers.
const WAY_H = 14;

// A layered layout (Sugiyama-style, small): a source in the first layer, a
// step one after its latest input, every sink in the last. An edge that
// skips layers gets a waypoint in each layer it crosses, so it runs beside
// the nodes instead of under them. A few barycentre sweeps then order each
// layer so edges cross less.
function layout(graph) {
  const nodes = [...graph.sources, ...graph.steps, ...graph.sinks];
  const layer = new Map();
  const inputsOf = new Map(nodes.map((n) => [n.id, []]));
  for (const e of graph.edges) inputsOf.get(e.to).push(e.from);
  for (const n of graph.sources) layer.set(n.id, 0);
  for (const n of graph.steps) {
    // Steps come in topological order: their inputs have layers already.
    layer.set(n.id, 1 + Math.max(0, ...inputsOf.get(n.id).map((i) => layer.get(i) ?? 0)));
  }
  const lastStep = Math.max(0, ...graph.steps.map((n) => layer.get(n.id)));
  for (const n of graph.sinks) layer.set(n.id, lastStep + 1);

  // Slots: the nodes, and the waypoints of long edges; links between slots of adjacent layers.
  const height = new Map(nodes.map((n) => [n.id, BOX_H]));
  const up = new Map(nodes.map((n) => [n.id, []]));
  const down = new Map(nodes.map((n) => [n.id, []]));
  const routes = graph.edges.map((e, k) => {
    const chain = [e.from];
    for (let l = layer.get(e.from) + 1; l < layer.get(e.to); l++) {
      const id = `way:${k}:${l}`;
      layer.set(id, l);
      height.set(id, WAY_H);
      up.set(id, []);
      down.set(id, []);
      chain.push(id);
    }
    chain.push(e.to);
    for (let i = 1; i < chain.length; i++) {
      down.get(chain[i - 1]).push(chain[i]);
      up.get(chain[i]).push(chain[i - 1]);
    }
    return chain;
  });
  const columns = [];
  for (const id of layer.keys()) {
    const l = layer.get(id);
    (columns[l] = columns[l] || []).push(id);
  }
  const position = new Map();
  const index = () => columns.forEach((col) => col.forEach((id, i) => position.set(id, i)));
  index();
  const barycentre = (id, neighbours) => {
    const ps = neighbours.get(id).map((n) => position.get(n));
    return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : position.get(id);
  };
  for (let sweep = 0; sweep < 6; sweep++) {
    const forward = sweep % 2 === 0;
    const order = forward ? columns.slice(1) : columns.slice(0, -1).reverse();
    for (const col of order) {
      const keys = new Map(col.map((id) => [id, barycentre(id, forward ? up : down)]));
      col.sort((a, b) => keys.get(a) - keys.get(b));
      index();
    }
  }
  const columnHeight = (col) => col.reduce((h, id) => h + height.get(id), 0) + (col.length - 1) * ROW_GAP;
  const tallest = Math.max(...columns.map(columnHeight));
  const total = { width: PAD * 2 + columns.length * BOX_W + (columns.length - 1) * COL_GAP, height: PAD * 2 + tallest };
  const at = new Map();
  columns.forEach((col, l) => {
    let y = PAD + (tallest - columnHeight(col)) / 2;
    for (const id of col) {
      at.set(id, { x: PAD + l * (BOX_W + COL_GAP), y, h: height.get(id) });
      y += height.get(id) + ROW_GAP;
    }
  });
  return { nodes, at, routes, width: total.width, height: total.height };
}

// An edge's path: a curve out of its source's right side into each
// waypoint (crossing the layer straight) and into its target's left side.
function edgePath(chain, at) {
  const points = [];
  chain.forEach((id, i) => {
    const a = at.get(id);
    const y = a.y + a.h / 2;
    if (i > 0) points.push([a.x, y]);
    if (i < chain.length - 1) points.push([a.x + BOX_W, y]);
  });
  let d = `M ${points[0][0]} ${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x1, y1] = points[i - 1], [x2, y2] = points[i];
    const last = i === points.length - 1;
    if (i % 2 === 1) {
      const mid = (x1 + x2) / 2;
      d += ` C ${mid} ${y1}, ${mid} ${y2}, ${last ? x2 - 2 : x2} ${y2}`;
    } else {
      d += ` L ${x2} ${y2}`;
    }
  }
  return d;
}

function nodeSubtitle(n) {
  const parts = [n.type];
  if (n.plugins.length) parts.push(n.plugins.join(", "));
  parts.push("×" + n.parallelism);
  if (n.stage !== null && n.stage !== undefined) parts.push("stage " + n.stage);
  return parts.join(" · ");
}

function drawDag(graph) {
  const { nodes, at, routes, width, height } = layout(graph);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "pipeline DAG" });
  root.append(
    svg("defs", {},
      svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))));
  graph.edges.forEach((e, k) => {
    const path = svg("path", {
      d: edgePath(routes[k], at),
      class: "edge " + e.kind,
      "marker-end": "url(#arrow)",
      "data-from": e.from,
      "data-to": e.to,
      "data-kind": e.kind,
    });
    path.append(svg("title", { text: `${e.from} → ${e.to} (${e.kind})` }));
    root.append(path);
  });
  for (const n of nodes) {
    const { x, y } = at.get(n.id);
    const g = svg("g", { class: `node ${n.kind}${n.keyed ? " keyed" : ""}`, "data-node": n.id, transform: `translate(${x},${y})` },
      svg("rect", { width: BOX_W, height: BOX_H, rx: 7 }),
      svg("text", { x: 10, y: 20, class: "name", text: n.name }),
      svg("text", { x: 10, y: 40, class: "subtitle", text: nodeSubtitle(n) }),
      svg("text", { x: 10, y: 60, class: "figures", text: "– · lag – · bp –" }),
      svg("title", { text: `${n.kind} ${n.name}: ${nodeSubtitle(n)}` }));
    root.append(g);
  }
  const holder = document.getElementById("dag");
  holder.replaceChildren(root);
}

function drawNodeTable(graph) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const n of [...graph.sources, ...graph.steps, ...graph.sinks]) {
    const num = (field) => el("td", { class: "num", "data-field": field, text: "–" });
    body.append(el("tr", { "data-node": n.id },
      el("td", {}, el("span", { class: "kind " + n.kind, text: n.kind }), " ", el("strong", { text: n.name })),
      el("td", { text: n.type + (n.plugins.length ? " (" + n.plugins.join(", ") + ")" : "") }),
      el("td", { "data-field": "parallelism", text: String(n.parallelism) + (n.stage !== null && n.stage !== undefined ? " (stage " + n.stage + ")" : "") }),
      num("events"), num("rate"), num("lag"), num("backpressure"), num("busy")));
  }
}

async function loadGraph() {
  const graph = await getJson("/api/graph");
  state.graph = graph;
  document.getElementById("pipeline-name").textContent = graph.pipeline || "";
  if (graph.pipeline) document.title = "streamhost · " + graph.pipeline;
  document.getElementById("dag-summary").textContent =
    `${graph.sources.length} sources, ${graph.steps.length} steps, ${graph.sinks.length} sinks · ` +
    `${graph.stages} stage${graph.stages === 1 ? "" : "s"} × ${graph.parallelism} worker${graph.parallelism === 1 ? "" : "s"} · ` +
    `${graph.key_groups} key groups · dead letters: ${graph.dead_letter}`;
  drawDag(graph);
  drawNodeTable(graph);
}

// ---- plugins -----------------------------------------------------------------

function versionLine(v) {
  if (!v) return "none";
  const config = JSON.stringify(v.config);
  return `${shortHash(v.hash)} · loaded ${fmtTime(v.loaded_at_unix_us / 1000)} (${v.artifact}, ${v.load_ms.toFixed(0)} ms)` +
    (config && config !== "null" && config !== "{}" ? ` · config ${config}` : "");
}

async function rollback(name, button) {
  if (!confirm(`Roll plugin ${name} back to its previous version?`)) return;
  const result = document.querySelector(`.plugin[data-plugin="${CSS.escape(name)}"] .result`);
  button.disabled = true;
  try {
    const r = await (await api(`/plugins/${encodeURIComponent(name)}/rollback`, { method: "POST" })).json();
    result.textContent = `Rolled back: now ${shortHash(r.version)} (generation ${r.generation}); a second rollback returns to ${shortHash(r.previous)}.`;
    result.className = "result ok";
  } catch (e) {
    result.textContent = "Rollback failed: " + e.message;
    result.className = "result bad";
  }
  await refreshPlugins();
}

function drawPlugin(p) {
  const history = p.history.slice().reverse().map((h) => el("tr", {},
    el("td", { text: fmtTime(h.at_unix_us / 1000) }),
    el("td", {}, el("span", { class: "action " + h.action, text: h.action })),
    el("td", { class: "mono", text: `${shortHash(h.from)} → ${shortHash(h.to)}` }),
    el("td", { class: "num", text: String(h.generation) }),
    el("td", { text: h.reason || "" })));
  const s = p.current.stats;
  const card = el("div", { class: "plugin card", "data-plugin": p.name },
    el("div", { class: "plugin-head" },
      el("h3", { text: p.name }),
      el("span", { class: "badge", text: p.world }),
      p.on_probation ? el("span", { class: "badge warn", text: "on probation" }) : null,
      el("button", { type: "button", "data-action": "rollback", disabled: !p.previous, title: p.previous ? "Put back " + shortHash(p.previous.hash) : "No previous version", onclick: (ev) => rollback(p.name, ev.currentTarget) }, "Roll back")),
    el("dl", {},
      el("dt", { text: "Current" }),
      el("dd", { class: "mono", "data-field": "current-version", "data-hash": p.current.hash, text: versionLine(p.current) }),
      el("dt", { text: "Since" }),
      el("dd", { text: `${fmtAgo(p.current_since_unix_us / 1000)} · generation ${p.generation} · ${p.instances} instance${p.instances === 1 ? "" : "s"}` }),
      el("dt", { text: "Previous" }),
      el("dd", { class: "mono", "data-field": "previous-version", "data-hash": p.previous ? p.previous.hash : "", text: versionLine(p.previous) }),
      el("dt", { text: "This version" }),
      el("dd", { text: `${fmtCount(s.calls)} calls · ${fmtCount(s.events_in)} in · ${fmtCount(s.events_out)} out · ${fmtCount(s.errors)} errors · ${fmtCount(s.traps)} traps · ${fmtCount(s.timeouts)} timeouts · ${fmtCount(s.rebuilds)} rebuilds` }),
      el("dt", { text: "Changes" }),
      el("dd", { text: `${p.swaps} swaps · ${p.rollbacks} rollbacks · ${p.auto_rollbacks} automatic · ${p.refused} refused` })),
    el("p", { class: "result" }),
    history.length
      ? el("table", { class: "history" },
        el("thead", {}, el("tr", {}, el("th", { text: "Time" }), el("th", { text: "Action" }), el("th", { text: "Version" }), el("th", { class: "num", text: "Gen." }), el("th", { text: "Reason" }))),
        el("tbody", {}, history))
      : el("p", { class: "empty", text: "No swaps yet." }));
  return card;
}

async function refreshPlugins() {
  const holder = document.getElementById("plugins");
  const list = await getJson("/plugins");
  // Keep the last rollback's message across redraws.
  const results = new Map([...holder.querySelectorAll(".plugin")].map((c) => [c.dataset.plugin, c.querySelector(".result")]));
  if (!list.plugins.length) {
    holder.replaceChildren(el("p", { class: "empty", text: "This pipeline uses no plugins." }));
    return;
  }
  holder.replaceChildren(...list.plugins.map((p) => {
    const card = drawPlugin(p);
    const old = results.get(p.name);
    if (old && old.textContent) card.querySelector(".result").replaceWith(old);
    return card;
  }));
}

// ---- alerts, dead letters, checkpoints ---------------------------------------------

async function refreshAlerts() {
  const holder = document.getElementById("alerts");
  let body;
  try {
    body = await getJson("/api/alerts");
  } catch (e) {
    if (e.status === 404) {
      holder.replaceChildren(el("p", { class: "empty", "data-state": "none", text: "No alert rules (settings.alerts)." }));
      return;
    }
    throw e;
  }
  const alerts = (body.alerts || []).slice().sort((a, b) => (a.state === "firing" ? 0 : 1) - (b.state === "firing" ? 0 : 1) || b.since_ms - a.since_ms);
  if (!alerts.length) {
    holder.replaceChildren(el("p", { class: "empty", "data-state": "none", text: "No alerts." }));
    return;
  }
  holder.replaceChildren(el("table", { class: "alerts" },
    el("thead", {}, el("tr", {}, ...["Rule", "State", "Since", "Value", "Message"].map((h) => el("th", { text: h })))),
    el("tbody", {}, alerts.map((a) => el("tr", { class: a.state, "data-rule": a.rule },
      el("td", { text: a.rule }),
      el("td", {}, el("span", { class: "badge " + (a.state === "firing" ? "bad" : "ok"), text: a.state })),
      el("td", { text: `${fmtTime(a.since_ms)} (${fmtAgo(a.since_ms)})` }),
      el("td", { class: "num", text: typeof a.value === "number" ? String(Number(a.value.toPrecision(4))) : "" }),
      el("td", { text: a.message || "" }))))));
}

async function refreshDeadLetters() {
  const body = await getJson("/api/dead-letters?limit=50");
  document.getElementById("dead-summary").textContent =
    `${fmtCount(body.total)} dead letters since the start; the last ${body.dead_letters.length} shown (the host keeps ${body.kept}; all are in ${state.graph ? state.graph.dead_letter : "the dead-letter file"}).`;
  const holder = document.getElementById("dead-letters");
  if (!body.dead_letters.length) {
    holder.replaceChildren(el("p", { class: "empty", text: "No dead letters." }));
    return;
  }
  holder.replaceChildren(el("table", { class: "dead" },
    el("thead", {}, el("tr", {}, ...["Time", "Kind", "Origin", "Step", "Reason", "Value"].map((h) => el("th", { text: h })))),
    el("tbody", {}, body.dead_letters.map((d) => el("tr", { "data-kind": d.kind },
      el("td", { text: fmtTime(d.at_unix_ms) }),
      el("td", {}, el("span", { class: "badge", text: d.kind })),
      el("td", { class: "mono", text: d.topic ? `${d.source} ${d.topic}/${d.partition}@${d.position}` : `${d.source}:${d.position}` }),
      el("td", { text: d.step ? d.step + (d.plugin ? ` (${d.plugin})` : "") : "(source)" }),
      el("td", { class: "reason", text: d.reason }),
      el("td", { class: "mono value", title: d.value, text: d.value + (d.value_truncated ? "…" : "") }))))));
}

async function refreshCheckpoints() {
  const body = await getJson("/api/checkpoints");
  const holder = document.getElementById("checkpoints");
  const list = body.checkpoints;
  const lastOk = list.find((c) => c.outcome === "ok");
  document.getElementById("checkpoint-summary").textContent = list.length
    ? `Last completed: ${lastOk ? `#${lastOk.id}, ${fmtAgo(lastOk.started_unix_ms + lastOk.duration_ms)}` : "none"} · ${list.length} shown.`
    : "";
  if (!list.length) {
    holder.replaceChildren(el("p", { class: "empty", text: "No checkpoints yet (settings.checkpoint)." }));
    return;
  }
  holder.replaceChildren(el("table", { class: "checkpoints" },
    el("thead", {}, el("tr", {}, ...["Id", "Started", "Duration", "Size", "Outcome"].map((h) => el("th", { text: h })))),
    el("tbody", {}, list.slice(0, 20).map((c) => el("tr", { "data-checkpoint": c.id, class: c.outcome },
      el("td", { class: "num", text: "#" + c.id + (c.final ? " (final)" : "") }),
      el("td", { text: fmtTime(c.started_unix_ms) }),
      el("td", { class: "num", text: c.duration_ms.toFixed(1) + " ms" }),
      el("td", { class: "num", text: fmtBytes(c.size_bytes) }),
      el("td", {}, el("span", { class: "badge " + (c.outcome === "ok" ? "ok" : "bad"), title: c.error || "", text: c.outcome + (c.error ? ": " + c.error : "") })))))));
}

// ---- the loop ------------------------------------------------------------------

async function safely(what, f) {
  try {
    await f();
    return true;
  } catch (e) {
    if (e instanceof TypeError) setStatus("status", "disconnected (the pipeline ended?)", false);
    else console.warn(what, e);
    return false;
  }
}

async function details() {
  const ok = await Promise.all([
    safely("plugins", refreshPlugins),
    safely("alerts", refreshAlerts),
    safely("dead letters", refreshDeadLetters),
    safely("checkpoints", refreshCheckpoints),
  ]);
  if (ok.every(Boolean)) setStatus("status", "live · " + fmtTime(Date.now()), true);
}

function every(ms, f) {
  const tick = async () => {
    await f();
    setTimeout(tick, ms);
  };
  tick();
}

async function start() {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
    document.getElementById("token-form").hidden = true;
    location.reload();
  });
  while (!(await safely("graph", loadGraph))) {
    await new Promise((r) => setTimeout(r, 2000));
  }
  every(METRICS_EVERY_MS, () => safely("metrics", refreshMetrics));
  every(DETAILS_EVERY_MS, details);
}

start();
