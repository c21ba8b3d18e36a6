//! Hostile input and rotation: garbage, truncated and abrupt connections, slow handshakes and
//! a flood end their own connection and never the gateway; certificates rotate under load.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use support::*;

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
fn tmp(tag: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("zhengyun-gateway-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("tmp");
    Tmp(p)
}

/// A small deterministic generator: reproducible garbage without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The first flight a real client sends, captured on a listener of ours.
fn captured_hello(args: &[&str]) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let mut child = Command::new(tongsuo())
        .arg("s_client")
        .args(args)
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    let (mut conn, _) = l.accept().expect("accept");
    conn.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        hello.extend_from_slice(&buf[..n]);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(hello.len() > 40, "captured {} bytes", hello.len());
    hello
}

/// Closes with a reset (SO_LINGER 0), as a crashed client or a middlebox does.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

fn gateway(dir: &std::path::Path, extra: &[&str]) -> (Pki, PathBuf, Gateway) {
    let pki = Pki::new(&dir.join("ca"), "hostile test root");
    let server = dir.join("server");
    pki.pair(&server, "localhost", true);
    let standard = dir.join("standard");
    standard_cert(&standard);
    let backend = backend(false);
    let mut args = vec![
        format!("--backend={backend}"),
        "--protocols=tlcp,tls13-sm,tls".to_string(),
        format!("--sm-cert-dir={}", server.display()),
        format!("--standard-cert-dir={}", standard.display()),
        "--reload-ms=200".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start(&args, &dir.join("gateway.log"));
    (pki, server, gw)
}

fn tlcp_line(gw: &Gateway, pki: &Pki, line: &str) -> bool {
    let out = client(
        Command::new(tongsuo())
            .args(["s_client", "-quiet", "-ign_eof", "-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"])
            .arg("-verify_return_error")
            .arg("-CAfile")
            .arg(pki.ca_file())
            .arg("-connect")
            .arg(format!("127.0.0.1:{}", gw.port)),
        format!("{line}\n").as_bytes(),
    );
    String::from_utf8_lossy(&out.stdout).contains(&format!("echo: {line}"))
}

#[test]
fn thousands_of_hostile_connections_end_only_themselves() {
    let t = tmp("hostile");
    let (pki, _server, gw) = gateway(&t.0, &["--handshake-timeout-ms=1000", "--max-connections=400"]);
    assert!(tlcp_line(&gw, &pki, "before"), "{}", gw.logs());
    let rss_before = gw.rss_kib();
    let hellos = Arc::new([
        captured_hello(&["-enable_ntls", "-ntls"]),
        captured_hello(&["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2"]),
        captured_hello(&["-tls1_2"]),
    ]);
    let port = gw.port;
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|seed| {
            let (hellos, done) = (hellos.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1));
                for _ in 0..400 {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                    let hello = &hellos[rng.below(3)];
                    let payload = match rng.below(6) {
                        // random bytes
                        0 => {
                            let n = 1 + rng.below(3000);
                            rng.bytes(n)
                        }
                        // a real hello cut anywhere
                        1 => hello[..rng.below(hello.len())].to_vec(),
                        // a real hello with bytes flipped
                        2 => {
                            let mut h = hello.clone();
                            for _ in 0..1 + rng.below(8) {
                                let i = rng.below(h.len());
                                h[i] ^= rng.next() as u8 | 1;
                            }
                            h
                        }
                        // a hello and garbage where the next flight should be
                        3 => {
                            let mut h = hello.clone();
                            let n = rng.below(600);
                            h.extend(rng.bytes(n));
                            h
                        }
                        // wrong versions: SSL 3, SSLv2-style, TLS with version 3.9
                        4 => [
                            vec![0x16, 3, 0, 0, 5, 1, 0, 0, 1, 0],
                            vec![0x80, 0x2e, 1, 0, 2],
                            vec![0x16, 3, 9, 0, 1, 1],
                        ][rng.below(3)]
                        .clone(),
                        // a whole hello, then read a little of the answer and reset
                        _ => hello.clone(),
                    };
                    let _ = s.write_all(&payload);
                    if rng.below(2) == 0 {
                        let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut buf = [0u8; 256];
                        let _ = s.read(&mut buf);
                    }
                    match rng.below(3) {
                        0 => reset(s),
                        1 => {
                            let _ = s.shutdown(Shutdown::Write);
                        }
                        _ => drop(s),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("flood thread");
    }
    assert_eq!(done.load(Ordering::Relaxed), 3200);
    // Handshakes cut short by a reset after the server's first flight, mid-TLCP: the case
    // that crashes a TLCP context read through a TLS stream.
    for _ in 0..50 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(&hellos[0]).expect("hello");
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        reset(s);
    }
    assert!(gw.child.id() > 0 && std::fs::metadata(format!("/proc/{}", gw.child.id())).is_ok());
    assert!(tlcp_line(&gw, &pki, "after the flood"), "{}", gw.logs());
    // Every flood connection has ended (handshake timeout 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("zhengyun_gateway_connections_active", &[]) > 0.0 {
        assert!(Instant::now() < deadline, "connections stay open: {}", gw.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_after = gw.rss_kib();
    eprintln!("RSS before {rss_before} KiB, after 3,250 hostile connections {rss_after} KiB");
    assert!(rss_after < 96 * 1024, "RSS {rss_after} KiB after the flood");
    let refused = gw.metric("zhengyun_gateway_connections_refused_total", &[]);
    let failed = gw.metric("zhengyun_gateway_handshakes_total", &[("result", "failed")]);
    assert!(refused > 500.0 && failed > 100.0, "refused {refused}, failed {failed}\n{}", gw.metrics());
}

#[test]
fn slow_handshakes_time_out_and_the_cap_holds() {
    let t = tmp("slow");
    let (pki, _server, gw) = gateway(&t.0, &["--handshake-timeout-ms=800", "--max-connections=50"]);
    let hello = captured_hello(&["-enable_ntls", "-ntls"]);
    // 50 slowloris clients fill the cap, one byte at a time.
    let mut slow: Vec<TcpStream> =
        (0..50).map(|_| TcpStream::connect(("127.0.0.1", gw.port)).expect("connect")).collect();
    for s in &mut slow {
        let _ = s.write_all(&hello[..1]);
    }
    std::thread::sleep(Duration::from_millis(200));
    // The 51st is closed at once.
    let mut extra = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 16];
    assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)), "a connection over the cap was served");
    assert!(gw.metric("zhengyun_gateway_connections_refused_total", &[("reason", "cap")]) >= 1.0);
    // Dripping bytes does not keep a handshake alive past its deadline.
    let start = Instant::now();
    for i in 1..6 {
        for s in &mut slow {
            let _ = s.write_all(&hello[i..i + 1]);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "a slow handshake outlived its deadline");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(gw.metric("zhengyun_gateway_handshakes_total", &[("result", "timeout")]) >= 50.0, "{}", gw.metrics());
    // The slots are free again.
    assert!(tlcp_line(&gw, &pki, "after the slow ones"), "{}", gw.logs());
}

#[test]
fn clients_killed_mid_stream_end_only_their_connection() {
    let t = tmp("killed");
    let (pki, _server, gw) = gateway(&t.0, &[]);
    for args in [
        vec!["-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"],
        vec!["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2"],
    ] {
        for _ in 0..10 {
            let mut child = Command::new(tongsuo())
                .args(["s_client", "-quiet"])
                .args(&args)
                .arg("-connect")
                .arg(format!("127.0.0.1:{}", gw.port))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("s_client");
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"keep some bytes\n").expect("write");
            let mut stdout = child.stdout.take().expect("stdout");
            let mut buf = [0u8; 22];
            stdout.read_exact(&mut buf).expect("echo");
            // SIGKILL: no close_notify, the socket just closes.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    assert!(tlcp_line(&gw, &pki, "still serving"), "{}", gw.logs());
}

#[test]
fn rotation_under_load_fails_no_handshake_and_open_connections_continue() {
    let t = tmp("rotate");
    let (pki, server, gw) = gateway(&t.0, &[]);
    // A connection opened before the rotation.
    let mut long = Command::new(tongsuo())
        .args(["s_client", "-quiet", "-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", gw.port))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    let mut long_in = long.stdin.take().expect("stdin");
    let mut long_out = long.stdout.take().expect("stdout");
    long_in.write_all(b"keep before\n").expect("write");
    let mut buf = [0u8; 18];
    long_out.read_exact(&mut buf).expect("echo before");
    assert_eq!(&buf, b"echo: keep before\n");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loops: Vec<_> = [
        vec!["-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"],
        vec!["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2", "-sigalgs", "sm2sig_sm3"],
    ]
    .into_iter()
    .map(|args| {
        let (stop, ok, failed, port, ca) = (stop.clone(), ok.clone(), failed.clone(), gw.port, pki.ca_file());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = client(
                    Command::new(tongsuo())
                        .args(["s_client", "-quiet", "-ign_eof", "-verify_return_error"])
                        .args(&args)
                        .arg("-CAfile")
                        .arg(&ca)
                        .arg("-connect")
                        .arg(format!("127.0.0.1:{port}")),
                    b"ping\n",
                );
                let counter = if String::from_utf8_lossy(&out.stdout).contains("echo: ping") { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    })
    .collect();
    std::thread::sleep(Duration::from_millis(700));
    let mut rotated = Vec::new();
    for _ in 0..2 {
        rotated.push(pki.pair(&server, "localhost", true));
        std::thread::sleep(Duration::from_millis(1200));
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().expect("client loop");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} handshakes during two rotations, {failed} failed");
    assert!(ok >= 10 && failed == 0, "{ok} ok, {failed} failed\n{}", gw.logs());
    assert_eq!(gw.metric("zhengyun_gateway_certificate_reloads_total", &[("result", "ok")]), 2.0);
    // New handshakes see the newest sign certificate.
    let out = client(
        Command::new(tongsuo())
            .args(["s_client", "-showcerts", "-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"])
            .arg("-connect")
            .arg(format!("127.0.0.1:{}", gw.port)),
        b"",
    );
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let newest = rotated.last().expect("rotated").trim().to_string();
    assert!(shown.contains(&newest), "the newest certificate is not served:\n{}", text(&out));
    // The connection from before the rotation still works.
    long_in.write_all(b"keep after!\n").expect("write");
    long_out.read_exact(&mut buf).expect("echo after");
    assert_eq!(&buf, b"echo: keep after!\n");
    let _ = long.kill();
    let _ = long.wait();
}

/// A hello, then the server's flight read, then a plaintext handshake record where the client's
/// protected (or, for TLCP, its key exchange) flight belongs: each connection ends in an alert
/// and an error pushed on Tongsuo's error queue. With a Tongsuo built without threads, 32 of
/// these at a time killed the gateway in 3 of 3 runs (issue 28).
#[test]
fn plaintext_records_after_the_servers_flight_32_at_a_time_end_only_their_connections() {
    let t = tmp("plaintext");
    let (pki, _server, mut gw) = gateway(&t.0, &["--handshake-timeout-ms=5000"]);
    let hellos = Arc::new([
        captured_hello(&["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2"]),
        captured_hello(&["-tls1_3"]),
        captured_hello(&["-enable_ntls", "-ntls"]),
    ]);
    let port = gw.port;
    let rounds = 150;
    let answered = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..32u64)
        .map(|seed| {
            let (hellos, answered) = (hellos.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (seed + 1));
                for round in 0..rounds {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                    // Mostly TLS 1.3 with the SM suites, the reported case; the others too.
                    let which = if round % 4 == 3 { 1 + rng.below(2) } else { 0 };
                    let hello = &hellos[which];
                    if s.write_all(hello).is_err() {
                        continue;
                    }
                    // The server's whole flight: read until it pauses.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 8192];
                    let mut flight = 0;
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        flight += n;
                        let _ = s.set_read_timeout(Some(Duration::from_millis(30)));
                    }
                    if flight > 0 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // A plaintext handshake record: a Finished, a Certificate, a second
                    // ClientHello or a ClientKeyExchange of random bytes.
                    let kind = [0x14u8, 0x0b, 0x01, 0x10][rng.below(4)];
                    let len = 4 + rng.below(120);
                    let body = rng.bytes(len);
                    let mut msg = vec![kind];
                    msg.extend(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
                    msg.extend(body);
                    let version = if which == 2 { [0x01, 0x01] } else { [0x03, 0x03] };
                    let mut record = vec![0x16, version[0], version[1]];
                    record.extend(u16::try_from(msg.len()).unwrap_or(0).to_be_bytes());
                    record.extend(msg);
                    let _ = s.write_all(&record);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert!(gw.alive(), "the gateway died: {:?}\n{}", gw.ended(), gw.logs());
    let answered = answered.load(Ordering::Relaxed);
    assert!(answered >= 32 * rounds * 9 / 10, "only {answered} connections got the server's flight");
    let failed = gw.metric("zhengyun_gateway_handshakes_total", &[("result", "failed")]);
    assert!(failed >= answered as f64 * 0.9, "{failed} failed handshakes counted for {answered}\n{}", gw.metrics());
    assert!(tlcp_line(&gw, &pki, "after the plaintext records"), "{}", gw.logs());
}

/// A client that sends part of its hello and then closes its side (FIN) is closed at once, on
/// every protocol, not held until the handshake timeout (which is a minute here).
#[test]
fn a_client_that_closes_mid_hello_is_closed_at_once() {
    let t = tmp("midhello");
    let (pki, _server, mut gw) = gateway(&t.0, &["--handshake-timeout-ms=60000", "--max-connections=5000"]);
    let hellos = Arc::new([
        captured_hello(&["-enable_ntls", "-ntls"]),
        captured_hello(&["-tls1_3", "-ciphersuites", "TLS_SM4_GCM_SM3", "-groups", "curveSM2"]),
    ]);
    let port = gw.port;
    let held = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|seed| {
            let (hellos, held) = (hellos.clone(), held.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x94d0_49bb_1331_11eb ^ (seed + 1));
                // Open all of this thread's connections first, so they are held at once.
                let mut open = Vec::new();
                for i in 0..250 {
                    let hello = &hellos[usize::from(i % 5 == 4)];
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                    let cut = 3 + rng.below(hello.len() - 4);
                    let _ = s.write_all(&hello[..cut]);
                    let _ = s.shutdown(Shutdown::Write);
                    open.push(s);
                }
                for mut s in open {
                    // Once one is held, the rest are not waited for as long.
                    let wait = if held.load(Ordering::Relaxed) > 0 { 10 } else { 20_000 };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(wait)));
                    let mut buf = [0u8; 64];
                    if let Err(e) = s.read(&mut buf)
                        && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                    {
                        held.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(held.load(Ordering::Relaxed), 0, "connections were held after the client's FIN");
    assert_eq!(gw.metric("zhengyun_gateway_handshakes_total", &[("result", "timeout")]), 0.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("zhengyun_gateway_connections_active", &[]) > 0.0 {
        assert!(Instant::now() < deadline, "connections stay open: {}", gw.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.alive());
    assert!(tlcp_line(&gw, &pki, "after the half hellos"), "{}", gw.logs());
}
