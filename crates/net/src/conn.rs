//! An accepted connection with its admission slot and two timeouts, enforced on the
//! socket itself so they hold for every protocol on it (HTTP/1.1, h2c, gRPC):
//!
//! - a new connection has `first_request` to show it is a client, however it trickles
//!   its bytes: a complete request (HTTP/1.1 headers), or the HTTP/2 client preface (the
//!   magic string and its SETTINGS frame; gRPC channels connect before their first call
//!   and may stay idle). Slow-loris connections are cut;
//! - after that, a connection on which no byte moves either way for `idle` is closed
//!   (checked each `idle`, so closed between one and two `idle`s after the last byte).
//!   A subscription sends a heartbeat every few seconds, so an open one is never idle; a
//!   client that stops reading its replies is, once the socket buffers fill.
//!
//! The timers are checked when a read or write would wait, so a connection that moves
//! bytes costs nothing extra. A timed-out connection ends with an I/O error, which the
//! HTTP server takes as the connection's end.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::gate::{Admission, Client};

/// The timeouts of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// How long a new connection has to deliver its first request.
    pub first_request: Duration,
    /// How long a connection may move no byte either way.
    pub idle: Duration,
}

/// What a request knows of its connection (a request extension on both listeners).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The peer's address's share of the caps and of the budget.
    pub client: Arc<Client>,
    started: Arc<AtomicBool>,
}

impl ConnInfo {
    /// Info for a request that came through no [`crate::Listener`] (tests).
    pub fn detached(remote: SocketAddr) -> ConnInfo {
        ConnInfo {
            remote,
            client: Client::detached(remote.ip()),
            started: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Marks the connection's first request as arrived (the service layers call this).
    pub fn request_arrived(&self) {
        self.started.store(true, Ordering::Release);
    }

    fn has_request(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }
}

/// A socket with its admission and timeouts.
#[derive(Debug)]
pub struct Conn<T> {
    io: T,
    info: ConnInfo,
    timeouts: ConnTimeouts,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer runs for the first request (else for idleness).
    awaiting_first: bool,
    /// The HTTP/2 client preface, as far as it has arrived.
    preface: Preface,
    /// Whether a byte moved since the timer was last armed.
    moved: bool,
    _admission: Admission,
}

impl<T> Conn<T> {
    /// Wraps an accepted socket that holds `admission`.
    pub fn new(io: T, remote: SocketAddr, admission: Admission, timeouts: ConnTimeouts) -> Self {
        let info = ConnInfo {
            remote,
            client: admission.client().clone(),
            started: Arc::new(AtomicBool::new(false)),
        };
        Conn {
            io,
            info,
            timeouts,
            timer: Box::pin(tokio::time::sleep(timeouts.first_request)),
            awaiting_first: true,
            preface: Preface::default(),
            moved: false,
            _admission: admission,
        }
    }

    /// What requests on this connection are told of it.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// The socket.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Called when a read or write would wait: ends the connection once a timeout has
    /// passed, else makes sure the task is woken when the next one may.
    fn poll_timeouts(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if std::mem::take(&mut self.awaiting_first) {
                if !self.info.has_request() {
                    return Poll::Ready(timed_out("no request within the first-request timeout"));
                }
                // Idleness is counted from here.
                self.moved = true;
            }
            if !std::mem::take(&mut self.moved) {
                return Poll::Ready(timed_out("idle past the idle timeout"));
            }
            let next = Instant::now() + self.timeouts.idle;
            self.timer.as_mut().reset(next);
        }
    }
}

/// The HTTP/2 client preface: the magic string, then a SETTINGS frame.
const H2_MAGIC: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A frame header: length (24 bits), type, flags, stream id (32 bits).
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_TYPE_SETTINGS: u8 = 4;

/// Follows the first bytes of a connection for a complete HTTP/2 client preface.
#[derive(Debug, Default)]
struct Preface {
    /// The magic and the frame header, as far as they have come.
    head: Vec<u8>,
    /// Bytes of the SETTINGS payload still to come, once its header is in.
    payload_left: Option<usize>,
    /// Not HTTP/2 (or already complete): stop looking.
    done: bool,
}

impl Preface {
    /// Reads `data`; true when it completes the preface.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        let head_len = H2_MAGIC.len() + FRAME_HEADER_BYTES;
        while !self.done && !data.is_empty() {
            if let Some(left) = &mut self.payload_left {
                let n = (*left).min(data.len());
                *left -= n;
                data = &data[n..];
                if *left == 0 {
                    self.done = true;
                    return true;
                }
                continue;
            }
            let n = (head_len - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
            let magic_len = self.head.len().min(H2_MAGIC.len());
            if self.head[..magic_len] != H2_MAGIC[..magic_len] {
                self.done = true;
                return false;
            }
            if self.head.len() == head_len {
                let frame = &self.head[H2_MAGIC.len()..];
                if frame[3] != FRAME_TYPE_SETTINGS {
                    self.done = true;
                    return false;
                }
                let len = usize::from(frame[0]) << 16
                    | usize::from(frame[1]) << 8
                    | usize::from(frame[2]);
                if len == 0 {
                    self.done = true;
                    return true;
                }
                self.payload_left = Some(len);
            }
        }
        false
    }
}

fn timed_out(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                this.moved |= !read.is_empty();
                if this.awaiting_first && this.preface.feed(read) {
                    this.info.request_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_timeouts(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.moved |= n > 0;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_timeouts(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.moved |= n > 0;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_timeouts(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn<tokio::net::TcpStream> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::Gate;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn conn(io: tokio::io::DuplexStream, gate: &Gate) -> Conn<tokio::io::DuplexStream> {
        let remote = SocketAddr::from(([127, 0, 0, 2], 4000));
        let admission = gate.admit(remote.ip()).unwrap();
        Conn::new(
            io,
            remote,
            admission,
            ConnTimeouts {
                first_request: Duration::from_secs(10),
                idle: Duration::from_secs(60),
            },
        )
    }

    // The clock is paused: time moves only when every task waits, so these tests do not
    // depend on how fast the machine is.

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_ends_at_the_first_request_timeout() {
        let gate = Gate::new(10, 10);
        let (mut peer, io) = tokio::io::duplex(64);
        let mut conn = conn(io, &gate);
        let started = Instant::now();
        // Bytes trickle in, but no request is ever complete.
        let trickle = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if peer.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 16];
        let error = loop {
            match conn.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        drop(conn);
        assert_eq!(gate.open(), 0);
        trickle.abort();
    }

    #[test]
    fn the_http2_preface_is_complete_with_its_settings_frame() {
        let mut preface = H2_MAGIC.to_vec();
        preface.extend_from_slice(&[0, 0, 6, FRAME_TYPE_SETTINGS, 0, 0, 0, 0, 0]);
        preface.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        for split in 1..preface.len() {
            let mut p = Preface::default();
            let complete: Vec<bool> = preface.chunks(split).map(|c| p.feed(c)).collect();
            assert_eq!(complete.iter().filter(|&&c| c).count(), 1, "split {split}");
            assert!(complete.last().copied().unwrap_or(false), "split {split}");
        }
        let mut p = Preface::default();
        assert!(!p.feed(b"POST / HTTP/1.1\r\n"));
        assert!(!p.feed(&preface));
        let mut magic_only = Preface::default();
        assert!(!magic_only.feed(H2_MAGIC));
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_client_that_connects_early_is_held_to_the_idle_timeout() {
        let gate = Gate::new(10, 10);
        let (mut peer, io) = tokio::io::duplex(256);
        let mut conn = conn(io, &gate);
        let started = Instant::now();
        let mut preface = H2_MAGIC.to_vec();
        preface.extend_from_slice(&[0, 0, 0, FRAME_TYPE_SETTINGS, 0, 0, 0, 0, 0]);
        peer.write_all(&preface).await.unwrap();
        let mut buf = [0u8; 64];
        let error = loop {
            match conn.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // Not cut at the first-request timeout (10 s) but after a silent idle period.
        assert_eq!(started.elapsed(), Duration::from_secs(10 + 60));
        drop(peer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_lives_while_bytes_move_and_ends_when_they_stop() {
        let gate = Gate::new(10, 10);
        let (mut peer, io) = tokio::io::duplex(64);
        let mut conn = conn(io, &gate);
        conn.info().request_arrived();
        let started = Instant::now();
        let talk = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(45)).await;
                peer.write_all(b"x").await.unwrap();
            }
            // Then silence, with the peer still connected.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(peer);
        });
        let mut buf = [0u8; 16];
        let mut got = 0;
        let error = loop {
            match conn.read(&mut buf).await {
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        assert_eq!(got, 5);
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // The last byte came at 225 s; the timer is checked each 60 s from 10 s on, and
        // ends the connection at its first check with no byte since the one before.
        let ended = started.elapsed();
        assert!(
            ended > Duration::from_secs(285) && ended <= Duration::from_secs(345),
            "{ended:?}"
        );
        talk.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_ends_the_connection() {
        let gate = Gate::new(10, 10);
        let (_peer, io) = tokio::io::duplex(64);
        let mut conn = conn(io, &gate);
        conn.info().request_arrived();
        let error = loop {
            if let Err(e) = conn.write_all(&[0u8; 1024]).await {
                break e;
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
