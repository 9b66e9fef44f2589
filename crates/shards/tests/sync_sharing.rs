//! Many shards written at once share the disk's syncs: a put spread over 200 shards costs
//! far fewer than 200 syncs, and every record acknowledged through a shared `syncfs`
//! survives a power cut.

// Test helpers panic on failure, as the tests themselves do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{config, open_sim, put};
use sluice_shards::{CreateStream, ShardManager};
use sluice_storage::{CrashMode, SimFs, TimestampMs};

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

#[test]
fn concurrent_puts_over_many_shards_share_syncs_and_survive_a_power_cut() {
    let fs = SimFs::new();
    let m = open_sim(&fs, config(), 10).unwrap();
    m.create_stream(&CreateStream::new("s", SHARDS), TimestampMs(10))
        .unwrap();
    // Syncs slow enough that 64 writers always overlap more than 4 of them.
    fs.set_sync_delay(std::time::Duration::from_millis(10));
    let acked = write_everywhere(&m, 64, 5);
    let stats = m.sync_stats();
    assert_eq!(acked.len(), 64 * 5);
    assert!(
        stats.filesystem_syncs > 0,
        "nothing was coalesced: {stats:?}"
    );
    assert!(
        stats.file_syncs + stats.filesystem_syncs < stats.requests,
        "every group commit cost its own sync: {stats:?}"
    );
    eprintln!("{stats:?}");
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
