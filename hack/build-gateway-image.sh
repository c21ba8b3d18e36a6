#!/usr/bin/env bash
# Builds zhengyun-gateway's image for the local nodes as gateway/Containerfile's final stage
# describes it (hack/lib/image.sh), from the binary hack/build-gateway.sh builds: static, with a
# thread-safe Tongsuo linked in. Prints the archive's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=lib/image.sh
source "$here/lib/image.sh"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
bin=$("$here/build-gateway.sh")
image_archives "$bin" zhengyun-gateway "$root/gateway/Containerfile" zhengyun-gateway "$version"
