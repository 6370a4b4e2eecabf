"""Helpers shared by the interop scripts: checks with a pass count, and starting the programs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

passed = 0


def check(cond: bool, what: str) -> None:
    global passed
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


def summary() -> str:
    return f"{passed} passed, 0 failed"


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def start_fake(fake: str) -> tuple[subprocess.Popen, str]:
    """Starts examples/fake_upstream on a free port; returns it and its base URL."""
    proc = subprocess.Popen([fake, "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    check(line.startswith("listening on "), f"fake upstream started ({line!r})")
    return proc, "http://" + line.removeprefix("listening on ")


def conformance_group_file(work: str, fixture: str, other: str, fixture_backend: str | None = None) -> str:
    """Writes a servers file whose group "conf" holds the conformance fixture (on
    `fixture_backend`, if given) and `other` (shared), names unprefixed; returns its path."""
    conformance = {"command": fixture, "args": []}
    if fixture_backend:
        conformance["gateway"] = {"backend": fixture_backend}
    path = os.path.join(work, "servers.json")
    with open(path, "w") as f:
        json.dump(
            {
                "mcpServers": {
                    "conformance": conformance,
                    "other": {"command": other, "args": [], "gateway": {"backend": "shared"}},
                },
                "groups": {"conf": {"members": ["conformance", "other"], "prefix": "never"}},
            },
            f,
        )
    return path


def start_gateway(
    binary: str, extra: list[str], env: dict[str, str] | None = None, port: int = 0, log: list | None = None
) -> tuple[subprocess.Popen, str]:
    """Starts `BIN --sse --port PORT EXTRA`; returns it and its base URL (read from its JSON log).
    With `log`, the JSON log lines that follow are appended to it."""
    proc = subprocess.Popen(
        [binary, "--sse", "--port", str(port), "--log-format", "json", "--log-level", "info", *extra],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    for line in proc.stderr:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "gateway listening":
            # Keep draining stderr so the gateway never blocks on a full pipe.
            def drain() -> None:
                for line in proc.stderr:
                    if log is not None:
                        try:
                            log.append(json.loads(line))
                        except ValueError:
                            pass

            threading.Thread(target=drain, daemon=True).start()
            return proc, "http://" + entry["address"]
    raise RuntimeError("gateway did not start")


def client_callbacks(seen: dict, sample, root_uri: str, root_name: str) -> dict:
    """ClientSession keyword arguments answering the server's sampling (with `sample(prompt)` as
    the text), roots (one root) and elicitation (decline) requests, counting each in `seen`."""
    import mcp.types as types

    async def sampling(context, params: types.CreateMessageRequestParams):
        seen["sampling"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=sample(params.messages[0].content.text)),
            model="interop-test-model",
            stop_reason="endTurn",
        )

    async def roots(context):
        seen["roots"] += 1
        return types.ListRootsResult(roots=[types.Root(uri=root_uri, name=root_name)])

    async def elicitation(context, params):
        seen["elicitation"] += 1
        return types.ElicitResult(action="decline")

    return dict(sampling_callback=sampling, list_roots_callback=roots, elicitation_callback=elicitation)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def start_redis(tmp: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    wait_port(port, "redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def start_nginx(tmp: str, upstreams: list[str], prefix: str = "/", port: int = 0) -> tuple[subprocess.Popen, str]:
    """nginx round-robin, with the proxy settings the README recommends, passing the paths under
    `prefix` through unchanged (the gateways take a --public-url prefix)."""
    port = port or free_port()
    conf_dir = tempfile.mkdtemp(dir=tmp)
    servers = "".join(f"    server {u} max_fails=1 fail_timeout=5s;\n" for u in upstreams)
    conf = f"""worker_processes 1;
daemon off;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {conf_dir}/body; proxy_temp_path {conf_dir}/proxy;
  fastcgi_temp_path {conf_dir}/fcgi; uwsgi_temp_path {conf_dir}/uwsgi; scgi_temp_path {conf_dir}/scgi;
  upstream gateways {{
{servers}    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location {prefix} {{
      proxy_pass http://gateways;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""
    path = os.path.join(conf_dir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen(
        ["/usr/sbin/nginx", "-p", conf_dir, "-e", f"{conf_dir}/error.log", "-c", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, "nginx")
    return proc, f"http://127.0.0.1:{port}"
