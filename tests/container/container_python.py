"""The image, run as users run it (tests/container/run.sh builds it and starts this):

1. In a pod with its port published on the host: the gateway container (read-only root, the
   image's own user, entrypoint and command) and the fake Aareguru API beside it. The Python SDK
   (mcp 2.3.0) runs the whole battery through the published port over Streamable HTTP (2025-11-25
   and 2026-07-28) and HTTP+SSE; the image's HEALTHCHECK (`aareguru-mcp --healthcheck`) passes.
2. Orphans: a wrapped server that leaves a grandchild behind (`sh -c '(sleep 1 &); exec …'`).
   With the image's entrypoint (tini as PID 1) no zombie is left; the same container with the
   binary itself as PID 1 keeps one — which shows the check sees zombies.
3. `podman stop` with the grace the README gives ends the container well within it, exit code 0
   (a SIGKILL would be 137), with per-session children running.
4. The `with-node-python` image with a servers file mounted: server-everything started by `npx`
   and mcp-server-time by `uvx`, fetched from npm and PyPI at start, each called through the
   published port.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from mcp import Client

from battery import every_transport, exercise
from common import check, free_port, summary, text_of

IMAGE, BASE_IMAGE, FAKE, NODE_IMAGE, CA = sys.argv[1:6]
PODMAN = ["podman", "--runtime", "runc"]
# The container may not raise rlimits above this VM's (no CAP_SYS_RESOURCE).
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
FAKE_PORT = 9100


def podman(*args: str, check_rc: bool = True, timeout: float = 120) -> str:
    r = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {r.returncode}\n{r.stderr}")
    return r.stdout.strip()


def wait_healthy(base: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become healthy")


def pod(name: str, port: int) -> None:
    podman("pod", "rm", "-f", name, check_rc=False)
    podman("pod", "create", "--name", name, "-p", f"127.0.0.1:{port}:8000")
    # The fake Aareguru API beside the gateway (the pod shares one loopback).
    podman("run", "-d", "--pod", name, "--name", f"{name}-fake", *LIMITS, "--read-only",
           "-v", f"{FAKE}:/usr/local/bin/fake_upstream:ro", BASE_IMAGE,
           "/usr/local/bin/fake_upstream", str(FAKE_PORT))


def gateway(name: str, pod_name: str, *args: str, entrypoint: str | None = None) -> None:
    extra = ["--entrypoint", entrypoint] if entrypoint else []
    podman("run", "-d", "--pod", pod_name, "--name", name, *LIMITS, "--read-only", *extra,
           "-e", f"AAREGURU_BASE_URL=http://127.0.0.1:{FAKE_PORT}", IMAGE, *args)


def zombies(container: str) -> list[str]:
    """The container's processes in state Z, read from /proc through the container's own PID
    namespace (the image has no ps)."""
    out = podman("exec", container, "sh", "-c",
                 "for s in /proc/[0-9]*/stat; do cat $s 2>/dev/null; echo; done")
    found = []
    for line in out.splitlines():
        if ")" in line:
            state = line.rsplit(")", 1)[1].split()[0]
            if state == "Z":
                found.append(line.strip())
    return found


async def main() -> None:
    pods = []
    try:
        # 1. The battery through the published port.
        port = free_port()
        pod("aam-serve", port)
        pods.append("aam-serve")
        gateway("aam-serve-gw", "aam-serve")
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, "the gateway container")
        user = podman("exec", "aam-serve-gw", "id", "-u")
        check(user == "10001", f"runs as the image's user (uid {user})")
        top = podman("top", "aam-serve-gw", "pid", "args")
        check("1 " in top and "tini" in top.splitlines()[1], f"tini is PID 1:\n{top}")
        await every_transport(base, "container")
        r = subprocess.run([*PODMAN, "healthcheck", "run", "aam-serve-gw"], capture_output=True, text=True)
        check(r.returncode == 0, f"the image's HEALTHCHECK passes ({r.returncode} {r.stdout}{r.stderr})")
        r = subprocess.run([*PODMAN, "exec", "aam-serve-gw", "aareguru-mcp", "--healthcheck", "--port", "1"],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "not ready" in r.stderr, "--healthcheck fails where nobody listens")

        # 3. A graceful stop within the grace, with per-session children alive.
        async with Client(f"{base}/mcp", mode="legacy") as c:
            await c.list_tools()
        port2 = free_port()
        pod("aam-stop", port2)
        pods.append("aam-stop")
        # A wrapped server gets no environment of the gateway's: its base URL as an argument.
        gateway("aam-stop-gw", "aam-stop", "--sse", "--backend", "per-session", "--",
                "aareguru-mcp", "--stdio", "--base-url", f"http://127.0.0.1:{FAKE_PORT}")
        base2 = f"http://127.0.0.1:{port2}"
        wait_healthy(base2, "the per-session gateway container")
        async with Client(f"{base2}/mcp", mode="legacy") as c:
            await exercise(c, "container per-session")
            health = json.loads(urllib.request.urlopen(f"{base2}/health").read())
            check(health["children_alive"] >= 1, f"a child runs ({health['children_alive']})")
            t0 = time.monotonic()
            podman("stop", "-t", "25", "aam-stop-gw", timeout=60)
            took = time.monotonic() - t0
        code = podman("inspect", "--format", "{{.State.ExitCode}}", "aam-stop-gw")
        check(code == "0", f"stopped gracefully: exit code {code} (137 would be a SIGKILL)")
        check(took < 20, f"stopped within the grace: {took:.1f} s of 25")
        logs = subprocess.run([*PODMAN, "logs", "aam-stop-gw"], capture_output=True, text=True).stderr
        check("gateway stopped" in logs, "the gateway logged its stop")

        # 4. npx and uvx in the with-node-python image.
        work = tempfile.mkdtemp()
        servers = os.path.join(work, "servers.json")
        with open(servers, "w") as f:
            json.dump({"mcpServers": {
                "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything@2026.8.31"]},
                "time": {"command": "uvx", "args": ["mcp-server-time==2026.10.19"]},
            }}, f)
        os.chmod(work, 0o755)
        os.chmod(servers, 0o644)
        port4 = free_port()
        pod("aam-node", port4)
        pods.append("aam-node")
        # Not read-only: npx and uvx keep what they fetch in the user's home. This machine's
        # registries answer only with its own CA bundle.
        podman("run", "-d", "--pod", "aam-node", "--name", "aam-node-gw", *LIMITS,
               "-v", f"{servers}:/etc/aareguru-mcp/servers.json:ro", "-v", f"{CA}:/run/host-ca.crt:ro",
               "-e", "NODE_EXTRA_CA_CERTS=/run/host-ca.crt", "-e", "SSL_CERT_FILE=/run/host-ca.crt",
               # Children inherit none of the gateway's environment unless it says so.
               "-e", "AAREGURU_MCP_CHILD_ENV=NODE_EXTRA_CA_CERTS,SSL_CERT_FILE",
               NODE_IMAGE, "--sse", "--config", "/etc/aareguru-mcp/servers.json",
               "--child-start-timeout", "180s")
        base4 = f"http://127.0.0.1:{port4}"
        wait_healthy(base4, "the with-node-python container")
        async with Client(f"{base4}/servers/everything/mcp", mode="legacy") as c:
            tools = {t.name for t in (await c.list_tools()).tools}
            check("echo" in tools, f"npx: server-everything's tools ({sorted(tools)[:5]}…)")
            r = await c.call_tool("echo", {"message": "from the container"})
            check("from the container" in text_of(r), "npx: server-everything's echo answers")
        async with Client(f"{base4}/servers/time/mcp", mode="legacy") as c:
            r = await c.call_tool("get_current_time", {"timezone": "Europe/Zurich"})
            check(not r.is_error and "Europe/Zurich" in text_of(r), "uvx: mcp-server-time answers")

        # 2. Orphans: tini reaps them; the bare binary as PID 1 does not (the control).
        orphaning = ["--sse", "--backend", "shared", "--", "sh", "-c",
                     "(sleep 1 &); exec aareguru-mcp --stdio"]
        for entrypoint, expect_zombie in [(None, False), ("aareguru-mcp", True)]:
            name = "aam-orphan" + ("-bare" if entrypoint else "")
            port3 = free_port()
            pod(name, port3)
            pods.append(name)
            gateway(f"{name}-gw", name, *orphaning, entrypoint=entrypoint)
            wait_healthy(f"http://127.0.0.1:{port3}", f"{name}")
            time.sleep(3)  # the orphaned sleep has ended by now
            found = zombies(f"{name}-gw")
            label = "tini as PID 1" if not entrypoint else "the binary as PID 1 (control)"
            if expect_zombie:
                check(len(found) >= 1, f"{label}: the orphan stays a zombie, so the check sees them")
            else:
                check(found == [], f"{label}: no zombie left ({found})")
    finally:
        for p in pods:
            if not os.environ.get("KEEP_PODS"):
                subprocess.run([*PODMAN, "pod", "rm", "-f", "-t", "0", p], capture_output=True)
    print(f"container: {summary()}")


asyncio.run(main())
