#!/usr/bin/env bash
# Tenant admission in one crowded department (issue 23): a Tenant create admitted in ≤ 50 ms
# p99 with N tenants (default 10,000) already in the same department.
#
#   bench/admission.sh          # N = 10000
#   bench/admission.sh 1000
#
# One fresh control plane on this machine:
#   1. the floor, no webhook: a bare client creates the department and its N tenants (32 at
#      once), then 200 Tenants one by one and 2,000 with 32 workers;
#   2. the release operator starts with `--controllers none` (it serves and registers its
#      webhook, and runs no controller, so only admission is measured): 200 Tenants one by one
#      and 2,000 with 32 workers into the same department, through the webhook.
# Prints a table: client-side create latency with and without the webhook, and the webhook's
# own time (its zhengyun_admission_duration_seconds histogram, so bucket bounds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
# shellcheck source=lib.sh
source bench/lib.sh
n=${1:-10000}

hack/build-k8s.sh >&2
cargo build -q --release --locked -p zhengyun-operator -p zhengyun-e2e --bin zhengyun-operator --bin scale
bin=$CARGO_TARGET_DIR/release/zhengyun-operator
driver=$CARGO_TARGET_DIR/release/scale

work=$(mktemp -d /tmp/zhengyun-admission.XXXXXX)
dir=$work/cluster
op_pid=
stop_all() {
  if [ -n "$op_pid" ]; then kill "$op_pid" 2>/dev/null || true; wait "$op_pid" 2>/dev/null || true; op_pid=; fi
  cluster_down "$dir" >/dev/null 2>&1 || true
}
trap 'stop_all; rm -rf "$work"' EXIT

tenant_cluster "$dir" "$bin"

echo "== the floor: $n tenants in one department, then creates without the webhook" >&2
"$driver" admission-floor "$n" | tee "$work/floor.txt" >&2

echo "== the same department through the operator's webhook (--controllers none)" >&2
operator_kubeconfig "$dir"
admin=127.0.0.1:$(free_port)
webhook=127.0.0.1:$(free_port)
KUBECONFIG=$dir/operator.kubeconfig RUST_LOG=warn "$bin" run --admin-addr "$admin" --controllers none \
  --webhook-addr "$webhook" --webhook-url "https://$webhook" >"$dir/operator.log" 2>&1 </dev/null &
op_pid=$!
for _ in $(seq 1 150); do kubectl get validatingwebhookconfiguration zhengyun >/dev/null 2>&1 && break; sleep 0.2; done
"$driver" admission "$admin" | tee "$work/webhook.txt" >&2

declare -A r
while read -r k v; do r[$k]=$v; done < <(cat "$work/floor.txt" "$work/webhook.txt")
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
cat <<TABLE

| Tenant creates into one department holding ${r[admission_held_tenants]} tenants | p50 (s) | p99 (s) | reference |
|---|---|---|---|
| one by one, no webhook (floor) | ${r[floor_one_by_one_p50_seconds]} | ${r[floor_one_by_one_p99_seconds]} | |
| one by one, through the webhook | ${r[webhook_one_by_one_p50_seconds]} | ${r[webhook_one_by_one_p99_seconds]} | p99 / floor p99: $(ratio "${r[webhook_one_by_one_p99_seconds]}" "${r[floor_one_by_one_p99_seconds]}") |
| the webhook's own time: validate (budget, reservation) | ${r[webhook_validate_p50_seconds]} | ${r[webhook_validate_p99_seconds]} | goal: p99 ≤ 0.05 |
| the webhook's own time: mutate | ${r[webhook_mutate_p50_seconds]} | ${r[webhook_mutate_p99_seconds]} | |
| 32 at once, no webhook (floor) | ${r[floor_at_once_p50_seconds]} | ${r[floor_at_once_p99_seconds]} | |
| 32 at once, through the webhook | ${r[webhook_at_once_p50_seconds]} | ${r[webhook_at_once_p99_seconds]} | p99 / floor p99: $(ratio "${r[webhook_at_once_p99_seconds]}" "${r[floor_at_once_p99_seconds]}") |

Reservations left on the department after 2,000 creates at once: ${r[reservations_bytes_after]} bytes (the API server allows 256 KiB of annotations).
TABLE
