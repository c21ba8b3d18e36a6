#!/usr/bin/env bash
# zhengyun-gateway as it ships (the static binary of hack/build-gateway.sh, which the image
# carries) beside `tongsuo s_server` (Tongsuo 8.4, the same certificate and suite) on loopback,
# in one run, with the same load client (gateway/examples/tls-load.rs):
#   - full TLCP handshakes per second (ECC-SM2-SM4-GCM-SM3) and full TLS 1.3 SM handshakes per
#     second (TLS_SM4_GCM_SM3, curveSM2, sm2sig_sm3), with one worker thread pinned to one core,
#     then with two workers on both cores (the client shares them);
#   - SM4-GCM bulk through the gateway to an echo backend (one worker);
# each also as a ratio to the crypto bound that `tongsuo speed` measures in the same run, and the
# scaling from one worker to two.
# With one worker the server runs on CPU 0 and the client (and the echo backend) on CPU 1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=../hack/lib/env.sh
source hack/lib/env.sh
seconds=${SECONDS_PER_TEST:-10}
concurrency=${CONCURRENCY:-8}
mib=${MIB:-512}
tongsuo=$(hack/build-tongsuo.sh)
gateway=$(hack/build-gateway.sh)
cargo build -q --release -p zhengyun-gateway --example tls-load --example bench-certs
rel=$CARGO_TARGET_DIR/release
load=$rel/examples/tls-load

dir=$(mktemp -d /tmp/zhengyun-gw-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$rel/examples/bench-certs" "$dir"
s=$dir/server

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on $1" >&2; return 1; }

# An echo backend on CPU 1 (Python: simple, and off the measured core).
echo_port=$(free_port)
taskset -c 1 python3 - "$echo_port" <<'PY' &
import socket, sys, threading
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(512)
def serve(c):
    with c:
        while True:
            b = c.recv(262144)
            if not b: return
            c.sendall(b)
while True:
    c, _ = l.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
pids+=($!)
wait_port "$echo_port"

gw_port=$(free_port)
gw_pid=
# start_gateway WORKERS CPUS: the shipped binary with WORKERS worker threads on CPUS.
start_gateway() {
  local admin_port
  admin_port=$(free_port)
  taskset -c "$2" "$gateway" --worker-threads "$1" --listen "127.0.0.1:$gw_port" --admin "127.0.0.1:$admin_port" \
    --backend "127.0.0.1:$echo_port" --protocols tlcp,tls13-sm --sm-cert-dir "$s" >"$dir/gateway-$1.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
  wait_port "$gw_port"
}
stop_gateway() { kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; }
start_gateway 1 0

ss_port=$(free_port)
server_pid=
s_server() { # protocol-specific flags...
  taskset -c 0 "$tongsuo" s_server -quiet -naccept 100000000 -accept "$ss_port" "$@" >"$dir/s_server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_port "$ss_port"
}
stop_s_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }

run() { taskset -c "${client_cpus:-1}" "$load" "$@"; }
# CPU seconds (user + system) a process has used: a server's handshakes per CPU-second is its
# rate on one core even when the client, not the server, limits the wall-clock rate.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# runs the load client against a server process and appends "cpu_seconds X" to its output
measure() {
  local pid=$1
  shift
  local before after out
  before=$(cpu "$pid")
  out=$(run "$@")
  after=$(cpu "$pid")
  echo "$out cpu_seconds $(python3 -c "print(round($after - $before, 3))")"
}
val() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }

echo "== crypto bounds on one core (tongsuo speed, ${seconds}s each)"
speed_sm2=$(taskset -c 0 "$tongsuo" speed -seconds "$seconds" sm2 2>/dev/null | awk '/^ *256 bits SM2/ {print $(NF-1), $NF}')
read -r sign_s verify_s <<<"$speed_sm2"
gcm_line=$(taskset -c 0 "$tongsuo" speed -seconds "$seconds" -bytes 16384 -evp sm4-gcm 2>/dev/null | awk '/^(sm4-gcm|SM4-GCM)/ {print $NF}')
gcm_mb=$(python3 -c "print(float('${gcm_line%k}') / 1000)")
echo "sm2 sign/s $sign_s verify/s $verify_s; sm4-gcm 16 KiB blocks ${gcm_mb} MB/s"

echo "== TLCP ECC-SM2-SM4-GCM-SM3 full handshakes (${seconds}s, ${concurrency} concurrent)"
s_server -enable_ntls -cipher ECC-SM2-SM4-GCM-SM3 -sign_cert "$s/tls.crt" -sign_key "$s/tls.key" -enc_cert "$s/enc.crt" -enc_key "$s/enc.key"
ref_tlcp=$(measure "$server_pid" handshakes "127.0.0.1:$ss_port" tlcp ECC-SM2-SM4-GCM-SM3 "$seconds" "$concurrency")
stop_s_server
ours_tlcp=$(measure "$gw_pid" handshakes "127.0.0.1:$gw_port" tlcp ECC-SM2-SM4-GCM-SM3 "$seconds" "$concurrency")
echo "s_server: $ref_tlcp"
echo "gateway:  $ours_tlcp"

echo "== TLS 1.3 TLS_SM4_GCM_SM3 full handshakes (${seconds}s, ${concurrency} concurrent)"
s_server -tls1_3 -ciphersuites TLS_SM4_GCM_SM3 -groups curveSM2 -sigalgs sm2sig_sm3 -enable_sm_tls13_strict -cert "$s/tls.crt" -key "$s/tls.key"
ref_tls=$(measure "$server_pid" handshakes "127.0.0.1:$ss_port" tls13-sm TLS_SM4_GCM_SM3 "$seconds" "$concurrency")
stop_s_server
ours_tls=$(measure "$gw_pid" handshakes "127.0.0.1:$gw_port" tls13-sm TLS_SM4_GCM_SM3 "$seconds" "$concurrency")
echo "s_server: $ref_tls"
echo "gateway:  $ours_tls"

echo "== SM4-GCM bulk: ${mib} MiB through the gateway (TLCP ECC-SM2-SM4-GCM-SM3) to the echo and back"
bulk=$(measure "$gw_pid" bulk "127.0.0.1:$gw_port" tlcp ECC-SM2-SM4-GCM-SM3 "$mib")
echo "gateway:  $bulk"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")
stop_gateway

echo "== the same handshakes with two workers on both cores (the client, on two threads, shares them; $((concurrency * 2)) concurrent)"
start_gateway 2 0,1
client_cpus=0,1
two_tlcp=$(measure "$gw_pid" handshakes "127.0.0.1:$gw_port" tlcp ECC-SM2-SM4-GCM-SM3 "$seconds" "$((concurrency * 2))" 2)
echo "gateway, 2 workers, TLCP:        $two_tlcp"
two_tls=$(measure "$gw_pid" handshakes "127.0.0.1:$gw_port" tls13-sm TLS_SM4_GCM_SM3 "$seconds" "$((concurrency * 2))" 2)
echo "gateway, 2 workers, TLS 1.3 SM:  $two_tls"
stop_gateway

f() { echo "$1" | val "$2"; }
python3 - "$sign_s" "$verify_s" "$gcm_mb" \
  "$(f "$ref_tlcp" done)" "$(f "$ref_tlcp" cpu_seconds)" "$(f "$ours_tlcp" done)" "$(f "$ours_tlcp" cpu_seconds)" \
  "$(f "$ref_tls" done)" "$(f "$ref_tls" cpu_seconds)" "$(f "$ours_tls" done)" "$(f "$ours_tls" cpu_seconds)" \
  "$(f "$bulk" bytes)" "$(f "$bulk" seconds)" "$(f "$bulk" cpu_seconds)" "$rss" "$seconds" \
  "$(f "$two_tlcp" done)" "$(f "$two_tlcp" cpu_seconds)" "$(f "$two_tls" done)" "$(f "$two_tls" cpu_seconds)" <<'PY'
import sys
(sign, verify, gcm, rt_n, rt_c, ot_n, ot_c, rs_n, rs_c, os_n, os_c, b_bytes, b_secs, b_cpu, rss, secs,
 t2_n, t2_c, s2_n, s2_c) = map(float, sys.argv[1:])
per_core = lambda n, c: n / c if c > 0 else float("nan")
print()
print("Handshakes per CPU-second of the server process (its rate on one core); wall-clock rates above.")
print(f"{'figure':52} {'gateway':>9} {'reference':>9} {'ratio':>6}")
tlcp, ref_tlcp = per_core(ot_n, ot_c), per_core(rt_n, rt_c)
tls, ref_tls = per_core(os_n, os_c), per_core(rs_n, rs_c)
print(f"{'TLCP ECC handshakes / CPU-s vs s_server':52} {tlcp:9.0f} {ref_tlcp:9.0f} {tlcp / ref_tlcp:6.2f}")
print(f"{'TLS 1.3 SM handshakes / CPU-s vs s_server':52} {tls:9.0f} {ref_tls:9.0f} {tls / ref_tls:6.2f}")
# A TLCP ECC handshake costs the server an SM2 sign and an SM2 decrypt (about two sign-sized
# scalar multiplications); a TLS 1.3 SM one a sign, a key generation and an ECDH (about three).
print(f"{'TLCP ECC handshakes / CPU-s vs speed sign/s / 2':52} {tlcp:9.0f} {sign / 2:9.0f} {tlcp / (sign / 2):6.2f}")
print(f"{'TLS 1.3 SM handshakes / CPU-s vs speed sign/s / 3':52} {tls:9.0f} {sign / 3:9.0f} {tls / (sign / 3):6.2f}")
# Each echoed byte is decrypted once and encrypted once by the gateway.
crypto_mb = 2 * b_bytes / 1e6
wall = crypto_mb / b_secs
core = crypto_mb / b_cpu if b_cpu > 0 else float("nan")
print(f"{'bulk SM4-GCM MB/s (in+out), wall clock, vs speed':52} {wall:9.1f} {gcm:9.1f} {wall / gcm:6.2f}")
print(f"{'bulk SM4-GCM MB/s (in+out) per CPU-s, vs speed':52} {core:9.1f} {gcm:9.1f} {core / gcm:6.2f}")
print(f"gateway CPU busy: handshakes {ot_c / secs:.0%} / {os_c / secs:.0%} of a core, bulk {b_cpu / b_secs:.0%}")
print(f"gateway peak RSS {rss / 1024:.1f} MiB (one worker)")
print()
print("One worker (CPU 0, client on CPU 1) and two workers (CPUs 0-1, shared with the client).")
print(f"{'figure':52} {'2 workers':>9} {'1 worker':>9} {'ratio':>6}")
tlcp2, tls2 = per_core(t2_n, t2_c), per_core(s2_n, s2_c)
print(f"{'TLCP handshakes / CPU-s of the gateway':52} {tlcp2:9.0f} {tlcp:9.0f} {tlcp2 / tlcp:6.2f}")
print(f"{'TLS 1.3 SM handshakes / CPU-s of the gateway':52} {tls2:9.0f} {tls:9.0f} {tls2 / tls:6.2f}")
print(f"{'TLCP handshakes / s, wall clock':52} {t2_n / secs:9.0f} {ot_n / secs:9.0f} {t2_n / ot_n:6.2f}")
print(f"{'TLS 1.3 SM handshakes / s, wall clock':52} {s2_n / secs:9.0f} {os_n / secs:9.0f} {s2_n / os_n:6.2f}")
print(f"{'gateway cores busy, TLCP':52} {t2_c / secs:9.2f} {ot_c / secs:9.2f}")
print(f"{'gateway cores busy, TLS 1.3 SM':52} {s2_c / secs:9.2f} {os_c / secs:9.2f}")
print("Per CPU-second near 1.0: a second worker costs nothing per handshake (no lock contention),")
print("so capacity grows with the cores given. Wall clock: the load client needs more SM2 work per")
print("handshake than the server and shares the two cores, so it, not the gateway, bounds it here.")
PY
