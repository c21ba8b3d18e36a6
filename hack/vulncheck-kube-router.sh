#!/usr/bin/env bash
# Checks the kube-router the local nodes run against the Go vulnerability database, both
# fetched from the Go module proxy (golang.org/x/vuln's govulncheck, golang.org/x/vulndb's OSV
# files): which reported vulnerabilities its call graph reaches, with the toolchain
# hack/build-kube-router.sh builds it with (exit status 3 when it reports any).
# docs/local-control-plane.md says what it found and why each is outside the firewall.
# With --check (hack/test.sh): passes when every advisory found is one of
# hack/kube-router/advisories-accepted.txt, fails naming any other.
set -euo pipefail
check=0
[ "${1:-}" = "--check" ] && check=1
here=$(cd "$(dirname "$0")" && pwd)
export GOTOOLCHAIN=go1.26.10
bin=${ZHENGYUN_CACHE:-$HOME/.cache/zhengyun}/govulncheck-v1.9.0
[ -x "$bin/govulncheck" ] || GOBIN=$bin go install golang.org/x/vuln/cmd/govulncheck@v1.9.0
db=$(go mod download -json golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
cd "$here/kube-router"
if [ "$check" = 0 ]; then
  exec "$bin/govulncheck" -db "file://$db/data/osv" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
"$bin/govulncheck" -db "file://$db/data/osv" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router >"$out" 2>&1 || rc=$?
# 0: nothing found; 3: found some. Anything else is govulncheck failing.
if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
  cat "$out" >&2
  echo "govulncheck failed (exit $rc)" >&2
  exit 1
fi
found=$(sed -n 's/^Vulnerability #[0-9]*: \(GO-[0-9-]*\).*/\1/p' "$out" | sort -u)
accepted=$(awk '!/^#/ && NF { print $1 }' "$here/kube-router/advisories-accepted.txt" | sort -u)
unexpected=$(comm -23 <(printf '%s\n' "$found" | sed '/^$/d') <(printf '%s\n' "$accepted"))
gone=$(comm -13 <(printf '%s\n' "$found" | sed '/^$/d') <(printf '%s\n' "$accepted"))
echo "govulncheck: $(printf '%s\n' "$found" | sed '/^$/d' | wc -l) advisories reachable in kube-router, each accepted in hack/kube-router/advisories-accepted.txt: $(echo $found)"
[ -z "$gone" ] || echo "no longer found (remove them from the list): $(echo $gone)"
if [ -n "$unexpected" ]; then
  cat "$out" >&2
  echo "kube-router: advisories not assessed yet: $(echo $unexpected); see hack/kube-router/advisories-accepted.txt" >&2
  exit 1
fi
