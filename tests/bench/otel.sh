#!/usr/bin/env bash
# OpenTelemetry benchmark (not run in CI): 100 sessions × 100 `echo` calls (Streamable HTTP,
# the fixture server on the shared backend) through three gateways running side by side —
# export off, `--otel` sampling every trace, `--otel` sampling 1 % (traceidratio) — in rounds
# that alternate them (the VM's noise is wider than the gaps, so one round proves little). The
# spans go to tests/interop/otlp_receiver.py (a real OTLP/HTTP receiver, its output thrown
# away). Besides calls/s (noisy: loadgen shares the two cores), the gateways' own CPU time per
# session and call. Needs a release build and the interop venv with opentelemetry-proto:
#
#   cargo build --release --bin aareguru-mcp --examples
#   tests/interop/run.sh   # once, for target/interop/venv-otel (or any python with opentelemetry-proto)
#   ROUNDS=9 PASSES=5 tests/bench/otel.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/bench/lib.sh

python=${OTEL_PYTHON:-target/interop/venv-otel/bin/python}
"$python" tests/interop/otlp_receiver.py >"$tmp/receiver.out" &
receiver=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/receiver.out" 2>/dev/null && break; sleep 0.1; done
endpoint="http://$(head -1 "$tmp/receiver.out" | sed 's/listening on //')"

conf="$tmp/servers.json"
cat >"$conf" <<JSON
{"mcpServers": {"echo": {"command": "$fixture", "args": [], "gateway": {"backend": "shared"}}}}
JSON
start() { # port, extra environment as NAME=VALUE…, then -- and extra flags
    local port=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" RUST_LOG=warn "$bin" --sse --port "$port" --config "$conf" --max-sessions 20000 "$@" 2>/dev/null &
}
off=$(free_port); full=$(free_port); some=$(free_port)
start "$off" OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" --
gw_off=$!
# OTEL_ENV="OTEL_METRICS_EXPORTER=none …": more settings for the two gateways exporting.
# shellcheck disable=SC2086
start "$full" ${OTEL_ENV:-} OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=1.0 -- --otel
gw_full=$!
# shellcheck disable=SC2086
start "$some" ${OTEL_ENV:-} OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 -- --otel
gw_some=$!
trap 'kill "$gw_off" "$gw_full" "$gw_some" "$receiver" 2>/dev/null || true; cleanup' EXIT
wait_port "$off"; wait_port "$full"; wait_port "$some"
sleep 1

rounds=${ROUNDS:-1}
# PASSES: the 100 × 100 run repeated this many times per gateway and round (the CPU clock ticks
# every 10 ms: one pass of ~0.3 s CPU is read to ±4 %).
passes=${PASSES:-1}
declare -A pass_rate=()
echo "== 100 sessions × 100 echo calls (Streamable HTTP), $passes pass(es) × $rounds round(s): export off, on at 100 %, on at 1 %"
echo "   (the order rotates each round; CPU is the gateway's own, user + system, per session and call)"
declare -A pid=([off]=$gw_off [full]=$gw_full [some]=$gw_some)
full_ratios=(); some_ratios=(); full_cpu=(); some_cpu=()
orders=("off full some" "full some off" "some off full")
for r in $(seq "$rounds"); do
    declare -A cpu=()
    for which in ${orders[$(( (r - 1) % 3 ))]}; do
        port=${!which}
        c0=$(cpu_us "${pid[$which]}")
        rates=()
        for _ in $(seq "$passes"); do
            "$loadgen" --target "http://127.0.0.1:$port/servers/echo" --mode mcp --child echo --sessions 100 --calls 100 >"$tmp/$which"
            rates+=("$(rate "$tmp/$which")")
        done
        c1=$(cpu_us "${pid[$which]}")
        cpu[$which]=$(( (c1 - c0) / (10100 * passes) ))
        # calls/s over the passes: all the calls over all their time.
        pass_rate[$which]=$(printf '%s\n' "${rates[@]}" | awk '{t += 1 / $1} END {printf "%d", NR / t}')
    done
    echo "off:        $(row "$tmp/off")"
    echo "on, 100 %:  $(row "$tmp/full")"
    echo "on, 1 %:    $(row "$tmp/some")"
    f=$(( 100 * pass_rate[full] / pass_rate[off] ))
    s=$(( 100 * pass_rate[some] / pass_rate[off] ))
    full_ratios+=("$f"); some_ratios+=("$s")
    full_cpu+=("$(( 100 * cpu[off] / cpu[full] ))"); some_cpu+=("$(( 100 * cpu[off] / cpu[some] ))")
    p50() { tail -1 "$1" | awk -F'|' '{gsub(/ /, "", $9); print $9}'; }
    echo "round $r: call p50 (ms) off $(p50 "$tmp/off"), 100 % $(p50 "$tmp/full"), 1 % $(p50 "$tmp/some")"
    echo "round $r: calls/s off ${pass_rate[off]}, 100 % ${pass_rate[full]} ($f %), 1 % ${pass_rate[some]} ($s %);" \
        "gateway CPU per session+call: off ${cpu[off]} µs, 100 % ${cpu[full]} µs, 1 % ${cpu[some]} µs"
done
echo "calls/s, on at 100 % / off per round: ${full_ratios[*]} (%); median $(median "${full_ratios[@]}") %"
echo "calls/s, on at 1 % / off per round: ${some_ratios[*]} (%); median $(median "${some_ratios[@]}") %"
echo "CPU, off / on at 100 % per round: ${full_cpu[*]} (%); median $(median "${full_cpu[@]}") %"
echo "CPU, off / on at 1 % per round: ${some_cpu[*]} (%); median $(median "${some_cpu[@]}") %"
sleep 6
echo "spans the receiver got: $(grep -c '"trace_id"' "$tmp/receiver.out" || true)"
for which in full some; do
    port=${!which}
    echo "$which: $(curl -s "http://127.0.0.1:$port/metrics" | grep '^aareguru_gateway_otel_spans_total' | tr '\n' ' ')"
done
