"""Part of tests/bench/federation.sh: `tools/list` latency of a 10-member group (cold: a new
session's first list asks every member; cached: later lists) against one member alone, and the
gateway's memory per idle federated session. Standard library only.

Usage: python3 federation_lists.py GATEWAY_URL GATEWAY_PID
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.request

URL, PID = sys.argv[1], int(sys.argv[2])


def post(path: str, body: dict, session: str | None = None) -> tuple[dict, str | None]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-06-18"}
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req) as r:
        text = r.read().decode()
        sid = r.headers.get("mcp-session-id")
    if text.startswith("event:") or text.startswith("data:") or "\ndata:" in text:
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return (json.loads(text) if text.strip() else {}), sid


def open_session(path: str) -> str:
    _, sid = post(path, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
    post(path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    return sid


def timed_list(path: str, sid: str) -> float:
    t = time.perf_counter()
    r, _ = post(path, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, sid)
    took = (time.perf_counter() - t) * 1000
    assert r["result"]["tools"], r
    return took


def p50(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ms"


def rss_kib() -> int:
    with open(f"/proc/{PID}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


for path, label in [("/servers/s1/mcp", "one member alone"), ("/servers/g/mcp", "10-member group")]:
    cold, cached = [], []
    for _ in range(30):
        sid = open_session(path)
        cold.append(timed_list(path, sid))
        cached.extend(timed_list(path, sid) for _ in range(10))
    print(f"tools/list {label}: first in a session p50 {p50(cold)}, later p50 {p50(cached)}")

before = rss_kib()
n = 500
for _ in range(n):
    open_session("/servers/g/mcp")
time.sleep(1)
after = rss_kib()
print(f"idle federated sessions: {n} opened, gateway RSS {before // 1024} → {after // 1024} MiB, "
      f"{(after - before) / n:.1f} KiB per session (10 member sessions each)")
