#!/usr/bin/env bash
# The image, built and run for real with Podman (tests/container/container_python.py says what
# is checked). Installs Podman and its parts from Debian's packages when missing; makes the base
# image from Debian's packages with mmdebstrap (no registry is reachable here; users build on the
# official images); builds the image from the Containerfile with the release binary built
# outside (BINARY_FROM=prebuilt, the same runtime stage users get). Then deploy/compose.yaml with
# podman-compose (compose_python.py) and deploy/kubernetes/ (kube_python.py).
#
#   cargo build --release --bin aareguru-mcp --examples && tests/container/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)

source tests/container/podman.sh
base=localhost/aareguru-mcp-test/debian:bookworm-slim
debian_image "$base"

[ -x target/release/aareguru-mcp ] || { echo "build the release binary first" >&2; exit 1; }
image=localhost/aareguru-mcp:test
build_image "$image" \
    --build-arg RUNTIME_IMAGE="$base" --build-arg BINARY_FROM=prebuilt \
    --build-arg REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || true)" \
    -f Containerfile .
"${podman_[@]}" run --rm "${limits[@]}" "$image" --version
# The variant with Node and Python; pip reaches PyPI here only with the machine's CA bundle.
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
node_image=localhost/aareguru-mcp:test-node
build_image "$node_image" --target with-node-python \
    -v "$ca:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt \
    --build-arg RUNTIME_IMAGE="$base" --build-arg BINARY_FROM=prebuilt \
    -f Containerfile .

# The Python SDK, as the interop suite installs it.
venv=target/interop/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp==2.3.0"
fi
PYTHONPATH="$root/tests/interop" "$venv/bin/python" tests/container/container_python.py \
    "$image" "$base" "$root/target/release/examples/fake_upstream" "$node_image" "$ca"

# deploy/compose.yaml with podman-compose: Redis and nginx images made from Debian's packages.
redis_image=localhost/aareguru-mcp-test/redis:bookworm
nginx_image=localhost/aareguru-mcp-test/nginx:bookworm
debian_image "$redis_image" redis-server
debian_image "$nginx_image" nginx-light
PYTHONPATH="$root/tests/interop" "$venv/bin/python" tests/container/compose_python.py \
    "$image" "$base" "$redis_image" "$nginx_image" "$root/target/release/examples/fake_upstream" "$root"

# deploy/kubernetes/: built by kubectl's kustomize (this machine kind has kubectl; Debian has no
# package of it), validated by kubernetes-validate, its Deployments run by podman kube play.
command -v kubectl >/dev/null || { echo "kubectl is needed: it builds deploy/kubernetes (kubectl kustomize)" >&2; exit 1; }
"$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
PYTHONPATH="$root/tests/interop" "$venv/bin/python" tests/container/kube_python.py \
    "$image" "$redis_image" "$base" "$root/target/release/examples/fake_upstream" "$root" \
    "$root/$venv/bin/kubernetes-validate"
