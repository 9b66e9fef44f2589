//! I/O faults: failed syncs poison the log, failed writes (EIO, ENOSPC, torn) and failed
//! opens (EMFILE) fail only the append they hit and never poison it, an append that failed
//! leaves no record behind, and group commit shares syncs between concurrent appends.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Long enough for any machine: the waits below return as soon as their event happens.
const LONG: Duration = Duration::from_secs(60);

/// Waits until `done` holds, looking every millisecond; fails naming `what` after [`LONG`].
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not after {LONG:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ordered by a gate, not by time: the first append's sync is held at the gate until
/// seven more appends have written, so all seven wait for a sync while one runs, however
/// the threads are scheduled. Group commit must then cover all seven with one more sync.
#[test]
fn group_commit_shares_syncs_between_concurrent_appends() {
    let (sim, fs, dir) = sim();
    // No rolls or checkpoints, so every sync counted is a data sync.
    let config = sluice_storage::LogConfig {
        segment_bytes_max: 1 << 20,
        checkpoint_interval_bytes: 1 << 30,
        ..small_config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let before = sim.stats().syncs;
    std::thread::scope(|scope| {
        // Owned by this closure: a failed assertion drops it, which opens it, so no
        // appender is left waiting when the scope joins them.
        let gate = sim.gate_syncs();
        let log = &log;
        let first = scope.spawn(move || log.append(&[one(0).as_in()], ts(1)).unwrap());
        assert!(gate.wait_arrived(1, LONG), "the first append never synced");
        let rest: Vec<_> = (1..8u64)
            .map(|i| scope.spawn(move || log.append(&[one(i).as_in()], ts(1)).unwrap()))
            .collect();
        wait_until("seven appends written behind a running sync", || {
            log.next_seq() == seq(8)
        });
        assert_eq!(gate.arrived(), 1, "a second sync started while one ran");
        gate.open();
        let mut firsts: Vec<u64> = std::iter::once(first)
            .chain(rest)
            .map(|h| h.join().unwrap().first.0)
            .collect();
        firsts.sort_unstable();
        assert_eq!(firsts, (0..8).collect::<Vec<_>>());
    });
    let syncs = sim.stats().syncs - before;
    // One sync per append would be 8: the seven that waited together share one.
    assert_eq!(
        syncs, 2,
        "8 appends, 7 written while the first one's sync ran, took {syncs} syncs"
    );
    let mut got: Vec<Vec<u8>> = read_all(&log)
        .into_iter()
        .map(|r| r.data.to_vec())
        .collect();
    got.sort_unstable();
    let mut want: Vec<Vec<u8>> = (0..8).map(|i| one(i).data).collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

/// A record of 100 bytes of data, `i` in every byte.
fn hundred(i: u64) -> Rec {
    Rec {
        key: b"k".to_vec(),
        hash: None,
        data: vec![i as u8; 100],
    }
}

/// A log whose active segment takes exactly three more 100-byte records before it must
/// roll, and the records acknowledged so far.
fn three_from_a_roll(
    fs: &Arc<dyn sluice_storage::FileSystem>,
    dir: &std::path::Path,
) -> (sluice_storage::Log, Vec<Rec>) {
    let config = small_config();
    let log = open(fs, dir, &config).unwrap();
    let rec = hundred;
    let frame_len = sluice_storage::frame::encoded_len(&rec(0).as_in()) as u64;
    // A 40-byte header, then as many frames as fit, less three.
    let fit = (config.segment_bytes_max - 40) / frame_len;
    let mut acked = Vec::new();
    for i in 0..fit - 3 {
        let r = rec(i);
        log.append(&[r.as_in()], ts(i)).unwrap();
        acked.push(r);
    }
    assert_eq!(log.segment_count(), 1);
    (log, acked)
}

/// Issue 22, item 4: a roll that failed to open a file (EMFILE while descriptors were
/// exhausted) poisoned the log as if a sync had failed; every later put failed until a
/// restart, and shutdown exited with an error. Only a failed sync may poison.
#[test]
fn a_failed_open_during_a_roll_fails_that_append_and_never_poisons_the_log() {
    let config = small_config();
    let mut failures = 0;
    for k in 0..10 {
        let (sim, fs, dir) = sim();
        let (log, mut acked) = three_from_a_roll(&fs, &dir);
        // Five records that do not fit in the three places left: the append rolls.
        let five: Vec<Rec> = (0..5).map(|i| hundred(100 + i)).collect();
        let ins: Vec<_> = five.iter().map(Rec::as_in).collect();
        sim.fail_nth_open(k, ErrorKind::Other);
        match log.append(&ins, ts(500)) {
            Ok(_) => acked.extend(five),
            Err(e) => {
                failures += 1;
                assert!(
                    !matches!(e, Error::Poisoned { .. }) && !e.to_string().contains("poisoned"),
                    "open {k}: {e}"
                );
            }
        }
        sim.clear_faults();
        // The log takes appends again (the roll is retried) and closes cleanly.
        let after = one(2000 + k);
        log.append(&[after.as_in()], ts(501))
            .unwrap_or_else(|e| panic!("open {k}: the log refuses appends: {e}"));
        acked.push(after);
        log.close()
            .unwrap_or_else(|e| panic!("open {k}: close failed: {e}"));
        assert_eq!(read_all(&log).len(), acked.len(), "open {k}");
        drop(log);
        sim.crash(CrashMode::DropUnsynced);
        assert_eq!(
            read_all(&open(&fs, &dir, &config).unwrap()).len(),
            acked.len()
        );
    }
    assert!(failures > 0, "no open of the roll failed");
}

/// Issue 22, item 5: a batch written partly before a roll and partly after it was reported
/// failed when the roll failed, yet its first records had been synced by the roll and
/// were readable at once and after a restart. A failed append leaves no record behind.
#[test]
fn a_batch_whose_roll_failed_is_not_readable_now_or_after_a_restart() {
    let config = small_config();
    for k in 0..10 {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepWritten] {
            let (sim, fs, dir) = sim();
            let (log, mut acked) = three_from_a_roll(&fs, &dir);
            let five: Vec<Rec> = (0..5).map(|i| hundred(200 + i)).collect();
            let ins: Vec<_> = five.iter().map(Rec::as_in).collect();
            sim.fail_nth_open(k, ErrorKind::Other);
            if log.append(&ins, ts(500)).is_ok() {
                acked.extend(five);
            }
            sim.clear_faults();
            let check = |log: &sluice_storage::Log, when: &str| {
                let got = read_all(log);
                assert_eq!(got.len(), acked.len(), "open {k}, {when}: {mode:?}");
                assert!(
                    acked.iter().zip(&got).all(|(a, g)| a.matches(g)),
                    "open {k}"
                );
            };
            check(&log, "at once");
            drop(log);
            sim.crash(mode);
            check(&open(&fs, &dir, &config).unwrap(), "after a restart");
        }
    }
}
