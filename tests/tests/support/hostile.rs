//! Clients that misbehave on purpose, and probes of the server process, for the tests of
//! the network limits: connections from other loopback addresses (127.0.0.2, 127.0.0.3:
//! Linux routes all of 127/8 to the loopback device, so a test can play several client
//! addresses while talking only to 127.0.0.1), HTTP/1.1 requests sent in part, raw
//! HTTP/2 gRPC calls whose bodies stop half way, and the server's memory from `/proc`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from the loopback address `127.0.0.<source>`.
pub async fn connect_from(source: u8, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, source], 0)))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

/// A Kinesis request's head (and `body`), declaring `content_length` bytes.
pub fn kinesis_bytes(op: &str, content_type: &str, body: &[u8], content_length: usize) -> Vec<u8> {
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.{op}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A Kinesis reply: the HTTP status, the error type header and the body as text.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// `x-amzn-ErrorType`, on errors.
    pub error_type: Option<String>,
    /// The body (JSON for JSON requests, CBOR shown lossily for CBOR ones).
    pub body: String,
}

impl Reply {
    /// The `__type` of an error reply.
    pub fn kind(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        v["__type"].as_str().unwrap_or("").to_owned()
    }

    /// The `message` of an error reply.
    pub fn message(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        v["message"].as_str().unwrap_or("").to_owned()
    }
}

/// One Kinesis call over a new HTTP/1.1 connection from `127.0.0.<source>`.
pub async fn kinesis_call(
    addr: SocketAddr,
    source: u8,
    op: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    let stream = connect_from(source, addr).await;
    kinesis_call_on(stream, op, content_type, body).await
}

/// One Kinesis call over `stream` (HTTP/1.1).
pub async fn kinesis_call_on(
    stream: TcpStream,
    op: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Reply {
    tokio::time::timeout(
        Duration::from_secs(60),
        try_kinesis_call_on(stream, op, content_type, body),
    )
    .await
    .expect("no reply within 60 s")
    .expect("the connection failed")
}

/// [`kinesis_call_on`], or `None` if the connection fails (closed by the server).
pub async fn try_kinesis_call_on(
    stream: TcpStream,
    op: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Option<Reply> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let request = Request::post("/")
        .header("host", "localhost")
        .header("x-amz-target", format!("Kinesis_20131202.{op}"))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let response = send.send_request(request).await.ok()?;
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some(Reply {
        status,
        error_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends a Kinesis request head that declares `content_length` bytes and no body from
/// `127.0.0.<source>`, and returns everything the server answers before it closes (a
/// refusal made on the declared length alone).
pub async fn kinesis_head_only(
    addr: SocketAddr,
    source: u8,
    op: &str,
    content_length: usize,
) -> String {
    let mut stream = connect_from(source, addr).await;
    let head = kinesis_bytes(op, "application/x-amz-json-1.1", b"", content_length);
    stream.write_all(&head).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), read).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the server closes `stream` (end of file or reset) within `bound`, reading and
/// dropping whatever it sends meanwhile.
pub async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_to_end).await.is_ok()
}

/// Sends `bytes` one at a time, `every` apart, until the server closes the connection
/// or `bound` passes; returns whether the server closed it.
pub async fn trickle_until_closed(
    stream: &mut TcpStream,
    bytes: &[u8],
    every: Duration,
    bound: Duration,
) -> bool {
    let trickle = async {
        for byte in bytes.iter().cycle() {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            let mut probe = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(every, stream.read(&mut probe)).await {
                return;
            }
        }
    };
    tokio::time::timeout(bound, trickle).await.is_ok()
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// An HTTP/2 client connection (h2c, prior knowledge) from `127.0.0.<source>`; the
/// connection is driven by a task of its own.
pub async fn h2_connect(addr: SocketAddr, source: u8) -> (h2::client::SendRequest<Bytes>, H2Conn) {
    let stream = connect_from(source, addr).await;
    let (send, conn) = h2::client::handshake(stream).await.unwrap();
    (send, H2Conn(conn))
}

/// The connection half of [`h2_connect`].
pub struct H2Conn(pub h2::client::Connection<TcpStream, Bytes>);

impl H2Conn {
    /// Drives the connection on a task until the server closes it; the task's result
    /// says when that happened.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = self.0.await;
        })
    }
}

/// The head of a gRPC call to `method` of `sluice.v1.Sluice`.
pub fn grpc_head(method: &str) -> Request<()> {
    Request::post(format!("http://localhost/sluice.v1.Sluice/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// A gRPC message prefix (uncompressed) announcing `len` bytes.
pub fn grpc_prefix(len: usize) -> Bytes {
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    Bytes::from(prefix)
}

/// How a raw gRPC call ended: its `grpc-status` and `x-sluice-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcEnd {
    /// `grpc-status`.
    pub code: u32,
    /// `x-sluice-error`.
    pub reason: Option<String>,
}

/// Waits for the end of a raw gRPC call (trailers-only, or headers then trailers).
pub async fn grpc_end(response: h2::client::ResponseFuture) -> GrpcEnd {
    let response = response.await.unwrap();
    let read = |map: &hyper::HeaderMap| {
        let code = map.get("grpc-status")?.to_str().ok()?.parse::<u32>().ok()?;
        let reason = map
            .get("x-sluice-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some(GrpcEnd { code, reason })
    };
    if let Some(end) = read(response.headers()) {
        return end;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    read(&trailers).expect("grpc-status in the trailers")
}
