#!/usr/bin/env bash
# How long the operator takes to issue N SM2 TLCP pairs (default 1,000 SmCertificates, each a
# sign and an enc certificate with their keys) against a real local control plane, followed by
# the SM2 sign rate of our code beside `tongsuo speed sm2` in the same run (bench/sm2-speed.sh).
#
# The certificates are created first, with the operator stopped; the clock starts when the
# operator starts and stops when every certificate is Ready, so it measures issuance (keys,
# signatures, Secrets and status writes), not kubectl creating the objects.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
count=${COUNT:-1000}
ns=bench-certs

hack/build-k8s.sh >&2
cargo build -q --release -p zhengyun-operator
bin=$CARGO_TARGET_DIR/release/zhengyun-operator

dir=$(mktemp -d /tmp/zhengyun-bench.XXXXXX)
op_pid=
cleanup() {
  [ -n "$op_pid" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null
  cluster_down "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
cluster_up "$dir" >&2
# shellcheck disable=SC1091
source "$dir/env"

"$bin" crd | kubectl apply --server-side -f - >/dev/null
kubectl wait --for=condition=Established crd --all >/dev/null
kubectl create namespace zhengyun-system >/dev/null
kubectl create namespace "$ns" >/dev/null
python3 - "$count" >"$dir/certs.yaml" <<'PY'
import sys
print("""apiVersion: zhengyun.io/v1alpha1
kind: SmIssuer
metadata: {name: bench-root}
spec:
  selfSigned: {commonName: bench root, secretName: bench-root-ca}""")
for i in range(int(sys.argv[1])):
    print(f"""---
apiVersion: zhengyun.io/v1alpha1
kind: SmCertificate
metadata: {{name: svc-{i:04d}}}
spec:
  issuerRef: {{name: bench-root}}
  commonName: svc-{i:04d}.bench.gov.cn
  dnsNames: [svc-{i:04d}.bench.gov.cn]
  usages: [server, client]
  secretName: svc-{i:04d}-tls
  pair: TLCP""")
PY
echo "creating $count SmCertificates (operator stopped)..." >&2
kubectl apply --server-side -n "$ns" -f "$dir/certs.yaml" >/dev/null

ready() {
  kubectl get smcertificates -n "$ns" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true
}
start=$(date +%s.%N)
RUST_LOG=warn POD_NAMESPACE=zhengyun-system "$bin" run --admin-addr 127.0.0.1:0 --lease-name bench \
  >"$dir/operator.log" 2>&1 &
op_pid=$!
while :; do
  n=$(ready)
  [ "$n" -ge "$count" ] && break
  kill -0 "$op_pid" 2>/dev/null || { echo "the operator exited:" >&2; tail -20 "$dir/operator.log" >&2; exit 1; }
  sleep 0.5
done
end=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
secrets=$(kubectl get secrets -n "$ns" -l zhengyun.io/certificate -o name | wc -l)
[ "$secrets" -eq "$count" ] || { echo "expected $count Secrets, found $secrets" >&2; exit 1; }
python3 - "$start" "$end" "$count" "$rss" <<'PY'
import sys
start, end, count, rss = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
took = end - start
print(f"issued {count} SM2 TLCP pairs ({2 * count} certificates) in {took:.1f} s: "
      f"{count / took:.1f} pairs/s; operator peak RSS {rss / 1024:.0f} MiB")
PY
# Spot-check one pair with Tongsuo: the benchmark counts only certificates that verify.
tongsuo=$(hack/build-tongsuo.sh)
kubectl get secret -n "$ns" svc-0000-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$dir/ca.crt"
kubectl get secret -n "$ns" svc-0000-tls -o jsonpath='{.data.enc\.crt}' | base64 -d >"$dir/enc.crt"
"$tongsuo" verify -CAfile "$dir/ca.crt" "$dir/enc.crt" >&2

bench/sm2-speed.sh
