//! Bytes both ways between a client and its backend, until both sides have closed or neither
//! has sent anything for the idle timeout.

use std::{
    io,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

/// Bytes relayed, and how the relay ended.
#[derive(Debug, Default)]
pub struct Relayed {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ended: Option<String>,
}

struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    activity: &Activity,
    counted: &prometheus::IntCounter,
    total: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let copied = loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            break Err(e);
        }
        activity.touch();
        counted.inc_by(n as u64);
        total.fetch_add(n as u64, Ordering::Relaxed);
    };
    // However this direction ended, the other side learns it (for TLS, close_notify): after
    // EOF as a half-close, and after a reset too, since what the backend sent before it was
    // relayed in full. Backends that answer and close without reading what they were sent
    // reset rather than close, and their clients must not see a truncated session.
    let _ = to.shutdown().await;
    copied
}

/// Relays until both directions end, one fails, or the connection is idle for `idle`.
pub async fn relay<C, B>(client: C, backend: B, idle: Duration, counters: [&prometheus::IntCounter; 2]) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (cr, cw) = tokio::io::split(client);
    let (br, bw) = tokio::io::split(backend);
    let activity = Activity { start: Instant::now(), last_ms: AtomicU64::new(0) };
    let (bytes_in, bytes_out) = (AtomicU64::new(0), AtomicU64::new(0));
    // Each direction runs to its own end: a backend that closes while the client is still
    // sending fails only the client-to-backend copy, and the answer already on its way still
    // reaches the client. A backend that fails (a reset) ends the connection: nothing more
    // can come from it.
    let both = async {
        let up = pump(cr, bw, &activity, counters[0], &bytes_in);
        let down = pump(br, cw, &activity, counters[1], &bytes_out);
        tokio::pin!(up, down);
        tokio::select! {
            d = &mut down => match d {
                Err(e) => Err(e),
                Ok(()) => up.await,
            },
            u = &mut up => {
                let d = down.await;
                u.and(d)
            }
        }
    };
    let watchdog = async {
        loop {
            let quiet = activity.idle_for();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    let ended = tokio::select! {
        r = both => r.err().map(|e| e.to_string()),
        () = watchdog => Some("idle timeout".to_string()),
    };
    Relayed { bytes_in: bytes_in.into_inner(), bytes_out: bytes_out.into_inner(), ended }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_both_ways_and_half_closes() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (backend, mut backend_far) = tokio::io::duplex(64);
        let c = prometheus::IntCounter::new("c", "c").unwrap();
        let task = tokio::spawn(async move {
            let c2 = c.clone();
            relay(client, backend, Duration::from_secs(5), [&c, &c2]).await
        });
        client_far.write_all(b"ping").await.unwrap();
        client_far.shutdown().await.unwrap();
        let mut got = Vec::new();
        backend_far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        backend_far.write_all(b"pong!").await.unwrap();
        drop(backend_far);
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong!");
        let r = task.await.unwrap();
        assert_eq!((r.bytes_in, r.bytes_out, r.ended), (4, 5, None));
    }

    #[tokio::test(start_paused = true)]
    async fn ends_an_idle_connection() {
        let (client, _client_far) = tokio::io::duplex(64);
        let (backend, _backend_far) = tokio::io::duplex(64);
        let c = prometheus::IntCounter::new("c", "c").unwrap();
        let r = relay(client, backend, Duration::from_secs(30), [&c, &c]).await;
        assert_eq!(r.ended.as_deref(), Some("idle timeout"));
    }
}
