// Interop: the official TypeScript MCP SDK (1.32) against one gateway serving several real
// servers from a servers file (started by servers_python.py): each server's own tools, over
// Streamable HTTP and SSE, with the file's tool filters applied.
//
// Usage (from a folder whose node_modules has the SDK): node servers_ts.mjs GATEWAY_URL FILE
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

const cases = {
  aareguru: ["get_current_temperature", { city: "thun" }, "Thun", []],
  everything: ["get-sum", { a: 2, b: 3 }, "5", ["get-env"]],
  filesystem: ["read_text_file", { path: FILE }, "hello from the served directory", ["write_file"]],
  time: ["get_current_time", { timezone: "UTC" }, "UTC", ["convert_time"]],
};

for (const [name, [tool, args, needle, denied]] of Object.entries(cases)) {
  for (const [kind, make] of [
    ["Streamable HTTP", () => new StreamableHTTPClientTransport(new URL(`${GW}/servers/${name}/mcp`))],
    ["SSE", () => new SSEClientTransport(new URL(`${GW}/servers/${name}/sse`))],
  ]) {
    const label = `typescript ${name} ${kind}`;
    const client = new Client({ name: "servers-ts", version: "1.0.0" });
    await client.connect(make());
    const tools = (await client.listTools()).tools.map((t) => t.name);
    check(tools.includes(tool), `${label}: lists ${tool}`);
    for (const d of denied) check(!tools.includes(d), `${label}: ${d} not listed`);
    const r = await client.callTool({ name: tool, arguments: args });
    check(!r.isError && JSON.stringify(r.content).includes(needle), `${label}: ${tool} answered`);
    for (const d of denied) {
      let refused = false;
      try {
        const e = await client.callTool({ name: d, arguments: {} });
        refused = e.isError && JSON.stringify(e.content).includes(d);
      } catch (e) {
        refused = String(e).includes(d);
      }
      check(refused, `${label}: ${d} refused`);
    }
    await client.close();
  }
}
console.log(`typescript servers: ${passed} passed, 0 failed`);
