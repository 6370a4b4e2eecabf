"""Interop: the official Python MCP SDK (mcp 2.3.0) against `aareguru-mcp --sse` over Streamable HTTP.

1. `mcp.Client(url, mode="legacy")` and `mode="auto"` (which probes 2026-07-28 `server/discover`
   first; the gateway serves that revision, see modern_python.py) against the Aareguru server on
   every backend.
2. The low-level `streamable_http_client` + `ClientSession` with several concurrent sessions.
3. @modelcontextprotocol/server-everything behind the gateway: sampling, roots and elicitation
   requests reach this client's callbacks over Streamable HTTP, and progress notifications arrive.

Usage: python mcp_python.py BIN FAKE_UPSTREAM EVERYTHING_JS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from common import check, client_callbacks, start_fake, start_gateway, summary, text_of

BIN, FAKE, EVERYTHING = sys.argv[1], sys.argv[2], sys.argv[3]


async def high_level(url: str, label: str) -> None:
    for mode in ["legacy", "auto"]:
        started = time.monotonic()
        async with Client(url, mode=mode) as c:
            r = await c.call_tool("get_current_temperature", {"city": "Bärn"})
            check(not r.is_error and "12.5 °C" in text_of(r), f"{label} {mode}: temperature")
            tools = await c.list_tools()
            check(len(tools.tools) == 7, f"{label} {mode}: 7 tools")
            r = await c.call_tool("get_current_temperature", {"city": "Zurich"})
            check(r.is_error and "Known stations" in text_of(r), f"{label} {mode}: tool error relayed")
        took = time.monotonic() - started
        # The auto probe must be answered at once, not after the client's 10 s timeout.
        check(took < 5, f"{label} {mode}: connected and done in {took:.2f} s")


async def low_level(url: str, label: str) -> None:
    async def one(i: int) -> None:
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                check(init.server_info.name == "aareguru-mcp", f"{label}[{i}]: server name")
                res = await s.read_resource("aareguru://cities")
                check(len(json.loads(res.contents[0].text)) == 8, f"{label}[{i}]: resource")
                r = await s.call_tool("compare_cities", {})
                check(not r.is_error, f"{label}[{i}]: compare_cities")

    await asyncio.gather(*(one(i) for i in range(5)))


async def everything(url: str, label: str) -> None:
    seen = {"sampling": 0, "roots": 0, "elicitation": 0}

    progress = []

    async with streamable_http_client(url) as (read, write):
        callbacks = client_callbacks(seen, lambda prompt: "sampled-over-streamable-http", "file:///tmp/mcp-root", "interop")
        async with ClientSession(read, write, **callbacks) as s:
            await s.initialize()
            r = await s.call_tool("echo", {"message": "hello over /mcp"})
            check("hello over /mcp" in text_of(r), f"{label}: echo")
            r = await s.call_tool("trigger-sampling-request", {"prompt": "p-1", "maxTokens": 5})
            check("sampled-over-streamable-http" in text_of(r), f"{label}: sampling answer reached the child")
            r = await s.call_tool("get-roots-list", {})
            check("mcp-root" in text_of(r), f"{label}: roots answer reached the child")
            r = await s.call_tool("trigger-elicitation-request", {})
            check("decline" in text_of(r).lower(), f"{label}: elicitation answer reached the child")

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append(p)

            r = await s.call_tool(
                "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
            )
            check(not r.is_error, f"{label}: long-running operation")
            check(len(progress) >= 4, f"{label}: progress notifications arrived ({progress})")
    check(all(v >= 1 for v in seen.values()), f"{label}: callbacks ran: {seen}")


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    procs = [fake]
    try:
        for backend in ["in-process", "per-session", "shared"]:
            gw, base = start_gateway(BIN, ["--backend", backend], {"AAREGURU_BASE_URL": upstream})
            procs.append(gw)
            await high_level(f"{base}/mcp", f"aareguru/{backend}")
            await low_level(f"{base}/mcp", f"aareguru/{backend}")
            print(f"aareguru via Streamable HTTP, {backend} backend: ok")
        for backend in ["per-session", "shared"]:
            gw, base = start_gateway(BIN, ["--backend", backend, "--", "node", EVERYTHING, "stdio"])
            procs.append(gw)
            await everything(f"{base}/mcp", f"everything/{backend}")
            print(f"server-everything via Streamable HTTP, {backend} backend: ok (sampling, roots, elicitation, progress)")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    print(summary())


asyncio.run(main())
