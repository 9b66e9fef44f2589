//! I/O faults: failed syncs poison the log, failed writes (EIO, ENOSPC, torn) fail only the
//! append they hit, and group commit shares syncs between concurrent appends.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_storage::{CrashMode, Error, SplitMix};

fn one(i: u64) -> Rec {
    Rec {
        key: b"k".to_vec(),
        hash: None,
        data: i.to_le_bytes().to_vec(),
    }
}

#[test]
fn failed_sync_poisons_the_log_until_reopened() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let log = open(&fs, &dir, &config).unwrap();
    log.append(&[one(0).as_in()], ts(1)).unwrap();
    sim.fail_nth_sync(0, ErrorKind::Other);
    assert!(matches!(
        log.append(&[one(1).as_in()], ts(2)),
        Err(Error::Poisoned { .. })
    ));
    // No retry: the next append is refused even though the disk works again.
    assert!(matches!(
        log.append(&[one(2).as_in()], ts(3)),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(log.seal(), Err(Error::Poisoned { .. })));
    // Reads still serve what was acknowledged, and nothing that was not.
    let got = read_all(&log);
    assert_eq!(got.len(), 1);
    assert!(one(0).matches(&got[0]));
    drop(log);
    sim.crash(CrashMode::DropUnsynced);
    let log = open(&fs, &dir, &config).unwrap();
    assert!(one(0).matches(&read_all(&log)[0]));
    let a = log.append(&[one(3).as_in()], ts(4)).unwrap();
    assert_eq!(a.first, log.next_seq().0.checked_sub(1).map(seq).unwrap());
}

#[test]
fn disk_full_fails_the_append_and_recovers_when_space_returns() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let log = open(&fs, &dir, &config).unwrap();
    log.append(&[one(0).as_in()], ts(1)).unwrap();
    sim.set_disk_full(true);
    assert!(matches!(
        log.append(&[one(1).as_in()], ts(2)),
        Err(Error::Full { .. })
    ));
    sim.set_disk_full(false);
    let a = log.append(&[one(2).as_in()], ts(3)).unwrap();
    assert_eq!(a.first, seq(1), "the failed record took no sequence");
    let got = read_all(&log);
    assert_eq!(got.len(), 2);
    assert!(one(2).matches(&got[1]));
    drop(log);
    sim.crash(CrashMode::DropUnsynced);
    assert_eq!(read_all(&open(&fs, &dir, &config).unwrap()).len(), 2);
}

#[test]
fn a_torn_write_leaves_no_trace() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let log = open(&fs, &dir, &config).unwrap();
    log.append(&[one(0).as_in()], ts(1)).unwrap();
    sim.fail_nth_write(0, ErrorKind::Other, Some(30));
    let batch = [one(1), one(2), one(3)];
    let ins: Vec<_> = batch.iter().map(Rec::as_in).collect();
    assert!(matches!(log.append(&ins, ts(2)), Err(Error::Io { .. })));
    log.append(&[one(4).as_in()], ts(3)).unwrap();
    for mode in [CrashMode::DropUnsynced, CrashMode::TornTail { seed: 3 }] {
        let got = read_all(&log);
        assert_eq!(got.len(), 2);
        assert!(one(4).matches(&got[1]));
        sim.crash(mode);
    }
    let log = open(&fs, &dir, &config).unwrap();
    assert_eq!(read_all(&log).len(), 2);
}

#[test]
fn a_failed_roll_does_not_lose_or_duplicate_records() {
    let config = small_config();
    for k in 0..60 {
        let (sim, fs, dir) = sim();
        let log = open(&fs, &dir, &config).unwrap();
        let mut rng = SplitMix(k);
        let mut acked = Vec::new();
        sim.fail_nth_write(k, ErrorKind::StorageFull, None);
        for i in 0..40 {
            let r = random_rec(&mut rng, i, 400);
            if log.append(&[r.as_in()], ts(i)).is_ok() {
                acked.push(r);
            }
        }
        let got = read_all(&log);
        assert_eq!(got.len(), acked.len(), "k {k}");
        assert!(acked.iter().zip(&got).all(|(a, g)| a.matches(g)), "k {k}");
        drop(log);
        sim.crash(CrashMode::DropUnsynced);
        let got = read_all(&open(&fs, &dir, &config).unwrap());
        assert_eq!(got.len(), acked.len(), "k {k} after crash");
    }
}

#[test]
fn group_commit_shares_syncs_between_concurrent_appends() {
    let (sim, fs, dir) = sim();
    // A sync slow enough that the other appenders write while it runs, even on a loaded
    // machine; no rolls or checkpoints, so every sync counted is a data sync.
    sim.set_sync_delay(Duration::from_millis(5));
    let config = sluice_storage::LogConfig {
        segment_bytes_max: 1 << 20,
        checkpoint_interval_bytes: 1 << 30,
        ..small_config()
    };
    let log = Arc::new(open(&fs, &dir, &config).unwrap());
    let before = sim.stats().syncs;
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    log.append(&[one(t * 100 + i).as_in()], ts(1)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = sim.stats().syncs - before;
    assert_eq!(read_all(&log).len(), 200);
    // One sync per append would be 200; sharing makes it far fewer.
    assert!(
        syncs <= 120,
        "200 appends from 8 threads took {syncs} syncs"
    );
}
