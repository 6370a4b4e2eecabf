#!/usr/bin/env bash
# Federation benchmark (not run in CI): 100 sessions × 100 `echo` calls through a group of 10
# members vs the same member served alone; `tools/list` of the 10-member group from cache and
# cold (every member asked) vs one member alone; memory per idle federated session. Members are
# fixture servers on the shared backend. Needs a release build:
#
#   cargo build --release --bin aareguru-mcp --examples
#   tests/bench/federation.sh            # PAIRS=8 tests/bench/federation.sh: 8 alternating pairs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/bench/lib.sh

conf="$tmp/servers.json"
{
    echo '{"mcpServers": {'
    for i in $(seq 10); do
        [ "$i" -gt 1 ] && echo ","
        echo "\"s$i\": {\"command\": \"$fixture\", \"args\": [], \"gateway\": {\"backend\": \"shared\"}}"
    done
    echo '}, "groups": {"g": {"members": "*"}}}'
} >"$conf"
port=$(free_port)
RUST_LOG=warn "$bin" --sse --port "$port" --config "$conf" --max-sessions 20000 2>/dev/null &
gw=$!
wait_port "$port"
sleep 1

# PAIRS=N alternates alone/group N times on this one gateway (the VM's noise is wider than the
# gap, so one pair proves little) and prints each pair's ratio and their median, and the gateway's
# CPU per call (its 100 sessions' setup included: 10 member sessions each in the group).
pairs=${PAIRS:-1}
echo "== 100 sessions × 100 echo calls (Streamable HTTP), $pairs pair(s)"
ratios=()
for p in $(seq "$pairs"); do
    c0=$(cpu_us)
    "$loadgen" --target "http://127.0.0.1:$port/servers/s1" --mode mcp --child echo --sessions 100 --calls 100 >"$tmp/alone"
    c1=$(cpu_us)
    "$loadgen" --target "http://127.0.0.1:$port/servers/g" --mode mcp --child echo --tool-prefix s1__ \
        --sessions 100 --calls 100 >"$tmp/group"
    c2=$(cpu_us)
    echo "member alone:       $(row "$tmp/alone")"
    echo "through 10-member group: $(row "$tmp/group")"
    ratio=$(( 100 * $(rate "$tmp/group") / $(rate "$tmp/alone") ))
    ratios+=("$ratio")
    echo "pair $p: alone $(rate "$tmp/alone") calls/s, group $(rate "$tmp/group") calls/s, group/alone $ratio %;" \
        "gateway CPU per session+call: alone $(( (c1 - c0) / 10000 )) µs, group $(( (c2 - c1) / 10000 )) µs"
done
median=$(median "${ratios[@]}")
echo "group/alone per pair: ${ratios[*]} (%); median $median %"

echo "== tools/list and idle memory"
python3 tests/bench/federation_lists.py "http://127.0.0.1:$port" "$gw"
