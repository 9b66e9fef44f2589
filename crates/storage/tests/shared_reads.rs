//! `Log::read_shared` returns exactly what `Log::read` does, across rolls, limits and
//! reopen, on both file systems; and its records stay readable after retention deletes
//! their segment (they hold the mapping, not the file).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use sluice_storage::{FileSystem, Log, RealFs, SeqNo, SplitMix};

/// Reads the whole log both ways with `max_records` and `max_bytes`, and compares.
fn check(log: &Log, max_records: usize, max_bytes: usize) {
    let mut next = log.trim_horizon();
    let end = log.next_seq();
    while next < end {
        let owned = log.read(next, max_records, max_bytes).unwrap();
        let shared = log.read_shared(next, max_records, max_bytes).unwrap();
        assert_eq!(owned.next, shared.next);
        assert_eq!(owned.records.len(), shared.records.len());
        for (o, s) in owned.records.iter().zip(&shared.records) {
            assert_eq!(o.seq, s.seq);
            assert_eq!(o.timestamp, s.timestamp);
            assert_eq!(o.partition_key, s.partition_key);
            assert_eq!(o.explicit_hash_key, s.explicit_hash_key);
            assert_eq!(o.data, s.data);
        }
        assert!(shared.next > next, "no progress at {next}");
        next = shared.next;
    }
}

fn fill(fs: &Arc<dyn FileSystem>, dir: &std::path::Path) -> Log {
    let log = open(fs, dir, &small_config()).unwrap();
    let mut rng = SplitMix(7);
    for t in 1..=40 {
        let recs: Vec<Rec> = (0..1 + t % 4)
            .map(|i| random_rec(&mut rng, t * 100 + i, 200))
            .collect();
        let ins: Vec<_> = recs.iter().map(Rec::as_in).collect();
        log.append(&ins, ts(t)).unwrap();
    }
    log
}

#[test]
fn shared_reads_equal_copying_reads_on_a_real_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = fill(&fs, dir.path());
    assert!(log.segment_count() > 3);
    for (records, bytes) in [(1, usize::MAX), (3, usize::MAX), (1000, 500), (10_000, 1)] {
        check(&log, records, bytes);
    }
    drop(log);
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    check(&log, 7, usize::MAX);
}

#[test]
fn shared_reads_equal_copying_reads_on_the_simulated_disk() {
    let (_sim, fs, dir) = sim();
    let log = fill(&fs, &dir);
    check(&log, 5, usize::MAX);
    check(&log, 10_000, 300);
}

#[test]
fn shared_records_outlive_the_segment_retention_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = fill(&fs, dir.path());
    let first = log.read_shared(SeqNo(0), 3, usize::MAX).unwrap();
    let copy = log.read(SeqNo(0), 3, usize::MAX).unwrap();
    let out = log.apply_retention(ts(1_000_000), 1).unwrap();
    assert!(out.segments_deleted > 0);
    for (s, o) in first.records.iter().zip(&copy.records) {
        assert_eq!(s.data, o.data);
    }
}
