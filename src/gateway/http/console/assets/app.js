// The console app: pages drawn from the gateway's JSON views under api/. No framework, no
// inline script (the Content-Security-Policy forbids it), nothing from another origin.
"use strict";

const state = { csrf: null };

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["x-csrf-token"] = state.csrf;
  const r = await fetch(`api/${path}`, { ...options, headers, credentials: "same-origin" });
  if (r.status === 401) {
    location.reload();
    throw new Error("logged out");
  }
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
  return r.json();
}

function el(tag, attributes = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attributes)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function table(columns, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...columns.map(([, cell]) => el("td", {}, cell(row)))))));
}

// The last 15 minutes, one sample a second, from one stream for every chart.
const live = { samples: [], source: null, charts: null };
const SVG = "http://www.w3.org/2000/svg";

function chart(title, series) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 90");
  svg.setAttribute("class", "chart");
  const box = el("figure", { class: "chart" }, el("figcaption", {}, title), svg);
  return { box, svg, series, caption: box.firstChild, title };
}

function draw(c) {
  const samples = live.samples;
  const values = c.series.map(([, pick]) => samples.map(pick));
  const max = Math.max(1e-9, ...values.flat().filter((v) => v != null));
  c.svg.replaceChildren();
  values.forEach((points, k) => {
    const line = document.createElementNS(SVG, "polyline");
    const n = Math.max(points.length - 1, 1);
    line.setAttribute("points", points
      .map((v, i) => (v == null ? null : `${((i / n) * 300).toFixed(1)},${(88 - (v / max) * 84).toFixed(1)}`))
      .filter((p) => p != null).join(" "));
    line.setAttribute("class", `series-${k}`);
    c.svg.append(line);
  });
  const last = samples[samples.length - 1];
  const now = last ? c.series.map(([name, pick]) => `${name} ${fmt(pick(last))}`).join(", ") : "no data yet";
  c.caption.textContent = `${c.title}: ${now}`;
}

function fmt(v) {
  if (v == null) return "–";
  return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 0);
}

function listen() {
  if (live.source) return;
  live.source = new EventSource("api/live");
  live.source.addEventListener("history", (e) => { live.samples = JSON.parse(e.data); redraw(); });
  live.source.addEventListener("sample", (e) => {
    live.samples.push(JSON.parse(e.data));
    if (live.samples.length > 900) live.samples.shift();
    redraw();
  });
}

function redraw() {
  if (live.charts && document.body.contains(live.charts[0].box)) live.charts.forEach(draw);
}

const pages = {
  async overview(main) {
    const o = await api("overview");
    live.charts = [
      chart("calls/s", [["calls", (s) => s.calls]]),
      chart("latency (ms)", [["p50", (s) => s.p50], ["p99", (s) => s.p99]]),
      chart("errors/s", [["errors", (s) => s.errors]]),
      chart("sessions", [["open", (s) => s.sessions]]),
    ];
    listen();
    main.replaceChildren(
      el("p", {}, `version ${o.version}`, o.draining ? " — draining" : ""),
      el("div", { class: "charts", id: "charts" }, ...live.charts.map((c) => c.box)),
      el("h2", {}, "Servers"),
      table([
        ["name", (s) => s.name],
        ["state", (s) => el("span", { class: `state-${s.state}` }, s.state || "")],
        ["backend", (s) => s.backend || s.kind || ""],
        ["sessions", (s) => s.sessions ?? ""],
        ["children alive", (s) => s.children_alive ?? ""],
      ], o.servers || []),
    );
    redraw();
  },
  async sessions(main) {
    const { sessions } = await api("sessions");
    const end = (s) => {
      const b = el("button", { type: "button" }, "End");
      b.addEventListener("click", async () => {
        await api(`sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        await show();
      });
      return b;
    };
    main.replaceChildren(
      el("h2", {}, `Sessions on this replica (${sessions.length})`),
      table([
        ["server", (s) => s.server],
        ["client", (s) => s.client || ""],
        ["transport", (s) => s.transport],
        ["revision", (s) => s.protocol || ""],
        ["subject", (s) => s.subject || ""],
        ["address", (s) => s.address],
        ["age", (s) => `${s.age_s} s`],
        ["idle", (s) => `${s.idle_s} s`],
        ["requests", (s) => s.requests],
        ["", end],
      ], sessions),
    );
  },
};

async function show() {
  const name = (location.hash || "#overview").slice(1);
  const page = pages[name] || pages.overview;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", a.dataset.page === name);
  const main = document.getElementById("page");
  try {
    await page(main);
  } catch (e) {
    main.replaceChildren(el("p", { class: "state-failed" }, e.message));
  }
}

async function start() {
  const me = await api("me");
  state.csrf = me.csrf;
  document.getElementById("who").textContent = me.subject;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("../logout", { method: "POST" }).catch(() => {});
    location.reload();
  });
  window.addEventListener("hashchange", show);
  await show();
}

start();
