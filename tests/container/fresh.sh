#!/usr/bin/env bash
# The README's two commands as a newcomer meets them: in a fresh container made from Debian's
# packages (bookworm minbase, plus git to clone, and gcc as the linker the Rust toolchain needs)
# with only the Rust toolchain added (this machine's, mounted read-only; rustup's own server is
# not reachable here), a clone of the committed HEAD:
#   1. `cargo run --release -- --sse` serves: /health answers (by --healthcheck) and an MCP
#      `initialize` on /mcp is answered;
#   2. `cargo test` passes, installing on the way what its tests run (redis-server, nginx,
#      HAProxy, Node.js, Python, oidc-provider) — nothing is installed beforehand.
# Takes 20–30 minutes on two cores (both builds from nothing, every crate downloaded): run by
# hand, not in CI. The container is privileged — no seccomp filter, no AppArmor profile, every
# capability of root — as a root shell on a machine is: the sandbox tests make Landlock rulesets
# and seccomp filters of their own, and the drain's listener filter (SO_ATTACH_FILTER) is
# refused with EPERM under Podman's default confinement (the gateway then falls back; the unit
# test checks the filter itself).
#
#   tests/container/fresh.sh            # the log goes to target/container/fresh.log too
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)
source tests/container/podman.sh

image=localhost/aareguru-mcp-test/debian-newcomer:bookworm
debian_image "$image" "ca-certificates,git,gcc,libc6-dev"
toolchain=$(rustc --print sysroot)
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
log="$root/target/container/fresh.log"
echo "HEAD $(git rev-parse --short=12 HEAD); toolchain $(rustc --version); log in $log"

# The package registries answer here only with the machine's CA bundle (shared/docs/interop.md).
cas=()
for v in SSL_CERT_FILE CARGO_HTTP_CAINFO NODE_EXTRA_CA_CERTS GIT_SSL_CAINFO PIP_CERT \
    REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do
    cas+=(-e "$v=/run/host-ca.crt")
done

"${podman_[@]}" run --rm "${limits[@]}" --privileged \
    -v "$root:/repo:ro" -v "$toolchain:/opt/rust:ro" -v "$ca:/run/host-ca.crt:ro" "${cas[@]}" \
    -e PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -e CARGO_TERM_COLOR=never \
    "$image" bash -euo pipefail -c '
        git config --global --add safe.directory "*"
        git clone -q /repo /home/newcomer/aareguru-mcp
        cd /home/newcomer/aareguru-mcp
        for p in redis-server nginx haproxy node npm python3; do
            ! command -v "$p" >/dev/null || { echo "$p is already here: not a fresh machine"; exit 1; }
        done
        start=$SECONDS

        echo "== 1. cargo run --release -- --sse"
        cargo run --release -- --sse > /tmp/gateway.log 2>&1 &
        gateway=$!
        until target/release/aareguru-mcp --healthcheck 2>/dev/null; do
            kill -0 $gateway 2>/dev/null || { cat /tmp/gateway.log; echo "the gateway ended"; exit 1; }
            sleep 2
        done
        # An MCP initialize over Streamable HTTP, by bash alone (nothing else is installed yet).
        body="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"newcomer\",\"version\":\"1\"}}}"
        exec 3<>/dev/tcp/127.0.0.1/8000
        printf "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" "${#body}" "$body" >&3
        answer=$(cat <&3)
        exec 3>&-
        echo "$answer" | grep -q "HTTP/1.1 200" || { echo "$answer"; exit 1; }
        echo "$answer" | grep -o "\"serverInfo\":{[^}]*}"
        kill -TERM $gateway
        wait $gateway || true
        echo "   served after $((SECONDS - start)) s"

        echo "== 2. cargo test"
        cargo test
        echo "   passed; both commands took $((SECONDS - start)) s"
    ' 2>&1 | tee "$log"
