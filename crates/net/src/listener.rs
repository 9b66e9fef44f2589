//! The accept loop of both listeners.
//!
//! Every accepted socket is admitted by the [`Gate`] or closed at once: past a cap the
//! client sees its connection closed before any reply, and retries later. When `accept`
//! itself fails for want of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the
//! pending connection stays in the kernel's backlog and the next `accept` would fail the
//! same way at once: the loop backs off (10 ms, doubling to 1 s) instead of spinning, and
//! says so in the log at most once a second.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::net::{TcpListener, TcpStream};

use crate::conn::{Conn, ConnInfo, ConnTimeouts};
use crate::gate::{Gate, Refused};

const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// A bound listener with its gate and connection timeouts.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    gate: Gate,
    timeouts: ConnTimeouts,
    name: &'static str,
    refusals: LogLimiter,
    failures: LogLimiter,
}

impl Listener {
    /// Serves connections accepted on `tcp` (named `name` in the log: `grpc`, `kinesis`).
    pub fn new(tcp: TcpListener, gate: Gate, timeouts: ConnTimeouts, name: &'static str) -> Self {
        Listener {
            tcp,
            gate,
            timeouts,
            name,
            refusals: LogLimiter::default(),
            failures: LogLimiter::default(),
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next admitted connection. Never fails: refusals and errors are handled here.
    pub async fn accept(&self) -> (Conn<TcpStream>, ConnInfo) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            match self.tcp.accept().await {
                Ok((stream, remote)) => match self.gate.admit(remote.ip()) {
                    Ok(admission) => {
                        // Small replies must not wait for the client's delayed ACK (Nagle:
                        // up to 40 ms).
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                        }
                        let conn = Conn::new(stream, remote, admission, self.timeouts);
                        let info = conn.info().clone();
                        return (conn, info);
                    }
                    Err(why) => {
                        self.refused(remote, why);
                        drop(stream);
                    }
                },
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    if let Some(suppressed) = self.failures.allow() {
                        tracing::warn!(
                            listener = self.name,
                            error = %e,
                            retry_ms = backoff.as_millis() as u64,
                            suppressed,
                            "cannot accept connections"
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// The admitted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(
        self,
    ) -> impl Stream<Item = Result<Conn<TcpStream>, std::convert::Infallible>> + Send {
        futures_util::stream::unfold(self, |listener| async move {
            let (conn, _) = listener.accept().await;
            Some((Ok(conn), listener))
        })
    }

    fn refused(&self, remote: SocketAddr, why: Refused) {
        if let Some(suppressed) = self.refusals.allow() {
            let cap = match why {
                Refused::Total => "network.connections_max",
                Refused::PerClient => "network.connections_per_client_max",
            };
            tracing::warn!(
                listener = self.name,
                client = %remote.ip(),
                cap,
                open = self.gate.open(),
                suppressed,
                "connection refused: at its cap"
            );
        }
    }
}

/// Errors of one pending connection (it was reset before it was accepted): the next
/// `accept` is fine.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Lets one log line through per [`LOG_EVERY`], counting the ones it holds back.
#[derive(Debug, Default)]
struct LogLimiter {
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimiter {
    /// `Some(lines held back since the last one)` if a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < LOG_EVERY => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn timeouts() -> ConnTimeouts {
        ConnTimeouts {
            first_request: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_the_slot_comes_back() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let gate = Gate::new(2, 2);
        let listener = Listener::new(tcp, gate.clone(), timeouts(), "test");
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let first = listener.accept().await;
        let second = listener.accept().await;
        assert_eq!(gate.open(), 2);
        // The third is accepted and closed while `accept` waits for a fourth.
        let fourth = tokio::spawn(async move {
            let next = listener.accept().await;
            (listener, next)
        });
        let mut buf = [0u8; 1];
        assert_eq!(clients[2].read(&mut buf).await.unwrap(), 0);
        drop(first);
        let _late = TcpStream::connect(addr).await.unwrap();
        let (_listener, (_conn, info)) = fourth.await.unwrap();
        assert_eq!(info.remote.ip(), addr.ip());
        assert_eq!(gate.open(), 2);
        drop(second);
    }

    #[test]
    fn the_log_limiter_counts_what_it_holds_back() {
        let limiter = LogLimiter::default();
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        limiter.state.lock().unwrap().0 = Some(Instant::now() - LOG_EVERY);
        assert_eq!(limiter.allow(), Some(2));
    }
}
