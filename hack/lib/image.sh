# shellcheck shell=bash
# Images for the local nodes, built as a Containerfile's final stage describes them (files,
# user, ports, entrypoint and command are read from it), without a registry or an image
# builder: a static binary (linked statically against glibc, as no musl target is installed
# here, where the Containerfiles use musl) and the host's CA bundle, in one-layer OCI archives
# (hack/oci-image.py).

# static_binary PACKAGE BINARY : builds BINARY of PACKAGE statically (release, for the host's
# triple, in its own target directory so these flags do not invalidate the workspace's build);
# prints its path. The environment reaches cargo: hack/build-gateway.sh names its Tongsuo so.
static_binary() {
  local package=$1 binary=$2 root triple bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  triple=$(rustc -vV | sed -n 's/^host: //p')
  (cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/static" \
    cargo build -q --release --locked --target "$triple" -p "$package" --bin "$binary") >&2
  bin=$CARGO_TARGET_DIR/static/$triple/release/$binary
  case $(ldd "$bin" 2>&1) in
    *"statically linked"* | *"not a dynamic executable"*) ;;
    *) echo "$binary is not a static binary: $(ldd "$bin" 2>&1)" >&2; return 1 ;;
  esac
  echo "$bin"
}

# static_image PACKAGE BINARY CONTAINERFILE NAME TAG... : builds BINARY of PACKAGE statically
# and writes one archive per TAG under ~/.cache/zhengyun/images/NAME/; prints their paths.
static_image() {
  local package=$1 binary=$2 bin
  bin=$(static_binary "$package" "$binary") || return 1
  shift 2
  image_archives "$bin" "$binary" "$@"
}

# image_archives BIN BINARY CONTAINERFILE NAME TAG... : one archive per TAG of the Containerfile's
# final stage with BIN as /BINARY; prints their paths.
image_archives() {
  local bin=$1 binary=$2 containerfile=$3 name=$4
  shift 4
  local here out
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  out=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/images/$name
  mkdir -p "$out"
  local -a args
  mapfile -t args < <(python3 - "$containerfile" "$bin" "/$binary" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if l.startswith("FROM "))
for l in lines[start + 1:]:
    word, _, rest = l.partition(" ")
    if word == "COPY":
        parts = [p for p in rest.split() if not p.startswith("--")]
        src, dst = parts[0], parts[1]
        # The build stage's binary is ours; anything else comes from this host's same path.
        print(f"{sys.argv[2] if src == sys.argv[3] else src}={dst}")
    elif word == "USER":
        print(f"--user={rest}")
    elif word == "EXPOSE":
        for port in rest.split():
            print(f"--port={port}/tcp" if "/" not in port else f"--port={port}")
    elif word == "ENTRYPOINT":
        for a in json.loads(rest):
            print(f"--entrypoint={a}")
    elif word == "CMD":
        for a in json.loads(rest):
            print(f"--cmd={a}")
PY
  )
  local tag
  for tag in "$@"; do
    python3 "$here/oci-image.py" "$out/$name-$tag.tar" "localhost/zhengyun/$name:$tag" "${args[@]}" >/dev/null
    echo "$out/$name-$tag.tar"
  done
}
