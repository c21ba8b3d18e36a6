#!/usr/bin/env bash
# Regenerates everything derived from the Rust API types: crds/, the operator chart's copy of
# the CRDs, and the tenant chart's values schema. Unit tests fail when these are stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=lib/env.sh
source "$(dirname "$0")/lib/env.sh"
cargo build -q -p zhengyun-operator
bin=$CARGO_TARGET_DIR/debug/zhengyun-operator
"$bin" crd >crds/zhengyun.io_crds.yaml
mkdir -p charts/zhengyun/files/crds
cp crds/zhengyun.io_crds.yaml charts/zhengyun/files/crds/
"$bin" tenant-values-schema >charts/tenant/values.schema.json
echo "regenerated crds/, charts/zhengyun/files/crds/ and charts/tenant/values.schema.json"
