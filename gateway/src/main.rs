//! zhengyun-gateway: TLCP, TLS 1.3 with SM suites and standard TLS on one port.

#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use clap::Parser;
use zhengyun_gateway::{
    contexts::{self, ClientAuth, Policy, Protocol},
    material::Sources,
    metrics::Metrics,
    reload,
    serve::{self, Backend, BackendProtocol, Gateway, Limits},
};

#[derive(Parser, Debug)]
#[command(name = "zhengyun-gateway", version, about)]
struct Args {
    /// Where clients connect.
    #[arg(long, env = "ZHENGYUN_GATEWAY_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "ZHENGYUN_GATEWAY_ADMIN", default_value = "0.0.0.0:9090")]
    admin: SocketAddr,
    /// The backend, host:port.
    #[arg(long, env = "ZHENGYUN_GATEWAY_BACKEND")]
    backend: String,
    /// `tcp` relays bytes; `http` forwards HTTP/1.1 with X-Forwarded-For/-Proto and the
    /// verified client certificate's subject in X-Client-Subject.
    #[arg(long, env = "ZHENGYUN_GATEWAY_BACKEND_PROTOCOL", value_enum, default_value = "tcp")]
    backend_protocol: BackendProtocol,
    /// Protocols served, comma-separated.
    #[arg(long, env = "ZHENGYUN_GATEWAY_PROTOCOLS", value_delimiter = ',', required = true)]
    protocols: Vec<Protocol>,
    /// The SmCertificate Secret's files (tls.crt, tls.key, enc.crt, enc.key).
    #[arg(long, env = "ZHENGYUN_GATEWAY_SM_CERT_DIR")]
    sm_cert_dir: PathBuf,
    /// A standard certificate Secret's files (tls.crt, tls.key), for the `tls` protocol.
    #[arg(long, env = "ZHENGYUN_GATEWAY_STANDARD_CERT_DIR")]
    standard_cert_dir: Option<PathBuf>,
    #[arg(long, env = "ZHENGYUN_GATEWAY_CLIENT_AUTH", value_enum, default_value = "none")]
    client_auth: ClientAuth,
    /// The CA bundle client certificates are verified against.
    #[arg(long, env = "ZHENGYUN_GATEWAY_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    #[arg(long, env = "ZHENGYUN_GATEWAY_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    handshake_timeout_ms: u64,
    #[arg(long, env = "ZHENGYUN_GATEWAY_IDLE_TIMEOUT_MS", default_value_t = 300_000)]
    idle_timeout_ms: u64,
    #[arg(long, env = "ZHENGYUN_GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// How often the certificate files are checked for a rotation.
    #[arg(long, env = "ZHENGYUN_GATEWAY_RELOAD_MS", default_value_t = 1_000)]
    reload_ms: u64,
    /// After SIGTERM: milliseconds of reporting not ready while still accepting, so the
    /// Service stops sending new clients before the listener closes.
    #[arg(long, env = "ZHENGYUN_GATEWAY_SHUTDOWN_DELAY_MS", default_value_t = 5_000)]
    shutdown_delay_ms: u64,
    /// Seconds open connections get to finish after the listener closes.
    #[arg(long, env = "ZHENGYUN_GATEWAY_DRAIN_SECONDS", default_value_t = 20)]
    drain_seconds: u64,
    /// Threads that run handshakes and relays; by default one per CPU this process may use
    /// (its cgroup's CPU limit counts).
    #[arg(long, env = "ZHENGYUN_GATEWAY_WORKER_THREADS")]
    worker_threads: Option<usize>,
}

impl Args {
    /// Contradictions are refused at start, naming the flag.
    fn check(&self) -> anyhow::Result<()> {
        if self.protocols.contains(&Protocol::Tls) && self.standard_cert_dir.is_none() {
            bail!("--protocols includes tls but --standard-cert-dir is not set");
        }
        if self.client_auth != ClientAuth::None && self.client_ca.is_none() {
            bail!("--client-auth {:?} needs --client-ca", self.client_auth);
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if self.handshake_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            bail!("--handshake-timeout-ms and --idle-timeout-ms must be positive");
        }
        if self.worker_threads == Some(0) {
            bail!("--worker-threads must be at least 1");
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::{EnvFilter, fmt};
    fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_current_span(false)
        .init();
    let args = Args::parse();
    args.check()?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build().context("starting the runtime")?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut protocols = args.protocols.clone();
    protocols.sort();
    protocols.dedup();
    let policy = Policy { protocols, client_auth: args.client_auth };
    let sources = Sources {
        sm: args.sm_cert_dir.clone(),
        standard: args.standard_cert_dir.clone(),
        client_ca: args.client_ca.clone(),
    };
    let material = sources.read().context("reading certificates")?;
    let built = contexts::build(&policy, &material).context("building TLS contexts")?;
    let limits = Limits {
        handshake: Duration::from_millis(args.handshake_timeout_ms),
        idle: Duration::from_millis(args.idle_timeout_ms),
        max_connections: args.max_connections,
    };
    let backend = Backend { address: args.backend.clone(), protocol: args.backend_protocol };
    let gw = Arc::new(Gateway::new(policy, built, backend, limits, Metrics::new()));
    reload::publish(&gw);

    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let admin = tokio::net::TcpListener::bind(args.admin).await.with_context(|| format!("binding {}", args.admin))?;
    let served: Vec<_> = gw.policy.protocols.iter().map(|p| p.label()).collect();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(
        listen = %args.listen, admin = %args.admin, backend = %args.backend, protocols = ?served, workers,
        tongsuo = tongsuo::version::version(), "serving"
    );

    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readyz = {
        let ready = ready.clone();
        move || async move {
            if ready.load(std::sync::atomic::Ordering::Relaxed) {
                (axum::http::StatusCode::OK, "ready")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "stopping")
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(gw.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, app).await {
            tracing::error!(error = %e, "admin server ended");
        }
    });
    tokio::spawn(reload::follow(gw.clone(), sources, material, Duration::from_millis(args.reload_ms)));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve::serve(gw.clone(), listener, stop_rx));
    shutdown_signal().await;
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(ms = args.shutdown_delay_ms, "stopping: not ready, still accepting for the shutdown delay");
    tokio::time::sleep(Duration::from_millis(args.shutdown_delay_ms)).await;
    tracing::info!("stopping: no new connections; draining open ones");
    let _ = stop_tx.send(true);
    let _ = server.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_seconds);
    while gw.metrics.active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], gw.metrics.render())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
