//! A process-wide LRU of open sealed segments, so thousands of shards with many segments
//! each keep a bounded number of memory maps. File descriptors are not held at all: a
//! mapping outlives the descriptor it was made from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::segment::SealedMaps;

/// Key of a cached segment: the log's process-unique id and the segment's base sequence.
type Key = (u64, u64);

/// An LRU of mapped sealed segments shared by every log of a process.
pub struct SegmentCache {
    capacity: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    tick: u64,
    entries: HashMap<Key, (u64, Arc<SealedMaps>)>,
}

impl std::fmt::Debug for SegmentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl SegmentCache {
    /// A cache holding at most `capacity` segments (at least one).
    pub fn new(capacity: usize) -> Arc<SegmentCache> {
        Arc::new(SegmentCache {
            capacity: capacity.max(1),
            state: Mutex::new(CacheState::default()),
        })
    }

    /// How many segments are mapped now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no segment is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: Key) -> Option<Arc<SealedMaps>> {
        let mut s = self.lock();
        s.tick += 1;
        let tick = s.tick;
        let entry = s.entries.get_mut(&key)?;
        entry.0 = tick;
        Some(entry.1.clone())
    }

    pub(crate) fn insert(&self, key: Key, maps: Arc<SealedMaps>) {
        let mut s = self.lock();
        s.tick += 1;
        let tick = s.tick;
        s.entries.insert(key, (tick, maps));
        while s.entries.len() > self.capacity {
            let oldest = s
                .entries
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => s.entries.remove(&k),
                None => break,
            };
        }
    }

    pub(crate) fn remove(&self, key: Key) {
        self.lock().entries.remove(&key);
    }

    pub(crate) fn remove_log(&self, log_id: u64) {
        self.lock().entries.retain(|(id, _), _| *id != log_id);
    }
}
