#!/usr/bin/env bash
# Checks the kube-router the local nodes run against the Go vulnerability database, both
# fetched from the Go module proxy (golang.org/x/vuln's govulncheck, golang.org/x/vulndb's OSV
# files): which reported vulnerabilities its call graph reaches, with the toolchain
# hack/build-kube-router.sh builds it with (exit status 3 when it reports any).
# docs/local-control-plane.md says what it found and why each is outside the firewall.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=go1.26.10
bin=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/govulncheck-v1.9.0
[ -x "$bin/govulncheck" ] || GOBIN=$bin go install golang.org/x/vuln/cmd/govulncheck@v1.9.0
db=$(go mod download -json golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
cd "$here/kube-router"
"$bin/govulncheck" -db "file://$db/data/osv" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
