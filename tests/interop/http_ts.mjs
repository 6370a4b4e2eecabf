// Interop: the official TypeScript MCP SDK (@modelcontextprotocol/sdk 1.32), SSEClientTransport
// (/sse) and StreamableHTTPClientTransport (/mcp), against `aareguru-mcp --sse` on every backend,
// in front of the Aareguru server (fake upstream) and in front of
// @modelcontextprotocol/server-everything (sampling, roots and elicitation answered here).
//
// Usage (from a folder whose node_modules has the SDK):
//   node http_ts.mjs BIN FAKE_UPSTREAM EVERYTHING_JS
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [BIN, FAKE, EVERYTHING] = process.argv.slice(2);
let passed = 0;
const children = [];

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    for (const c of children) c.kill("SIGTERM");
    process.exit(1);
  }
  passed++;
}

function firstLine(proc, stream, pick) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc[stream] });
    rl.on("line", (line) => {
      const v = pick(line);
      if (v) resolve(v);
    });
    proc.on("exit", () => reject(new Error(`${stream} closed before the expected line`)));
  });
}

async function startFake() {
  const p = spawn(FAKE, ["0"], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(p);
  const addr = await firstLine(p, "stdout", (l) => l.startsWith("listening on ") && l.slice(13));
  return `http://${addr}`;
}

async function startGateway(extra, env = {}) {
  const p = spawn(BIN, ["--sse", "--port", "0", "--log-format", "json", "--log-level", "info", ...extra], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  children.push(p);
  const addr = await firstLine(p, "stderr", (l) => {
    try {
      const v = JSON.parse(l);
      return v.message === "gateway listening" && v.address;
    } catch {
      return false;
    }
  });
  return `http://${addr}`;
}

// Which transport the scenarios use: HTTP+SSE (/sse) or Streamable HTTP (/mcp).
let transport = (base) => new SSEClientTransport(new URL(`${base}/sse`));
const streamable = (base) => new StreamableHTTPClientTransport(new URL(`${base}/mcp`));

const text = (r) => r.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");

async function aareguru(base) {
  await Promise.all(
    [0, 1, 2, 3, 4].map(async (i) => {
      const client = new Client({ name: `ts-interop-${i}`, version: "1.0.0" });
      await client.connect(transport(base));
      check(client.getServerVersion().name === "aareguru-mcp", `aareguru[${i}]: server name`);
      const tools = await client.listTools();
      check(tools.tools.length === 7, `aareguru[${i}]: 7 tools`);
      const r = await client.callTool({ name: "get_flow_danger_level", arguments: { city: " THUN " } });
      check(!r.isError && r.structuredContent.station.slug === "thun", `aareguru[${i}]: Thun`);
      const bad = await client.callTool({ name: "get_historical_data", arguments: { city: "bern", start: "now", end: "-1 day" } });
      check(bad.isError && text(bad).includes("must be before"), `aareguru[${i}]: tool error relayed`);
      const prompts = await client.listPrompts();
      check(prompts.prompts.length === 3, `aareguru[${i}]: prompts`);
      await client.close();
    }),
  );
}

async function everything(base) {
  const seen = { sampling: 0, roots: 0, elicitation: 0 };
  const client = new Client(
    { name: "ts-interop-everything", version: "1.0.0" },
    { capabilities: { sampling: {}, roots: { listChanged: true }, elicitation: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    seen.sampling++;
    return {
      role: "assistant",
      content: { type: "text", text: `sampled-by-ts: ${req.params.messages[0].content.text}` },
      model: "interop-test-model",
      stopReason: "endTurn",
    };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    seen.roots++;
    return { roots: [{ uri: "file:///tmp/ts-interop-root", name: "ts-interop" }] };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    seen.elicitation++;
    return { action: "decline" };
  });
  await client.connect(transport(base));
  const names = new Set((await client.listTools()).tools.map((t) => t.name));
  for (const t of ["echo", "trigger-sampling-request", "get-roots-list", "trigger-elicitation-request"]) {
    check(names.has(t), `everything: tool ${t}`);
  }
  let r = await client.callTool({ name: "echo", arguments: { message: "hi from ts" } });
  check(text(r).includes("hi from ts"), "everything: echo");
  r = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "pong-7", maxTokens: 5 } });
  check(text(r).includes("sampled-by-ts") && text(r).includes("pong-7"), `everything: sampling: ${text(r).slice(0, 200)}`);
  r = await client.callTool({ name: "get-roots-list", arguments: {} });
  check(text(r).includes("ts-interop-root"), `everything: roots: ${text(r).slice(0, 200)}`);
  r = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
  check(text(r).toLowerCase().includes("decline"), `everything: elicitation: ${text(r).slice(0, 200)}`);
  check(seen.sampling >= 1 && seen.roots >= 1 && seen.elicitation >= 1, `callbacks ran: ${JSON.stringify(seen)}`);
  await client.close();
}

try {
  const upstream = await startFake();
  const base = await startGateway([], { AAREGURU_BASE_URL: upstream });
  await aareguru(base);
  console.log(`aareguru via SSE (TypeScript SDK): ok`);
  const base2 = await startGateway(["--", "node", EVERYTHING, "stdio"]);
  await everything(base2);
  console.log("server-everything via SSE (TypeScript SDK): ok (sampling, roots, elicitation)");
  // The same against one shared child (the first client's roots are the child's roots).
  const base3 = await startGateway(["--backend", "shared", "--", "node", EVERYTHING, "stdio"]);
  await everything(base3);
  console.log("server-everything via SSE, shared child (TypeScript SDK): ok");
  const base4 = await startGateway(["--backend", "shared"], { AAREGURU_BASE_URL: upstream });
  await aareguru(base4);
  console.log("aareguru via SSE, shared child (TypeScript SDK): ok");
  transport = streamable;
  for (const backend of ["in-process", "per-session", "shared"]) {
    const b = await startGateway(["--backend", backend], { AAREGURU_BASE_URL: upstream });
    await aareguru(b);
    console.log(`aareguru via Streamable HTTP, ${backend} backend (TypeScript SDK): ok`);
  }
  for (const backend of ["per-session", "shared"]) {
    const b = await startGateway(["--backend", backend, "--", "node", EVERYTHING, "stdio"]);
    await everything(b);
    console.log(`server-everything via Streamable HTTP, ${backend} backend (TypeScript SDK): ok`);
  }
} catch (e) {
  console.error("FAIL:", e);
  for (const c of children) c.kill("SIGTERM");
  process.exit(1);
}
for (const c of children) c.kill("SIGTERM");
console.log(`${passed} passed, 0 failed`);
