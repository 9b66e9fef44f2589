//! Damage done to a log's files between runs: flipped bytes, deleted or garbled indexes,
//! garbage tails, truncations. Nothing panics, corrupt bytes are never served as records,
//! indexes are rebuilt, and damage is reported with the file and the position.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sluice_storage::{Error, LogConfig, SimFs, SplitMix};

/// A log of 300 records over many segments; returns the records.
fn fill(
    fs: &std::sync::Arc<dyn sluice_storage::FileSystem>,
    dir: &Path,
    config: &LogConfig,
) -> Vec<Rec> {
    let log = open(fs, dir, config).unwrap();
    let mut rng = SplitMix(11);
    let recs: Vec<Rec> = (0..300).map(|i| random_rec(&mut rng, i, 200)).collect();
    for (i, chunk) in recs.chunks(3).enumerate() {
        let ins: Vec<_> = chunk.iter().map(Rec::as_in).collect();
        log.append(&ins, ts(i as u64)).unwrap();
    }
    log.close().unwrap();
    recs
}

fn files(sim: &SimFs, dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = sluice_storage::FileSystem::list_dir(sim, dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .map(|n| dir.join(n))
        .collect();
    v.sort();
    v
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_with_file_and_position() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let recs = fill(&fs, &dir, &config);
    let logs = files(&sim, &dir, ".log");
    let victim = &logs[1];
    let mut bytes = sim.read_file(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    sim.overwrite_file(victim, &bytes).unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    let mut next = seq(0);
    let mut good = 0;
    let err = loop {
        match log.read(next, 1, usize::MAX) {
            Ok(b) if b.records.is_empty() => panic!("read past damage without an error"),
            Ok(b) => {
                assert!(recs[b.records[0].seq.0 as usize].matches(&b.records[0]));
                good += 1;
                next = b.next;
            }
            Err(e) => break e,
        }
    };
    match err {
        Error::Corrupt { path, position, .. } => {
            assert_eq!(&path, victim);
            assert!(position <= at as u64 && position > 0);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(good > 0);
    // Reading after the damaged segment still works.
    let later = log.read(seq(290), 10, usize::MAX).unwrap();
    assert_eq!(later.records.len(), 10);
}

#[test]
fn deleted_or_garbled_indexes_are_rebuilt_from_the_log() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let recs = fill(&fs, &dir, &config);
    let sidx = files(&sim, &dir, ".sidx");
    let tidx = files(&sim, &dir, ".tidx");
    sluice_storage::FileSystem::remove_file(&sim, &sidx[0]).unwrap();
    sim.overwrite_file(&tidx[1], b"garbage").unwrap();
    let mut t = sim.read_file(&sidx[2]).unwrap();
    t.truncate(t.len() - 3);
    sim.overwrite_file(&sidx[2], &t).unwrap();
    let mut s = sim.read_file(&sidx[3]).unwrap();
    let n = s.len();
    s[n - 8..].copy_from_slice(&[0xff; 8]); // an entry pointing nowhere
    sim.overwrite_file(&sidx[3], &s).unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    let got = read_all(&log);
    assert_eq!(got.len(), recs.len());
    assert!(recs.iter().zip(&got).all(|(r, g)| r.matches(g)));
    for i in 0..recs.len() as u64 {
        assert_eq!(
            log.read(seq(i), 1, usize::MAX).unwrap().records[0].seq,
            seq(i)
        );
    }
    assert_eq!(log.seek_time(ts(50)).unwrap(), seq(150));
    // The rebuilt files are sound: a second open needs no rebuild and reads the same.
    drop(log);
    let log = open(&fs, &dir, &config).unwrap();
    assert_eq!(read_all(&log).len(), recs.len());
}

#[test]
fn a_garbage_tail_on_the_active_segment_is_set_aside_and_its_numbers_never_reused() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let recs = fill(&fs, &dir, &config);
    let active = files(&sim, &dir, ".log").pop().unwrap();
    let mut bytes = sim.read_file(&active).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0xAB; 77]);
    sim.overwrite_file(&active, &bytes).unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    // Not a torn write (no write leaves such bytes): damage, set aside for inspection.
    let stats = log.recovery_stats();
    assert_eq!(stats.truncated_bytes, 77);
    assert_eq!(stats.damaged_bytes, 77);
    assert!(stats.sequences_skipped > 0);
    let aside = dir.join(format!(
        "{}.damaged-from-{len}",
        active.file_name().unwrap().to_str().unwrap()
    ));
    assert_eq!(sim.read_file(&aside).unwrap(), vec![0xAB; 77]);
    assert_eq!(read_all(&log).len(), recs.len());
    // The records a damaged tail may have held keep their numbers: new ones go above.
    let next = log.append(&[recs[0].as_in()], ts(1000)).unwrap().first;
    assert!(next.0 >= 300 + 77 / 32, "{next:?}");
    drop(log);
    let log = open(&fs, &dir, &config).unwrap();
    let got = read_all(&log);
    assert_eq!(got.len(), recs.len() + 1);
    assert_eq!(got.last().unwrap().seq, next);
}

#[test]
fn a_truncated_sealed_segment_reports_the_missing_records() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    fill(&fs, &dir, &config);
    let victim = files(&sim, &dir, ".log")[0].clone();
    let mut bytes = sim.read_file(&victim).unwrap();
    bytes.truncate(bytes.len() - 100);
    sim.overwrite_file(&victim, &bytes).unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    let mut next = seq(0);
    let err = loop {
        match log.read(next, 1000, usize::MAX) {
            Ok(b) => {
                assert!(
                    !b.records.is_empty(),
                    "read silently skipped the missing records"
                );
                next = b.next;
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::Corrupt { ref path, .. } if *path == victim),
        "{err}"
    );
}

#[test]
fn a_damaged_checkpoint_means_a_full_scan_not_a_failure() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let recs = fill(&fs, &dir, &config);
    sim.overwrite_file(&dir.join("checkpoint"), &[0x5a; 112])
        .unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    assert!(log.recovery_stats().scanned_bytes > 0);
    assert_eq!(read_all(&log).len(), recs.len());
}

#[test]
fn a_damaged_sealed_segment_header_is_a_typed_error() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    fill(&fs, &dir, &config);
    let sealed = files(&sim, &dir, ".log")[2].clone();
    for index in [".sidx", ".tidx"] {
        let path = sealed.with_extension(&index[1..]);
        sluice_storage::FileSystem::remove_file(&sim, &path).unwrap();
    }
    let mut bytes = sim.read_file(&sealed).unwrap();
    bytes[0] ^= 0xff;
    sim.overwrite_file(&sealed, &bytes).unwrap();
    match open(&fs, &dir, &config) {
        Err(Error::Corrupt {
            path, position: 0, ..
        }) => assert_eq!(path, sealed),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_damaged_active_segment_header_loses_its_records_but_never_their_numbers() {
    let (sim, fs, dir) = sim();
    let config = small_config();
    let recs = fill(&fs, &dir, &config);
    let active = files(&sim, &dir, ".log").pop().unwrap();
    let base: u64 = active.file_name().unwrap().to_str().unwrap()[..20]
        .parse()
        .unwrap();
    let mut bytes = sim.read_file(&active).unwrap();
    bytes[0] ^= 0xff;
    sim.overwrite_file(&active, &bytes).unwrap();
    let log = open(&fs, &dir, &config).unwrap();
    assert!(log.recovery_stats().found_damage());
    let got = read_all(&log);
    assert_eq!(
        got.len(),
        base as usize,
        "records before the damaged segment stay"
    );
    assert!(recs.iter().zip(&got).all(|(r, g)| r.matches(g)));
    let aside = dir.join(format!("{base:020}.log.damaged-from-0"));
    assert_eq!(sim.read_file(&aside).unwrap(), bytes);
    assert!(log.next_seq().0 >= 300);
    let a = log.append(&[recs[0].as_in()], ts(1000)).unwrap();
    assert!(a.first.0 >= 300);
}

#[test]
fn random_damage_never_panics_and_never_serves_wrong_records() {
    let config = small_config();
    for s in seed(1)..seed(1) + 150 {
        let (sim, fs, dir) = sim();
        let recs = fill(&fs, &dir, &config);
        let mut rng = SplitMix(s);
        let mut all: Vec<PathBuf> = sluice_storage::FileSystem::list_dir(&sim, &dir)
            .unwrap()
            .into_iter()
            .map(|n| dir.join(n))
            .collect();
        all.sort();
        let victim = &all[rng.below(all.len() as u64) as usize];
        let mut bytes = sim.read_file(victim).unwrap();
        if bytes.is_empty() {
            continue;
        }
        match rng.below(3) {
            0 => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(bytes.len() as u64) as usize;
                let n = (rng.below(64) as usize).min(bytes.len() - i);
                bytes[i..i + n].fill(0);
            }
            _ => bytes.truncate(rng.below(bytes.len() as u64) as usize),
        }
        sim.overwrite_file(victim, &bytes).unwrap();
        let Ok(log) = open(&fs, &dir, &config) else {
            continue;
        };
        let mut next = log.trim_horizon();
        for _ in 0..400 {
            match log.read(next, 5, usize::MAX) {
                Ok(b) if b.records.is_empty() => break,
                Ok(b) => {
                    for r in &b.records {
                        assert!(
                            recs[r.seq.0 as usize].matches(r),
                            "seed {s}: wrong record {} from {victim:?}",
                            r.seq
                        );
                    }
                    next = b.next;
                }
                Err(_) => next = seq(next.0 + 1),
            }
        }
        let _ = log.seek_time(ts(rng.below(120)));
    }
}
