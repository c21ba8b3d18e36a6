#!/usr/bin/env bash
# The size of one /metrics scrape by number of tenants (issue 32), in both tenant-series scopes
# (`--tenant-series problems`, the default, and `all`), with every tenant healthy and with 5%
# and 20% of them needing attention. The operator's own registry, filled as a converged cloud's and
# rendered as a scrape renders it; no cluster (bench/scale.sh reads a real operator's scrape at
# its sizes).
#
#   bench/metrics.sh              # 1,000 and 10,000 tenants
#   bench/metrics.sh 2000 20000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
cargo build -q --release --locked -p zhengyun-e2e --bin scale
if [ $# -eq 0 ]; then set -- 1000 10000; fi
"$CARGO_TARGET_DIR/release/scale" metrics "$@"
