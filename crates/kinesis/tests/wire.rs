//! The Kinesis wire protocol over real HTTP/1.1 and HTTP/2 connections to the router on a
//! loopback port, with a real broker on a temporary directory: JSON and CBOR bodies,
//! timestamps, blobs, error shapes, request ids, and SubscribeToShard's event stream.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value as Json, json};
use sluice_broker::{Broker, BrokerConfig};
use sluice_kinesis::KinesisConfig;

struct Server {
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let broker: Arc<Broker> = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = sluice_net::ConnTimeouts {
        first_request: Duration::from_secs(30),
        idle: Duration::from_secs(120),
    };
    let listener = sluice_net::Listener::new(
        listener,
        sluice_net::Gate::new(1000, 1000),
        timeouts,
        "kinesis",
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        sluice_kinesis::serve(listener, broker, KinesisConfig::default(), rx)
            .await
            .unwrap();
    });
    Server {
        addr,
        _dir: dir,
        _stop: tx,
    }
}

/// Whether an event-stream message's JSON payload carries at least one record.
fn has_records(m: &sluice_kinesis::eventstream::Message) -> bool {
    serde_json::from_slice::<Json>(&m.payload)
        .is_ok_and(|e| e["Records"].as_array().is_some_and(|r| !r.is_empty()))
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn send(
    addr: std::net::SocketAddr,
    op: &str,
    content_type: &str,
    body: Vec<u8>,
    http2: bool,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(stream);
    let req = Request::post("/")
        .header("content-type", content_type)
        .header("x-amz-target", format!("Kinesis_20131202.{op}"))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")
        .header("x-amz-date", "20261122T000000Z")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = if http2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

async fn call(addr: std::net::SocketAddr, op: &str, body: Json) -> (u16, Json) {
    let r = send(
        addr,
        op,
        "application/x-amz-json-1.1",
        body.to_string().into_bytes(),
        false,
    )
    .await;
    assert!(
        r.headers.contains_key("x-amzn-requestid"),
        "{op}: every response has a request id"
    );
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    // Every number after a Timestamp member is plain decimal: digits and one dot.
    for (i, _) in text.match_indices("Timestamp\":") {
        let num: String = text[i + 11..]
            .chars()
            .take_while(|c| !matches!(c, ',' | '}' | ']'))
            .collect();
        assert!(
            num.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "{op}: timestamp {num} is not plain decimal"
        );
    }
    let v = if text.is_empty() {
        Json::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (r.status, v)
}

#[tokio::test]
async fn the_json_walkthrough_works_and_timestamps_are_plain_seconds() {
    let s = start().await;
    let (st, body) = call(
        s.addr,
        "CreateStream",
        json!({"StreamName": "w", "ShardCount": 1}),
    )
    .await;
    assert_eq!(
        (st, body),
        (200, Json::Null),
        "void operations answer an empty body"
    );
    let (_, d) = call(s.addr, "DescribeStream", json!({"StreamName": "w"})).await;
    let desc = &d["StreamDescription"];
    assert_eq!(desc["StreamStatus"], "ACTIVE");
    assert_eq!(
        desc["StreamARN"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/w"
    );
    assert_eq!(
        desc["Shards"][0]["HashKeyRange"]["EndingHashKey"],
        "340282366920938463463374607431768211455"
    );
    assert!(desc["StreamCreationTimestamp"].is_number());
    let mut seqs = Vec::new();
    for i in 1..=6 {
        let data = base64_encode(format!("test{i}").as_bytes());
        let (st, r) = call(
            s.addr,
            "PutRecord",
            json!({"StreamName": "w", "Data": data, "PartitionKey": "pk"}),
        )
        .await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["ShardId"], "shardId-000000000000");
        seqs.push(r["SequenceNumber"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = |kind: &'static str, extra: Json| {
        let mut req = json!({"StreamName": "w", "ShardId": "shardId-000000000000", "ShardIteratorType": kind});
        if let (Json::Object(m), Json::Object(e)) = (&mut req, extra) {
            m.extend(e);
        }
        async move {
            let (st, it) = call(s.addr, "GetShardIterator", req).await;
            assert_eq!(st, 200, "{it}");
            let (st, r) = call(
                s.addr,
                "GetRecords",
                json!({"ShardIterator": it["ShardIterator"]}),
            )
            .await;
            assert_eq!(st, 200, "{r}");
            r
        }
    };
    let all = read("TRIM_HORIZON", json!({})).await;
    let datas: Vec<String> = all["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| String::from_utf8(base64_decode(r["Data"].as_str().unwrap())).unwrap())
        .collect();
    assert_eq!(
        datas,
        ["test1", "test2", "test3", "test4", "test5", "test6"]
    );
    let ts = all["Records"][2]["ApproximateArrivalTimestamp"]
        .as_f64()
        .unwrap();
    assert!(ts > 1.7e9 && ts < 1e10, "epoch seconds, not ms: {ts}");
    assert!(all["NextShardIterator"].is_string());
    assert_eq!(all["MillisBehindLatest"], 0);
    assert!(
        all.get("ChildShards").is_none(),
        "absent members are omitted"
    );
    let at = read(
        "AT_SEQUENCE_NUMBER",
        json!({"StartingSequenceNumber": seqs[5]}),
    )
    .await;
    assert_eq!(at["Records"].as_array().unwrap().len(), 1);
    let after = read(
        "AFTER_SEQUENCE_NUMBER",
        json!({"StartingSequenceNumber": seqs[4]}),
    )
    .await;
    assert_eq!(after["Records"][0]["SequenceNumber"], seqs[5]);
    let latest = read("LATEST", json!({})).await;
    assert!(latest["Records"].as_array().unwrap().is_empty());
    // AT_TIMESTAMP with a decimal timestamp just after record 3's arrival.
    let t3 = all["Records"][2]["ApproximateArrivalTimestamp"]
        .as_f64()
        .unwrap();
    let from4 = read("AT_TIMESTAMP", json!({"Timestamp": t3 + 0.001})).await;
    assert_eq!(from4["Records"][0]["SequenceNumber"], seqs[3]);
}

#[tokio::test]
async fn errors_have_the_kinesis_shape() {
    let s = start().await;
    let r = send(
        s.addr,
        "NoSuchThing",
        "application/x-amz-json-1.1",
        b"{}".to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["x-amzn-errortype"], "UnknownOperationException");
    let (st, e) = call(s.addr, "DescribeStream", json!({"StreamName": "missing"})).await;
    assert_eq!(st, 400);
    assert_eq!(e["__type"], "ResourceNotFoundException");
    assert!(e["message"].as_str().unwrap().contains("missing"));
    let (_, e) = call(
        s.addr,
        "CreateStream",
        json!({"StreamName": 7, "ShardCount": 1}),
    )
    .await;
    assert_eq!(e["__type"], "SerializationException");
    let (_, e) = call(
        s.addr,
        "CreateStream",
        json!({"StreamName": "bad name!", "ShardCount": 1}),
    )
    .await;
    assert_eq!(e["__type"], "ValidationException");
    let (_, e) = call(
        s.addr,
        "PutRecord",
        json!({"StreamName": "x", "PartitionKey": "k"}),
    )
    .await;
    assert_eq!(e["__type"], "ValidationException", "{e}");
    let (_, e) = call(s.addr, "GetRecords", json!({"ShardIterator": "forged"})).await;
    assert_eq!(e["__type"], "InvalidArgumentException");
    assert_eq!(e["message"], "Invalid ShardIterator.");
    let (_, e) = call(s.addr, "StartStreamEncryption", json!({"StreamName": "x"})).await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not supported by Sluice"),
        "{e}"
    );
    let r = send(
        s.addr,
        "ListStreams",
        "application/x-amz-json-1.1",
        b"{not json".to_vec(),
        false,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["x-amzn-errortype"], "SerializationException");
}

#[tokio::test]
async fn cbor_requests_round_trip_with_byte_strings_and_millisecond_tags() {
    use ciborium::Value as C;
    let s = start().await;
    let cbor = |v: C| {
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    };
    let map = |pairs: Vec<(&str, C)>| {
        C::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (C::Text(k.into()), v))
                .collect(),
        )
    };
    let call_cbor = |op: &'static str, body: C| {
        let bytes = cbor(body);
        async move {
            let r = send(s.addr, op, "application/x-amz-cbor-1.1", bytes, false).await;
            assert_eq!(r.headers["content-type"], "application/x-amz-cbor-1.1");
            let v: C = if r.body.is_empty() {
                C::Null
            } else {
                ciborium::from_reader(&r.body[..]).unwrap()
            };
            (r.status, v)
        }
    };
    let field = |v: &C, name: &str| -> C {
        v.as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v.clone())
            .unwrap_or(C::Null)
    };
    let (st, _) = call_cbor(
        "CreateStream",
        map(vec![
            ("StreamName", C::Text("c".into())),
            ("ShardCount", C::Integer(1.into())),
        ]),
    )
    .await;
    assert_eq!(st, 200);
    let payload = vec![0u8, 159, 146, 150, 255];
    let (st, put) = call_cbor(
        "PutRecord",
        map(vec![
            ("StreamName", C::Text("c".into())),
            ("Data", C::Bytes(payload.clone())),
            ("PartitionKey", C::Text("k".into())),
        ]),
    )
    .await;
    assert_eq!(st, 200, "{put:?}");
    let seq = field(&put, "SequenceNumber");
    let (_, it) = call_cbor(
        "GetShardIterator",
        map(vec![
            ("StreamName", C::Text("c".into())),
            ("ShardId", C::Text("shardId-000000000000".into())),
            ("ShardIteratorType", C::Text("TRIM_HORIZON".into())),
        ]),
    )
    .await;
    let (_, got) = call_cbor(
        "GetRecords",
        map(vec![("ShardIterator", field(&it, "ShardIterator"))]),
    )
    .await;
    let rec = field(&got, "Records").as_array().unwrap()[0].clone();
    assert_eq!(
        field(&rec, "Data"),
        C::Bytes(payload),
        "blobs are raw byte strings in CBOR"
    );
    assert_eq!(field(&rec, "SequenceNumber"), seq);
    match field(&rec, "ApproximateArrivalTimestamp") {
        C::Tag(1, inner) => {
            let ms: i128 = inner.as_integer().unwrap().into();
            assert!(ms > 1_700_000_000_000, "tag 1 carries milliseconds: {ms}");
        }
        other => panic!("timestamp is not tag 1: {other:?}"),
    }
    // A tag-1 millisecond timestamp in a request is read as milliseconds too.
    let (st, e) = call_cbor(
        "GetShardIterator",
        map(vec![
            ("StreamName", C::Text("c".into())),
            ("ShardId", C::Text("shardId-000000000000".into())),
            ("ShardIteratorType", C::Text("AT_TIMESTAMP".into())),
            ("Timestamp", C::Tag(1, Box::new(C::Integer(1_000.into())))),
        ]),
    )
    .await;
    assert_eq!(st, 200, "{e:?}");
    let (st, e) = call_cbor(
        "DescribeStream",
        map(vec![("StreamName", C::Text("nope".into()))]),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        field(&e, "__type"),
        C::Text("ResourceNotFoundException".into())
    );
}

#[tokio::test]
async fn http2_with_prior_knowledge_and_subscribe_to_shard_events() {
    let s = start().await;
    let h2 = |op: &'static str, body: Json| async move {
        let r = send(
            s.addr,
            op,
            "application/x-amz-json-1.1",
            body.to_string().into_bytes(),
            true,
        )
        .await;
        (
            r.status,
            if r.body.is_empty() {
                Json::Null
            } else {
                serde_json::from_slice::<Json>(&r.body).unwrap()
            },
        )
    };
    assert_eq!(
        h2("CreateStream", json!({"StreamName": "e", "ShardCount": 1}))
            .await
            .0,
        200
    );
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/e";
    let (st, c) = h2(
        "RegisterStreamConsumer",
        json!({"StreamARN": arn, "ConsumerName": "app"}),
    )
    .await;
    assert_eq!(st, 200, "{c}");
    let consumer_arn = c["Consumer"]["ConsumerARN"].as_str().unwrap().to_owned();
    assert!(consumer_arn.starts_with(&format!("{arn}/consumer/app:")));
    let (_, list) = h2("ListStreamConsumers", json!({"StreamARN": arn})).await;
    assert_eq!(list["Consumers"].as_array().unwrap().len(), 1);
    // Subscribe, then put: the event arrives on the open HTTP/2 stream. The put waits for
    // the response head, which the server sends only after the LATEST position is fixed.
    let addr = s.addr;
    let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
    let sub = tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let body = json!({"ConsumerARN": consumer_arn, "ShardId": "shardId-000000000000", "StartingPosition": {"Type": "LATEST"}});
        let req = Request::post("/")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.amazon.eventstream"
        );
        subscribed.send(()).unwrap();
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        let mut messages = Vec::new();
        // Up to the first event with records; heartbeats (empty events) may come first on
        // a slow machine.
        while !messages.iter().any(has_records) {
            assert!(messages.len() < 100, "no records in 100 events");
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(m) = sluice_kinesis::eventstream::decode(&buf) {
                buf.drain(..m.len);
                messages.push(m);
            }
        }
        messages
    });
    tokio::time::timeout(Duration::from_secs(30), is_subscribed)
        .await
        .expect("SubscribeToShard did not answer")
        .unwrap();
    let (st, _) = h2(
        "PutRecord",
        json!({"StreamName": "e", "Data": base64_encode(b"pushed"), "PartitionKey": "k"}),
    )
    .await;
    assert_eq!(st, 200);
    let messages = sub.await.unwrap();
    let kind = |m: &sluice_kinesis::eventstream::Message| {
        m.headers
            .iter()
            .find(|(k, _)| k == ":event-type")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(kind(&messages[0]).as_deref(), Some("initial-response"));
    assert!(
        messages[1..]
            .iter()
            .all(|m| kind(m).as_deref() == Some("SubscribeToShardEvent"))
    );
    let pushed = messages.iter().find(|m| has_records(m)).unwrap();
    let ev: Json = serde_json::from_slice(&pushed.payload).unwrap();
    assert_eq!(
        base64_decode(ev["Records"][0]["Data"].as_str().unwrap()),
        b"pushed"
    );
    assert!(ev["ContinuationSequenceNumber"].is_string());
    let (st, e) = h2("DeleteStream", json!({"StreamName": "e"})).await;
    assert_eq!(
        (st, e["__type"].as_str()),
        (400, Some("ResourceInUseException")),
        "consumers block a plain delete"
    );
    assert_eq!(
        h2(
            "DeleteStream",
            json!({"StreamName": "e", "EnforceConsumerDeletion": true})
        )
        .await
        .0,
        200
    );
}

/// Polls DescribeStreamSummary until the stream is ACTIVE (reshards run in the background
/// after the call returns). Bounded.
async fn wait_active(addr: std::net::SocketAddr, name: &str) {
    for _ in 0..6_000 {
        let (_, d) = call(addr, "DescribeStreamSummary", json!({"StreamName": name})).await;
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{name} did not become ACTIVE within a minute");
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A CBOR response as JSON would carry it: byte strings as base64, tag-1 milliseconds as
/// decimal seconds.
fn cbor_as_json(v: &ciborium::Value) -> Json {
    use ciborium::Value as C;
    match v {
        C::Null => Json::Null,
        C::Bool(b) => Json::Bool(*b),
        C::Integer(i) => json!(i128::from(*i) as i64),
        C::Float(f) => json!(f),
        C::Text(s) => json!(s),
        C::Bytes(b) => json!(base64_encode(b)),
        C::Tag(1, inner) => json!(i128::from(inner.as_integer().unwrap()) as f64 / 1000.0),
        C::Array(a) => Json::Array(a.iter().map(cbor_as_json).collect()),
        C::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.as_text().unwrap().to_owned(), cbor_as_json(v)))
                .collect(),
        ),
        other => panic!("unexpected CBOR {other:?}"),
    }
}

/// Numbers compared as f64 (JSON writes `1795307699.685`, CBOR `1795307699685` ms).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-6
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[tokio::test]
async fn cbor_and_json_answer_every_operation_alike() {
    let s = start().await;
    let to_cbor = |v: &Json| -> Vec<u8> {
        // JSON request -> CBOR request (no blobs or timestamps among these members).
        fn conv(v: &Json) -> ciborium::Value {
            use ciborium::Value as C;
            match v {
                Json::Null => C::Null,
                Json::Bool(b) => C::Bool(*b),
                Json::Number(n) => C::Integer(n.as_i64().unwrap().into()),
                Json::String(s) => C::Text(s.clone()),
                Json::Array(a) => C::Array(a.iter().map(conv).collect()),
                Json::Object(o) => C::Map(
                    o.iter()
                        .map(|(k, v)| (C::Text(k.clone()), conv(v)))
                        .collect(),
                ),
            }
        }
        let mut out = Vec::new();
        ciborium::into_writer(&conv(v), &mut out).unwrap();
        out
    };
    let cbor_call = |op: &'static str, body: Json| {
        let bytes = to_cbor(&body);
        async move {
            let r = send(s.addr, op, "application/x-amz-cbor-1.1", bytes, false).await;
            let v = if r.body.is_empty() {
                Json::Null
            } else {
                cbor_as_json(&ciborium::from_reader(&r.body[..]).unwrap())
            };
            (r.status, v)
        }
    };
    // Every change made in CBOR.
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/eq";
    for (op, body) in [
        (
            "CreateStream",
            json!({"StreamName": "eq", "ShardCount": 2, "Tags": {"a": "1"}}),
        ),
        (
            "AddTagsToStream",
            json!({"StreamName": "eq", "Tags": {"b": "2"}}),
        ),
        (
            "IncreaseStreamRetentionPeriod",
            json!({"StreamName": "eq", "RetentionPeriodHours": 48}),
        ),
        (
            "SplitShard",
            json!({"StreamName": "eq", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}),
        ),
        (
            "RegisterStreamConsumer",
            json!({"StreamARN": arn, "ConsumerName": "c"}),
        ),
        (
            "RemoveTagsFromStream",
            json!({"StreamName": "eq", "TagKeys": ["a"]}),
        ),
    ] {
        let (st, r) = cbor_call(op, body).await;
        assert_eq!(st, 200, "{op}: {r}");
    }
    // The split is carried out in the background: compare answers once it is done.
    wait_active(s.addr, "eq").await;
    let mut put = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("StreamName".into()),
                ciborium::Value::Text("eq".into()),
            ),
            (
                ciborium::Value::Text("Records".into()),
                ciborium::Value::Array(
                    (0..5u8)
                        .map(|i| {
                            ciborium::Value::Map(vec![
                                (
                                    ciborium::Value::Text("Data".into()),
                                    ciborium::Value::Bytes(vec![i, 255, 0]),
                                ),
                                (
                                    ciborium::Value::Text("PartitionKey".into()),
                                    ciborium::Value::Text(format!("k{i}")),
                                ),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
        &mut put,
    )
    .unwrap();
    let r = send(
        s.addr,
        "PutRecords",
        "application/x-amz-cbor-1.1",
        put,
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    let (_, it) = call(s.addr, "GetShardIterator", json!({"StreamName": "eq", "ShardId": "shardId-000000000001", "ShardIteratorType": "TRIM_HORIZON"})).await;
    let (_, consumer) = call(
        s.addr,
        "DescribeStreamConsumer",
        json!({"StreamARN": arn, "ConsumerName": "c"}),
    )
    .await;
    let consumer_arn = consumer["ConsumerDescription"]["ConsumerARN"].clone();
    // Then every read answered the same in both encodings.
    let reads = [
        ("ListStreams", json!({})),
        ("DescribeStream", json!({"StreamName": "eq"})),
        ("DescribeStreamSummary", json!({"StreamName": "eq"})),
        ("ListShards", json!({"StreamName": "eq"})),
        ("ListTagsForStream", json!({"StreamName": "eq"})),
        ("ListTagsForResource", json!({"ResourceARN": arn})),
        ("DescribeLimits", json!({})),
        ("ListStreamConsumers", json!({"StreamARN": arn})),
        (
            "DescribeStreamConsumer",
            json!({"ConsumerARN": consumer_arn}),
        ),
        ("GetRecords", json!({"ShardIterator": it["ShardIterator"]})),
        ("DescribeStream", json!({"StreamName": "missing"})),
        ("GetRecords", json!({"ShardIterator": "forged"})),
    ];
    for (op, body) in reads {
        let (js, mut j) = call(s.addr, op, body.clone()).await;
        let (cs, mut c) = cbor_call(op, body).await;
        assert_eq!(js, cs, "{op}: status");
        for v in [&mut j, &mut c] {
            // A fresh iterator is issued on every call; its value differs by design.
            if let Some(o) = v.as_object_mut() {
                o.remove("NextShardIterator");
            }
        }
        assert!(same(&j, &c), "{op}: JSON {j} but CBOR {c}");
        if op == "GetRecords" && js == 200 {
            assert!(
                !j["Records"].as_array().unwrap().is_empty(),
                "the comparison covers records"
            );
        }
    }
}
