"""Interop: one gateway serving several real stdio servers from an `mcpServers` file, as hosts
write it: this project's own server as install.sh prints it (served in process), the reference
"everything" and "filesystem" servers (npm), and mcp-server-time (PyPI) — plus a disabled entry
and one whose command does not exist (reported; the others still served).

With the Python SDK (mcp 2.3.0) over Streamable HTTP (`Client`) and HTTP+SSE (`sse_client`) on
every server: the tools each lists are its own (no call reaches the wrong server), a tool each
calls answers from it, and tools denied by the file's filter are neither listed nor callable.
Then the TypeScript SDK does the same (servers_ts.mjs).

With `--sandbox` every stdio server runs inside its preset (everything and filesystem in
`node`, the filesystem server writing only to its one directory; mcp-server-time and a Python
SDK server, py_server.py, in `python`), and the same checks must pass — plus a call the walls
refuse: the filesystem server cannot read the servers file outside its directory.

Usage: python servers_python.py BIN FAKE_UPSTREAM NODE_DIR TIME_SERVER [--sandbox]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

from mcp import Client, ClientSession
from mcp.client.sse import sse_client

from common import check, start_fake, start_gateway, summary, text_of

BIN, FAKE, NODE_DIR, TIME_SERVER = sys.argv[1:5]
SANDBOX = "--sandbox" in sys.argv[5:]
HERE = os.path.dirname(os.path.abspath(__file__))
PKGS = os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol")

# What each server must (and must not) list through the gateway, and one call to make.
EXPECT = {
    "aareguru": (
        {"get_current_temperature", "list_cities"},
        set(),
        ("get_current_temperature", {"city": "bern"}, "12.5 °C"),
    ),
    "everything": (
        {"echo", "get-sum"},
        {"get-env", "trigger-long-running-operation"},
        ("echo", {"message": "through the gateway"}, "through the gateway"),
    ),
    "filesystem": (
        {"read_text_file", "list_directory"},
        {"write_file", "edit_file", "move_file", "create_directory"},
        ("read_text_file", None, "hello from the served directory"),
    ),
    "time": (
        {"get_current_time"},
        {"convert_time"},
        ("get_current_time", {"timezone": "Europe/Zurich"}, "Europe/Zurich"),
    ),
}
if SANDBOX:
    EXPECT["pysdk"] = ({"add", "deploy"}, set(), ("add", {"a": 2, "b": 3}, "5"))
DENIED_CALL = {"everything": "get-env", "filesystem": "write_file", "time": "convert_time"}


def config(served_dir: str) -> dict:
    servers = base_config(served_dir)
    if SANDBOX:
        entries = servers["mcpServers"]
        entries["everything"]["sandbox"] = "node"
        entries["filesystem"]["sandbox"] = {"preset": "node", "readWrite": [served_dir]}
        entries["time"]["sandbox"] = "python"
        entries["pysdk"] = {
            "command": sys.executable,
            "args": [os.path.join(HERE, "py_server.py")],
            "sandbox": "python",
        }
    return servers


def base_config(served_dir: str) -> dict:
    return {
        "gateway": {"backend": "per-session"},
        "mcpServers": {
            # Exactly what install.sh prints for Claude Desktop (the path being the binary's).
            "aareguru": {"command": BIN, "args": ["--stdio"]},
            "everything": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-everything", "dist", "index.js")],
                "gateway": {"backend": "shared", "tools": {"deny": ["get-env", "trigger-*"]}},
            },
            "filesystem": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-filesystem", "dist", "index.js"), served_dir],
                "gateway": {"tools": {"deny": ["write_file", "edit_file", "move_file", "create_directory"]}},
            },
            "time": {"command": TIME_SERVER, "args": [], "gateway": {"tools": {"allow": ["get_*"]}}},
            "old": {"command": "npx", "args": ["-y", "some-old-server"], "disabled": True},
            "missing": {"command": "/nonexistent/mcp-server", "args": []},
        },
    }


async def exercise(session, name: str, label: str, served_file: str) -> None:
    want, denied, (tool, args, needle) = EXPECT[name]
    if args is None:
        args = {"path": served_file}
    tools = {t.name for t in (await session.list_tools()).tools}
    check(want <= tools, f"{label}: lists {sorted(want)} (got {sorted(tools)[:8]}…)")
    check(not (tools & denied), f"{label}: denied tools not listed ({sorted(tools & denied)})")
    r = await session.call_tool(tool, args)
    check(not r.is_error and needle in text_of(r), f"{label}: {tool} answered ({text_of(r)[:80]!r})")
    if name in DENIED_CALL:
        try:
            r = await session.call_tool(DENIED_CALL[name], {})
            refused = r.is_error and DENIED_CALL[name] in text_of(r)
        except Exception as e:  # the SDK raises the JSON-RPC error
            refused = DENIED_CALL[name] in str(e)
        check(refused, f"{label}: {DENIED_CALL[name]} refused by the filter")


async def main() -> None:
    fake, base = start_fake(FAKE)
    served_dir = tempfile.mkdtemp()
    served_file = os.path.join(served_dir, "note.txt")
    with open(served_file, "w") as f:
        f.write("hello from the served directory\n")
    conf = os.path.join(tempfile.mkdtemp(), "servers.json")
    with open(conf, "w") as f:
        json.dump(config(served_dir), f, indent=2)
    gw, url = start_gateway(BIN, ["--config", conf, "--base-url", base])
    try:
        with urllib.request.urlopen(f"{url}/health") as r:
            health = json.loads(r.read())
        states = {s["name"]: s["state"] for s in health["servers"]}
        check(states.get("missing") == "failed", f"missing command reported ({states})")
        check("old" not in states, "disabled entry not served")
        check(health["status"] == "degraded", "health says a server is missing")
        kinds = {s["name"]: s["backend"] for s in health["servers"]}
        check(kinds["aareguru"] == "in-process", "install.sh's entry runs in process")
        for name in EXPECT:
            async with Client(f"{url}/servers/{name}/mcp", mode="legacy") as c:
                await exercise(c, name, f"{name} Streamable HTTP", served_file)
            async with sse_client(f"{url}/servers/{name}/sse") as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    await exercise(s, name, f"{name} SSE", served_file)
            print(f"{name}: ok over both transports")
        if SANDBOX:
            health = json.loads(urllib.request.urlopen(f"{url}/health").read())
            states = {s["name"]: s["state"] for s in health["servers"]}
            check(all(states[n] != "failed" for n in EXPECT), f"every sandboxed server started ({states})")
            async with Client(f"{url}/servers/filesystem/mcp", mode="legacy") as c:
                try:
                    r = await c.call_tool("read_text_file", {"path": conf})
                    refused = r.is_error
                except Exception:
                    refused = True
                check(refused, "sandbox: the filesystem server cannot read the servers file outside its directory")
        ts = subprocess.run(
            ["node", "servers_ts.mjs", url, served_file], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        print(ts.stdout, end="")
        check(ts.returncode == 0, f"typescript: {ts.stderr.strip()[-2000:]}")
    finally:
        gw.terminate()
        gw.wait(timeout=20)
        fake.terminate()
    print(summary())


asyncio.run(main())
