#!/usr/bin/env bash
# Builds the images the local nodes run, without a registry: static binaries of this
# repository's own code in one-layer OCI archives (hack/oci-image.py), cached under
# ~/.cache/zhengyun/images/<hash of the inputs>/. Prints that directory (one .tar per image, each
# named inside as localhost/zhengyun/NAME:TAG for `ctr images import`).
#   pause   hack/node/pause (Go): the pod sandbox, as registry.k8s.io/pause
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/oci-image.py" "$here/node/pause/go.mod" "$here/node/pause/main.go" "$0" | sha256sum | cut -c1-12)
dest="${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/images/$key"
if [ -f "$dest/pause.tar" ]; then echo "$dest"; exit 0; fi
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/bin"
(cd "$here/node/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest.tmp/bin/pause" .) >&2
python3 "$here/oci-image.py" "$dest.tmp/pause.tar" localhost/zhengyun/pause:0.1.0 \
  --user 65535:65535 --entrypoint /pause "$dest.tmp/bin/pause=/pause" >/dev/null
rm -rf "$dest.tmp/bin"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
