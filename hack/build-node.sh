#!/usr/bin/env bash
# Builds what a local node runs besides the kubelet and kube-proxy (those come from
# hack/build-k8s.sh, from the same Kubernetes module as the API server):
#   containerd, its runc shim and ctr   github.com/containerd/containerd/v2 (Go module proxy)
#   the CNI reference plugins           github.com/containernetworking/plugins: bridge,
#                                       host-local, loopback, portmap
#   runc                                github.com/opencontainers/runc, with seccomp (cgo and
#                                       Debian's libseccomp-dev, from hack/node-deps.sh)
# and caches them under ~/.cache/zhengyun/node/<versions>/. Prints the cache directory; a warm run
# returns at once. Debian's runc (1.1.5) cannot start containerd 2.4's sandboxes here ("can't get
# final child's PID from pipe"); containerd 2.4 is tested with runc 1.5.
set -euo pipefail
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
RUNC_VERSION=v1.5.2
dest="${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/node/containerd-${CONTAINERD_VERSION}_cni-${CNI_PLUGINS_VERSION}_runc-${RUNC_VERSION}"
bins=(containerd containerd-shim-runc-v2 ctr runc cni/bridge cni/host-local cni/loopback cni/portmap)
done_all=1
for b in "${bins[@]}"; do [ -x "$dest/$b" ] || done_all=0; done
if [ "$done_all" = 1 ]; then echo "$dest"; exit 0; fi

echo "building containerd $CONTAINERD_VERSION, runc $RUNC_VERSION and CNI plugins $CNI_PLUGINS_VERSION into $dest (cold: a few minutes)" >&2
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/cni"
export CGO_ENABLED=0
# Static, no cgo: the btrfs snapshotter (cgo only) drops out, overlayfs and native stay.
C=github.com/containerd/containerd/v2
GOBIN=$dest.tmp go install -trimpath -tags "urfave_cli_no_docs osusergo netgo static_build" \
  -ldflags "-s -w -X $C/version.Version=$CONTAINERD_VERSION -X $C/version.Revision=$CONTAINERD_VERSION -X $C/version.Package=$C" \
  "$C/cmd/containerd@$CONTAINERD_VERSION" "$C/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "$C/cmd/ctr@$CONTAINERD_VERSION" >&2
P=github.com/containernetworking/plugins
GOBIN=$dest.tmp/cni go install -trimpath \
  -ldflags "-s -w -X $P/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
  "$P/plugins/main/bridge@$CNI_PLUGINS_VERSION" "$P/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
  "$P/plugins/main/loopback@$CNI_PLUGINS_VERSION" "$P/plugins/meta/portmap@$CNI_PLUGINS_VERSION" >&2
GOBIN=$dest.tmp CGO_ENABLED=1 go install -trimpath -tags seccomp \
  -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION" >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
