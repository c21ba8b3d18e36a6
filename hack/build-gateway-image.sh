#!/usr/bin/env bash
# Builds zhengyun-gateway's image for the local nodes as gateway/Containerfile's final stage
# describes it (hack/lib/image.sh): the static binary with Tongsuo linked in. Prints the
# archive's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=lib/image.sh
source "$here/lib/image.sh"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
static_image zhengyun-gateway zhengyun-gateway "$root/gateway/Containerfile" zhengyun-gateway "$version"
