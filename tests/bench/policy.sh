#!/usr/bin/env bash
# Rules benchmark (not run in CI): 100 sessions × 100 `echo` calls to a server with 20 rules vs
# the same server without rules, on one gateway, in alternating pairs (the VM's noise is wider
# than the gap, so one pair proves little). Both are the fixture server on the shared backend;
# every call is judged by all 20 rules; which side runs first alternates. Needs a release build:
#
#   cargo build --release --bin aareguru-mcp --examples
#   PAIRS=8 tests/bench/policy.sh     # READING=0: none of the 20 rules reads arguments
#   AUDIT=1 PAIRS=8 tests/bench/policy.sh   # 20 rules and the audit log vs neither
#   SECOND=1 PAIRS=8 …   # the 20 rules on a second gateway (as with AUDIT=1, without the log)
#   SERVER=plain AUDIT=1 PAIRS=8 …   # the audit log alone
#   SERVER=plain SECOND=1 PAIRS=8 …  # two equal gateways: the pair's own bias
#
# With AUDIT=1 the ruled server runs on a second gateway that also writes the audit log (to a
# file in the temp dir), so the pair compares rules + audit against a gateway with neither.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/bench/lib.sh

# Twenty rules of the kinds people write: tool names by group, source addresses, argument
# paths (READING of them, default 4), and one allow rule every caller passes. Every call of
# `echo` is judged by all of them: rules that read arguments are evaluated on each call, the
# others once per session and name (a session remembers their outcomes).
rules=$(python3 - <<'PY'
import json
r = []
for i in range(10):
    r.append({"name": f"admins-{i}", "deny": f"mcp.tool.name == 'admin_{i}' && !('admins' in jwt.groups)"})
for i in range(5):
    r.append({"name": f"net-{i}", "deny": f"source.address.startsWith('10.{99 - i}.')"})
import os
reading = int(os.environ.get("READING", "4"))
for i in range(4):
    if i < reading:
        r.append({"name": f"paths-{i}", "deny": f"mcp.tool.name == 'echo' && has(mcp.tool.arguments.path) && mcp.tool.arguments.path.startsWith('/etc/{i}')"})
    else:
        r.append({"name": f"tools-{i}", "deny": f"mcp.tool.name == 'drop_{i}' && !('admins' in jwt.groups)"})
r.append({"name": "everyone", "allow": "subject == '' || 'staff' in jwt.groups"})
print(json.dumps(r))
PY
)
conf="$tmp/servers.json"
cat >"$conf" <<JSON
{"mcpServers": {
  "plain": {"command": "$fixture", "args": [], "gateway": {"backend": "shared"}},
  "ruled": {"command": "$fixture", "args": [], "gateway": {"backend": "shared", "rules": $rules}}}}
JSON
port=$(free_port)
RUST_LOG=warn "$bin" --sse --port "$port" --config "$conf" --max-sessions 20000 2>/dev/null &
gw=$!
wait_port "$port"
ruled_port=$port
ruled_gw=$gw
label="20 rules"
# The second side's server: `ruled`, or `plain` (SERVER=plain) to measure the audit log alone
# (AUDIT=1) or, with SECOND=1 and no audit, the pair's own bias (two equal gateways).
server=${SERVER:-ruled}
if [ "${AUDIT:-0}" = 1 ] || [ "${SECOND:-0}" = 1 ]; then
    audit=()
    [ "${AUDIT:-0}" = 1 ] && audit=(--audit-log "$tmp/audit.log")
    ruled_port=$(free_port)
    RUST_LOG=warn "$bin" --sse --port "$ruled_port" --config "$conf" --max-sessions 20000 \
        "${audit[@]}" 2>/dev/null &
    gw2=$!
    ruled_gw=$gw2
    trap 'kill "$gw2" 2>/dev/null || true; cleanup' EXIT
    wait_port "$ruled_port"
    [ "${AUDIT:-0}" = 1 ] && label="20 rules + audit"
fi
[ "$server" = plain ] && label="${label/20 rules/no rules}"
sleep 1

pairs=${PAIRS:-1}
echo "== 100 sessions × 100 echo calls (Streamable HTTP), $pairs pair(s)"
ratios=()
cpus_plain=()
cpus_ruled=()
# Which side runs first alternates from pair to pair: two equal gateways showed the second
# of a pair some points ahead (SERVER=plain SECOND=1), and alternating cancels that out.
run_plain() {
    c0=$(cpu_us)
    "$loadgen" --target "http://127.0.0.1:$port/servers/plain" --mode mcp --child echo --sessions 100 --calls 100 >"$tmp/plain"
    c1=$(cpu_us)
}
run_ruled() {
    r0=$(cpu_us "$ruled_gw")
    "$loadgen" --target "http://127.0.0.1:$ruled_port/servers/$server" --mode mcp --child echo --sessions 100 --calls 100 >"$tmp/ruled"
    r1=$(cpu_us "$ruled_gw")
}
for p in $(seq "$pairs"); do
    if [ $((p % 2)) = 1 ]; then run_plain; run_ruled; else run_ruled; run_plain; fi
    echo "no rules:  $(row "$tmp/plain")"
    echo "$label:  $(row "$tmp/ruled")"
    ratio=$(( 100 * $(rate "$tmp/ruled") / $(rate "$tmp/plain") ))
    ratios+=("$ratio")
    cpus_plain+=($(( (c1 - c0) / 10000 ))); cpus_ruled+=($(( (r1 - r0) / 10000 )))
    echo "pair $p: none $(rate "$tmp/plain") calls/s, $label $(rate "$tmp/ruled") calls/s, ratio $ratio %;" \
        "gateway CPU per session+call: none $(( (c1 - c0) / 10000 )) µs, $label $(( (r1 - r0) / 10000 )) µs"
done
median=$(median "${ratios[@]}")
echo "$label / none per pair: ${ratios[*]} (%); median $median %"
echo "gateway CPU per session+call, medians: none $(median "${cpus_plain[@]}") µs, $label $(median "${cpus_ruled[@]}") µs"
if [ "${AUDIT:-0}" = 1 ]; then
    kill -TERM "$gw2"; wait "$gw2" 2>/dev/null || true
    echo "audit lines written: $(cat "$tmp"/audit.log* | wc -l) (expected $((pairs * 10000)))"
fi
