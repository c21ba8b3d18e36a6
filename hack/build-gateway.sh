#!/usr/bin/env bash
# Builds the zhengyun-gateway that ships: a static binary (release, the host's triple) linked
# against the thread-safe Tongsuo of hack/build-tongsuo-lib.sh rather than the one the
# tongsuo-src crate builds (which a static build leaves without threads; gateway/build.rs refuses
# that one). The image (hack/build-gateway-image.sh), the gateway's tests (hack/test.sh sets
# ZHENGYUN_GATEWAY_BIN to this) and bench/gateway.sh all use this binary. Prints its path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=lib/image.sh
source "$here/lib/image.sh"
triple=$(rustc -vV | sed -n 's/^host: //p')
lib=$("$here/build-tongsuo-lib.sh" "$triple")
# tongsuo-sys reads these, the target's prefix first: no vendored build, this directory, static.
prefix=$(printf %s "$triple" | tr 'a-z-' 'A-Z_')
export "${prefix}_OPENSSL_NO_VENDOR=1" "${prefix}_OPENSSL_DIR=$lib" "${prefix}_OPENSSL_STATIC=1"
static_binary zhengyun-gateway zhengyun-gateway
