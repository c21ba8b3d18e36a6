#!/usr/bin/env bash
# Regenerates the consolidation example's reports (docs/examples/consolidation/plan.{md,json,html})
# from its inventory with zhengyun-plan; docs/examples/consolidation/README.md explains the inputs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/env.sh
source "$root/hack/lib/env.sh"
cd "$root"
cargo build -q --release -p zhengyun-planner --bin zhengyun-plan
plan=$CARGO_TARGET_DIR/release/zhengyun-plan
ex=docs/examples/consolidation
for format in markdown json html; do
  ext=$format; [ "$format" = markdown ] && ext=md
  "$plan" "$ex/nodes.csv" "$ex/systems.csv" --headroom 0.7 --servers "$ex/servers.csv" \
    --prices "$ex/prices.csv" --quotas "$ex/quotas.csv" --format "$format" -o "$ex/plan.$ext"
  echo "wrote $ex/plan.$ext"
done
