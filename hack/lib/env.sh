# shellcheck shell=bash
# Where cargo builds: under ~/.cache/zhengyun/, one target directory per checkout. Sharing one
# between checkouts would let cargo take another checkout's fresh build for this one's.
_zy_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/cargo-target/$(printf %s "$_zy_root" | sha256sum | cut -c1-12)}

# Incremental compilation keeps its own copy of every workspace crate's intermediate state, and
# that copy grows with each build: it was 14 GiB of a 21 GiB target directory here, and a CI run
# once failed for want of disk. The dependencies, the slow part, are reused without it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# Makes room before a build: what incremental builds left in this target directory goes, and
# when the disk holding the cache has less than ZHENGYUN_MIN_FREE_GIB free, the target
# directories of other checkouts go too, least recently used first (each is only a cache: that
# checkout rebuilds it). Fails, saying so, when that is still not enough.
cache_room() {
  local cache=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun} want=${ZHENGYUN_MIN_FREE_GIB:-15} free d
  mkdir -p "$CARGO_TARGET_DIR"
  touch "$CARGO_TARGET_DIR"
  if [ "$CARGO_INCREMENTAL" = 0 ]; then
    rm -rf "$CARGO_TARGET_DIR"/{debug,release,static}/incremental
  fi
  _zy_free() { df -Pk "$cache" | awk 'NR==2 { print int($4 / 1048576) }'; }
  free=$(_zy_free)
  if [ "$free" -lt "$want" ]; then
    # Oldest first by the time a build last touched the directory.
    while read -r d; do
      [ "$d" = "$CARGO_TARGET_DIR" ] && continue
      echo "cache: ${free} GiB free on the cache's disk, under ${want}: removing $d (another checkout's cargo target)" >&2
      rm -rf "$d"
      free=$(_zy_free)
      [ "$free" -ge "$want" ] && break
    done < <(find "$cache/cargo-target" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -n | cut -d' ' -f2-)
  fi
  if [ "$free" -lt $((want / 2)) ]; then
    echo "cache: only ${free} GiB free on the disk holding $cache; a build needs about $((want / 2)) GiB." >&2
    echo "cache: free some disk (or set ZHENGYUN_CACHE to a larger one) and run again" >&2
    return 1
  fi
}
