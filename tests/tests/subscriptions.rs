#![allow(clippy::unwrap_used)]
//! Issue 22, items 7, 9 and 10, against the real server: subscriptions and the sequence
//! numbers they start from, on both APIs.
//!
//! What broke: subscribers that never read grew the server's memory by the data they were
//! sent (100 stalled gRPC subscribers on 10 MiB: +1 GiB; 40 stalled SubscribeToShard:
//! +533 MiB), with no cap on their number; and a subscription of a deleted stream (here
//! recreated under its name at once) kept sending heartbeats until its five minutes were
//! up, never ended with an error, and kept the deleted log open, so its disk space was
//! not freed. And a starting sequence number with a made-up counter beyond the shard's
//! newest record (10^12, 2^63-1) gave an iterator or subscription parked where no record
//! would ever come, instead of Kinesis's InvalidArgumentException.
//!
//! Memory is read from `/proc/<pid>/status` (`RssAnon`: the heap, without the page cache
//! the segment mappings make resident) once it has stopped changing; it cannot pass the
//! bound however long that takes, so the wait is for the old behaviour to show, not a
//! timing assumption. Kinesis is spoken over HTTP/1.1 with hyper's client; the event
//! stream is decoded here.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use support::{Client, Server, assert_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Endpoint;

const SHARD: &str = "shardId-000000000000";
/// The longest any wait here may take; nothing waits for it unless something is broken.
const PATIENCE: Duration = Duration::from_secs(60);
/// Each record put: under the default 1 MiB record limit, one to an event of 512 KiB.
const RECORD_BYTES: usize = 524_000;

// ---- what both tests use ----

async fn fill(client: &mut Client, stream: &str, records: usize) {
    support::create_active(client, stream, 1).await;
    for i in 0..records {
        let data = vec![(i % 251) as u8; RECORD_BYTES];
        support::put(client, stream, &format!("k{i}"), &data).await;
    }
}

fn subscribe_request(stream: &str, kind: pb::ShardIteratorType) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        stream_name: stream.to_owned(),
        shard_id: SHARD.to_owned(),
        starting_position: Some(support::position(kind)),
    }
}

fn stream_arn(stream: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}")
}

/// One Kinesis JSON call on a connection of its own: the status and the reply's JSON.
async fn kinesis(addr: SocketAddr, op: &str, body: &Value) -> (u16, Value) {
    let response = kinesis_request(addr, op, body).await;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn kinesis_request(
    addr: SocketAddr,
    op: &str,
    body: &Value,
) -> hyper::Response<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post("/")
        .header("host", addr.to_string())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("Kinesis_20131202.{op}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    sender.send_request(request).await.unwrap()
}

async fn register_consumer(addr: SocketAddr, stream: &str, name: &str) -> String {
    let body = json!({"StreamARN": stream_arn(stream), "ConsumerName": name});
    let (status, reply) = kinesis(addr, "RegisterStreamConsumer", &body).await;
    assert_eq!(status, 200, "{reply}");
    reply["Consumer"]["ConsumerARN"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn subscribe_to_shard_body(consumer_arn: &str, kind: &str) -> Value {
    json!({"ConsumerARN": consumer_arn, "ShardId": SHARD, "StartingPosition": {"Type": kind}})
}

/// One event-stream message: its string headers and payload.
#[derive(Debug)]
struct Message {
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A SubscribeToShard response body read message by message.
struct EventStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next message, `None` at the end of the body; panics after [`PATIENCE`].
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.split() {
                return Some(m);
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("an event-stream message within the patience");
            match frame {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Takes one whole message off the buffer (prelude, string headers, payload, CRC).
    fn split(&mut self) -> Option<Message> {
        let mut b = self.buf.as_slice();
        if b.len() < 12 {
            return None;
        }
        let total = b.get_u32() as usize;
        let headers_len = b.get_u32() as usize;
        if self.buf.len() < total {
            return None;
        }
        let mut h = &self.buf[12..12 + headers_len];
        let mut headers = Vec::new();
        while h.has_remaining() {
            let name_len = h.get_u8() as usize;
            let name = String::from_utf8_lossy(&h[..name_len]).into_owned();
            h.advance(name_len);
            assert_eq!(h.get_u8(), 7, "string header");
            let value_len = h.get_u16() as usize;
            headers.push((name, String::from_utf8_lossy(&h[..value_len]).into_owned()));
            h.advance(value_len);
        }
        let payload = self.buf[12 + headers_len..total - 4].to_vec();
        self.buf.drain(..total);
        Some(Message { headers, payload })
    }
}

/// SubscribeToShard over HTTP/1.1: the HTTP status, and the event stream when it is 200
/// (the error's JSON otherwise).
async fn subscribe_to_shard(
    addr: SocketAddr,
    consumer_arn: &str,
    kind: &str,
) -> Result<EventStream, (u16, Value)> {
    let body = subscribe_to_shard_body(consumer_arn, kind);
    let response = kinesis_request(addr, "SubscribeToShard", &body).await;
    let status = response.status().as_u16();
    if status != 200 {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        return Err((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ));
    }
    let mut events = EventStream {
        body: response.into_body(),
        buf: Vec::new(),
    };
    let initial = events.next().await.unwrap();
    assert_eq!(initial.header(":event-type"), Some("initial-response"));
    Ok(events)
}

/// Reads events until one is an exception; returns its type and message. Fails if the
/// stream ends without one or none comes within [`PATIENCE`].
async fn until_exception(events: &mut EventStream) -> (String, String) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let m = events
            .next()
            .await
            .expect("the event stream ended without an error");
        if m.header(":message-type") == Some("exception") {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            let kind = m.header(":exception-type").unwrap().to_owned();
            return (kind, payload["message"].as_str().unwrap_or("").to_owned());
        }
    }
    panic!("no exception within {PATIENCE:?}");
}

/// Reads gRPC events until the call fails; returns its status. Fails if none comes within
/// [`PATIENCE`] (heartbeats do not count).
async fn until_error(events: &mut tonic::Streaming<pb::SubscribeEvent>) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.message()).await {
            Err(_) => panic!("the subscription did not end within {PATIENCE:?}"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the subscription ended without an error"),
            Ok(Err(status)) => return status,
        }
    }
}

/// Descriptors and memory maps of process `pid` that point under `dir`.
fn held_under(pid: u32, dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten();
    let mut held: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&prefix))
        .collect();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    held.extend(
        maps.lines()
            .filter(|l| l.contains(&prefix))
            .map(str::to_owned),
    );
    held
}

/// The stream directories under the data directory.
fn stream_dirs(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("streams"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// The server's anonymous resident memory (its heap), bytes.
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// [`rss_anon`] once it has stayed within 1 MiB for two seconds (at most [`PATIENCE`]).
async fn settled_rss_anon(pid: u32) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    let (mut last, mut steady) = (rss_anon(pid), 0);
    while steady < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = rss_anon(pid);
        steady = if now.abs_diff(last) > 1 << 20 {
            0
        } else {
            steady + 1
        };
        last = now;
    }
    last
}

// ---- the tests ----

#[test]
fn subscriptions_of_a_deleted_stream_end_at_once_on_both_apis_and_release_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let addr = server.kinesis_addr();
    support::run_async(async {
        let mut client = server.client().await;
        fill(&mut client, "doomed", 4).await;
        let dirs = stream_dirs(dir.path());
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        let stream_dir = dirs[0].clone();
        // At the tip, waiting for records: on gRPC and through a consumer.
        let latest = pb::ShardIteratorType::Latest;
        let mut waiting = client
            .subscribe(subscribe_request("doomed", latest))
            .await
            .unwrap()
            .into_inner();
        let consumer = register_consumer(addr, "doomed", "app").await;
        let mut kinesis_waiting = subscribe_to_shard(addr, &consumer, "LATEST").await.unwrap();
        // From the start, on a connection whose client never reads.
        let _stalled = small_window_client(&server)
            .await
            .subscribe(subscribe_request(
                "doomed",
                pb::ShardIteratorType::TrimHorizon,
            ))
            .await
            .unwrap();
        client
            .delete_stream(pb::DeleteStreamRequest {
                stream_name: "doomed".into(),
            })
            .await
            .unwrap();
        // A stream of the same name at once, as a test suite or a redeploy makes: the old
        // subscriptions must not carry on, reading the deleted incarnation's log.
        support::create_active(&mut client, "doomed", 1).await;
        let status = until_error(&mut waiting).await;
        assert_status(&status, Code::NotFound, "ResourceNotFoundException");
        let (kind, message) = until_exception(&mut kinesis_waiting).await;
        assert_eq!(kind, "ResourceNotFoundException", "{message}");
        // The stalled subscription is still open, and holds nothing of the stream.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let held = held_under(server.pid(), &stream_dir);
            if !stream_dir.exists() && held.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still held after the delete: {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn stalled_subscribers_hold_no_more_than_the_budget_and_past_the_caps_are_refused() {
    const BUDGET: u64 = 16 << 20;
    let server = Server::start_temp(&[
        ("SLUICE_LIMITS_SUBSCRIPTION_BUFFER_SIZE_MAX", "1MiB"),
        ("SLUICE_LIMITS_SUBSCRIPTION_BUFFER_TOTAL_SIZE_MAX", "16MiB"),
        ("SLUICE_LIMITS_SUBSCRIPTIONS_MAX", "61"),
    ]);
    let addr = server.kinesis_addr();
    support::run_async(async {
        let mut client = server.client().await;
        // Three streams of 10 MiB: two for gRPC subscribers, one for consumers.
        for stream in ["g0", "g1", "k"] {
            fill(&mut client, stream, 20).await;
        }
        support::create_active(&mut client, "spare", 1).await;
        let before = settled_rss_anon(server.pid()).await;
        // 40 gRPC subscribers that never read, on one connection with small windows.
        let mut stalled = small_window_client(&server).await;
        let mut held = Vec::new();
        for stream in ["g0", "g1"] {
            for _ in 0..20 {
                let request = subscribe_request(stream, pb::ShardIteratorType::TrimHorizon);
                held.push(stalled.subscribe(request).await.unwrap());
            }
        }
        // 20 SubscribeToShard streams whose clients read the head and nothing more.
        let mut sockets = Vec::new();
        for i in 0..20 {
            let consumer = register_consumer(addr, "k", &format!("c{i}")).await;
            sockets.push(stalled_subscribe_to_shard(addr, &consumer).await);
        }
        // What they hold stays within the budget (Kinesis JSON adds a third for base64),
        // plus what 60 subscriptions and 21 connections cost besides.
        let after = settled_rss_anon(server.pid()).await;
        let grown = after.saturating_sub(before);
        eprintln!(
            "RssAnon {} -> {} MiB with 60 stalled subscribers",
            before >> 20,
            after >> 20
        );
        assert!(
            grown <= BUDGET * 4 / 3 + (32 << 20),
            "the server grew by {} MiB with 60 stalled subscribers ({} -> {} MiB)",
            grown >> 20,
            before >> 20,
            after >> 20
        );
        // g0 has its 20: one more is refused.
        let request = subscribe_request("g0", pb::ShardIteratorType::TrimHorizon);
        assert_over_limit(&mut client, request, "subscriptions_per_shard_max").await;
        // 60 open, the most is 61: one more anywhere, then none.
        let _last = client
            .subscribe(subscribe_request("spare", pb::ShardIteratorType::Latest))
            .await
            .unwrap();
        let request = subscribe_request("spare", pb::ShardIteratorType::Latest);
        assert_over_limit(&mut client, request, "subscriptions_max").await;
        drop((held, sockets));
    });
}

/// A gRPC client on a connection of its own with the smallest HTTP/2 windows (64 KiB), so
/// a subscription it never reads stalls the server's sending at once.
async fn small_window_client(server: &Server) -> Client {
    let channel = Endpoint::from_shared(server.endpoint())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    pb::sluice_client::SluiceClient::new(channel)
}

/// Subscribes with `request`, which must be refused as a LimitExceededException that
/// names the `setting` it is over.
async fn assert_over_limit(client: &mut Client, request: pb::SubscribeRequest, setting: &str) {
    let refused = client.subscribe(request).await.unwrap_err();
    assert_status(&refused, Code::ResourceExhausted, "LimitExceededException");
    assert!(refused.message().contains(setting), "{refused:?}");
}

/// A SubscribeToShard whose client reads the reply's head (a 200) and nothing more, on a
/// socket with a small receive buffer.
async fn stalled_subscribe_to_shard(addr: SocketAddr, consumer_arn: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let body = subscribe_to_shard_body(consumer_arn, "TRIM_HORIZON").to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-amz-json-1.1\r\n\
         x-amz-target: Kinesis_20131202.SubscribeToShard\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "SubscribeToShard was refused");
    tcp
}

#[test]
fn a_consumer_has_one_subscription_per_shard_until_a_newer_one_takes_over() {
    for (takeover, refused) in [("1h", true), ("0ms", false)] {
        let server = Server::start_temp(&[("SLUICE_BROKER_SUBSCRIPTION_TAKEOVER", takeover)]);
        let addr = server.kinesis_addr();
        support::run_async(async {
            let mut client = server.client().await;
            support::create_active(&mut client, "s", 1).await;
            let consumer = register_consumer(addr, "s", "app").await;
            let mut first = subscribe_to_shard(addr, &consumer, "LATEST").await.unwrap();
            let second = subscribe_to_shard(addr, &consumer, "LATEST").await;
            if refused {
                let (status, error) = second.err().expect("a second subscription is refused");
                assert_eq!(status, 400, "{error}");
                assert_eq!(error["__type"], "ResourceInUseException", "{error}");
            } else {
                assert!(second.is_ok(), "the newer subscription takes over");
                let (kind, message) = until_exception(&mut first).await;
                assert_eq!(kind, "ResourceInUseException", "{message}");
            }
        });
    }
}

/// `number` with its per-shard counter replaced (`sluice_broker::seqnum` has the layout).
fn with_counter(number: &str, counter: u64) -> String {
    let n = sluice_broker::seqnum::SequenceNumber::decode(number).unwrap();
    sluice_broker::seqnum::SequenceNumber { counter, ..n }.encode()
}

#[test]
fn a_starting_number_beyond_the_shards_end_is_refused_on_both_apis() {
    let server = Server::start_temp(&[]);
    let addr = server.kinesis_addr();
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "s", 1).await;
        let mut newest = String::new();
        for i in 0..3 {
            newest = support::put(&mut client, "s", &format!("k{i}"), b"r")
                .await
                .sequence_number;
        }
        let consumer = register_consumer(addr, "s", "app").await;
        for counter in [1_000_000_000_000, i64::MAX as u64] {
            let made_up = with_counter(&newest, counter);
            for kind in [
                pb::ShardIteratorType::AtSequenceNumber,
                pb::ShardIteratorType::AfterSequenceNumber,
            ] {
                let position = pb::StartingPosition {
                    sequence_number: Some(made_up.clone()),
                    ..support::position(kind)
                };
                let it = support::iterator(&mut client, "s", SHARD, position.clone()).await;
                let refused = it.expect_err("GetShardIterator past the end is refused");
                assert_status(&refused, Code::InvalidArgument, "InvalidArgumentException");
                assert!(refused.message().contains(&made_up), "{refused:?}");
                let request = pb::SubscribeRequest {
                    starting_position: Some(position),
                    ..subscribe_request("s", kind)
                };
                let refused = client.subscribe(request).await.unwrap_err();
                assert_status(&refused, Code::InvalidArgument, "InvalidArgumentException");
            }
            for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"] {
                let body = json!({"StreamName": "s", "ShardId": SHARD,
                    "ShardIteratorType": kind, "StartingSequenceNumber": made_up});
                let (status, error) = kinesis(addr, "GetShardIterator", &body).await;
                assert_eq!(status, 400, "{error}");
                assert_eq!(error["__type"], "InvalidArgumentException", "{error}");
                let body = json!({"ConsumerARN": consumer, "ShardId": SHARD,
                    "StartingPosition": {"Type": kind, "SequenceNumber": made_up}});
                let response = kinesis_request(addr, "SubscribeToShard", &body).await;
                assert_eq!(
                    response.status().as_u16(),
                    400,
                    "SubscribeToShard past the end"
                );
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                let error: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(error["__type"], "InvalidArgumentException", "{error}");
            }
        }
        // The newest record's own number is not past the end: AFTER it reads what follows.
        let position = pb::StartingPosition {
            sequence_number: Some(newest),
            ..support::position(pb::ShardIteratorType::AfterSequenceNumber)
        };
        let it = support::iterator(&mut client, "s", SHARD, position)
            .await
            .unwrap();
        support::put(&mut client, "s", "k3", b"later").await;
        let records = support::get(&mut client, &it).await.records;
        let data: Vec<&[u8]> = records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(data, [b"later"]);
    });
}
