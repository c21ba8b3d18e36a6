#!/usr/bin/env bash
# Installs the Debian packages a local node needs, once: iptables, ipset and conntrack (kube-proxy,
# the CNI portmap plugin and the policy enforcer all call the same `iptables`), and libseccomp-dev
# to build runc (hack/build-node.sh).
set -euo pipefail
missing=()
for c in iptables ipset conntrack; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
[ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]} (Debian packages)" >&2
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
