#!/usr/bin/env bash
# Builds kube-router (github.com/cloudnativelabs/kube-router/v2, from the Go module proxy), the
# NetworkPolicy enforcer the local nodes run (firewall only: pods are routed by host routes and
# Services by kube-proxy). Its module is hack/kube-router/, which raises the dependencies that
# v2.1.0 requires at versions with reported vulnerabilities (docs/local-control-plane.md lists them).
# Cached under ~/.cache/zhengyun/kube-router/<version>-<hash of the module files>/; prints that
# directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
KUBE_ROUTER_VERSION=v2.1.0
# Built with this Go release, fetched from the module proxy like any module: the standard
# library of older 1.26 releases has reported vulnerabilities in net/http and crypto/tls.
export GOTOOLCHAIN=go1.26.10
key=$(cat "$here/kube-router/go.mod" "$here/kube-router/go.sum" "$0" | sha256sum | cut -c1-12)
dest="${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/kube-router/$KUBE_ROUTER_VERSION-$key"
if [ -x "$dest/kube-router" ]; then echo "$dest"; exit 0; fi
echo "building kube-router $KUBE_ROUTER_VERSION into $dest (cold: a few minutes)" >&2
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
V=github.com/cloudnativelabs/kube-router/v2/pkg/version
(cd "$here/kube-router" && go version && CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X $V.Version=$KUBE_ROUTER_VERSION -X $V.BuildDate=1970-01-01T00:00:00Z" \
  -o "$dest.tmp/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
