//! Appends, reads, seeks, rolls, reopen, seal and retention on the real file system.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use sluice_storage::{Error, Log, LogConfig, RealFs, SegmentCache, SplitMix, SyncMode};

fn append_n(log: &Log, n: u64, t: u64, rng: &mut SplitMix) -> Vec<Rec> {
    let recs: Vec<Rec> = (0..n).map(|i| random_rec(rng, t * 1000 + i, 300)).collect();
    let ins: Vec<_> = recs.iter().map(Rec::as_in).collect();
    log.append(&ins, ts(t)).unwrap();
    recs
}

#[test]
fn records_survive_rolls_and_reopen_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = small_config();
    let mut rng = SplitMix(1);
    let mut written = Vec::new();
    {
        let log = open(&fs, dir.path(), &config).unwrap();
        for t in 1..=60 {
            written.extend(append_n(&log, 1 + t % 5, t, &mut rng));
        }
        assert!(log.segment_count() > 5, "small segments should have rolled");
        let got = read_all(&log);
        assert_eq!(got.len(), written.len());
        assert!(written.iter().zip(&got).all(|(w, g)| w.matches(g)));
    }
    let log = open(&fs, dir.path(), &config).unwrap();
    let got = read_all(&log);
    assert_eq!(got.len(), written.len());
    for (i, (w, g)) in written.iter().zip(&got).enumerate() {
        assert!(w.matches(g), "record {i} differs after reopen");
        assert_eq!(g.seq, seq(i as u64));
    }
    assert_eq!(log.next_seq(), seq(written.len() as u64));
}

#[test]
fn read_from_any_sequence_starts_exactly_there() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    let mut rng = SplitMix(2);
    for t in 1..=40 {
        append_n(&log, 3, t, &mut rng);
    }
    for from in 0..120 {
        let b = log.read(seq(from), 5, usize::MAX).unwrap();
        assert_eq!(b.records[0].seq, seq(from));
        assert_eq!(b.records.len(), 5.min(120 - from as usize));
    }
    assert!(
        log.read(seq(120), 5, usize::MAX)
            .unwrap()
            .records
            .is_empty()
    );
    assert!(matches!(
        log.read(seq(121), 5, usize::MAX),
        Err(Error::BeyondEnd { .. })
    ));
}

#[test]
fn byte_limit_returns_at_least_one_record_and_never_more_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    let data = vec![7u8; 1000];
    let recs: Vec<_> = (0..4)
        .map(|_| sluice_storage::RecordIn {
            partition_key: b"k",
            explicit_hash_key: None,
            data: &data,
        })
        .collect();
    log.append(&recs, ts(1)).unwrap();
    assert_eq!(log.read(seq(0), 10, 10).unwrap().records.len(), 1);
    assert_eq!(log.read(seq(0), 10, 2100).unwrap().records.len(), 2);
}

#[test]
fn seek_by_time_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    let mut rng = SplitMix(3);
    // Two records per even millisecond 10, 12, ..., 208.
    for t in (10..210).step_by(2) {
        append_n(&log, 2, t, &mut rng);
    }
    assert_eq!(log.seek_time(ts(0)).unwrap(), seq(0));
    assert_eq!(log.seek_time(ts(10)).unwrap(), seq(0));
    assert_eq!(log.seek_time(ts(11)).unwrap(), seq(2));
    assert_eq!(log.seek_time(ts(100)).unwrap(), seq(90));
    assert_eq!(log.seek_time(ts(101)).unwrap(), seq(92));
    assert_eq!(log.seek_time(ts(208)).unwrap(), seq(198));
    assert_eq!(
        log.seek_time(ts(209)).unwrap(),
        seq(200),
        "after the last record: the end"
    );
}

#[test]
fn timestamps_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    let a = log
        .append(
            &[Rec {
                key: b"k".to_vec(),
                hash: None,
                data: vec![],
            }
            .as_in()],
            ts(500),
        )
        .unwrap();
    let b = log
        .append(
            &[Rec {
                key: b"k".to_vec(),
                hash: None,
                data: vec![],
            }
            .as_in()],
            ts(100),
        )
        .unwrap();
    assert_eq!(a.timestamp, ts(500));
    assert_eq!(b.timestamp, ts(500));
}

#[test]
fn sealed_log_refuses_appends_and_stays_sealed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = small_config();
    let rec = Rec {
        key: b"k".to_vec(),
        hash: None,
        data: b"x".to_vec(),
    };
    {
        let log = open(&fs, dir.path(), &config).unwrap();
        log.append(&[rec.as_in(), rec.as_in()], ts(1)).unwrap();
        assert_eq!(log.seal().unwrap(), Some(seq(1)));
        assert_eq!(
            log.seal().unwrap(),
            Some(seq(1)),
            "sealing twice is harmless"
        );
        assert!(matches!(
            log.append(&[rec.as_in()], ts(2)),
            Err(Error::Sealed { .. })
        ));
    }
    let log = open(&fs, dir.path(), &config).unwrap();
    assert!(log.is_sealed());
    assert!(matches!(
        log.append(&[rec.as_in()], ts(2)),
        Err(Error::Sealed { .. })
    ));
    log.unseal().unwrap();
    assert_eq!(log.append(&[rec.as_in()], ts(3)).unwrap().first, seq(2));
    let empty = open(&fs, &dir.path().join("empty"), &config).unwrap();
    assert_eq!(empty.seal().unwrap(), None);
}

#[test]
fn retention_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = small_config();
    let log = open(&fs, dir.path(), &config).unwrap();
    let mut rng = SplitMix(4);
    let mut all = Vec::new();
    for t in 1..=100 {
        all.extend(append_n(&log, 2, t * 10, &mut rng));
    }
    let before = log.segment_count();
    // Keep what arrived at or after t = 500.
    let out = log.apply_retention(ts(1000), 500).unwrap();
    assert!(out.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - out.segments_deleted);
    let got = read_all(&log);
    assert_eq!(got[0].seq, out.trim_horizon);
    assert!(
        got.iter().any(|r| r.timestamp.0 < 500),
        "deletion is per segment, not per record"
    );
    let first_kept = all.len() - got.len();
    assert!(got.iter().all(|r| all[r.seq.0 as usize].matches(r)));
    assert!(first_kept > 0);
    // Everything younger than the cutoff is still there.
    assert!(got.iter().filter(|r| r.timestamp.0 >= 500).count() == 102);
    // Reopen sees the same horizon; no *.deleted file is left.
    drop(log);
    let log = open(&fs, dir.path(), &config).unwrap();
    assert_eq!(log.trim_horizon(), out.trim_horizon);
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".deleted")
        })
        .count();
    assert_eq!(leftovers, 0);
    // An idle shard's data expires too: its old active segment is rolled, then deleted.
    let out = log.apply_retention(ts(100_000), 500).unwrap();
    assert_eq!(out.trim_horizon, log.next_seq());
    assert!(read_all(&log).is_empty());
    assert_eq!(
        log.segment_count(),
        1,
        "the active segment is never deleted"
    );
}

#[test]
fn oversize_records_and_empty_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let log = open(&fs, dir.path(), &small_config()).unwrap();
    let big = vec![0u8; 2049];
    let r = sluice_storage::RecordIn {
        partition_key: b"k",
        explicit_hash_key: None,
        data: &big,
    };
    assert!(matches!(
        log.append(&[r], ts(1)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append(&[], ts(1)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(log.next_seq(), seq(0));
}

#[test]
fn a_batch_is_never_split_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = LogConfig {
        segment_bytes_max: 4096,
        record_bytes_max: 10_000,
        ..small_config()
    };
    let log = open(&fs, dir.path(), &config).unwrap();
    let big = vec![1u8; 9000];
    let r = sluice_storage::RecordIn {
        partition_key: b"k",
        explicit_hash_key: None,
        data: &big,
    };
    // A batch larger than a segment goes whole into the (empty) active segment.
    log.append(&[r, r, r], ts(1)).unwrap();
    assert_eq!(log.segment_count(), 1);
    // The next append rolls first; so does a batch that does not fit in what is left.
    let small = sluice_storage::RecordIn {
        partition_key: b"k",
        explicit_hash_key: None,
        data: &big[..1000],
    };
    log.append(&[small, small], ts(2)).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.append(&[small, small, small], ts(3)).unwrap();
    assert_eq!(
        log.segment_count(),
        3,
        "the batch did not fit: it starts a segment"
    );
    drop(log);
    let log = open(&fs, dir.path(), &config).unwrap();
    assert_eq!(read_all(&log).len(), 8);
    // Each batch is in one segment: batch boundaries are segment starts here.
    let mut logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    let bases: Vec<u64> = logs.iter().map(|n| n[..20].parse().unwrap()).collect();
    assert_eq!(bases, vec![0, 3, 5]);
}

#[test]
fn a_batch_larger_than_the_batch_limit_is_refused_whole() {
    let (_sim, fs, dir) = sim();
    let config = LogConfig {
        batch_bytes_max: 70_000,
        ..small_config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let data = vec![7u8; 2000];
    let r = sluice_storage::RecordIn {
        partition_key: b"k",
        explicit_hash_key: None,
        data: &data,
    };
    let batch = vec![r; 40];
    let err = log.append(&batch, ts(1)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("batch")),
        "{err}"
    );
    assert_eq!(log.next_seq(), seq(0));
    log.append(&batch[..30], ts(1)).unwrap();
}

#[test]
fn clean_close_makes_the_next_open_scan_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        checkpoint_interval_bytes: 1 << 30,
        ..small_config()
    };
    let mut rng = SplitMix(5);
    {
        let log = open(&fs, dir.path(), &config).unwrap();
        for t in 1..=50 {
            append_n(&log, 4, t, &mut rng);
        }
        log.close().unwrap();
    }
    let log = open(&fs, dir.path(), &config).unwrap();
    assert_eq!(log.recovery_stats().scanned_bytes, 0);
    assert_eq!(read_all(&log).len(), 200);
}

#[test]
fn interval_sync_mode_acknowledges_before_the_sync_and_shows_records_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = LogConfig {
        sync: SyncMode::Interval { interval_ms: 50 },
        ..small_config()
    };
    let log = open(&fs, dir.path(), &config).unwrap();
    let mut rng = SplitMix(6);
    append_n(&log, 3, 1, &mut rng);
    assert_eq!(read_all(&log).len(), 3);
    log.sync_if_due().unwrap();
    drop(log);
    let log = open(&fs, dir.path(), &config).unwrap();
    assert_eq!(read_all(&log).len(), 3);
}

#[test]
fn the_segment_cache_stays_within_its_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let cache = SegmentCache::new(3);
    let log = Log::open(fs.clone(), dir.path(), small_config(), cache.clone()).unwrap();
    let mut rng = SplitMix(7);
    for t in 1..=80 {
        append_n(&log, 4, t, &mut rng);
    }
    assert!(log.segment_count() > 10);
    assert_eq!(read_all(&log).len(), 320);
    assert!(cache.len() <= 3, "cache holds {}", cache.len());
    drop(log);
    assert!(cache.is_empty(), "a dropped log releases its mappings");
    let _ = Arc::strong_count(&cache);
}

#[test]
fn try_append_writes_what_fits_and_refuses_what_would_roll_or_sync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::shared();
    let config = small_config();
    let log = open(&fs, dir.path(), &config).unwrap();
    let mut rng = SplitMix(9);
    let mut written: Vec<Rec> = Vec::new();
    let mut refused = 0;
    // Batches of 1 to 3 records against 4 KiB segments: some fit the active segment and
    // are written on the spot; the rest would roll it and are refused untouched, then go
    // through the ordinary path.
    for t in 1..=80u64 {
        let recs: Vec<Rec> = (0..1 + t % 3)
            .map(|i| random_rec(&mut rng, t * 10 + i, 300))
            .collect();
        let ins: Vec<_> = recs.iter().map(Rec::as_in).collect();
        let before = (log.next_seq(), log.segment_count());
        match log.try_append_nowait(&ins, ts(t)) {
            Some(w) => {
                let w = w.unwrap();
                assert_eq!(w.appended.first, before.0);
                assert_eq!(w.appended.last, seq(before.0.0 + recs.len() as u64 - 1));
                assert_eq!(log.segment_count(), before.1, "a try append never rolls");
                // Not visible before it is durable, like any append in the default mode.
                assert_eq!(log.read(before.0, 10, usize::MAX).unwrap().records.len(), 0);
                log.wait_durable_until(w.durable_at.unwrap()).unwrap();
            }
            None => {
                refused += 1;
                assert_eq!((log.next_seq(), log.segment_count()), before);
                log.append(&ins, ts(t)).unwrap();
            }
        }
        written.extend(recs);
    }
    assert!(refused > 5, "only {refused} refused: rolls were expected");
    assert!(refused < 60, "{refused} of 80 refused: most batches fit");
    let got = read_all(&log);
    assert_eq!(got.len(), written.len());
    assert!(written.iter().zip(&got).all(|(w, g)| w.matches(g)));

    // Interval mode: a due sync is not run on the caller's thread; the batch is refused.
    let dir2 = tempfile::tempdir().unwrap();
    let interval = LogConfig {
        sync: SyncMode::Interval { interval_ms: 1 },
        ..small_config()
    };
    let log2 = open(&fs, dir2.path(), &interval).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let rec = random_rec(&mut rng, 1, 10);
    assert!(log2.try_append_nowait(&[rec.as_in()], ts(1)).is_none());
    assert_eq!(log2.next_seq(), seq(0));

    // A sealed log refuses with the error an ordinary append gets.
    log.seal().unwrap();
    assert!(matches!(
        log.try_append_nowait(&[rec.as_in()], ts(100)),
        Some(Err(Error::Sealed { .. }))
    ));
    assert_eq!(log.try_is_sealed(), Some(true));
}
