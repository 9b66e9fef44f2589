//! Helpers shared by the integration tests: opening a manager on a simulated or real disk,
//! putting records, and capturing a comparable picture of the whole catalogue.

// Not every test file uses every helper, and helpers panic on failure like the tests do.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_shards::{
    ManagerConfig, RouteKey, ShardId, ShardInfo, ShardManager, ShardState, StreamDescription,
};
use sluice_storage::{FileSystem, LogConfig, RecordIn, SegmentCache, SeqNo, SimFs, TimestampMs};

/// The data directory used on simulated disks.
pub const DATA: &str = "/data";

/// A configuration with small logs so tests stay fast.
pub fn config() -> ManagerConfig {
    ManagerConfig {
        log: LogConfig {
            segment_bytes_max: 64 * 1024,
            ..LogConfig::default()
        },
        shard_count_updates_per_day_max: 1_000,
        // Small, so that replay after an automatic compaction is exercised everywhere.
        journal_compact_bytes: 1024,
        ..ManagerConfig::default()
    }
}

/// Opens (recovering) the manager on a simulated disk.
pub fn open_sim(
    fs: &SimFs,
    config: ManagerConfig,
    now: u64,
) -> sluice_shards::Result<ShardManager> {
    ShardManager::open(
        fs.shared(),
        Path::new(DATA),
        config,
        SegmentCache::new(64),
        TimestampMs(now),
    )
}

/// Opens (recovering) the manager on the real disk.
pub fn open_real(
    dir: &Path,
    config: ManagerConfig,
    now: u64,
) -> sluice_shards::Result<ShardManager> {
    let fs: Arc<dyn FileSystem> = sluice_storage::RealFs::shared();
    ShardManager::open(fs, dir, config, SegmentCache::new(64), TimestampMs(now))
}

/// Puts one record, routing again if a reshard sealed the shard first.
pub fn put(m: &ShardManager, stream: &str, key: &[u8], data: &[u8], now: u64) -> (ShardId, SeqNo) {
    for _ in 0..3 {
        let route = m
            .route(stream, RouteKey::PartitionKey(key), TimestampMs(now))
            .unwrap();
        let record = RecordIn {
            partition_key: key,
            explicit_hash_key: None,
            data,
        };
        match route.log.append(&[record], TimestampMs(now)) {
            Ok(a) => return (route.shard, a.first),
            Err(sluice_storage::Error::Sealed { .. }) => continue,
            Err(e) => panic!("append failed: {e}"),
        }
    }
    panic!("route kept returning sealed shards");
}

/// Puts one record with an explicit hash key (so the caller picks the shard).
pub fn put_hash(m: &ShardManager, stream: &str, hash: u128, now: u64) -> (ShardId, SeqNo) {
    let route = m
        .route(
            stream,
            RouteKey::ExplicitHashKey(sluice_shards::HashKey(hash)),
            TimestampMs(now),
        )
        .unwrap();
    let record = RecordIn {
        partition_key: b"k",
        explicit_hash_key: Some(hash.to_be_bytes()),
        data: b"data",
    };
    let a = route.log.append(&[record], TimestampMs(now)).unwrap();
    (route.shard, a.first)
}

/// Runs the background work a reshard or deletion left (as the broker's worker would), at
/// a fixed time.
pub fn settle(m: &ShardManager, now: u64) -> sluice_shards::WorkReport {
    m.run_pending(&|| TimestampMs(now)).unwrap()
}

/// Every stream's description, by name: what "the state" means in comparisons.
pub fn state(m: &ShardManager, now: u64) -> Vec<StreamDescription> {
    let page = m.list_streams(None, 10_000, TimestampMs(now)).unwrap();
    page.streams
        .iter()
        .map(|s| m.describe_stream(&s.name, TimestampMs(now)).unwrap())
        .collect()
}

/// Checks the invariants of one stream through the public API: open shards tile the
/// hash-key space, routing agrees with the ranges, lineage is a DAG where each closed shard
/// has one or two children, and every live shard has its log (open ones unsealed; reading
/// a shard creates its log if it had none).
pub fn check_stream(m: &ShardManager, name: &str, now: u64, probes: &[u128]) {
    let d = check_tiling(m, name, now, probes);
    for s in &d.shards {
        let handle = m.shard(name, s.id(), TimestampMs(now)).unwrap();
        match (s.state(), &handle.log) {
            (ShardState::Expired, log) => assert!(log.is_none()),
            (ShardState::Closed, Some(log)) => {
                assert!(log.is_sealed());
                assert_eq!(Some(log.next_seq()), s.closed().map(|c| c.end));
            }
            (ShardState::Open, Some(log)) => assert!(!log.is_sealed()),
            (state, None) => panic!("{name}: {state:?} shard {} has no log", s.id()),
        }
    }
}

/// The part of [`check_stream`] that reads no shard's log (so it creates none): tiling,
/// routing of the probes (whose shards do get logs), and lineage.
pub fn check_tiling(m: &ShardManager, name: &str, now: u64, probes: &[u128]) -> StreamDescription {
    let d = m.describe_stream(name, TimestampMs(now)).unwrap();
    let mut open: Vec<&ShardInfo> = d
        .shards
        .iter()
        .filter(|s| s.state() == ShardState::Open)
        .collect();
    open.sort_by_key(|s| s.range().start());
    assert_eq!(
        open.first().map(|s| s.range().start().0),
        Some(0),
        "{name}: tiling starts at 0"
    );
    assert_eq!(
        open.last().map(|s| s.range().end().0),
        Some(u128::MAX),
        "{name}: tiling ends at 2^128-1"
    );
    for pair in open.windows(2) {
        assert_eq!(
            pair[0].range().end().0 + 1,
            pair[1].range().start().0,
            "{name}: gap or overlap"
        );
    }
    for &key in probes {
        let route = m
            .route(
                name,
                RouteKey::ExplicitHashKey(sluice_shards::HashKey(key)),
                TimestampMs(now),
            )
            .unwrap();
        let owners: Vec<ShardId> = open
            .iter()
            .filter(|s| s.range().contains(route.hash_key))
            .map(|s| s.id())
            .collect();
        assert_eq!(
            owners,
            vec![route.shard],
            "{name}: key {key} routes to exactly its owner"
        );
        assert!(
            !route.log.is_sealed(),
            "{name}: open shard {} has a sealed log",
            route.shard
        );
    }
    for (i, s) in d.shards.iter().enumerate() {
        assert_eq!(s.id().index(), i as u64, "{name}: ids are dense");
        for p in [s.parent(), s.adjacent_parent()].into_iter().flatten() {
            assert!(p < s.id(), "{name}: parent {p} of {} is not older", s.id());
        }
        let children = d
            .shards
            .iter()
            .filter(|c| c.parent() == Some(s.id()) || c.adjacent_parent() == Some(s.id()))
            .count();
        match s.state() {
            ShardState::Open => assert_eq!(children, 0, "{name}: open {} has children", s.id()),
            _ => assert!(
                (1..=2).contains(&children),
                "{name}: closed {} has {children} children",
                s.id()
            ),
        }
    }
    d
}

/// The shard directories that exist on a simulated disk for a stream uid.
pub fn shard_dirs(fs: &SimFs, uid: u64) -> Vec<String> {
    let dir = stream_dir(uid);
    let mut names = fs.list_dir(&dir).unwrap_or_default();
    names.sort();
    names
}

/// The directory of a stream uid on the simulated disk.
pub fn stream_dir(uid: u64) -> PathBuf {
    Path::new(DATA).join("streams").join(format!("{uid:020}"))
}

/// The seed for randomized tests: `SLUICE_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
