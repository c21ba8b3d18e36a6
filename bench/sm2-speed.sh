#!/usr/bin/env bash
# SM2 sign/verify rate of zhengyun's code (release build) beside `tongsuo speed sm2`, measured
# in the same run on one core. The figure is the ratio; absolute rates depend on the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
seconds=${SECONDS_PER_TEST:-5}
tongsuo=$(hack/build-tongsuo.sh)
cargo build -q --release -p zhengyun-operator
ours=$("$CARGO_TARGET_DIR/release/zhengyun-operator" bench-sm2 --seconds "$seconds")
theirs=$("$tongsuo" speed -seconds "$seconds" sm2 2>/dev/null | awk '/^ *256 bits SM2/ {print $(NF-1), $NF}')
echo "$ours"
read -r t_sign t_verify <<<"$theirs"
echo "tongsuo  sm2 sign/s $t_sign verify/s $t_verify"
o_sign=$(echo "$ours" | awk '{print $4}')
o_verify=$(echo "$ours" | awk '{print $6}')
python3 - "$o_sign" "$o_verify" "$t_sign" "$t_verify" <<'PY'
import sys
o_s, o_v, t_s, t_v = map(float, sys.argv[1:])
print(f"ratio (zhengyun / tongsuo): sign {o_s / t_s:.2f}, verify {o_v / t_v:.2f}")
PY
