# Shared by the benchmark scripts that run one gateway (`source tests/bench/lib.sh` from the
# repository's root): the release binaries, a temp dir and the gateway ($gw) cleaned up on exit,
# ports, the load generator's table row and calls/s, the gateway's CPU time, a median.
root=$(pwd)
# RELEASE_DIR: another build's release directory (e.g. one with symbols, for perf).
release="${RELEASE_DIR:-$root/target/release}"
bin="$release/aareguru-mcp"
loadgen="$release/examples/loadgen"
fixture="$release/examples/fixture_server"
tmp=$(mktemp -d)
gw=
cleanup() {
    [ -n "$gw" ] && kill "$gw" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; exit 1; }
# The load generator's table row, and its calls/s (the tenth column).
row() { tail -1 "$1"; }
rate() { tail -1 "$1" | awk -F'|' '{gsub(/ /, "", $11); print $11}'; }
# A gateway's CPU (user + system, µs) so far (default $gw): less noisy than calls/s on a shared VM.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000000 / hz)}' "/proc/${1:-$gw}/stat"; }
# The median of the numbers given.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
