"""Interop: federation — one group of real servers served as one endpoint. The group "team" holds
every server of the file ("members": "*"): this project's own server (in process), the reference
"everything" and "filesystem" servers (npm), mcp-server-time (PyPI), two fixture servers whose
`ask` tool questions the client with ids of their own, and one whose command does not exist.

With the Python SDK (mcp 2.3.0) over Streamable HTTP (the group is `--default-server`, so at
/mcp) and HTTP+SSE (/servers/team/sse): every member's tools are listed under its own prefix and
each call reaches its own member (the fixtures say their names); everything's sampling,
elicitation and roots round trips run at the same moment as both fixtures' questions to the
client, and every answer reaches the member that asked; progress arrives; resources and prompts
of a member are read through the group; the member that never starts is left out. Then the
TypeScript SDK lists and calls through the group (federation_ts.mjs).

Usage: python federation_python.py BIN FAKE_UPSTREAM NODE_DIR TIME_SERVER FIXTURE_SERVER
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from common import check, client_callbacks, start_fake, start_gateway, summary, text_of

BIN, FAKE, NODE_DIR, TIME_SERVER, FIXTURE = sys.argv[1:6]
PKGS = os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol")


def config(served_dir: str) -> dict:
    fixture = lambda name: {"command": FIXTURE, "args": [], "env": {"FIXTURE_NAME": name}}  # noqa: E731
    return {
        "mcpServers": {
            "aareguru": {"command": BIN, "args": ["--stdio"]},
            "everything": {"command": "node", "args": [os.path.join(PKGS, "server-everything", "dist", "index.js")]},
            "filesystem": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-filesystem", "dist", "index.js"), served_dir],
                "gateway": {"backend": "shared"},
            },
            "time": {"command": TIME_SERVER, "args": []},
            "asker-a": fixture("asker-a"),
            "asker-b": fixture("asker-b"),
            "missing": {"command": "/nonexistent/mcp-server", "args": []},
        },
        # Node and Python servers take seconds to start on a busy machine.
        "groups": {"team": {"members": "*", "memberTimeout": "20s"}},
    }


async def exercise(s: ClientSession, label: str, served_file: str, seen: dict) -> None:
    init = await s.initialize()
    check(init.server_info.name == "team", f"{label}: the group answers initialize ({init.server_info.name})")
    names = {t.name for t in (await s.list_tools()).tools}
    for want in [
        "aareguru__get_current_temperature",
        "everything__echo",
        "everything__trigger-sampling-request",
        "filesystem__read_text_file",
        "time__get_current_time",
        "asker-a__env",
        "asker-b__env",
    ]:
        check(want in names, f"{label}: lists {want}")
    check(all("__" in n for n in names), f"{label}: every name carries its member")
    check(not any(n.startswith("missing__") for n in names), f"{label}: the member that never starts is left out")

    calls = [
        ("aareguru__get_current_temperature", {"city": "bern"}, "12.5 °C"),
        ("everything__echo", {"message": "through the group"}, "through the group"),
        ("filesystem__read_text_file", {"path": served_file}, "hello from the served directory"),
        ("time__get_current_time", {"timezone": "Europe/Zurich"}, "Europe/Zurich"),
    ]
    for tool, args, needle in calls:
        r = await s.call_tool(tool, args)
        check(not r.is_error and needle in text_of(r), f"{label}: {tool} answered ({text_of(r)[:80]!r})")
    for who in ["asker-a", "asker-b"]:
        r = await s.call_tool(f"{who}__env", {"name": "FIXTURE_NAME"})
        check(text_of(r) == who, f"{label}: {who}__env reached {who} ({text_of(r)!r})")

    # Five questions to the client at the same moment, from three members, two of which number
    # their requests alike: each answer reaches the member that asked.
    sampling = {"messages": [{"role": "user", "content": {"type": "text", "text": "from asker-a"}}], "maxTokens": 5}
    results = await asyncio.gather(
        s.call_tool("everything__trigger-sampling-request", {"prompt": "weather", "maxTokens": 5}),
        s.call_tool("asker-a__ask", {"method": "sampling/createMessage", "params": sampling}),
        s.call_tool("asker-b__ask", {"method": "roots/list"}),
        s.call_tool("everything__get-roots-list", {}),
        s.call_tool("everything__trigger-elicitation-request", {}),
    )
    texts = [text_of(r) for r in results]
    check("sampled:Resource trigger-sampling-request context: weather" in texts[0], f"{label}: everything's sampling ({texts[0][:120]!r})")
    check("sampled:from asker-a" in texts[1], f"{label}: asker-a's sampling answered to asker-a ({texts[1][:200]!r})")
    check("file:///tmp/federated-root" in texts[2] and "sampled" not in texts[2], f"{label}: asker-b's roots answered to asker-b")
    check("file:///tmp/federated-root" in texts[3], f"{label}: everything's roots ({texts[3][:120]!r})")
    check("decline" in texts[4].lower(), f"{label}: everything's elicitation ({texts[4][:120]!r})")
    check(seen["sampling"] >= 2 and seen["roots"] >= 1 and seen["elicitation"] >= 1, f"{label}: callbacks ran {seen}")

    progress = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    r = await s.call_tool(
        "everything__trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress
    )
    check(not r.is_error and len(progress) >= 4, f"{label}: progress through the group ({progress})")

    resources = (await s.list_resources()).resources
    ours = [r for r in resources if str(r.uri).startswith("aareguru://")]
    check(bool(ours), f"{label}: the built-in member's resources listed")
    res = await s.read_resource(ours[0].uri)
    check(bool(res.contents), f"{label}: {ours[0].uri} read through the group")
    theirs = [r for r in resources if str(r.uri).startswith("demo://") or str(r.uri).startswith("test://")]
    if theirs:
        res = await s.read_resource(theirs[0].uri)
        check(bool(res.contents), f"{label}: {theirs[0].uri} read from everything")
    prompts = {p.name for p in (await s.list_prompts()).prompts}
    check(any(p.startswith("everything__") for p in prompts), f"{label}: everything's prompts ({sorted(prompts)[:4]})")
    simple = sorted(p for p in prompts if p.startswith("everything__") and "simple" in p)
    if simple:
        got = await s.get_prompt(simple[0])
        check(bool(got.messages), f"{label}: {simple[0]} through the group")


async def main() -> None:
    fake, base = start_fake(FAKE)
    served_dir = tempfile.mkdtemp()
    served_file = os.path.join(served_dir, "note.txt")
    with open(served_file, "w") as f:
        f.write("hello from the served directory\n")
    conf = os.path.join(served_dir, "servers.json")
    with open(conf, "w") as f:
        json.dump(config(served_dir), f, indent=2)
    gw, url = start_gateway(BIN, ["--config", conf, "--base-url", base, "--default-server", "team"])
    try:
        seen = {"sampling": 0, "roots": 0, "elicitation": 0}
        callbacks = client_callbacks(seen, lambda prompt: f"sampled:{prompt}", "file:///tmp/federated-root", "root")
        async with streamable_http_client(f"{url}/mcp") as (read, write):
            async with ClientSession(read, write, **callbacks) as s:
                await exercise(s, "Streamable HTTP /mcp", served_file, seen)
        print("Streamable HTTP: ok")
        seen.update({"sampling": 0, "roots": 0, "elicitation": 0})
        async with sse_client(f"{url}/servers/team/sse") as (read, write):
            async with ClientSession(read, write, **callbacks) as s:
                await exercise(s, "SSE /servers/team/sse", served_file, seen)
        print("SSE: ok")
        with urllib.request.urlopen(f"{url}/health") as r:
            health = json.loads(r.read())
        team = next(s for s in health["servers"] if s["name"] == "team")
        states = {m["name"]: m["state"] for m in team["group"]["members"]}
        check(states.get("missing") == "failed" and states.get("everything") == "serving", f"/health shows each member ({states})")
        ts = subprocess.run(
            ["node", "federation_ts.mjs", url, served_file], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
        )
        print(ts.stdout, end="")
        check(ts.returncode == 0, f"typescript: {ts.stderr.strip()[-2000:]}")
    finally:
        gw.terminate()
        gw.wait(timeout=20)
        fake.terminate()
    print(summary())


asyncio.run(main())
