//! Many clients at once against the shipped gateway on several workers: full TLCP and TLS 1.3
//! SM handshakes, tens of thousands of each, through one server session cache per protocol.
//!
//! The shipped static build once linked a Tongsuo without threads (its locks compiled to
//! no-ops) and died in 6 of 7 such runs: SIGSEGV in the session cache
//! (`ssl_session_cmp ← … ← SSL_CTX_add_session`), a corrupted heap, or a panic on a garbled
//! error string (issue 28). The cache holds 20,480 sessions by default, so past that many full
//! handshakes each new session also evicts an old one, the path that crashed; the soak goes
//! well past it on both contexts at once. Its own file, so nothing else shares the machine.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use support::*;
use tongsuo::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};

/// Handshakes of each protocol; ZHENGYUN_SOAK_HANDSHAKES changes it for a longer run.
fn per_protocol() -> usize {
    std::env::var("ZHENGYUN_SOAK_HANDSHAKES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}

/// Concurrent clients of each protocol.
const CLIENTS: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Proto {
    Tlcp,
    Tls13Sm,
}

/// A client context. The server's certificate is not verified here (the interop tests verify
/// it): the soak measures whether the server holds, and each handshake is shown to have worked
/// by the backend's echo arriving through it.
fn context(p: Proto) -> SslContext {
    let mut b = match p {
        Proto::Tlcp => {
            let mut b = SslContext::builder(SslMethod::ntls_client()).expect("ntls");
            b.enable_ntls();
            b.set_cipher_list("ECC-SM2-SM4-GCM-SM3:ECC-SM2-SM4-CBC-SM3").expect("suites");
            b
        }
        Proto::Tls13Sm => {
            let mut b = SslContext::builder(SslMethod::tls_client()).expect("tls");
            b.set_min_proto_version(Some(SslVersion::TLS1_3)).expect("1.3");
            b.set_ciphersuites("TLS_SM4_GCM_SM3:TLS_SM4_CCM_SM3").expect("suites");
            b.set_groups_list("curveSM2").expect("group");
            b.set_sigalgs_list("sm2sig_sm3").expect("sigalg");
            b
        }
    };
    b.set_verify(SslVerifyMode::NONE);
    b.build()
}

/// One connection: a full handshake, a line echoed by the backend, a clean close.
fn once(ctx: &SslContext, port: u16, n: usize) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(Duration::from_secs(20))).map_err(|e| e.to_string())?;
    let ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
    let mut tls = ssl.connect(tcp).map_err(|e| format!("handshake: {e}"))?;
    let line = format!("soak {n}\n");
    tls.write_all(line.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"\n") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let want = format!("echo: {line}");
    if got != want.as_bytes() {
        return Err(format!("echoed {:?}, not {want:?}", String::from_utf8_lossy(&got)));
    }
    let _ = tls.shutdown();
    Ok(())
}

#[test]
fn tens_of_thousands_of_concurrent_handshakes_on_four_workers_leave_the_gateway_standing() {
    let dir = std::env::temp_dir().join(format!("zhengyun-gateway-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = Pki::new(&dir.join("ca"), "soak test root");
    let server = dir.join("server");
    pki.pair(&server, "localhost", true);
    let args = [
        format!("--backend={}", backend(false)),
        "--protocols=tlcp,tls13-sm".to_string(),
        format!("--sm-cert-dir={}", server.display()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gw = Gateway::start(&args, &dir.join("gateway.log"));
    let (port, target) = (gw.port, per_protocol());

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut counts = Vec::new();
    let mut clients = Vec::new();
    for proto in [Proto::Tlcp, Proto::Tls13Sm] {
        let (taken, ok, failed) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        counts.push((proto, ok.clone(), failed.clone()));
        let ctx = Arc::new(context(proto));
        for _ in 0..CLIENTS {
            let (ctx, taken, ok, failed, stop, errors) =
                (ctx.clone(), taken.clone(), ok.clone(), failed.clone(), stop.clone(), errors.clone());
            clients.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = taken.fetch_add(1, Ordering::Relaxed);
                    if n >= target {
                        return;
                    }
                    match once(&ctx, port, n) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut errors = errors.lock().unwrap();
                            if errors.len() < 10 {
                                errors.push(format!("{proto:?} #{n}: {e}"));
                            }
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
    }
    // Watch the server while the clients run: a crash stops the soak with how it ended.
    let mut last_report = Instant::now();
    while clients.iter().any(|c| !c.is_finished()) {
        if let Some(status) = gw.ended() {
            stop.store(true, Ordering::Relaxed);
            for c in clients {
                let _ = c.join();
            }
            let logs = gw.logs();
            let tail: Vec<&str> = logs.lines().rev().take(20).collect();
            panic!(
                "the gateway died ({status}) after {:?} of the soak; handshakes so far: {}\nlast log lines:\n{}",
                started.elapsed(),
                summary(&counts),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("soak: {} after {:?}", summary(&counts), started.elapsed());
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in clients {
        c.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    eprintln!("soak: {} in {elapsed:?} ({} workers)", summary(&counts), WORKERS);
    assert!(gw.alive(), "the gateway ended: {:?}\n{}", gw.ended(), gw.logs());
    let errors = errors.lock().unwrap().clone();
    for (proto, ok, failed) in &counts {
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        assert_eq!((ok, failed), (target, 0), "{proto:?}: {ok} ok, {failed} failed; first errors: {errors:#?}");
    }
    for label in ["tlcp", "tls13-sm"] {
        let served = gw.metric("zhengyun_gateway_handshakes_total", &[("protocol", label), ("result", "ok")]);
        assert!(served >= target as f64, "{label}: the gateway counted {served} handshakes");
    }
    // Still serving, with a client that is not ours.
    let out = client(
        std::process::Command::new(tongsuo())
            .args(["s_client", "-quiet", "-ign_eof", "-enable_ntls", "-ntls", "-cipher", "ECC-SM2-SM4-GCM-SM3"])
            .arg("-verify_return_error")
            .arg("-CAfile")
            .arg(pki.ca_file())
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}")),
        b"after the soak\n",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo: after the soak"), "{}", text(&out));
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}

fn summary(counts: &[(Proto, Arc<AtomicUsize>, Arc<AtomicUsize>)]) -> String {
    counts
        .iter()
        .map(|(p, ok, failed)| {
            format!("{p:?} {} ok / {} failed", ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
