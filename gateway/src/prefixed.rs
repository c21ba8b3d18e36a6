//! A connection whose first bytes were already read (to route it), replayed to the TLS stack;
//! while the handshake runs, the peer's end of stream is an error.
//!
//! Tongsuo's TLCP state machine answers the end of the stream, and a read error too, with "want
//! read": a client that sent part of a hello and then FIN was held until the handshake timeout
//! (2,000 of them held 89 MiB), as nothing would ever wake the handshake again. So the end is
//! recorded here ([`Prefixed::closed`]) for the handshake to stop on, and read as an error, which
//! the TLS 1.3 path ends on by itself.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Yields `prefix` first, then reads from `inner`; writes go straight to `inner`. Until
/// [`Prefixed::handshake_done`], the end of `inner` is an `UnexpectedEof` error.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
    handshaking: bool,
    closed: bool,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, at: 0, inner, handshaking: true, closed: false }
    }

    /// Whether the peer's end of the stream was read during the handshake: a handshake still
    /// waiting to read then never finishes (the server always reads the client's last flight).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// From now on the end of the stream reads as an ordinary end (zero bytes), which the relay
    /// needs to pass a half-close on.
    pub fn handshake_done(&mut self) {
        self.handshaking = false;
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
        let handshaking = self.handshaking;
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if handshaking && buf.remaining() > 0 && buf.filled().len() == before => {
                self.closed = true;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed during the handshake")))
            }
            other => other,
        }
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
        p.handshake_done();
        let mut rest = String::new();
        p.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
    }

    #[tokio::test]
    async fn the_end_during_the_handshake_is_an_error_and_after_it_an_end() {
        let inner: &[u8] = b"";
        let mut p = Prefixed::new(b"ab".to_vec(), inner);
        let mut two = [0u8; 2];
        p.read_exact(&mut two).await.unwrap();
        let mut more = [0u8; 4];
        assert!(!p.closed());
        let e = p.read(&mut more).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(p.closed());
        p.handshake_done();
        assert_eq!(p.read(&mut more).await.unwrap(), 0);
    }
}
