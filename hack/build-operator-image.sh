#!/usr/bin/env bash
# Builds the operator's image for the local nodes as the Containerfile's final stage describes
# it (files, user, ports, entrypoint and command are read from it), without a registry or an
# image builder: the static binary (linked statically against glibc, as no musl target is
# installed here, where the Containerfile uses musl) and the host's CA bundle, in one-layer OCI
# archives (hack/oci-image.py). Two tags of the same build, so the e2e suite can upgrade from
# one to the other as docs/admin-guide.md does. Prints the archives' paths.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib/env.sh
source "$here/lib/env.sh"
triple=$(rustc -vV | sed -n 's/^host: //p')
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/static" \
  cargo build -q --release --locked --target "$triple" -p zhengyun-operator) >&2
bin=$CARGO_TARGET_DIR/static/$triple/release/zhengyun-operator
case $(ldd "$bin" 2>&1) in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "the operator is not a static binary: $(ldd "$bin" 2>&1)" >&2; exit 1 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
out=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/images/operator
mkdir -p "$out"
# The final stage of the Containerfile, as arguments for oci-image.py.
mapfile -t args < <(python3 - "$root/Containerfile" "$bin" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if l.startswith("FROM "))
for l in lines[start + 1:]:
    word, _, rest = l.partition(" ")
    if word == "COPY":
        parts = [p for p in rest.split() if not p.startswith("--")]
        src, dst = parts[0], parts[1]
        # The build stage's binary is ours; anything else comes from this host's same path.
        print(f"{sys.argv[2] if src == '/zhengyun-operator' else src}={dst}")
    elif word == "USER":
        print(f"--user={rest}")
    elif word == "EXPOSE":
        print(f"--port={rest}/tcp" if "/" not in rest else f"--port={rest}")
    elif word == "ENTRYPOINT":
        for a in json.loads(rest):
            print(f"--entrypoint={a}")
    elif word == "CMD":
        for a in json.loads(rest):
            print(f"--cmd={a}")
PY
)
for tag in "$version" "$version-upgrade"; do
  python3 "$here/oci-image.py" "$out/zhengyun-operator-$tag.tar" "localhost/zhengyun/zhengyun-operator:$tag" \
    "${args[@]}" >/dev/null
  echo "$out/zhengyun-operator-$tag.tar"
done
