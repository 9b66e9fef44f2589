//! Segments: scanning frames, and opening a sealed segment with its two indexes.
//!
//! A segment file is a [`crate::header`] (`SLUICLOG`) followed by frames. A sealed segment is
//! immutable; its indexes were written and synced when it was sealed. Opening one maps the
//! three files and checks the indexes; an index that is missing or fails its checks is
//! rebuilt from the log, which is the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::frame;
use crate::fs::{FileHandle, FileSystem, Mapping};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::{Indexer, SeqIndex, TIME_ENTRY_BYTES, TimeIndex};
use crate::names::{SegmentFile, segment_path, tmp_path};
use crate::types::{SeqNo, TimestampMs};

/// What is known of a sealed segment without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedMeta {
    /// First sequence of the segment.
    pub base: SeqNo,
    /// One past its last sequence (the next segment's base).
    pub end: SeqNo,
    /// One past its last record: `end`, unless a recorded gap starts inside the segment
    /// (sequences `records_end .. end` then hold no record).
    pub records_end: SeqNo,
    /// Its newest record's timestamp; `None` if it holds no record.
    pub max_ts: Option<TimestampMs>,
}

/// A sealed segment's files, mapped and checked.
pub struct SealedMaps {
    /// The log file.
    pub log: Arc<dyn Mapping>,
    /// Bytes of the log file.
    pub log_len: u64,
    /// The sequence index's entries, starting after its header.
    pub seq: IndexBytes,
    /// The timestamp index's entries, starting after its header.
    pub time: IndexBytes,
}

/// Index entries: a mapped file or a rebuilt copy, with the header skipped.
pub struct IndexBytes(Arc<dyn Mapping>);

impl IndexBytes {
    /// The encoded entries.
    pub fn entries(&self) -> &[u8] {
        self.0.bytes().get(HEADER_BYTES..).unwrap_or_default()
    }
}

struct Owned(Vec<u8>);

impl Mapping for Owned {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// How a scan of frames ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Position after the last complete batch.
    pub end_pos: u64,
    /// Sequence after the last complete batch.
    pub next_seq: SeqNo,
    /// Timestamp of the last record of that batch (or the one given at the start).
    pub last_ts: Option<TimestampMs>,
    /// Why the scan ended before `limit`, if it did.
    pub stop: Option<Stop>,
}

/// Why a scan ended before its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Where the first byte not taken as a frame is: the bad frame, or `limit` when the
    /// frames ran out in the middle of a batch. Frames of an incomplete batch before it
    /// (from `Scan::end_pos`) are dropped too.
    pub pos: u64,
    /// What was wrong, for the log.
    pub reason: String,
    /// Whether what follows the last complete batch is what a write cut short leaves (an
    /// incomplete batch, a frame running past the end, zeros to the end), as opposed to
    /// damage to bytes that were once whole.
    pub torn: bool,
}

/// Scans frames from `pos` up to `limit`, requiring consecutive sequences from `next_seq`
/// and non-decreasing timestamps, and feeding `indexer` with complete batches only.
pub fn scan(
    bytes: &[u8],
    pos: u64,
    limit: u64,
    base: SeqNo,
    next_seq: SeqNo,
    last_ts: Option<TimestampMs>,
    indexer: &mut Indexer,
) -> Scan {
    let limit = limit.min(bytes.len() as u64);
    // The end of the last complete batch, and where frames are read now.
    let mut done = Scan {
        end_pos: pos,
        next_seq,
        last_ts,
        stop: None,
    };
    let mut marks = indexer.clone_marks();
    let (mut pos, mut next_seq, mut last_ts) = (pos, next_seq, last_ts);
    while pos < limit {
        let window = &bytes[pos as usize..limit as usize];
        let bad = match frame::decode(window) {
            Ok(f) if f.seq != next_seq => {
                Some(format!("sequence {} where {next_seq} was expected", f.seq))
            }
            Ok(f) if last_ts.is_some_and(|t| f.timestamp < t) => {
                Some("timestamp goes backwards".to_owned())
            }
            Ok(f) => {
                let rel = (f.seq.0 - base.0) as u32;
                indexer.observe(rel, pos as u32, f.timestamp);
                pos += f.frame_len as u64;
                next_seq = f.seq.next();
                last_ts = Some(f.timestamp);
                if !f.more {
                    done = Scan {
                        end_pos: pos,
                        next_seq,
                        last_ts,
                        stop: None,
                    };
                    marks = indexer.clone_marks();
                }
                None
            }
            Err(frame::FrameError::Truncated) => Some("incomplete frame (torn write)".to_owned()),
            Err(frame::FrameError::Invalid(why)) => Some(why),
        };
        if let Some(reason) = bad {
            let all_zero = window.iter().all(|b| *b == 0);
            let torn = all_zero || frame::looks_torn(window, next_seq, last_ts);
            done.stop = Some(Stop { pos, reason, torn });
            break;
        }
    }
    if pos != done.end_pos && done.stop.is_none() {
        done.stop = Some(Stop {
            pos,
            reason: format!(
                "incomplete batch: {} records without the batch's last",
                next_seq.0 - done.next_seq.0
            ),
            torn: true,
        });
    }
    indexer.restore_marks(marks);
    done
}

/// Reads what a sealed segment's timestamp index says of it (newest timestamp and record
/// count) without mapping anything. `None` if the index is missing or disagrees with
/// `records_end`, in which case the caller opens the segment fully.
pub fn quick_meta(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    end: SeqNo,
    records_end: SeqNo,
) -> Option<SealedMeta> {
    let file = fs
        .open(&segment_path(dir, base, SegmentFile::TimeIndex))
        .ok()?;
    let len = file.len().ok()?;
    let mut header = [0u8; HEADER_BYTES];
    file.read_exact_at(0, &mut header).ok()?;
    let h = FileHeader::decode(&header, SegmentFile::TimeIndex).ok()?;
    let entries = len.checked_sub(HEADER_BYTES as u64)?;
    if h.base != base || entries % TIME_ENTRY_BYTES as u64 != 0 {
        return None;
    }
    if entries == 0 {
        return (records_end == base).then_some(SealedMeta {
            base,
            end,
            records_end,
            max_ts: None,
        });
    }
    let mut last = [0u8; TIME_ENTRY_BYTES];
    file.read_exact_at(len - TIME_ENTRY_BYTES as u64, &mut last)
        .ok()?;
    let e = TimeIndex(&last).last()?;
    (base.0 + u64::from(e.rel) + 1 == records_end.0).then_some(SealedMeta {
        base,
        end,
        records_end,
        max_ts: Some(e.ts),
    })
}

/// Maps a sealed segment and checks its indexes, rebuilding them from the log when they
/// are missing or wrong. Returns the maps and what the log itself says of the segment.
pub fn open_sealed(
    fs: &dyn FileSystem,
    dir: &Path,
    meta: &SealedMeta,
    interval_bytes: u32,
) -> Result<(SealedMaps, Scan)> {
    let log_path = segment_path(dir, meta.base, SegmentFile::Log);
    let file = fs.open(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let log_len = file.len().map_err(|e| Error::io(&log_path, e))?;
    let log = file.map(0).map_err(|e| Error::io(&log_path, e))?;
    check_header(log.bytes(), SegmentFile::Log, meta.base, &log_path)?;
    let seq = map_index(fs, dir, meta.base, SegmentFile::SeqIndex);
    let time = map_index(fs, dir, meta.base, SegmentFile::TimeIndex);
    if let (Some(seq), Some(time)) = (seq, time) {
        let sidx = SeqIndex(seq.entries());
        let tidx = TimeIndex(time.entries());
        let records = meta.records_end.0 - meta.base.0;
        let last_ok = match tidx.last() {
            None => records == 0,
            Some(e) => u64::from(e.rel) + 1 == records && Some(e.ts) == meta.max_ts,
        };
        if sidx.check(log_len).is_ok() && tidx.check().is_ok() && last_ok {
            let scan = Scan {
                end_pos: log_len,
                next_seq: meta.records_end,
                last_ts: meta.max_ts,
                stop: None,
            };
            let maps = SealedMaps {
                log,
                log_len,
                seq,
                time,
            };
            return Ok((maps, scan));
        }
    }
    rebuild_sealed(fs, dir, meta.base, log, log_len, interval_bytes)
}

/// Rebuilds a sealed segment's indexes by scanning its log, and writes them to disk.
pub fn rebuild_sealed(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    log: Arc<dyn Mapping>,
    log_len: u64,
    interval_bytes: u32,
) -> Result<(SealedMaps, Scan)> {
    let mut indexer = Indexer::new(interval_bytes);
    let scan = scan(
        log.bytes(),
        HEADER_BYTES as u64,
        log_len,
        base,
        base,
        None,
        &mut indexer,
    );
    if let Some(ts) = scan.last_ts {
        indexer.finish((scan.next_seq.0 - base.0 - 1) as u32, ts);
    }
    tracing::info!(
        segment = %segment_path(dir, base, SegmentFile::Log).display(),
        valid_bytes = scan.end_pos,
        "rebuilt the indexes of a sealed segment"
    );
    let seq = write_index(fs, dir, base, SegmentFile::SeqIndex, &indexer.seq)?;
    let time = write_index(fs, dir, base, SegmentFile::TimeIndex, &indexer.time)?;
    let maps = SealedMaps {
        log,
        log_len,
        seq,
        time,
    };
    Ok((maps, scan))
}

fn map_index(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    kind: SegmentFile,
) -> Option<IndexBytes> {
    let file = fs.open(&segment_path(dir, base, kind)).ok()?;
    let map = file.map(0).ok()?;
    let h = FileHeader::decode(map.bytes(), kind).ok()?;
    (h.base == base).then_some(IndexBytes(map))
}

/// Writes a complete index file crash-safely (temporary name, sync, rename, sync dir).
pub fn write_index(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    kind: SegmentFile,
    entries: &[u8],
) -> Result<IndexBytes> {
    let path = segment_path(dir, base, kind);
    let tmp = tmp_path(&path);
    let mut bytes = Vec::with_capacity(HEADER_BYTES + entries.len());
    bytes.extend_from_slice(
        &FileHeader {
            kind,
            base,
            created: TimestampMs(0),
        }
        .encode(),
    );
    bytes.extend_from_slice(entries);
    if fs.exists(&tmp) {
        fs.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let file = fs.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all_at(0, &bytes)
        .map_err(|e| Error::io(&tmp, e))?;
    file.sync_data().map_err(|e| Error::sync(&tmp, e))?;
    fs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
    Ok(IndexBytes(Arc::new(Owned(bytes))))
}

/// Checks a file header, turning damage into a typed error naming the file.
pub fn check_header(
    bytes: &[u8],
    kind: SegmentFile,
    base: SeqNo,
    path: &Path,
) -> Result<FileHeader> {
    let h = FileHeader::decode(bytes, kind).map_err(|why| Error::corrupt(path, 0, why))?;
    if h.base != base {
        return Err(Error::corrupt(
            path,
            0,
            format!("header says base {} but the name says {base}", h.base),
        ));
    }
    Ok(h)
}

/// Writes the header of a new index file and returns the handle, for the active segment.
pub fn create_file_with_header(
    fs: &dyn FileSystem,
    path: &Path,
    header: &FileHeader,
) -> Result<Arc<dyn FileHandle>> {
    if fs.exists(path) {
        // A leftover of a roll that failed half-way; nothing in it was acknowledged.
        fs.remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    let file = fs.create_new(path).map_err(|e| Error::io(path, e))?;
    if let Err(e) = file.write_all_at(0, &header.encode()) {
        // Leave no header-less file behind to be mistaken for a segment.
        let _ = fs.remove_file(path);
        return Err(Error::io(path, e));
    }
    Ok(file)
}

/// The path of a segment's log file, for error messages.
pub fn log_path(dir: &Path, base: SeqNo) -> PathBuf {
    segment_path(dir, base, SegmentFile::Log)
}
