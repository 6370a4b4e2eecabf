// Interop: the official TypeScript MCP SDK (1.32) through a load balancer in front of gateway
// replicas (started by cluster_python.py): the Aareguru battery over Streamable HTTP and SSE.
//
// Usage (from a folder whose node_modules has the SDK): node cluster_ts.mjs LB_URL LABEL
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [LB, LABEL] = process.argv.slice(2);
let passed = 0;

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  passed++;
}

async function battery(transport, label) {
  const client = new Client({ name: "cluster-ts", version: "1.0.0" });
  await client.connect(transport);
  const tools = await client.listTools();
  check(tools.tools.length === 7, `${label}: 7 tools`);
  for (let i = 0; i < 6; i++) {
    const r = await client.callTool({ name: "get_current_temperature", arguments: { city: "Bärn" } });
    check(!r.isError && r.content[0].text.includes("12.5 °C"), `${label}: call ${i}`);
  }
  const r = await client.callTool({ name: "get_current_temperature", arguments: { city: "Zurich" } });
  check(r.isError && r.content[0].text.includes("Known stations"), `${label}: tool error relayed`);
  const cities = await client.callTool({ name: "list_cities", arguments: {} });
  check(cities.structuredContent.count === 8, `${label}: 8 cities`);
  const resources = await client.listResources();
  check(resources.resources.length === 2, `${label}: 2 resources`);
  const templates = await client.listResourceTemplates();
  check(templates.resourceTemplates.length === 2, `${label}: 2 templates`);
  const body = await client.readResource({ uri: "aareguru://current/thun" });
  check(JSON.parse(body.contents[0].text) !== null, `${label}: resource read`);
  const prompts = await client.listPrompts();
  check(prompts.prompts.length === 3, `${label}: 3 prompts`);
  const p = await client.getPrompt({ name: "daily-swimming-report", arguments: { city: "thun" } });
  check(p.messages.length === 1, `${label}: prompt`);
  await client.close();
}

await battery(new StreamableHTTPClientTransport(new URL(`${LB}/mcp`)), `typescript ${LABEL} Streamable HTTP`);
await battery(new SSEClientTransport(new URL(`${LB}/sse`)), `typescript ${LABEL} SSE`);
console.log(`typescript ${LABEL}: ${passed} passed, 0 failed`);
