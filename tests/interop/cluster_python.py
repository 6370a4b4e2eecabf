"""Interop: the official SDK clients through nginx round-robin (no stickiness) in front of three
`aareguru-mcp --sse --redis` replicas sharing one real `redis-server`.

For the in-process backend (sessions roam between replicas) and the per-session backend (each
session pinned to the replica holding its child; the others forward to it):
1. the Python SDK (mcp 2.3.0) runs the full battery — every tool, resource, template and prompt —
   over Streamable HTTP (`Client`, legacy and auto mode) and over HTTP+SSE (`sse_client`);
2. the TypeScript SDK (1.32) does the same over both transports (cluster_ts.mjs);
3. the replicas report sessions roamed (in-process) or requests forwarded (per-session).

Usage: python cluster_python.py BIN FAKE_UPSTREAM NODE_DIR
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


from battery import every_transport
from common import check, free_port, start_fake, start_gateway, start_nginx, start_redis, summary, wait_port

BIN, FAKE, NODE_DIR = sys.argv[1], sys.argv[2], sys.argv[3]


def health(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/health") as r:
        return json.loads(r.read())


async def main() -> None:
    fake, base = start_fake(FAKE)
    tmp = tempfile.mkdtemp()
    redis, redis_url = start_redis(tmp)
    procs: list[subprocess.Popen] = []
    try:
        for backend in ["in-process", "per-session"]:
            replicas = []
            for i in range(3):
                proc, url = start_gateway(
                    BIN,
                    ["--backend", backend, "--base-url", base, "--redis", redis_url,
                     "--replica-id", f"{backend}-{i}", "--redis-prefix", backend],
                )
                procs.append(proc)
                replicas.append(url)
            nginx, lb = start_nginx(tmp, [u.removeprefix("http://") for u in replicas])
            procs.append(nginx)
            deadline = time.monotonic() + 10
            while any(len(health(r)["cluster"]["peers"]) != 3 for r in replicas):
                check(time.monotonic() < deadline, f"{backend}: replicas see each other")
                time.sleep(0.1)

            await every_transport(lb, f"python {backend}")
            ts = subprocess.run(
                ["node", "cluster_ts.mjs", lb, backend], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
            )
            print(ts.stdout, end="")
            check(ts.returncode == 0, f"typescript {backend}: {ts.stderr.strip()[-2000:]}")

            roamed = sum(health(r)["cluster"]["roamed"] for r in replicas)
            forwarded = sum(health(r)["cluster"]["forwarded"] for r in replicas)
            if backend == "in-process":
                check(roamed > 0, f"{backend}: sessions roamed ({roamed})")
            else:
                check(roamed == 0 and forwarded > 0, f"{backend}: forwarded {forwarded}, roamed {roamed}")
            print(f"{backend}: ok through nginx (roamed {roamed}, forwarded {forwarded})")
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=20)
            procs.clear()
    finally:
        for p in procs:
            p.kill()
        redis.terminate()
        fake.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(summary())


asyncio.run(main())
