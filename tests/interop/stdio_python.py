"""Interop: the official Python MCP SDK (mcp 2.3.0) drives `aareguru-mcp --stdio`.

Starts the fake Aareguru API (examples/fake_upstream), then, in both `mode="legacy"` and the
default `mode="auto"` (which probes the 2026-07-28 `server/discover` first), lists and calls every
tool, reads every resource and template, and gets every prompt. Also drives the low-level
`ClientSession` over `stdio_client`. Exits non-zero on the first failed check.

Usage: python stdio_python.py PATH/TO/aareguru-mcp PATH/TO/fake_upstream
"""

from __future__ import annotations

import asyncio
import sys
import time

from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from battery import exercise
from common import check, start_fake, summary

BIN, FAKE = sys.argv[1], sys.argv[2]


async def main() -> None:
    fake, base = start_fake(FAKE)
    try:
        params = StdioServerParameters(
            command=BIN, args=["--stdio"], env={"AAREGURU_BASE_URL": base, "RUST_LOG": "warn"}
        )
        for mode in ["legacy", "auto"]:
            started = time.monotonic()
            async with Client(params, mode=mode) as client:
                connect_s = time.monotonic() - started
                # The SDK waits 10 s for an unanswered probe; anything near that is a hang.
                check(connect_s < 5, f"{mode}: connected in {connect_s:.2f}s (no probe timeout)")
                print(f"{mode}: negotiated {client.protocol_version} in {connect_s:.2f}s")
                await exercise(client, mode)

        # The low-level session API over stdio_client, as hosts built on ClientSession use it.
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                check(init.server_info.name == "aareguru-mcp", "session: server name")
                r = await session.call_tool("get_current_temperature", {"city": "bern"})
                check(not r.is_error, "session: call_tool")
    finally:
        fake.terminate()
        fake.wait()
    print(summary())


asyncio.run(main())
