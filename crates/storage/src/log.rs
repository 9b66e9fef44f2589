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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use bytes::Bytes;

use crate::cache::SegmentCache;
use crate::checkpoint::{self, CKPT_HEADER_BYTES, Checkpoint};
use crate::config::{LogConfig, SyncMode};
use crate::error::{Error, Result};
use crate::frame::{self, FRAME_HEADER_BYTES, KEY_BYTES_LIMIT};
use crate::fs::{FileHandle, FileSystem, Mapping};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::{Indexer, SeqIndex, TimeIndex};
use crate::names::{self, SegmentFile, segment_path};
use crate::segment::{self, SealedMaps, SealedMeta};
use crate::syncer::SyncScheduler;
use crate::types::{Record, RecordIn, SeqNo, TimestampMs};

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
    /// Bytes cut off the end of the active segment (torn or corrupt).
    pub truncated_bytes: u64,
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

/// Where a read continues.
enum Target {
    Active {
        map: Arc<dyn Mapping>,
        base: SeqNo,
        visible: u64,
        entry: (u64, SeqNo),
    },
    Sealed(SealedMeta),
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
        Ok(Log {
            dir: dir.to_path_buf(),
            fs,
            config,
            cache,
            syncer,
            id: LOG_IDS.fetch_add(1, Ordering::Relaxed),
            durable: AtomicU64::new(state.durable_next.0),
            state: Mutex::new(state),
            synced: Condvar::new(),
        })
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
    /// On error, no record of the batch is acknowledged; some of them may still become
    /// readable (complete, never partial), as with any at-least-once producer retry.
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
        self.check_records(records)?;
        let mut st = self.lock();
        self.check_writable(&st)?;
        let ts = st.last_ts.map_or(now, |t| t.max(now));
        let first = st.next_seq;
        let mut rest = records;
        while !rest.is_empty() {
            let n = self.make_room(&mut st, rest, ts)?;
            self.write_chunk(&mut st, &rest[..n], ts)?;
            rest = &rest[n..];
        }
        Ok(self.written(st, first, ts))
    }

    /// [`Log::append_nowait`] for a caller that must not wait on a lock or a sync (an
    /// async runtime thread): `None`, with nothing written, when another thread holds the
    /// log's lock, when the batch does not fit in the active segment (a roll syncs), or
    /// when an interval sync is due. Otherwise the batch is written (one `pwrite` into the
    /// page cache) exactly as [`Log::append_nowait`] writes it.
    pub fn try_append_nowait(
        &self,
        records: &[RecordIn<'_>],
        now: TimestampMs,
    ) -> Option<Result<Written>> {
        if let Err(e) = self.check_records(records) {
            return Some(Err(e));
        }
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if let Err(e) = self.check_writable(&st) {
            return Some(Err(e));
        }
        let ts = st.last_ts.map_or(now, |t| t.max(now));
        let bytes: u64 = records.iter().map(|r| frame::encoded_len(r) as u64).sum();
        let fits = st.active.written + bytes <= self.config.segment_bytes_max
            && !(st.has_records() && self.too_old(&st, ts));
        if !fits || self.interval_sync_due(&st) {
            return None;
        }
        let first = st.next_seq;
        if let Err(e) = self.write_chunk(&mut st, records, ts) {
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

    /// Reads up to `max_records` records, and up to `max_bytes` of keys and data (at least
    /// one record when any is available), from `from` on. A `from` older than the trim
    /// horizon reads from the trim horizon. Each record is copied into owned buffers; see
    /// [`Log::read_shared`] for reads that copy nothing.
    pub fn read(&self, from: SeqNo, max_records: usize, max_bytes: usize) -> Result<ReadBatch> {
        let (records, next) = self.read_into(from, max_records, max_bytes, |f, _| f.to_record())?;
        Ok(ReadBatch { records, next })
    }

    /// [`Log::read`] without copies: each record's key and data are `Bytes` slices of the
    /// segment's memory map, which they keep alive (a segment deleted by retention stays
    /// readable through them). Every byte returned has been read once here, by the CRC
    /// check, so handing the slices to a network encoder does not fault pages in on the
    /// caller's thread; that encoder's copy is the only one on the way to the socket.
    pub fn read_shared(
        &self,
        from: SeqNo,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<SharedBatch> {
        let (records, next) =
            self.read_into(from, max_records, max_bytes, |f, seg| SharedRecord {
                seq: f.seq,
                timestamp: f.timestamp,
                partition_key: seg.slice(f.partition_key),
                explicit_hash_key: f.explicit_hash_key,
                data: seg.slice(f.data),
            })?;
        Ok(SharedBatch { records, next })
    }

    /// The read loop shared by [`Log::read`] and [`Log::read_shared`]: `make` turns each
    /// frame (borrowed from `segment`) into the caller's record type.
    fn read_into<R>(
        &self,
        from: SeqNo,
        max_records: usize,
        max_bytes: usize,
        mut make: impl FnMut(&frame::FrameRef<'_>, &SegmentBytes) -> R,
    ) -> Result<(Vec<R>, SeqNo)> {
        let mut out = Vec::new();
        let mut last: Option<SeqNo> = None;
        let mut bytes = 0usize;
        let mut seq = from;
        let rounds = self.lock().sealed.len() + 4;
        for _ in 0..rounds {
            let (target, end) = {
                let mut st = self.lock();
                let end = self.visible_next(&st);
                if seq > end {
                    if out.is_empty() {
                        return Err(Error::BeyondEnd {
                            requested: seq,
                            next: end,
                        });
                    }
                    break;
                }
                let trim = st.sealed.first().map_or(st.active.base, |m| m.base);
                seq = seq.max(trim);
                if seq >= end || out.len() >= max_records.max(1) {
                    break;
                }
                (self.locate(&mut st, seq), end)
            };
            let mut sink = Sink {
                out: &mut out,
                last: &mut last,
                total: &mut bytes,
                make: &mut make,
            };
            let done = match target {
                Target::Active {
                    map,
                    base,
                    visible,
                    entry,
                } => {
                    let limit = Limits {
                        end,
                        max_records,
                        max_bytes,
                    };
                    let path = segment::log_path(&self.dir, base);
                    let seg = SegmentBytes::new(map, visible as usize);
                    read_frames(&seg, &path, entry, seq, &limit, &mut sink)?
                }
                Target::Sealed(meta) => {
                    let maps = match self.sealed_maps(&meta) {
                        Ok(m) => m,
                        // Retention may have deleted it since: go again from the new horizon.
                        Err(_) if !self.holds_segment(meta.base) => continue,
                        Err(e) => return Err(e),
                    };
                    let limit = Limits {
                        end: end.min(meta.end),
                        max_records,
                        max_bytes,
                    };
                    let path = segment::log_path(&self.dir, meta.base);
                    let sidx = SeqIndex(maps.seq.entries());
                    let entry = floor_entry(&sidx, meta.base, seq);
                    let seg = SegmentBytes::new(maps.log.clone(), maps.log_len as usize);
                    let done = read_frames(&seg, &path, entry, seq, &limit, &mut sink)?;
                    if !done && last.is_none_or(|r| r.next() < limit.end) && limit.end == meta.end {
                        let have = last.map_or(seq, SeqNo::next);
                        if have < meta.end {
                            return Err(Error::corrupt(
                                path,
                                maps.log_len,
                                format!(
                                    "segment ends before records {have}..{} (missing)",
                                    meta.end
                                ),
                            ));
                        }
                    }
                    done
                }
            };
            if let Some(r) = last {
                seq = r.next();
            }
            if done {
                break;
            }
        }
        let next = last.map_or(seq, SeqNo::next);
        Ok((out, next))
    }

    /// The sequence of the first record whose arrival time is at or after `t`, or the next
    /// sequence to be written if there is none yet.
    pub fn seek_time(&self, t: TimestampMs) -> Result<SeqNo> {
        let (target, end) = {
            let mut st = self.lock();
            let end = self.visible_next(&st);
            match st.sealed.iter().find(|m| m.max_ts.is_some_and(|m| m >= t)) {
                Some(meta) => (Target::Sealed(*meta), end),
                None => {
                    let tidx = TimeIndex(&st.active.indexer.time);
                    let from = tidx.last_before(t).map_or(st.active.base, |e| {
                        SeqNo(st.active.base.0 + u64::from(e.rel))
                    });
                    (self.locate(&mut st, from), end)
                }
            }
        };
        match target {
            Target::Active {
                map,
                base,
                visible,
                entry,
            } => {
                let path = segment::log_path(&self.dir, base);
                first_at_or_after(&map.bytes()[..visible as usize], &path, entry, t, end)
            }
            Target::Sealed(meta) => {
                let maps = self.sealed_maps(&meta)?;
                let tidx = TimeIndex(maps.time.entries());
                let from = tidx
                    .last_before(t)
                    .map_or(meta.base, |e| SeqNo(meta.base.0 + u64::from(e.rel)));
                let entry = floor_entry(&SeqIndex(maps.seq.entries()), meta.base, from);
                let path = segment::log_path(&self.dir, meta.base);
                let found = first_at_or_after(
                    &maps.log.bytes()[..maps.log_len as usize],
                    &path,
                    entry,
                    t,
                    meta.end,
                )?;
                Ok(found.min(end))
            }
        }
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
                .map_err(|e| Error::io(&self.dir, e))?;
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
                .map_err(|e| Error::io(&self.dir, e))?;
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
    /// The log stays usable.
    pub fn close(&self) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.poisoned {
            return Err(self.poisoned(reason));
        }
        self.sync_active_locked(&mut st)?;
        let (pos, next, ts) = (st.active.written, st.next_seq, st.last_ts);
        self.write_checkpoint(&mut st, pos, next, ts)
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

    fn holds_segment(&self, base: SeqNo) -> bool {
        self.lock().sealed.iter().any(|m| m.base == base)
    }

    fn check_records(&self, records: &[RecordIn<'_>]) -> Result<()> {
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
        Ok(())
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

    /// Rolls if the active segment is too old or too full for the next record, and returns
    /// how many of `rest` fit in the active segment (at least one).
    fn make_room(&self, st: &mut State, rest: &[RecordIn<'_>], now: TimestampMs) -> Result<usize> {
        let too_old = self.too_old(st, now);
        let first_len = frame::encoded_len(&rest[0]) as u64;
        let too_full = st.active.written + first_len > self.config.segment_bytes_max;
        if st.has_records() && (too_old || too_full) {
            self.roll(st, now)?;
        }
        let mut size = st.active.written;
        let mut n = 0;
        for r in rest {
            let len = frame::encoded_len(r) as u64;
            if n > 0 && size + len > self.config.segment_bytes_max {
                break;
            }
            size += len;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the active segment has reached the configured age at `now`.
    fn too_old(&self, st: &State, now: TimestampMs) -> bool {
        match (self.config.segment_age_max_ms, st.active.first_ts()) {
            (Some(age), Some(first)) => now.0.saturating_sub(first.0) >= age,
            _ => false,
        }
    }

    fn write_chunk(&self, st: &mut State, chunk: &[RecordIn<'_>], ts: TimestampMs) -> Result<()> {
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        let start = st.active.written;
        let mark = st.active.indexer.clone_marks();
        for (i, r) in chunk.iter().enumerate() {
            let seq = SeqNo(st.next_seq.0 + i as u64);
            let rel = (seq.0 - st.active.base.0) as u32;
            st.active
                .indexer
                .observe(rel, (start + buf.len() as u64) as u32, ts);
            frame::encode(r, seq, ts, &mut buf);
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
                st.next_seq = SeqNo(st.next_seq.0 + chunk.len() as u64);
                st.last_ts = Some(ts);
                Ok(())
            }
            Err(e) => {
                st.active.indexer.restore_marks(mark);
                // Cut off whatever part of the batch landed, so it cannot resurface.
                if let Err(cut) = st.active.file.set_len(start) {
                    st.poisoned = Some(format!("could not undo a failed write: {cut}"));
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

    /// Syncs the active segment under the lock and publishes everything as durable.
    fn sync_active_locked(&self, st: &mut State) -> Result<()> {
        let path = segment::log_path(&self.dir, st.active.base);
        if let Err(e) = st.active.file.sync_data() {
            st.poisoned = Some(format!("sync failed: {e}"));
            self.synced.notify_all();
            return Err(Error::io(path, e));
        }
        st.durable_next = st.next_seq;
        self.durable.store(st.durable_next.0, Ordering::Release);
        st.active.visible = st.active.written;
        self.synced.notify_all();
        Ok(())
    }

    fn poison_on_sync_error(&self, st: &mut State, e: &Error) {
        if matches!(e, Error::Io { .. } | Error::Full { .. }) {
            st.poisoned = Some(e.to_string());
        }
    }

    /// Seals the active segment and starts a new one at the next sequence.
    fn roll(&self, st: &mut State, now: TimestampMs) -> Result<()> {
        self.sync_active_locked(st)?;
        if let (Some(ts), true) = (st.last_ts, st.has_records()) {
            let last_rel = (st.next_seq.0 - 1 - st.active.base.0) as u32;
            st.active.indexer.finish(last_rel, ts);
        }
        self.flush_indexes(st)
            .inspect_err(|e| self.poison_on_sync_error(st, e))?;
        let base = st.next_seq;
        let path = segment::log_path(&self.dir, base);
        let header = FileHeader {
            kind: SegmentFile::Log,
            base,
            created: now,
        };
        let file = segment::create_file_with_header(&*self.fs, &path, &header)?;
        let synced = file.sync_data().and_then(|()| self.fs.sync_dir(&self.dir));
        if let Err(e) = synced {
            st.poisoned = Some(format!("sync failed: {e}"));
            return Err(Error::io(&path, e));
        }
        let map = match file.map(self.map_capacity()) {
            Ok(map) => map,
            Err(e) => {
                // The new segment is durable but unusable: stop writing rather than
                // leave an empty segment between two others.
                st.poisoned = Some(format!("could not map a new segment: {e}"));
                return Err(Error::io(&path, e));
            }
        };
        let old = std::mem::replace(
            &mut st.active,
            Active {
                base,
                file,
                map,
                written: HEADER_BYTES as u64,
                visible: HEADER_BYTES as u64,
                indexer: Indexer::new(self.config.index_interval_bytes),
                flushed_seq: 0,
                flushed_time: 0,
            },
        );
        let max_ts = if base > old.base { st.last_ts } else { None };
        st.sealed.push(SealedMeta {
            base: old.base,
            end: base,
            max_ts,
        });
        st.checkpoint_pos = 0;
        tracing::info!(log = %self.dir.display(), sealed = %old.base, active = %base, bytes = old.written, "rolled segment");
        let ts = st.last_ts;
        self.write_checkpoint(st, HEADER_BYTES as u64, base, ts)
            .inspect_err(|e| self.poison_on_sync_error(st, e))
    }

    pub(crate) fn map_capacity(&self) -> u64 {
        map_capacity(&self.config)
    }

    /// Writes the active segment's unflushed index entries and syncs the index files.
    fn flush_indexes(&self, st: &mut State) -> Result<()> {
        let base = st.active.base;
        let (seq_from, time_from) = (st.active.flushed_seq, st.active.flushed_time);
        flush_index(
            &*self.fs,
            &self.dir,
            base,
            SegmentFile::SeqIndex,
            &st.active.indexer.seq,
            seq_from,
        )?;
        st.active.flushed_seq = st.active.indexer.seq.len();
        flush_index(
            &*self.fs,
            &self.dir,
            base,
            SegmentFile::TimeIndex,
            &st.active.indexer.time,
            time_from,
        )?;
        st.active.flushed_time = st.active.indexer.time.len();
        Ok(())
    }

    /// Flushes the indexes, then records `pos` (durable) as the recovery point.
    fn write_checkpoint(
        &self,
        st: &mut State,
        pos: u64,
        next: SeqNo,
        ts: Option<TimestampMs>,
    ) -> Result<()> {
        self.flush_indexes(st)?;
        let c = Checkpoint {
            generation: st.checkpoint_generation + 1,
            base: st.active.base,
            position: pos,
            next_seq: next,
            last_ts: ts,
        };
        write_checkpoint_slot(&*self.fs, &self.dir, &c)?;
        st.checkpoint_generation = c.generation;
        st.checkpoint_pos = pos;
        Ok(())
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = names::tmp_path(path);
        if self.fs.exists(&tmp) {
            self.fs.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let file = self.fs.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all_at(0, bytes)
            .map_err(|e| Error::io(&tmp, e))?;
        file.sync_data().map_err(|e| Error::io(&tmp, e))?;
        self.fs.rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))
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

    /// Finds where `seq` is: in the active segment (with a start position from its index),
    /// or in a sealed segment.
    fn locate(&self, st: &mut State, seq: SeqNo) -> Target {
        if seq >= st.active.base {
            let active = &mut st.active;
            if (active.map.bytes().len() as u64) < active.visible {
                // Only the simulated disk maps a snapshot; the real one maps full capacity.
                if let Ok(map) = active.file.map(map_capacity(&self.config)) {
                    active.map = map;
                }
            }
            let visible = active.visible.min(active.map.bytes().len() as u64);
            let entry = floor_entry(&SeqIndex(&active.indexer.seq), active.base, seq);
            return Target::Active {
                map: active.map.clone(),
                base: active.base,
                visible,
                entry,
            };
        }
        let i = st.sealed.partition_point(|m| m.end <= seq);
        match st.sealed.get(i) {
            Some(meta) => Target::Sealed(*meta),
            None => Target::Sealed(SealedMeta {
                base: seq,
                end: seq,
                max_ts: None,
            }),
        }
    }

    fn sealed_maps(&self, meta: &SealedMeta) -> Result<Arc<SealedMaps>> {
        if let Some(maps) = self.cache.get((self.id, meta.base.0)) {
            return Ok(maps);
        }
        let (maps, _scan) =
            segment::open_sealed(&*self.fs, &self.dir, meta, self.config.index_interval_bytes)?;
        let maps = Arc::new(maps);
        self.cache.insert((self.id, meta.base.0), maps.clone());
        Ok(maps)
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.cache.remove_log(self.id);
    }
}

/// The length the active segment is mapped with: it never needs remapping.
pub(crate) fn map_capacity(config: &LogConfig) -> u64 {
    config.segment_bytes_max
        + (FRAME_HEADER_BYTES + 16 + KEY_BYTES_LIMIT + config.record_bytes_max) as u64
}

/// Writes index entries `entries[from..]` to the index file (creating it when `from` is
/// 0), and syncs it.
pub(crate) fn flush_index(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    kind: SegmentFile,
    entries: &[u8],
    from: usize,
) -> Result<()> {
    let path = segment_path(dir, base, kind);
    let file = if from == 0 {
        let header = FileHeader {
            kind,
            base,
            created: TimestampMs(0),
        };
        let file = segment::create_file_with_header(fs, &path, &header)?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        file
    } else {
        fs.open(&path).map_err(|e| Error::io(&path, e))?
    };
    if from < entries.len() {
        file.write_all_at((HEADER_BYTES + from) as u64, &entries[from..])
            .map_err(|e| Error::io(&path, e))?;
    }
    file.sync_data().map_err(|e| Error::io(&path, e))
}

/// Writes one checkpoint slot, creating the file when it is missing.
pub(crate) fn write_checkpoint_slot(fs: &dyn FileSystem, dir: &Path, c: &Checkpoint) -> Result<()> {
    let path = dir.join(names::CHECKPOINT);
    let file = if fs.exists(&path) {
        fs.open(&path).map_err(|e| Error::io(&path, e))?
    } else {
        let file = fs.create_new(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all_at(0, &Checkpoint::encode_file_header())
            .map_err(|e| Error::io(&path, e))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        file
    };
    debug_assert!(c.slot_offset() >= CKPT_HEADER_BYTES as u64);
    file.write_all_at(c.slot_offset(), &c.encode_slot())
        .map_err(|e| Error::io(&path, e))?;
    file.sync_data().map_err(|e| Error::io(&path, e))
}

/// The index entry to start a search for `seq` from: (position, sequence at it).
fn floor_entry(sidx: &SeqIndex<'_>, base: SeqNo, seq: SeqNo) -> (u64, SeqNo) {
    let rel = u32::try_from(seq.0.saturating_sub(base.0)).unwrap_or(u32::MAX);
    match sidx.floor(rel) {
        Some(e) => (u64::from(e.pos), SeqNo(base.0 + u64::from(e.rel))),
        None => (HEADER_BYTES as u64, base),
    }
}

struct Limits {
    /// One past the last sequence that may be returned.
    end: SeqNo,
    max_records: usize,
    max_bytes: usize,
}

/// Where `read_frames` puts what it decodes: the records made so far, the last sequence
/// taken, the bytes counted against the limit, and the caller's record maker.
struct Sink<'a, R, F> {
    out: &'a mut Vec<R>,
    last: &'a mut Option<SeqNo>,
    total: &'a mut usize,
    make: &'a mut F,
}

/// The readable bytes of one segment (a prefix of its mapping), lent out either borrowed
/// or as `Bytes` slices that share the mapping. The shared form is built on first use,
/// so copying reads pay nothing for it.
pub(crate) struct SegmentBytes {
    map: Arc<dyn Mapping>,
    len: usize,
    shared: std::cell::OnceCell<Bytes>,
}

/// Owns a mapping for `Bytes`: the prefix of `len` bytes.
struct MapPrefix {
    map: Arc<dyn Mapping>,
    len: usize,
}

impl AsRef<[u8]> for MapPrefix {
    fn as_ref(&self) -> &[u8] {
        self.map.bytes().get(..self.len).unwrap_or(&[])
    }
}

impl SegmentBytes {
    fn new(map: Arc<dyn Mapping>, len: usize) -> SegmentBytes {
        let len = len.min(map.bytes().len());
        SegmentBytes {
            map,
            len,
            shared: std::cell::OnceCell::new(),
        }
    }

    fn bytes(&self) -> &[u8] {
        self.map.bytes().get(..self.len).unwrap_or(&[])
    }

    /// `part`, a sub-slice of [`SegmentBytes::bytes`], as shared `Bytes` (no copy).
    pub(crate) fn slice(&self, part: &[u8]) -> Bytes {
        let whole = self.shared.get_or_init(|| {
            Bytes::from_owner(MapPrefix {
                map: self.map.clone(),
                len: self.len,
            })
        });
        let (base, start) = (whole.as_ptr() as usize, part.as_ptr() as usize);
        match start.checked_sub(base) {
            Some(off) if off + part.len() <= whole.len() => whole.slice(off..off + part.len()),
            // Not ours (an empty slice from elsewhere): copy it rather than panic.
            _ => Bytes::copy_from_slice(part),
        }
    }
}

/// Decodes frames of one segment from an index entry, collecting those from `from` on.
/// Returns true when a limit stopped the read (as opposed to the segment's end).
fn read_frames<R, F: FnMut(&frame::FrameRef<'_>, &SegmentBytes) -> R>(
    seg: &SegmentBytes,
    path: &Path,
    entry: (u64, SeqNo),
    from: SeqNo,
    limit: &Limits,
    sink: &mut Sink<'_, R, F>,
) -> Result<bool> {
    let mut frames = Frames::new(seg.bytes(), path, entry)?;
    while let Some(f) = frames.next_frame()? {
        if f.seq >= limit.end {
            return Ok(false);
        }
        if f.seq < from {
            continue;
        }
        let size = f.data.len() + f.partition_key.len();
        if sink.out.len() >= limit.max_records.max(1)
            || (!sink.out.is_empty() && *sink.total + size > limit.max_bytes)
        {
            return Ok(true);
        }
        *sink.total += size;
        *sink.last = Some(f.seq);
        sink.out.push((sink.make)(&f, seg));
    }
    Ok(false)
}

/// The sequence of the first frame at or after time `t`, or `end` if none is visible.
fn first_at_or_after(
    bytes: &[u8],
    path: &Path,
    entry: (u64, SeqNo),
    t: TimestampMs,
    end: SeqNo,
) -> Result<SeqNo> {
    let mut frames = Frames::new(bytes, path, entry)?;
    while let Some(f) = frames.next_frame()? {
        if f.seq >= end {
            break;
        }
        if f.timestamp >= t {
            return Ok(f.seq);
        }
    }
    Ok(end)
}

/// Iterates over the frames of a segment from an index hint, checking every CRC and that
/// sequences follow each other. A hint that does not point at the frame it names is
/// dropped for a scan from the segment's start; damage after that is an error.
struct Frames<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    pos: u64,
    expect: SeqNo,
}

impl<'a> Frames<'a> {
    fn new(bytes: &'a [u8], path: &'a Path, entry: (u64, SeqNo)) -> Result<Frames<'a>> {
        let (pos, expect) = entry;
        let hint_ok = bytes
            .get(pos as usize..)
            .and_then(|b| frame::decode(b).ok())
            .is_some_and(|f| f.seq == expect);
        if hint_ok || pos as usize >= bytes.len() {
            Ok(Frames {
                bytes,
                path,
                pos,
                expect,
            })
        } else {
            Frames::from_start(bytes, path)
        }
    }

    fn from_start(bytes: &'a [u8], path: &'a Path) -> Result<Frames<'a>> {
        let header = FileHeader::decode(bytes, SegmentFile::Log)
            .map_err(|why| Error::corrupt(path, 0, why))?;
        Ok(Frames {
            bytes,
            path,
            pos: HEADER_BYTES as u64,
            expect: header.base,
        })
    }

    fn next_frame(&mut self) -> Result<Option<frame::FrameRef<'a>>> {
        let Some(rest) = self.bytes.get(self.pos as usize..) else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Ok(None);
        }
        let f = frame::decode(rest).map_err(|e| {
            let why = match e {
                frame::FrameError::Truncated => "frame cut short".to_owned(),
                frame::FrameError::Invalid(why) => why,
            };
            Error::corrupt(self.path, self.pos, why)
        })?;
        if f.seq != self.expect {
            return Err(Error::corrupt(
                self.path,
                self.pos,
                format!("sequence {} where {} was expected", f.seq, self.expect),
            ));
        }
        self.pos += f.frame_len as u64;
        self.expect = f.seq.next();
        Ok(Some(f))
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
