// Interop: the official TypeScript MCP SDK (1.32) against a group of real servers served as one
// endpoint (started by federation_python.py): every member's tools under its prefix, calls that
// reach their own member, over Streamable HTTP and SSE.
//
// Usage (from a folder whose node_modules has the SDK): node federation_ts.mjs GATEWAY_URL FILE
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [GW, FILE] = process.argv.slice(2);
let passed = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  passed++;
}

const calls = [
  ["aareguru__get_current_temperature", { city: "thun" }, "Thun"],
  ["everything__get-sum", { a: 2, b: 3 }, "5"],
  ["filesystem__read_text_file", { path: FILE }, "hello from the served directory"],
  ["time__get_current_time", { timezone: "UTC" }, "UTC"],
  ["asker-a__env", { name: "FIXTURE_NAME" }, "asker-a"],
  ["asker-b__env", { name: "FIXTURE_NAME" }, "asker-b"],
];

for (const [kind, make] of [
  ["Streamable HTTP", () => new StreamableHTTPClientTransport(new URL(`${GW}/mcp`))],
  ["SSE", () => new SSEClientTransport(new URL(`${GW}/servers/team/sse`))],
]) {
  const label = `typescript ${kind}`;
  const client = new Client({ name: "federation-ts", version: "1.0.0" });
  await client.connect(make());
  check(client.getServerVersion()?.name === "team", `${label}: the group answers`);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  for (const [tool] of calls) check(tools.includes(tool), `${label}: lists ${tool}`);
  check(!tools.some((t) => t.startsWith("missing__")), `${label}: the missing member left out`);
  const results = await Promise.all(calls.map(([name, args]) => client.callTool({ name, arguments: args })));
  results.forEach((r, i) => {
    const [tool, , needle] = calls[i];
    check(!r.isError && JSON.stringify(r.content).includes(needle), `${label}: ${tool} answered`);
  });
  await client.close();
}
console.log(`typescript federation: ${passed} passed, 0 failed`);
