#!/usr/bin/env bash
# Servers-file benchmark (not run in CI): one gateway serving 10 servers from a config file vs
# the same load on one server — calls/s and the gateway's RSS. Needs a release build:
#
#   cargo build --release --bin aareguru-mcp --examples
#   tests/bench/servers.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)
bin="$root/target/release/aareguru-mcp"
loadgen="$root/target/release/examples/loadgen"
fixture="$root/target/release/examples/fixture_server"
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# run SERVERS BACKEND: 100 sessions × 200 calls spread over SERVERS servers of one gateway
run() {
    local n=$1 backend=$2 port conf="$tmp/servers-$1-$2.json"
    {
        echo '{"mcpServers": {'
        for i in $(seq "$n"); do
            [ "$i" -gt 1 ] && echo ","
            echo "\"s$i\": {\"command\": \"$fixture\", \"args\": [], \"gateway\": {\"backend\": \"$backend\"}}"
        done
        echo '}}'
    } >"$conf"
    port=$(free_port)
    RUST_LOG=warn "$bin" --sse --port "$port" --config "$conf" --max-sessions 20000 2>/dev/null &
    local gw=$!
    pids+=("$gw")
    wait_port "$port"
    local per=$((100 / n)) started ended out=() total=0
    started=$(date +%s.%N)
    for i in $(seq "$n"); do
        "$loadgen" --target "http://127.0.0.1:$port/servers/s$i" --mode mcp --child echo \
            --sessions "$per" --calls 200 >"$tmp/out-$i" &
        out+=($!)
    done
    for p in "${out[@]}"; do wait "$p"; done
    ended=$(date +%s.%N)
    local errors=0
    for i in $(seq "$n"); do
        errors=$((errors + $(tail -1 "$tmp/out-$i" | awk -F'|' '{gsub(/ /,"",$12); gsub(/ /,"",$13); print $12+$13}')))
    done
    local calls=$((per * n * 200))
    printf "| %s | %s | %d × %d | %.0f calls/s | %s MiB | %s |\n" "$n" "$backend" "$n" "$per" \
        "$(echo "$calls / ($ended - $started)" | bc -l)" "$(( $(rss_kib "$gw") / 1024 ))" "$errors"
    kill "$gw"
    wait "$gw" 2>/dev/null || true
}

echo "| servers | backend | servers × sessions each (200 calls) | throughput | gateway RSS after | misrouted + errors |"
for backend in per-session shared; do
    run 1 "$backend"
    run 10 "$backend"
done
