"""Interop: `aareguru-mcp --connect` against the peer gateways, with the official Python SDK as the
stdio client: supergateway (npm; SSE, stateful and stateless Streamable HTTP) and mcp-proxy
(PyPI; SSE and Streamable HTTP), each wrapping `aareguru-mcp --stdio`.

Usage: python peers_python.py BIN FAKE_UPSTREAM SUPERGATEWAY MCP_PROXY
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from common import check, start_fake, summary, text_of

BIN, FAKE, SUPERGATEWAY, MCP_PROXY = sys.argv[1:5]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        check(proc.poll() is None, f"peer on port {port} is running")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    check(False, f"peer listening on {port}")


async def through_bridge(url: str, label: str) -> None:
    params = StdioServerParameters(command=BIN, args=["--connect", url], env={"RUST_LOG": "warn"})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            init = await asyncio.wait_for(s.initialize(), 30)
            check(init.server_info.name == "aareguru-mcp", f"{label}: initialize")
            tools = await asyncio.wait_for(s.list_tools(), 30)
            check(len(tools.tools) == 7, f"{label}: 7 tools")
            r = await asyncio.wait_for(s.call_tool("get_current_temperature", {"city": "Bärn"}), 30)
            check("12.5 °C" in text_of(r), f"{label}: tool call")
            r = await asyncio.wait_for(s.call_tool("get_current_temperature", {"city": "Zurich"}), 30)
            check(r.is_error, f"{label}: tool error relayed")
    print(f"{label}: ok")


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    env = {**os.environ, "AAREGURU_BASE_URL": upstream, "RUST_LOG": "warn"}
    # Peers do not always pass their environment on (mcp-proxy does not by default).
    stdio_cmd = f"{BIN} --stdio --base-url {upstream}"
    peers = [
        ("supergateway SSE", [SUPERGATEWAY, "--stdio", stdio_cmd, "--port", "{port}"], "/sse"),
        ("supergateway Streamable HTTP (stateful)",
         [SUPERGATEWAY, "--stdio", stdio_cmd, "--port", "{port}", "--outputTransport", "streamableHttp", "--stateful"], "/mcp"),
        ("supergateway Streamable HTTP (stateless)",
         [SUPERGATEWAY, "--stdio", stdio_cmd, "--port", "{port}", "--outputTransport", "streamableHttp"], "/mcp"),
        ("mcp-proxy SSE", [MCP_PROXY, "--host", "127.0.0.1", "--port", "{port}", "--", BIN, "--stdio", "--base-url", upstream], "/sse"),
        ("mcp-proxy Streamable HTTP", [MCP_PROXY, "--host", "127.0.0.1", "--port", "{port}", "--", BIN, "--stdio", "--base-url", upstream], "/mcp"),
    ]
    try:
        for label, cmd, path in peers:
            port = free_port()
            proc = subprocess.Popen(
                [a.replace("{port}", str(port)) for a in cmd],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_port(port, proc)
                await through_bridge(f"http://127.0.0.1:{port}{path}", f"bridge -> {label}")
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        fake.terminate()
        fake.wait()
    print(summary())


asyncio.run(main())
