//! One connection: route by its first bytes, hand it to the matching context, relay it to the
//! backend, and write one access log line. Every failure ends this connection only.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, RwLock},
    task::Poll,
    time::Duration,
};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::{Instant, timeout},
};
use tokio_tongsuo::SslStream;
use tongsuo::ssl::Ssl;

use crate::{
    contexts::{Contexts, Policy, Protocol},
    hello::{self, Classified, Hello},
    http,
    metrics::Metrics,
    prefixed::Prefixed,
    relay,
};

/// Limits on what one client may hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From accept to a finished handshake, first bytes included (slowloris handshakes end here).
    pub handshake: Duration,
    /// No bytes either way for this long ends a connection.
    pub idle: Duration,
    /// Connections open at once; more are closed on accept.
    pub max_connections: usize,
}

/// How the backend is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendProtocol {
    /// Bytes relayed as they are.
    Tcp,
    /// HTTP/1.1, with X-Forwarded-For/-Proto and the verified client subject added.
    Http,
}

/// Where the backend is and how it is spoken to.
#[derive(Debug, Clone)]
pub struct Backend {
    pub address: String,
    pub protocol: BackendProtocol,
}

/// What every connection shares.
pub struct Gateway {
    pub policy: Policy,
    pub contexts: RwLock<Arc<Contexts>>,
    pub backend: Backend,
    pub limits: Limits,
    pub metrics: Metrics,
    slots: Arc<Semaphore>,
}

impl Gateway {
    pub fn new(policy: Policy, contexts: Contexts, backend: Backend, limits: Limits, metrics: Metrics) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        Gateway { policy, contexts: RwLock::new(Arc::new(contexts)), backend, limits, metrics, slots }
    }

    /// The contexts new handshakes use.
    pub fn current(&self) -> Arc<Contexts> {
        match self.contexts.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, contexts: Contexts) {
        let fresh = Arc::new(contexts);
        match self.contexts.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
}

/// Accepts until `stop` fires; each connection runs on its own task.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = gw.slots.clone().try_acquire_owned() else {
            gw.metrics.refused.with_label_values(&["cap"]).inc();
            drop(conn);
            continue;
        };
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.metrics.active.inc();
            let line = connection(&gw, conn, peer).await;
            gw.metrics.active.dec();
            drop(permit);
            line.log();
        });
    }
}

/// The access log line of one connection.
#[derive(Debug, Default)]
struct Line {
    peer: String,
    protocol: &'static str,
    suite: String,
    client_subject: String,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: u64,
    result: &'static str,
    error: String,
}

impl Line {
    fn log(&self) {
        tracing::info!(
            target: "access",
            peer = %self.peer,
            protocol = self.protocol,
            suite = %self.suite,
            client_subject = %self.client_subject,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = self.duration_ms,
            result = self.result,
            error = %self.error,
        );
    }
}

/// Reads until the first record says where the connection goes.
async fn first_bytes(conn: &mut TcpStream) -> Result<(Hello, Vec<u8>), &'static str> {
    let mut buf = Vec::with_capacity(512);
    loop {
        match hello::classify(&buf) {
            Classified::Hello(h) => return Ok((h, buf)),
            Classified::Refused(r) => return Err(r.label()),
            Classified::Need(n) => {
                let mut chunk = vec![0u8; n - buf.len()];
                let got = conn.read(&mut chunk).await.map_err(|_| "read_error")?;
                if got == 0 {
                    return Err("closed");
                }
                buf.extend_from_slice(&chunk[..got]);
            }
        }
    }
}

/// Which context a hello goes to, if any is served for it.
fn route(policy: &Policy, hello: Hello) -> Option<Protocol> {
    match hello {
        Hello::Tlcp => policy.serves(Protocol::Tlcp).then_some(Protocol::Tlcp),
        Hello::Tls { offers_sm: true } if policy.serves(Protocol::Tls13Sm) => Some(Protocol::Tls13Sm),
        Hello::Tls { .. } if policy.serves(Protocol::Tls) => Some(Protocol::Tls),
        // A standard client at a gateway without standard TLS meets the SM context and its
        // handshake-failure alert, so it is told, not silently dropped.
        Hello::Tls { .. } => policy.serves(Protocol::Tls13Sm).then_some(Protocol::Tls13Sm),
    }
}

type Tls = SslStream<Prefixed<TcpStream>>;

async fn handshake(gw: &Gateway, mut conn: TcpStream, line: &mut Line) -> Result<(Tls, Protocol), String> {
    let (hello, prefix) = first_bytes(&mut conn).await.map_err(|reason| {
        gw.metrics.refused.with_label_values(&[reason]).inc();
        line.result = "refused";
        reason.to_string()
    })?;
    let Some(protocol) = route(&gw.policy, hello) else {
        gw.metrics.refused.with_label_values(&["protocol_not_served"]).inc();
        line.result = "refused";
        return Err(format!("{hello:?} is not served here"));
    };
    line.protocol = protocol.label();
    let contexts = gw.current();
    let ctx = contexts.get(protocol).ok_or("no context")?;
    let ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
    let mut tls = SslStream::new(ssl, Prefixed::new(prefix, conn)).map_err(|e| e.to_string())?;
    // A handshake left waiting after the client closed its side would wait for the timeout:
    // Tongsuo's TLCP path asks to read again after the end (see `prefixed`).
    let accepted = std::future::poll_fn(|cx| match Pin::new(&mut tls).poll_accept(cx) {
        Poll::Pending if tls.get_ref().closed() => Poll::Ready(Err(None)),
        Poll::Pending => Poll::Pending,
        Poll::Ready(r) => Poll::Ready(r.map_err(Some)),
    })
    .await;
    match accepted {
        Ok(()) => Ok((tls, protocol)),
        Err(e) => {
            line.result = "handshake_failed";
            gw.metrics.handshakes.with_label_values(&[protocol.label(), "none", "failed"]).inc();
            Err(e.map_or_else(|| "the client closed during the handshake".to_string(), |e| e.to_string()))
        }
    }
}

fn subject(tls: &Tls) -> String {
    let Some(cert) = tls.ssl().peer_certificate() else { return String::new() };
    crate::contexts::subject_of(cert.subject_name())
}

async fn connection(gw: &Gateway, conn: TcpStream, peer: SocketAddr) -> Line {
    let start = Instant::now();
    let _ = conn.set_nodelay(true);
    let mut line = Line { peer: peer.to_string(), protocol: "none", ..Default::default() };
    let done = |mut line: Line| {
        line.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        line
    };
    let shaken = match timeout(gw.limits.handshake, handshake(gw, conn, &mut line)).await {
        Ok(r) => r,
        Err(_) => {
            gw.metrics.handshakes.with_label_values(&[line.protocol, "none", "timeout"]).inc();
            line.result = "handshake_timeout";
            Err("handshake timeout".to_string())
        }
    };
    gw.metrics.handshake_seconds.with_label_values(&[line.protocol]).observe(start.elapsed().as_secs_f64());
    let (tls, protocol) = match shaken {
        Ok(ok) => ok,
        Err(e) => {
            line.error = e;
            return done(line);
        }
    };
    line.suite = tls.ssl().current_cipher().map(|c| c.name().to_string()).unwrap_or_default();
    line.client_subject = subject(&tls);
    gw.metrics.handshakes.with_label_values(&[protocol.label(), &line.suite, "ok"]).inc();

    if gw.backend.protocol == BackendProtocol::Http {
        let client = http::Client { address: peer.ip().to_string(), subject: line.client_subject.clone() };
        let r = http::serve(tls, &gw.backend.address, client, (gw.limits.handshake, gw.limits.idle), &gw.metrics).await;
        return relayed(line, r, done);
    }
    let backend = match timeout(gw.limits.handshake, TcpStream::connect(&gw.backend.address)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return backend_failed(gw, line, e.to_string(), done),
        Err(_) => return backend_failed(gw, line, "backend connect timeout".into(), done),
    };
    let _ = backend.set_nodelay(true);
    let counters = [&gw.metrics.bytes.with_label_values(&["in"]), &gw.metrics.bytes.with_label_values(&["out"])];
    let r = relay::relay(tls, backend, gw.limits.idle, counters).await;
    relayed(line, r, done)
}

fn relayed(mut line: Line, r: relay::Relayed, done: impl FnOnce(Line) -> Line) -> Line {
    line.bytes_in = r.bytes_in;
    line.bytes_out = r.bytes_out;
    line.result = if r.ended.is_some() { "ended" } else { "ok" };
    line.error = r.ended.unwrap_or_default();
    done(line)
}

fn backend_failed(gw: &Gateway, mut line: Line, e: String, done: impl FnOnce(Line) -> Line) -> Line {
    gw.metrics.backend_errors.inc();
    line.result = "backend_unreachable";
    line.error = e;
    done(line)
}
