//! Opening a log after any stop: clean, killed, or power lost.
//!
//! 1. Leftovers of interrupted deletes and writes (`*.deleted`, `*.tmp`) and index files
//!    without their log are removed.
//! 2. A newest segment whose header never became durable (a roll cut short) is dropped:
//!    nothing was ever written into it.
//! 3. Sealed segments are described from the last entry of their timestamp index (a few
//!    bytes each); a segment whose index is missing or disagrees is rebuilt from its log.
//! 4. The active segment is scanned from the recovery point (the checkpoint), or from its
//!    start when there is none for it. Every frame after that point is CRC-checked and must
//!    continue the sequence; the file is cut at the first that does not, and the cut is
//!    synced and logged with its byte count. So the work is proportional to what was
//!    written since the last recovery point, not to the size of the log.

use std::path::Path;
use std::time::Instant;

use crate::checkpoint::{self, Checkpoint};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::{Indexer, SEQ_ENTRY_BYTES, SeqIndex, TIME_ENTRY_BYTES, TimeIndex};
use crate::log::{Active, RecoveryStats, State, flush_index, map_capacity, write_checkpoint_slot};
use crate::names::{self, SegmentFile, parse_segment_name, segment_path};
use crate::segment::{self, SealedMeta};
use crate::types::{SeqNo, TimestampMs};

/// Recovers (or creates) the state of the log in `dir`.
pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, config: &LogConfig) -> Result<State> {
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_leftovers(fs, dir)?;
    let mut bases = segment_bases(fs, dir)?;
    drop_header_less_segments(fs, dir, &mut bases)?;
    while let Some(&last) = bases.last() {
        if !newest_is_torn(fs, dir, last)? {
            break;
        }
        tracing::warn!(log = %dir.display(), segment = %last, "dropping a segment whose creation never completed");
        for kind in SegmentFile::ALL {
            let path = segment_path(dir, last, kind);
            if fs.exists(&path) {
                fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        bases.pop();
        if bases.is_empty() {
            // The only segment was never created: the log is empty from `last` on.
            return create_fresh(fs, dir, config, last);
        }
    }
    let Some(&active_base) = bases.last() else {
        return create_fresh(fs, dir, config, SeqNo(0));
    };
    let sealed = describe_sealed(fs, dir, &bases, config)?;
    let prev_ts = sealed.last().and_then(|m| m.max_ts);
    let mut state = recover_active(fs, dir, config, active_base, prev_ts, sealed)?;
    state.is_sealed = read_seal_marker(fs, dir, state.next_seq)?;
    Ok(state)
}

/// Removes `*.deleted` and `*.tmp` files and index files whose log is gone.
pub(crate) fn remove_leftovers(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let logs: Vec<SeqNo> = names
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .filter(|(_, k)| *k == SegmentFile::Log)
        .map(|(b, _)| b)
        .collect();
    let mut removed = 0;
    for name in &names {
        let leftover = name.ends_with(names::DELETED_SUFFIX)
            || name.ends_with(names::TMP_SUFFIX)
            || parse_segment_name(name).is_some_and(|(b, _)| !logs.contains(&b));
        if leftover {
            let path = dir.join(name);
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

fn segment_bases(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<SeqNo>> {
    let mut bases: Vec<SeqNo> = fs
        .list_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .filter(|(_, k)| *k == SegmentFile::Log)
        .map(|(b, _)| b)
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Removes segments that are not longer than a header and have no valid one, wherever
/// they are: a roll that failed before its header landed. They never held a record, and
/// left in place one would be taken for a sealed segment between two others.
fn drop_header_less_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    bases: &mut Vec<SeqNo>,
) -> Result<()> {
    let newest = bases.last().copied();
    let mut removed = false;
    let mut kept = Vec::with_capacity(bases.len());
    for &base in bases.iter() {
        // A damaged header on a longer file is left for reads to report.
        if Some(base) != newest && matches!(newest_is_torn(fs, dir, base), Ok(true)) {
            tracing::warn!(log = %dir.display(), segment = %base, "removing an empty segment left by a failed roll");
            for kind in SegmentFile::ALL {
                let path = segment_path(dir, base, kind);
                if fs.exists(&path) {
                    fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
            removed = true;
        } else {
            kept.push(base);
        }
    }
    if removed {
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    *bases = kept;
    Ok(())
}

/// A newest segment no longer than its header and without a valid one was cut off while
/// being created. A longer file with a bad header is damage, not a torn creation.
fn newest_is_torn(fs: &dyn FileSystem, dir: &Path, base: SeqNo) -> Result<bool> {
    let path = segment::log_path(dir, base);
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let mut header = vec![0u8; (len as usize).min(HEADER_BYTES)];
    file.read_exact_at(0, &mut header)
        .map_err(|e| Error::io(&path, e))?;
    match segment::check_header(&header, SegmentFile::Log, base, &path) {
        Ok(_) => Ok(false),
        Err(_) if len <= HEADER_BYTES as u64 => Ok(true),
        Err(e) => Err(e),
    }
}

/// Creates an empty log whose first record will be `base`.
fn create_fresh(fs: &dyn FileSystem, dir: &Path, config: &LogConfig, base: SeqNo) -> Result<State> {
    let path = segment::log_path(dir, base);
    let header = FileHeader {
        kind: SegmentFile::Log,
        base,
        created: TimestampMs(0),
    };
    let file = segment::create_file_with_header(fs, &path, &header)?;
    file.sync_data().map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    let c = Checkpoint {
        generation: 1,
        base,
        position: HEADER_BYTES as u64,
        next_seq: base,
        last_ts: None,
    };
    write_checkpoint_slot(fs, dir, &c)?;
    let map = file
        .map(map_capacity(config))
        .map_err(|e| Error::io(&path, e))?;
    let active = Active {
        base,
        file,
        map,
        written: HEADER_BYTES as u64,
        visible: HEADER_BYTES as u64,
        indexer: Indexer::new(config.index_interval_bytes),
        flushed_seq: 0,
        flushed_time: 0,
    };
    Ok(new_state(
        Vec::new(),
        active,
        base,
        None,
        c.generation,
        c.position,
    ))
}

fn new_state(
    sealed: Vec<SealedMeta>,
    active: Active,
    next_seq: SeqNo,
    last_ts: Option<TimestampMs>,
    checkpoint_generation: u64,
    checkpoint_pos: u64,
) -> State {
    State {
        sealed,
        active,
        next_seq,
        last_ts,
        durable_next: next_seq,
        sync_running: false,
        poisoned: None,
        is_sealed: false,
        checkpoint_generation,
        checkpoint_pos,
        last_sync: Instant::now(),
        scratch: Vec::new(),
        recovery: RecoveryStats::default(),
    }
}

/// Describes every segment but the newest.
fn describe_sealed(
    fs: &dyn FileSystem,
    dir: &Path,
    bases: &[SeqNo],
    config: &LogConfig,
) -> Result<Vec<SealedMeta>> {
    let mut sealed = Vec::with_capacity(bases.len().saturating_sub(1));
    for pair in bases.windows(2) {
        let (base, end) = (pair[0], pair[1]);
        if let Some(meta) = segment::quick_meta(fs, dir, base, end) {
            sealed.push(meta);
            continue;
        }
        let guess = SealedMeta {
            base,
            end,
            max_ts: None,
        };
        let (_, scan) = segment::open_sealed(fs, dir, &guess, config.index_interval_bytes)?;
        if scan.next_seq != end {
            // Reads of the missing records report the damage with file and position.
            tracing::error!(
                segment = %segment::log_path(dir, base).display(),
                valid_until = scan.end_pos,
                missing_from = %scan.next_seq,
                missing_to = %end,
                reason = scan.stop.as_ref().map_or("segment ends early", |s| s.1.as_str()),
                "sealed segment is damaged"
            );
        }
        sealed.push(SealedMeta {
            base,
            end,
            max_ts: scan.last_ts,
        });
    }
    Ok(sealed)
}

/// Where the scan of the active segment starts, and the index entries before it.
struct Start {
    pos: u64,
    seq: SeqNo,
    last_ts: Option<TimestampMs>,
    indexer: Indexer,
    generation: u64,
}

fn recover_active(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &LogConfig,
    base: SeqNo,
    prev_ts: Option<TimestampMs>,
    sealed: Vec<SealedMeta>,
) -> Result<State> {
    let path = segment::log_path(dir, base);
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let map = file
        .map(map_capacity(config))
        .map_err(|e| Error::io(&path, e))?;
    let bytes = map.bytes().get(..len as usize).unwrap_or_default();
    segment::check_header(bytes, SegmentFile::Log, base, &path)?;
    let start = start_point(fs, dir, config, base, len, prev_ts);
    let mut indexer = start.indexer;
    let (loaded_seq, loaded_time) = (indexer.seq.len(), indexer.time.len());
    let scan = segment::scan(
        bytes,
        start.pos,
        len,
        base,
        start.seq,
        start.last_ts,
        &mut indexer,
    );
    if scan.end_pos < len {
        truncate(
            &*file,
            &path,
            scan.end_pos,
            len,
            scan.stop.as_ref().map(|s| s.1.as_str()),
        )?;
    }
    trim_index_file(fs, dir, base, SegmentFile::SeqIndex, loaded_seq)?;
    trim_index_file(fs, dir, base, SegmentFile::TimeIndex, loaded_time)?;
    let active = Active {
        base,
        file,
        map,
        written: scan.end_pos,
        visible: scan.end_pos,
        indexer,
        flushed_seq: loaded_seq,
        flushed_time: loaded_time,
    };
    let last_ts = scan.last_ts.or(prev_ts);
    let mut state = new_state(
        sealed,
        active,
        scan.next_seq,
        last_ts,
        start.generation,
        start.pos,
    );
    state.recovery = RecoveryStats {
        scanned_bytes: scan.end_pos - start.pos,
        truncated_bytes: len - scan.end_pos,
    };
    if scan.end_pos != start.pos || start.generation == 0 {
        // Make the next open cheap: index what was scanned and record the new point.
        for (kind, from) in [
            (SegmentFile::SeqIndex, loaded_seq),
            (SegmentFile::TimeIndex, loaded_time),
        ] {
            let entries = match kind {
                SegmentFile::SeqIndex => &state.active.indexer.seq,
                _ => &state.active.indexer.time,
            };
            flush_index(fs, dir, base, kind, entries, from)?;
        }
        state.active.flushed_seq = state.active.indexer.seq.len();
        state.active.flushed_time = state.active.indexer.time.len();
        let c = Checkpoint {
            generation: start.generation + 1,
            base,
            position: scan.end_pos,
            next_seq: scan.next_seq,
            last_ts,
        };
        write_checkpoint_slot(fs, dir, &c)?;
        state.checkpoint_generation = c.generation;
        state.checkpoint_pos = c.position;
    }
    tracing::debug!(log = %dir.display(), scanned = scan.end_pos - start.pos, next_seq = %scan.next_seq, "recovered");
    Ok(state)
}

/// The checkpoint, if it is for the active segment and its index entries are on disk;
/// otherwise the segment's start.
fn start_point(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &LogConfig,
    base: SeqNo,
    len: u64,
    prev_ts: Option<TimestampMs>,
) -> Start {
    let ckpt = read_checkpoint(fs, dir);
    let generation = ckpt.map_or(0, |c| c.generation);
    let from_start = Start {
        pos: HEADER_BYTES as u64,
        seq: base,
        last_ts: prev_ts,
        indexer: Indexer::new(config.index_interval_bytes),
        generation,
    };
    let Some(c) = ckpt else {
        return from_start;
    };
    let usable = c.base == base
        && c.position >= HEADER_BYTES as u64
        && c.position <= len
        && c.next_seq >= base;
    if !usable {
        return from_start;
    }
    let rel_end = c.next_seq.0 - base.0;
    let seq = load_index_prefix(fs, dir, base, SegmentFile::SeqIndex, SEQ_ENTRY_BYTES, |e| {
        u64::from(SeqIndex(e).get(0).pos) < c.position
    });
    let time = load_index_prefix(
        fs,
        dir,
        base,
        SegmentFile::TimeIndex,
        TIME_ENTRY_BYTES,
        |e| u64::from(TimeIndex(e).get(0).rel) < rel_end,
    );
    let (Some(seq), Some(time)) = (seq, time) else {
        return from_start;
    };
    let consistent = SeqIndex(&seq).check(c.position).is_ok()
        && TimeIndex(&time).check().is_ok()
        && SeqIndex(&seq).len() == TimeIndex(&time).len()
        && (rel_end == 0) == seq.is_empty();
    if !consistent {
        return from_start;
    }
    Start {
        pos: c.position,
        seq: c.next_seq,
        last_ts: c.last_ts.or(prev_ts),
        indexer: Indexer::resume(config.index_interval_bytes, seq, time),
        generation,
    }
}

fn read_checkpoint(fs: &dyn FileSystem, dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(names::CHECKPOINT);
    let file = fs.open(&path).ok()?;
    let len = file.len().ok()? as usize;
    let mut bytes = vec![0u8; len.min(checkpoint::CKPT_FILE_BYTES)];
    file.read_exact_at(0, &mut bytes).ok()?;
    match Checkpoint::decode_file(&bytes) {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(file = %path.display(), reason = %why, "ignoring a damaged checkpoint; scanning the active segment");
            None
        }
    }
}

/// The entries of an index file that `keep` accepts, in order, stopping at the first it
/// refuses. `None` if the file is missing or its header is bad.
fn load_index_prefix(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    kind: SegmentFile,
    entry_bytes: usize,
    keep: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let file = fs.open(&segment_path(dir, base, kind)).ok()?;
    let map = file.map(0).ok()?;
    let h = FileHeader::decode(map.bytes(), kind).ok()?;
    if h.base != base {
        return None;
    }
    let entries = &map.bytes()[HEADER_BYTES..];
    let n = entries
        .chunks_exact(entry_bytes)
        .take_while(|e| keep(e))
        .count();
    Some(entries[..n * entry_bytes].to_vec())
}

/// Cuts an index file back to the entries kept in memory, so stale entries written past
/// the recovery point cannot be read as valid later.
fn trim_index_file(
    fs: &dyn FileSystem,
    dir: &Path,
    base: SeqNo,
    kind: SegmentFile,
    kept: usize,
) -> Result<()> {
    let path = segment_path(dir, base, kind);
    if kept == 0 || !fs.exists(&path) {
        return Ok(());
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let want = (HEADER_BYTES + kept) as u64;
    if file.len().map_err(|e| Error::io(&path, e))? > want {
        file.set_len(want).map_err(|e| Error::io(&path, e))?;
        file.sync_data().map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

fn truncate(
    file: &dyn FileHandle,
    path: &Path,
    at: u64,
    len: u64,
    why: Option<&str>,
) -> Result<()> {
    tracing::warn!(
        segment = %path.display(),
        position = at,
        bytes_dropped = len - at,
        reason = why.unwrap_or("unknown"),
        "truncating the log at the first torn or corrupt frame"
    );
    file.set_len(at).map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::io(path, e))
}

/// Whether the log was sealed; the marker must agree with the recovered log.
fn read_seal_marker(fs: &dyn FileSystem, dir: &Path, next_seq: SeqNo) -> Result<bool> {
    let path = dir.join(names::SEALED);
    if !fs.exists(&path) {
        return Ok(false);
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))? as usize;
    let mut bytes = vec![0u8; len.min(checkpoint::SEAL_BYTES)];
    file.read_exact_at(0, &mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    let sealed_at = checkpoint::decode_seal(&bytes).map_err(|why| Error::corrupt(&path, 0, why))?;
    if sealed_at != next_seq {
        return Err(Error::corrupt(
            &path,
            0,
            format!("sealed with next sequence {sealed_at} but the log recovers to {next_seq}"),
        ));
    }
    Ok(true)
}

// The log is shared across threads; keep it that way.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<crate::Log>();
};
