//! Stream management through the public API: the status lifecycle with a configured delay,
//! the operations each status refuses, listing, describing, tags, retention, and every
//! argument and quota error with its Kinesis message.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{config, open_sim, put, settle};
use sluice_shards::{
    CreateStream, Error, HashKey, ManagerConfig, RouteKey, ShardId, ShardManager, StreamStatus,
};
use sluice_storage::{SimFs, TimestampMs};

const T: TimestampMs = TimestampMs(1_000);

fn manager(config: ManagerConfig) -> ShardManager {
    open_sim(&SimFs::new(), config, 0).unwrap()
}

fn with_stream(shards: u32) -> ShardManager {
    let m = manager(config());
    m.create_stream(&CreateStream::new("s", shards), T).unwrap();
    m
}

fn id(i: u64) -> ShardId {
    ShardId::new(i).unwrap()
}

fn invalid(r: sluice_shards::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn limit(r: sluice_shards::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::LimitExceeded(m)) => m,
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}

fn not_found(r: sluice_shards::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::ResourceNotFound(m)) => m,
        other => panic!("expected ResourceNotFound, got {other:?}"),
    }
}

fn in_use(r: sluice_shards::Result<impl std::fmt::Debug>) -> (StreamStatus, String) {
    match r {
        Err(Error::ResourceInUse { status, message }) => (status, message),
        other => panic!("expected ResourceInUse, got {other:?}"),
    }
}

#[test]
fn lifecycle_follows_the_configured_delay() {
    let m = manager(ManagerConfig {
        status_delay_ms: 500,
        ..config()
    });
    let at = |ms| TimestampMs(T.0 + ms);
    m.create_stream(&CreateStream::new("s", 2), T).unwrap();
    let d = m.describe_stream("s", at(499)).unwrap();
    assert_eq!(
        (d.status, d.shards.len(), d.open_shard_count),
        (StreamStatus::Creating, 0, 0)
    );
    assert!(not_found(m.route("s", RouteKey::PartitionKey(b"k"), at(10))).contains("not found"));
    let (status, msg) = in_use(m.split_shard("s", id(0), HashKey(5), at(10)));
    assert_eq!(status, StreamStatus::Creating);
    assert_eq!(
        msg,
        "Stream s under account 000000000000 not ACTIVE, instead in state CREATING"
    );
    in_use(m.add_tags("s", &BTreeMap::from([("k".into(), "v".into())]), at(10)));

    assert_eq!(
        m.describe_stream("s", at(500)).unwrap().status,
        StreamStatus::Active
    );
    m.split_shard("s", id(0), HashKey(1 << 100), at(600))
        .unwrap();
    assert_eq!(
        m.describe_stream("s", at(600)).unwrap().status,
        StreamStatus::Updating
    );
    put(&m, "s", b"during-update", b"x", T.0 + 601);
    let (status, _) = in_use(m.merge_shards("s", id(2), id(3), at(700)));
    assert_eq!(status, StreamStatus::Updating);
    m.add_tags("s", &BTreeMap::from([("k".into(), "v".into())]), at(700))
        .unwrap();
    // Committed at 800, the split still shows UPDATING until the delay from the call ends.
    assert_eq!(settle(&m, T.0 + 800).reshards_committed.len(), 1);
    assert_eq!(
        m.describe_stream("s", at(1099)).unwrap().status,
        StreamStatus::Updating
    );
    assert_eq!(
        m.describe_stream("s", at(1100)).unwrap().status,
        StreamStatus::Active
    );

    m.delete_stream("s", at(2000)).unwrap();
    assert_eq!(
        m.describe_stream("s", at(2499)).unwrap().status,
        StreamStatus::Deleting
    );
    not_found(m.route("s", RouteKey::PartitionKey(b"k"), at(2100)));
    assert_eq!(
        in_use(m.delete_stream("s", at(2100))).0,
        StreamStatus::Deleting
    );
    assert_eq!(
        in_use(m.create_stream(&CreateStream::new("s", 1), at(2100))).0,
        StreamStatus::Deleting
    );
    let uid = m.describe_stream("s", at(2100)).unwrap().uid;
    not_found(m.describe_stream("s", at(2500)));
    let report = m.tick(at(2500)).unwrap();
    assert_eq!(report.streams_purged, vec!["s".to_string()]);
    assert_eq!(report.streams_purged_uids, vec![uid]);
}

#[test]
fn a_name_is_reusable_after_deletion_with_a_new_uid() {
    let m = with_stream(1);
    let first = m.describe_stream("s", T).unwrap().uid;
    m.delete_stream("s", T).unwrap();
    not_found(m.describe_stream("s", T));
    m.create_stream(&CreateStream::new("s", 3), T).unwrap();
    let d = m.describe_stream("s", T).unwrap();
    assert_ne!(d.uid, first);
    assert_eq!(d.shards.len(), 3);
    assert_eq!(d.arn, "arn:aws:kinesis:us-east-1:000000000000:stream/s");
    assert_eq!(m.config().stream_name_from_arn(&d.arn), Some("s"));
}

#[test]
fn list_streams_pages_in_lexicographic_order() {
    let m = manager(config());
    for name in ["b", "a", "c.d", "C"] {
        m.create_stream(&CreateStream::new(name, 1), T).unwrap();
    }
    let page = m.list_streams(None, 2, T).unwrap();
    let names: Vec<_> = page.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!((names, page.has_more), (vec!["C", "a"], true));
    let page = m.list_streams(Some("a"), 10, T).unwrap();
    let names: Vec<_> = page.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!((names, page.has_more), (vec!["b", "c.d"], false));
    invalid(m.list_streams(None, 0, T));
    invalid(m.list_streams(None, 10_001, T));
}

#[test]
fn create_stream_validates_every_argument() {
    let m = with_stream(1);
    assert!(
        invalid(m.create_stream(&CreateStream::new("bad name", 1), T)).contains("[a-zA-Z0-9_.-]")
    );
    assert!(invalid(m.create_stream(&CreateStream::new("", 1), T)).contains("1 to 128"));
    assert!(invalid(m.create_stream(&CreateStream::new("x", 0), T)).contains("at least 1"));
    let mut req = CreateStream::new("x", 1);
    req.retention_hours = 23;
    assert!(
        invalid(m.create_stream(&req, T))
            .starts_with("Minimum allowed retention period is 24 hours")
    );
    req.retention_hours = 24;
    req.max_record_size_kib = 10_241;
    assert!(invalid(m.create_stream(&req, T)).contains("MaxRecordSizeInKiB"));
    req.max_record_size_kib = 1024;
    req.tags = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(invalid(m.create_stream(&req, T)).contains("more than 50 tags"));
    let (status, msg) = in_use(m.create_stream(&CreateStream::new("s", 1), T));
    assert_eq!(status, StreamStatus::Active);
    assert_eq!(msg, "Stream s under account 000000000000 already exists.");
}

#[test]
fn quotas_are_enforced() {
    let m = manager(ManagerConfig {
        open_shards_max: 4,
        shards_per_stream_max: 3,
        ..config()
    });
    assert!(limit(m.create_stream(&CreateStream::new("big", 4), T)).contains("per stream"));
    m.create_stream(&CreateStream::new("s", 3), T).unwrap();
    let msg = limit(m.create_stream(&CreateStream::new("t", 2), T));
    assert!(msg.starts_with("This request would exceed the shard limit for the account 000000000000 in us-east-1. Current shard count for the account: 3. Limit: 4."), "{msg}");
    assert!(limit(m.split_shard("s", id(0), HashKey(1 << 100), T)).contains("open shards"));

    let slow = manager(ManagerConfig {
        status_delay_ms: 100,
        streams_creating_max: 1,
        ..config()
    });
    slow.create_stream(&CreateStream::new("a", 1), T).unwrap();
    assert!(limit(slow.create_stream(&CreateStream::new("b", 1), T)).contains("CREATING"));
    slow.create_stream(&CreateStream::new("b", 1), TimestampMs(T.0 + 100))
        .unwrap();
}

#[test]
fn split_shard_errors_use_the_kinesis_messages() {
    let m = with_stream(1);
    let end = u128::MAX;
    let msg = invalid(m.split_shard("s", id(0), HashKey(1), T));
    assert_eq!(
        msg,
        format!(
            "NewStartingHashKey 1 used in SplitShard() on shard shardId-000000000000 in stream s under account 000000000000 is not both greater than one plus the shard's StartingHashKey 0 and less than the shard's EndingHashKey {end}."
        )
    );
    invalid(m.split_shard("s", id(0), HashKey::MAX, T));
    let msg = not_found(m.split_shard("s", id(9), HashKey(5), T));
    assert_eq!(
        msg,
        "Could not find shard shardId-000000000009 in stream s under account 000000000000."
    );
    not_found(m.split_shard("nope", id(0), HashKey(5), T));
    m.split_shard("s", id(0), HashKey(2), T).unwrap();
    settle(&m, T.0);
    let msg = invalid(m.split_shard("s", id(0), HashKey(1 << 100), T));
    assert!(
        msg.ends_with(
            "has already been merged or split, and thus is not eligible for merging or splitting."
        ),
        "{msg}"
    );
}

#[test]
fn merge_shards_needs_the_lower_shard_first_and_adjacency() {
    let m = with_stream(3);
    let msg = invalid(m.merge_shards("s", id(1), id(0), T));
    assert_eq!(
        msg,
        "Shards shardId-000000000001 and shardId-000000000000 in stream s under account 000000000000 are not an adjacent pair of shards eligible for merging"
    );
    invalid(m.merge_shards("s", id(0), id(2), T));
    not_found(m.merge_shards("s", id(0), id(7), T));
    m.merge_shards("s", id(0), id(1), T).unwrap();
    settle(&m, T.0);
    invalid(m.merge_shards("s", id(0), id(2), T));
    let d = m.describe_stream("s", T).unwrap();
    let child = &d.shards[3];
    assert_eq!(
        (child.parent(), child.adjacent_parent()),
        (Some(id(0)), Some(id(1)))
    );
}

#[test]
fn update_shard_count_limits() {
    let m = manager(ManagerConfig {
        shard_count_updates_per_day_max: 2,
        ..config()
    });
    m.create_stream(&CreateStream::new("s", 4), T).unwrap();
    assert!(
        invalid(m.update_shard_count("s", 9, T))
            .starts_with("UpdateShardCount cannot scale up over double")
    );
    assert!(
        invalid(m.update_shard_count("s", 1, T))
            .starts_with("UpdateShardCount cannot scale down below half")
    );
    invalid(m.update_shard_count("s", 0, T));
    m.update_shard_count("s", 8, T).unwrap();
    settle(&m, T.0);
    m.update_shard_count("s", 5, T).unwrap();
    settle(&m, T.0);
    assert!(limit(m.update_shard_count("s", 6, T)).contains("24 hours"));
    let next_day = TimestampMs(T.0 + 24 * 3_600_000);
    let out = m.update_shard_count("s", 6, next_day).unwrap();
    assert_eq!((out.current, out.target), (5, 6));
}

#[test]
fn retention_changes_check_direction_and_bounds() {
    let m = with_stream(1);
    m.increase_retention("s", 48, T).unwrap();
    let msg = invalid(m.increase_retention("s", 30, T));
    assert_eq!(
        msg,
        "Requested retention period (30 hours) for stream s can not be shorter than existing retention period (48 hours). Use DecreaseRetentionPeriod API."
    );
    let msg = invalid(m.decrease_retention("s", 72, T));
    assert!(msg.ends_with("Use IncreaseRetentionPeriod API."), "{msg}");
    invalid(m.decrease_retention("s", 23, T));
    invalid(m.increase_retention("s", 8761, T));
    m.decrease_retention("s", 24, T).unwrap();
    assert_eq!(m.describe_stream("s", T).unwrap().retention_hours, 24);
}

#[test]
fn tags_are_added_listed_and_removed() {
    let m = with_stream(1);
    let tags: BTreeMap<String, String> =
        (0..5).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    m.add_tags("s", &tags, T).unwrap();
    m.add_tags("s", &BTreeMap::from([("k0".into(), "new".into())]), T)
        .unwrap();
    let page = m.list_tags("s", None, 2, T).unwrap();
    assert_eq!(
        page.tags,
        vec![("k0".into(), "new".into()), ("k1".into(), "v1".into())]
    );
    assert!(page.has_more);
    let page = m.list_tags("s", Some("k3"), 50, T).unwrap();
    assert_eq!((page.tags.len(), page.has_more), (1, false));
    m.remove_tags("s", &["k0".into(), "unknown".into()], T)
        .unwrap();
    assert_eq!(m.list_tags("s", None, 50, T).unwrap().tags.len(), 4);
    invalid(m.remove_tags("s", &[], T));
    invalid(m.remove_tags("s", &vec!["k".to_string(); 51], T));
    invalid(m.add_tags("s", &BTreeMap::new(), T));
    invalid(m.add_tags("s", &BTreeMap::from([("aws:x".into(), "v".into())]), T));
    let many: BTreeMap<String, String> =
        (0..47).map(|i| (format!("m{i}"), String::new())).collect();
    assert!(invalid(m.add_tags("s", &many, T)).contains("more than 50 tags"));
    invalid(m.list_tags("s", None, 51, T));
}

#[test]
fn routing_uses_md5_or_the_explicit_key() {
    let m = with_stream(4);
    let r = m.route("s", RouteKey::PartitionKey(b"a"), T).unwrap();
    assert_eq!(
        (r.shard, r.hash_key.0),
        (id(0), 16955237001963240173058271559858726497)
    );
    let r = m
        .route("s", RouteKey::ExplicitHashKey(HashKey(3 << 126)), T)
        .unwrap();
    assert_eq!(r.shard, id(3));
    not_found(m.route("other", RouteKey::PartitionKey(b"a"), T));
}

#[test]
fn a_split_seals_the_parent_with_its_ending_sequence() {
    let m = with_stream(1);
    for i in 0..3u8 {
        put(&m, "s", &[i], b"x", T.0);
    }
    let before = m.route("s", RouteKey::PartitionKey(b"k"), T).unwrap();
    m.split_shard("s", id(0), HashKey(1 << 127), T).unwrap();
    settle(&m, T.0);
    // An append racing the split lands on the sealed parent and is refused; routing again
    // finds a child.
    let err = before
        .log
        .append(
            &[sluice_storage::RecordIn {
                partition_key: b"k",
                explicit_hash_key: None,
                data: b"x",
            }],
            T,
        )
        .unwrap_err();
    assert!(
        matches!(err, sluice_storage::Error::Sealed { .. }),
        "{err:?}"
    );
    let parent = m.shard("s", id(0), T).unwrap();
    assert_eq!(parent.info.ending_seq(), Some(sluice_storage::SeqNo(2)));
    assert_eq!(parent.children, vec![id(1), id(2)]);
    let (shard, seq) = put(&m, "s", b"k", b"x", T.0);
    assert!(shard == id(1) || shard == id(2));
    assert_eq!(seq, sluice_storage::SeqNo(0));
    assert_eq!(m.list_shards("s", T).unwrap().len(), 3);
}

#[test]
fn a_pending_split_shows_updating_and_keeps_the_parent_until_it_commits() {
    let m = with_stream(1);
    m.split_shard("s", id(0), HashKey(1 << 127), T).unwrap();
    let d = m.describe_stream("s", T).unwrap();
    assert_eq!(
        (d.status, d.shards.len(), d.open_shard_count),
        (StreamStatus::Updating, 1, 1)
    );
    assert_eq!(
        m.list_streams(None, 10, T).unwrap().streams[0].status,
        StreamStatus::Updating
    );
    // Kinesis: during a pending split the parent still receives.
    assert_eq!(put(&m, "s", b"k", b"before", T.0).0, id(0));
    let (status, msg) = in_use(m.update_shard_count("s", 2, T));
    assert_eq!(status, StreamStatus::Updating);
    assert_eq!(
        msg,
        "Stream s under account 000000000000 not ACTIVE, instead in state UPDATING"
    );
    in_use(m.increase_retention("s", 48, T));
    let report = settle(&m, T.0);
    assert_eq!(report.reshards_committed, vec![d.uid]);
    let d = m.describe_stream("s", T).unwrap();
    assert_eq!((d.status, d.open_shard_count), (StreamStatus::Active, 2));
    assert_eq!(d.shards[0].ending_seq(), Some(sluice_storage::SeqNo(0)));
    assert_ne!(put(&m, "s", b"k", b"after", T.0).0, id(0));
}

#[test]
fn a_reshard_pending_when_its_stream_is_deleted_is_given_up() {
    let m = manager(ManagerConfig {
        status_delay_ms: 100,
        ..config()
    });
    m.create_stream(&CreateStream::new("s", 2), T).unwrap();
    let later = TimestampMs(T.0 + 100);
    m.merge_shards("s", id(0), id(1), later).unwrap();
    m.delete_stream("s", later).unwrap();
    assert_eq!(
        m.describe_stream("s", later).unwrap().status,
        StreamStatus::Deleting
    );
    let report = settle(&m, later.0);
    assert_eq!(report.reshards_abandoned.len(), 1);
    assert!(report.reshards_committed.is_empty());
    assert_eq!(m.describe_stream("s", later).unwrap().shards.len(), 2);
    let report = settle(&m, later.0 + 100);
    assert_eq!(report.streams_purged_uids.len(), 1);
    not_found(m.describe_stream("s", TimestampMs(later.0 + 100)));
}

#[test]
fn describe_pages_copy_only_the_shards_asked_for() {
    let m = with_stream(5);
    let (d, more) = m.describe_stream_page("s", Some(id(1)), 2, T).unwrap();
    let ids: Vec<ShardId> = d.shards.iter().map(|s| s.id()).collect();
    assert_eq!((ids, more), (vec![id(2), id(3)], true));
    let (d, more) = m.describe_stream_page("s", Some(id(3)), 2, T).unwrap();
    assert_eq!((d.shards.len(), more), (1, false));
    let (d, more) = m.describe_stream_page("s", None, 0, T).unwrap();
    assert_eq!((d.shards.len(), more, d.open_shard_count), (0, true, 5));
    let (d, more) = m.describe_stream_page("s", Some(id(4)), 100, T).unwrap();
    assert_eq!((d.shards.len(), more), (0, false));
}
