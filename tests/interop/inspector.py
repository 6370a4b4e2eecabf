"""The MCP Inspector CLI against the gateway over Streamable HTTP (/mcp) and HTTP+SSE (/sse).

Usage: python3 inspector.py BIN FAKE_UPSTREAM INSPECTOR_CLI
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import check, start_fake, start_gateway, summary

BIN, FAKE, CLI = sys.argv[1:4]


def inspect(base: str, transport: str, path: str, *args: str) -> dict:
    run = subprocess.run(
        [CLI, "--cli", "-q", "--format", "json", "--transport", transport, "--server-url", base + path, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check(run.returncode == 0, f"inspector {transport} {args[:2]}: exit {run.returncode}: {run.stderr[-500:]}")
    return json.loads(run.stdout)["result"]


fake, upstream = start_fake(FAKE)
procs = [fake]
try:
    for backend in ["in-process", "shared"]:
        gw, base = start_gateway(BIN, ["--backend", backend], {"AAREGURU_BASE_URL": upstream})
        procs.append(gw)
        for transport, path in [("http", "/mcp"), ("sse", "/sse")]:
            tools = inspect(base, transport, path, "--method", "tools/list")
            names = {t["name"] for t in tools["tools"]}
            check("get_current_temperature" in names and len(names) == 7, f"inspector {transport}/{backend}: tools {names}")
            r = inspect(base, transport, path, "--method", "tools/call", "--tool-name", "get_current_temperature",
                        "--tool-args-json", '{"city": "bern"}')
            check("12.5 °C" in r["content"][0]["text"], f"inspector {transport}/{backend}: tool call")
            r = inspect(base, transport, path, "--method", "resources/read", "--uri", "aareguru://cities")
            check(len(json.loads(r["contents"][0]["text"])) == 8, f"inspector {transport}/{backend}: resource")
            r = inspect(base, transport, path, "--method", "prompts/list")
            check(len(r["prompts"]) == 3, f"inspector {transport}/{backend}: prompts")
        print(f"inspector via /mcp and /sse, {backend} backend: ok")
finally:
    for p in procs:
        p.terminate()
        p.wait()
print(summary())
