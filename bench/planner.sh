#!/usr/bin/env bash
# The consolidation planner beside first-fit and best-fit decreasing, in one process, on
# generated fleets of 1,000 / 10,000 / 100,000 old servers (seeded; distributions in
# planner/src/fleet.rs and docs/performance.md) and on the Alibaba openb 2023 trace
# (bench/data/alibaba-openb-2023/, see its README for the source and citation): seconds, nodes
# used and nodes used over the lower bound (planner/src/pack.rs says why the bound is valid).
# Every plan is checked (capacity after headroom, zones, architectures, replicas apart) before
# its row is printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
cargo build -q --release -p zhengyun-planner --bin planner-bench
"$CARGO_TARGET_DIR/release/planner-bench" bench/data/alibaba-openb-2023 "${SIZES:-1000,10000,100000}"
