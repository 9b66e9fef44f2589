#![allow(clippy::unwrap_used)]
//! Refusals through the real server: unknown stream, bad shard id, oversize record,
//! expired iterator, forged iterator, a sequence number from another shard. Each must be
//! a typed error (gRPC code, Kinesis reason in `x-sluice-error` and as message prefix),
//! must leave the server healthy (a put and a get still work) and must touch no data.
//! Expiry is tested on a second server with a one-second iterator lifetime
//! (`SLUICE_BROKER_ITERATOR_TTL`), so it needs no five-minute wait; the first keeps the
//! default lifetime, so none of its iterators can expire on a slow machine.

mod support;

use std::time::Duration;

use sluice_proto::v1 as pb;
use support::{Client, Server, assert_status, get, iterator, position};
use tonic::Code;

const STREAM: &str = "errors";
const SHARD_0: &str = "shardId-000000000000";
const SHARD_1: &str = "shardId-000000000001";

#[test]
fn refusals_are_typed_and_leave_the_server_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, STREAM, 2).await;
        let mut expected = vec![put_to(&mut client, "0", b"before").await];
        check_healthy(&mut client, &mut expected).await;

        unknown_stream(&mut client).await;
        check_healthy(&mut client, &mut expected).await;
        bad_shard_id(&mut client).await;
        check_healthy(&mut client, &mut expected).await;
        oversize_record(&mut client, &mut expected).await;
        check_healthy(&mut client, &mut expected).await;
        forged_iterator(&mut client).await;
        check_healthy(&mut client, &mut expected).await;
        foreign_sequence_number(&mut client, &expected[0].0).await;
        check_healthy(&mut client, &mut expected).await;
    });
}

#[test]
fn an_expired_iterator_is_refused_and_leaves_the_server_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[("SLUICE_BROKER_ITERATOR_TTL", "1s")]);
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, STREAM, 2).await;
        let before = put_to(&mut client, "0", b"before").await;
        expired_iterator(&mut client).await;
        // Healthy: a put still works, and (through a fresh iterator) the records are
        // there. A fresh iterator may itself expire on a machine so slow that a second
        // passes between two calls; then the read is tried again with a new one.
        let after = put_to(&mut client, "0", b"after").await;
        let got = read_fresh(&mut client, 10).await;
        assert_eq!(got, [before, after]);
    });
}

/// Shard 0 read from TRIM_HORIZON with a new iterator, in at most `tries` attempts (one per
/// iterator that expired before its first use).
async fn read_fresh(client: &mut Client, tries: usize) -> Vec<(String, Vec<u8>)> {
    for _ in 0..tries {
        let trim = position(pb::ShardIteratorType::TrimHorizon);
        let it = iterator(client, STREAM, SHARD_0, trim).await.unwrap();
        let request = pb::GetRecordsRequest {
            shard_iterator: it,
            limit: None,
        };
        match client.get_records(request).await {
            Ok(reply) => {
                return reply
                    .into_inner()
                    .records
                    .into_iter()
                    .map(|r| (r.sequence_number, r.data.to_vec()))
                    .collect();
            }
            Err(status) => assert_status(
                &status,
                Code::FailedPrecondition,
                "ExpiredIteratorException",
            ),
        }
    }
    panic!("every one of {tries} fresh iterators expired before its first use");
}

#[test]
fn the_cli_prints_the_reason_and_exits_by_kind_of_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let unknown = server.cli(&["describe-stream", "--stream-name", "nope"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(
        unknown.stderr.contains(
            "An error occurred (ResourceNotFoundException) when calling the DescribeStream operation: "
        ),
        "{unknown:?}"
    );
    assert!(unknown.stdout.is_empty());

    server
        .cli(&["create-stream", "--stream-name", "c", "--shard-count", "1"])
        .ok();
    let it = server
        .cli(&[
            "get-shard-iterator",
            "--stream-name",
            "c",
            "--shard-id",
            SHARD_0,
            "--shard-iterator-type",
            "LATEST",
        ])
        .json()["ShardIterator"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = server.cli(&["get-records", "--shard-iterator", &forge(&it, it.len() / 2)]);
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(
        forged.stderr.contains("(InvalidArgumentException)"),
        "{forged:?}"
    );

    let usage = server.cli(&["put-record", "--stream-name", "c"]);
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // A port nobody listens on: bind one, then close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let refused = support::cli(&endpoint, &["list-streams"]);
    assert_eq!(refused.code, Some(3), "{refused:?}");
    assert!(refused.stderr.contains("connection failed"), "{refused:?}");

    // The server is still fine.
    server
        .cli(&[
            "put-record",
            "--stream-name",
            "c",
            "--partition-key",
            "k",
            "--data",
            "still here",
        ])
        .ok();
}

async fn unknown_stream(client: &mut Client) {
    let describe = client
        .describe_stream(pb::DescribeStreamRequest {
            stream_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&describe, Code::NotFound, "ResourceNotFoundException");
    let put = client
        .put_record(pb::PutRecordRequest {
            stream_name: "nope".into(),
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: b"x".to_vec().into(),
        })
        .await
        .unwrap_err();
    assert_status(&put, Code::NotFound, "ResourceNotFoundException");
    let trim = position(pb::ShardIteratorType::TrimHorizon);
    let it = iterator(client, "nope", SHARD_0, trim).await.unwrap_err();
    assert_status(&it, Code::NotFound, "ResourceNotFoundException");
}

async fn bad_shard_id(client: &mut Client) {
    for shard in ["shardId-000000000099", "garbage"] {
        let trim = position(pb::ShardIteratorType::TrimHorizon);
        let status = iterator(client, STREAM, shard, trim).await.unwrap_err();
        assert_status(&status, Code::NotFound, "ResourceNotFoundException");
        assert!(status.message().contains(shard), "{status:?}");
    }
}

/// Data plus partition key may reach 1 MiB, and not one byte more.
async fn oversize_record(client: &mut Client, expected: &mut Vec<(String, Vec<u8>)>) {
    let mib = 1024 * 1024;
    let status = client
        .put_record(pb::PutRecordRequest {
            stream_name: STREAM.into(),
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: vec![7u8; mib].into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "ValidationException");
    let largest = vec![8u8; mib - 1];
    expected.push(put_to(client, "0", &largest).await);
}

async fn expired_iterator(client: &mut Client) {
    let trim = position(pb::ShardIteratorType::TrimHorizon);
    let it = iterator(client, STREAM, SHARD_0, trim).await.unwrap();
    // More than the lifetime passes; a slower machine only makes the iterator older.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = client
        .get_records(pb::GetRecordsRequest {
            shard_iterator: it,
            limit: None,
        })
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::FailedPrecondition,
        "ExpiredIteratorException",
    );
}

async fn forged_iterator(client: &mut Client) {
    let trim = position(pb::ShardIteratorType::TrimHorizon);
    let it = iterator(client, STREAM, SHARD_0, trim).await.unwrap();
    for index in [0, it.len() / 3, it.len() / 2, it.len() - 2] {
        let status = client
            .get_records(pb::GetRecordsRequest {
                shard_iterator: forge(&it, index),
                limit: None,
            })
            .await
            .unwrap_err();
        assert_status(&status, Code::InvalidArgument, "InvalidArgumentException");
    }
    for garbage in ["", "not an iterator", "AAAA"] {
        let status = client
            .get_records(pb::GetRecordsRequest {
                shard_iterator: garbage.into(),
                limit: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
}

async fn foreign_sequence_number(client: &mut Client, number_of_shard_0: &str) {
    for kind in [
        pb::ShardIteratorType::AtSequenceNumber,
        pb::ShardIteratorType::AfterSequenceNumber,
    ] {
        let at = pb::StartingPosition {
            r#type: kind as i32,
            sequence_number: Some(number_of_shard_0.to_owned()),
            timestamp_ms: None,
        };
        let status = iterator(client, STREAM, SHARD_1, at).await.unwrap_err();
        assert_status(&status, Code::InvalidArgument, "InvalidArgumentException");
    }
    let malformed = pb::StartingPosition {
        r#type: pb::ShardIteratorType::AtSequenceNumber as i32,
        sequence_number: Some("12x".into()),
        timestamp_ms: None,
    };
    let status = iterator(client, STREAM, SHARD_0, malformed)
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "InvalidArgumentException");
}

/// Puts a record with an explicit hash key; returns its sequence number and data.
async fn put_to(client: &mut Client, hash_key: &str, data: &[u8]) -> (String, Vec<u8>) {
    let reply = client
        .put_record(pb::PutRecordRequest {
            stream_name: STREAM.into(),
            partition_key: "k".into(),
            explicit_hash_key: Some(hash_key.into()),
            data: data.to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    (reply.sequence_number, data.to_vec())
}

/// A put and a read still work, and shard 0 holds exactly the records put so far.
async fn check_healthy(client: &mut Client, expected: &mut Vec<(String, Vec<u8>)>) {
    let data = format!("healthy {}", expected.len()).into_bytes();
    expected.push(put_to(client, "0", &data).await);
    let trim = position(pb::ShardIteratorType::TrimHorizon);
    let read = support::read_shard(client, STREAM, SHARD_0, trim).await;
    let got: Vec<(String, Vec<u8>)> = read
        .records
        .into_iter()
        .map(|r| (r.sequence_number, r.data.to_vec()))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == *expected,
        "shard 0 does not hold exactly what was put"
    );
    // The other shard was never written.
    let trim = position(pb::ShardIteratorType::TrimHorizon);
    let it = iterator(client, STREAM, SHARD_1, trim).await.unwrap();
    assert!(get(client, &it).await.records.is_empty());
}

/// `it` with the character at `index` replaced by a different one of the same alphabet.
fn forge(it: &str, index: usize) -> String {
    let mut bytes = it.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
