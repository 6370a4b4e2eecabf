"""deploy/compose.yaml, brought up by podman-compose as users bring it up (tests/container/run.sh
starts this after the image test, with the image it built):

1. `podman-compose up -d` of the file as it is, plus an override that only adds the fake
   Aareguru API and points the replicas at it, with Redis and nginx images made from Debian's
   packages (no registry here) and the secrets made by deploy/compose/new-secrets.sh. Three
   replicas come up and see each other; the Python SDK's whole battery passes through nginx over
   Streamable HTTP (2025-11-25 and 2026-07-28) and HTTP+SSE, with the API key; without it, 401.
2. Twelve Streamable HTTP sessions call without pause while one replica container is killed
   (SIGKILL) and later started again: not one call fails, every session carries on (the
   README's table: roaming sessions).
3. The same while Redis is killed and started again, empty: not one call fails, and every
   replica's /health is `ok` again afterwards.
4. `podman-compose down` removes it all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from battery import every_transport
from common import check, free_port, summary

IMAGE, BASE_IMAGE, REDIS_IMAGE, NGINX_IMAGE, FAKE, ROOT = sys.argv[1:7]
PROJECT = "aam-compose"
PODMAN = ["podman", "--runtime", "runc"]
SESSIONS = 12


def run(*args: str, timeout: float = 300, env: dict | None = None) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r.stdout.strip()


def podman(*args: str, timeout: float = 120) -> str:
    return run(*PODMAN, *args, timeout=timeout)


def replicas() -> list[str]:
    out = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                 "--format", "{{.Names}}")
    return sorted(n for n in out.split() if "_gateway_" in n)


def address(container: str) -> str | None:
    """The container's address on the compose network: rootful bridges are routed from the
    host, so each replica's own /health can be read."""
    out = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container)
    ips = out.split()
    return ips[0] if ips else None


def health(ip: str) -> dict:
    with urllib.request.urlopen(f"http://{ip}:8000/health", timeout=3) as r:
        return json.loads(r.read())


def every_replica_ok(want: int, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        try:
            states = []
            for c in replicas():
                ip = address(c)
                h = health(ip) if ip else {}
                states.append((c, h.get("status"), len(h.get("cluster", {}).get("peers", []))))
            last = str(states)
            if len(states) == want and all(s == "ok" and p == want for _, s, p in states):
                check(True, f"{what}: {want} replicas ok, each seeing {want}")
                return
        except (OSError, RuntimeError, ValueError) as e:
            last = str(e)
        time.sleep(0.5)
    check(False, f"{what}: replicas not all ok: {last}")


async def load(lb: str, key: str, stop: asyncio.Event, counts: dict) -> None:
    """One session calling without pause until `stop`; every failure is counted."""
    async def seen(response) -> None:
        if response.status_code >= 400:
            await response.aread()
            counts["statuses"].append(f"{response.request.method} {response.status_code} {response.text[:200]}")

    async with httpx2.AsyncClient(headers={"X-API-Key": key}, timeout=60,
                                  event_hooks={"response": [seen]}) as http:
        async with Client(streamable_http_client(f"{lb}/mcp", http_client=http), mode="legacy") as c:
            while not stop.is_set():
                try:
                    r = await c.call_tool("get_current_temperature", {"city": "thun"})
                    if r.is_error or r.structured_content["station"]["slug"] != "thun":
                        counts["failed"] += 1
                        counts["why"].append(str(r)[:300])
                    else:
                        counts["ok"] += 1
                except Exception as e:  # noqa: BLE001 — every kind of failure counts
                    counts["failed"] += 1
                    counts["why"].append(repr(e)[:300])
            counts["sessions_done"] += 1


async def under_load(lb: str, key: str, label: str, fault) -> None:
    stop = asyncio.Event()
    counts = {"ok": 0, "failed": 0, "why": [], "sessions_done": 0, "statuses": []}
    tasks = [asyncio.create_task(load(lb, key, stop, counts)) for _ in range(SESSIONS)]
    await asyncio.sleep(3)
    before = counts["ok"]
    await asyncio.to_thread(fault)
    await asyncio.sleep(8)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r)[:300] for r in results if isinstance(r, BaseException)]
    check(before > 0 and counts["ok"] > before, f"{label}: calls went on ({before} before, {counts['ok']} in all)")
    check(counts["failed"] == 0 and not errors,
          f"{label}: not one call failed ({counts['failed']} failed: {counts['why'][:3]}; {errors[:3]}; "
          f"HTTP errors: {counts['statuses'][:5]})")
    check(counts["sessions_done"] == SESSIONS, f"{label}: all {SESSIONS} sessions carried on to the end")
    print(f"{label}: {counts['ok']} calls, {counts['failed']} failed")


def wait_lb(lb: str, key: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"{lb}/health")
            with urllib.request.urlopen(req, timeout=3) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5)
    raise RuntimeError("nginx did not answer /health")


async def main() -> None:
    work = tempfile.mkdtemp(prefix="aam-compose-")
    secrets = os.path.join(work, "secrets")
    out = run(f"{ROOT}/deploy/new-secrets.sh", secrets, "tester")
    key = out.splitlines()[-1].strip()
    check(len(key) >= 40 and key not in open(os.path.join(secrets, "api-keys.json")).read(),
          "new-secrets.sh printed a key and stored only its hash")
    mode = oct(os.stat(secrets).st_mode & 0o777)
    check(mode == "0o700", f"the secrets folder is the owner's alone ({mode})")

    # The only addition: the fake Aareguru API as a service, and the replicas pointed at it.
    override = os.path.join(work, "compose.test.yaml")
    with open(override, "w") as f:
        f.write(f"""
services:
  fake-upstream:
    image: {BASE_IMAGE}
    command: ["/usr/local/bin/fake_upstream", "0.0.0.0:9100"]
    volumes: ["{FAKE}:/usr/local/bin/fake_upstream:ro"]
  gateway:
    environment:
      AAREGURU_BASE_URL: http://fake-upstream:9100
""")
    port = free_port()
    lb = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AAREGURU_MCP_IMAGE": IMAGE, "REDIS_IMAGE": REDIS_IMAGE, "NGINX_IMAGE": NGINX_IMAGE,
           "AAREGURU_MCP_PUBLISH": f"127.0.0.1:{port}", "AAREGURU_MCP_SECRETS": secrets}
    compose = ["podman-compose", "-p", PROJECT, "-f", f"{ROOT}/deploy/compose.yaml", "-f", override]
    run(*compose, "down", "-t", "0", env=env, timeout=120)
    try:
        run(*compose, "up", "-d", env=env, timeout=300)
        wait_lb(lb, key)
        check(len(replicas()) == 3, f"three replicas ({replicas()})")
        every_replica_ok(3, 60, "up")

        # 1. The battery through nginx, with the key; none without it.
        await every_transport(lb, "compose", headers={"X-API-Key": key})
        req = urllib.request.Request(f"{lb}/mcp", data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json, text/event-stream"})
        try:
            urllib.request.urlopen(req, timeout=5)
            check(False, "a request without the API key is refused")
        except urllib.error.HTTPError as e:
            check(e.code == 401, f"a request without the API key gets 401 ({e.code})")
        roamed = sum(health(address(c))["cluster"]["roamed"] for c in replicas())
        check(roamed > 0, f"sessions roamed between the replicas ({roamed})")

        # 2. A replica killed mid-load, then started again.
        victim = replicas()[1]

        def kill_replica() -> None:
            podman("kill", victim)

        await under_load(lb, key, f"{victim} killed", kill_replica)
        if podman("inspect", "--format", "{{.State.Running}}", victim) != "true":
            podman("start", victim)
        every_replica_ok(3, 60, "the killed replica back")

        # 3. Redis killed and started again, empty (the file keeps nothing).
        redis = f"{PROJECT}_redis_1"

        def restart_redis() -> None:
            podman("kill", redis)
            time.sleep(1)
            if podman("inspect", "--format", "{{.State.Running}}", redis) != "true":
                podman("start", redis)

        await under_load(lb, key, "Redis killed and back empty", restart_redis)
        every_replica_ok(3, 30, "after Redis came back")
    finally:
        if os.environ.get("KEEP_COMPOSE"):
            print(f"kept: {' '.join(compose)} down")
        else:
            subprocess.run([*compose, "down", "-t", "0"], env=env, capture_output=True, timeout=120)
            left = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "{{.Names}}")
            check(left == "", f"podman-compose down removed every container ({left})")
    print(f"compose: {summary()}")


asyncio.run(main())
