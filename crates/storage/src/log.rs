//! [`Log`]: one shard's ordered segments, with appends under group commit, reads, seeks
//! by time, sealing and retention. Recovery on open lives in `recovery`.
//!
//! Concurrency: one mutex guards the log's state; appends write under it (a `pwrite` into
//! the page cache), then wait for durability. The first waiter that finds no sync running
//! becomes the leader: it notes how far the log is written, releases the lock, syncs, and
//! publishes that position as durable, waking everyone whose records it covered; appends
//! that arrived meanwhile form the next group. No lock is held across a data sync except
//! in the rare roll, seal and checkpoint steps. Readers copy what they need under the lock
//! (a mapping and the visible length) and decode outside it; `read_shared` hands out
//! records as `Bytes` slices of the mapping instead of copies.
//!
//! A batch is written whole into one segment with one `pwrite` (a segment rolls *before*
//! a batch that does not fit, `roll`), its frames marked so that recovery keeps it only
//! whole. Reads and seeks live in `read`; rolls and recovery points in `roll`.

mod read;
mod roll;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use bytes::Bytes;

use crate::cache::SegmentCache;
use crate::checkpoint;
use crate::config::{LogConfig, SyncMode};
use crate::error::{Error, Result};
use crate::frame::{self, KEY_BYTES_LIMIT};
use crate::fs::{FileHandle, FileSystem, Mapping};
use crate::gaps::Gap;
use crate::header::HEADER_BYTES;
use crate::index::{Indexer, TimeIndex};
use crate::names::{self, SegmentFile, segment_path};
use crate::segment::{self, SealedMeta};
use crate::syncer::SyncScheduler;
use crate::types::{Record, RecordIn, SeqNo, TimestampMs};

pub(crate) use roll::{flush_index, write_atomically, write_checkpoint_slot};

static LOG_IDS: AtomicU64 = AtomicU64::new(1);
const SCRATCH_KEEP_BYTES: usize = 16 * 1024 * 1024;

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence of the first record of the batch.
    pub first: SeqNo,
    /// Sequence of the last record of the batch.
    pub last: SeqNo,
    /// The arrival time given to every record of the batch.
    pub timestamp: TimestampMs,
}

/// What [`Log::append_nowait`] wrote, and what it still waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The records written.
    pub appended: Appended,
    /// The batch is durable once the log's durable point reaches this sequence; `None`
    /// when nothing is waited for ([`SyncMode::Interval`]).
    pub durable_at: Option<SeqNo>,
}

/// Records read from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// The records, in sequence order, without gaps.
    pub records: Vec<Record>,
    /// The sequence to read next.
    pub next: SeqNo,
}

/// Records read from a log without copying (see [`Log::read_shared`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBatch {
    /// The records, in sequence order, without gaps.
    pub records: Vec<SharedRecord>,
    /// The sequence to read next.
    pub next: SeqNo,
}

/// A record whose key and data share the segment's memory map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    /// Its sequence in the shard.
    pub seq: SeqNo,
    /// Arrival time, assigned at append.
    pub timestamp: TimestampMs,
    /// The partition key's bytes.
    pub partition_key: Bytes,
    /// The explicit hash key, if one was given.
    pub explicit_hash_key: Option<[u8; 16]>,
    /// The payload.
    pub data: Bytes,
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// The first sequence still on disk afterwards.
    pub trim_horizon: SeqNo,
}

/// What the last open had to do to recover the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Bytes of frames checked after the recovery point.
    pub scanned_bytes: u64,
    /// Bytes cut off the end of the active segment: a torn write or an incomplete batch
    /// (never acknowledged), or damage.
    pub truncated_bytes: u64,
    /// Bytes dropped because they were damaged (not a torn write), copied aside for
    /// inspection: the tail of the active segment, and whole segments `repair` set aside.
    pub damaged_bytes: u64,
    /// Sequence numbers given up after damage: the records acknowledged under them, if
    /// any, are lost, and no later record gets them.
    pub sequences_skipped: u64,
    /// Sealed segments that `repair` found damaged and set aside.
    pub segments_repaired: u32,
}

impl RecoveryStats {
    /// Whether recovery found damage (as opposed to a torn tail).
    pub fn found_damage(&self) -> bool {
        self.damaged_bytes > 0 || self.sequences_skipped > 0 || self.segments_repaired > 0
    }
}

/// One shard's durable log. Share it as `Arc<Log>`; every method takes `&self`.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) config: LogConfig,
    cache: Arc<SegmentCache>,
    syncer: Arc<SyncScheduler>,
    id: u64,
    state: Mutex<State>,
    synced: Condvar,
    /// `State::durable_next`, mirrored for [`Log::durable_next`] without the lock.
    durable: AtomicU64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).finish()
    }
}

/// The segment being written.
pub(crate) struct Active {
    pub base: SeqNo,
    pub file: Arc<dyn FileHandle>,
    pub map: Arc<dyn Mapping>,
    /// Bytes written to the file (all frames complete).
    pub written: u64,
    /// Bytes readers may see.
    pub visible: u64,
    pub indexer: Indexer,
    /// Bytes of `indexer.seq` / `indexer.time` already in the index files.
    pub flushed_seq: usize,
    pub flushed_time: usize,
    /// A failed write left bytes past `written` that could not be cut off yet; the next
    /// write or roll cuts them first.
    pub cut_pending: bool,
}

pub(crate) struct State {
    pub sealed: Vec<SealedMeta>,
    pub active: Active,
    pub next_seq: SeqNo,
    pub last_ts: Option<TimestampMs>,
    /// Every record below this is on stable storage.
    pub durable_next: SeqNo,
    pub sync_running: bool,
    pub poisoned: Option<String>,
    pub is_sealed: bool,
    pub checkpoint_generation: u64,
    /// Active-segment position of the last recovery point (0 if it is in another segment).
    pub checkpoint_pos: u64,
    pub last_sync: Instant,
    pub scratch: Vec<u8>,
    pub recovery: RecoveryStats,
    /// The bound in the newest recovery point: every sequence ever acknowledged is below
    /// it (raised before a durable point past it is published).
    pub seq_reserved: SeqNo,
    /// Sequences that hold no record (given up after damage), from the `gaps` file.
    pub gaps: Vec<Gap>,
}

impl Active {
    fn first_ts(&self) -> Option<TimestampMs> {
        let t = TimeIndex(&self.indexer.time);
        (!t.is_empty()).then(|| t.get(0).ts)
    }
}

impl State {
    fn has_records(&self) -> bool {
        self.next_seq > self.active.base
    }
}

impl Log {
    /// Bytes past the file headers in the segment files of the log in `dir`, read from
    /// file lengths alone (nothing is opened for writing or recovered): 0 means the log never
    /// held a record. Start-up uses it to tell an empty directory a crash left behind from
    /// one holding records the metadata no longer names.
    pub fn stored_record_bytes(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
        let mut total = 0u64;
        for name in fs.list_dir(dir).map_err(|e| Error::io(dir, e))? {
            if let Some((_, SegmentFile::Log)) = names::parse_segment_name(&name) {
                let path = dir.join(&name);
                let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
                let len = file.len().map_err(|e| Error::io(&path, e))?;
                total += len.saturating_sub(HEADER_BYTES as u64);
            }
        }
        Ok(total)
    }

    /// Opens (recovering) or creates the log in `dir`. A new log starts at sequence 0.
    /// Its group commits sync the active segment with their own `fdatasync`.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        cache: Arc<SegmentCache>,
    ) -> Result<Log> {
        Log::open_with_syncer(fs, dir, config, cache, SyncScheduler::new(0))
    }

    /// As [`Log::open`], with group commits that go through `syncer`, shared with the other
    /// logs on the same disk so that many shards waiting at once share syncs.
    pub fn open_with_syncer(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: LogConfig,
        cache: Arc<SegmentCache>,
        syncer: Arc<SyncScheduler>,
    ) -> Result<Log> {
        config.validate()?;
        let state = crate::recovery::recover(&*fs, dir, &config)?;
        let log = Log {
            dir: dir.to_path_buf(),
            fs,
            config,
            cache,
            syncer,
            id: LOG_IDS.fetch_add(1, Ordering::Relaxed),
            durable: AtomicU64::new(state.durable_next.0),
            state: Mutex::new(state),
            synced: Condvar::new(),
        };
        log.finish_recovery()?;
        Ok(log)
    }

    /// The shard directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first sequence still on disk.
    pub fn trim_horizon(&self) -> SeqNo {
        let st = self.lock();
        st.sealed.first().map_or(st.active.base, |m| m.base)
    }

    /// The sequence the next appended record will get.
    pub fn next_seq(&self) -> SeqNo {
        self.lock().next_seq
    }

    /// The arrival time of the newest record, if any.
    pub fn last_timestamp(&self) -> Option<TimestampMs> {
        self.lock().last_ts
    }

    /// Whether the log is sealed.
    pub fn is_sealed(&self) -> bool {
        self.lock().is_sealed
    }

    /// [`Log::is_sealed`], or `None` while another thread holds the log's lock.
    pub fn try_is_sealed(&self) -> Option<bool> {
        match self.state.try_lock() {
            Ok(st) => Some(st.is_sealed),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner().is_sealed),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Appends a batch and returns once it is durable (in [`SyncMode::Always`]). Every
    /// record of the batch gets the same arrival time: `now`, or the previous record's if
    /// that is later, so times never decrease.
    ///
    /// On error, no record of the batch is acknowledged, and none becomes readable, now or
    /// after a restart, except after a failed sync, whose outcome is unknown: then the
    /// whole batch may be there after a restart (never part of it).
    pub fn append(&self, records: &[RecordIn<'_>], now: TimestampMs) -> Result<Appended> {
        let written = self.append_nowait(records, now)?;
        if let Some(target) = written.durable_at {
            self.wait_durable_until(target)?;
        }
        Ok(written.appended)
    }

    /// Writes a batch as [`Log::append`] does, without waiting for it to be durable: the
    /// batch is acknowledged only once [`Log::wait_durable_until`] returns `Ok` for
    /// [`Written::durable_at`] (or at once when that is `None`, in
    /// [`SyncMode::Interval`]). Lets a caller wait for many logs at once, or without
    /// holding a thread, while one thread per log leads the syncs.
    pub fn append_nowait(&self, records: &[RecordIn<'_>], now: TimestampMs) -> Result<Written> {
        let bytes = self.check_records(records)?;
        let mut st = self.lock();
        self.check_writable(&st)?;
        let ts = st.last_ts.map_or(now, |t| t.max(now));
        if self.needs_roll(&st, bytes, ts) {
            self.roll(&mut st, ts)?;
        }
        let first = st.next_seq;
        self.write_batch(&mut st, records, ts)?;
        Ok(self.written(st, first, ts))
    }

    /// [`Log::append_nowait`] for a caller that must not wait on a lock or a sync (an
    /// async runtime thread): `None`, with nothing written, when another thread holds the
    /// log's lock, when the batch does not fit in the active segment (a roll syncs), when
    /// a failed write's leftover must be cut first, or when an interval sync is due. Otherwise the batch is written (one `pwrite` into the
    /// page cache) exactly as [`Log::append_nowait`] writes it.
    pub fn try_append_nowait(
        &self,
        records: &[RecordIn<'_>],
        now: TimestampMs,
    ) -> Option<Result<Written>> {
        let bytes = match self.check_records(records) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(e)),
        };
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if let Err(e) = self.check_writable(&st) {
            return Some(Err(e));
        }
        let ts = st.last_ts.map_or(now, |t| t.max(now));
        if self.needs_roll(&st, bytes, ts) || st.active.cut_pending || self.interval_sync_due(&st) {
            return None;
        }
        let first = st.next_seq;
        if let Err(e) = self.write_batch(&mut st, records, ts) {
            return Some(Err(e));
        }
        Some(Ok(self.written(st, first, ts)))
    }

    /// What an append that wrote from `first` at `ts` returns, once its bytes are written:
    /// in [`SyncMode::Interval`] they become visible now (and a due sync runs here).
    fn written(&self, mut st: MutexGuard<'_, State>, first: SeqNo, ts: TimestampMs) -> Written {
        let appended = Appended {
            first,
            last: SeqNo(st.next_seq.0 - 1),
            timestamp: ts,
        };
        let durable_at = match self.config.sync {
            SyncMode::Always => Some(st.next_seq),
            SyncMode::Interval { .. } => {
                st.active.visible = st.active.written;
                if self.interval_sync_due(&st) {
                    drop(self.lead_sync(st));
                }
                None
            }
        };
        Written {
            appended,
            durable_at,
        }
    }

    /// Whether, in [`SyncMode::Interval`], an append should lead a sync now.
    fn interval_sync_due(&self, st: &State) -> bool {
        match self.config.sync {
            SyncMode::Always => false,
            SyncMode::Interval { interval_ms } => {
                !st.sync_running && st.last_sync.elapsed().as_millis() >= u128::from(interval_ms)
            }
        }
    }

    /// Returns once every record before `target` is durable, leading a sync if none is
    /// running (group commit); `Err` if the log is poisoned first.
    pub fn wait_durable_until(&self, target: SeqNo) -> Result<()> {
        let st = self.lock();
        self.wait_durable(st, target)
    }

    /// The sequence below which every record is durable. Takes no lock, so an async
    /// caller may ask while a sync or a roll holds the log.
    pub fn durable_next(&self) -> SeqNo {
        SeqNo(self.durable.load(Ordering::Acquire))
    }

    /// In [`SyncMode::Interval`], syncs if the interval has passed and something is
    /// unsynced. A no-op in [`SyncMode::Always`]. Call it from a timer.
    pub fn sync_if_due(&self) -> Result<()> {
        let SyncMode::Interval { interval_ms } = self.config.sync else {
            return Ok(());
        };
        let st = self.lock();
        let due = st.last_sync.elapsed().as_millis() >= u128::from(interval_ms);
        if due && !st.sync_running && st.durable_next < st.next_seq && st.poisoned.is_none() {
            let st = self.lead_sync(st);
            if let Some(reason) = &st.poisoned {
                return Err(self.poisoned(reason));
            }
        }
        Ok(())
    }

    /// Closes the log for writes, durably; idempotent. Returns the last record's sequence,
    /// or `None` if the log never held a record.
    pub fn seal(&self) -> Result<Option<SeqNo>> {
        let mut st = self.lock();
        if !st.is_sealed {
            if let Some(reason) = &st.poisoned {
                return Err(self.poisoned(reason));
            }
            self.sync_active_locked(&mut st)?;
            let marker = self.dir.join(names::SEALED);
            let bytes = checkpoint::encode_seal(st.next_seq);
            self.write_atomically(&marker, &bytes)
                .inspect_err(|e| self.poison_on_sync_error(&mut st, e))?;
            st.is_sealed = true;
            tracing::info!(log = %self.dir.display(), next_seq = %st.next_seq, "sealed");
        }
        Ok(st.next_seq.0.checked_sub(1).map(SeqNo))
    }

    /// Reopens a sealed log for writes (used when a reshard that sealed it is rolled back).
    pub fn unseal(&self) -> Result<()> {
        let mut st = self.lock();
        if st.is_sealed {
            let marker = self.dir.join(names::SEALED);
            self.fs
                .remove_file(&marker)
                .map_err(|e| Error::io(&marker, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::sync(&self.dir, e))?;
            st.is_sealed = false;
        }
        Ok(())
    }

    /// Deletes whole segments whose newest record is older than `now - retention_ms`,
    /// oldest first. An active segment that old is rolled first, so an idle shard's data
    /// expires too; the active segment itself is never deleted.
    pub fn apply_retention(&self, now: TimestampMs, retention_ms: u64) -> Result<RetentionOutcome> {
        let cutoff = now.0.saturating_sub(retention_ms);
        let mut st = self.lock();
        let expired_active = st.has_records() && st.last_ts.is_some_and(|t| t.0 < cutoff);
        if expired_active && !st.is_sealed && st.poisoned.is_none() {
            self.roll(&mut st, now)?;
        }
        let mut deleted = 0;
        while let Some(meta) = st.sealed.first().copied() {
            if meta.max_ts.is_some_and(|t| t.0 >= cutoff) {
                break;
            }
            self.cache.remove((self.id, meta.base.0));
            let renamed = self.rename_segment_deleted(meta.base);
            if renamed.is_ok()
                || !self
                    .fs
                    .exists(&segment_path(&self.dir, meta.base, SegmentFile::Log))
            {
                st.sealed.remove(0);
                deleted += 1;
            }
            renamed?;
        }
        if deleted > 0 {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| Error::sync(&self.dir, e))?;
            crate::recovery::remove_leftovers(&*self.fs, &self.dir)?;
            tracing::info!(log = %self.dir.display(), segments = deleted, "retention deleted segments");
        }
        let trim_horizon = st.sealed.first().map_or(st.active.base, |m| m.base);
        Ok(RetentionOutcome {
            segments_deleted: deleted,
            trim_horizon,
        })
    }

    /// Syncs everything and writes a recovery point, so the next open scans nothing.
    /// The log stays usable. Fails only if something could not be made durable: a
    /// recovery point that cannot be written (and was not lost to a failed sync) is logged,
    /// and the next open scans a little more.
    pub fn close(&self) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.poisoned {
            return Err(self.poisoned(reason));
        }
        self.sync_active_locked(&mut st)?;
        let (pos, next, ts) = (st.active.written, st.next_seq, st.last_ts);
        match self.write_checkpoint(&mut st, pos, next, ts) {
            Err(e) if st.poisoned.is_some() => Err(e),
            Err(e) => {
                tracing::warn!(log = %self.dir.display(), error = %e, "could not write a recovery point on close");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// What the open that created this handle did to recover the log.
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.lock().recovery
    }

    /// The number of segments (sealed and active).
    pub fn segment_count(&self) -> usize {
        self.lock().sealed.len() + 1
    }

    // ---- private helpers ----

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn poisoned(&self, reason: &str) -> Error {
        Error::Poisoned {
            path: self.dir.clone(),
            reason: reason.to_owned(),
        }
    }

    fn visible_next(&self, st: &State) -> SeqNo {
        match self.config.sync {
            SyncMode::Always => st.durable_next,
            SyncMode::Interval { .. } => st.next_seq,
        }
    }

    /// Checks a batch against the limits and returns its encoded size.
    fn check_records(&self, records: &[RecordIn<'_>]) -> Result<u64> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "an append needs at least one record".into(),
            ));
        }
        for (i, r) in records.iter().enumerate() {
            if r.data.len() > self.config.record_bytes_max {
                return Err(Error::InvalidArgument(format!(
                    "record {i}: data of {} bytes exceeds the maximum of {} bytes",
                    r.data.len(),
                    self.config.record_bytes_max
                )));
            }
            if r.partition_key.len() > KEY_BYTES_LIMIT {
                return Err(Error::InvalidArgument(format!(
                    "record {i}: partition key of {} bytes exceeds {KEY_BYTES_LIMIT} bytes",
                    r.partition_key.len()
                )));
            }
        }
        let bytes: u64 = records.iter().map(|r| frame::encoded_len(r) as u64).sum();
        if bytes > self.config.batch_bytes_max {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} records takes {bytes} bytes on disk, more than the log's limit of {} bytes",
                records.len(),
                self.config.batch_bytes_max
            )));
        }
        Ok(bytes)
    }

    fn check_writable(&self, st: &State) -> Result<()> {
        if let Some(reason) = &st.poisoned {
            return Err(self.poisoned(reason));
        }
        if st.is_sealed {
            return Err(Error::Sealed {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Whether a batch of `bytes` at `now` must go to a new segment: the active one holds
    /// records and is too old, or too full for the whole batch (a batch is never split, so
    /// an empty segment takes any batch, and a segment may pass its size by one batch).
    fn needs_roll(&self, st: &State, bytes: u64, now: TimestampMs) -> bool {
        st.has_records()
            && (self.too_old(st, now) || st.active.written + bytes > self.config.segment_bytes_max)
    }

    /// Whether the active segment has reached the configured age at `now`.
    fn too_old(&self, st: &State, now: TimestampMs) -> bool {
        match (self.config.segment_age_max_ms, st.active.first_ts()) {
            (Some(age), Some(first)) => now.0.saturating_sub(first.0) >= age,
            _ => false,
        }
    }

    /// Writes a whole batch at the end of the active segment with one write, every frame
    /// but the last marked "more follow". On failure nothing of it stays: what landed is
    /// cut off (now, or before the next write if the cut fails too), its index entries are
    /// forgotten, and no sequence is used.
    fn write_batch(&self, st: &mut State, batch: &[RecordIn<'_>], ts: TimestampMs) -> Result<()> {
        self.cut_pending_tail(st)?;
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        let start = st.active.written;
        let mark = st.active.indexer.clone_marks();
        for (i, r) in batch.iter().enumerate() {
            let seq = SeqNo(st.next_seq.0 + i as u64);
            let rel = (seq.0 - st.active.base.0) as u32;
            st.active
                .indexer
                .observe(rel, (start + buf.len() as u64) as u32, ts);
            frame::encode_in_batch(r, seq, ts, i + 1 < batch.len(), &mut buf);
        }
        let result = st.active.file.write_all_at(start, &buf);
        let len = buf.len() as u64;
        if buf.capacity() <= SCRATCH_KEEP_BYTES {
            st.scratch = buf;
        }
        let path = segment::log_path(&self.dir, st.active.base);
        match result {
            Ok(()) => {
                st.active.written += len;
                st.next_seq = SeqNo(st.next_seq.0 + batch.len() as u64);
                st.last_ts = Some(ts);
                Ok(())
            }
            Err(e) => {
                st.active.indexer.restore_marks(mark);
                // Cut off whatever part of the batch landed, so it cannot resurface. If
                // that fails too, the next write or roll cuts first; until then readers
                // never see past `written`, and recovery drops an incomplete batch.
                if let Err(cut) = st.active.file.set_len(start) {
                    tracing::error!(segment = %path.display(), position = start, error = %cut, "could not cut off a failed write; will retry before the next write");
                    st.active.cut_pending = true;
                }
                Err(Error::io(path, e))
            }
        }
    }

    /// Waits until every record below `target` is durable, leading a sync when none runs.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, State>, target: SeqNo) -> Result<()> {
        loop {
            if st.durable_next >= target {
                return Ok(());
            }
            if let Some(reason) = &st.poisoned {
                return Err(self.poisoned(reason));
            }
            st = if st.sync_running {
                self.synced.wait(st).unwrap_or_else(|e| e.into_inner())
            } else {
                self.lead_sync(st)
            };
        }
    }

    /// Syncs the active segment without holding the lock, then publishes the result.
    fn lead_sync<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.sync_running = true;
        let (base, pos, next, ts) = (st.active.base, st.active.written, st.next_seq, st.last_ts);
        let file = st.active.file.clone();
        drop(st);
        let result = self.syncer.sync_data(&file);
        let mut st = self.lock();
        st.sync_running = false;
        st.last_sync = Instant::now();
        match result {
            Ok(()) => {
                if st.active.base == base {
                    self.reserve_before_publishing(&mut st, pos, next, ts);
                }
                st.durable_next = st.durable_next.max(next);
                self.durable.store(st.durable_next.0, Ordering::Release);
                if st.active.base == base {
                    st.active.visible = st.active.visible.max(pos);
                    let due = pos.saturating_sub(st.checkpoint_pos)
                        >= self.config.checkpoint_interval_bytes;
                    if due && st.poisoned.is_none() {
                        if let Err(e) = self.write_checkpoint(&mut st, pos, next, ts) {
                            tracing::warn!(log = %self.dir.display(), error = %e, "could not write a recovery point");
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(log = %self.dir.display(), error = %e, "sync failed; the log is poisoned");
                st.poisoned = Some(format!("sync failed: {e}"));
            }
        }
        self.synced.notify_all();
        st
    }

    /// Before records below `next` (durable up to `pos`, a batch boundary of the active
    /// segment) are published, makes sure the recovery point's reservation is above them,
    /// so that recovery after damage never gives their numbers again. Rare: every
    /// recovery point raises the reservation by `seq_reserve`. If the recovery point cannot
    /// be written, the records are published anyway (they are durable) and the error is
    /// logged: only damage found before a later recovery point could then reuse numbers.
    fn reserve_before_publishing(
        &self,
        st: &mut State,
        pos: u64,
        next: SeqNo,
        ts: Option<TimestampMs>,
    ) {
        if next <= st.seq_reserved || st.poisoned.is_some() {
            return;
        }
        if let Err(e) = self.write_checkpoint(st, pos, next, ts) {
            tracing::error!(log = %self.dir.display(), error = %e, next_seq = %next, "could not raise the sequence reservation in the recovery point");
        }
    }

    /// Syncs the active segment under the lock and publishes everything as durable.
    fn sync_active_locked(&self, st: &mut State) -> Result<()> {
        let path = segment::log_path(&self.dir, st.active.base);
        if let Err(e) = st.active.file.sync_data() {
            st.poisoned = Some(format!("sync failed: {e}"));
            self.synced.notify_all();
            return Err(Error::sync(path, e));
        }
        let (pos, next, ts) = (st.active.written, st.next_seq, st.last_ts);
        self.reserve_before_publishing(st, pos, next, ts);
        st.durable_next = st.next_seq;
        self.durable.store(st.durable_next.0, Ordering::Release);
        st.active.visible = st.active.written;
        self.synced.notify_all();
        Ok(())
    }

    /// Renames a segment's files to `*.deleted`, the log first: once the log is gone the
    /// segment is gone, and stray index files are cleaned up at the next open.
    fn rename_segment_deleted(&self, base: SeqNo) -> Result<()> {
        for kind in SegmentFile::ALL {
            let path = segment_path(&self.dir, base, kind);
            if self.fs.exists(&path) {
                let to = names::deleted_path(&path);
                self.fs
                    .rename(&path, &to)
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Poisons the log if `e` is a failed sync; any other error leaves it usable.
    fn poison_on_sync_error(&self, st: &mut State, e: &Error) {
        if matches!(e, Error::SyncFailed { .. }) {
            tracing::error!(log = %self.dir.display(), error = %e, "sync failed; the log is poisoned");
            st.poisoned = Some(e.to_string());
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.cache.remove_log(self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{SegmentCache, SimFs};

    #[test]
    fn try_append_refuses_while_the_lock_is_held() {
        let sim = SimFs::new();
        let log = Log::open(
            sim.shared(),
            Path::new("/data/shard-0"),
            LogConfig::default(),
            SegmentCache::new(2),
        )
        .unwrap();
        let rec = RecordIn {
            partition_key: b"k",
            explicit_hash_key: None,
            data: b"payload",
        };
        let held = log.lock();
        assert!(log.try_append_nowait(&[rec], TimestampMs(1)).is_none());
        assert_eq!(log.try_is_sealed(), None);
        drop(held);
        let w = log
            .try_append_nowait(&[rec], TimestampMs(1))
            .unwrap()
            .unwrap();
        assert_eq!(w.appended.first, SeqNo(0));
        assert_eq!(log.try_is_sealed(), Some(false));
    }
}
