#!/usr/bin/env bash
# Builds the operator's image for the local nodes as the Containerfile's final stage describes
# it (hack/lib/image.sh). Two tags of the same build, so the e2e suite can upgrade from one to
# the other as docs/admin-guide.md does. Prints the archives' paths.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=lib/image.sh
source "$here/lib/image.sh"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
static_image zhengyun-operator zhengyun-operator "$root/Containerfile" zhengyun-operator "$version" "$version-upgrade"
