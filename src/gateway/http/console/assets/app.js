// The console app: pages drawn from the gateway's JSON views under api/. No framework, no
// inline script (the Content-Security-Policy forbids it), nothing from another origin.
"use strict";

// toolCounts: per server, how many tools its last listing here gave.
const state = { csrf: null, toolCounts: {} };

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

function duration(seconds) {
  if (seconds == null) return "?";
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60;
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : m ? `${m} min` : `${seconds} s`;
}

function toolCard(server, t) {
  const tryIt = el("a", { href: "#playground", class: "try" }, "try it");
  tryIt.addEventListener("click", () => { playground.want = { server, tool: t.name }; });
  return el("details", { class: "tool", "data-tool": t.name },
    el("summary", {}, el("b", {}, t.name), t.title && t.title !== t.name ? ` (${t.title})` : "", ` — ${t.description || ""} `, tryIt),
    el("pre", {}, JSON.stringify({ inputSchema: t.inputSchema, outputSchema: t.outputSchema, annotations: t.annotations }, null, 2)));
}

function serversTable(servers) {
  return table([
    ["name", (s) => el("a", { href: `#server/${encodeURIComponent(s.name)}` }, s.name)],
    ["state", (s) => el("span", { class: `state-${s.state}`, "data-server": s.name, "data-field": "state" }, s.state || "")],
    ["backend", (s) => s.backend || (s.members ? "group" : "")],
    ["sessions", (s) => s.sessions ?? ""],
    ["children alive", (s) => el("span", { "data-server": s.name, "data-field": "children" }, s.children_alive ?? "")],
    ["restarts", (s) => el("span", { "data-server": s.name, "data-field": "restarts" },
      s.shared_children ? s.shared_children.reduce((n, c) => n + (c.restarts || 0), 0) : "")],
    ["warm pool (ready / hits / misses)", (s) => (s.pool ? `${s.pool.ready ?? ""} / ${s.pool.hits ?? ""} / ${s.pool.misses ?? ""}` : "")],
    ["tools", (s) => el("span", { "data-server": s.name, "data-field": "tools" }, state.toolCounts[s.name] ?? "")],
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

// What the server asks while a call runs (elicitation, sampling): shown in a dialog, answered
// by the operator.
function answerAsk(message) {
  if (message.method === "elicitation/create") return askElicitation(message.params || {});
  if (message.method === "sampling/createMessage") return askSampling(message.params || {});
  return Promise.resolve({ error: { code: -32601, message: `${message.method} is not answered by the console` } });
}

function ask(title, body, buttons) {
  const dialog = document.getElementById("asked");
  return new Promise((resolve) => {
    const row = el("p", {});
    for (const [id, label, reply] of buttons) {
      const b = el("button", { type: "button", id }, label);
      b.addEventListener("click", () => { dialog.close(); resolve(reply()); });
      row.append(b, " ");
    }
    dialog.replaceChildren(el("h2", {}, title), ...body, row);
    dialog.showModal();
  });
}

function askElicitation(params) {
  const form = schemaForm(params.requestedSchema);
  return ask("The server asks", [el("p", {}, params.message || ""), form.box], [
    ["ask-accept", "Accept", () => ({ result: { action: "accept", content: form.read() } })],
    ["ask-decline", "Decline", () => ({ result: { action: "decline" } })],
  ]);
}

// The operator stands in for the model: reads the messages, writes the answer.
function askSampling(params) {
  const said = (params.messages || []).map((m) => {
    const parts = [].concat(m.content || []);
    const text = parts.map((c) => (c.type === "text" ? c.text : `[${c.type}]`)).join("\n");
    return el("div", { class: "said" }, el("b", {}, `${m.role}: `), el("span", {}, text));
  });
  const reply = el("textarea", { id: "ask-reply", rows: "4", placeholder: "the model's answer" });
  const limits = `max ${params.maxTokens ?? "?"} tokens${params.systemPrompt ? ` — system prompt: ${params.systemPrompt}` : ""}`;
  return ask("The server asks for a model's answer (sampling)", [el("p", { class: "muted" }, limits), ...said, reply], [
    ["ask-send", "Send", () => ({ result: { role: "assistant", content: { type: "text", text: reply.value }, model: "aareguru-mcp console (an operator)", stopReason: "endTurn" } })],
    ["ask-decline", "Decline", () => ({ error: { code: -1, message: "the operator declined the sampling request" } })],
  ]);
}

const playground = { client: null, server: null, tools: [], tool: null, want: null };

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
        playground.tools = await playground.client.listAll("tools/list", "tools");
        showTools(toolBox, result);
      } catch (e) {
        toolBox.replaceChildren(el("p", { class: "state-failed" }, e.message));
      }
    });
    main.replaceChildren(el("h2", {}, "Playground"), el("p", {}, "Server ", pick, " ", connect), toolBox, result);
    const want = playground.want;
    playground.want = null;
    if (want) {
      pick.value = want.server;
      playground.tool = want.tool;
      connect.click();
    } else if (playground.client) showTools(toolBox, result);
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
    const c = o.cluster;
    main.replaceChildren(
      el("p", { id: "status" },
        el("span", { class: `state-${o.status === "ok" ? "ok" : "failed"}` }, o.status),
        o.reason ? ` — ${o.reason}` : "",
        ` · version ${o.version} · up ${duration(o.uptime_s)}`),
      c ? el("p", { id: "cluster" },
        `replica ${c.replica} · Redis `, el("span", { class: c.redis === "ok" ? "state-ok" : "state-failed" }, c.redis),
        ` · peers: ${c.peers.length ? c.peers.map((p) => `${p.replica} (${p.url})`).join(", ") : "none"}`,
        ` · sessions held ${c.sessions_held} · forwarded ${c.forwarded}`)
        : el("p", { class: "muted" }, "one replica (no --redis)"),
      el("div", { class: "charts", id: "charts" }, ...live.charts.map((c) => c.box)),
      el("h2", {}, "Servers"),
      el("div", { id: "servers" }, serversTable(o.servers || [])),
    );
    redraw();
  },
  async servers(main) {
    const o = await api("overview");
    listen();
    // Counting opens a session on each server (a child, for a per-session one), so only when asked.
    const count = el("button", { type: "button", id: "count-tools" }, "Count tools");
    count.addEventListener("click", async () => {
      count.disabled = true;
      for (const s of o.servers || []) {
        if (s.state && s.state !== "serving") continue;
        const client = new McpClient(s.name === "default" ? "" : s.name, state.csrf);
        try {
          await client.open();
          state.toolCounts[s.name] = (await client.listAll("tools/list", "tools")).length;
        } catch (e) {
          state.toolCounts[s.name] = `? (${e.message})`;
        } finally {
          await client.close();
        }
        redraw();
      }
      count.disabled = false;
    });
    main.replaceChildren(
      el("h2", {}, "Servers ", count),
      el("div", { id: "servers" }, serversTable(o.servers || [])),
      o.failed?.length ? el("p", { class: "state-failed" }, `not started: ${o.failed.join(", ")}`) : "",
    );
    redraw();
  },
  // One server: what it offers, read through the console's own MCP endpoint as the admin (so
  // the rules that apply to the admin trim it), in a session ended when done.
  async server(main, name) {
    const o = await api("overview");
    const s = (o.servers || []).find((x) => x.name === name);
    if (!s) throw new Error(`no server ${name}`);
    main.replaceChildren(el("h2", {}, `Server ${name}`), el("div", { id: "server-state" }, serversTable([s])), el("p", { class: "muted" }, "listing…"));
    const client = new McpClient(name === "default" ? "" : name, state.csrf);
    const parts = [];
    try {
      const hello = await client.open();
      const caps = hello.capabilities || {};
      parts.push(el("p", { class: "muted" }, `${hello.serverInfo?.name || ""} ${hello.serverInfo?.version || ""} · revision ${hello.protocolVersion}`));
      const tools = caps.tools ? await client.listAll("tools/list", "tools") : [];
      state.toolCounts[name] = tools.length;
      parts.push(el("h2", {}, `Tools (${tools.length})`), el("div", { id: "server-tools" }, ...tools.map((t) => toolCard(name, t))));
      if (caps.prompts) {
        const prompts = await client.listAll("prompts/list", "prompts");
        parts.push(el("h2", {}, `Prompts (${prompts.length})`), table([
          ["name", (p) => p.name], ["description", (p) => p.description || ""],
          ["arguments", (p) => (p.arguments || []).map((a) => `${a.name}${a.required ? " *" : ""}`).join(", ")],
        ], prompts));
      }
      if (caps.resources) {
        const resources = await client.listAll("resources/list", "resources");
        const templates = await client.listAll("resources/templates/list", "resourceTemplates").catch(() => []);
        parts.push(el("h2", {}, `Resources (${resources.length}) and templates (${templates.length})`), table([
          ["uri", (r) => r.uri || r.uriTemplate], ["name", (r) => r.name || ""], ["type", (r) => r.mimeType || ""],
        ], [...resources, ...templates]));
      }
    } catch (e) {
      parts.push(el("p", { class: "state-failed", id: "server-error" }, e.message));
    } finally {
      await client.close();
    }
    main.replaceChildren(el("h2", {}, `Server ${name}`), el("div", { id: "server-state" }, serversTable([s])), ...parts);
  },
  async calls(main) {
    const { audit, calls, unreachable } = await api("calls");
    if (!audit) {
      main.replaceChildren(el("h2", {}, "Recent calls"), el("p", { class: "muted" }, "The audit log is off (--audit-log): no calls are recorded."));
      return;
    }
    const newest = calls.slice().reverse();
    const failed = newest.filter((c) => c.outcome !== "ok");
    const columns = [
      ["time", (c) => c.time],
      ["replica", (c) => c.replica || ""],
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
      unreachable?.length ? el("p", { class: "state-failed" }, `not heard from: ${unreachable.join(", ")}`) : "",
      el("h2", {}, `Recent calls (newest first: ${calls.length}, the last 200 of each replica)`),
      el("div", { id: "calls" }, table(columns, newest)),
    );
  },
  async sessions(main) {
    const { sessions, replica, unreachable } = await api("sessions");
    const end = (s) => {
      const b = el("button", { type: "button" }, "End");
      b.addEventListener("click", async () => {
        await api(`sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
        await show();
      });
      return b;
    };
    main.replaceChildren(
      el("h2", {}, replica ? `Sessions on every replica (${sessions.length})` : `Sessions (${sessions.length})`),
      unreachable?.length ? el("p", { class: "state-failed", id: "unreachable" }, `not heard from: ${unreachable.join(", ")}`) : "",
      table([
        ...(replica ? [["replica", (s) => s.replica || ""]] : []),
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
  if (playground.tool && playground.tools.some((t) => t.name === playground.tool)) choose.value = playground.tool;
  choose.addEventListener("change", () => { playground.tool = choose.value; redo(); });
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
  const [name, arg] = (location.hash || "#overview").slice(1).split("/");
  const page = pages[name] || pages.overview;
  const tab = name === "server" ? "servers" : name;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("here", a.dataset.page === tab);
  const main = document.getElementById("page");
  try {
    await page(main, arg === undefined ? undefined : decodeURIComponent(arg));
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
  // The playground's session ends with the page, not when it idles out.
  window.addEventListener("pagehide", () => playground.client?.abandon());
  await show();
}

start();
