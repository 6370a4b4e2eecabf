#!/bin/sh
# Makes the secrets deploy/compose.yaml mounts and deploy/kubernetes/ makes its Secret of, in
# DIR when missing: the cluster secret (what the replicas present to each other) and a named API
# key file holding one key's SHA-256. The key itself is printed once, here, and kept nowhere.
# Run it again with another NAME to add a key.
#
#   deploy/new-secrets.sh DIR [NAME]     (DIR: deploy/compose/secrets or deploy/kubernetes/secrets;
#                                          NAME: the key's name, default "admin")
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [NAME]  (DIR: deploy/compose/secrets or deploy/kubernetes/secrets)" >&2; exit 2; }
dir=$1
name=${2:-admin}
umask 077
mkdir -p "$dir"
random() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n'; }
if [ ! -s "$dir/cluster-secret" ]; then
    random > "$dir/cluster-secret"
    echo "wrote $dir/cluster-secret"
fi
keys="$dir/api-keys.json"
if [ -s "$keys" ] && grep -q "\"name\": \"$name\"" "$keys"; then
    echo "$keys already has a key named $name; give another name to add one" >&2
    exit 1
fi
key=$(random)
sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
entry="{\"name\": \"$name\", \"sha256\": \"$sha\"}"
if [ -s "$keys" ]; then
    # Insert before the closing "]}" of {"apiKeys": [...]}.
    sed -i "s/]}\$/,\n  $entry]}/" "$keys"
else
    printf '{"apiKeys": [\n  %s]}\n' "$entry" > "$keys"
fi
# The gateway's user in the image (10001) reads them through the compose secrets; the folder
# stays the owner's alone.
chmod 644 "$dir/cluster-secret" "$keys"
echo "wrote $keys; the API key \"$name\" (shown only now; send it as X-API-Key):"
echo "$key"
