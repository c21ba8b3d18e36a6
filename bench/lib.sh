# shellcheck shell=bash
# What the tenant benchmarks share (sourced by bench/scale.sh and bench/admission.sh; needs
# hack/lib/cluster.sh sourced first).

# tenant_cluster DIR BIN: a fresh local control plane in DIR with zhengyun's CRDs (printed by the
# operator binary BIN), the zhengyun-system namespace and the zone `extranet`; its env sourced.
tenant_cluster() {
  mkdir -p "$1"
  cluster_up "$1" >&2
  # shellcheck disable=SC1091
  source "$1/env"
  "$2" crd | kubectl apply --server-side -f - >/dev/null
  kubectl wait --for=condition=Established crd --all >/dev/null
  kubectl create namespace zhengyun-system >/dev/null
  kubectl apply -f - >/dev/null <<'ZONE'
apiVersion: zhengyun.io/v1alpha1
kind: Zone
metadata: {name: extranet}
spec: {kind: Extranet, nodeSelector: {zhengyun.io/zone: extranet}, minSecurityLevel: 2}
ZONE
}
