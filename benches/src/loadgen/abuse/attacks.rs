//! The hostile clients of `sluice-bench --mode abuse`, one function per attack of issue 22.
//! Each talks only to the loopback listeners it is given, sends bodies of bounded size, and
//! returns once the phase's deadline has passed and every connection it opened is closed.
//! What the server did with each request or connection is counted in a [`Tally`]: a refusal
//! or a disconnect is an expected answer to an attack, never a failure of the bench.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_client::SluiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tonic::transport::Endpoint;

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
/// How long one hostile connect may take (a full accept backlog drops SYNs silently).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a set-up call (DescribeStreamSummary, RegisterStreamConsumer) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a slowloris connection sends its next byte.
const SLOW_BYTE_INTERVAL: Duration = Duration::from_millis(200);
/// The data frames of a half-sent HTTP/2 upload.
const H2_CHUNK_BYTES: usize = 64 * 1024;
/// At the phase's end, how long a held subscription is read to see whether the server
/// had already ended it (it is still held if it has not ended by then).
const END_CHECK: Duration = Duration::from_millis(500);
/// Stalled gRPC subscriptions per HTTP/2 connection.
const SUBS_PER_CONNECTION: usize = 25;
/// The receive windows of a stalled subscriber: small, so the server, not this client,
/// is left holding what the subscriber does not read.
const STALLED_WINDOW_BYTES: u32 = 64 * 1024;
/// The start of an HTTP/1.1 request whose last header never ends.
const SLOW_HTTP1: &[u8] =
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nX-Slow: ";
/// The HTTP/2 client preface and the header of a SETTINGS frame of 16,380 bytes (a multiple
/// of 6, as SETTINGS must be) whose payload then trickles in.
const SLOW_H2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x3f\xfc\x04\x00\x00\x00\x00\x00";

/// The listeners under attack, as `host:port`.
#[derive(Debug, Clone)]
pub struct Ports {
    /// The Kinesis HTTP listener.
    pub kinesis: String,
    /// The gRPC listener.
    pub grpc: String,
    /// The address hostile connections come from: another loopback address than the normal
    /// clients', so that limits per client address can tell them apart.
    pub source: IpAddr,
}

impl Ports {
    /// Alternates between the two listeners.
    fn pick(&self, i: usize) -> &str {
        if i % 2 == 0 {
            &self.kinesis
        } else {
            &self.grpc
        }
    }
}

/// What the server did with one kind of hostile request or connection.
#[derive(Default)]
pub struct Tally {
    attempts: AtomicU64,
    ok: AtomicU64,
    held: AtomicU64,
    refused: AtomicU64,
    disconnected: AtomicU64,
    connect_failed: AtomicU64,
    bytes_sent: AtomicU64,
    statuses: Mutex<BTreeMap<String, u64>>,
}

/// One hostile request's or connection's end.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Answered with success.
    Ok,
    /// Still open (unanswered, not closed) when the phase ended.
    Held,
    /// The server closed or reset the connection or stream.
    Disconnected,
    /// The connection could not be made.
    ConnectFailed,
}

impl Tally {
    fn attempt(&self) {
        self.attempts.fetch_add(1, Relaxed);
    }

    fn note(&self, end: End) {
        let counter = match end {
            End::Ok => &self.ok,
            End::Held => &self.held,
            End::Disconnected => &self.disconnected,
            End::ConnectFailed => &self.connect_failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Answered with an error: `status` is the HTTP status or the gRPC code.
    fn refused(&self, status: String) {
        self.refused.fetch_add(1, Relaxed);
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(status).or_default() += 1;
        }
    }

    /// How a held Subscribe stream was found when the phase ended (see `drain_grpc`).
    fn note_grpc_end(&self, drained: Result<Option<tonic::Status>, tokio::time::error::Elapsed>) {
        match drained {
            Err(_) => self.note(End::Held),
            Ok(None) => self.note(End::Disconnected),
            Ok(Some(s)) => self.refused(format!("grpc {:?}", s.code())),
        }
    }

    fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Relaxed);
    }

    /// Connections or requests refused or disconnected by the server.
    pub fn pushed_back(&self) -> u64 {
        self.refused.load(Relaxed) + self.disconnected.load(Relaxed)
    }

    /// The counts as a JSON object.
    pub fn json(&self) -> Value {
        let statuses = self.statuses.lock().map(|s| s.clone()).unwrap_or_default();
        json!({
            "attempts": self.attempts.load(Relaxed),
            "ok": self.ok.load(Relaxed),
            "held": self.held.load(Relaxed),
            "refused": self.refused.load(Relaxed),
            "disconnected": self.disconnected.load(Relaxed),
            "connect_failed": self.connect_failed.load(Relaxed),
            "bytes_sent": self.bytes_sent.load(Relaxed),
            "statuses": statuses,
        })
    }
}

/// A named tally, as the attacks return them.
pub type Tallies = Vec<(String, Arc<Tally>)>;

/// `named` as [`Tallies`].
fn tallies<const N: usize>(named: [(&str, Arc<Tally>); N]) -> Tallies {
    named
        .into_iter()
        .map(|(name, tally)| (name.to_owned(), tally))
        .collect()
}

/// A JSON object of `keys` distinct members (`{"k0":0,"k1":0,...}`; 100,000 make ~1 MiB).
pub fn json_keys_body(keys: usize) -> Bytes {
    let mut s = String::with_capacity(keys * 11 + 2);
    s.push('{');
    for i in 0..keys {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"k{i}\":0"));
    }
    s.push('}');
    Bytes::from(s)
}

/// A CBOR map `{"x": [[], [], ...]}` of about `bytes` bytes: one byte per empty array.
pub fn cbor_empty_items_body(bytes: usize) -> Bytes {
    let head = [0xa1, 0x61, b'x', 0x9a];
    let items = bytes.saturating_sub(head.len() + 4).max(1);
    let count = u32::try_from(items).unwrap_or(u32::MAX);
    let mut b = Vec::with_capacity(head.len() + 4 + count as usize);
    b.extend_from_slice(&head);
    b.extend_from_slice(&count.to_be_bytes());
    b.resize(b.len() + count as usize, 0x80);
    Bytes::from(b)
}

/// A JSON object `{"x":[[],[],...]}` of about `bytes` bytes: three bytes per empty array.
pub fn json_empty_arrays_body(bytes: usize) -> Bytes {
    let items = (bytes.saturating_sub(7) / 3).max(1);
    let mut b = Vec::with_capacity(items * 3 + 7);
    b.extend_from_slice(b"{\"x\":[");
    for i in 0..items {
        b.extend_from_slice(if i == 0 { b"[]" } else { b",[]" });
    }
    b.extend_from_slice(b"]}");
    Bytes::from(b)
}

/// `concurrency` workers POST the `bodies` (content type, body, tally) to the Kinesis
/// listener as ListStreams, each on a new connection, in turn, until `deadline`.
pub async fn flood(
    addr: &str,
    source: IpAddr,
    bodies: Vec<(&'static str, Bytes, Arc<Tally>)>,
    concurrency: usize,
    deadline: Instant,
) {
    let bodies = Arc::new(bodies);
    let mut set = JoinSet::new();
    for w in 0..concurrency.max(1) {
        let (addr, bodies) = (addr.to_owned(), bodies.clone());
        set.spawn(async move {
            let mut k = w;
            while Instant::now() < deadline {
                let (content_type, body, tally) = &bodies[k % bodies.len()];
                post_once(&addr, source, content_type, body.clone(), tally, deadline).await;
                k += 1;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The JSON bodies of issue 22 item 1: objects with many distinct keys.
pub async fn json_keys(
    ports: &Ports,
    keys: usize,
    concurrency: usize,
    deadline: Instant,
) -> Tallies {
    let tally = Arc::new(Tally::default());
    let bodies = vec![(JSON, json_keys_body(keys), tally.clone())];
    flood(&ports.kinesis, ports.source, bodies, concurrency, deadline).await;
    tallies([("json-keys", tally)])
}

/// Item 2: small bodies that decode into huge trees (CBOR and JSON, alternating).
pub async fn amplify(
    ports: &Ports,
    bytes: usize,
    concurrency: usize,
    deadline: Instant,
) -> Tallies {
    let (cbor, json) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let bodies = vec![
        (CBOR, cbor_empty_items_body(bytes), cbor.clone()),
        (JSON, json_empty_arrays_body(bytes), json.clone()),
    ];
    flood(&ports.kinesis, ports.source, bodies, concurrency, deadline).await;
    tallies([("cbor-items", cbor), ("json-arrays", json)])
}

/// One POST of `body` on a new HTTP/1.1 connection, waiting for the status until `deadline`.
async fn post_once(
    addr: &str,
    source: IpAddr,
    content_type: &'static str,
    body: Bytes,
    tally: &Tally,
    deadline: Instant,
) {
    tally.attempt();
    let Some(tcp) = connect(addr, source, deadline).await else {
        tally.note(End::ConnectFailed);
        // Refused at once: do not spin.
        sleep(Duration::from_millis(10)).await;
        return;
    };
    let len = body.len() as u64;
    match timeout_at(
        deadline,
        http1_post(tcp, addr, "ListStreams", content_type, body),
    )
    .await
    {
        Err(_) => tally.note(End::Held),
        Ok(Err(_)) => tally.note(End::Disconnected),
        Ok(Ok((status, _))) if status.is_success() => tally.note(End::Ok),
        Ok(Ok((status, _))) => tally.refused(status.as_u16().to_string()),
    }
    tally.sent(len);
}

/// A task aborted when this is dropped (the connection driver of a hostile request).
struct Aborting<T>(JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to `addr` from `source`, giving up after [`CONNECT_TIMEOUT`] or at `deadline`.
async fn connect(addr: &str, source: IpAddr, deadline: Instant) -> Option<TcpStream> {
    let until = deadline.min(Instant::now() + CONNECT_TIMEOUT);
    let socket = bound_socket(source).ok()?;
    let addr: SocketAddr = addr.parse().ok()?;
    timeout_at(until, socket.connect(addr)).await.ok()?.ok()
}

/// A TCP socket bound to `source` (port chosen by the kernel).
fn bound_socket(source: IpAddr) -> std::io::Result<TcpSocket> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket)
}

/// POSTs a Kinesis operation over HTTP/1.1 on `tcp`; returns the status and the body.
async fn http1_post(
    tcp: TcpStream,
    addr: &str,
    op: &str,
    content_type: &str,
    body: Bytes,
) -> Result<(hyper::StatusCode, Bytes)> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let _conn = Aborting(tokio::spawn(conn));
    let req = hyper::Request::post("/")
        .header("host", addr)
        .header("content-type", content_type)
        .header("x-amz-target", format!("Kinesis_20131202.{op}"))
        .body(Full::new(body))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// A Kinesis JSON call for set-up; an error status is an error.
pub async fn kinesis_call(addr: &str, op: &str, body: &Value) -> Result<Value> {
    let call = async {
        let tcp = TcpStream::connect(addr).await?;
        http1_post(tcp, addr, op, JSON, Bytes::from(body.to_string())).await
    };
    let (status, reply) = timeout(SETUP_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("{op}: no answer in {SETUP_TIMEOUT:?}"))??;
    if !status.is_success() {
        bail!("{op}: {status} {}", String::from_utf8_lossy(&reply));
    }
    serde_json::from_slice(&reply).with_context(|| format!("{op}: the reply is not JSON"))
}

/// Item 3: `idle` connections that never send a byte, and `slow` connections that send
/// their request headers a byte at a time, alternating between the two listeners.
pub async fn connections(ports: &Ports, idle: usize, slow: usize, deadline: Instant) -> Tallies {
    let (idle_t, slow_t) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut set = JoinSet::new();
    for i in 0..idle + slow {
        if Instant::now() >= deadline {
            break;
        }
        let (addr, is_slow) = (ports.pick(i), i >= idle);
        let tally = if is_slow {
            slow_t.clone()
        } else {
            idle_t.clone()
        };
        tally.attempt();
        let Some(tcp) = connect(addr, ports.source, deadline).await else {
            tally.note(End::ConnectFailed);
            continue;
        };
        let pattern = match (is_slow, addr == ports.kinesis) {
            (false, _) => None,
            (true, true) => Some(SLOW_HTTP1),
            (true, false) => Some(SLOW_H2),
        };
        set.spawn(hold(tcp, pattern, tally, deadline));
    }
    while set.join_next().await.is_some() {}
    tallies([("idle", idle_t), ("slowloris", slow_t)])
}

/// Keeps `tcp` open until `deadline`, sending `pattern` (then `a`s) a byte at a time if
/// given, and notes whether the server closed it first.
async fn hold(
    mut tcp: TcpStream,
    pattern: Option<&'static [u8]>,
    tally: Arc<Tally>,
    deadline: Instant,
) {
    let mut buf = [0u8; 1024];
    let mut next = 0usize;
    let mut tick = tokio::time::interval(SLOW_BYTE_INTERVAL);
    loop {
        tokio::select! {
            () = sleep_until(deadline) => return tally.note(End::Held),
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => return tally.note(End::Disconnected),
                Ok(_) => {}
            },
            _ = tick.tick(), if pattern.is_some() => {
                let byte = pattern.and_then(|p| p.get(next)).copied().unwrap_or(b'a');
                next += 1;
                if tcp.write_all(&[byte]).await.is_err() {
                    return tally.note(End::Disconnected);
                }
                tally.sent(1);
            }
        }
    }
}

/// Item 4: on one HTTP/2 connection per listener (h2c with prior knowledge), `streams`
/// uploads that each announce `body_bytes`, send half of it and stall.
pub async fn half_uploads(
    ports: &Ports,
    streams: usize,
    body_bytes: usize,
    deadline: Instant,
) -> Tallies {
    let (k, g) = tokio::join!(
        h2_half_uploads(
            &ports.kinesis,
            ports.source,
            false,
            streams,
            body_bytes,
            deadline
        ),
        h2_half_uploads(
            &ports.grpc,
            ports.source,
            true,
            streams,
            body_bytes,
            deadline
        ),
    );
    tallies([("h2-kinesis", k), ("h2-grpc", g)])
}

async fn h2_half_uploads(
    addr: &str,
    source: IpAddr,
    grpc: bool,
    streams: usize,
    body_bytes: usize,
    deadline: Instant,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let Some(tcp) = connect(addr, source, deadline).await else {
        tally.attempt();
        tally.note(End::ConnectFailed);
        return tally;
    };
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, HalfBody>(TokioIo::new(tcp))
        .await;
    let Ok((send, conn)) = handshake else {
        tally.attempt();
        tally.note(End::Disconnected);
        return tally;
    };
    let _conn = Aborting(tokio::spawn(conn));
    let chunk = Bytes::from(vec![0u8; H2_CHUNK_BYTES]);
    let mut set = JoinSet::new();
    for _ in 0..streams {
        tally.attempt();
        let Ok(req) = half_request(addr, grpc, body_bytes, chunk.clone(), tally.clone()) else {
            continue;
        };
        let (mut send, tally) = (send.clone(), tally.clone());
        set.spawn(async move {
            match timeout_at(deadline, send.send_request(req)).await {
                Err(_) => tally.note(End::Held),
                Ok(Err(_)) => tally.note(End::Disconnected),
                Ok(Ok(resp)) => note_h2_answer(&tally, &resp),
            }
        });
    }
    while set.join_next().await.is_some() {}
    tally
}

/// A Kinesis PutRecords (JSON) or a gRPC PutRecords whose body is cut in half.
fn half_request(
    addr: &str,
    grpc: bool,
    body_bytes: usize,
    chunk: Bytes,
    tally: Arc<Tally>,
) -> Result<hyper::Request<HalfBody>> {
    let half = (body_bytes / 2) as u64;
    let req = if grpc {
        let message = u32::try_from(body_bytes.saturating_sub(5)).unwrap_or(u32::MAX);
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&message.to_be_bytes());
        hyper::Request::post(format!("http://{addr}/sluice.v1.Sluice/PutRecords"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(HalfBody::new(Some(Bytes::from(prefix)), half, chunk, tally))?
    } else {
        hyper::Request::post(format!("http://{addr}/"))
            .header("content-type", JSON)
            .header("content-length", body_bytes)
            .header("x-amz-target", "Kinesis_20131202.PutRecords")
            .body(HalfBody::new(None, half, chunk, tally))?
    };
    Ok(req)
}

fn note_h2_answer<B>(tally: &Tally, resp: &hyper::Response<B>) {
    let grpc_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok());
    match grpc_status {
        Some(code) if code != "0" => tally.refused(format!("grpc {code}")),
        _ if !resp.status().is_success() => tally.refused(resp.status().as_u16().to_string()),
        _ => tally.note(End::Ok),
    }
}

/// A request body that sends an optional prefix and `left` bytes, then never ends.
pub struct HalfBody {
    prefix: Option<Bytes>,
    left: u64,
    chunk: Bytes,
    tally: Arc<Tally>,
}

impl HalfBody {
    fn new(prefix: Option<Bytes>, left: u64, chunk: Bytes, tally: Arc<Tally>) -> HalfBody {
        HalfBody {
            prefix,
            left,
            chunk,
            tally,
        }
    }
}

impl Body for HalfBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        if self.left == 0 {
            // Stalled for good: the request is dropped when the phase ends.
            return Poll::Pending;
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        self.tally.sent(n);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// Where stalled subscribers subscribe: a preloaded stream's shards and, for
/// SubscribeToShard, a registered consumer.
#[derive(Debug, Clone)]
pub struct SubscribeTarget {
    /// The gRPC endpoint, `http://host:port`.
    pub grpc_url: String,
    /// The stream.
    pub stream: String,
    /// Its shards.
    pub shards: Vec<String>,
    /// The consumer's ARN.
    pub consumer_arn: String,
}

/// Registers (or finds) consumer `name` on `stream` through the Kinesis API; its ARN.
pub async fn consumer_arn(addr: &str, stream: &str, name: &str) -> Result<String> {
    let d = kinesis_call(
        addr,
        "DescribeStreamSummary",
        &json!({"StreamName": stream}),
    )
    .await?;
    let stream_arn = d["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .ok_or_else(|| anyhow!("DescribeStreamSummary: no StreamARN"))?
        .to_owned();
    let body = json!({"StreamARN": stream_arn, "ConsumerName": name});
    let arn = match kinesis_call(addr, "RegisterStreamConsumer", &body).await {
        Ok(v) => v["Consumer"]["ConsumerARN"].as_str().map(str::to_owned),
        Err(_) => kinesis_call(addr, "DescribeStreamConsumer", &body).await?["ConsumerDescription"]
            ["ConsumerARN"]
            .as_str()
            .map(str::to_owned),
    };
    arn.ok_or_else(|| anyhow!("no ConsumerARN for consumer {name}"))
}

/// Item 7: `grpc` Subscribe streams and `kinesis` SubscribeToShard calls from
/// TRIM_HORIZON that never read what they are sent, held until `deadline`.
pub async fn stalled_subscribers(
    ports: &Ports,
    to: &SubscribeTarget,
    grpc: usize,
    kinesis: usize,
    deadline: Instant,
) -> Tallies {
    let (g, k) = tokio::join!(
        grpc_stalled(to, ports.source, grpc, deadline),
        kinesis_stalled(ports, to, kinesis, deadline),
    );
    tallies([("subscribe-grpc", g), ("subscribe-kinesis", k)])
}

async fn grpc_stalled(
    to: &SubscribeTarget,
    source: IpAddr,
    n: usize,
    deadline: Instant,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut held = Vec::new();
    for i in 0..n {
        if i % SUBS_PER_CONNECTION == 0 || held.is_empty() {
            match stalled_channel(&to.grpc_url, source, deadline).await {
                Some(c) => held.push((c, Vec::new())),
                None => {
                    tally.attempt();
                    tally.note(End::ConnectFailed);
                    continue;
                }
            }
        }
        let Some((client, streams)) = held.last_mut() else {
            continue;
        };
        tally.attempt();
        let req = pb::SubscribeRequest {
            stream_name: to.stream.clone(),
            shard_id: to.shards[i % to.shards.len().max(1)].clone(),
            starting_position: Some(pb::StartingPosition {
                r#type: pb::ShardIteratorType::TrimHorizon as i32,
                sequence_number: None,
                timestamp_ms: None,
            }),
        };
        match timeout_at(deadline, client.subscribe(req)).await {
            Ok(Ok(stream)) => streams.push(stream),
            Ok(Err(s)) => tally.refused(format!("grpc {:?}", s.code())),
            Err(_) => tally.note(End::Held),
        }
    }
    sleep_until(deadline).await;
    let mut set = JoinSet::new();
    // The channels stay open while their streams are read.
    let (channels, streams): (Vec<_>, Vec<_>) = held.into_iter().unzip();
    for stream in streams.into_iter().flatten() {
        let (stream, tally) = (stream.into_inner(), tally.clone());
        set.spawn(async move { tally.note_grpc_end(timeout(END_CHECK, drain_grpc(stream)).await) });
    }
    while set.join_next().await.is_some() {}
    drop(channels);
    tally
}

/// Reads a held Subscribe stream to its end: `None` if the server ended it cleanly, its
/// status if it ended it with an error.
async fn drain_grpc(mut stream: tonic::Streaming<pb::SubscribeEvent>) -> Option<tonic::Status> {
    loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(s) => return Some(s),
        }
    }
}

async fn stalled_channel(
    url: &str,
    source: IpAddr,
    deadline: Instant,
) -> Option<SluiceClient<tonic::transport::Channel>> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .ok()?
        .initial_stream_window_size(STALLED_WINDOW_BYTES)
        .initial_connection_window_size(STALLED_WINDOW_BYTES * 16)
        .local_address(Some(source))
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = timeout_at(deadline, endpoint.connect()).await.ok()?.ok()?;
    Some(SluiceClient::new(channel))
}

async fn kinesis_stalled(
    ports: &Ports,
    to: &SubscribeTarget,
    n: usize,
    deadline: Instant,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut held = Vec::new();
    for i in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        tally.attempt();
        let shard = &to.shards[i % to.shards.len().max(1)];
        match timeout_at(deadline, subscribe_to_shard(ports, &to.consumer_arn, shard)).await {
            Ok(Ok(Ok(tcp))) => held.push(tcp),
            Ok(Ok(Err(status))) => tally.refused(status),
            Ok(Err(_)) => tally.note(End::Disconnected),
            Err(_) => tally.note(End::Held),
        }
    }
    sleep_until(deadline).await;
    let mut set = JoinSet::new();
    for mut tcp in held {
        let tally = tally.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let ended = timeout(END_CHECK, async {
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
            tally.note(if ended.await.is_ok() {
                End::Disconnected
            } else {
                End::Held
            });
        });
    }
    while set.join_next().await.is_some() {}
    tally
}

/// Sends SubscribeToShard on a connection with a small receive buffer and reads only the
/// status line: the open connection if the server said 200, else the status.
async fn subscribe_to_shard(
    ports: &Ports,
    consumer_arn: &str,
    shard: &str,
) -> Result<Result<TcpStream, String>> {
    let addr = &ports.kinesis;
    let socket = bound_socket(ports.source)?;
    socket.set_recv_buffer_size(4096)?;
    let mut tcp = socket.connect(addr.parse()?).await?;
    let body = json!({
        "ConsumerARN": consumer_arn,
        "ShardId": shard,
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    })
    .to_string();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {JSON}\r\n\
         X-Amz-Target: Kinesis_20131202.SubscribeToShard\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body.as_bytes()).await?;
    let mut buf = [0u8; 16];
    tcp.read_exact(&mut buf[..12]).await?;
    let status = String::from_utf8_lossy(&buf[9..12]).into_owned();
    Ok(if status == "200" {
        Ok(tcp)
    } else {
        Err(status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_body_is_an_object_of_distinct_keys() {
        let v: Value = serde_json::from_slice(&json_keys_body(1000)).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1000);
        assert!(json_keys_body(100_000).len() > 1_000_000);
    }

    #[test]
    fn json_empty_arrays_body_is_valid_and_sized() {
        let body = json_empty_arrays_body(3_000);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["x"].as_array().unwrap().len(), 997);
        assert!(body.len() <= 3_000);
    }

    #[test]
    fn cbor_body_announces_its_item_count() {
        let body = cbor_empty_items_body(1_000);
        assert_eq!(body.len(), 1_000);
        let count = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
        assert_eq!(count, body.len() - 8);
        assert!(body[8..].iter().all(|&b| b == 0x80));
    }
}
