"""Interop (issue 23, work in progress): one trace from the host to the tool. A Python SDK client
inside a span of its own calls a tool through the gateway (`--otel`) to a Python SDK stdio server
that exports its own spans; a small OTLP receiver (otlp_receiver.py, on opentelemetry-proto) gets
them all, and the spans must chain: the client's span → the gateway's server span (MCP
attribute names) → the child's server span, one trace id.

Usage: python otel_python.py BIN FAKE_UPSTREAM   (a venv with mcp 2.3.0, opentelemetry-sdk and the OTLP/HTTP
exporter)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from common import check, start_fake, start_gateway, summary

BIN, FAKE = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))


def start_receiver() -> tuple[subprocess.Popen, str, list[dict]]:
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "otlp_receiver.py")], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    check(line.startswith("listening on "), f"receiver started ({line!r})")
    spans: list[dict] = []

    def read() -> None:
        for line in proc.stdout:
            spans.append(json.loads(line))

    threading.Thread(target=read, daemon=True).start()
    return proc, "http://" + line.removeprefix("listening on "), spans


async def chain(label: str, trace_id: str, spans: list[dict]) -> None:
    """The spans of trace `trace_id` chain host → client → gateway → child."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ours = [s for s in spans if s["trace_id"] == trace_id]
        if (
            any(s["service"] == "py-server" and "add" in s["name"] for s in ours)
            and any(s["service"] == "aareguru-mcp" and s["name"].startswith("tools/call") for s in ours)
            and any(s["name"] == "host turn" for s in ours)
        ):
            break
        await asyncio.sleep(0.2)
    ours = [s for s in spans if s["trace_id"] == trace_id]
    print(label)
    for s in ours:
        print(f"  {s['service']:12} {s['name']:30} kind={s['kind']} span={s['span_id']} parent={s['parent']}")
    by_id = {s["span_id"]: s for s in ours}
    client = next((s for s in ours if s["service"] == "host" and "tools/call" in s["name"]), None)
    gateway = next((s for s in ours if s["service"] == "aareguru-mcp" and s["name"].startswith("tools/call")), None)
    child = next((s for s in ours if s["service"] == "py-server" and "add" in s["name"]), None)
    check(client is not None, f"{label}: the client's span of the call arrived")
    check(gateway is not None and gateway["parent"] == client["span_id"], f"{label}: the gateway's span is the client's child")
    check(gateway["attributes"].get("mcp.method.name") == "tools/call"
          and gateway["attributes"].get("gen_ai.tool.name") == "add", f"{label}: convention attributes ({gateway['attributes']})")
    check(child is not None and child["parent"] == gateway["span_id"], f"{label}: the child's span is the gateway's child ({child})")
    check(by_id.get(client["parent"], {}).get("name") == "host turn", f"{label}: the client's span is inside the host's turn")


async def calls_through(url: str, n: int) -> float:
    """`n` calls in one session; the slowest one's seconds."""
    slowest = 0.0
    async with streamable_http_client(f"{url}/servers/py/mcp") as (read, write):
        async with ClientSession(read, write) as s:
            await s.initialize()
            for i in range(n):
                started = time.perf_counter()
                r = await s.call_tool("add", {"a": i, "b": 1})
                slowest = max(slowest, time.perf_counter() - started)
                check(r.structured_content == {"result": i + 1}, f"call {i} answered")
    return slowest


async def collector_trouble(conf: str) -> None:
    """The collector down, slow (3 s per export), or answering 500: every call still answers
    at once."""
    down = ("down", None, "http://127.0.0.1:9")
    for label, args, endpoint in [down, ("slow", ["--slow", "3"], None), ("500", ["--fail", "1000"], None)]:
        receiver = None
        if endpoint is None:
            receiver = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "otlp_receiver.py"), *args], stdout=subprocess.PIPE, text=True
            )
            endpoint = "http://" + receiver.stdout.readline().strip().removeprefix("listening on ")
        gw, url = start_gateway(
            BIN, ["--config", conf, "--otel"], env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        )
        try:
            slowest = await calls_through(url, 50)
            print(f"collector {label}: 50 calls, the slowest {slowest * 1e3:.0f} ms")
            check(slowest < 1.0, f"collector {label}: no call waits on it ({slowest:.2f} s)")
            outcome = "exported" if label == "slow" else "failed"
            counted = 0.0
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and counted == 0:
                with urllib.request.urlopen(f"{url}/metrics") as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith(f'aareguru_gateway_otel_spans_total{{outcome="{outcome}"}}'):
                            counted = float(line.split()[-1])
                await asyncio.sleep(0.3)
            print(f"collector {label}: /metrics counts {counted:.0f} spans {outcome}")
            check(counted > 0, f"collector {label}: /metrics counts the spans {outcome}")
        finally:
            gw.terminate()
            gw.wait(timeout=20)
            if receiver:
                receiver.terminate()


async def main() -> None:
    receiver, endpoint, spans = start_receiver()
    fake, base = start_fake(FAKE)
    provider = TracerProvider(resource=Resource.create({"service.name": "host"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("otel-interop")

    work = tempfile.mkdtemp()
    conf = os.path.join(work, "servers.json")
    with open(conf, "w") as f:
        json.dump({"mcpServers": {
            "py": {
                "command": sys.executable, "args": [os.path.join(HERE, "py_server_traced.py")],
                "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "py-server"},
            },
            "aare": {"command": BIN, "args": ["--stdio", "--base-url", base]},
        }}, f)
    gw, url = start_gateway(BIN, ["--config", conf, "--otel"], env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        for label, connect in [
            ("Streamable HTTP", lambda: streamable_http_client(f"{url}/servers/py/mcp")),
            ("HTTP+SSE", lambda: sse_client(f"{url}/servers/py/sse")),
        ]:
            with tracer.start_as_current_span("host turn") as root:
                trace_id = format(root.get_span_context().trace_id, "032x")
                async with connect() as streams:
                    async with ClientSession(streams[0], streams[1]) as s:
                        await s.initialize()
                        r = await s.call_tool("add", {"a": 2, "b": 40})
                        check(r.structured_content == {"result": 42}, f"{label}: the call answered")
            await chain(label, trace_id, spans)
        # 2026-07-28: no session; the request's own _meta carries the context.
        with tracer.start_as_current_span("host turn") as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            async with Client(f"{url}/servers/py/mcp") as c:
                check(c.protocol_version == "2026-07-28", f"2026-07-28 negotiated ({c.protocol_version})")
                r = await c.call_tool("add", {"a": 2, "b": 40})
                check(r.structured_content == {"result": 42}, "2026-07-28: the call answered")
        await chain("2026-07-28", trace_id, spans)

        # This program's own server in process: its tool span and the upstream request's span
        # are children of the gateway's.
        with tracer.start_as_current_span("host turn") as root:
            trace_id = format(root.get_span_context().trace_id, "032x")
            async with streamable_http_client(f"{url}/servers/aare/mcp") as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    r = await s.call_tool("get_current_temperature", {"city": "bern"})
                    check(not r.is_error, "in process: the call answered")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ours = [s for s in spans if s["trace_id"] == trace_id]
            if any(s["name"] == "GET" for s in ours) and any(s["name"].startswith("tools/call") for s in ours):
                break
            await asyncio.sleep(0.2)
        ours = [s for s in spans if s["trace_id"] == trace_id]
        for s in ours:
            print(f"  {s['service']:12} {s['name']:40} kind={s['kind']} span={s['span_id']} parent={s['parent']}")
        gateway = next((s for s in ours if s["name"] == "tools/call get_current_temperature"), None)
        tool = next((s for s in ours if s["name"] == "execute_tool get_current_temperature"), None)
        get = next((s for s in ours if s["name"] == "GET"), None)
        check(gateway is not None and tool is not None and tool["parent"] == gateway["span_id"], "in process: the tool's span is the gateway's child")
        check(get is not None and get["parent"] == tool["span_id"], "in process: the upstream request's span is the tool's child")
        check(get["attributes"].get("http.response.status_code") == 200 and "url.full" in get["attributes"], f"in process: HTTP attributes ({get['attributes']})")

        # The host and the child keep exporting to the receiver; only the gateway's collector
        # is in trouble.
        await collector_trouble(conf)
    finally:
        gw.terminate()
        gw.wait(timeout=20)
        receiver.terminate()
        fake.terminate()
    print(summary())


asyncio.run(main())
