//! SIGKILL the storage engine in a real process, again and again, and check after every
//! kill that each acknowledged record is in the log exactly once, intact, in order, that
//! every batch is there whole or not at all, and that the log goes on from where it
//! stopped. Seeded: `SLUICE_SEED=N` reruns a run.
//!
//! The second test is issue 22, item 6: with 64 KiB segments and large batches, a batch
//! written partly before a roll and partly after it (the roll synced the first part) and a
//! large write the kill stopped at a page boundary left parts of unacknowledged batches in
//! the log (13 partial batches in 25 kill cycles).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use sluice_storage::{Log, LogConfig, RealFs, SegmentCache, SeqNo, SplitMix};
use sluice_tests::{batch_len, identify};

/// Ids of one cycle's writers start at `cycle * CYCLE_IDS`, thread `t`'s at
/// `cycle * CYCLE_IDS + t * THREAD_IDS`.
const CYCLE_IDS: u64 = 10_000_000_000;
const THREAD_IDS: u64 = 1_000_000_000;

/// How a run drives `log-writer`.
struct Run {
    cycles: u64,
    threads: u64,
    segment_bytes: u64,
    batch_max: u64,
}

#[test]
fn killed_writers_never_lose_acknowledged_records() {
    run(&Run {
        cycles: 12,
        threads: 3,
        segment_bytes: 256 * 1024,
        batch_max: 20,
    });
}

#[test]
fn killed_writers_leave_every_batch_whole_or_absent() {
    run(&Run {
        cycles: 25,
        threads: 3,
        segment_bytes: 64 * 1024,
        batch_max: 60,
    });
}

fn run(cfg: &Run) {
    let seed = std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42u64);
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("shard");
    let mut batches = Batches::new(cfg.batch_max);
    // seq -> id of every acknowledged record.
    let mut acked: HashMap<u64, u64> = HashMap::new();
    for cycle in 0..cfg.cycles {
        let lines = kill_after_some_acks(cfg, &log_dir, cycle, &mut rng);
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
        let ctx = format!("seed {seed} cycle {cycle}");
        check(&log_dir, &acked, &mut batches, &ctx);
    }
    assert!(
        acked.len() > 100,
        "the writers should have made progress ({})",
        acked.len()
    );
}

/// Only stops a stuck run: the wait below returns as soon as its acknowledgements arrive,
/// however slow the machine is.
const LONG: Duration = Duration::from_secs(300);

/// Runs `log-writer` for one cycle and SIGKILLs it once it has acknowledged a random
/// (seeded) number of batches; returns every line it printed. Fails, rather than killing
/// it early, if those acknowledgements do not come within [`LONG`] or the writer stops.
fn kill_after_some_acks(
    cfg: &Run,
    log_dir: &std::path::Path,
    cycle: u64,
    rng: &mut SplitMix,
) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_log-writer"))
        .arg(log_dir)
        .arg((cycle * CYCLE_IDS).to_string())
        .arg(cfg.threads.to_string())
        .arg(cfg.segment_bytes.to_string())
        .arg(cfg.batch_max.to_string())
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
    let want = 1 + rng.below(300);
    let deadline = Instant::now() + LONG;
    let mut lines: Vec<String> = Vec::new();
    let mut failure = None;
    while failure.is_none() && (lines.len() as u64) < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Timeout) => failure = Some(format!("not after {LONG:?}")),
            Err(RecvTimeoutError::Disconnected) => failure = Some("log-writer stopped".into()),
        }
    }
    child.kill().unwrap(); // SIGKILL (or a no-op if it already stopped)
    let status = child.wait().unwrap();
    reader.join().unwrap();
    if let Some(why) = failure {
        panic!(
            "cycle {cycle}: {} of {want} acknowledgements, {why} ({status})",
            lines.len()
        );
    }
    // Everything printed before the kill counts as acknowledged.
    lines.extend(rx.try_iter());
    lines
}

/// Every batch `log-writer` ever wrote, found from any of its ids.
struct Batches {
    batch_max: u64,
    /// (cycle, thread) -> first id (relative to the thread's base) of each round.
    starts: HashMap<(u64, u64), Vec<u64>>,
}

impl Batches {
    fn new(batch_max: u64) -> Batches {
        Batches {
            batch_max,
            starts: HashMap::new(),
        }
    }

    /// The batch holding `id`: its first id and its length.
    fn of(&mut self, id: u64) -> (u64, u64) {
        let (cycle, thread) = (id / CYCLE_IDS, (id % CYCLE_IDS) / THREAD_IDS);
        let base = cycle * CYCLE_IDS + thread * THREAD_IDS;
        let offset = id - base;
        let starts = self
            .starts
            .entry((cycle, thread))
            .or_insert_with(|| vec![0]);
        while *starts.last().unwrap() <= offset {
            let round = starts.len() as u64 - 1;
            let next = starts.last().unwrap() + batch_len(round, thread, self.batch_max);
            starts.push(next);
        }
        let round = starts.partition_point(|s| *s <= offset) - 1;
        let len = starts[round + 1] - starts[round];
        (base + starts[round], len)
    }
}

fn check(dir: &std::path::Path, acked: &HashMap<u64, u64>, batches: &mut Batches, ctx: &str) {
    let log = Log::open(
        RealFs::shared(),
        dir,
        LogConfig::default(),
        SegmentCache::new(16),
    )
    .unwrap();
    let mut next = SeqNo(0);
    let mut count = 0u64;
    // The batch being read: its first id, length, and how many of it were read so far.
    let mut open: Option<(u64, u64, u64)> = None;
    loop {
        let b = log
            .read(next, 1000, usize::MAX)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        if b.records.is_empty() {
            break;
        }
        for r in &b.records {
            assert_eq!(r.seq.0, count, "{ctx}: gap or reorder");
            let id =
                identify(&r.data).unwrap_or_else(|| panic!("{ctx}: record {} is damaged", r.seq));
            if let Some(want) = acked.get(&r.seq.0) {
                assert_eq!(
                    *want, id,
                    "{ctx}: record {} is not the acknowledged one",
                    r.seq
                );
            }
            let (first, len) = batches.of(id);
            open = match open {
                Some((f, l, n)) if f == first => Some((f, l, n + 1)),
                Some((f, l, n)) => panic!("{ctx}: batch of id {f} has {n} of its {l} records"),
                None => Some((first, len, 1)),
            };
            assert_eq!(id, first + open.unwrap().2 - 1, "{ctx}: batch out of order");
            if let Some((_, l, n)) = open {
                if n == l {
                    open = None;
                }
            }
            count += 1;
        }
        next = b.next;
    }
    if let Some((f, l, n)) = open {
        panic!("{ctx}: the last batch (id {f}) has {n} of its {l} records");
    }
    let missing = acked.keys().filter(|s| **s >= count).count();
    assert_eq!(missing, 0, "{ctx}: {missing} acknowledged records lost");
}
