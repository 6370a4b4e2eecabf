"""Runs the official conformance suite's 0.2.0 line against the gateway's /mcp: the requirement
set of protocol revision 2026-07-28 (`--requirements 2026-07-28`) and the active suite.

Targets:
- per-session | shared | federated: examples/conformance_server (the fixture) behind the
  gateway on that backend (federated: as one member of a group, the fixture server beside it).
  Both runs must fail nothing but the scenarios BASELINE lists (each with its reason).
- python PYTHON PY_SERVER: the Python SDK 2.x server, which speaks 2026-07-28 itself, run twice:
  natively (its own Streamable HTTP) and behind the gateway (passed through). No check may fail
  through the gateway that passes natively.
- builtin FAKE: the built-in Aareguru server (in process, upstream faked). The scenarios that
  apply to it (APPLY) must pass, except checks the suite marks untestable because the server
  lacks the suite's fixture tools.

Usage: python3 conformance_modern.py BIN FIXTURE CLI BASELINE TARGET [ARGS...]
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

from common import conformance_group_file, start_fake, start_gateway

BIN, FIXTURE, CLI, BASELINE, TARGET = sys.argv[1:6]
ARGS = sys.argv[6:]

# The requirement set's scenarios that need no fixture tool, for the built-in server.
APPLY = [
    "server-stateless",
    "completion-complete",
    "tools-list",
    "resources-list",
    "sep-2164-resource-not-found",
    "prompts-list",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "server-sse-multiple-streams",
    "input-required-result-unsupported-methods",
]


def run_suite(url: str, extra: list[str]) -> tuple[int, str, dict[str, list[dict]]]:
    """Runs the suite; its exit code, output and each scenario's checks."""
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            [CLI, "server", "--url", url, "-o", out, *extra], capture_output=True, text=True
        )
        checks: dict[str, list[dict]] = {}
        for d in os.listdir(out):
            name = re.sub(r"-\d{4}-\d{2}-\d{2}T.*$", "", d).removeprefix("server-")
            path = os.path.join(out, d, "checks.json")
            if os.path.exists(path):
                with open(path) as f:
                    checks[name] = json.load(f)
        return run.returncode, run.stdout + run.stderr, checks


def summary_of(output: str) -> str:
    i = output.find("=== SUMMARY ===")
    return output[i:].strip() if i >= 0 else output[-3000:]


def failing(checks: dict[str, list[dict]]) -> set[tuple[str, str]]:
    return {
        (scenario, c.get("id", "?"))
        for scenario, cs in checks.items()
        for c in cs
        if c.get("status") == "FAILURE"
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("the native server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the native server did not listen")


def local(base: str) -> str:
    # localhost, not 127.0.0.1: the DNS-rebinding scenario sends Host: localhost:PORT as valid.
    return base.replace("127.0.0.1", "localhost") + "/mcp"


def fixture_target() -> int:
    work = tempfile.mkdtemp()
    if TARGET == "federated":
        # The fixture on shared: each stateless request is a group session of its own, and a
        # listen stream hears a list change only from a child it shares.
        conf = conformance_group_file(work, FIXTURE, ARGS[0], "shared")
        gw, base = start_gateway(BIN, ["--config", conf, "--default-server", "conf"])
    else:
        gw, base = start_gateway(BIN, ["--backend", TARGET, "--", FIXTURE])
    failed = 0
    try:
        for label, extra in [
            ("requirement set 2026-07-28", ["--requirements", "2026-07-28"]),
            ("active suite", []),
        ]:
            rc, output, _ = run_suite(local(base), [*extra, "--expected-failures", BASELINE])
            print(f"-- {TARGET} backend, {label}")
            print(summary_of(output))
            if rc != 0:
                print(f"FAIL: the {label} failed on the {TARGET} backend (exit {rc})", file=sys.stderr)
                failed += 1
    finally:
        gw.terminate()
        gw.wait()
    return failed


def python_target() -> int:
    python, server = ARGS[0], ARGS[1]
    port = free_port()
    native = subprocess.Popen([python, server, "--http", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, native)
        _, out_native, checks_native = run_suite(
            f"http://localhost:{port}/mcp", ["--requirements", "2026-07-28"]
        )
    finally:
        native.terminate()
        native.wait()
    gw, base = start_gateway(BIN, ["--", python, server])
    try:
        _, out_gw, checks_gw = run_suite(local(base), ["--requirements", "2026-07-28"])
    finally:
        gw.terminate()
        gw.wait()
    print("-- Python SDK server natively, requirement set 2026-07-28")
    totals = [l for l in out_native.splitlines() if l.startswith("Total:")]
    print(totals[-1] if totals else "(no summary)")
    print("-- Python SDK server through the gateway (passthrough), requirement set 2026-07-28")
    print(summary_of(out_gw))
    worse = sorted(failing(checks_gw) - failing(checks_native))
    if not checks_gw or not checks_native:
        print("FAIL: a run produced no results", file=sys.stderr)
        return 1
    if worse:
        for scenario, check in worse:
            print(f"FAIL: {scenario} / {check} fails through the gateway but passes natively", file=sys.stderr)
        return 1
    print(f"no check fails through the gateway that passes natively ({len(failing(checks_native))} fail natively)")
    return 0


def builtin_target() -> int:
    fake, upstream = start_fake(ARGS[0])
    gw, base = start_gateway(BIN, [], {"AAREGURU_BASE_URL": upstream})
    bad = []
    try:
        for scenario in APPLY:
            _, output, checks = run_suite(local(base), ["--scenario", scenario, "--spec-version", "2026-07-28"])
            for c in checks.get(scenario, []):
                untestable = (c.get("details") or {}).get("untestable") is True
                if c.get("status") == "FAILURE" and not untestable:
                    bad.append(f"{scenario} / {c.get('id')}: {c.get('errorMessage')}")
            if scenario not in checks:
                bad.append(f"{scenario}: no result ({output[-500:]})")
    finally:
        gw.terminate()
        gw.wait()
        fake.terminate()
    print(f"-- built-in server, {len(APPLY)} scenarios of the 2026-07-28 requirement set that need no fixture tool")
    for b in bad:
        print(f"FAIL: {b}", file=sys.stderr)
    if not bad:
        print(f"all {len(APPLY)} pass (checks needing the suite's fixture tools are untestable here)")
    return 1 if bad else 0


if TARGET == "python":
    sys.exit(python_target())
elif TARGET == "builtin":
    sys.exit(builtin_target())
else:
    sys.exit(1 if fixture_target() else 0)
