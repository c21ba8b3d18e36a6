#!/usr/bin/env bash
# Builds the OpenSSL 4 command-line tool from the source the `openssl-src` crate ships on
# crates.io, and caches it under ~/.cache/zhengyun/openssl-<version>/. It is an independent
# RFC 8998 peer (TLS 1.3 with TLS_SM4_GCM_SM3/CCM, curveSM2, sm2sig_sm3) for the gateway's
# interop tests; it does not speak TLCP. Only its program is used: nothing links against it.
# Prints the path of the `openssl` binary.
set -euo pipefail
CRATE_VERSION=400.0.2+4.0.3
cache=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}
dest=$cache/openssl-${CRATE_VERSION#*+}
if [ -x "$dest/bin/openssl" ]; then echo "$dest/bin/openssl"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/crate-source.sh
source "$(dirname "$0")/lib/crate-source.sh"
src=$(crate_source openssl-src "$CRATE_VERSION" "$work")
echo "building OpenSSL ${CRATE_VERSION#*+} from $src (a few minutes)" >&2
cp -r "$src/openssl" "$work/openssl"
cd "$work/openssl"
# SM2/SM3/SM4 are in the default build; no-shared keeps the tool free of a library path.
# The crate ships a trimmed tree: as its own build does, leave out the legacy provider and
# loadable modules (their generators are not shipped).
./Configure --prefix="$dest" --openssldir="$dest/ssl" no-shared no-module no-legacy no-tests no-docs >&2
make -j"$(nproc)" build_programs >&2
make install_sw >&2
echo "$dest/bin/openssl"
