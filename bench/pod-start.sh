#!/usr/bin/env bash
# Pod start latency with the isolation gate beside it without (issue 22): a tenant pod's create
# request to the first instant of its own container (the probe's first line says when it
# began), on the real local nodes (hack/lib/nodes.sh: containerd, kubelet, kube-router), pods
# one at a time, rounds alternating gate / no gate so the machine's drift falls on both.
#
#   bench/pod-start.sh            # 4 rounds of 10 pods each way
#   bench/pod-start.sh 2 5        # ROUNDS PODS-PER-ROUND
#
# Prints the medians and 90th percentiles each way and their ratio; docs/performance.md records
# the figures.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=../hack/lib/nodes.sh
source hack/lib/nodes.sh
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
rounds=${1:-4}
per_round=${2:-10}

hack/build-k8s.sh >&2
nodes_prepare
[ "$ZHENGYUN_NODES" = 1 ] || { echo "this benchmark needs the local nodes: $ZHENGYUN_NODES_WHY" >&2; exit 1; }
cargo build -q --locked -p zhengyun-operator -p zhengyun-e2e --bin zhengyun-operator --bin podstart
export ZHENGYUN_OPERATOR_BIN=$CARGO_TARGET_DIR/debug/zhengyun-operator
driver=$CARGO_TARGET_DIR/debug/podstart

dir=$(mktemp -d /tmp/zhengyun-podstart.XXXXXX)
cleanup() {
  nodes_down "$dir" || true
  cluster_down "$dir" || true
  rm -rf "$dir"
}
trap cleanup EXIT
cluster_up "$dir" >&2
# shellcheck disable=SC1091
source "$dir/env"
nodes_up "$dir" >&2
export ZHENGYUN_E2E_LOGS=$dir/operator-logs
out=$("$driver" "$rounds" "$per_round")
get() { echo "$out" | awk -v k="$1" '$1 == k {print $2}'; }
echo
echo "pod start, create request -> first instant of the tenant's container ($(get pods_each) pods each way, one at a time)"
printf '%-28s %10s %10s\n' "" "median ms" "p90 ms"
printf '%-28s %10s %10s\n' "without the gate" "$(get without_median_ms)" "$(get without_p90_ms)"
printf '%-28s %10s %10s\n' "with the isolation gate" "$(get with_median_ms)" "$(get with_p90_ms)"
echo "with / without (medians): $(get median_ratio) (+$(get median_added_ms) ms)"
echo "of which the gate waited for the enforcer: median $(get gate_wait_median_ms) ms, p90 $(get gate_wait_p90_ms) ms"
