"""Runs the official conformance suite against the gateway's /mcp with the conformance fixture
server behind it, on one backend. Fails on any scenario not in the baseline file.

BACKEND "federated": the conformance server is one member of a group (with the fixture server
beside it, names unprefixed) served at /mcp: the group must fail nothing the server alone does not.

Usage: python3 conformance.py BIN FIXTURE_SERVER CONFORMANCE_CLI BASELINE BACKEND [OTHER_MEMBER]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

from common import conformance_group_file, start_gateway

BIN, FIXTURE, CLI, BASELINE, BACKEND = sys.argv[1:6]

work = tempfile.mkdtemp()
if BACKEND == "federated":
    conf = conformance_group_file(work, FIXTURE, sys.argv[6])
    gw, base = start_gateway(BIN, ["--config", conf, "--default-server", "conf"])
else:
    gw, base = start_gateway(BIN, ["--backend", BACKEND, "--", FIXTURE])
try:
    with tempfile.TemporaryDirectory() as out:
        # localhost, not 127.0.0.1: the DNS-rebinding scenario sends Host: localhost:PORT as valid.
        url = base.replace("127.0.0.1", "localhost") + "/mcp"
        run = subprocess.run(
            [CLI, "server", "--url", url, "--suite", "all", "--expected-failures", BASELINE, "-o", out],
            capture_output=True,
            text=True,
        )
        summary = run.stdout[run.stdout.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in run.stdout else run.stdout[-4000:]
        print(f"-- backend {BACKEND}")
        print(summary.strip())
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            print(f"FAIL: conformance suite exited {run.returncode} on the {BACKEND} backend", file=sys.stderr)
            sys.exit(1)
finally:
    gw.terminate()
    gw.wait()
