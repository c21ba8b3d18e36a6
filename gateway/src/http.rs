//! HTTP/1.1 backends: requests are forwarded over one backend connection per client
//! connection, with who the client is in headers the backend can trust.
//!
//! The gateway is the edge, so `X-Forwarded-For`, `X-Forwarded-Proto` and the client-subject
//! header are set by us, never passed on from a client: a tenant's client could otherwise claim
//! any address or any verified identity.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Mutex,
    time::Instant,
};

use crate::relay::Relayed;

/// The header carrying a verified client certificate's subject.
pub const CLIENT_SUBJECT: &str = "x-client-subject";

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1), and every header that
/// says who the client is or how it came, which only the gateway may set.
const DROPPED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-real-ip",
    "x-client-ip",
    CLIENT_SUBJECT,
];

/// A header name as CGI-style backends see it: `X_Client_Subject` and `x-client-subject` are the
/// same variable to them, so both are ours.
fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Who is asking, as the handshake established it.
#[derive(Debug, Clone)]
pub struct Client {
    pub address: String,
    /// The verified client certificate's subject, empty without one.
    pub subject: String,
}

/// Counts bytes and notes activity on the client's stream.
struct Counted<S> {
    inner: S,
    seen: Arc<Seen>,
}

struct Seen {
    start: Instant,
    last_ms: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
}

impl Seen {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.seen.read.fetch_add(n, Ordering::Relaxed);
            self.seen.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.seen.written.fetch_add(*n as u64, Ordering::Relaxed);
            self.seen.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// The backend connection of one client connection, opened on the first request and again
/// after the backend closes it.
struct Upstream {
    address: String,
    connect_timeout: Duration,
    sender: Mutex<Option<Sender>>,
}

impl Upstream {
    async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, String> {
        let mut held = self.sender.lock().await;
        let reusable = held.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
                .await
                .map_err(|_| "backend connect timeout".to_string())?
                .map_err(|e| format!("backend: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| format!("backend: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            *held = Some(sender);
        }
        let Some(sender) = held.as_mut() else { return Err("no backend connection".into()) };
        sender.ready().await.map_err(|e| format!("backend: {e}"))?;
        sender.send_request(req).await.map_err(|e| format!("backend: {e}"))
    }
}

/// Rewrites a client's request for the backend.
pub fn forwarded<B>(mut req: Request<B>, client: &Client) -> Request<B> {
    let h = req.headers_mut();
    // Headers the client names in `Connection` are hop-by-hop too.
    let listed: Vec<String> = h
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| normalized(n.trim()))
        .filter(|n| !n.is_empty())
        .collect();
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|k| {
            let n = normalized(k.as_str());
            DROPPED.contains(&n.as_str()) || listed.contains(&n)
        })
        .cloned()
        .collect();
    for name in drop {
        h.remove(name);
    }
    if let Ok(v) = HeaderValue::from_str(&client.address) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("https"));
    if !client.subject.is_empty()
        && let Ok(v) = HeaderValue::from_str(&header_safe(&client.subject))
    {
        h.insert(HeaderName::from_static(CLIENT_SUBJECT), v);
    }
    req
}

fn bad_gateway() -> Response<http_body::Empty> {
    let mut r = Response::new(http_body::Empty);
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}

/// Serves HTTP/1.1 on the client's stream until it closes, fails, or idles for `idle`.
pub async fn serve<S>(
    stream: S,
    backend: &str,
    client: Client,
    timeouts: (Duration, Duration),
    m: &crate::metrics::Metrics,
) -> Relayed
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (connect_timeout, idle) = timeouts;
    let seen = Arc::new(Seen {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        read: AtomicU64::new(0),
        written: AtomicU64::new(0),
    });
    let io = TokioIo::new(Counted { inner: stream, seen: seen.clone() });
    let upstream = Arc::new(Upstream { address: backend.to_string(), connect_timeout, sender: Mutex::new(None) });
    let backend_errors = m.backend_errors.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (upstream, client, backend_errors) = (upstream.clone(), client.clone(), backend_errors.clone());
        async move {
            match upstream.send(forwarded(req, &client)).await {
                Ok(resp) => Ok::<_, std::convert::Infallible>(resp.map(http_body::Either::Left)),
                Err(e) => {
                    backend_errors.inc();
                    tracing::debug!(error = %e, "backend request failed");
                    Ok(bad_gateway().map(http_body::Either::Right))
                }
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle)
        // Request heads above 64 KiB are refused: a client cannot hold hyper's default
        // (about 400 KB) per connection.
        .max_buf_size(64 * 1024)
        .keep_alive(true)
        .serve_connection(io, service);
    let watchdog = async {
        loop {
            let last = Duration::from_millis(seen.last_ms.load(Ordering::Relaxed));
            let quiet = seen.start.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    let ended = tokio::select! {
        r = conn => r.err().map(|e| e.to_string()),
        () = watchdog => Some("idle timeout".to_string()),
    };
    let (bytes_in, bytes_out) = (seen.read.load(Ordering::Relaxed), seen.written.load(Ordering::Relaxed));
    m.bytes.with_label_values(&["in"]).inc_by(bytes_in);
    m.bytes.with_label_values(&["out"]).inc_by(bytes_out);
    Relayed { bytes_in, bytes_out, ended }
}

/// A subject as a header value: bytes outside visible ASCII (a Chinese CN, say) and `%` are
/// percent-encoded as UTF-8, so the value is always sent and decodes to the exact subject.
pub fn header_safe(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Response bodies of our own: empty, or the backend's.
mod http_body {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use hyper::body::{Body, Frame, Incoming};

    pub struct Empty;

    impl Body for Empty {
        type Data = hyper::body::Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(None)
        }
        fn is_end_stream(&self) -> bool {
            true
        }
    }

    pub enum Either {
        Left(Incoming),
        Right(Empty),
    }

    impl Body for Either {
        type Data = hyper::body::Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            match self.get_mut() {
                Either::Left(b) => Pin::new(b).poll_frame(cx),
                Either::Right(b) => Pin::new(b).poll_frame(cx),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_cannot_claim_an_address_or_identity() {
        let req = Request::builder()
            .header("x-forwarded-for", "10.0.0.1")
            .header("X-Forwarded-Proto", "http")
            .header("x-client-subject", "CN=admin")
            .header("connection", "close")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        let out = forwarded(req, &Client { address: "192.0.2.7".into(), subject: String::new() });
        let h = out.headers();
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert!(h.get(CLIENT_SUBJECT).is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h.get("accept").unwrap(), "*/*");
        let out = forwarded(Request::new(()), &Client { address: "192.0.2.7".into(), subject: "CN=a,O=b".into() });
        assert_eq!(out.headers().get(CLIENT_SUBJECT).unwrap(), "CN=a,O=b");
        // Underscore spellings, the Forwarded family and headers named in Connection go too.
        let req = Request::builder()
            .header("X_Client_Subject", "CN=admin")
            .header("forwarded", "for=10.0.0.1")
            .header("x-real-ip", "10.0.0.1")
            .header("connection", "keep-alive, X-Secret")
            .header("x-secret", "hop")
            .body(())
            .unwrap();
        let out = forwarded(req, &Client { address: "192.0.2.7".into(), subject: String::new() });
        let names: Vec<_> = out.headers().keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(names, ["x-forwarded-for", "x-forwarded-proto"], "{names:?}");
        // A Chinese subject is sent, percent-encoded.
        let out = forwarded(Request::new(()), &Client { address: "a".into(), subject: "CN=市大数据局,O=100%".into() });
        assert_eq!(
            out.headers().get(CLIENT_SUBJECT).unwrap(),
            "CN=%E5%B8%82%E5%A4%A7%E6%95%B0%E6%8D%AE%E5%B1%80,O=100%25"
        );
    }
}
