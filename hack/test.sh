#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, the CRD drift check, and the end-to-end suite
# against a real etcd + kube-apiserver + kube-controller-manager started here on loopback.
# Heavy builds are cached under ~/.cache/zhengyun/ (Kubernetes binaries by version, cargo's
# target directory), so a warm run only rebuilds what changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=lib/nodes.sh
source hack/lib/nodes.sh
# shellcheck source=lib/env.sh
source "$(dirname "$0")/lib/env.sh"
export CARGO_TERM_COLOR=never

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "disk: room for the builds"
cache_room
df -h "${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}" | tail -1

step "Kubernetes ${K8S_VERSION:-} binaries (built once from the Go module proxy, then cached)"
hack/build-k8s.sh

step "test tools: helm (Go module proxy) and promtool (Debian prometheus package)"
tools=$(hack/build-tools.sh)
export PATH=$tools:$PATH
export ZHENGYUN_CNP_CRD=$tools/clusternetworkpolicies-v0.2.0.yaml
export ZHENGYUN_GMSSL_PYTHON=$tools/venv-gmssl/bin/python

step "Tongsuo 8.4 command-line tool (built once from the tongsuo-src crate's source, then cached)"
ZHENGYUN_TONGSUO=$(hack/build-tongsuo.sh)
export ZHENGYUN_TONGSUO

step "OpenSSL 4 command-line tool (built once from the openssl-src crate's source, then cached): the gateway's RFC 8998 peer"
ZHENGYUN_OPENSSL4=$(hack/build-openssl4.sh)
export ZHENGYUN_OPENSSL4

# The gateway's tests run the binary that ships (static, with the thread-safe Tongsuo its image
# carries), not a debug build that links another Tongsuo (issue 28).
step "zhengyun-gateway as it ships: static, with Tongsuo built with threads (both cached)"
ZHENGYUN_GATEWAY_BIN=$(hack/build-gateway.sh)
export ZHENGYUN_GATEWAY_BIN
gateway_tested=$(sha256sum "$ZHENGYUN_GATEWAY_BIN" | cut -d' ' -f1)
echo "$ZHENGYUN_GATEWAY_BIN (sha256 $gateway_tested)"

step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "unit tests (includes: committed CRDs match the Rust types)"
cargo test --workspace --exclude zhengyun-e2e --locked

# Real nodes unless ZHENGYUN_NODES=0. A machine that lacks what they need fails here, saying
# what: otherwise the tests that need nodes would pass with nothing shown. ZHENGYUN_NODES=0 runs
# the rest, and those tests say they had no nodes.
step "local nodes: Debian packages, containerd, runc, CNI plugins and kube-router (Go module proxy), images"
nodes_prepare
if [ "$ZHENGYUN_NODES" != 1 ] && [ "${ZHENGYUN_NODES_WHY:-}" != "ZHENGYUN_NODES=0 was set" ]; then
  echo "the suite needs real nodes and this machine cannot run them ($ZHENGYUN_NODES_WHY);" >&2
  echo "ZHENGYUN_NODES=0 hack/test.sh runs everything else" >&2
  exit 1
fi

# kube-router v2.1.0 is the only v2 the Go module proxy serves; its reported advisories are
# each assessed (hack/kube-router/advisories-accepted.txt) and a new one fails the run.
if [ "$ZHENGYUN_NODES" = 1 ]; then
  step "kube-router's advisories (govulncheck with the Go vulnerability database, both from the Go module proxy)"
  hack/vulncheck-kube-router.sh --check
fi

dir=$(mktemp -d /tmp/zhengyun-test.XXXXXX)
cleanup() {
  nodes_down "$dir"
  cluster_down "$dir"
  if [ "$ZHENGYUN_NODES" = 1 ] && ! nodes_leftovers; then echo "the local nodes left something behind" >&2; exit 1; fi
  if [ -n "${KEEP_TEST_DIR:-}" ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
step "local control plane"
cluster_up "$dir"
# shellcheck disable=SC1091
source "$dir/env"
if [ "$ZHENGYUN_NODES" = 1 ]; then
  step "local nodes (one per zone: containerd, kubelet, kube-proxy and kube-router in their own network namespaces)"
  nodes_up "$dir"
  # The outside network's address and namespace, and the probe binary, for the traffic test.
  # shellcheck disable=SC1091
  source "$dir/nodes/outside.env"
  step "the operator's image, as the Containerfile describes it (static binary), on the nodes"
  mapfile -t operator_images < <(hack/build-operator-image.sh)
  [ ${#operator_images[@]} -eq 2 ] || { echo "building the operator's image failed" >&2; exit 1; }
  nodes_import "$dir" "${operator_images[@]}"
  export ZHENGYUN_OPERATOR_IMAGE=localhost/zhengyun/zhengyun-operator
  step "zhengyun-gateway's image, as gateway/Containerfile describes it (the binary the gateway's tests ran), on the nodes"
  gateway_image=$(hack/build-gateway-image.sh)
  [ -f "$gateway_image" ] || { echo "building the gateway's image failed" >&2; exit 1; }
  if [ "$(sha256sum "$ZHENGYUN_GATEWAY_BIN" | cut -d' ' -f1)" != "$gateway_tested" ]; then
    echo "the gateway binary changed between its tests and its image" >&2
    exit 1
  fi
  nodes_import "$dir" "$gateway_image"
  export ZHENGYUN_GATEWAY_IMAGE=localhost/zhengyun/zhengyun-gateway:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
fi
export ZHENGYUN_OPERATOR_BIN=$CARGO_TARGET_DIR/debug/zhengyun-operator
export ZHENGYUN_E2E_LOGS=$dir/operator-logs

step "end-to-end tests against the real control plane"
if ! cargo test -p zhengyun-e2e --locked -- --test-threads=1 "$@"; then
  echo "e2e failed; operator logs:" >&2
  for f in "$ZHENGYUN_E2E_LOGS"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -30 "$f" >&2; }; done
  exit 1
fi
# The traffic matrices observed on the real nodes (docs/traffic-matrix.md says what they show),
# printed and kept in .local/traffic/ (JSON for hack/render-matrix.py).
if ls "$ZHENGYUN_E2E_LOGS"/traffic-*/matrix-*.md >/dev/null 2>&1; then
  rm -rf .local/traffic && mkdir -p .local/traffic
  for f in "$ZHENGYUN_E2E_LOGS"/traffic-*/matrix-*; do cp "$f" .local/traffic/; done
  for f in .local/traffic/matrix-*.md; do printf '\n== traffic matrix %s\n' "$(basename "$f" .md)"; cat "$f"; done
fi
# The assessor's report of the cluster as the suite left it, with the traffic observed on the
# real nodes beside the computed matrix, kept in .local/evidence/ (docs/compliance.md). The
# operator's ClusterRole is the one the helm test's release left.
step "the evidence report of the cluster the suite leaves"
observed=()
for f in .local/traffic/matrix-*.md; do [ -f "$f" ] && observed=(--observed "$f") && break; done
rm -rf .local/evidence
"$ZHENGYUN_OPERATOR_BIN" evidence --output .local/evidence --operator-role zhengyun-operator "${observed[@]}"
