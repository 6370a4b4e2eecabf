// A small MCP client over Streamable HTTP for the console's playground, through the console's
// own endpoint (/console/mcp/<server>): the gateway adds the logged-in credential, this script
// never holds it. Answers may come as JSON or as an SSE stream; requests the server sends on
// that stream (elicitation, sampling, roots) are handed to `onRequest` and answered.
"use strict";

class McpClient {
  constructor(server, csrf) {
    this.url = server ? `mcp/${encodeURIComponent(server)}` : "mcp";
    this.csrf = csrf;
    this.session = null;
    this.version = null;
    this.next = 0;
    this.onRequest = async () => ({ error: { code: -32601, message: "not supported by the console" } });
  }

  headers() {
    const h = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "x-csrf-token": this.csrf,
    };
    if (this.session) h["mcp-session-id"] = this.session;
    if (this.version) h["mcp-protocol-version"] = this.version;
    return h;
  }

  async send(message) {
    const r = await fetch(this.url, {
      method: "POST", headers: this.headers(), body: JSON.stringify(message), credentials: "same-origin",
    });
    const session = r.headers.get("mcp-session-id");
    if (session) this.session = session;
    return r;
  }

  async open() {
    const result = await this.request("initialize", {
      protocolVersion: "2025-06-18",
      capabilities: { elicitation: {}, sampling: {} },
      clientInfo: { name: "aareguru-mcp console", version: "1" },
    });
    this.version = result.protocolVersion;
    await this.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    return result;
  }

  async request(method, params) {
    const id = ++this.next;
    const r = await this.send({ jsonrpc: "2.0", id, method, params });
    if (r.status === 404 && this.session) throw new Error("the session has ended (404)");
    const kind = r.headers.get("content-type") || "";
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error?.message || body.error || `HTTP ${r.status}`);
    }
    const answer = kind.startsWith("text/event-stream") ? await this.stream(r, id) : await r.json();
    if (answer.error) throw new Error(`${answer.error.message} (${answer.error.code})`);
    return answer.result;
  }

  // Every page of a list (`tools/list`, `prompts/list`, …): the items under `key`.
  async listAll(method, key) {
    const items = [];
    let cursor;
    do {
      const page = await this.request(method, cursor ? { cursor } : {});
      items.push(...(page[key] || []));
      cursor = page.nextCursor;
    } while (cursor && items.length < 10000);
    return items;
  }

  // Reads an SSE answer until the response to `id`, answering what the server asks on the way.
  async stream(r, id) {
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended before the answer");
      text += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = text.search(/\r?\n\r?\n/)) >= 0) {
        const event = text.slice(0, cut);
        text = text.slice(cut).replace(/^\r?\n\r?\n/, "");
        const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        const message = JSON.parse(data);
        if (message.method && message.id !== undefined) {
          const reply = await this.onRequest(message);
          await this.send({ jsonrpc: "2.0", id: message.id, ...reply });
        } else if (message.id === id && !message.method) {
          reader.cancel().catch(() => {});
          return message;
        }
      }
    }
  }

  // Ends the session as the page goes away (the request outlives the page).
  abandon() {
    if (!this.session) return;
    fetch(this.url, { method: "DELETE", headers: this.headers(), credentials: "same-origin", keepalive: true }).catch(() => {});
    this.session = null;
  }

  async close() {
    if (!this.session) return;
    await fetch(this.url, { method: "DELETE", headers: this.headers(), credentials: "same-origin" }).catch(() => {});
    this.session = null;
  }
}

// Checks `value` against a JSON Schema's common keywords (type, required, properties, items,
// enum); the problems found, as paths.
function schemaProblems(schema, value, path = "$") {
  if (!schema || typeof schema !== "object") return [];
  const problems = [];
  const type = Array.isArray(value) ? "array" : value === null ? "null" : typeof value;
  const types = [].concat(schema.type || []);
  const fits = (t) => t === type || (t === "integer" && Number.isInteger(value)) || (t === "number" && type === "number");
  if (types.length && !types.some(fits)) problems.push(`${path}: ${type}, not ${types.join(" or ")}`);
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) problems.push(`${path}: not one of the enum`);
  if (type === "object") {
    for (const k of schema.required || []) if (!(k in value)) problems.push(`${path}.${k}: missing`);
    for (const [k, s] of Object.entries(schema.properties || {})) if (k in value) problems.push(...schemaProblems(s, value[k], `${path}.${k}`));
  }
  if (type === "array" && schema.items) value.forEach((v, i) => problems.push(...schemaProblems(schema.items, v, `${path}[${i}]`)));
  return problems;
}
