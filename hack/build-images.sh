#!/usr/bin/env bash
# Builds the images the local nodes run, without a registry: static binaries of this
# repository's own code in one-layer OCI archives (hack/oci-image.py), cached under
# ~/.cache/zhengyun/images/<hash of the inputs>/. Prints that directory (one .tar per image, each
# named inside as localhost/zhengyun/NAME:TAG for `ctr images import`), and the probe binary
# itself (the outside network of hack/lib/nodes.sh runs it outside any pod).
#   pause   hack/node/pause (Go): the pod sandbox, as registry.k8s.io/pause
#   probe   probe/ (Rust, no dependencies): the traffic probe of the e2e suite; static glibc,
#           as no musl target is installed here
#   coredns github.com/coredns/coredns (Go module proxy), the cluster DNS; its binary is cached
#           apart by version (a long build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
COREDNS_VERSION=v1.15.0
key=$(cat "$here/oci-image.py" "$here/node/pause/go.mod" "$here/node/pause/main.go" "$0" \
  "$root/probe/Cargo.toml" "$root"/probe/src/*.rs | sha256sum | cut -c1-12)
dest="${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/images/$key"
if [ -f "$dest/pause.tar" ] && [ -f "$dest/probe.tar" ] && [ -x "$dest/probe" ] && [ -f "$dest/coredns.tar" ]; then
  echo "$dest"
  exit 0
fi
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/bin"
(cd "$here/node/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest.tmp/bin/pause" .) >&2
python3 "$here/oci-image.py" "$dest.tmp/pause.tar" localhost/zhengyun/pause:0.1.0 \
  --user 65535:65535 --entrypoint /pause "$dest.tmp/bin/pause=/pause" >/dev/null
# An explicit --target keeps build scripts dynamic while the binary links libc statically; its
# own target directory keeps these flags from invalidating the workspace's build.
triple=$(rustc -vV | sed -n 's/^host: //p')
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/static" \
  cargo build -q --release --locked --target "$triple" -p zhengyun-probe) >&2
cp "$CARGO_TARGET_DIR/static/$triple/release/probe" "$dest.tmp/bin/probe"
case $(ldd "$dest.tmp/bin/probe" 2>&1) in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "the probe is not a static binary: $(ldd "$dest.tmp/bin/probe" 2>&1)" >&2; exit 1 ;;
esac
python3 "$here/oci-image.py" "$dest.tmp/probe.tar" localhost/zhengyun/probe:0.1.0 \
  --user 65532:65532 --entrypoint /probe --cmd serve --cmd 8080 --cmd 9090 \
  --port 8080/tcp --port 9090/tcp "$dest.tmp/bin/probe=/probe" >/dev/null
mv "$dest.tmp/bin/probe" "$dest.tmp/probe"
coredns=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/coredns/$COREDNS_VERSION
if [ ! -x "$coredns/coredns" ]; then
  echo "building CoreDNS $COREDNS_VERSION into $coredns (cold: a few minutes)" >&2
  rm -rf "$coredns.tmp" && mkdir -p "$coredns.tmp"
  GOBIN=$coredns.tmp CGO_ENABLED=0 GOTOOLCHAIN=go1.26.10 go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION" >&2
  rm -rf "$coredns" && mv "$coredns.tmp" "$coredns"
fi
cp "$coredns/coredns" "$dest.tmp/bin/coredns"
python3 "$here/oci-image.py" "$dest.tmp/coredns.tar" "localhost/zhengyun/coredns:${COREDNS_VERSION#v}" \
  --user 65532:65532 --entrypoint /coredns "$dest.tmp/bin/coredns=/coredns" >/dev/null
rm -rf "$dest.tmp/bin"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
