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
    const sample = JSON.parse(e.data);
    live.servers = sample.servers;
    delete sample.servers;
    live.samples.push(sample);
    if (live.samples.length > 900) live.samples.shift();
    redraw();
  });
}

function redraw() {
  if (live.charts && document.body.contains(live.charts[0].box)) live.charts.forEach(draw);
  const servers = document.getElementById("servers");
  if (servers && live.servers) servers.replaceChildren(serversTable(live.servers));
}

function serversTable(servers) {
  return table([
    ["name", (s) => s.name],
    ["state", (s) => el("span", { class: `state-${s.state}`, "data-server": s.name, "data-field": "state" }, s.state || "")],
    ["backend", (s) => s.backend || (s.members ? "group" : "")],
    ["sessions", (s) => s.sessions ?? ""],
    ["children alive", (s) => el("span", { "data-server": s.name, "data-field": "children" }, s.children_alive ?? "")],
    ["restarts", (s) => el("span", { "data-server": s.name, "data-field": "restarts" },
      s.shared_children ? s.shared_children.reduce((n, c) => n + (c.restarts || 0), 0) : "")],
    ["warm pool (ready / hits / misses)", (s) => (s.pool ? `${s.pool.ready ?? ""} / ${s.pool.hits ?? ""} / ${s.pool.misses ?? ""}` : "")],
    ["last error", (s) => s.failed || s.last_error || ""],
  ], servers);
}

// A form for the properties of an object schema; `read()` gives the value it holds.
function schemaForm(schema) {
  const fields = [];
  const box = el("div", { class: "form" });
  const required = new Set(schema?.required || []);
  for (const [name, s] of Object.entries(schema?.properties || {})) {
    const label = `${name}${required.has(name) ? " *" : ""}${s.description ? ` — ${s.description}` : ""}`;
    let input;
    let read;
    if (s.enum) {
      input = el("select", { name }, el("option", { value: "" }, ""), ...s.enum.map((v) => el("option", { value: JSON.stringify(v) }, String(v))));
      read = () => (input.value === "" ? undefined : JSON.parse(input.value));
    } else if (s.type === "boolean") {
      input = el("input", { type: "checkbox", name });
      read = () => input.checked;
    } else if (s.type === "number" || s.type === "integer") {
      input = el("input", { type: "number", name, step: s.type === "integer" ? "1" : "any" });
      read = () => (input.value === "" ? undefined : Number(input.value));
    } else if (s.type === "object" || s.type === "array") {
      input = el("textarea", { name, rows: "3", placeholder: "JSON" });
      read = () => (input.value.trim() === "" ? undefined : JSON.parse(input.value));
    } else {
      input = el("input", { type: "text", name });
      read = () => (input.value === "" ? undefined : input.value);
    }
    if (s.default !== undefined) {
      if (input.type === "checkbox") input.checked = !!s.default;
      else input.value = typeof s.default === "string" ? s.default : JSON.stringify(s.default);
    }
    box.append(el("label", {}, label), input);
    fields.push([name, read]);
  }
  return {
    box,
    read() {
      const value = {};
      for (const [name, read] of fields) {
        const v = read();
        if (v !== undefined) value[name] = v;
      }
      return value;
    },
  };
}

// What the server asks while a call runs (elicitation): shown in a dialog, answered by the
// operator.
function answerAsk(message) {
  const dialog = document.getElementById("asked");
  if (message.method !== "elicitation/create") {
    return Promise.resolve({ error: { code: -32601, message: `${message.method} is not answered by the console` } });
  }
  const params = message.params || {};
  const form = schemaForm(params.requestedSchema);
  return new Promise((resolve) => {
    const done = (reply) => { dialog.close(); resolve({ result: reply }); };
    const accept = el("button", { type: "button", id: "ask-accept" }, "Accept");
    const decline = el("button", { type: "button", id: "ask-decline" }, "Decline");
    accept.addEventListener("click", () => done({ action: "accept", content: form.read() }));
    decline.addEventListener("click", () => done({ action: "decline" }));
    dialog.replaceChildren(el("h2", {}, "The server asks"), el("p", {}, params.message || ""), form.box, el("p", {}, accept, " ", decline));
    dialog.showModal();
  });
}

const playground = { client: null, server: null, tools: [] };

const pages = {
  async playground(main) {
    const o = await api("overview");
    const pick = el("select", { id: "pg-server" }, ...(o.servers || []).map((s) => el("option", { value: s.name }, s.name)));
    if (playground.server) pick.value = playground.server;
    const connect = el("button", { type: "button", id: "pg-connect" }, "Connect");
    const toolBox = el("div", { id: "pg-tools" });
    const result = el("div", { id: "pg-result" });
    connect.addEventListener("click", async () => {
      result.replaceChildren();
      if (playground.client) await playground.client.close();
      playground.server = pick.value;
      playground.client = new McpClient(pick.value === "default" ? "" : pick.value, state.csrf);
      playground.client.onRequest = answerAsk;
      try {
        await playground.client.open();
        playground.tools = (await playground.client.request("tools/list", {})).tools || [];
        showTools(toolBox, result);
      } catch (e) {
        toolBox.replaceChildren(el("p", { class: "state-failed" }, e.message));
      }
    });
    main.replaceChildren(el("h2", {}, "Playground"), el("p", {}, "Server ", pick, " ", connect), toolBox, result);
    if (playground.client) showTools(toolBox, result);
  },

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
      el("div", { id: "servers" }, serversTable(o.servers || [])),
    );
    redraw();
  },
  async calls(main) {
    const { audit, calls } = await api("calls");
    if (!audit) {
      main.replaceChildren(el("h2", {}, "Recent calls"), el("p", { class: "muted" }, "The audit log is off (--audit-log): no calls are recorded."));
      return;
    }
    const newest = calls.slice().reverse();
    const failed = newest.filter((c) => c.outcome !== "ok");
    const columns = [
      ["time", (c) => c.time],
      ["subject", (c) => c.subject || ""],
      ["server", (c) => (c.member ? `${c.server} → ${c.member}` : c.server)],
      ["name", (c) => c.name],
      ["outcome", (c) => el("span", { class: c.outcome === "ok" ? "state-ok" : "state-failed" },
        [c.outcome, c.rule, c.limit, c.error?.message].filter(Boolean).join(": "))],
      ["ms", (c) => (c.durationMs ?? 0).toFixed(1)],
    ];
    main.replaceChildren(
      el("h2", {}, `Recent failures (${failed.length})`),
      table(columns, failed.slice(0, 20)),
      el("h2", {}, `Recent calls (newest first, the last ${calls.length} of this replica)`),
      el("div", { id: "calls" }, table(columns, newest)),
    );
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

function showTools(box, result) {
  const choose = el("select", { id: "pg-tool" }, ...playground.tools.map((t) => el("option", { value: t.name }, t.name)));
  const formBox = el("div");
  const call = el("button", { type: "button", id: "pg-call" }, "Call");
  let form = null;
  const chosen = () => playground.tools.find((t) => t.name === choose.value);
  const redo = () => {
    const t = chosen();
    form = schemaForm(t?.inputSchema);
    formBox.replaceChildren(
      el("p", { class: "muted" }, t?.description || ""),
      form.box,
      el("details", {}, el("summary", {}, "schemas"), el("pre", {}, JSON.stringify({ inputSchema: t?.inputSchema, outputSchema: t?.outputSchema }, null, 2))),
    );
  };
  choose.addEventListener("change", redo);
  call.addEventListener("click", async () => {
    const t = chosen();
    result.replaceChildren(el("p", { class: "muted" }, "calling…"));
    const started = performance.now();
    try {
      const r = await playground.client.request("tools/call", { name: t.name, arguments: form.read() });
      const ms = performance.now() - started;
      const text = (r.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
      const parts = [el("p", { id: "pg-took" }, `${r.isError ? "tool error" : "ok"} in ${ms.toFixed(0)} ms`), el("pre", { id: "pg-text" }, text)];
      if (r.structuredContent !== undefined) {
        const problems = t.outputSchema ? schemaProblems(t.outputSchema, r.structuredContent) : null;
        parts.push(
          el("h2", {}, "structuredContent"),
          el("p", { id: "pg-schema", class: problems && problems.length ? "state-failed" : "state-ok" },
            problems === null ? "no outputSchema to check against" : problems.length ? `does not match the outputSchema: ${problems.join("; ")}` : "matches the outputSchema"),
          el("pre", {}, JSON.stringify(r.structuredContent, null, 2)),
        );
      }
      result.replaceChildren(...parts);
    } catch (e) {
      result.replaceChildren(el("p", { class: "state-failed", id: "pg-error" }, e.message));
    }
  });
  box.replaceChildren(el("p", {}, "Tool ", choose, " ", call), formBox);
  redo();
}

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
