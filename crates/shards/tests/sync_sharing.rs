//! Many shards written at once share the disk's syncs: a put spread over 200 shards costs
//! far fewer than 200 syncs, and every record acknowledged through a shared `syncfs`
//! survives a power cut. Where `syncfs` flushes nothing (FUSE, the simulated disk's
//! default), it is never used, and every acknowledged record survives too.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{config, open_sim, put};
use sluice_shards::{CreateStream, RouteKey, ShardManager};
use sluice_storage::{CrashMode, SimFs, SyncfsPolicy, TimestampMs};

const SHARDS: u32 = 200;

fn write_everywhere(m: &ShardManager, threads: usize, per_thread: usize) -> Vec<Vec<u8>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let data = format!("t{t}-r{i}").into_bytes();
                            put(m, "s", format!("key-{t}-{i}").as_bytes(), &data, 11);
                            data
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn all_records(m: &ShardManager) -> Vec<Vec<u8>> {
    let d = m.describe_stream("s", TimestampMs(20)).unwrap();
    let mut out = Vec::new();
    for sh in &d.shards {
        let log = m.shard("s", sh.id(), TimestampMs(20)).unwrap().log.unwrap();
        let batch = log.read(sluice_storage::SeqNo(0), 10_000, 1 << 26).unwrap();
        out.extend(batch.records.into_iter().map(|r| r.data.to_vec()));
    }
    out
}

/// Long enough for any machine: the waits below return as soon as their event happens.
const LONG: Duration = Duration::from_secs(60);

/// Writer threads in the first test.
const WRITERS: usize = 64;

/// How many shards the writers' first records go to.
fn first_shards(m: &ShardManager) -> u64 {
    let shards: std::collections::BTreeSet<_> = (0..WRITERS)
        .map(|t| {
            let key = format!("key-{t}-0");
            let key = RouteKey::PartitionKey(key.as_bytes());
            m.route("s", key, TimestampMs(11)).unwrap().shard
        })
        .collect();
    shards.len() as u64
}

/// Ordered by a gate, not by time. The direct syncs (`sync_coalesce_after` of them) and
/// the first `syncfs` are held at the gate, so no put finishes: every writer stops at its
/// first record, and each other shard those records went to queues one request behind
/// that `syncfs` (writers sharing a shard share its log's request). Once all of them
/// have queued, the gate opens: one more `syncfs` answers them all, so all but one of
/// them cost no sync of their own, however the threads are scheduled.
#[test]
fn concurrent_puts_over_many_shards_share_syncs_and_survive_a_power_cut() {
    let fs = SimFs::new();
    // A file system whose syncfs flushes every file, as ext4, xfs and btrfs do.
    fs.set_syncfs_flushes(true);
    let m = open_sim(&fs, config(), 10).unwrap();
    m.create_stream(&CreateStream::new("s", SHARDS), TimestampMs(10))
        .unwrap();
    let direct = m.config().sync_coalesce_after as u64;
    // Shards whose request queues behind the held syncfs (which holds one more).
    let queued = first_shards(&m) - direct - 1;
    assert!(queued >= 16, "too few shards to queue: {queued}");
    let acked = std::thread::scope(|scope| {
        // Owned by this closure: a failed assertion drops it, which opens it.
        let gate = fs.gate_syncs();
        let writers = scope.spawn(|| write_everywhere(&m, WRITERS, 5));
        assert!(
            gate.wait_arrived(direct + 1, LONG),
            "the direct syncs and a syncfs never started"
        );
        let deadline = Instant::now() + LONG;
        while m.sync_stats().waiting < 1 + queued {
            assert!(
                Instant::now() < deadline,
                "shards never queued for a syncfs"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = m.sync_stats();
        assert_eq!(
            (held.file_syncs, held.filesystem_syncs, held.waiting),
            (direct, 1, 1 + queued),
            "{held:?}"
        );
        assert_eq!(gate.arrived(), direct + 1, "a sync started meanwhile");
        gate.open();
        writers.join().unwrap()
    });
    let stats = m.sync_stats();
    assert_eq!(acked.len(), WRITERS * 5);
    assert!(stats.filesystem_syncs >= 2, "{stats:?}");
    // Every request costs at most one sync (its own fdatasync, or the syncfs it leads);
    // the queued ones shared one.
    assert!(
        stats.file_syncs + stats.filesystem_syncs <= stats.requests - (queued - 1),
        "queued shards did not share a syncfs: {stats:?}"
    );
    eprintln!("{queued} queued behind the first syncfs; {stats:?}");
    // Power goes while the manager is still open: no clean close syncs anything for it.
    fs.crash(CrashMode::TornTail { seed: 7 });
    std::mem::forget(m);
    let m = open_sim(&fs, config(), 20).unwrap();
    let mut found = all_records(&m);
    found.sort();
    let mut want = acked;
    want.sort();
    assert_eq!(found, want, "acknowledged records lost or duplicated");
}

#[test]
fn coalescing_off_means_one_fdatasync_per_group_commit() {
    let fs = SimFs::new();
    let mut c = config();
    c.sync_coalesce_after = 0;
    let m = open_sim(&fs, c, 10).unwrap();
    m.create_stream(&CreateStream::new("s", 20), TimestampMs(10))
        .unwrap();
    write_everywhere(&m, 8, 10);
    let stats = m.sync_stats();
    assert_eq!(stats.filesystem_syncs, 0);
    assert_eq!(stats.file_syncs, stats.requests);
}

/// Issue 22, item 14: on a FUSE file system `syncfs` returns 0 without flushing anything,
/// and when more than `sync_coalesce_after` shards waited, one `syncfs` answered them all:
/// 455 acknowledged records were lost in one power cut. `syncfs` is now used only where the
/// file system is known to flush with it; the simulated disk's default `syncfs` flushes
/// nothing, like FUSE.
#[test]
fn where_syncfs_flushes_nothing_every_acknowledged_put_survives_a_power_cut() {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(), 10).unwrap();
    m.create_stream(&CreateStream::new("s", SHARDS), TimestampMs(10))
        .unwrap();
    let gate = fs.gate_syncs();
    let acked = std::thread::scope(|scope| {
        // One record per writer, so (nearly always) one per shard: no later sync of the
        // same file can cover for a sync that flushed nothing.
        let writers = scope.spawn(|| write_everywhere(&m, 12, 1));
        // More shards wait for a sync at once than may sync on their own (4): a build
        // that coalesces them into one syncfs here has its leader at the gate by now.
        assert!(gate.wait_arrived(5, LONG), "fewer than five syncs waited");
        gate.open();
        writers.join().unwrap()
    });
    let syncfs_calls = m.sync_stats().filesystem_syncs;
    fs.crash(CrashMode::DropUnsynced);
    std::mem::forget(m);
    let m = open_sim(&fs, config(), 20).unwrap();
    let mut found = all_records(&m);
    found.sort();
    let mut want = acked;
    want.sort();
    assert_eq!(
        want.len()
            - want
                .iter()
                .filter(|w| found.binary_search(w).is_ok())
                .count(),
        0,
        "acknowledged records lost ({syncfs_calls} syncfs calls)"
    );
    assert_eq!(found, want);
    assert_eq!(syncfs_calls, 0, "syncfs was trusted");
}

#[test]
fn the_operator_may_force_syncfs_or_forbid_it() {
    let fs = SimFs::new();
    let mut c = config();
    c.syncfs = SyncfsPolicy::Always;
    assert!(open_sim(&fs, c.clone(), 10).unwrap().sync_uses_syncfs());
    fs.set_syncfs_flushes(true);
    c.syncfs = SyncfsPolicy::Never;
    assert!(!open_sim(&fs, c, 10).unwrap().sync_uses_syncfs());
}
