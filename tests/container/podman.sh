# Sourced by the container tests: installs Podman, podman-compose and their parts from Debian's packages when
# missing and sets what this VM needs (runc, since crun refuses its hybrid cgroups; rlimits no
# higher than the caller's, since there is no CAP_SYS_RESOURCE) for every container, the pods'
# infra containers included. Defines podman_ (the command), limits (its rlimit flags) and
# debian_image NAME PACKAGES (a base image made from Debian's packages by mmdebstrap, since no
# image registry is reachable here).
# Expects: set -euo pipefail, the working directory at the repository's root, $root.

need=()
for p in podman runc mmdebstrap catatonit podman-compose; do
    command -v "$p" >/dev/null || need+=("$p")
done
[ -d /usr/lib/cni ] || [ -d /usr/libexec/cni ] || need+=(containernetworking-plugins)
# Names of compose services on CNI networks.
[ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
podman --version

conf="$root/target/container/containers.conf"
mkdir -p "$(dirname "$conf")"
cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$conf"
podman_=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

# debian_image NAME [PACKAGE,...]: Debian bookworm (minbase) with those packages, made once.
debian_image() {
    local name=$1 include=${2:-}
    # An import has no environment: PATH is set as the official images set it (podman run
    # supplies one, podman kube play does not). Images made before that are made again.
    if podman image exists "$name" &&
        podman image inspect --format '{{.Config.Env}}' "$name" | grep -q PATH=; then
        return 0
    fi
    local work
    work=$(mktemp -d)
    mmdebstrap --quiet --variant=minbase --mode=root ${include:+--include="$include"} bookworm \
        "$work/rootfs.tar"
    podman import --quiet \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        "$work/rootfs.tar" "$name" >/dev/null
    rm -rf "$work"
}

# build_image TAG BUILD-ARGS...: podman build tagged TAG, then removes the image TAG named
# before (each run would otherwise leave the one it replaces, up to ~1 GB, dangling). An image
# a container still uses stays.
build_image() {
    local tag=$1 old
    shift
    old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    "${podman_[@]}" build --quiet --format docker "${limits[@]}" -t "$tag" "$@" >/dev/null
    if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
        podman rmi "$old" >/dev/null 2>&1 || true
    fi
}
