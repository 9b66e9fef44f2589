//! Rolling to a new segment, recovery points, and the files written beside the segments.
//!
//! A roll happens *before* a batch that does not fit (a batch is never split across
//! segments), in this order, so that a crash or a failure at any step leaves a log that
//! opens to the same records:
//! 1. create the new segment as `<name>.tmp` with its header, and map it;
//! 2. sync the active segment and write its last index entries;
//! 3. sync the new segment, rename it into place, sync the directory;
//! 4. switch to it, and write a recovery point for it.
//!
//! Only a failed sync poisons the log (the kernel may have dropped what it was to write).
//! A failed open, create, map, write or rename in steps 1 to 3 fails the append that asked
//! for the roll, before any of its records is written, and leaves the log writable: the
//! next append tries the roll again. A failure in step 4 is only logged, as the roll is
//! complete without a recovery point (the next open scans a little more).

use std::path::Path;
use std::sync::Arc;

use super::{Active, Log, State};
use crate::checkpoint::{CKPT_HEADER_BYTES, Checkpoint};
use crate::error::{Error, Result};
use crate::fs::{FileHandle, FileSystem, Mapping};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::Indexer;
use crate::names::{self, SegmentFile, segment_path};
use crate::segment::{self, SealedMeta};
use crate::types::{SeqNo, TimestampMs};

impl Log {
    /// Seals the active segment and starts a new one at the next sequence (see the module
    /// documentation for the order of the steps and what a failure leaves).
    pub(super) fn roll(&self, st: &mut State, now: TimestampMs) -> Result<()> {
        self.roll_to(st, st.next_seq, now)
    }

    /// [`Log::roll`] to a new segment whose first sequence is `base` (past a gap when it is
    /// above the next sequence).
    pub(super) fn roll_to(&self, st: &mut State, base: SeqNo, now: TimestampMs) -> Result<()> {
        debug_assert!(base >= st.next_seq);
        self.cut_pending_tail(st)?;
        let path = segment::log_path(&self.dir, base);
        let tmp = names::tmp_path(&path);
        let (file, map) = self.create_segment(&tmp, base, now)?;
        if let Err(e) = self.close_active_segment(st) {
            self.remove_quietly(&tmp);
            return Err(e);
        }
        if let Err(e) = file.sync_data() {
            return Err(self.sync_failed(st, &tmp, e));
        }
        if let Err(e) = self.fs.rename(&tmp, &path) {
            self.remove_quietly(&tmp);
            return Err(Error::io(&path, e));
        }
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            return Err(self.sync_failed(st, &self.dir, e));
        }
        let old = std::mem::replace(&mut st.active, self.new_active(base, file, map));
        let max_ts = if st.next_seq > old.base {
            st.last_ts
        } else {
            None
        };
        st.sealed.push(SealedMeta {
            base: old.base,
            end: base,
            records_end: st.next_seq,
            max_ts,
        });
        st.next_seq = base;
        st.durable_next = st.durable_next.max(base);
        self.durable
            .store(st.durable_next.0, std::sync::atomic::Ordering::Release);
        st.checkpoint_pos = 0;
        tracing::info!(log = %self.dir.display(), sealed = %old.base, active = %base, bytes = old.written, "rolled segment");
        let ts = st.last_ts;
        if let Err(e) = self.write_checkpoint(st, HEADER_BYTES as u64, base, ts) {
            tracing::warn!(log = %self.dir.display(), error = %e, "could not write the recovery point of a new segment; the next open scans it");
        }
        Ok(())
    }

    /// Creates a segment file at `path` (a temporary name) with its header, and maps it.
    /// On failure nothing is left behind and nothing is poisoned.
    fn create_segment(
        &self,
        path: &Path,
        base: SeqNo,
        now: TimestampMs,
    ) -> Result<(Arc<dyn FileHandle>, Arc<dyn Mapping>)> {
        let header = FileHeader {
            kind: SegmentFile::Log,
            base,
            created: now,
        };
        let file = segment::create_file_with_header(&*self.fs, path, &header)?;
        match file.map(self.config.map_capacity()) {
            Ok(map) => Ok((file, map)),
            Err(e) => {
                self.remove_quietly(path);
                Err(Error::io(path, e))
            }
        }
    }

    fn new_active(&self, base: SeqNo, file: Arc<dyn FileHandle>, map: Arc<dyn Mapping>) -> Active {
        Active {
            base,
            file,
            map,
            written: HEADER_BYTES as u64,
            visible: HEADER_BYTES as u64,
            indexer: Indexer::new(self.config.index_interval_bytes),
            flushed_seq: 0,
            flushed_time: 0,
            cut_pending: false,
        }
    }

    /// Makes the active segment ready to be sealed: synced, and its indexes written with
    /// the closing timestamp entry. On failure the index entries are as before.
    fn close_active_segment(&self, st: &mut State) -> Result<()> {
        self.sync_active_locked(st)?;
        let marks = st.active.indexer.clone_marks();
        if let (Some(ts), true) = (st.last_ts, st.has_records()) {
            let last_rel = (st.next_seq.0 - 1 - st.active.base.0) as u32;
            st.active.indexer.finish(last_rel, ts);
        }
        self.flush_indexes(st).inspect_err(|e| {
            st.active.indexer.restore_marks(marks);
            st.active.flushed_seq = st.active.flushed_seq.min(st.active.indexer.seq.len());
            st.active.flushed_time = st.active.flushed_time.min(st.active.indexer.time.len());
            self.poison_on_sync_error(st, e);
        })
    }

    /// Cuts off what a failed write left past the written end, if an earlier cut failed.
    pub(super) fn cut_pending_tail(&self, st: &mut State) -> Result<()> {
        if st.active.cut_pending {
            let path = segment::log_path(&self.dir, st.active.base);
            st.active
                .file
                .set_len(st.active.written)
                .map_err(|e| Error::io(&path, e))?;
            st.active.cut_pending = false;
        }
        Ok(())
    }

    /// Writes the active segment's unflushed index entries and syncs the index files.
    pub(super) fn flush_indexes(&self, st: &mut State) -> Result<()> {
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

    /// Flushes the indexes, then records `pos` (durable, at a batch boundary) as the
    /// recovery point, with the sequence reservation raised past `next`. A failed sync
    /// poisons the log.
    pub(super) fn write_checkpoint(
        &self,
        st: &mut State,
        pos: u64,
        next: SeqNo,
        ts: Option<TimestampMs>,
    ) -> Result<()> {
        let written = self.flush_indexes(st).and_then(|()| {
            let c = Checkpoint {
                generation: st.checkpoint_generation + 1,
                base: st.active.base,
                position: pos,
                next_seq: next,
                last_ts: ts,
                seq_reserved: st
                    .seq_reserved
                    .max(SeqNo(next.0.saturating_add(self.config.seq_reserve))),
            };
            write_checkpoint_slot(&*self.fs, &self.dir, &c).map(|()| c)
        });
        match written {
            Ok(c) => {
                st.checkpoint_generation = c.generation;
                st.checkpoint_pos = pos;
                st.seq_reserved = c.seq_reserved;
                Ok(())
            }
            Err(e) => {
                self.poison_on_sync_error(st, &e);
                Err(e)
            }
        }
    }

    /// Writes a small file crash-safely: a temporary name, synced, renamed, directory
    /// synced.
    pub(super) fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomically(&*self.fs, &self.dir, path, bytes)
    }

    /// Poisons the log after a failed sync of `path` and returns the error.
    fn sync_failed(&self, st: &mut State, path: &Path, e: std::io::Error) -> Error {
        let err = Error::sync(path, e);
        self.poison_on_sync_error(st, &err);
        err
    }

    fn remove_quietly(&self, path: &Path) {
        if self.fs.exists(path) && self.fs.remove_file(path).is_err() {
            // A leftover `.tmp` is removed when the log next opens.
            tracing::warn!(file = %path.display(), "could not remove the leftover of a failed roll");
        }
    }

    /// After recovery: a log whose gaps reach past its next sequence (recorded after
    /// damage, which gave up the numbers up to the gap's end) continues at the gap's end in
    /// a new segment, so no number is ever given twice.
    pub(super) fn finish_recovery(&self) -> Result<()> {
        let mut st = self.lock();
        let past = st.gaps.iter().map(|g| g.to).max();
        if let Some(to) = past.filter(|to| *to > st.next_seq) {
            let now = st.last_ts.unwrap_or_default();
            self.roll_to(&mut st, to, now)?;
            tracing::info!(log = %self.dir.display(), next_seq = %to, "numbering continues past the gap");
        }
        Ok(())
    }
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
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
        file
    } else {
        fs.open(&path).map_err(|e| Error::io(&path, e))?
    };
    if from < entries.len() {
        file.write_all_at((HEADER_BYTES + from) as u64, &entries[from..])
            .map_err(|e| Error::io(&path, e))?;
    }
    file.sync_data().map_err(|e| Error::sync(&path, e))
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
        file.sync_data().map_err(|e| Error::sync(&path, e))?;
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
        file
    };
    debug_assert!(c.slot_offset() >= CKPT_HEADER_BYTES as u64);
    file.write_all_at(c.slot_offset(), &c.encode_slot())
        .map_err(|e| Error::io(&path, e))?;
    file.sync_data().map_err(|e| Error::sync(&path, e))
}

/// Writes `bytes` to `path` in `dir` crash-safely: `<path>.tmp`, synced, renamed over
/// `path`, and the directory synced.
pub(crate) fn write_atomically(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<()> {
    let tmp = names::tmp_path(path);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let file = fs.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all_at(0, bytes)
        .map_err(|e| Error::io(&tmp, e))?;
    file.sync_data().map_err(|e| Error::sync(&tmp, e))?;
    fs.rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))
}
