//! Hostile clients, one function per attack of issue 22 on the network layer, so a
//! probe can run a normal client beside each and see what it costs the others.
//!
//! Every attack comes from a loopback address of its own (`127.0.0.<source>`; Linux
//! routes all of 127/8 to the loopback device) so per-address limits treat it as another
//! client, and runs on tasks that [`Attack`] aborts when dropped (its sockets close
//! with them).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Two ListStreams bodies of 100,000 distinct JSON members (1 MiB each), in a loop.
    JsonMembers,
    /// Three 15 MiB CBOR arrays of empty arrays at once, in a loop.
    CborArrays,
    /// A JSON body of 5 million empty arrays (15 MB), in a loop.
    JsonArrays,
    /// Idle TCP connections, as many as given, to both listeners.
    IdleConnections,
    /// Connections that trickle HTTP/1.1 headers (Kinesis) or the HTTP/2 preface (gRPC)
    /// one byte a second.
    Slowloris,
    /// One gRPC connection with 80 PutRecords streams of 16 MiB messages, 8 MiB of each
    /// sent; one Kinesis h2c connection with 60 PutRecords of 12 MiB, 6 MiB sent.
    HalfSent,
}

/// A running attack; its tasks stop (and their sockets close) when it is dropped.
pub struct Attack {
    tasks: JoinSet<()>,
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Where the attacks aim.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// The gRPC listener.
    pub grpc: SocketAddr,
    /// The Kinesis listener.
    pub kinesis: SocketAddr,
}

/// Starts `kind` against `targets`; `connections` sizes the connection attacks.
pub async fn start(kind: Kind, targets: Targets, connections: usize) -> Result<Attack> {
    let mut tasks = JoinSet::new();
    match kind {
        Kind::JsonMembers => {
            let body = Bytes::from(json_members(100_000));
            for _ in 0..2 {
                tasks.spawn(kinesis_loop(
                    targets.kinesis,
                    "ListStreams",
                    JSON,
                    body.clone(),
                ));
            }
        }
        Kind::CborArrays => {
            let body = Bytes::from(cbor_empty_arrays(15 << 20));
            for _ in 0..3 {
                tasks.spawn(kinesis_loop(
                    targets.kinesis,
                    "PutRecords",
                    CBOR,
                    body.clone(),
                ));
            }
        }
        Kind::JsonArrays => {
            let body = Bytes::from(json_empty_arrays(5_000_000));
            tasks.spawn(kinesis_loop(targets.kinesis, "PutRecords", JSON, body));
        }
        Kind::IdleConnections => {
            let held = idle_connections(targets, connections).await;
            tasks.spawn(async move {
                let _held = held;
                std::future::pending::<()>().await;
            });
        }
        Kind::Slowloris => {
            for i in 0..connections {
                let (addr, bytes): (SocketAddr, &'static [u8]) = if i % 2 == 0 {
                    (targets.kinesis, SLOW_HEADERS)
                } else {
                    (targets.grpc, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                };
                tasks.spawn(trickle(addr, bytes));
            }
        }
        Kind::HalfSent => {
            let grpc = half_sent_grpc(targets.grpc, 80, 16 << 20, 8 << 20).await?;
            let kinesis = half_sent_kinesis(targets.kinesis, 60, 12 << 20, 6 << 20).await?;
            tasks.spawn(async move {
                let _held = (grpc, kinesis);
                std::future::pending::<()>().await;
            });
        }
    }
    Ok(Attack { tasks })
}

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
/// The attacker's address.
const SOURCE: u8 = 2;
const SLOW_HEADERS: &[u8] = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A connection from `127.0.0.<source>` to `addr`.
pub async fn connect_from(source: u8, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, source], 0)))?;
    socket.connect(addr).await
}

/// A JSON object of `n` distinct members.
pub fn json_members(n: usize) -> Vec<u8> {
    let members: Vec<String> = (0..n).map(|i| format!("\"k{i:06}\":0")).collect();
    format!("{{{}}}", members.join(",")).into_bytes()
}

/// A CBOR array of `n` empty arrays (one byte each).
pub fn cbor_empty_arrays(n: usize) -> Vec<u8> {
    let mut body = vec![0x9a];
    body.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    body.resize(5 + n, 0x80);
    body
}

/// A JSON array of `n` empty arrays.
pub fn json_empty_arrays(n: usize) -> Vec<u8> {
    format!("[{}]", vec!["[]"; n].join(",")).into_bytes()
}

/// Sends `body` as Kinesis `op` again and again, each on a new HTTP/1.1 connection,
/// reading whatever comes back.
async fn kinesis_loop(addr: SocketAddr, op: &'static str, content_type: &'static str, body: Bytes) {
    loop {
        let Ok(mut stream) = connect_from(SOURCE, addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.{op}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&body).await.is_err()
        {
            continue;
        }
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut sink)).await;
    }
}

/// Up to `n` idle connections, alternating between the listeners; the ones the server
/// closes are counted out by the caller's probe of the server, not here.
async fn idle_connections(targets: Targets, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let addr = if i % 2 == 0 {
            targets.kinesis
        } else {
            targets.grpc
        };
        match tokio::time::timeout(Duration::from_secs(2), connect_from(SOURCE, addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            // The client may run out of ports or descriptors itself; stop there.
            _ => break,
        }
    }
    held
}

/// Trickles `bytes` one a second on a connection to `addr`, reconnecting when the server
/// closes it.
async fn trickle(addr: SocketAddr, bytes: &'static [u8]) {
    loop {
        let Ok(mut stream) = connect_from(SOURCE, addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        for byte in bytes.iter().cycle() {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What keeps a half-sent attack's streams open.
pub struct HalfSent {
    _bodies: Vec<h2::SendStream<Bytes>>,
    _responses: Vec<h2::client::ResponseFuture>,
    _connection: tokio::task::JoinHandle<()>,
}

async fn h2_client(
    addr: SocketAddr,
) -> Result<(h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>)> {
    let stream = connect_from(SOURCE, addr).await.context("connecting")?;
    let (send, conn) = h2::client::handshake(stream)
        .await
        .context("HTTP/2 handshake")?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, task))
}

/// `streams` PutRecords calls on one gRPC connection, each announcing a message of
/// `message_bytes` and sending `sent` bytes of it.
pub async fn half_sent_grpc(
    addr: SocketAddr,
    streams: usize,
    message_bytes: usize,
    sent: usize,
) -> Result<HalfSent> {
    let (mut send, connection) = h2_client(addr).await?;
    let payload = Bytes::from(vec![0u8; sent]);
    let mut bodies = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..streams {
        send = send.ready().await?;
        let head = http::Request::post("http://localhost/sluice.v1.Sluice/PutRecords")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let (response, mut body) = send.send_request(head, false)?;
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&u32::try_from(message_bytes - 5)?.to_be_bytes());
        body.send_data(Bytes::from(prefix), false)?;
        body.send_data(payload.clone(), false)?;
        bodies.push(body);
        responses.push(response);
    }
    Ok(HalfSent {
        _bodies: bodies,
        _responses: responses,
        _connection: connection,
    })
}

/// `streams` Kinesis PutRecords on one h2c connection, each declaring `declared` bytes
/// and sending `sent`.
pub async fn half_sent_kinesis(
    addr: SocketAddr,
    streams: usize,
    declared: usize,
    sent: usize,
) -> Result<HalfSent> {
    let (mut send, connection) = h2_client(addr).await?;
    let payload = Bytes::from(vec![b' '; sent]);
    let mut bodies = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..streams {
        send = send.ready().await?;
        let head = http::Request::post("http://localhost/")
            .header("x-amz-target", "Kinesis_20131202.PutRecords")
            .header("content-type", JSON)
            .header("content-length", declared)
            .body(())?;
        let (response, mut body) = send.send_request(head, false)?;
        body.send_data(payload.clone(), false)?;
        bodies.push(body);
        responses.push(response);
    }
    Ok(HalfSent {
        _bodies: bodies,
        _responses: responses,
        _connection: connection,
    })
}
