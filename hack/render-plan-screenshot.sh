#!/usr/bin/env bash
# Screenshots the consolidation example's HTML report (docs/examples/consolidation/plan.html) into
# docs/consolidation-report.png with headless Chromium (installed from Debian with apt-get when
# missing; that needs root). Usage: hack/render-plan-screenshot.sh [PLAN.html [OUT.png]]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
page=$(realpath "${1:-$root/docs/examples/consolidation/plan.html}")
out=$(realpath -m "${2:-$root/docs/consolidation-report.png}")
[ -f "$page" ] || { echo "$page: no such file (hack/render-plan-example.sh writes it)" >&2; exit 1; }

if ! command -v chromium >/dev/null; then
  echo "installing chromium (and CJK fonts for the page's Chinese terms) from Debian" >&2
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --no-sandbox: containers and CI runners usually lack the user namespaces Chromium's sandbox needs;
# the page is our own, scriptless report.
if ! chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size=1280,2000 --screenshot="$out" "file://$page" >"$log" 2>&1 || [ ! -s "$out" ]; then
  cat "$log" >&2
  echo "chromium could not take the screenshot" >&2
  exit 1
fi
echo "wrote $out"
