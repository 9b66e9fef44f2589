//! Regression tests for issue 22, item 13: damage found at recovery must never lead to a
//! sequence number given to two records. Recovery truncated the active segment at the
//! first bad frame and gave the numbers of the acknowledged records after it to new
//! records, so a consumer that had checkpointed past them read other records under the
//! same numbers; and a damaged sealed segment stopped start-up with no way forward.
//!
//! Now the damaged bytes are set aside, the numbers they may have held are given up (a
//! recorded gap that reads step over), numbering goes on above every number ever
//! acknowledged (the recovery point keeps a reservation), and `repair` sets a damaged
//! sealed segment aside and starts.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sluice_storage::{CrashMode, Error, FileSystem, Log, LogConfig, SeqNo, SimFs, SplitMix};

const LOST_FOUND: &str = "/data/lost+found";

/// Few recovery points, so damage lands after the newest one; damaged bytes go to a
/// lost+found directory beside the log's parent.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        checkpoint_interval_bytes: 1 << 30,
        set_aside_dir: Some(PathBuf::from(LOST_FOUND)),
        ..small_config()
    }
}

/// Appends `n` records one at a time (each acknowledged), from id `first`.
fn append(log: &Log, rng: &mut SplitMix, first: u64, n: u64) -> Vec<Rec> {
    (first..first + n)
        .map(|i| {
            let r = random_rec(rng, i, 200);
            let a = log.append(&[r.as_in()], ts(i)).unwrap();
            assert_eq!(
                a.first.0, i,
                "records here are numbered from 0 without gaps"
            );
            r
        })
        .collect()
}

fn append_one(log: &Log, id: u64) -> u64 {
    let r = Rec {
        key: b"k".to_vec(),
        hash: None,
        data: id.to_le_bytes().to_vec(),
    };
    log.append(&[r.as_in()], ts(id)).unwrap().first.0
}

fn segment_files(fs: &SimFs, dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

fn flip(fs: &SimFs, path: &Path, at: usize) -> Vec<u8> {
    let mut bytes = fs.read_file(path).unwrap();
    bytes[at] ^= 0x20;
    fs.overwrite_file(path, &bytes).unwrap();
    bytes
}

/// Every record of `got` is the acknowledged one at its number.
fn check_known(got: &[sluice_storage::Record], acked: &[Rec]) {
    for r in got {
        assert!(
            acked[r.seq.0 as usize].matches(r),
            "record {} differs",
            r.seq
        );
    }
}

#[test]
fn damage_in_the_active_segment_never_gives_a_number_twice() {
    let (sim, fs, dir) = sim();
    let log = open(&fs, &dir, &config()).unwrap();
    let mut rng = SplitMix(7);
    let acked = append(&log, &mut rng, 0, 100);
    drop(log);
    sim.crash(CrashMode::DropUnsynced);
    // A flipped bit in the middle of the records (after the recovery point).
    let active = segment_files(&sim, &dir).pop().unwrap();
    let len = sim.read_file(&active).unwrap().len();
    flip(&sim, &active, len / 2);
    let log = open(&fs, &dir, &config()).unwrap();
    let stats = log.recovery_stats();
    assert!(
        stats.damaged_bytes > 0 && stats.sequences_skipped > 0,
        "{stats:?}"
    );
    let kept = read_all(&log);
    assert!(kept.len() < 100 && !kept.is_empty(), "{} kept", kept.len());
    check_known(&kept, &acked);
    // The dropped bytes were set aside, whole, under lost+found.
    let aside: Vec<String> = fs.list_dir(Path::new(LOST_FOUND)).unwrap();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        aside[0].starts_with("data-shard-0-00000000000000000000-from-"),
        "{aside:?}"
    );
    let copied = sim
        .read_file(&Path::new(LOST_FOUND).join(&aside[0]))
        .unwrap();
    assert_eq!(copied.len() as u64, stats.damaged_bytes);
    // New records are numbered above every acknowledged one.
    let after = append_one(&log, 1000);
    assert!(after >= 100, "number {after} given again");
    // Reads step over the gap, from before it, from inside it, and by time.
    let all = read_all(&log);
    assert_eq!(all.len(), kept.len() + 1);
    assert_eq!(all.last().unwrap().seq.0, after);
    let inside = log.read(SeqNo(kept.len() as u64 + 3), 10, 1 << 20).unwrap();
    assert_eq!(inside.records.len(), 1);
    assert_eq!(inside.records[0].seq.0, after);
    assert_eq!(log.seek_time(ts(500)).unwrap().0, after);
    // And so does the next open, which finds nothing new to report.
    drop(log);
    let log = open(&fs, &dir, &config()).unwrap();
    assert!(!log.recovery_stats().found_damage());
    assert_eq!(read_all(&log).len(), kept.len() + 1);
    assert!(append_one(&log, 1001) > after);
}

#[test]
fn a_cut_active_segment_never_reuses_numbers_acknowledged_after_its_recovery_point() {
    let (sim, fs, dir) = sim();
    let config = LogConfig {
        seq_reserve: 10_000,
        ..config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let mut rng = SplitMix(8);
    let mut acked = append(&log, &mut rng, 0, 100);
    log.close().unwrap();
    acked.extend(append(&log, &mut rng, 100, 50));
    drop(log);
    // The file loses its end, from before the recovery point: records 100..150 were
    // acknowledged after it, and nothing on disk says how many there were.
    let active = segment_files(&sim, &dir).pop().unwrap();
    let bytes = sim.read_file(&active).unwrap();
    sim.overwrite_file(&active, &bytes[..bytes.len() / 3])
        .unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    assert!(log.recovery_stats().found_damage());
    check_known(&read_all(&log), &acked);
    let after = append_one(&log, 2000);
    assert!(after >= 150, "number {after} given again");
}

#[test]
fn the_reservation_is_raised_before_numbers_past_it_are_acknowledged() {
    let (sim, fs, dir) = sim();
    let config = LogConfig {
        seq_reserve: 10,
        ..config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let mut rng = SplitMix(9);
    let acked = append(&log, &mut rng, 0, 100);
    drop(log);
    let active = segment_files(&sim, &dir).pop().unwrap();
    let bytes = sim.read_file(&active).unwrap();
    sim.overwrite_file(&active, &bytes[..bytes.len() / 4])
        .unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    check_known(&read_all(&log), &acked);
    let after = append_one(&log, 2000);
    assert!(after >= 100, "number {after} given again");
}

#[test]
fn repair_sets_a_damaged_sealed_segment_aside_and_reads_step_over_it() {
    let (sim, fs, dir) = sim();
    let config = LogConfig {
        segment_bytes_max: 4096,
        ..config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let mut rng = SplitMix(10);
    let acked = append(&log, &mut rng, 0, 150);
    log.close().unwrap();
    drop(log);
    let segments = segment_files(&sim, &dir);
    assert!(segments.len() > 4);
    let victim = &segments[1];
    let original = sim.read_file(victim).unwrap();
    flip(&sim, victim, original.len() / 2);
    // Without repair the log opens, and reads fail at the damage with its position.
    let log = open(&fs, &dir, &config).unwrap();
    let mut next = SeqNo(0);
    let err = loop {
        match log.read(next, 1000, usize::MAX) {
            Ok(b) => next = b.next,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::Corrupt { ref path, .. } if path == victim),
        "{err}"
    );
    drop(log);
    // With repair: the segment is set aside, its good records kept, the rest a gap.
    let repair = LogConfig {
        repair: true,
        ..config.clone()
    };
    let log = open(&fs, &dir, &repair).unwrap();
    let stats = log.recovery_stats();
    assert_eq!(stats.segments_repaired, 1, "{stats:?}");
    let got = read_all(&log);
    check_known(&got, &acked);
    assert!(
        got.len() < 150 && got.len() > 100,
        "{} records kept",
        got.len()
    );
    assert_eq!(got.last().unwrap().seq.0, 149);
    let aside = fs.list_dir(Path::new(LOST_FOUND)).unwrap();
    assert_eq!(aside.len(), 1);
    let copy = sim
        .read_file(&Path::new(LOST_FOUND).join(&aside[0]))
        .unwrap();
    assert_eq!(
        copy.len(),
        original.len(),
        "the whole damaged segment is kept"
    );
    assert_eq!(append_one(&log, 3000), 150);
    drop(log);
    // The repair holds without the flag: nothing to report, reads step over the gap.
    let log = open(&fs, &dir, &config).unwrap();
    assert!(!log.recovery_stats().found_damage());
    assert_eq!(read_all(&log).len(), got.len() + 1);
}

#[test]
fn a_sealed_log_that_lost_records_still_ends_where_it_was_sealed() {
    let (sim, fs, dir) = sim();
    let log = open(&fs, &dir, &config()).unwrap();
    let mut rng = SplitMix(11);
    let acked = append(&log, &mut rng, 0, 60);
    log.seal().unwrap();
    drop(log);
    let active = segment_files(&sim, &dir).pop().unwrap();
    let bytes = sim.read_file(&active).unwrap();
    sim.overwrite_file(&active, &bytes[..bytes.len() / 2])
        .unwrap();
    let log = open(&fs, &dir, &config()).unwrap();
    assert!(log.is_sealed());
    assert_eq!(
        log.next_seq().0,
        60,
        "the seal's sequence, as the metadata says"
    );
    check_known(&read_all(&log), &acked);
    assert!(matches!(
        log.append(&[acked[0].as_in()], ts(1)),
        Err(Error::Sealed { .. })
    ));
}

#[test]
fn a_power_cut_while_recovering_from_damage_recovers_the_same_way() {
    let prepare = || {
        let (sim, fs, dir) = sim();
        let log = open(&fs, &dir, &config()).unwrap();
        let acked = append(&log, &mut SplitMix(12), 0, 80);
        drop(log);
        sim.crash(CrashMode::DropUnsynced);
        let active = segment_files(&sim, &dir).pop().unwrap();
        let len = sim.read_file(&active).unwrap().len();
        flip(&sim, &active, len / 2);
        (sim, fs, dir, acked)
    };
    let ops = {
        let (sim, fs, dir, _) = prepare();
        let before = sim.stats().mutations;
        open(&fs, &dir, &config()).unwrap();
        sim.stats().mutations - before
    };
    assert!(ops > 10, "recovery from damage did {ops} operations");
    for k in 0..ops {
        let (sim, fs, dir, acked) = prepare();
        sim.power_cut_after(k, None);
        let _ = open(&fs, &dir, &config());
        sim.crash(CrashMode::DropUnsynced);
        let log = open(&fs, &dir, &config()).unwrap_or_else(|e| panic!("cut {k}: {e}"));
        let got = read_all(&log);
        check_known(&got, &acked);
        assert!(
            !got.is_empty() && got.len() < 80,
            "cut {k}: {} records",
            got.len()
        );
        let after = append_one(&log, 5000);
        assert!(after >= 80, "cut {k}: number {after} given again");
    }
}

#[test]
fn repair_also_finds_damage_before_the_active_segments_recovery_point() {
    let (sim, fs, dir) = sim();
    let log = open(&fs, &dir, &config()).unwrap();
    let acked = append(&log, &mut SplitMix(13), 0, 100);
    // A clean close: the recovery point is at the end, so a plain open scans nothing.
    log.close().unwrap();
    drop(log);
    let active = segment_files(&sim, &dir).pop().unwrap();
    let len = sim.read_file(&active).unwrap().len();
    flip(&sim, &active, len / 2);
    let log = open(&fs, &dir, &config()).unwrap();
    assert!(!log.recovery_stats().found_damage());
    assert_eq!(
        log.read(SeqNo(0), 10, usize::MAX).unwrap().records.len(),
        10
    );
    let found = (0..100).find(|s| log.read(SeqNo(*s), 1, usize::MAX).is_err());
    assert!(found.is_some(), "reads never found the damage");
    drop(log);
    let repair = LogConfig {
        repair: true,
        ..config()
    };
    let log = open(&fs, &dir, &repair).unwrap();
    assert!(log.recovery_stats().found_damage());
    let got = read_all(&log);
    check_known(&got, &acked);
    assert!(got.len() < 100 && got.len() > 10, "{} kept", got.len());
    assert!(append_one(&log, 4000) >= 100);
}
