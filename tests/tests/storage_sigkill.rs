//! SIGKILL the storage engine in a real process, again and again, and check after every
//! kill that each acknowledged record is in the log exactly once, intact, in order, and
//! that the log goes on from where it stopped. Seeded: `SLUICE_SEED=N` reruns a run.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice_storage::{Log, LogConfig, RealFs, SegmentCache, SeqNo, SplitMix};
use sluice_tests::identify;

const CYCLES: u64 = 12;

#[test]
fn killed_writers_never_lose_acknowledged_records() {
    let seed = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42u64);
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("shard");
    // seq -> id of every acknowledged record.
    let mut acked: HashMap<u64, u64> = HashMap::new();
    for cycle in 0..CYCLES {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log-writer"))
            .arg(&log_dir)
            .arg((cycle * 10_000_000_000).to_string())
            .arg("3")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements (or a time limit).
        let want = 1 + rng.below(300);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines: Vec<String> = Vec::new();
        while (lines.len() as u64) < want && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                lines.push(line);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Everything printed before the kill counts as acknowledged.
        lines.extend(rx.try_iter());
        for line in lines {
            let parts: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|p| p.parse().unwrap())
                .collect();
            let [first, last, id0] = parts[..] else {
                panic!("bad line {line}")
            };
            for (i, s) in (first..=last).enumerate() {
                assert!(
                    acked.insert(s, id0 + i as u64).is_none(),
                    "seed {seed}: sequence {s} acknowledged twice"
                );
            }
        }
        check(&log_dir, &acked, seed, cycle);
    }
    assert!(
        acked.len() > 100,
        "the writers should have made progress ({})",
        acked.len()
    );
}

fn check(dir: &std::path::Path, acked: &HashMap<u64, u64>, seed: u64, cycle: u64) {
    let log = Log::open(
        RealFs::shared(),
        dir,
        LogConfig::default(),
        SegmentCache::new(16),
    )
    .unwrap();
    let mut next = SeqNo(0);
    let mut count = 0u64;
    loop {
        let b = log
            .read(next, 1000, usize::MAX)
            .unwrap_or_else(|e| panic!("seed {seed} cycle {cycle}: {e}"));
        if b.records.is_empty() {
            break;
        }
        for r in &b.records {
            assert_eq!(r.seq.0, count, "seed {seed} cycle {cycle}: gap or reorder");
            let id = identify(&r.data).unwrap_or_else(|| {
                panic!("seed {seed} cycle {cycle}: record {} is damaged", r.seq)
            });
            if let Some(want) = acked.get(&r.seq.0) {
                assert_eq!(
                    *want, id,
                    "seed {seed} cycle {cycle}: record {} is not the acknowledged one",
                    r.seq
                );
            }
            count += 1;
        }
        next = b.next;
    }
    let missing = acked.keys().filter(|s| **s >= count).count();
    assert_eq!(
        missing, 0,
        "seed {seed} cycle {cycle}: {missing} acknowledged records lost"
    );
}
