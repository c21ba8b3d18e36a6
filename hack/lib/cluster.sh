# shellcheck shell=bash
# A real local control plane: etcd, kube-apiserver and kube-controller-manager on loopback. With
# ZHENGYUN_NODES=1 it is ready for the real nodes of hack/lib/nodes.sh: the API server also
# listens where the nodes reach it, authorizes kubelets as nodes, and a scheduler and the
# workload controllers run too. Source this file, then:
#   cluster_up DIR      start (ports from ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT or free ones)
#   cluster_down DIR    stop everything started from DIR, leaving no process behind
#   cluster_restart DIR NAME   crash one component and start it again (fault tests)
# Writes DIR/kubeconfig (admin) and DIR/env (the ports, KUBECONFIG and the directory, to source).
# The API server's audit log, DIR/logs/audit.log, records the writes of one ServiceAccount only,
# zhengyun-system/zhengyun-audited (user agent, verb, object, times): the e2e suite runs the two
# replicas of its leader-election test as it, to tell which replica wrote what and when.

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

_cluster_pki() {
  local pki=$1
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=zhengyun-local-ca" 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    _cert() { # name subject [san]
      local name=$1 subj=$2 san=${3:-}
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
      local ext="$name.ext"
      if [ -n "$san" ]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$ext"
      else
        printf 'extendedKeyUsage=clientAuth\n' >"$ext"
      fi
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" -days 3650 -extfile "$ext" 2>/dev/null
      rm -f "$name.csr" "$ext"
    }
    _cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.0.0.1,IP:10.99.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    _cert admin "/O=system:masters/CN=zhengyun-admin"
    _cert kcm "/CN=system:kube-controller-manager"
    _cert scheduler "/CN=system:kube-scheduler"
    # The API server's client certificate towards kubelets (logs, exec).
    _cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  )
}

_kubeconfig() { # file port cert key
  local file=$1 port=$2 cert=$3 key=$4 pki
  pki=$(dirname "$cert")
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $pki/ca.crt
users:
- name: user
  user:
    client-certificate: $cert
    client-key: $key
contexts:
- name: local
  context: {cluster: local, user: user}
current-context: local
KC
}

_start() { # dir name cmd...
  local dir=$1 name=$2
  shift 2
  mkdir -p "$dir/cmds"
  printf '%s\0' "$@" >"$dir/cmds/$name"
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
  # Ours to stop by pid file, not the shell's job: no "Killed" notice when teardown kills it.
  disown $!
}

# cluster_restart DIR NAME [SECONDS]: stops one component (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) as a crash would, keeps it down SECONDS (default 3), and starts it
# again with the same command line. The fault tests use it.
cluster_restart() {
  local dir=$1 name=$2 down=${3:-3}
  component_stop "$dir" "$name" KILL
  sleep "$down"
  component_start "$dir" "$name"
}

# component_stop DIR NAME [SIGNAL]: stops one process started here (a control plane component, or
# a node's kube-router-ZONE, kubelet-ZONE, ...) with SIGNAL (default TERM; KILL after 10 s).
component_stop() {
  local dir=$1 name=$2 sig=${3:-TERM} pid
  pid=$(cat "$dir/pids/$name")
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# component_start DIR NAME: starts it again with the command line it was first started with.
component_start() {
  local dir=$1 name=$2
  local -a cmd
  mapfile -d '' cmd <"$dir/cmds/$name"
  _start "$dir" "$name" "${cmd[@]}"
}

cluster_up() {
  local dir=$1 bin
  bin=$("$HACK_DIR/build-k8s.sh")
  mkdir -p "$dir/logs" "$dir/pids"
  dir=$(cd "$dir" && pwd)
  local etcd_port=${ETCD_PORT:-$(free_port)} peer_port=${ETCD_PEER_PORT:-$(free_port)} api_port=${APISERVER_PORT:-$(free_port)}
  [ -f "$dir/pki/ca.crt" ] || _cluster_pki "$dir/pki"
  local pki=$dir/pki
  _kubeconfig "$dir/kubeconfig" "$api_port" "$pki/admin.crt" "$pki/admin.key"
  _kubeconfig "$dir/kcm.kubeconfig" "$api_port" "$pki/kcm.crt" "$pki/kcm.key"
  cat >"$dir/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["system:serviceaccount:zhengyun-system:zhengyun-audited"]
  verbs: [create, update, patch, delete, deletecollection]
- level: None
POLICY
  cat >"$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export ZHENGYUN_AUDIT_LOG=$dir/logs/audit.log
export ZHENGYUN_K8S_BIN=$bin
export APISERVER_PORT=$api_port
export PATH=$bin:\$PATH
export ZHENGYUN_CLUSTER_DIR=$dir
ENV

  _start "$dir" etcd "$bin/etcd" --name local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "local=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
  local -a node_flags=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,ResourceQuota,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy)
  local controllers=namespace,garbagecollector,resourcequota,serviceaccount,serviceaccount-token,root-ca-cert-publisher,pvc-protection,pv-protection
  if [ "${ZHENGYUN_NODES:-0}" = 1 ]; then
    # Nodes reach the API server on the host bridge (10.99.0.1); kubelets are authorized as
    # nodes; it calls kubelets by their InternalIP (a hostname would be a DNS lookup off the
    # machine), and webhook Services by their endpoints' pod IPs (the host has no kube-proxy).
    node_flags=(--bind-address 0.0.0.0 --advertise-address 10.99.0.1 --authorization-mode Node,RBAC
      --enable-admission-plugins NamespaceLifecycle,LimitRanger,ServiceAccount,ResourceQuota,PodSecurity,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy
      --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key"
      --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP
      --enable-aggregator-routing=true)
    controllers+=,deployment,replicaset,endpoint,endpointslice,endpointslicemirroring,nodelifecycle,podgc,disruption,taint-eviction-controller,ttl,daemonset,statefulset,job,cronjob
    _kubeconfig "$dir/scheduler.kubeconfig" "$api_port" "$pki/scheduler.crt" "$pki/scheduler.key"
  fi
  _start "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    "${node_flags[@]}" --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.0.0.0/24 \
    --allow-privileged=true \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/logs/audit.log" \
    --v 1
  local i
  for i in $(seq 1 120); do
    if "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$dir/pids/kube-apiserver")" 2>/dev/null; then
      echo "kube-apiserver exited; last lines of $dir/logs/kube-apiserver.log:" >&2
      tail -20 "$dir/logs/kube-apiserver.log" >&2
      return 1
    fi
    sleep 0.5
  done
  "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz >/dev/null || { echo "kube-apiserver not ready" >&2; return 1; }
  _start "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kcm.kubeconfig" \
    --controllers "$controllers" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials --leader-elect=false --secure-port 0 --concurrent-resource-quota-syncs 10 --v 1
  if [ "${ZHENGYUN_NODES:-0}" = 1 ]; then
    _start "$dir" kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/scheduler.kubeconfig" \
      --authentication-kubeconfig "$dir/scheduler.kubeconfig" --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
      --leader-elect=false --secure-port 0 --v 1
  fi
  echo "control plane up: KUBECONFIG=$dir/kubeconfig (apiserver https://127.0.0.1:$api_port)" >&2
}

# operator_kubeconfig DIR: a ServiceAccount zhengyun-operator (cluster-admin) in zhengyun-system
# and DIR/operator.kubeconfig for it, so the operator runs as itself (its webhook tells its own
# writes from an admin's by that user).
operator_kubeconfig() {
  local dir=$1 token server
  kubectl -n zhengyun-system create serviceaccount zhengyun-operator >/dev/null
  kubectl create clusterrolebinding zhengyun-operator --clusterrole=cluster-admin \
    --serviceaccount=zhengyun-system:zhengyun-operator >/dev/null
  token=$(kubectl -n zhengyun-system create token zhengyun-operator --duration=24h)
  server=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
  cat >"$dir/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: $server, certificate-authority: $dir/pki/ca.crt}}]
users: [{name: operator, user: {token: $token}}]
contexts: [{name: local, context: {cluster: local, user: operator}}]
current-context: local
KC
}

cluster_down() {
  local dir=$1 f pid
  [ -d "$dir/pids" ] || return 0
  # Reverse start order: controllers, then the API server, then its store.
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    f=$dir/pids/$name
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}
