//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::{
    FileSystem, Log, LogConfig, Record, RecordIn, SegmentCache, SeqNo, SimFs, SplitMix, TimestampMs,
};

/// Small segments, dense indexes and frequent recovery points, so a few KiB of records
/// exercise rolls, index lookups and checkpoints.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        segment_age_max_ms: None,
        record_bytes_max: 2048,
        index_interval_bytes: 128,
        checkpoint_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// A record as the tests submit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub key: Vec<u8>,
    pub hash: Option<[u8; 16]>,
    pub data: Vec<u8>,
}

impl Rec {
    pub fn as_in(&self) -> RecordIn<'_> {
        RecordIn {
            partition_key: &self.key,
            explicit_hash_key: self.hash,
            data: &self.data,
        }
    }

    pub fn matches(&self, r: &Record) -> bool {
        r.partition_key == self.key && r.explicit_hash_key == self.hash && r.data == self.data
    }
}

/// A random record; `id` is written into the data so every record is unique.
pub fn random_rec(rng: &mut SplitMix, id: u64, data_max: u64) -> Rec {
    let len = rng.below(data_max + 1) as usize;
    let mut data = id.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (i as u8) ^ (id as u8)));
    let hash = (rng.below(4) == 0).then_some([id as u8; 16]);
    Rec {
        key: format!("key-{}", rng.below(7)).into_bytes(),
        hash,
        data,
    }
}

pub fn open(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    config: &LogConfig,
) -> sluice_storage::Result<Log> {
    Log::open(fs.clone(), dir, config.clone(), SegmentCache::new(8))
}

pub fn sim() -> (SimFs, Arc<dyn FileSystem>, PathBuf) {
    let sim = SimFs::new();
    let fs = sim.shared();
    (sim, fs, PathBuf::from("/data/shard-0"))
}

/// Everything from the trim horizon to the end, in reads of a few records at a time.
/// Sequences increase; they skip only gaps recovery recorded after damage.
pub fn read_all(log: &Log) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = log.trim_horizon();
    for _ in 0..100_000 {
        let batch = log.read(next, 7, 64 * 1024).expect("read");
        if batch.records.is_empty() {
            return out;
        }
        for w in batch.records.windows(2) {
            assert!(
                w[1].seq > w[0].seq,
                "sequences out of order in a read batch"
            );
        }
        assert!(batch.records[0].seq.0 >= next.0.max(log.trim_horizon().0));
        next = batch.next;
        out.extend(batch.records);
    }
    panic!("read_all did not finish");
}

/// The seed for a randomized test: `SLUICE_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("SLUICE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn ts(ms: u64) -> TimestampMs {
    TimestampMs(ms)
}

pub fn seq(n: u64) -> SeqNo {
    SeqNo(n)
}
