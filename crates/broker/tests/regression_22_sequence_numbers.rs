//! Issue 22, item 9: sequence numbers from another stream or incarnation were accepted,
//! and numbers beyond a shard's end gave an iterator that never returned anything.
//!
//! The broker checked only a number's shard index and its shard's creation second, so a
//! number of stream A's shard 0 was accepted on stream B's shard 0 when both were created
//! in the same second, and a number of a deleted stream on the new stream of the same
//! name. AT_/AFTER_SEQUENCE_NUMBER with a made-up counter (10^12, 2^63-1) gave an iterator
//! (or a subscription) positioned past the end, which never returned later records.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use sluice_broker::seqnum::SequenceNumber;
use sluice_broker::{
    Broker, BrokerConfig, CreateStream, Error, PutRecordInput, StartingPosition, StreamView,
};

const SHARD: &str = "shardId-000000000000";
/// Attempts at creating two streams within one second before the test gives up.
const SAME_SECOND_ATTEMPTS: usize = 50;

fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap()
}

fn rec(data: &'static str) -> PutRecordInput {
    PutRecordInput {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: Bytes::from_static(data.as_bytes()),
    }
}

async fn describe(b: &Broker, name: &str) -> StreamView {
    b.describe_stream(name, None, None).await.unwrap()
}

/// The creation second of a stream's shard 0, from its starting sequence number.
async fn shard_created_s(b: &Broker, name: &str) -> u64 {
    let d = describe(b, name).await;
    SequenceNumber::decode(&d.shards[0].starting_sequence_number)
        .unwrap()
        .shard_created_s
}

/// Creates `first` (unless it exists) and `second`, one shard each, until both shards
/// were created in the same second: the case the old check could not tell apart.
async fn create_in_one_second(b: &Broker, first: &str, second: &str) {
    for _ in 0..SAME_SECOND_ATTEMPTS {
        if b.describe_stream(first, None, None).await.is_err() {
            b.create_stream(CreateStream::new(first, 1)).await.unwrap();
        }
        b.create_stream(CreateStream::new(second, 1)).await.unwrap();
        if shard_created_s(b, first).await == shard_created_s(b, second).await {
            return;
        }
        b.delete_stream(first).await.unwrap();
        b.delete_stream(second).await.unwrap();
    }
    panic!("no two streams were created within one second in {SAME_SECOND_ATTEMPTS} attempts");
}

fn assert_foreign(result: Result<String, Error>) {
    match result {
        Err(Error::InvalidArgument(m)) => {
            assert!(m.contains("did not come from this stream"), "{m}");
        }
        other => panic!("a foreign number was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_of_another_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    create_in_one_second(&b, "a", "b").await;
    b.put_record("b", rec("b0")).await.unwrap();
    let n = b.put_record("a", rec("a0")).await.unwrap().sequence_number;
    for position in [
        StartingPosition::AtSequenceNumber(n.clone()),
        StartingPosition::AfterSequenceNumber(n.clone()),
    ] {
        assert!(
            b.get_shard_iterator("a", SHARD, position.clone())
                .await
                .is_ok()
        );
        assert_foreign(b.get_shard_iterator("b", SHARD, position.clone()).await);
        let sub = b
            .subscribe("b", SHARD, position)
            .await
            .map(|_| String::new());
        assert_foreign(sub);
    }
    // The starting number DescribeStream shows belongs to its own stream only, too.
    let start = describe(&b, "a").await.shards[0]
        .starting_sequence_number
        .clone();
    assert_foreign(
        b.get_shard_iterator("b", SHARD, StartingPosition::AtSequenceNumber(start))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_of_a_deleted_incarnation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let mut old = None;
    for _ in 0..SAME_SECOND_ATTEMPTS {
        b.create_stream(CreateStream::new("s", 1)).await.unwrap();
        let created = shard_created_s(&b, "s").await;
        let n = b.put_record("s", rec("old")).await.unwrap().sequence_number;
        b.delete_stream("s").await.unwrap();
        b.create_stream(CreateStream::new("s", 1)).await.unwrap();
        if shard_created_s(&b, "s").await == created {
            old = Some(n);
            break;
        }
        b.delete_stream("s").await.unwrap();
    }
    let old = old.expect("a stream recreated within the second");
    b.put_record("s", rec("new")).await.unwrap();
    assert_foreign(
        b.get_shard_iterator("s", SHARD, StartingPosition::AtSequenceNumber(old))
            .await,
    );
}

/// `n` with its counter replaced.
fn with_counter(n: &str, counter: u64) -> String {
    let n = SequenceNumber::decode(n).unwrap();
    SequenceNumber { counter, ..n }.encode()
}

fn assert_beyond_end(result: Result<String, Error>, text: &str) {
    let expected = format!(
        "StartingSequenceNumber {text} used in GetShardIterator on shard {SHARD} in stream s under account 000000000000 is invalid."
    );
    match result {
        Err(Error::InvalidArgument(m)) => assert_eq!(m, expected),
        other => panic!("a number beyond the shard's end was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_beyond_the_shards_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    let mut last = String::new();
    for data in ["r0", "r1", "r2"] {
        last = b.put_record("s", rec(data)).await.unwrap().sequence_number;
    }
    let counter = SequenceNumber::decode(&last).unwrap().counter;
    for made_up in [counter + 1, 1_000_000_000_000, i64::MAX as u64] {
        let text = with_counter(&last, made_up);
        for position in [
            StartingPosition::AtSequenceNumber(text.clone()),
            StartingPosition::AfterSequenceNumber(text.clone()),
        ] {
            let it = b.get_shard_iterator("s", SHARD, position.clone()).await;
            assert_beyond_end(it, &text);
            let sub = b
                .subscribe("s", SHARD, position)
                .await
                .map(|_| String::new());
            assert_beyond_end(sub, &text);
        }
    }
    // The newest record's number is not beyond the end: AFTER it reads what comes later.
    let it = b
        .get_shard_iterator("s", SHARD, StartingPosition::AfterSequenceNumber(last))
        .await
        .unwrap();
    b.put_record("s", rec("r3")).await.unwrap();
    let out = b.get_records(&it, None).await.unwrap();
    let data: Vec<&[u8]> = out.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, [b"r3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_shards_ending_number_positions_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    let last = b.put_record("s", rec("r0")).await.unwrap().sequence_number;
    b.split_shard("s", SHARD, &(1u128 << 127).to_string())
        .await
        .unwrap();
    common::wait_active(&b, "s").await;
    let d = describe(&b, "s").await;
    let ending = d.shards[0].ending_sequence_number.clone().unwrap();
    let it = b
        .get_shard_iterator("s", SHARD, StartingPosition::AtSequenceNumber(ending))
        .await
        .unwrap();
    let out = b.get_records(&it, None).await.unwrap();
    assert!(out.records.is_empty());
    assert_eq!(out.next_shard_iterator, None);
    assert_eq!(out.child_shards.len(), 2);
    // A made-up counter past the closed shard's last record is still refused.
    let text = with_counter(&last, 1_000_000_000_000);
    let it = b
        .get_shard_iterator("s", SHARD, StartingPosition::AtSequenceNumber(text.clone()))
        .await;
    assert_beyond_end(it, &text);
}
