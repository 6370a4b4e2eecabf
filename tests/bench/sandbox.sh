#!/usr/bin/env bash
# Sandbox benchmark (not run in CI): what the walls cost. The same load with and without
# `--sandbox {}` (Landlock, seccomp, rlimits, a private TMPDIR — the defaults of any sandbox)
# on the echo fixture, alternating ROUNDS times so both see the same machine:
#   cold spawn   200 sessions set up one after another, each spawning its child (setup p50);
#   per-session  100 concurrent sessions × 200 calls (calls/s, setup p50);
#   warm pool    the same with --prespawn 100 (children spawned, and walled, ahead).
# Needs a release build:
#
#   cargo build --release --bin aareguru-mcp --examples
#   tests/bench/sandbox.sh            # ROUNDS=3 by default
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
loadgen=target/release/examples/loadgen
rounds=${ROUNDS:-3}

row() { # label, extra gateway args, loadgen args…
    local label=$1 gw=$2
    shift 2
    local out
    out=$("$loadgen" --mode mcp --child echo --backend per-session --gw-args "$gw" "$@" | tail -1)
    echo "$label | $out"
}

for r in $(seq "$rounds"); do
    echo "== round $r"
    for sb in "" "--sandbox {}"; do
        name=${sb:+sandbox}
        name=${name:-plain}
        row "cold spawn, $name" "$sb" --sessions 200 --calls 1 --wave 1
        row "per-session 100×200, $name" "$sb" --sessions 100 --calls 200
        row "warm pool 100×200, $name" "--prespawn 100 $sb" --sessions 100 --calls 200 --settle 3
    done
done
