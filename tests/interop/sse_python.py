"""Interop: the official Python MCP SDK (mcp 2.3.0) `sse_client` against `aareguru-mcp --sse`.

1. The gateway in front of the Aareguru server (fake upstream): initialize, list and call tools,
   several sessions at once.
2. The gateway in front of @modelcontextprotocol/server-everything: server->client requests
   (sampling, roots, elicitation) answered by this client's callbacks.

Usage: python sse_python.py BIN FAKE_UPSTREAM EVERYTHING_JS
"""

from __future__ import annotations

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client

from common import check, client_callbacks, start_fake, start_gateway, summary, text_of

BIN, FAKE, EVERYTHING = sys.argv[1], sys.argv[2], sys.argv[3]


async def aareguru(base: str) -> None:
    async def one(i: int) -> None:
        async with sse_client(f"{base}/sse") as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                check(init.server_info.name == "aareguru-mcp", f"aareguru[{i}]: server name")
                tools = await s.list_tools()
                check(len(tools.tools) == 7, f"aareguru[{i}]: 7 tools")
                r = await s.call_tool("get_current_temperature", {"city": "Bärn"})
                check(not r.is_error and "12.5 °C" in text_of(r), f"aareguru[{i}]: temperature")
                r = await s.call_tool("get_current_temperature", {"city": "Zurich"})
                check(r.is_error and "Known stations" in text_of(r), f"aareguru[{i}]: tool error relayed")
                res = await s.read_resource("aareguru://cities")
                check(len(json.loads(res.contents[0].text)) == 8, f"aareguru[{i}]: resource")

    await asyncio.gather(*(one(i) for i in range(5)))


async def everything(base: str) -> None:
    seen = {"sampling": 0, "roots": 0, "elicitation": 0}

    async with sse_client(f"{base}/sse") as (read, write):
        callbacks = client_callbacks(
            seen, lambda prompt: f"sampled-by-python: {prompt}", "file:///tmp/interop-root", "interop"
        )
        async with ClientSession(read, write, **callbacks) as s:
            init = await s.initialize()
            check("everything" in init.server_info.name.lower(), f"everything: server {init.server_info.name}")
            names = {t.name for t in (await s.list_tools()).tools}
            for needed in ["echo", "trigger-sampling-request", "get-roots-list", "trigger-elicitation-request"]:
                check(needed in names, f"everything: tool {needed} offered")
            r = await s.call_tool("echo", {"message": "hello through the gateway"})
            check("hello through the gateway" in text_of(r), "everything: echo")
            r = await s.call_tool("trigger-sampling-request", {"prompt": "ping-42", "maxTokens": 10})
            check("sampled-by-python" in text_of(r) and "ping-42" in text_of(r), f"everything: sampling answer reached the child: {text_of(r)[:200]}")
            r = await s.call_tool("get-roots-list", {})
            check("interop-root" in text_of(r), f"everything: roots answer reached the child: {text_of(r)[:200]}")
            r = await s.call_tool("trigger-elicitation-request", {})
            check("decline" in text_of(r).lower(), f"everything: elicitation answer reached the child: {text_of(r)[:200]}")
    check(seen["sampling"] >= 1 and seen["roots"] >= 1 and seen["elicitation"] >= 1, f"callbacks ran: {seen}")


async def everything_shared(base: str, sessions: int = 4) -> None:
    """Several clients on ONE server-everything child: each client's sampling and elicitation
    callbacks run for its own calls only, and its answers reach the child."""
    from contextlib import AsyncExitStack

    seen = [{"sampling": 0, "elicitation": 0, "roots": 0} for _ in range(sessions)]

    def callbacks(i: int) -> dict:
        return client_callbacks(
            seen[i], lambda prompt: f"sampled-by-session-{i}: {prompt}", f"file:///tmp/session-{i}", f"s{i}"
        )

    async with AsyncExitStack() as stack:
        clients = []
        for i in range(sessions):
            read, write = await stack.enter_async_context(sse_client(f"{base}/sse"))
            s = await stack.enter_async_context(ClientSession(read, write, **callbacks(i)))
            await s.initialize()
            clients.append(s)
        # Concurrent plain calls from every session: each gets its own echo.
        rs = await asyncio.gather(*(c.call_tool("echo", {"message": f"echo-{i}"}) for i, c in enumerate(clients)))
        check(all(f"echo-{i}" in text_of(r) for i, r in enumerate(rs)), "shared everything: concurrent echoes routed")
        for i, c in enumerate(clients):
            r = await c.call_tool("trigger-sampling-request", {"prompt": f"prompt-{i}", "maxTokens": 10})
            t = text_of(r)
            check(f"sampled-by-session-{i}:" in t and f"prompt-{i}" in t, f"shared everything: session {i} sampled its own call: {t[:300]}")
            r = await c.call_tool("trigger-elicitation-request", {})
            check("decline" in text_of(r).lower(), f"shared everything: session {i} elicitation answer reached the child")
            for j in range(sessions):
                expected = 1 if j <= i else 0
                check(seen[j]["sampling"] == expected and seen[j]["elicitation"] == expected,
                      f"shared everything: after session {i}, session {j} callbacks ran {seen[j]}")
        r = await clients[-1].call_tool("get-roots-list", {})
        check("file:///tmp/session-" in text_of(r), f"shared everything: a client's roots reached the child: {text_of(r)[:160]}")
        check(sum(x["roots"] for x in seen) >= 1, "shared everything: roots/list answered by a client")


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    procs = [fake]
    try:
        for backend in ["in-process", "per-session", "shared"]:
            gw, base = start_gateway(BIN, ["--backend", backend], {"AAREGURU_BASE_URL": upstream})
            procs.append(gw)
            await aareguru(base)
            print(f"aareguru via SSE, {backend} backend: ok ({base})")
        gw2, base2 = start_gateway(BIN, ["--", "node", EVERYTHING, "stdio"])
        procs.append(gw2)
        await everything(base2)
        print("server-everything via SSE: ok (sampling, roots, elicitation)")
        gw3, base3 = start_gateway(BIN, ["--backend", "shared", "--", "node", EVERYTHING, "stdio"])
        procs.append(gw3)
        await everything_shared(base3)
        print("server-everything via SSE, shared child: ok (per-session sampling and elicitation)")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    print(summary())


asyncio.run(main())
