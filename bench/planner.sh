#!/usr/bin/env bash
# The consolidation planner beside first-fit and best-fit decreasing, in one process, on
# generated fleets of 1,000 / 10,000 / 100,000 old servers (seeded; distributions in
# planner/src/fleet.rs and docs/performance.md) and on the Alibaba openb 2023 trace
# (bench/data/alibaba-openb-2023/, see its README for the source and citation; LISTS= picks the
# pod lists, default all five, read with GPUs per device and GPU models): seconds, nodes used
# and nodes used over the lower bound (planner/src/pack.rs says why the bound is valid), beside
# FFD/BFD, the best of eighteen simple baselines and FGD (planner/src/fgd.rs) on the trace.
# Every plan is checked (capacity after headroom, zones, architectures, replicas apart) before
# its row is printed. Then a second table on priced fleets (generated, PRICED servers, default
# 10,000, and the trace; node prices by planner/src/fleet.rs `price`: 30 a core, 5 a GiB, 1,000 a
# GPU a month, arm64 20% less): the planner for least cost beside the same fleet planned for
# fewest nodes and the baselines, monthly cost over the cost bound. PRICED=none skips it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
cargo build -q --release -p zhengyun-planner --bin planner-bench
data=bench/data/alibaba-openb-2023
lists=()
for l in ${LISTS:-default cpu100 gpushare40 gpuspec10 multigpu20}; do lists+=(--pods "$data/openb_pod_list_$l.csv"); done
"$CARGO_TARGET_DIR/release/planner-bench" --nodes "$data/openb_node_list_all_node.csv" "${lists[@]}" \
  --sizes "${SIZES:-1000,10000,100000}" --baseline-max 100000 --priced "${PRICED:-10000}"
