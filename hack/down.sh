#!/usr/bin/env bash
# Stops what hack/up.sh started: the operator, then the control plane. Leaves no process behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/cluster.sh
source "$root/hack/lib/cluster.sh"
# shellcheck source=lib/nodes.sh
source "$root/hack/lib/nodes.sh"
dir=${ZHENGYUN_LOCAL_DIR:-$root/.local/cluster}
if [ -f "$dir/pids/operator" ]; then
  pid=$(cat "$dir/pids/operator")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/pids/operator"
fi
# The webhooks point at the operator just stopped; the nodes and the control plane go next anyway.
nodes_down "$dir"
cluster_down "$dir"
echo "stopped"
