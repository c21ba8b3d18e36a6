#!/usr/bin/env bash
# The scale benchmark (issues 10 and 23): N tenants (2 namespaces each, quota, limits, 等保 level
# 3, one zone) under a 3-level department tree (1 province, 21 cities, 6 counties each; every
# tenant in a budgeted department) against the local control plane, the release operator beside
# the floor in one run.
#
#   bench/scale.sh            # N = 1000
#   bench/scale.sh 1000 5000  # several sizes, one table
#
# For each N, two fresh control planes on this machine:
#   1. the floor: a bare kube-rs client with 32 workers and no client-side rate limit writes the
#      N Tenants and exactly the children the operator writes (made by its own builders), and
#      the clock stops when the quota controller enforces every ResourceQuota;
#   2. the operator: the same 32 workers create the N Tenants while the release operator runs
#      (with its webhook), and the clock stops when every Tenant is Ready (which includes its
#      quotas being enforced). Then: its API requests and writes, an idle window of 330 s (one resync of every tenant), peak RSS, 50
#      drift repairs (a deleted default-deny policy) and 200 pod admissions through the webhook.
# The driver sees quotas enforced and Tenants Ready through a watch, not by listing them all every
# half second (a list of 10,000 Tenants is tens of megabytes the API server would encode while the
# system under test waits on it), and reads the API server's own /metrics after each phase.
# Prints a table; docs/performance.md records the figures and the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
# shellcheck source=lib.sh
source bench/lib.sh
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(1000)

hack/build-k8s.sh >&2
cargo build -q --release --locked -p zhengyun-operator -p zhengyun-e2e --bin zhengyun-operator --bin scale
bin=$CARGO_TARGET_DIR/release/zhengyun-operator
driver=$CARGO_TARGET_DIR/release/scale

work=$(mktemp -d /tmp/zhengyun-scale.XXXXXX)
dir=
op_pid=
stop_all() {
  if [ -n "$op_pid" ]; then kill "$op_pid" 2>/dev/null || true; wait "$op_pid" 2>/dev/null || true; op_pid=; fi
  if [ -n "$dir" ]; then cluster_down "$dir" >/dev/null 2>&1 || true; dir=; fi
}
trap 'stop_all; rm -rf "$work"' EXIT

fresh_cluster() { # name
  dir=$work/$1
  tenant_cluster "$dir" "$bin"
}

declare -A result
for n in "${sizes[@]}"; do
  echo "== N=$n: the floor (bare client, 32 workers)" >&2
  fresh_cluster "floor-$n"
  "$driver" floor "$n" | tee "$work/floor-$n.txt" >&2
  stop_all

  echo "== N=$n: the operator (release build, with its webhook)" >&2
  fresh_cluster "operator-$n"
  operator_kubeconfig "$dir"
  admin=127.0.0.1:$(free_port)
  webhook=127.0.0.1:$(free_port)
  KUBECONFIG=$dir/operator.kubeconfig RUST_LOG=warn "$bin" run --admin-addr "$admin" \
    --webhook-addr "$webhook" --webhook-url "https://$webhook" >"$dir/operator.log" 2>&1 </dev/null &
  op_pid=$!
  for _ in $(seq 1 150); do kubectl get validatingwebhookconfiguration zhengyun >/dev/null 2>&1 && break; sleep 0.2; done
  "$driver" operator "$n" "$op_pid" "$admin" | tee "$work/operator-$n.txt" >&2
  stop_all
  while read -r k v; do result[$n,$k]=$v; done < <(cat "$work/floor-$n.txt" "$work/operator-$n.txt")
done

row() { # label key [reference]
  printf '| %s |' "$1"
  for n in "${sizes[@]}"; do printf ' %s |' "${result[$n,$2]:-?}"; done
  printf ' %s |\n' "${3:-}"
}
ratio_row() {
  printf '| convergence / floor |'
  for n in "${sizes[@]}"; do
    printf ' %s |' "$(python3 -c "print(f'{${result[$n,operator_seconds]}/${result[$n,floor_seconds]}:.2f}')")"
  done
  printf ' goal ≤ 1.1 |\n'
}
printf '\n| N tenants |'; for n in "${sizes[@]}"; do printf ' %s |' "$n"; done; printf ' reference |\n'
printf '|---|'; for _ in "${sizes[@]}"; do printf -- '---|'; done; printf -- '---|\n'
row "floor: objects written by the bare client" floor_objects
row "floor: all written (s)" floor_written_seconds
row "floor: every quota enforced (s)" floor_seconds
row "operator: Tenants created (s)" operator_created_seconds
row "operator: every Tenant Ready (s)" operator_seconds
ratio_row
row "API server: requests per tenant, floor (watches and Leases excluded)" floor_apiserver_requests_per_tenant
row "API server: requests per tenant, operator (watches and Leases excluded)" operator_apiserver_requests_per_tenant
row "quota controller: status writes per namespace, floor" floor_quota_status_writes_per_namespace
row "quota controller: status writes per namespace, operator" operator_quota_status_writes_per_namespace
row "API requests per tenant" requests_per_tenant "before: 127"
row "API writes per tenant (Lease excluded)" writes_per_tenant "goal: = objects (15) + finalizer + Ready"
row "objects written per tenant (zhengyun_writes_total)" object_writes_per_tenant
row "tenant reconciles per tenant" reconciles_per_tenant "before: 6.7"
row "failed reconciles" failed_reconciles "before: 248 at 1,000"
row "operator CPU while converging (s)" operator_cpu_seconds_converging "before: 162 at 1,000"
row "operator CPU per tenant while converging (ms)" operator_cpu_ms_per_tenant "goal: at 10,000 ≤ 1.2 × at 1,000"
row "idle window (s, spans the 300 s resync)" idle_seconds ""
row "idle: tenant reconciles in the window (resyncs)" idle_tenant_reconciles ""
row "idle: writes in the window (Lease excluded)" idle_writes_total "goal 0"
row "idle: API requests per minute" idle_requests_per_minute "before: 16,000–20,000"
row "idle: writes per minute (Lease excluded)" idle_writes_per_minute "goal 0; before 9,000–11,000"
row "idle: Lease writes per minute" idle_lease_writes_per_minute
row "idle: operator CPU (% of a core)" idle_cpu_percent "before: 38%"
row "peak RSS (MiB)" peak_rss_mib "goal ≤ 300 at 10,000"
row "RSS after the idle window (MiB)" idle_rss_mib ""
row "heap then: live objects (MiB, jemalloc allocated)" heap_allocated_mib ""
row "heap then: resident (MiB, jemalloc resident)" heap_resident_mib ""
row "/metrics once every tenant is Ready: series" metrics_series "before: about 14 a tenant"
row "/metrics once every tenant is Ready: KiB" metrics_kib "before: 2.1 MB at 2,000"
row "/metrics once every tenant is Ready: scrape (s)" metrics_scrape_seconds ""
row "drift repair p50 (s)" drift_repair_p50_seconds
row "drift repair p99 (s)" drift_repair_p99_seconds "goal ≤ 1 at 1,000; before 2–29+"
row "Tenant create p50 (s): floor (no webhook)" floor_tenant_create_p50_seconds
row "Tenant create p99 (s): floor (no webhook)" floor_tenant_create_p99_seconds
row "Tenant create p50 (s): with the operator's webhook" operator_tenant_create_p50_seconds
row "Tenant create p99 (s): with the operator's webhook" operator_tenant_create_p99_seconds
row "Tenant create: the webhook's own time, p50 (s)" operator_tenant_validate_p50_seconds
row "Tenant create: the webhook's own time, p99 (s)" operator_tenant_validate_p99_seconds "bench/admission.sh: ≤ 0.05 in one department of 10,000"
row "pod create p50 (s): floor (no webhook)" floor_pod_create_p50_seconds
row "pod create p99 (s): floor (no webhook)" floor_pod_create_p99_seconds
row "pod admission p50 (s)" pod_admission_p50_seconds
row "pod admission p99 (s)" pod_admission_p99_seconds "goal ≤ 0.05"
row "pod admission: the webhook's own time, p99 (s): mutate" pod_mutate_p99_seconds
row "pod admission: the webhook's own time, p99 (s): validate" pod_validate_p99_seconds
for n in "${sizes[@]}"; do
  printf '\nN=%s: writes per tenant by controller and kind (zhengyun_writes_total):\n' "$n"
  grep '^writes_of\[' "$work/operator-$n.txt" | sed 's/^writes_of\[\(.*\)\] /  \1: /' || true
done
