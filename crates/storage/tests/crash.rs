//! Power-loss tests on the simulated disk: crash a seeded workload at every mutating
//! operation (and with torn writes), recover, and check that every acknowledged record is
//! there, identical, that a batch cut off by the crash is there whole or not at all, and
//! that sequences go on without gaps or reuse. (That retention keeps young records through
//! a crash is its own test below, and so are the two ways part of a batch reaches the disk
//! first: a sync led by another append, and a torn write.) A failure prints the seed;
//! `SLUICE_SEED=N` reruns one seed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice_storage::{CrashMode, FileSystem, LogConfig, SimFs, SplitMix, frame};

/// What the workload was told.
#[derive(Default, Debug)]
struct Outcome {
    /// Acknowledged records, indexed by sequence.
    acked: Vec<Rec>,
    /// The batch whose append failed: it may survive whole, or not at all.
    pending: Vec<Rec>,
}

const STEPS: u64 = 40;
const RETENTION_MS: u64 = 150;

fn workload(fs: &Arc<dyn FileSystem>, dir: &Path, config: &LogConfig, seed: u64) -> Outcome {
    let mut out = Outcome::default();
    let mut rng = SplitMix(seed);
    let Ok(log) = open(fs, dir, config) else {
        return out;
    };
    for step in 1..=STEPS {
        let now = step * 10;
        match rng.below(12) {
            0 => {
                if log.apply_retention(ts(now), RETENTION_MS).is_err() {
                    return out;
                }
            }
            1 => {
                if log.close().is_err() {
                    return out;
                }
            }
            _ => {
                let n = 1 + rng.below(5);
                let id0 = out.acked.len() as u64;
                let batch: Vec<Rec> = (0..n).map(|i| random_rec(&mut rng, id0 + i, 700)).collect();
                let ins: Vec<_> = batch.iter().map(Rec::as_in).collect();
                match log.append(&ins, ts(now)) {
                    Ok(a) => {
                        assert_eq!(
                            a.first.0, id0,
                            "seed {seed}: sequence of an acknowledged batch"
                        );
                        out.acked.extend(batch);
                    }
                    Err(_) => {
                        out.pending = batch;
                        return out;
                    }
                }
            }
        }
    }
    out
}

fn verify(fs: &Arc<dyn FileSystem>, dir: &Path, config: &LogConfig, out: &Outcome, what: &str) {
    let log = open(fs, dir, config).unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    let got = read_all(&log);
    let trim = log.trim_horizon().0 as usize;
    let acked = out.acked.len();
    assert!(
        got.len() + trim >= acked,
        "{what}: acknowledged records lost: have {} from {trim}, acked {acked}",
        got.len()
    );
    assert!(
        got.len() + trim <= acked + out.pending.len(),
        "{what}: records appeared that were never written"
    );
    assert!(
        got.len() + trim == acked || got.len() + trim == acked + out.pending.len(),
        "{what}: {} of the {} records of a batch cut off by the crash survived",
        got.len() + trim - acked,
        out.pending.len()
    );
    for r in &got {
        let i = r.seq.0 as usize;
        let expected = if i < acked {
            &out.acked[i]
        } else {
            &out.pending[i - acked]
        };
        assert!(
            expected.matches(r),
            "{what}: record {i} differs after recovery"
        );
    }
    assert_eq!(
        log.next_seq().0 as usize,
        trim + got.len(),
        "{what}: next sequence"
    );
    // Sequences go on from where the log ended, and the new record is durable.
    let extra = Rec {
        key: b"after".to_vec(),
        hash: None,
        data: b"crash".to_vec(),
    };
    let a = log
        .append(&[extra.as_in()], ts(STEPS * 10 + 10))
        .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
    assert_eq!(a.first.0 as usize, trim + got.len(), "{what}");
    drop(log);
    let log =
        open(fs, dir, config).unwrap_or_else(|e| panic!("{what}: second recovery failed: {e}"));
    let again = read_all(&log);
    assert_eq!(again.len(), got.len() + 1, "{what}: second recovery");
    assert!(extra.matches(again.last().expect("nonempty")), "{what}");
}

fn mutations_of(config: &LogConfig, seed: u64) -> u64 {
    let (sim, fs, dir) = sim();
    workload(&fs, &dir, config, seed);
    sim.stats().mutations
}

fn crash_mode(rng: &mut SplitMix) -> CrashMode {
    if rng.below(2) == 0 {
        CrashMode::DropUnsynced
    } else {
        CrashMode::TornTail {
            seed: rng.next_u64(),
        }
    }
}

fn run_cut(config: &LogConfig, seed: u64, k: u64, rng: &mut SplitMix) {
    let (sim, fs, dir) = sim();
    let tear = (rng.below(2) == 0).then(|| rng.below(600) as usize);
    sim.power_cut_after(k, tear);
    let out = workload(&fs, &dir, config, seed);
    sim.crash(crash_mode(rng));
    // Sometimes the power goes again during recovery itself.
    if rng.below(4) == 0 {
        sim.power_cut_after(rng.below(20), None);
        let _ = open(&fs, &dir, config);
        sim.crash(crash_mode(rng));
    }
    verify(
        &fs,
        &dir,
        config,
        &out,
        &format!("seed {seed}, cut after {k} operations, tear {tear:?}"),
    );
}

#[test]
fn crash_at_every_operation_loses_nothing_acknowledged() {
    let config = small_config();
    let seeds: Vec<u64> = match std::env::var("SLUICE_SEED") {
        Ok(_) => vec![seed(0)],
        Err(_) => (1..=4).collect(),
    };
    let mut scenarios = 0;
    for s in seeds {
        let total = mutations_of(&config, s);
        assert!(
            total > 100,
            "the workload should do real work ({total} operations)"
        );
        let mut rng = SplitMix(s ^ 0xC0FFEE);
        for k in 0..=total {
            run_cut(&config, s, k, &mut rng);
            scenarios += 1;
        }
    }
    eprintln!("crash scenarios: {scenarios}");
}

/// Records of `n` numbered frames of about `len` bytes each.
fn batch(first_id: u64, n: u64, len: usize) -> Vec<Rec> {
    (first_id..first_id + n)
        .map(|i| Rec {
            key: format!("k{i}").into_bytes(),
            hash: None,
            data: vec![i as u8; len],
        })
        .collect()
}

fn frames_len(recs: &[Rec]) -> usize {
    recs.iter().map(|r| frame::encoded_len(&r.as_in())).sum()
}

const LONG: Duration = Duration::from_secs(60);

/// A batch is written with one write, but a sync another append leads can run while that
/// write is half done (the kernel writes back whatever pages it holds), making the first
/// frames of the batch durable before the rest exist. Power lost then: recovery must drop
/// those frames, since the batch was never acknowledged.
#[test]
fn a_sync_led_by_another_append_never_makes_part_of_a_batch_survive() {
    let (sim, fs, dir) = sim();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let log = Arc::new(open(&fs, &dir, &config).unwrap());
    let first = batch(0, 2, 100);
    let ins: Vec<_> = first.iter().map(Rec::as_in).collect();
    let target = log.append_nowait(&ins, ts(1)).unwrap().durable_at.unwrap();
    let second = batch(2, 5, 100);
    let syncs = sim.gate_syncs();
    std::thread::scope(|scope| {
        // A leads the sync of the first batch; it waits at the gate, the log unlocked.
        let a = scope.spawn(|| log.wait_durable_until(target));
        assert!(
            syncs.wait_arrived(1, LONG),
            "the first batch's sync never started"
        );
        // B writes the second batch: its first two frames land, then the write waits.
        let write = sim.gate_next_write(frames_len(&second[..2]));
        let b = scope.spawn(|| {
            let ins: Vec<_> = second.iter().map(Rec::as_in).collect();
            log.append(&ins, ts(2))
        });
        assert!(
            write.wait_arrived(1, LONG),
            "the second batch was never written"
        );
        // A's sync now makes the first batch and those two frames durable; then the
        // power goes before the rest of the second batch lands.
        syncs.release(1);
        assert!(syncs.wait_passed(1, LONG));
        sim.power_cut_after(0, None);
        write.release(1);
        assert!(
            b.join().unwrap().is_err(),
            "the cut-off batch was acknowledged"
        );
        a.join().unwrap().unwrap();
    });
    drop(syncs);
    sim.crash(CrashMode::DropUnsynced);
    let log = open(&fs, &dir, &config).unwrap();
    let got = read_all(&log);
    assert_eq!(got.len(), 2, "part of the cut-off batch survived: {got:?}");
    assert!(first.iter().zip(&got).all(|(r, g)| r.matches(g)));
    assert_eq!(log.append(&ins, ts(3)).unwrap().first, seq(2));
}

/// A write cut short (a power cut, or a process killed while the kernel copies a large
/// write) can leave whole frames of a batch in the file; recovery must drop them all.
#[test]
fn a_torn_write_that_left_whole_frames_of_a_batch_leaves_none_of_them() {
    for kept in 1..5 {
        for mode in [CrashMode::KeepWritten, CrashMode::DropUnsynced] {
            let (sim, fs, dir) = sim();
            let config = small_config();
            let log = open(&fs, &dir, &config).unwrap();
            let first = batch(0, 3, 50);
            let ins: Vec<_> = first.iter().map(Rec::as_in).collect();
            log.append(&ins, ts(1)).unwrap();
            let second = batch(3, 5, 50);
            let ins: Vec<_> = second.iter().map(Rec::as_in).collect();
            // The power goes during the second batch's write, after `kept` whole frames.
            sim.power_cut_after(0, Some(frames_len(&second[..kept])));
            assert!(log.append(&ins, ts(2)).is_err());
            drop(log);
            sim.crash(mode);
            let log = open(&fs, &dir, &config).unwrap();
            let got = read_all(&log);
            assert_eq!(got.len(), 3, "{kept} frames kept, {mode:?}: {got:?}");
            if mode == CrashMode::KeepWritten {
                assert!(
                    log.recovery_stats().truncated_bytes > 0,
                    "the torn batch was not cut"
                );
            }
            assert_eq!(log.append(&ins, ts(3)).unwrap().first, seq(3));
        }
    }
}

#[test]
fn crash_at_random_points_with_relaxed_sync_keeps_every_synced_record() {
    // In interval mode acknowledged records may be lost, but never corrupted or reordered:
    // whatever survives is a prefix of what was written.
    let config = LogConfig {
        sync: sluice_storage::SyncMode::Interval { interval_ms: 1 },
        ..small_config()
    };
    let base = seed(100);
    for s in base..base + 200 {
        let (sim, fs, dir) = sim();
        let mut rng = SplitMix(s);
        sim.power_cut_after(rng.below(400), Some(rng.below(600) as usize));
        let out = workload(&fs, &dir, &config, s);
        sim.crash(crash_mode(&mut rng));
        let log = open(&fs, &dir, &config).unwrap_or_else(|e| panic!("seed {s}: recovery: {e}"));
        let all: Vec<&Rec> = out.acked.iter().chain(&out.pending).collect();
        for r in read_all(&log) {
            assert!(
                all[r.seq.0 as usize].matches(&r),
                "seed {s}: record {} differs",
                r.seq
            );
        }
    }
}

#[test]
fn retention_never_deletes_young_records_even_when_cut_short() {
    let config = small_config();
    let base = seed(500);
    for s in base..base + 300 {
        let (sim, fs, dir) = sim();
        let mut rng = SplitMix(s);
        let log = open(&fs, &dir, &config).unwrap();
        let mut times = Vec::new();
        for step in 1..=30u64 {
            let recs: Vec<Rec> = (0..3)
                .map(|i| random_rec(&mut rng, step * 3 + i, 300))
                .collect();
            let ins: Vec<_> = recs.iter().map(Rec::as_in).collect();
            log.append(&ins, ts(step * 10)).unwrap();
            times.extend([step * 10; 3]);
        }
        sim.power_cut_after(rng.below(30), None);
        let _ = log.apply_retention(ts(300), 120);
        drop(log);
        sim.crash(crash_mode(&mut rng));
        let log = open(&fs, &dir, &config).unwrap_or_else(|e| panic!("seed {s}: {e}"));
        let got = read_all(&log);
        let first_young = times
            .iter()
            .position(|t| *t >= 180)
            .expect("young records exist");
        assert!(
            log.trim_horizon().0 as usize <= first_young,
            "seed {s}: a young record was deleted"
        );
        assert_eq!(
            got.len() + log.trim_horizon().0 as usize,
            times.len(),
            "seed {s}"
        );
    }
}

#[test]
fn recovery_work_is_bounded_by_the_checkpoint_interval() {
    let (sim, fs, dir) = sim();
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        checkpoint_interval_bytes: 8 * 1024,
        ..small_config()
    };
    let log = open(&fs, &dir, &config).unwrap();
    let mut rng = SplitMix(9);
    let mut total = 0u64;
    for step in 1..=400u64 {
        let r = random_rec(&mut rng, step, 500);
        total += r.data.len() as u64;
        log.append(&[r.as_in()], ts(step)).unwrap();
    }
    drop(log);
    sim.crash(CrashMode::DropUnsynced);
    let log = open(&fs, &dir, &config).unwrap();
    let scanned = log.recovery_stats().scanned_bytes;
    assert!(total > 80 * 1024);
    assert!(
        scanned <= 8 * 1024 + 1024,
        "scanned {scanned} of {total} bytes"
    );
    assert_eq!(read_all(&log).len(), 400);
}

#[test]
fn simulated_disk_is_deterministic() {
    let config = small_config();
    let a = {
        let (sim, fs, dir) = sim();
        workload(&fs, &dir, &config, 77);
        sim.stats()
    };
    let b = {
        let (sim, fs, dir) = sim();
        workload(&fs, &dir, &config, 77);
        sim.stats()
    };
    assert_eq!(a, b);
    let _ = SimFs::new();
}

#[test]
fn removing_a_log_is_all_or_nothing_across_a_crash() {
    let config = small_config();
    for k in 0..12 {
        let (sim, fs, dir) = sim();
        let parent = dir.parent().unwrap().to_path_buf();
        let out = workload(&fs, &dir, &config, 3);
        sim.power_cut_after(k, None);
        let removed = sluice_storage::remove_log(&*fs, &dir).is_ok();
        sim.crash(CrashMode::DropUnsynced);
        sluice_storage::remove_leftover_logs(&*fs, &parent).unwrap();
        if removed {
            assert!(!fs.exists(&dir), "cut {k}: a removed log came back");
        }
        if fs.exists(&dir) {
            verify(&fs, &dir, &config, &out, &format!("cut {k}: log kept"));
        }
        let left = fs.list_dir(&parent).unwrap();
        assert!(
            left.iter().all(|n| !n.ends_with(".deleted")),
            "cut {k}: {left:?}"
        );
    }
}
