# shellcheck shell=bash
# Real nodes for the local control plane, one per zone, on this one machine: each node is a
# network namespace (its own address on a host bridge) with its own mount namespace, holding a
# containerd, a kubelet, a kube-proxy and kube-router (the NetworkPolicy enforcer, firewall only)
# started from hack/ (no systemd, no images pulled). Source
# hack/lib/cluster.sh first, then this file:
#   nodes_prepare             installs and builds what nodes need and sets ZHENGYUN_NODES to 1, or to
#                             0 saying why not (ZHENGYUN_NODES=0 beforehand skips it all)
#   nodes_preflight           prints the first kernel feature or tool this machine lacks; returns 1
#   nodes_up DIR              brings the nodes up beside the control plane in DIR (first removing
#                             what a killed run left; cluster_up with
#                             ZHENGYUN_NODES=1 first, so the API server listens where nodes reach it)
#   nodes_import DIR TAR...   imports image archives into every node's containerd (the operator's)
#   nodes_down DIR            stops them and removes every process, mount, namespace, link, route and
#                             cgroup they made
#   nodes_leftovers           says what nodes_down left behind, if anything; returns 1 then
# Addresses (docs/local-control-plane.md): host bridge zy-br0 10.99.0.1/24; node N (1, 2, ...)
# 10.99.0.(10+N), pods 10.244.N.0/24; Services 10.0.0.0/24. Nothing here has a default route, and
# the host blackholes the pod and Service ranges, so no packet of ours leaves the machine.

ZY_NODE_ZONES=${ZHENGYUN_NODE_ZONES:-intranet extranet}
ZY_BRIDGE=zy-br0
ZY_HOST_IP=10.99.0.1
ZY_CGROUP=zhengyun
ZY_PAUSE_IMAGE=localhost/zhengyun/pause:0.1.0
# Every v1 hierarchy the kubelet asks for under its cgroup root.
ZY_CGROUP_CONTROLLERS="cpu cpuacct cpuset memory pids blkio devices freezer systemd"
# What the kubelet would set on the host (vm.overcommit_memory=1, kernel.panic=10,
# kernel.panic_on_oops=1, ...): each node's mount namespace shows it these values from files of
# ours instead, so the host's settings are never touched.
ZY_KERNEL_TUNABLES="vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000"

# The zones' outside network: a network namespace on the bridge standing for the external
# network the e2e tests' intranet zone declares (10.200.0.0/24; docs/examples/zones/ declares
# 10.10.0.0/16 instead, so under hack/up.sh this network belongs to no zone), with
# a probe listening at 10.200.0.10. Nodes and the host route it there, so whether a pod reaches
# it is the policies' decision, and no packet for it leaves the machine.
ZY_OUTSIDE_NET=10.200.0.0/24
ZY_OUTSIDE_IP=10.200.0.10
ZY_OUTSIDE_GW=10.99.0.200

_node_ip() { echo "10.99.0.$((10 + $1))"; }
_node_pods() { echo "10.244.$1.0/24"; }

# nodes_preflight: checks, in a throwaway network namespace, everything a node needs.
nodes_preflight() {
  local c
  if [ "$(id -u)" != 0 ]; then echo "nodes need root (network namespaces, cgroups, mounts)"; return 1; fi
  for c in ip nsenter unshare iptables ipset conntrack mount; do
    command -v "$c" >/dev/null 2>&1 || { echo "missing command: $c (hack/node-deps.sh installs it)"; return 1; }
  done
  for c in $ZY_CGROUP_CONTROLLERS; do
    [ -d "/sys/fs/cgroup/$c" ] || { echo "cgroup v1 controller $c is not mounted at /sys/fs/cgroup/$c"; return 1; }
    mkdir "/sys/fs/cgroup/$c/zy-preflight.$$" 2>/dev/null && rmdir "/sys/fs/cgroup/$c/zy-preflight.$$" ||
      { echo "cannot create a cgroup under /sys/fs/cgroup/$c"; return 1; }
  done
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return 1; }
  if iptables -S FORWARD 2>/dev/null | grep -q '^-P FORWARD DROP'; then
    echo "the host's iptables FORWARD policy is DROP: bridged traffic between nodes would be dropped"
    return 1
  fi
  local out
  if ! out=$(unshare --net sh -c '
    set -e
    ip link set lo up
    ip link add zyp0 type veth peer name zyp1 || { echo "no veth devices"; exit 1; }
    ip link add zyp-br type bridge || { echo "no bridge devices"; exit 1; }
    [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || { echo "no br_netfilter (net.bridge.bridge-nf-call-iptables)"; exit 1; }
    iptables -t nat -N ZYP || { echo "iptables nat table unusable"; exit 1; }
    iptables -t nat -A ZYP -m statistic --mode random --probability 0.5 -j MASQUERADE || { echo "iptables: statistic match or MASQUERADE missing"; exit 1; }
    iptables -A FORWARD -m physdev --physdev-is-bridged -j ACCEPT || { echo "iptables: physdev match missing"; exit 1; }
    iptables -A FORWARD -m conntrack --ctstate INVALID -j DROP || { echo "iptables: conntrack match missing"; exit 1; }
    ipset create zyp hash:ip || { echo "ipset hash:ip unusable"; exit 1; }
    iptables -A INPUT -m set --match-set zyp src -j ACCEPT || { echo "iptables: set match missing"; exit 1; }
    # What kube-router writes (log, rate-limit, comment and mark its drops) and kube-proxy
    # matches (local addresses): a kernel without one would fail only once the nodes run.
    iptables -N ZYPF || { echo "iptables filter table unusable"; exit 1; }
    iptables -A ZYPF -m limit --limit 10/minute --limit-burst 10 -j NFLOG --nflog-group 100 || { echo "iptables: limit match or NFLOG target missing"; exit 1; }
    iptables -A ZYPF -m comment --comment zy -m mark ! --mark 0x10000/0x10000 -j MARK --set-xmark 0x10000/0x10000 || { echo "iptables: comment or mark match, or MARK target, missing"; exit 1; }
    iptables -A ZYPF -m addrtype --dst-type LOCAL -j RETURN || { echo "iptables: addrtype match missing"; exit 1; }
  ' 2>&1); then
    echo "${out:-cannot create a network namespace}" | tail -1
    return 1
  fi
  return 0
}

nodes_prepare() {
  export ZHENGYUN_NODES_WHY=""
  if [ "${ZHENGYUN_NODES:-1}" != 1 ]; then
    export ZHENGYUN_NODES=0 ZHENGYUN_NODES_WHY="ZHENGYUN_NODES=0 was set"
    return 0
  fi
  # Root first: without it nothing below can work, and the package step would ask for sudo.
  if [ "$(id -u)" != 0 ]; then
    _nodes_skip "nodes need root (network namespaces, cgroups, mounts)"
    return 0
  fi
  "$HACK_DIR/node-deps.sh" || { _nodes_skip "installing iptables, ipset, conntrack and libseccomp-dev failed"; return 0; }
  local why
  # The kernel's features before the builds: a machine that cannot run nodes says so at once.
  if ! why=$(nodes_preflight); then
    _nodes_skip "$why"
    return 0
  fi
  "$HACK_DIR/build-node.sh" >/dev/null || { _nodes_skip "building containerd, runc and the CNI plugins failed (output above)"; return 0; }
  "$HACK_DIR/build-kube-router.sh" >/dev/null || { _nodes_skip "building kube-router failed (output above)"; return 0; }
  "$HACK_DIR/build-images.sh" >/dev/null || { _nodes_skip "building the pause and probe images failed (output above)"; return 0; }
  export ZHENGYUN_NODES=1
}

_nodes_skip() {
  echo "no local nodes on this machine ($1): the control plane runs without them" >&2
  export ZHENGYUN_NODES=0 ZHENGYUN_NODES_WHY="$1"
}

_node_cert() { # pki dir name subject san(optional, makes a serving cert)
  local pki=$1 dir=$2 name=$3 subj=$4 san=${5:-}
  openssl req -newkey rsa:2048 -nodes -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "$subj" 2>/dev/null
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$dir/$name.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' >"$dir/$name.ext"
  fi
  openssl x509 -req -in "$dir/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$dir/$name.crt" -days 3650 -extfile "$dir/$name.ext" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

_node_kubeconfig() { # file port cert key ca
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$ZY_HOST_IP:$2", certificate-authority: "$5"}}]
users: [{name: user, user: {client-certificate: "$3", client-key: "$4"}}]
contexts: [{name: local, context: {cluster: local, user: user}}]
current-context: local
KC
}

# _in_node DIR ZONE NAME cmd...: starts a daemon of the node inside its network and mount
# namespaces and its cgroup (so teardown finds it and everything it starts).
_in_node() {
  local dir=$1 zone=$2 name=$3 holder
  shift 3
  holder=$(cat "$dir/pids/holder-$zone")
  _start "$dir" "$name" nsenter --target "$holder" --mount --net -- \
    sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "/sys/fs/cgroup/pids/$ZY_CGROUP/$zone/system" "$@"
}

_node_network() { # dir index zone
  local dir=$1 i=$2 zone=$3 nd=$1/nodes/$3 ip j
  ip=$(_node_ip "$i")
  mkdir -p "$nd"
  touch "$nd/netns"
  unshare --net="$nd/netns" true
  ip link add "zy-$zone-h" type veth peer name eth0 netns "$nd/netns"
  ip link set "zy-$zone-h" master "$ZY_BRIDGE" up
  nsenter --net="$nd/netns" sh -c "
    ip link set lo up && ip addr add $ip/24 dev eth0 && ip link set eth0 up &&
    sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.bridge.bridge-nf-call-iptables=1"
  for j in $(seq 1 "$ZY_NODE_COUNT"); do
    [ "$j" = "$i" ] && continue
    nsenter --net="$nd/netns" ip route add "$(_node_pods "$j")" via "$(_node_ip "$j")"
  done
  nsenter --net="$nd/netns" ip route add "$ZY_OUTSIDE_NET" via "$ZY_OUTSIDE_GW"
  ip route add "$(_node_pods "$i")" via "$ip"
}

# _outside_network DIR PROBE: the outside network's namespace, its routes, and a probe in it.
_outside_network() {
  local dir=$1 probe=$2 od=$1/nodes/outside j
  mkdir -p "$od"
  touch "$od/netns"
  unshare --net="$od/netns" true
  ip link add zy-outside-h type veth peer name eth0 netns "$od/netns"
  ip link set zy-outside-h master "$ZY_BRIDGE" up
  nsenter --net="$od/netns" sh -c "
    ip link set lo up && ip addr add $ZY_OUTSIDE_GW/24 dev eth0 && ip link set eth0 up &&
    ip addr add $ZY_OUTSIDE_IP/32 dev lo"
  for j in $(seq 1 "$ZY_NODE_COUNT"); do
    # From the outside network's own address, as a host on that network would connect.
    nsenter --net="$od/netns" ip route add "$(_node_pods "$j")" via "$(_node_ip "$j")" src "$ZY_OUTSIDE_IP"
  done
  ip route add "$ZY_OUTSIDE_NET" via "$ZY_OUTSIDE_GW"
  _start "$dir" outside-probe env PROBE_NAME=outside nsenter --net="$od/netns" -- "$probe" serve 8080 9090
  cat >"$dir/nodes/outside.env" <<ENV
export ZHENGYUN_OUTSIDE_IP=$ZY_OUTSIDE_IP
export ZHENGYUN_OUTSIDE_NETNS=$od/netns
export ZHENGYUN_PROBE_BIN=$probe
ENV
}

_node_cgroups() { # zone
  local zone=$1 c base
  for c in $ZY_CGROUP_CONTROLLERS; do
    base=/sys/fs/cgroup/$c/$ZY_CGROUP
    mkdir -p "$base/$zone"
    if [ "$c" = cpuset ]; then
      # An empty cpuset takes no task: inherit the parent's.
      cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$base/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems >"$base/cpuset.mems"
      cat "$base/cpuset.cpus" >"$base/$zone/cpuset.cpus"
      cat "$base/cpuset.mems" >"$base/$zone/cpuset.mems"
    fi
  done
  mkdir -p "/sys/fs/cgroup/pids/$ZY_CGROUP/$zone/system"
}

_node_holder() { # dir zone
  local dir=$1 zone=$2 nd=$1/nodes/$2 binds="" kv
  mkdir -p "$nd/sysctl"
  for kv in $ZY_KERNEL_TUNABLES; do
    local key=${kv%%=*} value=${kv#*=} file
    file=$nd/sysctl/${key//\//.}
    echo "$value" >"$file"
    binds+="mount --bind $file /proc/sys/$key && "
  done
  # The node's mount namespace: a slave of the host's (host mounts still show), so what the
  # kubelet and containerd mount stays inside and goes when the node's last process does.
  _start "$dir" "holder-$zone" nsenter --net="$nd/netns" -- unshare --mount --propagation slave -- \
    sh -c "${binds}exec sleep infinity"
  local _ pid
  pid=$(cat "$dir/pids/holder-$zone")
  # Ready once the chain of execs reached the sleep, i.e. the namespaces and binds are in place.
  for _ in $(seq 1 50); do
    case $(readlink "/proc/$pid/exe" 2>/dev/null) in */sleep) return 0 ;; esac
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the namespace holder of node zy-$zone did not start; see $dir/logs/holder-$zone.log" >&2
  return 1
}

_node_containerd() { # dir zone nodebin
  local dir=$1 zone=$2 nb=$3 nd=$1/nodes/$2/containerd
  mkdir -p "$nd/root" "$nd/state" "$nd/runc" "$nd/opt"
  cat >"$nd/config.toml" <<TOML
version = 3
root = "$nd/root"
state = "$nd/state"
# NRI binds a fixed socket (/var/run/nri/nri.sock) that a second node would collide on.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$nd/containerd.sock"
[ttrpc]
  address = "$nd/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$nd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$ZY_PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its OOM score: the
  # kubelet's -998 for sandboxes would fail every pod. Requested scores are raised to the current.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "$nb/containerd-shim-runc-v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$nb/runc"
        Root = "$nd/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$nb/cni"]
    conf_dir = "$dir/nodes/$zone/cni/net.d"
    max_conf_num = 1
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

_node_cni() { # dir index zone
  local dir=$1 i=$2 zone=$3 nd=$1/nodes/$3/cni
  mkdir -p "$nd/net.d" "$nd/ipam"
  cat >"$nd/net.d/10-zhengyun.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "zy-$zone",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "isDefaultGateway": true,
      "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$nd/ipam",
               "ranges": [[{"subnet": "$(_node_pods "$i")", "gateway": "10.244.$i.1"}]]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "backend": "iptables"}
  ]
}
JSON
}

_node_kubelet_config() { # dir index zone port
  local dir=$1 i=$2 zone=$3 port=$4 nd=$1/nodes/$3 ip pki=$1/pki
  ip=$(_node_ip "$i")
  mkdir -p "$nd/pki" "$nd/kubelet" "$nd/pod-logs"
  _node_cert "$pki" "$nd/pki" kubelet "/O=system:nodes/CN=system:node:zy-$zone"
  _node_cert "$pki" "$nd/pki" kubelet-serving "/CN=zy-$zone" "IP:$ip,DNS:zy-$zone"
  _node_cert "$pki" "$nd/pki" kube-proxy "/CN=system:kube-proxy"
  _node_cert "$pki" "$nd/pki" kube-router "/O=zhengyun:kube-router/CN=zhengyun:kube-router:zy-$zone"
  _node_kubeconfig "$nd/kubelet.kubeconfig" "$port" "$nd/pki/kubelet.crt" "$nd/pki/kubelet.key" "$pki/ca.crt"
  _node_kubeconfig "$nd/kube-proxy.kubeconfig" "$port" "$nd/pki/kube-proxy.crt" "$nd/pki/kube-proxy.key" "$pki/ca.crt"
  _node_kubeconfig "$nd/kube-router.kubeconfig" "$port" "$nd/pki/kube-router.crt" "$nd/pki/kube-router.key" "$pki/ca.crt"
  cat >"$nd/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$nd/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$ZY_CGROUP/$zone
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
address: $ip
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $nd/pki/kubelet-serving.crt
tlsPrivateKeyFile: $nd/pki/kubelet-serving.key
clusterDNS: [10.0.0.10]
clusterDomain: cluster.local
resolvConf: ""
registerWithTaints: [{key: zhengyun.io/zone, value: $zone, effect: NoSchedule}]
podLogsDir: $nd/pod-logs
volumePluginDir: $nd/kubelet/volume-plugins
imageGCHighThresholdPercent: 100
evictionHard: {nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", memory.available: "100Mi"}
serializeImagePulls: false
# The e2e suite leaves many pods behind (most never start: their images are not here); a
# node that refused them for want of room would make them Failed and free their quota.
maxPods: 250
YAML
  cat >"$nd/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $nd/kube-proxy.kubeconfig}
hostnameOverride: zy-$zone
mode: iptables
clusterCIDR: 10.244.0.0/16
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {minSyncPeriod: 1s, localhostNodePorts: false}
nodePortAddresses: [primary]
# Conntrack limits and timeouts are the host's: leave them alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

# What kube-router reads to enforce NetworkPolicies (read only: it runs as the firewall alone).
_node_enforcer_rbac() { # kubectl kubeconfig
  "$1" --kubeconfig "$2" apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "zhengyun:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "zhengyun:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "zhengyun:kube-router"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "zhengyun:kube-router"}]
YAML
}

# kube-router as the NetworkPolicy enforcer alone: no routing (host routes do that), no service
# proxy (kube-proxy does that). Its iptables chains and ipsets live in the node's network namespace.
_node_enforcer() { # dir zone kube-router-dir
  local dir=$1 zone=$2 kr=$3 nd=$1/nodes/$2
  _in_node "$dir" "$zone" "kube-router-$zone" "$kr/kube-router" --run-firewall=true --run-router=false \
    --run-service-proxy=false --run-loadbalancer=false --kubeconfig="$nd/kube-router.kubeconfig" \
    --hostname-override="zy-$zone" --service-cluster-ip-range=10.0.0.0/24 \
    --enable-ipv4=true --enable-ipv6=false --health-port=20244 --metrics-port=0 -v=1
}

_wait_socket() { # path seconds
  local _
  for _ in $(seq 1 $(($2 * 10))); do [ -S "$1" ] && return 0; sleep 0.1; done
  return 1
}

# _node_images DIR ZONE NODEBIN: the images every node holds before its kubelet starts (built by
# hack/build-images.sh), imported into the node's containerd.
_node_images() { # dir zone nodebin
  local dir=$1 zone=$2 nb=$3 img
  for img in "$ZY_IMAGES_DIR"/*.tar; do
    "$nb/ctr" --address "$dir/nodes/$zone/containerd/containerd.sock" -n k8s.io images import \
      --platform linux/amd64 --snapshotter overlayfs --label io.cri-containerd.pinned=pinned "$img" >/dev/null
  done
}

nodes_import() {
  local dir=$1 nb zone img
  shift
  dir=$(cd "$dir" && pwd)
  nb=$("$HACK_DIR/build-node.sh")
  for zone in $ZY_NODE_ZONES; do
    for img in "$@"; do
      "$nb/ctr" --address "$dir/nodes/$zone/containerd/containerd.sock" -n k8s.io images import \
        --platform linux/amd64 --snapshotter overlayfs --label io.cri-containerd.pinned=pinned "$img" >/dev/null
    done
  done
}

nodes_up() {
  local dir=$1 nb k8s kr i=0 zone port
  dir=$(cd "$dir" && pwd)
  nb=$("$HACK_DIR/build-node.sh")
  k8s=$("$HACK_DIR/build-k8s.sh")
  kr=$("$HACK_DIR/build-kube-router.sh")
  ZY_IMAGES_DIR=$("$HACK_DIR/build-images.sh")
  # shellcheck disable=SC1091
  port=$(. "$dir/env" && echo "$APISERVER_PORT")
  ZY_NODE_COUNT=$(echo "$ZY_NODE_ZONES" | wc -w)
  mkdir -p "$dir/nodes"
  ls /run/containerd/s 2>/dev/null | sort >"$dir/nodes/shim-sockets.before" || true

  _nodes_reclaim || return 1
  ip link add "$ZY_BRIDGE" type bridge
  ip addr add "$ZY_HOST_IP/24" dev "$ZY_BRIDGE"
  ip link set "$ZY_BRIDGE" up
  # Host-originated packets for pods or Services that no node route covers end here, never at
  # the host's default gateway.
  ip route add blackhole 10.244.0.0/16
  ip route add blackhole 10.0.0.0/24
  _node_enforcer_rbac "$k8s/kubectl" "$dir/kubeconfig"
  _outside_network "$dir" "$ZY_IMAGES_DIR/probe"
  for zone in $ZY_NODE_ZONES; do
    i=$((i + 1))
    _node_network "$dir" "$i" "$zone"
    _node_cgroups "$zone"
    _node_holder "$dir" "$zone"
    _node_cni "$dir" "$i" "$zone"
    _node_containerd "$dir" "$zone" "$nb"
    _in_node "$dir" "$zone" "containerd-$zone" "$nb/containerd" --config "$dir/nodes/$zone/containerd/config.toml"
    _wait_socket "$dir/nodes/$zone/containerd/containerd.sock" 30 ||
      { echo "containerd of node zy-$zone did not start; see $dir/logs/containerd-$zone.log" >&2; return 1; }
    _node_images "$dir" "$zone" "$nb"
    _node_kubelet_config "$dir" "$i" "$zone" "$port"
    _in_node "$dir" "$zone" "kubelet-$zone" "$k8s/kubelet" --config "$dir/nodes/$zone/kubelet.yaml" \
      --kubeconfig "$dir/nodes/$zone/kubelet.kubeconfig" --root-dir "$dir/nodes/$zone/kubelet" \
      --cert-dir "$dir/nodes/$zone/kubelet/pki" --hostname-override "zy-$zone" --node-ip "$(_node_ip "$i")" \
      --node-labels "zhengyun.io/zone=$zone" --v 1
    _in_node "$dir" "$zone" "kube-proxy-$zone" "$k8s/kube-proxy" --config "$dir/nodes/$zone/kube-proxy.yaml" --v 1
  done
  local _ ready
  for zone in $ZY_NODE_ZONES; do
    # `kubectl wait` fails at once on a node not registered yet: poll.
    ready=
    for _ in $(seq 1 240); do
      ready=$("$k8s/kubectl" --kubeconfig "$dir/kubeconfig" get node "zy-$zone" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
      [ "$ready" = True ] && break
      sleep 0.5
    done
    if [ "$ready" != True ]; then
      echo "node zy-$zone did not become Ready; last kubelet lines:" >&2
      tail -15 "$dir/logs/kubelet-$zone.log" >&2
      return 1
    fi
    # kube-router finds its node by name, so it starts once the node is registered; it is in
    # place once its chains are (until then a pod would start unguarded).
    _node_enforcer "$dir" "$zone" "$kr"
    for _ in $(seq 1 120); do
      nsenter --net="$dir/nodes/$zone/netns" iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 && break
      sleep 0.5
    done
    if ! nsenter --net="$dir/nodes/$zone/netns" iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1; then
      echo "kube-router on node zy-$zone did not set up its firewall; last lines:" >&2
      tail -15 "$dir/logs/kube-router-$zone.log" >&2
      return 1
    fi
  done
  _cluster_dns "$k8s/kubectl" "$dir/kubeconfig" || return 1
  echo "nodes up: $(for z in $ZY_NODE_ZONES; do printf 'zy-%s ' "$z"; done)" >&2
}

# Cluster DNS (hack/node/coredns/coredns.yaml) at 10.0.0.10, the kubelets' clusterDNS; ready
# before nodes_up returns.
_cluster_dns() { # kubectl kubeconfig
  "$1" --kubeconfig "$2" apply -f "$HACK_DIR/node/coredns/coredns.yaml" >/dev/null
  if ! "$1" --kubeconfig "$2" -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null; then
    echo "cluster DNS (CoreDNS) did not become ready:" >&2
    "$1" --kubeconfig "$2" -n kube-system get pods -l k8s-app=kube-dns -o wide >&2
    return 1
  fi
}

_kill_cgroup_tree() { # cgroup dir (pids hierarchy): kills every process in it until none is left
  local cg=$1 _ pids
  [ -d "$cg" ] || return 0
  for _ in $(seq 1 50); do
    pids=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  echo "processes still alive in $cg: $pids" >&2
  return 1
}

# The host's share of the nodes: routes, the bridge (its veths go with it) and the cgroups.
_nodes_host_clear() {
  local c
  ip route del "$ZY_OUTSIDE_NET" 2>/dev/null || true
  ip route del blackhole 10.244.0.0/16 2>/dev/null || true
  ip route del blackhole 10.0.0.0/24 2>/dev/null || true
  ip link del "$ZY_BRIDGE" 2>/dev/null || true
  # Every hierarchy, not only those we created in: runc and the kubelet also make the node's
  # cgroups in the named systemd one and the hybrid cgroup2 one.
  for c in /sys/fs/cgroup/*/"$ZY_CGROUP"; do
    [ -d "$c" ] || continue
    for _ in 1 2 3 4 5; do
      find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$c" ] || break
      sleep 0.2
    done
  done
}

# A run killed without its cleanup (the machine or the job stopped under it) leaves its nodes'
# network namespace mounts, bridge, routes and cgroups behind, and the next nodes_up would fail
# on "File exists". Those of a run none of whose processes is alive are removed here, saying so;
# nodes that still run stop this run instead, naming their directory.
_nodes_reclaim() {
  local d f pid live zones ino
  for d in $(findmnt -rn -o TARGET | sed -n 's#^\(.*\)/nodes/[^/]*/netns$#\1#p' | sort -u); do
    live=
    for f in "$d"/pids/*; do
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      # A pid the kernel has since given to another program is not ours: ours name the directory.
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$d/"; then live="$live $(basename "$f")"; fi
    done
    # Any process in one of its network namespaces (the holders, the containers) is alive too.
    for f in "$d"/nodes/*/netns; do
      ino=$(stat -L -c %i "$f" 2>/dev/null) || continue
      if find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l\n' 2>/dev/null | grep -qxF "net:[$ino]"; then
        live="$live $(basename "$(dirname "$f")")"
      fi
    done
    if [ -n "$live" ]; then
      echo "local nodes of another run are up in $d (${live# }): stop them first (hack/down.sh, or nodes_down $d)" >&2
      return 1
    fi
    zones=$(for f in "$d"/nodes/*/netns; do basename "$(dirname "$f")"; done | grep -vx outside | tr '\n' ' ')
    echo "removing what a killed run left in $d (nodes: ${zones% })" >&2
    # Their pids may belong to other programs by now: nothing is killed by pid.
    rm -f "$d"/pids/*
    (ZY_NODE_ZONES=$zones; nodes_down "$d") || return 1
  done
  # Without any directory left to name them: what is ours by name only (its namespaces are gone).
  if ip link show "$ZY_BRIDGE" >/dev/null 2>&1 || ls -d /sys/fs/cgroup/*/"$ZY_CGROUP" >/dev/null 2>&1; then
    if [ -n "$(find /sys/fs/cgroup/pids/"$ZY_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]; then
      echo "processes still run in the nodes' cgroup /sys/fs/cgroup/pids/$ZY_CGROUP: another run's nodes are up" >&2
      return 1
    fi
    echo "removing the bridge, routes and cgroups a killed run left" >&2
    local i
    for i in $(seq 1 9); do ip route del "$(_node_pods "$i")" 2>/dev/null || true; done
    _nodes_host_clear
  fi
  nodes_leftovers
}

nodes_down() {
  local dir=$1 zone name f pid c i=0
  [ -d "$dir/nodes" ] || return 0
  dir=$(cd "$dir" && pwd)
  for zone in $ZY_NODE_ZONES; do
    for name in "kube-router-$zone" "kube-proxy-$zone" "kubelet-$zone" "containerd-$zone"; do
      f=$dir/pids/$name
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$f"
    done
    # Shims, sandboxes and containers: whatever is left in the node's cgroups.
    _kill_cgroup_tree "/sys/fs/cgroup/pids/$ZY_CGROUP/$zone" || true
    f=$dir/pids/holder-$zone
    if [ -f "$f" ]; then
      kill -KILL "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  f=$dir/pids/outside-probe
  if [ -f "$f" ]; then
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  fi
  # Mounts of ours in the host's namespace: the node network namespace files (everything the
  # daemons mounted lived in their node's mount namespace, gone with its last process).
  findmnt -rn -o TARGET | grep "^$dir/" | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  for zone in $ZY_NODE_ZONES; do
    i=$((i + 1))
    ip route del "$(_node_pods "$i")" 2>/dev/null || true
  done
  _nodes_host_clear
  for zone in $ZY_NODE_ZONES; do rm -f /var/lib/cni/results/zy-"$zone"-* 2>/dev/null || true; done
  # Sockets of shims that were killed rather than stopped: only those made since the nodes
  # started and that no process listens on any more (a host containerd's live shims share the
  # directory and stay untouched).
  if [ -f "$dir/nodes/shim-sockets.before" ] && [ -d /run/containerd/s ]; then
    local listening
    listening=$(ss -xlH 2>/dev/null | awk '{print $5}' | grep '^/run/containerd/s/' || true)
    comm -13 "$dir/nodes/shim-sockets.before" <(ls /run/containerd/s | sort) | while read -r s; do
      grep -qxF "/run/containerd/s/$s" <<<"$listening" || rm -f "/run/containerd/s/$s"
    done
  fi
  rm -rf "$dir/nodes"
}

# nodes_leftovers: checks that no node left anything on the host.
nodes_leftovers() {
  local bad=0
  if ip -o link | grep -q " zy-"; then echo "links left: $(ip -o link | grep " zy-" | cut -d: -f2 | tr -d ' ' | tr '\n' ' ')" >&2; bad=1; fi
  if ip route | grep -qE "^10\.(244|200)\.|blackhole 10\.(244|0\.0)"; then echo "routes left: $(ip route | grep -E '10\.(244|200)|blackhole')" >&2; bad=1; fi
  if ls -d /sys/fs/cgroup/*/"$ZY_CGROUP" >/dev/null 2>&1; then echo "cgroups left: $(ls -d /sys/fs/cgroup/*/"$ZY_CGROUP")" >&2; bad=1; fi
  if findmnt -rn -o TARGET | grep -q "/nodes/[^/]*/netns$"; then echo "network namespace mounts left" >&2; bad=1; fi
  # kube-proxy's and kube-router's rules live in the nodes' namespaces; none may reach the host's.
  if iptables-save 2>/dev/null | grep -qE "KUBE-|CNI-"; then echo "iptables rules left in the host's tables" >&2; bad=1; fi
  local left
  left=$(pgrep -f "/zhengyun/(node|kube-router|images)/|/nodes/[^/]*/(containerd/config|kubelet|kube-proxy)" 2>/dev/null || true)
  if [ -n "$left" ]; then echo "processes left: $left" >&2; bad=1; fi
  return $bad
}
