#!/usr/bin/env bash
# Interop tests with real MCP clients. Installs them into target/interop (ignored by git),
# builds the binary and the fake upstream, and runs every client script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

dir=target/interop
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ]; then
    python3 -m venv "$dir/venv"
fi
if ! "$dir/venv/bin/python" -c 'import mcp, importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "mcp==2.3.0"
fi

cargo build --quiet --bin aareguru-mcp --example fake_upstream
bin=target/debug/aareguru-mcp
fake=target/debug/examples/fake_upstream

echo "== Python SDK (mcp 2.3.0) over stdio"
timeout 300 "$dir/venv/bin/python" tests/interop/stdio_python.py "$bin" "$fake"
