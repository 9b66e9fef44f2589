#![allow(clippy::unwrap_used)]
//! Regression tests for issue 22, items 1, 2 and 11, against the real server.
//!
//! 1. JSON objects were de-duplicated by a linear scan per key: two ListStreams bodies of
//!    100,000 distinct keys made an unrelated call wait 44.7 s (and were then answered
//!    200, the unknown members ignored).
//! 2. Nothing bounded what a body decoded into: a 15 MiB CBOR array of empty items cost
//!    1.3-1.7 GB, 5 million empty JSON arrays about 1.5 GB.
//! 11. Error replies leaked: a 500 named files of the data directory, CBOR errors were
//!     Rust debug text (`Io(Error { kind: UnexpectedEof, ... })`), and a request prost
//!     could not decode was gRPC INTERNAL with the decoder's text.

mod support;

use support::Server;
use support::hostile::{grpc_end, grpc_head, grpc_prefix, h2_connect, kinesis_call, status_kib};

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";

/// A ListStreams body of `n` distinct members.
fn many_members(n: usize) -> Vec<u8> {
    let members: Vec<String> = (0..n).map(|i| format!("\"k{i:06}\":0")).collect();
    format!("{{{}}}", members.join(",")).into_bytes()
}

#[test]
fn objects_with_100000_members_are_refused_and_others_are_served() {
    let server = Server::start_temp(&[]);
    let kinesis = server.kinesis_addr();
    support::run_async(async {
        let body = many_members(100_000);
        assert!(body.len() > 1 << 20);
        let attacks: Vec<_> = (0..2)
            .map(|_| tokio::spawn(kinesis_call(kinesis, 2, "ListStreams", JSON, body.clone())))
            .collect();
        let normal = kinesis_call(kinesis, 1, "ListStreams", JSON, b"{}".to_vec()).await;
        assert_eq!(normal.status, 200, "{normal:?}");
        for attack in attacks {
            let reply = attack.await.unwrap();
            assert_eq!(reply.status, 400, "{reply:?}");
            assert_eq!(reply.kind(), "SerializationException");
            assert!(
                reply.message().contains("more than 256 members"),
                "{reply:?}"
            );
        }
        // A tag map of 200 (the most any operation takes) is fine.
        let tags: Vec<String> = (0..200).map(|i| format!("\"t{i}\":\"v\"")).collect();
        let create = format!(
            "{{\"StreamName\":\"tagged\",\"ShardCount\":1,\"Tags\":{{{}}}}}",
            tags.join(",")
        );
        let reply = kinesis_call(kinesis, 1, "CreateStream", JSON, create.into_bytes()).await;
        assert_ne!(reply.kind(), "SerializationException", "{reply:?}");
    });
}

#[test]
fn bodies_that_would_decode_into_huge_trees_are_refused_within_a_memory_bound() {
    let server = Server::start_temp(&[]);
    let kinesis = server.kinesis_addr();
    let pid = server.pid();
    support::run_async(async {
        let before_kib = status_kib(pid, "VmHWM");
        // A 15 MiB CBOR array of empty arrays (one byte each), three at once.
        let n = 15 << 20;
        let mut cbor = vec![0x9a];
        cbor.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        cbor.resize(5 + n, 0x80);
        let cbor_attacks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(kinesis_call(kinesis, 2, "PutRecords", CBOR, cbor.clone())))
            .collect();
        // 5 million empty JSON arrays.
        let json = format!("[{}]", vec!["[]"; 5_000_000].join(",")).into_bytes();
        let json_attack = kinesis_call(kinesis, 3, "PutRecords", JSON, json).await;
        assert_eq!(json_attack.status, 400, "{json_attack:?}");
        assert_eq!(json_attack.kind(), "SerializationException");
        assert!(
            json_attack.message().contains("too many values"),
            "{json_attack:?}"
        );
        for attack in cbor_attacks {
            let reply = attack.await.unwrap();
            assert_eq!(reply.status, 400, "{reply:?}");
            assert_eq!(reply.error_type.as_deref(), Some("SerializationException"));
            assert!(reply.body.contains("too many values"), "{reply:?}");
        }
        let grown_mib = (status_kib(pid, "VmHWM") - before_kib) / 1024;
        // The bodies alone are 60 MiB; each tree may reach about twice its body.
        assert!(grown_mib < 400, "the server grew by {grown_mib} MiB");
        let reply = kinesis_call(kinesis, 1, "ListStreams", JSON, b"{}".to_vec()).await;
        assert_eq!(reply.status, 200);
    });
}

#[test]
fn cbor_errors_are_sentences_not_debug_dumps() {
    let server = Server::start_temp(&[]);
    let kinesis = server.kinesis_addr();
    support::run_async(async {
        for body in [
            &b"\xa1\x6dShardIterator\x78\xff"[..],
            b"\xff\xff\xff\xff",
            b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff",
        ] {
            let reply = kinesis_call(kinesis, 1, "GetRecords", CBOR, body.to_vec()).await;
            assert_eq!(reply.status, 400, "{reply:?}");
            assert_eq!(reply.error_type.as_deref(), Some("SerializationException"));
            for debug in ["Io(", "Error {", "kind:", "UnexpectedEof", "Syntax("] {
                assert!(!reply.body.contains(debug), "{debug} in {reply:?}");
            }
            assert!(reply.body.contains("Malformed CBOR body: "), "{reply:?}");
        }
    });
}

#[test]
fn internal_failures_keep_data_directory_paths_out_of_replies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let kinesis = server.kinesis_addr();
    let data_dir = dir.path().display().to_string();
    support::run_async(async {
        let reply = kinesis_call(
            kinesis,
            1,
            "CreateStream",
            JSON,
            br#"{"StreamName":"s","ShardCount":1}"#.to_vec(),
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        // The consumer registry is rewritten through `consumers.tmp`; a directory in its
        // place makes the write fail with the file's path in the broker's error.
        std::fs::create_dir(dir.path().join("consumers.tmp")).unwrap();
        let register =
            r#"{"StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/s","ConsumerName":"c"}"#;
        let reply = kinesis_call(
            kinesis,
            1,
            "RegisterStreamConsumer",
            JSON,
            register.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(reply.kind(), "InternalFailureException");
        assert_eq!(
            reply.message(),
            "Internal service failure; the server's log has the details."
        );
        assert!(!reply.body.contains(&data_dir), "{reply:?}");
    });
    // The detail, path included, is in the server's log (written before the reply; the
    // test reads the log from a pipe, so it may take a moment to show).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server
        .log()
        .iter()
        .any(|l| l.contains("kinesis request failed") && l.contains(&data_dir))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn requests_that_do_not_decode_are_invalid_arguments_with_a_reason() {
    let server = Server::start_temp(&[]);
    support::run_async(async {
        let (mut send, conn) = h2_connect(server.addr, 1).await;
        conn.spawn();
        // A field that claims 5 bytes and has 1.
        let garbage: &'static [u8] = &[0x0a, 0x05, b'a'];
        let (response, mut body) = send.send_request(grpc_head("PutRecord"), false).unwrap();
        body.send_data(grpc_prefix(garbage.len()), false).unwrap();
        body.send_data(bytes::Bytes::from_static(garbage), true)
            .unwrap();
        let end = grpc_end(response).await;
        assert_eq!(end.code, 3, "{end:?}");
        assert_eq!(end.reason.as_deref(), Some("SerializationException"));
        // A PutRecords of 100,001 empty entries (200 KB) is refused before decoding.
        let mut entries = vec![0x0a, 0x01, b's'];
        for _ in 0..100_001 {
            entries.extend_from_slice(&[0x12, 0x00]);
        }
        let (response, mut body) = send.send_request(grpc_head("PutRecords"), false).unwrap();
        body.send_data(grpc_prefix(entries.len()), false).unwrap();
        body.send_data(bytes::Bytes::from(entries), true).unwrap();
        let end = grpc_end(response).await;
        assert_eq!(end.code, 3, "{end:?}");
        assert_eq!(end.reason.as_deref(), Some("ValidationException"));
        // The server is fine.
        let mut client = server.client().await;
        support::create_active(&mut client, "s", 1).await;
    });
}
