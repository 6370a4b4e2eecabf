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
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from common import check, free_port, start_fake, start_gateway, start_redis, summary, wait_port

BIN, FAKE = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
# The histogram points the receiver got (otlp_receiver.py's metric lines).
METRICS: list[dict] = []


def start_receiver(*args: str) -> tuple[subprocess.Popen, str, list[dict]]:
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "otlp_receiver.py"), *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    check(line.startswith("listening on "), f"receiver started ({line!r})")
    spans: list[dict] = []

    def read() -> None:
        for line in proc.stdout:
            entry = json.loads(line)
            (METRICS if "metric" in entry else spans).append(entry)

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
    """The collector down (OTLP/HTTP and gRPC), slow (3 s per export), or answering 500: every
    call still answers at once."""
    down = ("down", None, "http://127.0.0.1:9")
    grpc_down = ("down (gRPC)", None, "http://127.0.0.1:9")
    for label, args, endpoint in [down, grpc_down, ("slow", ["--slow", "3"], None), ("500", ["--fail", "1000"], None)]:
        receiver = None
        if endpoint is None:
            receiver = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "otlp_receiver.py"), *args], stdout=subprocess.PIPE, text=True
            )
            endpoint = "http://" + receiver.stdout.readline().strip().removeprefix("listening on ")
        # A queue of 16: the slow collector's gateway must turn spans away (and count them).
        gw, url = start_gateway(
            BIN, ["--config", conf, "--otel"], env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
                                                   "OTEL_BSP_MAX_QUEUE_SIZE": "16",
                                                   "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if "gRPC" in label else "http/protobuf"}
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
            if label == "slow":
                with urllib.request.urlopen(f"{url}/metrics") as r:
                    dropped = sum(float(line.split()[-1]) for line in r.read().decode().splitlines()
                                  if line.startswith('aareguru_gateway_otel_spans_total{outcome="dropped"}'))
                print(f"collector slow: /metrics counts {dropped:.0f} spans dropped (a full queue of 16)")
                check(dropped > 0, "collector slow: the spans a full queue turned away are counted")
        finally:
            gw.terminate()
            gw.wait(timeout=20)
            if receiver:
                receiver.terminate()


def spans_of(spans: list[dict], trace_id: str, want, within: float = 15) -> list[dict]:
    """The spans of `trace_id`, once `want(spans)` holds (or `within` seconds have passed)."""
    deadline = time.monotonic() + within
    while True:
        ours = [s for s in spans if s["trace_id"] == trace_id]
        if want(ours) or time.monotonic() > deadline:
            for s in ours:
                print(f"  {s['service']:12} {s['name']:34} kind={s['kind']} span={s['span_id']} parent={s['parent']}")
            return ours
        time.sleep(0.2)


def has(spans: list[dict], *wanted: tuple[str, str | None]) -> bool:
    """Whether a span of each (service, name) is among `spans` (any name for `None`)."""
    return all(any(s["service"] == service and name in (None, s["name"]) for s in spans) for service, name in wanted)


def post(url: str, body: dict, headers: dict | None = None) -> tuple[dict, dict]:
    """A Streamable HTTP POST; its headers and the JSON-RPC answer (JSON or the SSE stream's)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
        answer: dict = {}
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            for line in text.splitlines():
                if line.startswith("data:") and '"id"' in line:
                    answer = json.loads(line[5:])
        elif text:
            answer = json.loads(text)
        return dict(r.headers), answer


def new_ids() -> tuple[str, str]:
    return format(random.getrandbits(128), "032x"), format(random.getrandbits(64), "016x")


async def through_replicas(conf: str, endpoint: str, spans: list[dict]) -> None:
    """A session opened on replica A, its call sent to replica B with a `traceparent` header
    only: B's forwarding span → A's server span → the child's span, one trace."""
    tmp = tempfile.mkdtemp()
    redis, redis_url = start_redis(tmp)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    a, url_a = start_gateway(BIN, ["--config", conf, "--otel", "--redis", redis_url, "--replica-id", "otel-a"],
                             env={**env, "OTEL_SERVICE_NAME": "replica-a"})
    b, url_b = start_gateway(BIN, ["--config", conf, "--otel", "--redis", redis_url, "--replica-id", "otel-b"],
                             env={**env, "OTEL_SERVICE_NAME": "replica-b"})
    try:
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"{url_b}/health") as r:
                if len(json.loads(r.read())["cluster"]["peers"]) == 2:
                    break
            check(time.monotonic() < deadline, "the two replicas see each other")
            time.sleep(0.1)
        headers, answer = post(f"{url_a}/servers/py/mcp", {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "otel-test", "version": "1"}}})
        sid = {k.lower(): v for k, v in headers.items()}["mcp-session-id"]
        version = answer["result"]["protocolVersion"]
        common = {"mcp-session-id": sid, "mcp-protocol-version": version}
        post(f"{url_a}/servers/py/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
        trace_id, parent = new_ids()
        headers, answer = post(f"{url_b}/servers/py/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                            "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
                               {**common, "traceparent": f"00-{trace_id}-{parent}-01"})
        check(answer.get("result", {}).get("structuredContent") == {"result": 3}, f"forwarded: the call answered ({answer})")
        print("two replicas")
        ours = spans_of(spans, trace_id, lambda o: has(o, ("replica-b", None), ("replica-a", "tools/call add"), ("py-server", None)))
        forward = next((s for s in ours if s["service"] == "replica-b"), None)
        owner = next((s for s in ours if s["service"] == "replica-a" and s["name"] == "tools/call add"), None)
        child = next((s for s in ours if s["service"] == "py-server" and "add" in s["name"]), None)
        check(forward is not None and forward["parent"] == parent and forward["kind"] == 3,
              f"forwarded: B's forwarding span is a client span under the header's context ({forward})")
        check(owner is not None and owner["parent"] == forward["span_id"], f"forwarded: A's server span is under B's ({owner})")
        check(owner["attributes"].get("mcp.session.id") == sid, "forwarded: A's span names the session")
        check(child is not None and child["parent"] == owner["span_id"], f"forwarded: the child's span is under A's ({child})")
    finally:
        for p in (a, b):
            p.terminate()
            p.wait(timeout=20)
        redis.terminate()


async def authorized_and_shared(conf: str, endpoint: str, spans: list[dict]) -> None:
    """With an API key: the key's check is a step of each request it lets in (timed before the
    request's span began, within it); on a shared child, the request's routing is a step too,
    and the child's span still joins the trace."""
    gw, url = start_gateway(BIN, ["--config", conf, "--otel", "--api-key", "otel-key-1"], env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "keyed"})
    try:
        mcp = f"{url}/servers/pyshared/mcp"
        trace_id, parent = new_ids()
        key = {"x-api-key": "otel-key-1", "traceparent": f"00-{trace_id}-{parent}-01"}
        headers, answer = post(mcp, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "otel-test", "version": "1"}}}, key)
        common = {**key, "mcp-session-id": {k.lower(): v for k, v in headers.items()}["mcp-session-id"],
                  "mcp-protocol-version": answer["result"]["protocolVersion"]}
        post(mcp, {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
        _, answer = post(mcp, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                               "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}, common)
        check(answer.get("result", {}).get("structuredContent") == {"result": 3}, f"keyed: the call answered ({answer})")
        print("API key, shared child")
        ours = spans_of(spans, trace_id, lambda o: sum(s["name"] == "authorization" for s in o) >= 2
                        and has(o, ("keyed", "initialize"), ("keyed", "tools/call add"))
                        and any(s["name"] == "route on shared child" for s in o)
                        and any(s["service"] == "py-server" and "add" in s["name"] for s in o))
        for method in ("initialize", "tools/call add"):
            request = next((s for s in ours if s["service"] == "keyed" and s["name"] == method), None)
            check(request is not None, f"keyed: the {method} span arrived")
            auth = next((s for s in ours if s["name"] == "authorization" and s["parent"] == request["span_id"]), None)
            check(auth is not None and auth["attributes"].get("gateway.auth.method") == "api_key",
                  f"keyed: the key's check is a step of {method} ({auth})")
            check(auth["start"] <= auth["end"] <= request["end"], f"keyed: the check ran before {method} ended")
        call = next(s for s in ours if s["service"] == "keyed" and s["name"] == "tools/call add")
        route = next((s for s in ours if s["name"] == "route on shared child" and s["parent"] == call["span_id"]), None)
        check(route is not None and route["attributes"].get("gateway.outcome") == "sent"
              and route["attributes"].get("gateway.child") == "shared-0", f"keyed: the shared child's routing is a step ({route})")
        child = next((s for s in ours if s["service"] == "py-server" and "add" in s["name"]), None)
        check(child is not None and child["parent"] == call["span_id"], f"keyed: the shared child's span is the call's child ({child})")
        # A request the key refuses has no span, and costs nothing but the refusal.
        try:
            post(mcp, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, {**common, "x-api-key": "wrong"})
            check(False, "keyed: a wrong key is refused")
        except urllib.error.HTTPError as e:
            check(e.code == 401, f"keyed: a wrong key is refused ({e.code})")
    finally:
        gw.terminate()
        gw.wait(timeout=20)


async def log_lines(url: str, log: list[dict], spans: list[dict], tracer) -> None:
    """A JSON log line written inside a request (the session's opening, at info) names the
    trace and the span it was written in."""
    with tracer.start_as_current_span("host turn") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        async with streamable_http_client(f"{url}/servers/aare/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
    print("log lines")
    ours = spans_of(spans, trace_id, lambda o: has(o, ("aareguru-mcp", "initialize")))
    opening = next((s for s in ours if s["service"] == "aareguru-mcp" and s["name"] == "initialize"), None)
    lines = [l for l in log if l.get("trace_id") == trace_id]
    check(opening is not None and any(l.get("message") == "session opened" and l.get("span_id") == opening["span_id"]
                                      for l in lines),
          f"log: the line written inside the initialize names its trace and span ({lines})")


async def quiet_log(conf: str, endpoint: str, spans: list[dict], tracer) -> None:
    """`--log-level warn` keeps the log quiet, not the traces."""
    port = free_port()
    gw = subprocess.Popen([BIN, "--sse", "--port", str(port), "--log-level", "warn", "--config", conf, "--otel"],
                          stderr=subprocess.DEVNULL, env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                                         "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": "quiet"})
    try:
        wait_port(port, "the quiet gateway")
        trace_id = await traced_call(tracer, f"http://127.0.0.1:{port}/servers/py/mcp", "add", "quiet")
        print("--log-level warn")
        ours = spans_of(spans, trace_id, lambda o: has(o, ("quiet", "tools/call add"), ("quiet", "open child")))
        check(has(ours, ("quiet", "tools/call add"), ("quiet", "open child")),
              "--log-level warn: the request's span and its steps are exported")
    finally:
        gw.terminate()
        gw.wait(timeout=20)


async def traced_call(tracer, url: str, tool: str, label: str) -> str:
    """Inside a host span: a session at `url` calls `tool` (2 + 40); the trace id."""
    with tracer.start_as_current_span("host turn") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                r = await s.call_tool(tool, {"a": 2, "b": 40})
                check(r.structured_content == {"result": 42}, f"{label}: the call answered ({r})")
    return trace_id


async def through_group(conf: str, url: str, spans: list[dict], tracer) -> None:
    """Through a federated group: the gateway's span → the member's step, and the member's
    child → its own span, one trace."""
    trace_id = await traced_call(tracer, f"{url}/servers/team/mcp", "py_add", "group")
    print("federated group")
    ours = spans_of(spans, trace_id, lambda o: any(s["service"] == "py-server" and "add" in s["name"] for s in o)
                    and any(s["name"] == "member py" for s in o) and any(s["name"] == "tools/call py_add" for s in o))
    gateway = next((s for s in ours if s["name"] == "tools/call py_add"), None)
    member = next((s for s in ours if s["name"] == "member py"), None)
    child = next((s for s in ours if s["service"] == "py-server" and "add" in s["name"]), None)
    check(gateway is not None and gateway["attributes"].get("gen_ai.tool.name") == "py_add", f"group: the gateway's span ({gateway})")
    check(member is not None and member["parent"] == gateway["span_id"]
          and member["attributes"].get("gateway.member") == "py", f"group: the member's step is the gateway's child ({member})")
    check(child is not None and child["parent"] in (gateway["span_id"], member["span_id"]), f"group: the child's span is in the chain ({child})")


async def through_bridge(url: str, endpoint: str, spans: list[dict], tracer) -> None:
    """A host that starts `--connect` as its stdio server: the host's span → the bridge's client
    span → the gateway's server span → the child's span."""
    params = StdioServerParameters(command=BIN, args=["--connect", f"{url}/servers/py/mcp", "--otel"], env={
        **os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "bridge", "OTEL_BSP_SCHEDULE_DELAY": "200"})
    with tracer.start_as_current_span("host turn") as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                r = await s.call_tool("add", {"a": 2, "b": 40})
                check(r.structured_content == {"result": 42}, "bridge: the call answered")
    print("the --connect bridge")
    ours = spans_of(spans, trace_id, lambda o: any(s["service"] == "py-server" and "add" in s["name"] for s in o)
                    and has(o, ("bridge", "tools/call add"), ("aareguru-mcp", "tools/call add")))
    client = next((s for s in ours if s["service"] == "host" and "tools/call" in s["name"]), None)
    bridge = next((s for s in ours if s["service"] == "bridge" and s["name"] == "tools/call add"), None)
    gateway = next((s for s in ours if s["service"] == "aareguru-mcp" and s["name"] == "tools/call add"), None)
    child = next((s for s in ours if s["service"] == "py-server" and "add" in s["name"]), None)
    check(bridge is not None and bridge["kind"] == 3 and bridge["parent"] == client["span_id"],
          f"bridge: its client span is under the host's ({bridge})")
    check(bridge["attributes"].get("server.address") == "127.0.0.1", "bridge: server.address is the gateway's host")
    check(gateway is not None and gateway["parent"] == bridge["span_id"], f"bridge: the gateway's span is under the bridge's ({gateway})")
    check(child is not None and child["parent"] == gateway["span_id"], f"bridge: the child's span is under the gateway's ({child})")


async def sampling(conf: str, endpoint: str, spans: list[dict]) -> None:
    """OTEL_TRACES_SAMPLER=traceidratio at 0.25: of 400 calls without a parent, about a quarter
    are exported (within four standard deviations)."""
    gw, url = start_gateway(BIN, ["--config", conf, "--otel"], env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "sampled",
        "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    n = 400
    try:
        async with streamable_http_client(f"{url}/servers/py/mcp") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                for i in range(n):
                    await s.call_tool("add", {"a": i, "b": 0})
        await asyncio.sleep(1.5)
        got = sum(1 for s in spans if s["service"] == "sampled" and s["name"] == "tools/call add")
        sd = (n * 0.25 * 0.75) ** 0.5
        print(f"sampling 0.25: {got} of {n} calls exported (expected {n * 0.25:.0f} ± {4 * sd:.0f})")
        check(abs(got - n * 0.25) <= 4 * sd, f"sampling ratio honoured ({got} of {n})")
    finally:
        gw.terminate()
        gw.wait(timeout=20)


async def meta_untouched(conf: str) -> None:
    """Export off: the client's `_meta` trace keys (and the others) reach the child as sent —
    sent raw, since the Python SDK client puts its own context there."""
    gw, url = start_gateway(BIN, ["--config", conf])
    sent = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", "baggage": "user=ana%20m,  tier=gold;p=1",
            "io.example/other": {"k": [1, "two"]}}
    try:
        mcp = f"{url}/servers/py/mcp"
        headers, answer = post(mcp, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "otel-test", "version": "1"}}})
        common = {"mcp-session-id": {k.lower(): v for k, v in headers.items()}["mcp-session-id"],
                  "mcp-protocol-version": answer["result"]["protocolVersion"]}
        post(mcp, {"jsonrpc": "2.0", "method": "notifications/initialized"}, common)
        _, answer = post(mcp, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                               "params": {"name": "echo_meta", "arguments": {}, "_meta": sent}}, common)
        got = json.loads(answer["result"]["content"][0]["text"])
        for key, value in sent.items():
            check(got.get(key) == value, f"export off: _meta {key} reaches the child as sent ({got.get(key)!r})")
    finally:
        gw.terminate()
        gw.wait(timeout=20)


def point(metric: str, service: str, **attributes) -> dict | None:
    """The newest histogram point of `metric` from `service` with `attributes`, if any."""
    return next((m for m in reversed(METRICS) if m["metric"] == metric and m["service"] == service
                 and all(m["attributes"].get(k) == v for k, v in attributes.items())), None)


async def durations() -> None:
    """The gateway exports mcp.server.operation.duration (seconds, the conventions' attributes)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not point("mcp.server.operation.duration", "aareguru-mcp",
                                                      **{"mcp.method.name": "tools/call", "gen_ai.tool.name": "add"}):
        await asyncio.sleep(0.2)
    p = point("mcp.server.operation.duration", "aareguru-mcp", **{"mcp.method.name": "tools/call", "gen_ai.tool.name": "add"})
    print(f"mcp.server.operation.duration: {p}")
    check(p is not None and p["unit"] == "s" and p["count"] >= 1 and 0 < p["sum"] < 60,
          "the gateway exports mcp.server.operation.duration of its tools/call add")
    check(p["attributes"].get("network.transport") == "tcp", "mcp.server.operation.duration: network.transport")
    failed = point("mcp.server.operation.duration", "aareguru-mcp", **{"mcp.method.name": "initialize"})
    check(failed is not None, "mcp.server.operation.duration of initialize")


async def client_durations() -> None:
    """The bridge exported mcp.client.operation.duration of what it sent on (at its exit)."""
    p = point("mcp.client.operation.duration", "bridge", **{"mcp.method.name": "tools/call", "gen_ai.tool.name": "add"})
    print(f"mcp.client.operation.duration: {p}")
    check(p is not None and p["count"] == 1 and p["unit"] == "s", "the bridge exports mcp.client.operation.duration")


async def over_grpc(conf: str, tracer) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the spans and the metrics reach a gRPC receiver."""
    receiver, endpoint, got = start_receiver("--grpc")
    gw, url = start_gateway(BIN, ["--config", conf, "--otel"], env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "grpc-gateway",
        "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500"})
    try:
        trace_id = await traced_call(tracer, f"{url}/servers/py/mcp", "add", "grpc")
        print("OTLP over gRPC")
        ours = spans_of(got, trace_id, lambda o: any(s["name"] == "tools/call add" for s in o))
        span = next((s for s in ours if s["name"] == "tools/call add"), None)
        check(span is not None and span["service"] == "grpc-gateway" and span["kind"] == 2
              and span["attributes"].get("mcp.method.name") == "tools/call", f"grpc: the gateway's span arrived ({span})")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not point("mcp.server.operation.duration", "grpc-gateway"):
            await asyncio.sleep(0.2)
        check(point("mcp.server.operation.duration", "grpc-gateway") is not None, "grpc: the duration metric arrived")
    finally:
        gw.terminate()
        gw.wait(timeout=20)
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
            "pyshared": {
                "command": sys.executable, "args": [os.path.join(HERE, "py_server_traced.py")], "gateway": {"backend": "shared"},
                "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "py-server"},
            },
            "aare": {"command": BIN, "args": ["--stdio", "--base-url", base]},
        }, "groups": {"team": {"members": ["py", "aare"], "prefix": "always", "separator": "_"}}}, f)
    log: list[dict] = []
    gw, url = start_gateway(BIN, ["--config", conf, "--otel"], env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "500"},
        log=log)
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

        await log_lines(url, log, spans, tracer)
        await durations()
        await through_group(conf, url, spans, tracer)
        await through_bridge(url, endpoint, spans, tracer)
        await client_durations()
        await through_replicas(conf, endpoint, spans)
        await authorized_and_shared(conf, endpoint, spans)
        await over_grpc(conf, tracer)
        await sampling(conf, endpoint, spans)
        await quiet_log(conf, endpoint, spans, tracer)
        await meta_untouched(conf)

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
