#!/usr/bin/env bash
# Installs the test tools the project needs, into ~/.cache/zhengyun/tools/ (keyed by version):
#   helm      from the Go module proxy (helm.sh/helm/v3)
#   promtool  from Debian's `prometheus` package (apt), for `promtool check metrics/rules`
#   gmssl     a pure-Python SM2/SM3/SM4 (PyPI), in a venv: an independent check of our signatures
#   the ClusterNetworkPolicy CRD (sigs.k8s.io/network-policy-api, from the Go module proxy),
#             to test zhengyun where a cluster serves that API
# Prints the tools directory; put it on PATH.
set -euo pipefail
HELM_VERSION=v3.22.0
NETWORK_POLICY_API_VERSION=v0.2.0
cache=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}
dest=$cache/tools/helm-$HELM_VERSION
if [ ! -x "$dest/helm" ]; then
  echo "building helm $HELM_VERSION from the Go module proxy" >&2
  mkdir -p "$dest"
  GOBIN=$dest CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
cnp=$dest/clusternetworkpolicies-$NETWORK_POLICY_API_VERSION.yaml
if [ ! -f "$cnp" ]; then
  src=$(go mod download -json "sigs.k8s.io/network-policy-api@$NETWORK_POLICY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$src/config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml" "$cnp"
  chmod 644 "$cnp"
fi
venv=$dest/venv-gmssl
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gmssl' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q gmssl==3.2.2 >&2
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian package prometheus)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
fi
echo "$dest"
