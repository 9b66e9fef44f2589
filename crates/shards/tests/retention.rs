//! Retention of closed shards and start-up cleanup, on the real file system: a closed shard
//! whose records have all expired loses its log but stays describable; directories that no
//! live shard names (a crash's leftovers) are removed when the manager opens.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{config, open_real, put};
use sluice_shards::{CreateStream, HashKey, ShardId, ShardState};
use sluice_storage::TimestampMs;

const HOUR_MS: u64 = 3_600_000;
const T: u64 = 1_700_000_000_000;

#[test]
fn an_expired_closed_shard_loses_its_log_but_keeps_its_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let m = open_real(dir.path(), config(), T).unwrap();
    m.create_stream(&CreateStream::new("s", 1), TimestampMs(T))
        .unwrap();
    put(&m, "s", b"k", b"old", T);
    m.split_shard(
        "s",
        ShardId::new(0).unwrap(),
        HashKey(1 << 127),
        TimestampMs(T + 10),
    )
    .unwrap();
    common::settle(&m, T + 10);
    let parent_dir = m
        .shard("s", ShardId::new(0).unwrap(), TimestampMs(T))
        .unwrap()
        .log
        .unwrap()
        .dir()
        .to_path_buf();

    let not_yet = T + 10 + 24 * HOUR_MS - 1;
    assert_eq!(m.tick(TimestampMs(not_yet)).unwrap().shards_expired, vec![]);
    let due = T + 10 + 24 * HOUR_MS;
    let report = m.tick(TimestampMs(due)).unwrap();
    assert_eq!(
        report.shards_expired,
        vec![("s".to_string(), ShardId::new(0).unwrap())]
    );
    let uid = m.describe_stream("s", TimestampMs(due)).unwrap().uid;
    assert_eq!(
        report.shards_expired_by_uid,
        vec![(uid, ShardId::new(0).unwrap())]
    );
    assert!(!parent_dir.exists(), "expired log removed");

    let handle = m
        .shard("s", ShardId::new(0).unwrap(), TimestampMs(due))
        .unwrap();
    assert_eq!(handle.info.state(), ShardState::Expired);
    assert!(handle.log.is_none());
    let listed: Vec<ShardId> = m
        .list_shards("s", TimestampMs(due))
        .unwrap()
        .iter()
        .map(|s| s.id())
        .collect();
    assert_eq!(
        listed,
        vec![ShardId::new(1).unwrap(), ShardId::new(2).unwrap()]
    );
    assert_eq!(
        m.describe_stream("s", TimestampMs(due))
            .unwrap()
            .shards
            .len(),
        3
    );
    common::check_stream(&m, "s", due, &[0, u128::MAX]);

    // A crash between journaling the expiry and removing the log leaves a directory the
    // catalogue no longer names: start-up removes it.
    std::fs::create_dir_all(&parent_dir).unwrap();
    drop(m);
    let m = open_real(dir.path(), config(), due).unwrap();
    assert!(!parent_dir.exists());
    assert_eq!(
        m.shard("s", ShardId::new(0).unwrap(), TimestampMs(due))
            .unwrap()
            .info
            .state(),
        ShardState::Expired
    );
}

#[test]
fn decreasing_retention_expires_closed_shards_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let m = open_real(dir.path(), config(), T).unwrap();
    let mut req = CreateStream::new("s", 2);
    req.retention_hours = 48;
    m.create_stream(&req, TimestampMs(T)).unwrap();
    m.merge_shards(
        "s",
        ShardId::new(0).unwrap(),
        ShardId::new(1).unwrap(),
        TimestampMs(T),
    )
    .unwrap();
    common::settle(&m, T);
    let day = T + 24 * HOUR_MS;
    assert!(m.tick(TimestampMs(day)).unwrap().shards_expired.is_empty());
    m.decrease_retention("s", 24, TimestampMs(day)).unwrap();
    assert_eq!(m.tick(TimestampMs(day)).unwrap().shards_expired.len(), 2);
}

#[test]
fn start_up_removes_directories_no_live_shard_names() {
    let dir = tempfile::tempdir().unwrap();
    let m = open_real(dir.path(), config(), T).unwrap();
    m.create_stream(&CreateStream::new("s", 2), TimestampMs(T))
        .unwrap();
    let uid = m.describe_stream("s", TimestampMs(T)).unwrap().uid;
    // Shard 0 gets its directory with its first record; shard 1 never has one.
    common::put_hash(&m, "s", 0, T);
    drop(m);
    let streams = dir.path().join("streams");
    let stream = streams.join(format!("{uid:020}"));
    let strays = [
        stream.join("shardId-000000000002"),
        stream.join("shardId-000000000000.deleted"),
        streams.join(format!("{:020}", uid + 7)),
    ];
    for s in &strays {
        std::fs::create_dir_all(s).unwrap();
    }
    let m = open_real(dir.path(), config(), T).unwrap();
    for s in &strays {
        assert!(!s.exists(), "{} survived start-up", s.display());
    }
    assert!(stream.join("shardId-000000000000").exists());
    assert!(!stream.join("shardId-000000000001").exists());
    common::check_stream(&m, "s", T, &[0, u128::MAX]);
}

/// A shard's directory is created with its first record and is durable before that
/// record is acknowledged, so only damage (not a crash) removes one. Start-up refuses to
/// serve a shard the journal says closed holding records when its log is missing; an open
/// shard's missing directory cannot be told from one never written and reads as empty.
#[test]
fn a_missing_log_of_a_shard_that_closed_with_records_is_reported_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let m = open_real(dir.path(), config(), T).unwrap();
    m.create_stream(&CreateStream::new("s", 1), TimestampMs(T))
        .unwrap();
    common::put_hash(&m, "s", 0, T);
    m.split_shard(
        "s",
        ShardId::new(0).unwrap(),
        HashKey(1 << 127),
        TimestampMs(T),
    )
    .unwrap();
    common::settle(&m, T);
    common::put_hash(&m, "s", 0, T);
    let log_dir = |m: &sluice_shards::ShardManager, i| {
        m.shard("s", ShardId::new(i).unwrap(), TimestampMs(T))
            .unwrap()
            .log
            .unwrap()
            .dir()
            .to_path_buf()
    };
    let (parent, child) = (log_dir(&m, 0), log_dir(&m, 1));
    drop(m);

    std::fs::remove_dir_all(&child).unwrap();
    let m = open_real(dir.path(), config(), T).unwrap();
    let read = m
        .shard("s", ShardId::new(1).unwrap(), TimestampMs(T))
        .unwrap()
        .log
        .unwrap()
        .read(sluice_storage::SeqNo(0), 10, 1 << 20)
        .unwrap();
    assert!(
        read.records.is_empty(),
        "an open shard's lost log reads as empty"
    );
    drop(m);

    std::fs::remove_dir_all(&parent).unwrap();
    let err = open_real(dir.path(), config(), T).unwrap_err();
    assert!(
        matches!(&err, sluice_shards::Error::Corrupt { path, .. } if *path == parent),
        "{err:?}"
    );
}
