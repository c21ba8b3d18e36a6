#!/usr/bin/env bash
# The main job on a fresh machine: builds what is needed (cached under ~/.cache/zhengyun/),
# starts a local control plane (etcd + kube-apiserver + kube-controller-manager + scheduler) and
# two real nodes, one per zone (containerd + kubelet + kube-proxy + kube-router in their own network
# namespaces; ZHENGYUN_NODES=0 skips them, and a machine without what they need says so),
# installs the CRDs, runs the operator and applies the sample tenants from docs/examples/.
# Runs in the foreground until Ctrl-C, then stops everything. With --detach it returns and
# hack/down.sh stops it later.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=lib/cluster.sh
source hack/lib/cluster.sh
# shellcheck source=lib/nodes.sh
source hack/lib/nodes.sh
# shellcheck source=lib/env.sh
source "$(dirname "$0")/lib/env.sh"
detach=0
[ "${1:-}" = "--detach" ] && detach=1
dir=${ZHENGYUN_LOCAL_DIR:-$root/.local/cluster}
admin=${ZHENGYUN_ADMIN_ADDR:-127.0.0.1:8080}

echo "== building (first run: Kubernetes from the Go module proxy and the operator, several minutes)"
cache_room
hack/build-k8s.sh >/dev/null
cargo build -p zhengyun-operator --locked
nodes_prepare
"$root/hack/down.sh" >/dev/null 2>&1 || true
rm -rf "$dir"
mkdir -p "$dir"
# Until the cloud is up, a failure anywhere stops what was started (no process, netns or route
# left behind); after that, Ctrl-C or hack/down.sh does.
up_done=0
trap '[ "$up_done" = 1 ] || "$root/hack/down.sh" >/dev/null 2>&1 || true' EXIT

echo "== starting the local control plane"
cluster_up "$dir"
# shellcheck disable=SC1091
source "$dir/env"
if [ "$ZHENGYUN_NODES" = 1 ]; then
  echo "== starting the nodes zy-intranet and zy-extranet"
  # In a subshell of its own with errexit on: inside an `if`, bash would ignore its failures.
  set +e
  (set -e; nodes_up "$dir")
  nodes_rc=$?
  set -e
  if [ "$nodes_rc" != 0 ]; then
    echo "the nodes did not come up (logs in $dir/nodes/): the control plane runs without them" >&2
    nodes_down "$dir" || true
    export ZHENGYUN_NODES=0
  fi
fi
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established crd/tenants.zhengyun.io --timeout=60s >/dev/null
kubectl create namespace zhengyun-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null

if [ "$ZHENGYUN_NODES" = 1 ]; then
  # As docs/admin-guide.md installs it: the image the Containerfile describes, on the nodes,
  # from the chart (two replicas electing a leader, the webhook behind its Service).
  echo "== the operator's image (static build; several minutes the first time) and helm install charts/zhengyun"
  tools=$(hack/build-tools.sh)
  mapfile -t operator_images < <(hack/build-operator-image.sh)
  nodes_import "$dir" "${operator_images[@]}"
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  "$tools/helm" install zhengyun charts/zhengyun -n zhengyun-system --set crds.install=false \
    --set image.repository=localhost/zhengyun/zhengyun-operator --set image.tag="$version" \
    --set image.pullPolicy=Never \
    --set isolationGate.image.repository=localhost/zhengyun/probe --set isolationGate.image.tag=0.1.0 \
    --set 'tolerations[0].key=zhengyun.io/zone,tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule' \
    --wait --timeout 180s >/dev/null
  echo "helm" >"$dir/operator-mode"
  leader=$(kubectl -n zhengyun-system get lease zhengyun-operator -o jsonpath='{.spec.holderIdentity}')
  admin=$(kubectl -n zhengyun-system get pod "$leader" -o jsonpath='{.status.podIP}'):8080
  echo "== the operator runs as pods; leader $leader (admin $admin)"
  operator_bin=$CARGO_TARGET_DIR/debug/zhengyun-operator
else
  # Without nodes, as a host process; it runs as its own ServiceAccount, as in a cluster, so
  # the admission webhook can tell its writes from a cloud admin's.
  operator_kubeconfig "$dir"
  webhook=127.0.0.1:${ZHENGYUN_WEBHOOK_PORT:-$(free_port)}
  echo "== starting the operator (admin port $admin, webhook $webhook, logs in $dir/logs/operator.log)"
  KUBECONFIG=$dir/operator.kubeconfig setsid "$CARGO_TARGET_DIR/debug/zhengyun-operator" run \
    --admin-addr "$admin" --webhook-addr "$webhook" --webhook-url "https://$webhook" --log-format text \
    >"$dir/logs/operator.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/operator"
  operator_bin=$CARGO_TARGET_DIR/debug/zhengyun-operator
fi
for _ in $(seq 1 100); do kubectl get validatingwebhookconfiguration zhengyun >/dev/null 2>&1 && break; sleep 0.2; done

echo "== applying the sample zones, the cloud's SM2 CA and tenants from docs/examples/"
kubectl apply -f docs/examples/zones/
kubectl apply -f docs/examples/pki/cloud-ca.yaml
kubectl apply -f docs/examples/tenants/
if ! kubectl wait --for=condition=Ready tenant --all --timeout=90s >/dev/null; then
  echo "tenants did not become Ready; operator log:" >&2
  if [ "$ZHENGYUN_NODES" = 1 ]; then
    kubectl -n zhengyun-system logs deploy/zhengyun-operator --tail=30 >&2 || true
  else
    tail -30 "$dir/logs/operator.log" >&2
  fi
  exit 1
fi
kubectl apply -f docs/examples/channels/
kubectl wait --for=condition=Ready smcertificate --all -A --timeout=60s >/dev/null || true
# A zone's NODES and READY columns come from its status: print them once every zone has one for
# its current spec (at most 30 s), not the empty columns of the first seconds.
for _ in $(seq 1 150); do
  kubectl get zones -o jsonpath='{range .items[*]}{.metadata.generation}={.status.observedGeneration}{"\n"}{end}' |
    awk -F= '$1 != $2 { pending = 1 } END { exit pending }' && break
  sleep 0.2
done
kubectl get zones
kubectl get tenants -o wide
[ "$ZHENGYUN_NODES" = 1 ] && kubectl get nodes -o wide
kubectl get exchangechannels
kubectl get smclusterissuers,smcertificates -A
if [ "$ZHENGYUN_NODES" = 1 ]; then
  kubectl -n zhengyun-system get pods -o wide
  # A workload per zone, on the real nodes: the webhook places each on its zone's node.
  for ns in bigdata-portal police-analytics; do
    kubectl -n "$ns" apply -f - >/dev/null <<DEPLOY
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65535, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: pause
        image: localhost/zhengyun/pause:0.1.0
        imagePullPolicy: Never
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
DEPLOY
  done
  for ns in bigdata-portal police-analytics; do
    kubectl -n "$ns" rollout status deployment/demo --timeout=90s >/dev/null || echo "deployment demo in $ns did not become ready" >&2
  done
  kubectl get pods -A -l app=demo -o wide
fi

cat <<MSG

The local cloud is up. Look around:
  export KUBECONFIG=$dir/kubeconfig PATH=$ZHENGYUN_K8S_BIN:\$PATH
  kubectl get tenants -o wide                       # departments, zones, 等保 levels, quota used/hard
  kubectl describe tenant police                    # conditions and events
  kubectl explain tenant.spec                       # the API, documented
  kubectl get namespaces -l app.kubernetes.io/managed-by=zhengyun --show-labels
  kubectl get resourcequota,limitrange,networkpolicy,rolebinding -n police-analytics
  kubectl auth can-i create deployments -n police-analytics --as x --as-group police-platform
  kubectl auth can-i patch resourcequota -n police-analytics --as x --as-group police-platform
  curl -s http://$admin/metrics | grep '^zhengyun_'
  kubectl get zones,exchangechannels                 # 安全区域 and 数据共享交换
  $operator_bin reachability   # who can reach whom, from the policies in force
  kubectl label namespace police-analytics zhengyun.io/zone=extranet --overwrite   # refused by the webhook
  kubectl get smci,smcert -A -o wide                 # 国密 CAs and certificates (docs/pki.md)
  kubectl get secret -n bigdata-portal portal-tls -o jsonpath='{.data.enc\.crt}' | base64 -d   # the TLCP enc certificate
MSG

if [ "$detach" = 1 ]; then
  up_done=1
  echo "Stop everything with: hack/down.sh"
  exit 0
fi
up_done=1
echo "Press Ctrl-C to stop the operator and the control plane."
trap '"$root/hack/down.sh"; exit 0' INT TERM
if [ "$ZHENGYUN_NODES" = 1 ]; then
  while true; do sleep 1; done
fi
while kill -0 "$(cat "$dir/pids/operator")" 2>/dev/null; do sleep 1; done
echo "the operator exited; log: $dir/logs/operator.log" >&2
"$root/hack/down.sh"
exit 1
