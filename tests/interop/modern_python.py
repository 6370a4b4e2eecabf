"""Interop: protocol revision 2026-07-28 through the gateway with the official Python SDK (mcp 2.3.0).

1. `mcp.Client(url)` in its default mode negotiates 2026-07-28 with the Aareguru server on every
   backend (in-process natively; this binary's `--stdio` as a per-session or shared child, passed
   through) and runs the whole tool/resource/prompt battery; `mode="legacy"` still negotiates
   2025-11-25 on the same gateway.
2. @modelcontextprotocol/server-everything (a handshake-era server) behind the gateway serves a
   2026-07-28 client through the translation: tools, resources, prompts, progress, and sampling,
   elicitation and roots round trips (`input_required` and the client's retry).
3. A Python SDK 2.x stdio server (tests/interop/py_server.py) behind the gateway: 2026-07-28 is
   passed through, including its own `input_required` elicitation; the `Mcp-Param-*` header its
   `deploy` tool declares is sent by the SDK client and checked by the gateway (a wrong or missing
   one is refused with -32020).

Usage: python modern_python.py BIN FAKE_UPSTREAM EVERYTHING_JS
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request

import mcp.types as types
from mcp import Client

from battery import exercise
from common import check, client_callbacks, start_fake, start_gateway, summary, text_of

BIN, FAKE, EVERYTHING = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
MODERN, HANDSHAKE = "2026-07-28", "2025-11-25"


def stateless_mode(base: str) -> str:
    with urllib.request.urlopen(f"{base}/health") as r:
        return json.load(r)["stateless"]["mode"]


async def aareguru(base: str, label: str, mode: str) -> None:
    async with Client(f"{base}/mcp") as c:
        check(c.protocol_version == MODERN, f"{label}: default mode negotiated {c.protocol_version}")
        await exercise(c, f"{label} {MODERN}")
    check(stateless_mode(base) == mode, f"{label}: stateless mode is {mode}")
    async with Client(f"{base}/mcp", mode="legacy") as c:
        check(c.protocol_version == HANDSHAKE, f"{label}: legacy mode negotiated {c.protocol_version}")
        r = await c.call_tool("get_flow_danger_level", {"city": "thun"})
        check(not r.is_error and r.structured_content["station"]["slug"] == "thun", f"{label} legacy: call")


async def everything(base: str, label: str) -> None:
    seen = {"sampling": 0, "roots": 0, "elicitation": 0}
    callbacks = client_callbacks(seen, lambda prompt: f"sampled:{prompt}", "file:///tmp/mcp-root", "interop")
    async with Client(f"{base}/mcp", **callbacks) as c:
        check(c.protocol_version == MODERN, f"{label}: negotiated {c.protocol_version}")
        check(c.server_capabilities.tools is not None, f"{label}: capabilities from discover")
        r = await c.call_tool("echo", {"message": "hello 2026"})
        check("hello 2026" in text_of(r), f"{label}: echo")
        tools = await c.list_tools()
        check(len(tools.tools) >= 10, f"{label}: {len(tools.tools)} tools")
        resources = await c.list_resources()
        check(len(resources.resources) >= 1, f"{label}: resources listed")
        first = resources.resources[0]
        read = await c.read_resource(first.uri)
        check(len(read.contents) >= 1, f"{label}: resource {first.uri} read")
        prompts = await c.list_prompts()
        check(any(p.name == "simple-prompt" for p in prompts.prompts), f"{label}: prompts listed")
        p = await c.get_prompt("simple-prompt", {})
        check(len(p.messages) >= 1, f"{label}: prompt got")

        progress = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        r = await c.call_tool(
            "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
        )
        check(not r.is_error and len(progress) >= 4, f"{label}: progress {progress}")

        r = await c.call_tool("trigger-sampling-request", {"prompt": "p-2026", "maxTokens": 5})
        check("sampled:" in text_of(r) and "p-2026" in text_of(r), f"{label}: sampling round trip: {text_of(r)[:200]}")
        r = await c.call_tool("trigger-elicitation-request", {})
        check("decline" in text_of(r).lower(), f"{label}: elicitation round trip")
        r = await c.call_tool("get-roots-list", {})
        check("mcp-root" in text_of(r), f"{label}: roots round trip: {text_of(r)[:300]}")

        # Several at once, each with its own answer.
        results = await asyncio.gather(*(c.call_tool("echo", {"message": f"m{i}"}) for i in range(20)))
        check(all(f"m{i}" in text_of(r) for i, r in enumerate(results)), f"{label}: 20 concurrent echoes")
    check(seen == {"sampling": 1, "roots": 1, "elicitation": 1}, f"{label}: callbacks ran once each: {seen}")
    check(stateless_mode(base) == "translated", f"{label}: translated")


async def python_server(base: str, label: str) -> None:
    async def elicitation(context, params):
        return types.ElicitResult(action="accept", content={"colour": "aare-green"})

    async with Client(f"{base}/mcp", elicitation_callback=elicitation) as c:
        check(c.protocol_version == MODERN, f"{label}: negotiated {c.protocol_version}")
        r = await c.call_tool("add", {"a": 2, "b": 40})
        check(r.structured_content == {"result": 42}, f"{label}: add")
        r = await c.call_tool("favourite_colour", {})
        check("aare-green" in text_of(r), f"{label}: the server's own input_required passed through")
        res = await c.read_resource("py://greeting")
        check(res.contents[0].text == "hello from python", f"{label}: resource")
        p = await c.get_prompt("haiku", {"topic": "the Aare"})
        check("the Aare" in p.messages[0].content.text, f"{label}: prompt")
        # The SDK client repeats `region` as Mcp-Param-Region (base64 for "Bärn") once listed.
        await c.list_tools()
        r = await c.call_tool("deploy", {"region": "Bärn", "replicas": 2})
        check(not r.is_error and "deployed to Bärn x2" in text_of(r), f"{label}: Mcp-Param-* header checked and passed")
    check(stateless_mode(base) == "passthrough", f"{label}: passed through")
    # Over stdio the server sees no headers: the gateway checks them for it.
    for headers, why in [({"Mcp-Param-Region": "Thun"}, "does not match"), ({}, "is missing")]:
        status, body = raw_call(base, "deploy", {"region": "Bern"}, headers)
        check(
            status == 400 and body["error"]["code"] == -32020 and why in body["error"]["message"],
            f"{label}: Mcp-Param-Region {headers or 'left out'} refused with -32020: {status} {body}",
        )


def raw_call(base: str, tool: str, arguments: dict, headers: dict) -> tuple[int, dict]:
    """A 2026-07-28 tools/call POSTed by hand, with `headers` added: status and JSON body."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": meta}}
    req = urllib.request.Request(
        f"{base}/mcp",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "application/json, text/event-stream",
                 "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool, **headers},
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


async def main() -> None:
    fake, upstream = start_fake(FAKE)
    procs = [fake]
    env = {"AAREGURU_BASE_URL": upstream}
    try:
        gw, base = start_gateway(BIN, ["--backend", "in-process"], env)
        procs.append(gw)
        await aareguru(base, "aareguru/in-process", "native")
        for backend in ["per-session", "shared"]:
            gw, base = start_gateway(
                BIN, ["--backend", backend, "--child-env", "AAREGURU_BASE_URL", "--", BIN, "--stdio"], env
            )
            procs.append(gw)
            await aareguru(base, f"aareguru/{backend}", "passthrough")
        print("aareguru at 2026-07-28 on every backend (and legacy on the same gateways): ok")
        for backend in ["per-session", "shared"]:
            gw, base = start_gateway(BIN, ["--backend", backend, "--", "node", EVERYTHING, "stdio"])
            procs.append(gw)
            await everything(base, f"everything/{backend}")
        print("server-everything translated to 2026-07-28: ok (sampling, elicitation, roots, progress)")
        gw, base = start_gateway(BIN, ["--", sys.executable, os.path.join(HERE, "py_server.py")])
        procs.append(gw)
        await python_server(base, "python-sdk-server")
        print("Python SDK 2.x stdio server passed through at 2026-07-28: ok")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    print(summary())


asyncio.run(main())
