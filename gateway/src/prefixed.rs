//! A connection whose first bytes were already read (to route it), replayed to the TLS stack,
//! which also tells whether the peer has closed its side.
//!
//! Tongsuo's TLCP state machine answers the end of the stream (and a read error too) with "want
//! read": a client that sent part of a hello and then FIN was held until the handshake timeout
//! (2,000 of them held 89 MiB), as nothing would ever wake the handshake again. The handshake
//! stops on [`Prefixed::closed`] instead (see `serve`).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Yields `prefix` first, then reads from `inner`; writes go straight to `inner`.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
    closed: bool,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, at: 0, inner, closed: false }
    }

    /// Whether the peer's end of the stream has been read: a handshake still waiting to read
    /// then never finishes (the server always reads the client's last flight).
    pub fn closed(&self) -> bool {
        self.closed
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.remaining() > 0 && buf.filled().len() == before {
            self.closed = true;
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replays_the_prefix_then_the_stream() {
        let inner: &[u8] = b" world";
        let mut p = Prefixed::new(b"hello".to_vec(), inner);
        let mut small = [0u8; 3];
        p.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = String::new();
        p.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }

    #[tokio::test]
    async fn the_peers_end_is_recorded_when_read() {
        let inner: &[u8] = b"";
        let mut p = Prefixed::new(b"ab".to_vec(), inner);
        let mut two = [0u8; 2];
        p.read_exact(&mut two).await.unwrap();
        assert!(!p.closed(), "the prefix is not the end");
        let mut more = [0u8; 4];
        assert_eq!(p.read(&mut more).await.unwrap(), 0);
        assert!(p.closed());
    }
}
