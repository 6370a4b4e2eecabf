#!/usr/bin/env bash
# Cluster benchmark (not run in CI): one vs three replicas through the same nginx round-robin,
# and what forwarding adds to a call. Needs redis-server and nginx (Debian packages) and a
# release build:
#
#   cargo build --release --bin aareguru-mcp --examples
#   tests/bench/cluster.sh            # prints the README's cluster table rows
#   BACKENDS= tests/bench/cluster.sh  # only the forwarding rows
#
# Everything runs on loopback with its own temp dir and is stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)
bin="$root/target/release/aareguru-mcp"
loadgen="$root/target/release/examples/loadgen"
fake="$root/target/release/examples/fake_upstream"
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
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null &
pids+=($!)
wait_port "$redis_port"
upstream_port=$(free_port)
"$fake" "$upstream_port" >/dev/null &
pids+=($!)
wait_port "$upstream_port"

# start_replicas N BACKEND PREFIX -> sets $ports
start_replicas() {
    ports=()
    local extra=()
    [ "$2" = "in-process" ] || extra=(-- "$fixture")
    for i in $(seq "$1"); do
        local port
        port=$(free_port)
        RUST_LOG=warn "$bin" --sse --port "$port" --backend "$2" --base-url "http://127.0.0.1:$upstream_port" \
            --max-sessions 20000 --redis "redis://127.0.0.1:$redis_port/0" --redis-prefix "$3" \
            --replica-id "$3-$i" "${extra[@]}" 2>/dev/null &
        pids+=($!)
        wait_port "$port"
        ports+=("$port")
    done
    sleep 2 # heartbeats: every replica sees the others
}

# start_nginx PORT... -> sets $lb
start_nginx() {
    local dir="$tmp/nginx-$RANDOM" port
    mkdir -p "$dir"
    port=$(free_port)
    {
        echo "worker_processes 2; daemon off; pid $dir/pid; error_log $dir/error.log warn;"
        echo "events { worker_connections 16384; }"
        echo "http { access_log off; client_body_temp_path $dir/b; proxy_temp_path $dir/p;"
        echo "  fastcgi_temp_path $dir/f; uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;"
        echo "  upstream gateways {"
        for p in "$@"; do echo "    server 127.0.0.1:$p;"; done
        echo "    keepalive 256; }"
        echo "  server { listen 127.0.0.1:$port; location / { proxy_pass http://gateways;"
        echo "    proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host;"
        echo "    proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 1h; } } }"
    } >"$dir/nginx.conf"
    /usr/sbin/nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
    pids+=($!)
    wait_port "$port"
    lb="http://127.0.0.1:$port"
}

row() { "$loadgen" --target "$1" --mode "$2" --child "$3" --sessions "$4" --calls "$5" "${@:6}" | tail -1; }

echo "| replicas | backend | transport | sessions × calls | row (see loadgen's header) |"
for backend in ${BACKENDS-in-process shared}; do
    child=aareguru
    [ "$backend" = shared ] && child=echo
    for n in 1 3; do
        start_replicas "$n" "$backend" "b$backend$n"
        start_nginx "${ports[@]}"
        for mode in mcp sse; do
            echo "| $n | $backend | $mode | 100 × 200 | $(row "$lb" "$mode" "$child" 100 200 --backend "$backend") |"
        done
    done
done

echo
echo "Forwarding: one session opened on replica A, its calls sent to A directly or to B (forwarded)."
start_replicas 2 per-session fwd
a="http://127.0.0.1:${ports[0]}"
b="http://127.0.0.1:${ports[1]}"
for mode in mcp sse; do
    echo "| direct | $mode | $(row "$a" "$mode" echo 1 5000) |"
    echo "| forwarded | $mode | $(row "$a" "$mode" echo 1 5000 --call-target "$b") |"
done
