//! Crash at every mutating disk operation of a split and of a merge, from the call to the
//! end of the background work that commits it (a power cut after `k` operations, for every
//! `k`, with and without a torn write, dropping or tearing unsynced bytes), then reopen:
//! each stream is wholly before or wholly after the change, no shard directory is
//! orphaned, every open shard has an unsealed log, the records put before are all still
//! there, and the reopened manager keeps working.
//!
//! Seeded: set `SLUICE_SEED` to rerun one seed; the seed is in every failure message.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{DATA, open_sim, put, settle, shard_dirs, state};
use sluice_shards::ManagerConfig;
use sluice_shards::{CreateStream, HashKey, ShardId, ShardManager, ShardState, StreamDescription};
use sluice_storage::{CrashMode, FileSystem, SimFs, TimestampMs};

const T0: u64 = 1_000_000;

thread_local! {
    /// Compaction threshold for this test thread: tiny makes every change compact.
    static COMPACT_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(1 << 20) };
}

fn config() -> ManagerConfig {
    ManagerConfig {
        journal_compact_bytes: COMPACT_BYTES.with(|c| c.get()),
        ..common::config()
    }
}
const T1: u64 = 2_000_000;

/// A stream of two shards with records in both.
fn setup() -> (SimFs, ShardManager) {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(), T0).unwrap();
    m.create_stream(&CreateStream::new("s", 2), TimestampMs(T0))
        .unwrap();
    for i in 0..6u32 {
        put(&m, "s", format!("key-{i}").as_bytes(), b"payload", T0 + 1);
    }
    (fs, m)
}

/// An operation and the background work that commits it; `Ok` once it committed.
type Op = fn(&ShardManager) -> Result<(), String>;

fn split(m: &ShardManager) -> Result<(), String> {
    m.split_shard(
        "s",
        ShardId::new(0).unwrap(),
        HashKey(1 << 126),
        TimestampMs(T1),
    )
    .map_err(|e| e.to_string())?;
    finish(m)
}

fn merge(m: &ShardManager) -> Result<(), String> {
    m.merge_shards(
        "s",
        ShardId::new(0).unwrap(),
        ShardId::new(1).unwrap(),
        TimestampMs(T1),
    )
    .map_err(|e| e.to_string())?;
    finish(m)
}

/// Runs the background work of an accepted reshard: `Ok` when it committed.
fn finish(m: &ShardManager) -> Result<(), String> {
    let report = m
        .run_pending(&|| TimestampMs(T1))
        .map_err(|e| e.to_string())?;
    match report.reshards_committed.len() {
        1 => Ok(()),
        _ => Err(format!("not committed: {report:?}")),
    }
}

/// The state after the operation ran without faults.
fn expected_after(op: Op) -> Vec<StreamDescription> {
    let (_fs, m) = setup();
    op(&m).unwrap();
    state(&m, T1)
}

fn record_count(m: &ShardManager, d: &StreamDescription) -> u64 {
    d.shards
        .iter()
        .map(|s| {
            let log = m.shard("s", s.id(), TimestampMs(T1)).unwrap().log.unwrap();
            log.read(sluice_storage::SeqNo(0), 1000, 1 << 20)
                .unwrap()
                .records
                .len() as u64
        })
        .sum()
}

fn crash_everywhere(name: &str, op: Op) {
    let seed = common::seed(0x5EED);
    let after = expected_after(op);
    let modes = [CrashMode::DropUnsynced, CrashMode::TornTail { seed }];
    let mut saw_before = false;
    let mut saw_after = false;
    let mut iterations = 0;
    for mode in modes {
        for tear in [None, Some(7)] {
            for k in 0..10_000u64 {
                let (fs, m) = setup();
                let before = state(&m, T1);
                fs.power_cut_after(k, tear);
                let result = op(&m);
                let cut = fs.is_powered_off();
                drop(m);
                fs.crash(mode);
                let ctx = format!(
                    "{name}: seed {seed}, mode {mode:?}, tear {tear:?}, cut after {k} ops ({result:?})"
                );
                let m = open_sim(&fs, config(), T1)
                    .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                let now = state(&m, T1);
                let is_before = now == before;
                assert!(
                    is_before || now == after,
                    "{ctx}: state is neither before nor after:\n{now:#?}"
                );
                assert!(
                    !is_before || result.is_err(),
                    "{ctx}: an acknowledged change was lost"
                );
                saw_before |= is_before;
                saw_after |= !is_before;
                check_recovered(&fs, &m, &now[0], &ctx);
                let later = state(&m, T1 + 2);
                drop(m);
                let m = open_sim(&fs, config(), T1 + 2)
                    .unwrap_or_else(|e| panic!("{ctx}: second reopen failed: {e}"));
                assert_eq!(
                    state(&m, T1 + 2),
                    later,
                    "{ctx}: a clean reopen changed the state"
                );
                iterations += 1;
                if !cut {
                    assert!(result.is_ok(), "{ctx}: failed without a fault");
                    break;
                }
            }
        }
    }
    assert!(
        saw_before && saw_after,
        "{name}: the crash points covered both outcomes"
    );
    eprintln!("{name}: {iterations} crashes checked");
}

/// What must hold after any crash: every directory is a live shard's (shards never
/// written need none), open logs are unsealed, closed ones sealed, no record was lost, and
/// the manager takes more changes.
fn check_recovered(fs: &SimFs, m: &ShardManager, d: &StreamDescription, ctx: &str) {
    let live: Vec<String> = d
        .shards
        .iter()
        .filter(|s| s.state() != ShardState::Expired)
        .map(|s| s.id().to_string())
        .collect();
    let dirs = shard_dirs(fs, d.uid);
    assert!(
        dirs.iter().all(|dir| live.contains(dir)),
        "{ctx}: directories {dirs:?} that no live shard of {live:?} names"
    );
    let streams = fs
        .list_dir(&std::path::Path::new(DATA).join("streams"))
        .unwrap();
    assert_eq!(
        streams.len(),
        1,
        "{ctx}: stray stream directories {streams:?}"
    );
    common::check_stream(m, "s", T1, &[0, 1 << 126, (1 << 127) + 5, u128::MAX]);
    assert_eq!(record_count(m, d), 6, "{ctx}: records lost");
    put(m, "s", b"after-crash", b"x", T1 + 1);
    let target = d.open_shard_count as u32 + 1;
    m.update_shard_count("s", target, TimestampMs(T1 + 2))
        .unwrap_or_else(|e| panic!("{ctx}: resize after recovery failed: {e}"));
    assert_eq!(settle(m, T1 + 2).reshards_committed.len(), 1, "{ctx}");
    common::check_stream(m, "s", T1 + 2, &[0, 1 << 126, u128::MAX]);
}

#[test]
fn crash_at_every_operation_of_a_split() {
    crash_everywhere("split", split);
}

#[test]
fn crash_at_every_operation_of_a_split_that_compacts_the_journal() {
    COMPACT_BYTES.with(|c| c.set(1));
    crash_everywhere("split+compact", split);
}

#[test]
fn crash_at_every_operation_of_a_merge() {
    crash_everywhere("merge", merge);
}

/// An I/O error (no crash) at every sync of a split: the call fails, the manager either
/// still works in the before state or refuses everything as poisoned, and a reopen finds
/// the stream wholly before or after.
#[test]
fn an_io_error_at_every_sync_of_a_split_poisons_or_rolls_back() {
    let after = expected_after(split);
    let mut poisoned_seen = false;
    for n in 0..1_000u64 {
        let (fs, m) = setup();
        let before = state(&m, T1);
        fs.fail_nth_sync(n, std::io::ErrorKind::Other);
        let result = split(&m);
        let ctx = format!("sync {n} fails ({result:?})");
        if result.is_ok() {
            assert_eq!(state(&m, T1), after, "{ctx}");
            break;
        }
        match m.route(
            "s",
            sluice_shards::RouteKey::PartitionKey(b"k"),
            TimestampMs(T1),
        ) {
            Err(sluice_shards::Error::Poisoned { .. }) => poisoned_seen = true,
            // The failed sync was a new shard log's, created by this very route.
            Err(sluice_shards::Error::Storage(_)) => {}
            Ok(_) => assert_eq!(
                state(&m, T1),
                before,
                "{ctx}: a failed split changed the live state"
            ),
            Err(e) => panic!("{ctx}: unexpected routing error {e}"),
        }
        drop(m);
        fs.clear_faults();
        let m = open_sim(&fs, config(), T1).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
        let now = state(&m, T1);
        assert!(
            now == before || now == after,
            "{ctx}: neither before nor after"
        );
        check_recovered(&fs, &m, &now[0], &ctx);
    }
    assert!(poisoned_seen, "some sync failure hit the journal");
}
