#![allow(clippy::unwrap_used)]
//! Malformed, oversized and truncated requests on both listeners of the real server:
//! each gets an error response or a closed connection within a bound, never a crash or a
//! hang, and the server keeps serving well-formed requests afterwards. (The decoders
//! behind the listeners are fuzzed in `fuzz/`; this checks the sockets end to end.)

mod support;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sluice_proto::v1 as pb;
use support::Server;

/// The longest the server may take to answer or close after a request ends.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `bytes` (then closes the writing half if `half_close`: a request cut short), and
/// reads whatever comes back until the server closes the connection or, having sent an
/// answer, stops sending; panics if it neither answers nor closes within the bound. An
/// answer to a complete request counts only once its HTTP head is whole, so a slow
/// server's answer is never cut at an arbitrary byte. (hyper drops a connection whose
/// client half-closed before it answered, so complete requests keep it open.)
fn exchange(addr: SocketAddr, bytes: &[u8], half_close: bool, what: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // A peer may close before reading everything; that is an answer too.
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return answer,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                let head_whole = answer.windows(4).any(|w| w == b"\r\n\r\n");
                if !answer.is_empty() && (half_close || head_whole) {
                    return answer;
                }
            }
            Err(_) => return answer,
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no answer and no close within {ANSWER_TIMEOUT:?}"
        );
    }
}

/// A Kinesis request whose Content-Length is its body's.
fn http(target: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    http_with_length(target, content_type, body, body.len())
}

/// A Kinesis request that declares `content_length` whatever its body.
fn http_with_length(
    target: &str,
    content_type: &str,
    body: &[u8],
    content_length: usize,
) -> Vec<u8> {
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: Kinesis_20131202.{target}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn status_line(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn bad_requests_on_both_listeners_get_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let kinesis = server.kinesis_addr();
    let json = "application/x-amz-json-1.1";
    let cbor = "application/x-amz-cbor-1.1";
    let big = vec![b'{'; 64 * 1024];
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "raw garbage",
            b"\x00\xff\xfe garbage \r\n\r\n".to_vec(),
            false,
        ),
        (
            "invalid JSON",
            http("PutRecord", json, b"{\"StreamName\": "),
            true,
        ),
        (
            "JSON of the wrong shape",
            http("PutRecord", json, b"[1, 2, 3]"),
            true,
        ),
        (
            "wrong member types",
            http("PutRecord", json, b"{\"StreamName\":1,\"Data\":[]}"),
            true,
        ),
        (
            "bad base64",
            http(
                "PutRecord",
                json,
                b"{\"StreamName\":\"s\",\"PartitionKey\":\"k\",\"Data\":\"!!\"}",
            ),
            true,
        ),
        (
            "garbage CBOR",
            http("PutRecord", cbor, b"\xff\xff\xff\xff"),
            true,
        ),
        (
            "truncated CBOR",
            http("GetRecords", cbor, b"\xa1\x6dShardIterator\x78\xff"),
            true,
        ),
        ("deeply nested JSON", http("PutRecord", json, &big), true),
        (
            "body shorter than its length",
            http_with_length("PutRecord", json, b"{}", 1000),
            false,
        ),
        (
            "huge declared length",
            http_with_length("PutRecord", json, b"{}", 1 << 30),
            false,
        ),
        ("unknown operation", http("Explode", json, b"{}"), true),
    ];
    for (what, request, answer_expected) in &cases {
        let answer = exchange(kinesis, request, !answer_expected, what);
        if *answer_expected {
            let line = status_line(&answer);
            assert!(
                line.starts_with("HTTP/1.1 4"),
                "{what}: expected a 4xx, got {line:?}"
            );
        }
    }
    let grpc = server.addr;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut bad_frames = preface.clone();
    bad_frames.extend_from_slice(&[0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4]);
    let grpc_cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw garbage", b"\x16\x03\x01 not http/2 at all".to_vec()),
        ("truncated preface", preface[..10].to_vec()),
        ("preface then garbage frames", bad_frames),
        ("HTTP/1.1 to the gRPC port", http("PutRecord", json, b"{}")),
    ];
    for (what, request) in &grpc_cases {
        exchange(grpc, request, true, what);
    }
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "after", 1).await;
        let reply = support::put(&mut client, "after", "k", b"still serving").await;
        assert_eq!(reply.shard_id, "shardId-000000000000");
        // A gRPC message that is too large for the server's limit is refused, not fatal.
        let status = client
            .put_record(pb::PutRecordRequest {
                stream_name: "after".into(),
                partition_key: "k".into(),
                explicit_hash_key: None,
                data: vec![0u8; 8 << 20].into(),
            })
            .await
            .unwrap_err();
        assert_ne!(status.code(), tonic::Code::Ok);
        support::put(&mut client, "after", "k", b"still serving").await;
    });
    assert!(
        server.terminate().success(),
        "the server did not stop cleanly"
    );
}
