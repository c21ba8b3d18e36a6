# shellcheck shell=bash
# Where cargo builds: under ~/.cache/zhengyun/, one target directory per checkout. Sharing one
# between checkouts would let cargo take another checkout's fresh build for this one's.
_zy_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/cargo-target/$(printf %s "$_zy_root" | sha256sum | cut -c1-12)}
