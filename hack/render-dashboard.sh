#!/usr/bin/env bash
# Renders docs/dashboard.png: brings up the local cloud (hack/up.sh --detach), drives some
# activity for a few minutes while scraping the operator's real /metrics, plots the main panels
# of the Grafana dashboard with matplotlib (installed from PyPI into ~/.cache/zhengyun/venv),
# and stops everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/venv-matplotlib
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q matplotlib==3.10.* >/dev/null
export ZHENGYUN_ADMIN_ADDR=127.0.0.1:${ADMIN_PORT:-18089}
# Every sample tenant's quota curve, not only those near their limits.
export ZHENGYUN_TENANT_SERIES=all
hack/up.sh --detach >/dev/null
trap 'hack/down.sh >/dev/null' EXIT
# shellcheck disable=SC1091
source .local/cluster/env
"$venv/bin/python" hack/render-dashboard.py "$ZHENGYUN_ADMIN_ADDR" docs/dashboard.png "${DURATION:-150}"
