//! The Kinesis semantics of the engine, against real files: the classic walkthrough's
//! iterator boundaries, iterator and sequence-number errors, limits, and restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_broker::{
    Broker, BrokerConfig, CreateStream, Error, PutRecordInput, PutRecordsEntry, StartingPosition,
    StreamStatus, TimestampMs,
};

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

fn rec(key: &str, data: &str) -> PutRecordInput {
    PutRecordInput {
        partition_key: key.into(),
        explicit_hash_key: None,
        data: Bytes::from(data.to_owned()),
    }
}

async fn read_all(b: &Broker, it: String) -> Vec<String> {
    let out = b.get_records(&it, None).await.unwrap();
    out.records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect()
}

async fn one_shard(dir: &std::path::Path) -> Arc<Broker> {
    let b = Broker::open(config(dir)).unwrap();
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    let d = b.describe_stream("s", None, None).await.unwrap();
    assert_eq!(d.status, StreamStatus::Active);
    b
}

#[tokio::test]
async fn the_walkthrough_boundaries_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let b = one_shard(dir.path()).await;
    let mut seqs = Vec::new();
    let mut times = Vec::new();
    for i in 1..=6 {
        let out = b
            .put_record("s", rec("pk", &format!("test{i}")))
            .await
            .unwrap();
        assert_eq!(out.shard_id, "shardId-000000000000");
        seqs.push(out.sequence_number);
        times.push(sluice_broker::seqnum::SequenceNumber::decode(seqs.last().unwrap()).unwrap());
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let all: Vec<String> = (1..=6).map(|i| format!("test{i}")).collect();
    let it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    assert_eq!(read_all(&b, it).await, all);
    let it = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AtSequenceNumber(seqs[5].clone()),
        )
        .await
        .unwrap();
    assert_eq!(read_all(&b, it).await, vec!["test6"]);
    let it = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AfterSequenceNumber(seqs[4].clone()),
        )
        .await
        .unwrap();
    assert_eq!(read_all(&b, it).await, vec!["test6"]);
    // LATEST: nothing until new records arrive, then exactly those.
    let latest = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::Latest)
        .await
        .unwrap();
    let out = b.get_records(&latest, None).await.unwrap();
    assert!(out.records.is_empty());
    assert_eq!(out.millis_behind_latest, 0);
    b.put_record("s", rec("pk", "test7")).await.unwrap();
    assert_eq!(
        read_all(&b, out.next_shard_iterator.unwrap()).await,
        vec!["test7"]
    );
    // AT_TIMESTAMP between records 3 and 4 starts at record 4.
    let t3 = b
        .get_records(
            &b.get_shard_iterator(
                "s",
                "shardId-0",
                StartingPosition::AtSequenceNumber(seqs[2].clone()),
            )
            .await
            .unwrap(),
            Some(2),
        )
        .await
        .unwrap();
    let (a, c) = (
        t3.records[0].approximate_arrival_timestamp.0,
        t3.records[1].approximate_arrival_timestamp.0,
    );
    assert!(c > a, "records 3 and 4 arrived in different milliseconds");
    let it = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AtTimestamp(TimestampMs(a + 1)),
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(&b, it).await,
        vec!["test4", "test5", "test6", "test7"]
    );
    // Sequence numbers: 56-digit decimals that increase.
    for w in seqs.windows(2) {
        assert_eq!(w[0].len(), 56);
        assert!((w[0].len(), &w[0]) < (w[1].len(), &w[1]));
    }
}

#[tokio::test]
async fn limit_and_next_iterator_walk_the_whole_shard() {
    let dir = tempfile::tempdir().unwrap();
    let b = one_shard(dir.path()).await;
    let batch: Vec<PutRecordInput> = (0..250)
        .map(|i| rec(&format!("k{i}"), &format!("r{i}")))
        .collect();
    let out = b.put_records("s", batch).await.unwrap();
    assert_eq!(out.failed_record_count, 0);
    let mut it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..10 {
        let out = b.get_records(&it, Some(40)).await.unwrap();
        assert!(out.records.len() <= 40);
        if out.records.is_empty() {
            assert_eq!(out.millis_behind_latest, 0);
            break;
        }
        got.extend(out.records.into_iter().map(|r| r.data));
        it = out.next_shard_iterator.unwrap();
    }
    assert_eq!(got.len(), 250);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, d)| d == &Bytes::from(format!("r{i}")))
    );
}

#[tokio::test]
async fn an_iterator_older_than_its_lifetime_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        iterator_ttl_ms: 100,
        ..config(dir.path())
    })
    .unwrap();
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    let it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    // At least the lifetime passes (a slower machine only makes the iterator older).
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        matches!(b.get_records(&it, None).await, Err(Error::ExpiredIterator(m)) if m.starts_with("Iterator expired."))
    );
}

/// Runs with the default five-minute iterator lifetime: every iterator here is used long
/// before it could expire, however slow the machine.
#[tokio::test]
async fn bad_iterators_and_foreign_sequence_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    b.create_stream(CreateStream::new("s", 2)).await.unwrap();
    let put = b
        .put_records("s", (0..20).map(|i| rec(&format!("k{i}"), "x")).collect())
        .await
        .unwrap();
    let on = |shard: &str| {
        put.records
            .iter()
            .find_map(|r| match r {
                PutRecordsEntry::Ok(o) if o.shard_id == shard => Some(o.sequence_number.clone()),
                _ => None,
            })
            .unwrap()
    };
    let it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    // Altered by one character: refused, not misread.
    let mut forged = it.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(
        matches!(b.get_records(&forged, None).await, Err(Error::InvalidArgument(m)) if m == "Invalid ShardIterator.")
    );
    assert!(matches!(
        b.get_records("garbage", None).await,
        Err(Error::InvalidArgument(_))
    ));
    // A number from shard 1 used on shard 0.
    let err = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AtSequenceNumber(on("shardId-000000000001")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("It encodes shardId-000000000001")),
        "{err}"
    );
    let err = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AtSequenceNumber("12345".into()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    // Unknown stream and shard.
    assert!(matches!(
        b.get_shard_iterator("nope", "shardId-0", StartingPosition::Latest)
            .await,
        Err(Error::ResourceNotFound(_))
    ));
    assert!(matches!(
        b.get_shard_iterator("s", "shardId-000000000009", StartingPosition::Latest)
            .await,
        Err(Error::ResourceNotFound(_))
    ));
    assert!(matches!(
        b.get_shard_iterator("s", "bogus", StartingPosition::Latest)
            .await,
        Err(Error::ResourceNotFound(_))
    ));
    let future = TimestampMs(u64::MAX / 2);
    assert!(matches!(
        b.get_shard_iterator("s", "shardId-0", StartingPosition::AtTimestamp(future))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    // An iterator of a deleted stream does not read a new stream of the same name.
    let it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    b.delete_stream("s").await.unwrap();
    b.run_maintenance().await.unwrap();
    b.create_stream(CreateStream::new("s", 2)).await.unwrap();
    assert!(matches!(
        b.get_records(&it, None).await,
        Err(Error::ResourceNotFound(_))
    ));
}

#[tokio::test]
async fn puts_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let b = one_shard(dir.path()).await;
    assert!(matches!(
        b.put_record("nope", rec("k", "x")).await,
        Err(Error::ResourceNotFound(_))
    ));
    assert!(matches!(
        b.put_record("s", rec("", "x")).await,
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        b.put_record("s", rec(&"k".repeat(257), "x")).await,
        Err(Error::Validation(_))
    ));
    let big = PutRecordInput {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: Bytes::from(vec![0u8; 1024 * 1024]),
    };
    assert!(
        matches!(b.put_record("s", big).await, Err(Error::Validation(_))),
        "data + key over 1 MiB"
    );
    let fits = PutRecordInput {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: Bytes::from(vec![0u8; 1024 * 1024 - 1]),
    };
    b.put_record("s", fits).await.unwrap();
    let bad_hash = PutRecordInput {
        explicit_hash_key: Some("340282366920938463463374607431768211456".into()),
        ..rec("k", "x")
    };
    assert!(matches!(
        b.put_record("s", bad_hash).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.put_records("s", Vec::new()).await,
        Err(Error::Validation(_))
    ));
    assert!(matches!(
        b.put_records("s", (0..501).map(|_| rec("k", "x")).collect())
            .await,
        Err(Error::Validation(_))
    ));
    let six = (0..6)
        .map(|_| PutRecordInput {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from(vec![1u8; 1000 * 1000]),
        })
        .collect();
    assert!(
        matches!(
            b.put_records("s", six).await,
            Err(Error::InvalidArgument(_))
        ),
        "over 5 MiB in one call"
    );
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let seqs: Vec<String>;
    {
        let b = one_shard(dir.path()).await;
        b.create_stream(CreateStream::new("t", 2)).await.unwrap();
        b.split_shard("t", "shardId-000000000000", "100")
            .await
            .unwrap();
        common::wait_active(&b, "t").await;
        let out = b
            .put_records("s", (0..10).map(|i| rec("k", &format!("v{i}"))).collect())
            .await
            .unwrap();
        seqs = out
            .records
            .iter()
            .map(|r| match r {
                PutRecordsEntry::Ok(o) => o.sequence_number.clone(),
                PutRecordsEntry::Failed { .. } => panic!(),
            })
            .collect();
        b.shutdown().await.unwrap();
    }
    let b = Broker::open(config(dir.path())).unwrap();
    let it = b
        .get_shard_iterator(
            "s",
            "shardId-000000000000",
            StartingPosition::AtSequenceNumber(seqs[3].clone()),
        )
        .await
        .unwrap();
    let out = b.get_records(&it, None).await.unwrap();
    assert_eq!(out.records.len(), 7);
    assert_eq!(out.records[0].sequence_number, seqs[3]);
    let d = b.describe_stream("t", None, None).await.unwrap();
    assert_eq!(d.shards.len(), 4);
    assert_eq!(
        d.shards[2].parent_shard_id.as_deref(),
        Some("shardId-000000000000")
    );
    assert!(d.shards[0].ending_sequence_number.is_some());
}

#[tokio::test]
async fn a_second_broker_cannot_open_the_same_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = Broker::open(config(dir.path())).unwrap();
    let err = Broker::open(config(dir.path())).unwrap_err();
    assert!(
        matches!(&err, Error::ResourceInUse(m) if m.contains("in use by another sluice process")),
        "{err}"
    );
    drop(first);
    Broker::open(config(dir.path())).unwrap();
}
