//! Power cuts inside the long background operations of streams of hundreds of shards: a
//! resize whose worker seals hundreds of parents holding records, the purge and file
//! removal of a deleted stream of hundreds of shards, and hundreds of new shards getting
//! their logs with their first records. Each is cut at a spread of points from the call to
//! the end of its background work (every few operations, plus seeded random ones and the
//! last ones), with and without a torn write, then the disk crashes and the manager
//! reopens.
//!
//! After every recovery: each stream is wholly before or wholly after the change (and
//! after it, if the change was reported committed); every acknowledged record is read back
//! at the shard and sequence it was acknowledged with; no directory outlives its stream or
//! names no live shard; an unrelated stream is untouched; and the manager keeps working.
//!
//! Seeded: `SLUICE_SEED` reruns one seed; the seed is in every failure message.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{DATA, open_sim, settle, shard_dirs};
use sluice_shards::{
    CreateStream, HashKey, ManagerConfig, RouteKey, ShardId, ShardManager, ShardState,
    StreamDescription, uniform_layout,
};
use sluice_storage::{CrashMode, FileSystem, RecordIn, SeqNo, SimFs, SplitMix, TimestampMs};

const T0: u64 = 1_000_000;
const T1: u64 = 2_000_000;
const BIG: &str = "big";
const OTHER: &str = "other";
/// Shards of the big stream: hundreds, as the issue asks.
const SHARDS: u32 = 200;
/// Shards of the new stream, every other one of which gets its first record.
const NEW_SHARDS: u32 = 200;

fn config(status_delay_ms: u64) -> ManagerConfig {
    ManagerConfig {
        status_delay_ms,
        ..common::config()
    }
}

/// Acknowledged records: data -> (stream, shard, sequence).
type Acked = BTreeMap<Vec<u8>, (String, ShardId, SeqNo)>;

/// Puts one record at `hash` and records it as acknowledged; `false` if anything failed.
fn put_at(m: &ShardManager, acked: &mut Acked, stream: &str, hash: u128, t: u64) -> bool {
    let data = format!("{stream}:{hash}:{}", acked.len()).into_bytes();
    let Ok(route) = m.route(
        stream,
        RouteKey::ExplicitHashKey(HashKey(hash)),
        TimestampMs(t),
    ) else {
        return false;
    };
    let record = RecordIn {
        partition_key: b"k",
        explicit_hash_key: Some(hash.to_be_bytes()),
        data: &data,
    };
    match route.log.append(&[record], TimestampMs(t)) {
        Ok(a) => {
            acked.insert(data, (stream.to_owned(), route.shard, a.first));
            true
        }
        Err(_) => false,
    }
}

/// The first key of every `every`-th shard of a uniform layout of `count`.
fn shard_starts(count: u32, every: usize) -> Vec<u128> {
    uniform_layout(count)
        .iter()
        .step_by(every)
        .map(|r| r.start().0)
        .collect()
}

/// A big stream with records in a quarter of its shards (those parents of a resize have
/// logs to seal, the others have none) and a small unrelated stream with records.
fn setup(delay: u64) -> (SimFs, ShardManager, Acked) {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(delay), T0).unwrap();
    let mut acked = Acked::new();
    m.create_stream(&CreateStream::new(BIG, SHARDS), TimestampMs(T0))
        .unwrap();
    m.create_stream(&CreateStream::new(OTHER, 2), TimestampMs(T0))
        .unwrap();
    let active = T0 + delay;
    // A quarter of the shards hold records (and so have logs to seal); the rest have none.
    for hash in shard_starts(SHARDS, 4) {
        assert!(put_at(&m, &mut acked, BIG, hash, active));
    }
    for hash in [0, u128::MAX] {
        assert!(put_at(&m, &mut acked, OTHER, hash, active));
    }
    (fs, m, acked)
}

/// Each stream's description, by name.
fn snapshot(m: &ShardManager, t: u64) -> BTreeMap<String, StreamDescription> {
    common::state(m, t)
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect()
}

/// Every acknowledged record of a stream still present is where it was acknowledged.
fn check_records(m: &ShardManager, acked: &Acked, t: u64, ctx: &str) {
    let live = snapshot(m, t);
    for (data, (stream, shard, seq)) in acked {
        if !live.contains_key(stream) {
            continue;
        }
        let log = m
            .shard(stream, *shard, TimestampMs(t))
            .unwrap_or_else(|e| panic!("{ctx}: {stream} {shard}: {e}"))
            .log
            .unwrap_or_else(|| panic!("{ctx}: {stream} {shard} has no log"));
        let read = log.read(*seq, 1, 1 << 20).unwrap();
        let found = read.records.first().map(|r| (r.seq, r.data.clone()));
        assert_eq!(
            found,
            Some((*seq, data.clone())),
            "{ctx}: an acknowledged record of {stream} {shard} was lost"
        );
    }
}

/// No directory names a stream or shard the catalogue does not have as live.
fn check_directories(fs: &SimFs, m: &ShardManager, t: u64, ctx: &str) {
    let live = snapshot(m, t);
    let mut uids: Vec<String> = live.values().map(|d| format!("{:020}", d.uid)).collect();
    uids.sort();
    let mut on_disk = fs.list_dir(&Path::new(DATA).join("streams")).unwrap();
    on_disk.sort();
    assert!(
        on_disk.iter().all(|dir| uids.contains(dir)),
        "{ctx}: stream directories {on_disk:?}, live streams {uids:?}"
    );
    for d in live.values() {
        let names: Vec<String> = d
            .shards
            .iter()
            .filter(|s| s.state() != ShardState::Expired)
            .map(|s| s.id().to_string())
            .collect();
        let dirs = shard_dirs(fs, d.uid);
        assert!(
            dirs.iter().all(|dir| names.contains(dir)),
            "{ctx}: {}: directories no live shard names",
            d.name
        );
    }
    assert!(
        !fs.exists(&Path::new(DATA).join(sluice_shards::LOST_FOUND_DIR)),
        "{ctx}: something was set aside as lost"
    );
}

/// The crash points for an operation of `total` mutations: every few, seeded random ones,
/// and the last few.
fn crash_points(total: u64, seed: u64) -> Vec<u64> {
    let mut rng = SplitMix(seed);
    let step = (total / 24).max(1);
    let mut points: Vec<u64> = (0..total).step_by(step as usize).collect();
    points.extend((0..8).map(|_| rng.below(total.max(1))));
    points.extend(total.saturating_sub(3)..=total);
    points.sort_unstable();
    points.dedup();
    points
}

/// Runs `op` once without faults to count its mutations, then once per crash point:
/// cut, crash, reopen, check records and directories, and let `check` judge (and go on
/// using) the recovered manager, given whether `op` reported success.
fn crash_inside(
    name: &str,
    delay: u64,
    op: &dyn Fn(&ShardManager, &mut Acked) -> bool,
    check: &dyn Fn(&SimFs, &ShardManager, &Acked, bool, &str),
) {
    let seed = common::seed(0xB16_5EED);
    let (fs, m, mut acked) = setup(delay);
    let before = fs.stats().mutations;
    assert!(op(&m, &mut acked), "{name}: fails without a fault");
    let total = fs.stats().mutations - before;
    let mut rng = SplitMix(seed);
    let mut cut_inside = 0;
    for k in crash_points(total, seed) {
        let (fs, m, mut acked) = setup(delay);
        let tear = rng.chance(1, 2).then(|| rng.below(64) as usize);
        let mode = if rng.chance(1, 2) {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornTail {
                seed: rng.next_u64(),
            }
        };
        fs.power_cut_after(k, tear);
        let done = op(&m, &mut acked);
        cut_inside += u64::from(fs.is_powered_off());
        drop(m);
        fs.crash(mode);
        let ctx = format!(
            "{name}: SLUICE_SEED={seed}, cut after {k} of {total} ops, tear {tear:?}, {mode:?}, op ok {done}"
        );
        let m = open_sim(&fs, config(delay), T1)
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        settle(&m, T1);
        check_records(&m, &acked, T1, &ctx);
        check_directories(&fs, &m, T1, &ctx);
        common::check_stream(&m, OTHER, T1, &[0, u128::MAX]);
        check(&fs, &m, &acked, done, &ctx);
    }
    assert!(
        cut_inside >= total.min(24),
        "{name}: most cuts land inside the operation"
    );
    eprintln!("{name}: {total} operations, {cut_inside} crashes inside them checked");
}

fn resize(m: &ShardManager, acked: &mut Acked) -> bool {
    if m.update_shard_count(BIG, SHARDS + SHARDS / 2, TimestampMs(T1))
        .is_err()
    {
        return false;
    }
    // Puts while the resize is pending go to the parents.
    for hash in shard_starts(SHARDS, 40) {
        if !put_at(m, acked, BIG, hash + 7, T1) {
            return false;
        }
    }
    matches!(m.run_pending(&|| TimestampMs(T1)), Ok(r) if r.reshards_committed.len() == 1)
}

#[test]
fn a_crash_inside_a_resize_of_hundreds_of_shards_leaves_it_wholly_before_or_after() {
    let (_fs, m, mut acked) = setup(0);
    let before = snapshot(&m, T1)[BIG].clone();
    assert!(resize(&m, &mut acked));
    let after = snapshot(&m, T1)[BIG].clone();
    assert_eq!(after.open_shard_count, 300);
    crash_inside("resize", 0, &resize, &|_, m, _, done, ctx| {
        let now = snapshot(m, T1)[BIG].clone();
        assert!(
            now == before || now == after,
            "{ctx}: {BIG} is neither before nor after the resize"
        );
        assert!(!done || now == after, "{ctx}: a committed resize was lost");
        common::check_tiling(m, BIG, T1, &[0, 1 << 127, u128::MAX]);
        let open = now.open_shard_count as u32;
        m.update_shard_count(BIG, open + 1, TimestampMs(T1))
            .unwrap_or_else(|e| panic!("{ctx}: resize after recovery: {e}"));
        assert_eq!(settle(m, T1).reshards_committed.len(), 1, "{ctx}");
    });
}

fn delete(m: &ShardManager, _: &mut Acked) -> bool {
    if m.delete_stream(BIG, TimestampMs(T1 - 100)).is_err() {
        return false;
    }
    let done = matches!(m.run_pending(&|| TimestampMs(T1)), Ok(r) if r.directories_removed == 1);
    done && m.describe_stream(BIG, TimestampMs(T1)).is_err()
}

#[test]
fn a_crash_while_a_deleted_stream_of_hundreds_of_shards_is_purged_and_removed() {
    for delay in [0, 100] {
        crash_inside(
            &format!("delete (delay {delay} ms)"),
            delay,
            &delete,
            &|fs, m, _, _, ctx| {
                // Whether or not DeleteStream itself was cut off, the name is usable again
                // and nothing of a deleted stream stays on disk.
                let deleted = m.describe_stream(BIG, TimestampMs(T1)).is_err();
                if !deleted {
                    m.delete_stream(BIG, TimestampMs(T1 - 100)).unwrap();
                    settle(m, T1);
                }
                m.create_stream(&CreateStream::new(BIG, 3), TimestampMs(T1))
                    .unwrap_or_else(|e| panic!("{ctx}: the name is not reusable: {e}"));
                let uid = m.describe_stream(BIG, TimestampMs(T1)).unwrap().uid;
                let streams = fs.list_dir(&Path::new(DATA).join("streams")).unwrap();
                assert!(
                    streams.iter().all(|s| *s < format!("{uid:020}")),
                    "{ctx}: {streams:?}"
                );
                assert_eq!(
                    streams.len(),
                    1,
                    "{ctx}: only the other stream has files: {streams:?}"
                );
            },
        );
    }
}

fn first_records(m: &ShardManager, acked: &mut Acked) -> bool {
    if m.create_stream(&CreateStream::new("new", NEW_SHARDS), TimestampMs(T1))
        .is_err()
    {
        return false;
    }
    shard_starts(NEW_SHARDS, 2)
        .into_iter()
        .all(|hash| put_at(m, acked, "new", hash, T1))
}

#[test]
fn a_crash_while_hundreds_of_new_shards_get_their_first_records() {
    crash_inside(
        "first records",
        0,
        &first_records,
        &|_, m, acked, done, ctx| {
            let Ok(d) = m.describe_stream("new", TimestampMs(T1)) else {
                assert!(
                    acked.values().all(|(s, ..)| s != "new"),
                    "{ctx}: the stream is gone but records of it were acknowledged"
                );
                assert!(!done, "{ctx}");
                return;
            };
            assert_eq!(d.open_shard_count, NEW_SHARDS as usize, "{ctx}");
            common::check_tiling(m, "new", T1, &[0, 1 << 127, u128::MAX]);
        },
    );
}
