"""Interop: tool search on a federated endpoint, with real servers and the Python SDK (mcp 2.3.0).

The servers file federates six real servers — this project's own (7 tools), the reference
"everything", "filesystem" and "memory" servers (npm), mcp-server-time and mcp-server-git (PyPI) —
four times: "plain" (every tool listed), "catalog" (`toolSearch` search mode), "team" (search
mode, one tool always listed, a rule that hides everything's `get-env`) and "desk" (activate mode,
at most 3 active). "notes" is the memory server alone with search on.

1. Evaluation: every query of each QUERIES file (JSON: [{"query": "...", "expect": ["member__tool",
   ...]}], any expected tool counts as right) is asked of `search_tools` on "catalog"; recall@1,
   recall@5 and MRR are printed per file, and written as JSON to $SEARCH_REPORT if set. The first
   file is ours: below recall@5 0.9 the script fails. Further files (a set we do not see) are
   reported without a threshold.
2. End to end over Streamable HTTP and HTTP+SSE: the client sees only the surface, finds and calls
   tools of three members through `call_tool` (a tool's error comes back unchanged), the rule's
   hidden tools are never found and cannot be called; in activate mode the tools found appear in
   the session's `tools/list` after `notifications/tools/list_changed` (oldest out past the cap)
   and are called directly; a single server with search; the 2026-07-28 revision (stateless:
   search and call, nothing activated); a reload that drops a member takes its tools out of the
   index without a restart. The `tools/list` bytes with and without search are printed.

Usage: python search_python.py BIN FAKE_UPSTREAM NODE_DIR TIME_SERVER GIT_SERVER QUERIES [QUERIES...]
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import mcp.types as types
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from common import check, start_fake, start_gateway, summary, text_of

BIN, FAKE, NODE_DIR, TIME_SERVER, GIT_SERVER = sys.argv[1:6]
QUERY_FILES = sys.argv[6:]
PKGS = os.path.join(NODE_DIR, "node_modules", "@modelcontextprotocol")
MEMBERS = ["aareguru", "everything", "filesystem", "time", "git", "memory"]
RULES = [{"name": "no-env", "deny": "mcp.tool.name == 'everything__get-env'"}]


def config(work: str, members: list[str]) -> dict:
    served = os.path.join(work, "served")
    repo = os.path.join(work, "repo")
    return {
        "mcpServers": {
            "aareguru": {"command": BIN, "args": ["--stdio"]},
            "everything": {"command": "node", "args": [os.path.join(PKGS, "server-everything", "dist", "index.js")]},
            "filesystem": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-filesystem", "dist", "index.js"), served],
                "gateway": {"backend": "shared"},
            },
            "memory": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-memory", "dist", "index.js")],
                "env": {"MEMORY_FILE_PATH": os.path.join(work, "memory.jsonl")},
                "gateway": {"backend": "shared"},
            },
            "time": {"command": TIME_SERVER, "args": [], "gateway": {"backend": "shared"}},
            "git": {"command": GIT_SERVER, "args": ["--repository", repo], "gateway": {"backend": "shared"}},
            "notes": {
                "command": "node",
                "args": [os.path.join(PKGS, "server-memory", "dist", "index.js")],
                "env": {"MEMORY_FILE_PATH": os.path.join(work, "notes.jsonl")},
                "gateway": {"toolSearch": "search"},
            },
        },
        "groups": {
            "plain": {"members": members, "memberTimeout": "30s"},
            "catalog": {"members": members, "memberTimeout": "30s", "toolSearch": "search"},
            "team": {
                "members": members,
                "memberTimeout": "30s",
                "toolSearch": {"mode": "search", "alwaysList": ["time__get_current_time"]},
                "rules": RULES,
            },
            "desk": {"members": members, "memberTimeout": "30s", "toolSearch": {"mode": "activate", "maxActive": 3}},
        },
    }


def post(url: str, body: dict, session: str | None = None) -> tuple[dict, str | None, int]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        raw = r.read()
        sid = r.headers.get("mcp-session-id")
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in raw.decode().splitlines() if line.startswith("data:")]
            raw = data[-1].encode() if data else b"{}"
        return (json.loads(raw) if raw else {}), sid, len(raw)


def list_bytes(url: str) -> tuple[int, list[str]]:
    """The bytes of a `tools/list` answer a host receives on `url` (a fresh session)."""
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bytes", "version": "1"}}
    _, sid, _ = post(url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    answer, _, size = post(url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}, sid)
    return size, [t["name"] for t in answer["result"]["tools"]]


def found(result) -> list[str]:
    return [t["name"] for t in result.structured_content["tools"]]


async def evaluate(s: ClientSession, path: str) -> dict:
    with open(path) as f:
        queries = json.load(f)
    r1 = r5 = rr = 0.0
    misses, took = [], []
    for q in queries:
        started = time.perf_counter()
        r = await s.call_tool("search_tools", {"query": q["query"], "limit": 5})
        took.append(time.perf_counter() - started)
        names = found(r)
        ranks = [i for i, n in enumerate(names) if n in q["expect"]]
        if ranks:
            r1 += ranks[0] == 0
            r5 += 1
            rr += 1 / (ranks[0] + 1)
        else:
            misses.append(f"{q['query']!r}: wanted {q['expect']}, got {names}")
    n = len(queries)
    report = {"file": os.path.basename(path), "queries": n, "recall@1": r1 / n, "recall@5": r5 / n, "mrr": rr / n}
    print(
        f"{report['file']}: {n} queries, recall@1 {report['recall@1']:.3f}, "
        f"recall@5 {report['recall@5']:.3f}, MRR {report['mrr']:.3f}"
    )
    took.sort()
    print(f"  search_tools round trip (Python SDK client through this binary): p50 {took[len(took) // 2] * 1e3:.1f} ms")
    for m in misses:
        print(f"  missed {m}")
    return report


async def surface(s: ClientSession, label: str, served_file: str) -> None:
    await s.initialize()
    names = sorted(t.name for t in (await s.list_tools()).tools)
    check(names == ["call_tool", "search_tools", "time__get_current_time"], f"{label}: only the surface is listed ({names})")
    # Three members' tools, found and called through call_tool.
    r = await s.call_tool("search_tools", {"query": "water temperature of the Aare"})
    check(found(r)[0] == "aareguru__get_current_temperature", f"{label}: aareguru found ({found(r)})")
    r = await s.call_tool("call_tool", {"name": "aareguru__get_current_temperature", "arguments": {"city": "bern"}})
    check(not r.is_error and "12.5 °C" in text_of(r), f"{label}: aareguru called ({text_of(r)[:80]!r})")
    r = await s.call_tool("search_tools", {"query": "read a text file", "limit": 3})
    check("filesystem__read_text_file" in found(r) and len(found(r)) <= 3, f"{label}: filesystem found ({found(r)})")
    r = await s.call_tool("call_tool", {"name": "filesystem__read_text_file", "arguments": {"path": served_file}})
    check("hello from the served directory" in text_of(r), f"{label}: filesystem called")
    r = await s.call_tool("call_tool", {"name": "filesystem__read_text_file", "arguments": {"path": "/nonexistent/x"}})
    check(r.is_error, f"{label}: the tool's own error comes back ({text_of(r)[:80]!r})")
    r = await s.call_tool("search_tools", {"query": "echo a message back"})
    check(found(r)[0] == "everything__echo", f"{label}: everything found ({found(r)})")
    r = await s.call_tool("call_tool", {"name": "everything__echo", "arguments": {"message": "through search"}})
    check("through search" in text_of(r), f"{label}: everything called")
    # The structured answer matches the search tool's outputSchema, and says each tool's schema.
    tool = next(t for t in (await s.list_tools()).tools if t.name == "search_tools")
    check(tool.output_schema is not None and r is not None, f"{label}: the search tool declares its outputSchema")
    r = await s.call_tool("search_tools", {"query": "current time in a timezone", "limit": 2})
    check(
        all("inputSchema" in t for t in r.structured_content["tools"]) and json.loads(text_of(r)) == r.structured_content,
        f"{label}: the text is the structured content",
    )
    # What a rule hides is never found and cannot be called (answered as an unknown tool).
    r = await s.call_tool("search_tools", {"query": "get environment variables", "limit": 50})
    check("everything__get-env" not in found(r), f"{label}: the rule's hidden tool is not found ({found(r)})")
    try:
        r = await s.call_tool("call_tool", {"name": "everything__get-env", "arguments": {}})
        refused = r.is_error and "PATH" not in text_of(r)
    except MCPError as e:
        refused = "unknown tool" in str(e).lower()
    check(refused, f"{label}: the hidden tool is refused")
    # Bad arguments answer as tool errors.
    r = await s.call_tool("search_tools", {})
    check(r.is_error and "query" in text_of(r), f"{label}: a search without a query")
    r = await s.call_tool("call_tool", {"arguments": {}})
    check(r.is_error and "name" in text_of(r), f"{label}: a call without a name")


async def activation(url: str) -> None:
    changed = asyncio.Event()

    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            changed.set()

    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as s:
            await s.initialize()
            first = sorted(t.name for t in (await s.list_tools()).tools)
            check(first == ["call_tool", "search_tools"], f"activate: the surface at first ({first})")
            r = await s.call_tool("search_tools", {"query": "what time is it", "limit": 2})
            got = found(r)
            await asyncio.wait_for(changed.wait(), 10)
            names = {t.name for t in (await s.list_tools()).tools}
            check(set(got) <= names, f"activate: the found tools are listed after list_changed ({got} in {sorted(names)})")
            r = await s.call_tool("time__get_current_time", {"timezone": "Europe/Zurich"})
            check("Europe/Zurich" in text_of(r), "activate: a found tool is called directly")
            changed.clear()
            r = await s.call_tool("search_tools", {"query": "echo a message", "limit": 2})
            await asyncio.wait_for(changed.wait(), 10)
            names = {t.name for t in (await s.list_tools()).tools} - {"search_tools", "call_tool"}
            check(len(names) == 3 and set(found(r)) <= names, f"activate: at most 3 active, the newest kept ({sorted(names)})")
            check(got[0] in names and got[1] not in names, f"activate: the oldest left first ({got} vs {sorted(names)})")


async def stateless(base: str) -> None:
    async with Client(f"{base}/servers/team/mcp") as c:
        check(c.protocol_version == "2026-07-28", f"2026-07-28: negotiated {c.protocol_version}")
        names = sorted(t.name for t in (await c.list_tools()).tools)
        check("search_tools" in names and len(names) == 3, f"2026-07-28: the surface ({names})")
        r = await c.call_tool("search_tools", {"query": "convert time between timezones"})
        check(found(r)[0] == "time__convert_time", f"2026-07-28: found ({found(r)})")
        r = await c.call_tool("call_tool", {"name": "everything__echo", "arguments": {"message": "stateless"}})
        check("stateless" in text_of(r), "2026-07-28: called through call_tool")
    async with Client(f"{base}/servers/desk/mcp") as c:
        await c.call_tool("search_tools", {"query": "echo"})
        names = sorted(t.name for t in (await c.list_tools()).tools)
        check(names == ["call_tool", "search_tools"], f"2026-07-28: nothing activated without a session ({names})")


async def main() -> None:
    fake, base = start_fake(FAKE)
    work = tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "served"))
    served_file = os.path.join(work, "served", "note.txt")
    with open(served_file, "w") as f:
        f.write("hello from the served directory\n")
    subprocess.run(["git", "init", "-q", os.path.join(work, "repo")], check=True)
    conf = os.path.join(work, "servers.json")
    with open(conf, "w") as f:
        json.dump(config(work, MEMBERS), f, indent=2)
    gw, url = start_gateway(BIN, ["--config", conf, "--base-url", base])
    try:
        plain_bytes, plain = list_bytes(f"{url}/servers/plain/mcp")
        team_bytes, _ = list_bytes(f"{url}/servers/team/mcp")
        catalog_bytes, _ = list_bytes(f"{url}/servers/catalog/mcp")
        check(len(plain) >= 50, f"the plain group lists every member's tools ({len(plain)})")
        print(
            f"tools/list of the group: {plain_bytes} bytes for {len(plain)} tools; with search: {catalog_bytes} bytes "
            f"({team_bytes} with one tool always listed)"
        )
        dump = os.environ.get("SEARCH_TOOLS_DUMP")
        if dump:
            _, sid, _ = post(f"{url}/servers/plain/mcp", {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "dump", "version": "1"}}})
            answer, _, _ = post(f"{url}/servers/plain/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, sid)
            with open(dump, "w") as f:
                json.dump(answer["result"]["tools"], f, indent=1)

        reports = []
        async with streamable_http_client(f"{url}/servers/catalog/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                for path in QUERY_FILES:
                    reports.append(await evaluate(s, path))
        if os.environ.get("SEARCH_REPORT"):
            with open(os.environ["SEARCH_REPORT"], "w") as f:
                json.dump(reports, f, indent=1)
        check(reports[0]["recall@5"] >= 0.9, f"recall@5 of {reports[0]['file']} is at least 0.9 ({reports[0]['recall@5']:.3f})")

        async with streamable_http_client(f"{url}/servers/team/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await surface(s, "Streamable HTTP", served_file)
        async with sse_client(f"{url}/servers/team/sse") as (read, write):
            async with ClientSession(read, write) as s:
                await surface(s, "SSE", served_file)
        await activation(f"{url}/servers/desk/mcp")

        # A single server behind search.
        async with streamable_http_client(f"{url}/servers/notes/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                names = sorted(t.name for t in (await s.list_tools()).tools)
                check(names == ["call_tool", "search_tools"], f"one server: the surface ({names})")
                r = await s.call_tool("search_tools", {"query": "create entities in the knowledge graph", "limit": 1})
                check(found(r) == ["create_entities"], f"one server: found ({found(r)})")
                r = await s.call_tool("call_tool", {"name": "read_graph", "arguments": {}})
                check(not r.is_error, f"one server: called ({text_of(r)[:60]!r})")

        await stateless(url)

        # A reload that drops a member: its tools leave the index of an open session.
        async with streamable_http_client(f"{url}/servers/team/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                r = await s.call_tool("search_tools", {"query": "git commit", "limit": 3})
                check(found(r)[0].startswith("git__"), f"before the reload: git's tools found ({found(r)})")
                with open(conf, "w") as f:
                    json.dump(config(work, [m for m in MEMBERS if m != "git"]), f, indent=2)
                gw.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    r = await s.call_tool("search_tools", {"query": "git commit", "limit": 3})
                    if not any(n.startswith("git__") for n in found(r)):
                        break
                    await asyncio.sleep(0.5)
                check(not any(n.startswith("git__") for n in found(r)), f"after the reload: git's tools gone ({found(r)})")
    finally:
        gw.terminate()
        gw.wait(timeout=20)
        fake.terminate()
    print(summary())


asyncio.run(main())
