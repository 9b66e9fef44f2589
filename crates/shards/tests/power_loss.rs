#![allow(clippy::unwrap_used)]
//! Power loss at scale over storage and the shard manager together: thousands of tiny
//! seeded scenarios, each a random mix of puts (one record or a batch), splits, merges and
//! UpdateShardCount (with puts, sometimes, between the call and the background work that
//! commits it) on a simulated disk, cut off by a power loss after a random number of
//! disk operations (the last write torn), then a crash that drops every unsynced byte and
//! name (or keeps a torn prefix of unsynced appends), and a reopen.
//!
//! After every recovery: the reopen succeeds; every acknowledged record is read once, in
//! the shard and at the sequence it was acknowledged with, byte for byte; every record read
//! is one that was sent, whole; every append (one shard's part of a put) is there whole or
//! not at all; reading parents before children, each key's records come in the order they
//! were sent; every shard an acknowledged change made is there with the
//! same range, parents and starting sequence (and ending sequence once closed); open
//! shards tile the hash-key space; shard directories match the catalogue; and the manager
//! takes a put and a reshard.
//!
//! `crates/storage/tests/crash.rs` crashes one log at every operation and
//! `crash_reshard.rs` one split or merge at every operation; this test mixes everything at
//! random points. Seeded: `SLUICE_SEED` sets the base seed; `SLUICE_POWER_LOSS_SCENARIOS`
//! the count (default 2,000). A failure names the base seed and the scenario.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::{open_sim, shard_dirs};
use sluice_shards::{
    CreateStream, HashKey, ManagerConfig, RouteKey, ShardId, ShardInfo, ShardManager, ShardState,
};
use sluice_storage::{CrashMode, LogConfig, RecordIn, SeqNo, SimFs, SplitMix, TimestampMs};

const T0: u64 = 1_000_000;
const STREAM: &str = "s";
/// Keys records are spread over: few, so each key sees many records and reshards.
const KEYS: u64 = 4;

/// Tiny everything, so a scenario of a dozen operations rolls segments, writes recovery
/// points and compacts the journal.
fn config() -> ManagerConfig {
    ManagerConfig {
        log: LogConfig {
            segment_bytes_max: 4096,
            index_interval_bytes: 64,
            checkpoint_interval_bytes: 512,
            ..LogConfig::default()
        },
        shard_count_updates_per_day_max: 1_000_000,
        journal_compact_bytes: 1024,
        ..ManagerConfig::default()
    }
}

fn key(n: u64) -> Vec<u8> {
    format!("k{}", n % KEYS).into_bytes()
}

/// The data of record `n`: its number, then filler whose length and bytes come from `n`.
fn data(n: u64) -> Vec<u8> {
    let mut rng = SplitMix(n);
    let mut d = format!("n:{n}:").into_bytes();
    let len = rng.below(400) as usize;
    d.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
    d
}

fn parse(data: &[u8]) -> Option<u64> {
    let text = data.strip_prefix(b"n:")?;
    let end = text.iter().position(|b| *b == b':')?;
    std::str::from_utf8(&text[..end]).ok()?.parse().ok()
}

/// What one scenario was told by the manager.
#[derive(Default)]
struct Acked {
    records: BTreeMap<u64, (ShardId, SeqNo)>,
    shards: BTreeMap<ShardId, ShardInfo>,
    sent: u64,
    /// The record numbers of every append tried, acknowledged or not.
    batches: Vec<Vec<u64>>,
}

fn now(step: u64) -> TimestampMs {
    TimestampMs(T0 + step)
}

/// Puts records `n..n+count` as one append per shard (routing again after `Sealed`).
fn put(m: &ShardManager, acked: &mut Acked, count: u64, t: TimestampMs) -> bool {
    let first = acked.sent;
    acked.sent += count;
    let mut groups: Vec<(ShardId, std::sync::Arc<sluice_storage::Log>, Vec<u64>)> = Vec::new();
    for n in first..first + count {
        let k = key(n);
        let Ok(route) = m.route(STREAM, RouteKey::PartitionKey(&k), t) else {
            return false;
        };
        match groups.iter_mut().find(|g| g.0 == route.shard) {
            Some(g) => g.2.push(n),
            None => groups.push((route.shard, route.log, vec![n])),
        }
    }
    for (shard, log, ns) in groups {
        let (keys, datas): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            ns.iter().map(|n| (key(*n), data(*n))).unzip();
        let records: Vec<RecordIn<'_>> = keys
            .iter()
            .zip(&datas)
            .map(|(k, d)| RecordIn {
                partition_key: k,
                explicit_hash_key: None,
                data: d,
            })
            .collect();
        // A sealed shard (a reshard won the race) just fails these records here; the
        // scenario sends the next ones as new records, as a client would.
        acked.batches.push(ns.clone());
        let Ok(a) = log.append(&records, t) else {
            return false;
        };
        for (i, n) in ns.iter().enumerate() {
            acked
                .records
                .insert(*n, (shard, SeqNo(a.first.0 + i as u64)));
        }
    }
    true
}

fn open_shards(m: &ShardManager, t: TimestampMs) -> Vec<ShardInfo> {
    let d = m.describe_stream(STREAM, t).unwrap();
    let mut open: Vec<ShardInfo> = d
        .shards
        .into_iter()
        .filter(|s| s.state() == ShardState::Open)
        .collect();
    open.sort_by_key(|s| s.range().start());
    open
}

/// One random reshard; on success the shards it made are recorded as acknowledged.
fn reshard(m: &ShardManager, acked: &mut Acked, rng: &mut SplitMix, t: TimestampMs) -> bool {
    let open = open_shards(m, t);
    let result = match rng.below(3) {
        0 if open.len() < 4 => {
            let s = &open[rng.below(open.len() as u64) as usize];
            let (start, end) = (s.range().start().0, s.range().end().0);
            let mid = start + (end - start) / 2 + 1;
            m.split_shard(STREAM, s.id(), HashKey(mid), t)
        }
        1 if open.len() > 1 => {
            let i = rng.below(open.len() as u64 - 1) as usize;
            m.merge_shards(STREAM, open[i].id(), open[i + 1].id(), t)
        }
        _ => m
            .update_shard_count(STREAM, 1 + rng.below(3) as u32, t)
            .map(drop),
    };
    if result.is_err() {
        return false;
    }
    // Puts may arrive while the reshard is pending: they still go to the parents.
    if rng.chance_half() && !put(m, acked, 1 + rng.below(4), t) {
        return false;
    }
    match m.run_pending(&|| t) {
        Ok(report) if !report.reshards_committed.is_empty() => {}
        _ => return false,
    }
    for s in m.describe_stream(STREAM, t).unwrap().shards {
        acked.shards.insert(s.id(), s);
    }
    true
}

/// Reads every shard, parents before children; returns (shard, seq, record number).
fn read_in_lineage_order(
    m: &ShardManager,
    t: TimestampMs,
    ctx: &str,
) -> Vec<(ShardId, SeqNo, u64)> {
    let shards = m.describe_stream(STREAM, t).unwrap().shards;
    let mut done: HashSet<ShardId> = HashSet::new();
    let mut out = Vec::new();
    while done.len() < shards.len() {
        let before = done.len();
        for s in &shards {
            let parents_done = [s.parent(), s.adjacent_parent()]
                .into_iter()
                .flatten()
                .all(|p| done.contains(&p));
            if done.contains(&s.id()) || !parents_done {
                continue;
            }
            let log = m.shard(STREAM, s.id(), t).unwrap().log.unwrap();
            let batch = log.read(SeqNo(0), 100_000, 64 << 20).unwrap();
            for r in batch.records {
                let n = parse(&r.data)
                    .unwrap_or_else(|| panic!("{ctx}: {} holds an unsent record", s.id()));
                assert_eq!(r.data, data(n), "{ctx}: record {n} damaged");
                assert_eq!(r.partition_key, key(n), "{ctx}: record {n} has a wrong key");
                out.push((s.id(), r.seq, n));
            }
            done.insert(s.id());
        }
        assert!(done.len() > before, "{ctx}: lineage has a cycle");
    }
    out
}

fn check(fs: &SimFs, m: &ShardManager, acked: &Acked, t: TimestampMs, ctx: &str) {
    let read = read_in_lineage_order(m, t, ctx);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut last_of_key: HashMap<u64, u64> = HashMap::new();
    let mut last_in_shard: HashMap<ShardId, SeqNo> = HashMap::new();
    for &(shard, seq, n) in &read {
        assert!(n < acked.sent, "{ctx}: record {n} was never sent");
        assert!(seen.insert(n), "{ctx}: record {n} read twice");
        if let Some(before) = last_of_key.insert(n % KEYS, n) {
            assert!(before < n, "{ctx}: key {} has {n} after {before}", n % KEYS);
        }
        if let Some(before) = last_in_shard.insert(shard, seq) {
            assert!(before < seq, "{ctx}: {shard} has {seq:?} after {before:?}");
        }
        if let Some(at) = acked.records.get(&n) {
            assert_eq!(*at, (shard, seq), "{ctx}: record {n} moved");
        }
    }
    for n in acked.records.keys() {
        assert!(seen.contains(n), "{ctx}: acknowledged record {n} lost");
    }
    for batch in &acked.batches {
        let present = batch.iter().filter(|n| seen.contains(n)).count();
        assert!(
            present == 0 || present == batch.len(),
            "{ctx}: {present} of the {} records of one append survived",
            batch.len()
        );
    }
    let d = m.describe_stream(STREAM, t).unwrap();
    for (id, known) in &acked.shards {
        let now = d
            .shards
            .iter()
            .find(|s| s.id() == *id)
            .unwrap_or_else(|| panic!("{ctx}: acknowledged shard {id} is gone"));
        assert_eq!(
            (
                now.range(),
                now.parent(),
                now.adjacent_parent(),
                now.starting_seq()
            ),
            (
                known.range(),
                known.parent(),
                known.adjacent_parent(),
                known.starting_seq()
            ),
            "{ctx}: shard {id} changed"
        );
        if known.ending_seq().is_some() {
            assert_eq!(
                now.ending_seq(),
                known.ending_seq(),
                "{ctx}: {id} end moved"
            );
        }
    }
    let live: Vec<String> = d
        .shards
        .iter()
        .filter(|s| s.state() != ShardState::Expired)
        .map(|s| s.id().to_string())
        .collect();
    assert_eq!(shard_dirs(fs, d.uid), live, "{ctx}: directories differ");
    common::check_stream(m, STREAM, t.0, &[0, 1 << 126, 1 << 127, u128::MAX]);
}

/// One scenario: set up, run until a power cut, crash, recover, check, keep working.
/// Returns whether the power cut landed inside the workload, and the records acknowledged.
fn scenario(seed: u64, ctx: &str) -> (bool, usize) {
    let mut rng = SplitMix(seed);
    let fs = SimFs::new();
    let mut acked = Acked::default();
    let m = open_sim(&fs, config(), T0).unwrap();
    let shard_count = 1 + rng.below(2) as u32;
    m.create_stream(&CreateStream::new(STREAM, shard_count), now(0))
        .unwrap();
    for s in m.describe_stream(STREAM, now(0)).unwrap().shards {
        acked.shards.insert(s.id(), s);
    }
    let tear = if rng.chance_half() {
        Some(rng.below(64) as usize)
    } else {
        None
    };
    fs.power_cut_after(rng.below(160), tear);
    for step in 1..=16 {
        let t = now(step);
        let ok = if rng.below(4) == 0 {
            reshard(&m, &mut acked, &mut rng, t)
        } else {
            let count = 1 + rng.below(8);
            put(&m, &mut acked, count, t)
        };
        if !ok && fs.is_powered_off() {
            break;
        }
    }
    let cut = fs.is_powered_off();
    let acked_before_cut = acked.records.len();
    drop(m);
    let mode = if rng.chance_half() {
        CrashMode::DropUnsynced
    } else {
        CrashMode::TornTail {
            seed: rng.next_u64(),
        }
    };
    fs.crash(mode);
    let ctx = format!("{ctx}, tear {tear:?}, {mode:?}");
    let t = now(100);
    let m = open_sim(&fs, config(), t.0).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    check(&fs, &m, &acked, t, &ctx);
    assert!(
        put(&m, &mut acked, 3, now(101)),
        "{ctx}: put after recovery failed"
    );
    let open = open_shards(&m, now(102)).len() as u32;
    m.update_shard_count(STREAM, open + 1, now(102))
        .unwrap_or_else(|e| panic!("{ctx}: resize after recovery failed: {e}"));
    let report = m.run_pending(&|| now(102)).unwrap();
    assert_eq!(report.reshards_committed.len(), 1, "{ctx}");
    drop(m);
    let m = open_sim(&fs, config(), T0 + 200).unwrap();
    check(&fs, &m, &acked, now(200), &format!("{ctx}, clean reopen"));
    (cut, acked_before_cut)
}

trait Coin {
    fn chance_half(&mut self) -> bool;
}

impl Coin for SplitMix {
    fn chance_half(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

#[test]
fn thousands_of_power_losses_lose_nothing_acknowledged() {
    let base = common::seed(0x00C0_FFEE);
    let count: u64 = std::env::var("SLUICE_POWER_LOSS_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let started = std::time::Instant::now();
    let (mut cuts, mut records) = (0u64, 0usize);
    for i in 0..count {
        let seed = SplitMix(base ^ i.wrapping_mul(0x9E37_79B9)).next_u64();
        let (cut, acked) = scenario(
            seed,
            &format!("SLUICE_SEED={base} scenario {i} (seed {seed})"),
        );
        cuts += u64::from(cut);
        records += acked;
    }
    eprintln!(
        "{count} power-loss scenarios ({cuts} cut inside the workload, {records} records acknowledged before the cut), base seed {base}, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(cuts * 2 > count, "most power cuts land inside the workload");
}
