"""Interop: the official Python MCP SDK (mcp 2.3.0) as a stdio client of `aareguru-mcp --connect URL`,
which forwards to a remote gateway (`aareguru-mcp --sse`) in front of the Aareguru server.

For each remote transport (Streamable HTTP at /mcp, HTTP+SSE at /sse, and /mcp forced to SSE
fallback detection): list and call tools; then the remote is killed mid-session — the call in
flight fails with an error at once instead of hanging — and restarted on the same port, and the
same session carries on. Also the high-level `mcp.Client` over stdio: its default mode negotiates
2026-07-28 through the bridge with a remote that serves it (each request POSTed on its own),
legacy mode 2025-11-25, and an HTTP+SSE remote makes the probe fail at once so it falls back.

Usage: python bridge_python.py BIN FAKE_UPSTREAM
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError as McpError

from common import check, start_fake, start_gateway, summary, text_of

BIN, FAKE = sys.argv[1], sys.argv[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def call_until_ok(s: ClientSession, within: float) -> float:
    started = time.monotonic()
    while True:
        try:
            r = await asyncio.wait_for(s.call_tool("get_current_temperature", {"city": "thun"}), 10)
            if not r.is_error:
                return time.monotonic() - started
        except (McpError, asyncio.TimeoutError):
            pass
        check(time.monotonic() - started < within, f"bridge reconnected within {within} s")
        await asyncio.sleep(0.3)


async def scenario(path: str, upstream: str, label: str, extra: list[str]) -> None:
    port = free_port()
    gw, _ = start_gateway_on(port, upstream)
    url = f"http://127.0.0.1:{port}{path}"
    params = StdioServerParameters(command=BIN, args=["--connect", url, *extra], env={"RUST_LOG": "warn"})
    try:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                check(init.server_info.name == "aareguru-mcp", f"{label}: initialize through the bridge")
                tools = await s.list_tools()
                check(len(tools.tools) == 7, f"{label}: 7 tools")
                r = await s.call_tool("get_current_temperature", {"city": "Bärn"})
                check("12.5 °C" in text_of(r), f"{label}: tool call")

                # Kill the remote while a call is in flight (the upstream takes 5 s to answer):
                # that call fails at once with an error, and so does one made while it is down.
                control(upstream, "mode=normal&delay_ms=5000")
                in_flight = asyncio.create_task(s.call_tool("get_current_temperature", {"city": "brugg"}))
                await asyncio.sleep(0.7)
                gw.kill()
                gw.wait()
                started = time.monotonic()
                for what in ["a call in flight", "a call while the remote is down"]:
                    try:
                        if what == "a call in flight":
                            r = await asyncio.wait_for(in_flight, 15)
                        else:
                            r = await asyncio.wait_for(s.call_tool("get_current_temperature", {"city": "bern"}), 15)
                        failed = r.is_error
                    except McpError:
                        failed = True
                    check(failed, f"{label}: {what} is an error")
                    check(time.monotonic() - started < 4, f"{label}: {what} fails at once, not after the 5 s upstream delay")
                control(upstream, "mode=normal&delay_ms=0")

                # Restart the remote on the same port: the session carries on.
                gw, _ = start_gateway_on(port, upstream)
                took = await call_until_ok(s, 30)
                print(f"{label}: reconnected {took:.1f} s after the restart")
                r = await s.call_tool("compare_cities", {})
                check(not r.is_error, f"{label}: calls succeed after the reconnect")
    finally:
        gw.terminate()
        gw.wait()


def control(upstream: str, query: str) -> None:
    import urllib.request

    urllib.request.urlopen(f"{upstream}/__control?{query}").read()


def start_gateway_on(port: int, upstream: str):
    return start_gateway(BIN, [], {"AAREGURU_BASE_URL": upstream}, port=port)


async def auto_mode(upstream: str) -> None:
    """The host's revision carries through the bridge: 2026-07-28 with a remote that serves it
    (default mode), 2025-11-25 when the host asks for it, and a fall back at once to the
    handshake when the remote is reached over HTTP+SSE."""
    from battery import exercise

    port = free_port()
    gw, _ = start_gateway_on(port, upstream)
    try:
        for path, mode, expected in [
            ("/mcp", "auto", "2026-07-28"),
            ("/mcp", "legacy", "2025-11-25"),
            ("/sse", "auto", "2025-11-25"),
        ]:
            label = f"{mode} mode over the bridge to {path}"
            started = time.monotonic()
            params = StdioServerParameters(
                command=BIN, args=["--connect", f"http://127.0.0.1:{port}{path}"], env={"RUST_LOG": "warn"}
            )
            async with Client(params, mode=mode) as c:
                check(c.protocol_version == expected, f"{label}: negotiated {c.protocol_version}")
                await exercise(c, label)
            took = time.monotonic() - started
            check(took < 10, f"{label}: done in {took:.2f} s (no probe left waiting)")
    finally:
        gw.terminate()
        gw.wait()


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    try:
        await scenario("/mcp", upstream, "bridge -> /mcp (Streamable HTTP)", [])
        await scenario("/sse", upstream, "bridge -> /sse (HTTP+SSE)", [])
        await scenario("/mcp", upstream, "bridge -> /mcp forced to Streamable HTTP", ["--transport", "streamable-http"])
        await auto_mode(upstream)
        print("bridge: ok")
    finally:
        fake.terminate()
        fake.wait()
    print(summary())


asyncio.run(main())
