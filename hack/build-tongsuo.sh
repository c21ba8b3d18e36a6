#!/usr/bin/env bash
# Builds the Tongsuo command-line tool (TLCP, RFC 8998, SM2/SM3/SM4) from the source that the
# `tongsuo-src` crate ships on crates.io, configured with enable-ntls, and caches it under
# ~/.cache/zhengyun/tongsuo-<version>/. It is the independent peer our 国密 tests verify
# against. 8.4 rather than 8.5: the 8.5 tool fails on the first TLCP application write.
# Prints the path of the `tongsuo` binary.
set -euo pipefail
CRATE_VERSION=840.2.0+8.4.0
cache=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}
dest=$cache/tongsuo-${CRATE_VERSION#*+}
if [ -x "$dest/bin/tongsuo" ]; then echo "$dest/bin/tongsuo"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/crate-source.sh
source "$(dirname "$0")/lib/crate-source.sh"
src=$(crate_source tongsuo-src "$CRATE_VERSION" "$work")
echo "building Tongsuo ${CRATE_VERSION#*+} from $src (a few minutes)" >&2
cp -r "$src/tongsuo" "$work/tongsuo"
cd "$work/tongsuo"
./config --prefix="$dest" --openssldir="$dest/ssl" enable-ntls no-shared no-tests >&2
make -j"$(nproc)" build_programs >&2
make install_sw >&2
echo "$dest/bin/tongsuo"
