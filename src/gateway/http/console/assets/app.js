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

const pages = {
  async overview(main) {
    const o = await api("overview");
    main.replaceChildren(
      el("p", {}, `version ${o.version}`, o.draining ? " — draining" : ""),
      el("h2", {}, "Servers"),
      table([
        ["name", (s) => s.name],
        ["state", (s) => el("span", { class: `state-${s.state}` }, s.state || "")],
        ["backend", (s) => s.backend || s.kind || ""],
        ["sessions", (s) => s.sessions ?? ""],
        ["children alive", (s) => s.children_alive ?? ""],
      ], o.servers || []),
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
