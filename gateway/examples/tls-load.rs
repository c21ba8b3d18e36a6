//! The load client of bench/gateway.sh: full handshakes per second, or bulk bytes through an
//! echo, over TLCP or TLS 1.3 with SM suites. The same client measures the gateway and
//! `tongsuo s_server`, so their ratio is the figure. Certificates are not verified: the
//! benchmark measures the server's work, and the interop tests verify.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used)] // a benchmark tool: a setup failure should stop it loudly

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tongsuo::SslStream;
use tongsuo::ssl::{Ssl, SslContext, SslMethod, SslVerifyMode, SslVersion};

fn context(protocol: &str, suite: &str) -> SslContext {
    let mut b = if protocol == "tlcp" {
        let mut b = SslContext::builder(SslMethod::ntls_client()).expect("ntls");
        b.enable_ntls();
        b.set_cipher_list(suite).expect("suite");
        b
    } else {
        let mut b = SslContext::builder(SslMethod::tls_client()).expect("tls");
        b.set_min_proto_version(Some(SslVersion::TLS1_3)).expect("1.3");
        b.set_ciphersuites(suite).expect("suite");
        b.set_groups_list("curveSM2").expect("group");
        b.set_sigalgs_list("sm2sig_sm3").expect("sigalg");
        b
    };
    b.set_verify(SslVerifyMode::NONE);
    b.build()
}

async fn connect(ctx: &SslContext, addr: &str) -> Result<SslStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
    let mut s = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    Pin::new(&mut s).connect().await.map_err(|e| e.to_string())?;
    Ok(s)
}

async fn handshakes(ctx: SslContext, addr: String, seconds: u64, concurrency: usize) {
    let ctx = Arc::new(ctx);
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (ctx, addr, done, failed) = (ctx.clone(), addr.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    match connect(&ctx, &addr).await {
                        Ok(mut s) => {
                            let _ = s.shutdown().await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("handshakes_per_second {:.1} done {done} failed {failed}", done as f64 / secs);
}

async fn bulk(ctx: SslContext, addr: String, mib: u64) {
    let s = connect(&ctx, &addr).await.expect("connect");
    let (mut r, mut w) = tokio::io::split(s);
    let total = mib * 1024 * 1024;
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 16 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(usize::try_from(total - sent).unwrap_or(chunk.len()));
            w.write_all(&chunk[..n]).await.expect("write");
            sent += n as u64;
        }
        w
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < total {
        let n = r.read(&mut buf).await.expect("read");
        assert!(n > 0, "echo closed after {got} bytes");
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = writer.await;
    println!("echo_mb_per_second {:.1} bytes {got} seconds {secs:.3}", got as f64 / secs / 1e6);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "tls-load handshakes|bulk ADDR tlcp|tls13-sm SUITE [SECONDS CONCURRENCY [THREADS] | MIB]";
    if args.len() < 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let (mode, addr, protocol, suite) = (&args[1], args[2].clone(), &args[3], &args[4]);
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let ctx = context(protocol, suite);
    // One thread unless asked: on two cores the client would otherwise take the server's.
    let threads = usize::try_from(num(7, 1)).unwrap_or(1).max(1);
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .expect("runtime");
    match mode.as_str() {
        "handshakes" => rt.block_on(handshakes(ctx, addr, num(5, 10), usize::try_from(num(6, 8)).unwrap_or(8))),
        "bulk" => rt.block_on(bulk(ctx, addr, num(5, 256))),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
