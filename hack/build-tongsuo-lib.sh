#!/usr/bin/env bash
# Builds the Tongsuo libraries (libssl.a, libcrypto.a and headers) that the shipped, static
# zhengyun-gateway links, thread-safe, and caches them under
# ~/.cache/zhengyun/tongsuo-lib-<crate version>-<triple>/. Prints that directory.
#
# Why not the tongsuo-src crate's own build: with `+crt-static` the `cc` crate adds `-static` to
# the compiler flags, tongsuo-src passes them to Tongsuo's Configure, and Configure answers
# `-static` with `disable('static', 'pic', 'threads')`. Tongsuo's locks then compile to no-ops
# while tokio runs several worker threads over one session cache and error queue: the gateway
# crashed under concurrent handshakes (issue 28). Here the same source is configured as
# tongsuo-src configures it (same options, NTLS on), with threads and position-independent code
# on; the static binary is linked by the Rust toolchain, which needs no `-static` from Tongsuo.
# gateway/build.rs refuses a Tongsuo without OPENSSL_THREADS, whichever way it was built.
#
# Usage: hack/build-tongsuo-lib.sh [TRIPLE]   (default: the host's)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
triple=${1:-$(rustc -vV | sed -n 's/^host: //p')}
case $triple in
  x86_64-unknown-linux-gnu | x86_64-unknown-linux-musl) os=linux-x86_64 ;;
  aarch64-unknown-linux-gnu | aarch64-unknown-linux-musl) os=linux-aarch64 ;;
  *) echo "build-tongsuo-lib: no Tongsuo target known for $triple" >&2; exit 1 ;;
esac
# The compiler for the triple, as the cc crate would pick it (CC_<triple> first).
cc_var="CC_${triple//-/_}"
cc=${!cc_var:-}
if [ -z "$cc" ]; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  if [ "$triple" = "$host" ]; then cc=${CC:-cc}; else cc=${triple%%-*}-linux-gnu-gcc; fi
fi

# The source is the one Cargo.lock pins for tongsuo-src, so the libraries match the bindings.
version=$(awk '/^name = "tongsuo-src"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")
[ -n "$version" ] || { echo "build-tongsuo-lib: tongsuo-src is not in Cargo.lock" >&2; exit 1; }
cache=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}
# The key names what changes the result: the version, the triple and this script.
key=$(sha256sum "$0" | cut -c1-8)
dest=$cache/tongsuo-lib-${version}-${triple}-$key
if [ -f "$dest/complete" ]; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/crate-source.sh
source "$here/lib/crate-source.sh"
src=$(crate_source tongsuo-src "$version" "$work")
echo "building the Tongsuo ${version#*+} libraries for $triple with threads, from $src (a few minutes)" >&2
cp -r "$src/tongsuo" "$work/tongsuo"
cd "$work/tongsuo"
rm -rf "$dest"
# tongsuo-src's options (its `legacy` feature on, as tongsuo-sys asks), plus threads; no -static.
CC=$cc ./Configure "$os" --prefix="$dest" --openssldir="$dest/ssl" --libdir=lib \
  no-dso no-shared no-ssl3 no-tests no-comp no-zlib no-zlib-dynamic enable-ntls \
  no-rc5 no-weak-ssl-ciphers threads -fPIC >&2
make -j"$(nproc)" depend >&2
make -j"$(nproc)" build_libs >&2
grep -q 'define OPENSSL_THREADS' include/openssl/configuration.h || {
  echo "build-tongsuo-lib: Configure left threads off (include/openssl/configuration.h)" >&2
  exit 1
}
make install_dev >&2
touch "$dest/complete"
echo "$dest"
