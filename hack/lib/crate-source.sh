# shellcheck shell=bash
# crate_source NAME VERSION WORKDIR: lets cargo fetch (and checksum) the crate NAME=VERSION from
# crates.io as it would any dependency, and prints the directory of its source.
crate_source() {
  local name=$1 version=$2 work=$3
  mkdir -p "$work/fetch/src"
  cat >"$work/fetch/Cargo.toml" <<TOML
[package]
name = "fetch-$name"
version = "0.0.0"
edition = "2021"
[dependencies]
$name = "=$version"
TOML
  echo 'fn main() {}' >"$work/fetch/src/main.rs"
  (cd "$work/fetch" && cargo fetch -q)
  (cd "$work/fetch" && cargo metadata --format-version 1) | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == sys.argv[1]).rsplit("/", 1)[0])' "$name"
}
