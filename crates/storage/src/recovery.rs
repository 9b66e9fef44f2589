//! Opening a log after any stop: clean, killed, or power lost.
//!
//! 1. Leftovers of interrupted deletes and writes (`*.deleted`, `*.tmp`) and index files
//!    without their log are removed.
//! 2. A newest segment whose header never became durable (a roll cut short) is dropped:
//!    nothing was ever written into it.
//! 3. Sealed segments are described from the last entry of their timestamp index (a few
//!    bytes each); a segment whose index is missing or disagrees is rebuilt from its log.
//!    With `repair`, every sealed segment is read whole, and a damaged one is set aside
//!    (`damage`).
//! 4. The active segment is scanned from the recovery point (the checkpoint), or from its
//!    start when there is none for it. Every frame after that point is CRC-checked and must
//!    continue the sequence, and only whole batches are kept. The file is cut after the
//!    last whole batch, and the cut is synced and logged with its byte count.
//!
//! What the cut drops was either never acknowledged (a torn tail: a write cut short, an
//! incomplete batch) or acknowledged and damaged since (bytes that fail their checks in a
//! way a torn write cannot explain, or fewer records than the recovery point vouches for).
//! Damage is set aside and reported, and its sequence numbers are given up for good
//! (`damage`), so no number is ever given to two records. So the work is proportional to
//! what was written since the last recovery point, not to the size of the log.

mod damage;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::{self, CKPT_VERSION, Checkpoint};
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::fs::{FileHandle, FileSystem, Mapping};
use crate::gaps::{self, Gap};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::{Indexer, SEQ_ENTRY_BYTES, SeqIndex, TIME_ENTRY_BYTES, TimeIndex};
use crate::log::{Active, RecoveryStats, State, flush_index, write_checkpoint_slot};
use crate::names::{self, SegmentFile, parse_segment_name, segment_path};
use crate::segment::{self, SealedMeta};
use crate::types::{SeqNo, TimestampMs};

/// What recovery knows while it opens one log.
struct Recovering<'a> {
    fs: &'a dyn FileSystem,
    dir: &'a Path,
    config: &'a LogConfig,
    /// The newest recovery point, if one is readable.
    ckpt: Option<Checkpoint>,
    /// The seal marker's next sequence, if the log is sealed.
    sealed_at: Option<SeqNo>,
    gaps: Vec<Gap>,
    stats: RecoveryStats,
}

/// Recovers (or creates) the state of the log in `dir`.
pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, config: &LogConfig) -> Result<State> {
    fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    remove_leftovers(fs, dir)?;
    let ckpt = read_checkpoint(fs, dir)?;
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
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
        bases.pop();
        if bases.is_empty() {
            // The only segment was never created: the log is empty from `last` on.
            return create_fresh(fs, dir, config, last, ckpt);
        }
    }
    let Some(&active_base) = bases.last() else {
        return create_fresh(fs, dir, config, SeqNo(0), ckpt);
    };
    let mut r = Recovering {
        fs,
        dir,
        config,
        ckpt,
        sealed_at: read_seal_marker(fs, dir, config.repair)?,
        gaps: load_gaps(fs, dir, config.repair)?,
        stats: RecoveryStats::default(),
    };
    let sealed = describe_sealed(&mut r, &bases)?;
    let prev_ts = sealed.last().and_then(|m| m.max_ts);
    let mut state = recover_active(&mut r, active_base, prev_ts, sealed)?;
    check_seal(&mut r, &mut state, active_base)?;
    state.recovery = RecoveryStats {
        scanned_bytes: state.recovery.scanned_bytes,
        truncated_bytes: state.recovery.truncated_bytes,
        ..r.stats
    };
    state.gaps = r.gaps;
    Ok(state)
}

/// Marks a sealed log sealed. Its records were all durable when it was sealed, so a log
/// that recovers to fewer of them lost some to damage: their numbers are given up up to
/// the seal's, which the metadata holds as the shard's end.
fn check_seal(r: &mut Recovering<'_>, state: &mut State, active_base: SeqNo) -> Result<()> {
    let Some(at) = r.sealed_at else {
        return Ok(());
    };
    state.is_sealed = true;
    if at < state.next_seq {
        return Err(Error::corrupt(
            r.dir.join(names::SEALED),
            0,
            format!(
                "sealed with next sequence {at} but the log recovers to {}",
                state.next_seq
            ),
        ));
    }
    let file = segment::log_path(r.dir, active_base);
    let why = "the log ends before its seal marker says";
    damage::give_up(r, state.next_seq, at, &file, why)
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
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
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
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
    }
    *bases = kept;
    Ok(())
}

/// A newest segment no longer than its header and without a valid one was cut off while
/// being created. A longer file with a bad header is damage, not a torn creation: it is
/// recovered as damage (the active segment) or reported (a sealed one).
fn newest_is_torn(fs: &dyn FileSystem, dir: &Path, base: SeqNo) -> Result<bool> {
    let path = segment::log_path(dir, base);
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let mut header = vec![0u8; (len as usize).min(HEADER_BYTES)];
    file.read_exact_at(0, &mut header)
        .map_err(|e| Error::io(&path, e))?;
    Ok(
        segment::check_header(&header, SegmentFile::Log, base, &path).is_err()
            && len <= HEADER_BYTES as u64,
    )
}

/// Creates an empty log whose first record will be `base`.
fn create_fresh(
    fs: &dyn FileSystem,
    dir: &Path,
    config: &LogConfig,
    base: SeqNo,
    ckpt: Option<Checkpoint>,
) -> Result<State> {
    let path = segment::log_path(dir, base);
    let header = FileHeader {
        kind: SegmentFile::Log,
        base,
        created: TimestampMs(0),
    };
    let file = segment::create_file_with_header(fs, &path, &header)?;
    file.sync_data().map_err(|e| Error::sync(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
    let c = Checkpoint {
        generation: ckpt.map_or(0, |c| c.generation) + 1,
        base,
        position: HEADER_BYTES as u64,
        next_seq: base,
        last_ts: None,
        seq_reserved: SeqNo(base.0.saturating_add(config.seq_reserve)),
    };
    write_checkpoint_slot(fs, dir, &c)?;
    let map = file
        .map(config.map_capacity())
        .map_err(|e| Error::io(&path, e))?;
    let active = new_active(config, base, file, map, HEADER_BYTES as u64);
    let mut state = new_state(Vec::new(), active, base, None, c.generation, c.position);
    state.seq_reserved = c.seq_reserved;
    Ok(state)
}

fn new_active(
    config: &LogConfig,
    base: SeqNo,
    file: Arc<dyn FileHandle>,
    map: Arc<dyn Mapping>,
    written: u64,
) -> Active {
    Active {
        base,
        file,
        map,
        written,
        visible: written,
        indexer: Indexer::new(config.index_interval_bytes),
        flushed_seq: 0,
        flushed_time: 0,
        cut_pending: false,
    }
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
        seq_reserved: SeqNo(0),
        gaps: Vec::new(),
    }
}

/// Describes every segment but the newest (with `repair`, checking each one whole).
fn describe_sealed(r: &mut Recovering<'_>, bases: &[SeqNo]) -> Result<Vec<SealedMeta>> {
    let mut sealed = Vec::with_capacity(bases.len().saturating_sub(1));
    for pair in bases.windows(2) {
        let (base, end) = (pair[0], pair[1]);
        let records_end = r
            .gaps
            .iter()
            .find(|g| g.from >= base && g.from < end)
            .map_or(end, |g| g.from);
        let guess = SealedMeta {
            base,
            end,
            records_end,
            max_ts: None,
        };
        if r.config.repair {
            sealed.push(damage::verify_sealed(r, guess)?);
            continue;
        }
        if let Some(meta) = segment::quick_meta(r.fs, r.dir, base, end, records_end) {
            sealed.push(meta);
            continue;
        }
        let (_, scan) = segment::open_sealed(r.fs, r.dir, &guess, r.config.index_interval_bytes)?;
        if scan.next_seq != records_end {
            // Reads of the missing records report the damage with file and position;
            // the log's `repair` sets the segment aside.
            tracing::error!(
                segment = %segment::log_path(r.dir, base).display(),
                valid_until = scan.end_pos,
                missing_from = %scan.next_seq,
                missing_to = %records_end,
                reason = scan.stop.as_ref().map_or("segment ends early", |s| s.reason.as_str()),
                "sealed segment is damaged; reads past the damage fail until it is repaired (sluice --repair)"
            );
        }
        sealed.push(SealedMeta {
            max_ts: scan.last_ts,
            ..guess
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
    r: &mut Recovering<'_>,
    base: SeqNo,
    prev_ts: Option<TimestampMs>,
    sealed: Vec<SealedMeta>,
) -> Result<State> {
    let (fs, dir, config) = (r.fs, r.dir, r.config);
    let path = segment::log_path(dir, base);
    let (mut file, mut len, mut map) = open_mapped(fs, config, &path)?;
    let header = map.bytes().get(..len as usize).unwrap_or_default();
    if segment::check_header(header, SegmentFile::Log, base, &path).is_err() {
        damage::replace_damaged_active(r, base, &path, header)?;
        (file, len, map) = open_mapped(fs, config, &path)?;
    }
    let bytes = map.bytes().get(..len as usize).unwrap_or_default();
    let start = start_point(r, base, len, prev_ts);
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
    // Records the recovery point vouches for that are not there were lost to damage.
    let vouched = r.ckpt.map_or(SeqNo(0), |c| c.next_seq);
    let damaged = scan.stop.as_ref().is_some_and(|s| !s.torn) || vouched > scan.next_seq;
    if damaged {
        let reason = match &scan.stop {
            Some(s) if !s.torn => s.reason.clone(),
            _ => format!("the recovery point vouches for records up to {vouched}"),
        };
        let tail = bytes.get(scan.end_pos as usize..).unwrap_or_default();
        damage::active_tail(r, base, &path, scan.end_pos, tail, scan.next_seq, &reason)?;
    }
    if scan.end_pos < len {
        let why = scan.stop.as_ref().map_or("unknown", |s| s.reason.as_str());
        truncate(&*file, &path, scan.end_pos, len, why, damaged)?;
    }
    trim_index_file(fs, dir, base, SegmentFile::SeqIndex, loaded_seq)?;
    trim_index_file(fs, dir, base, SegmentFile::TimeIndex, loaded_time)?;
    let mut active = new_active(config, base, file, map, scan.end_pos);
    active.indexer = indexer;
    active.flushed_seq = loaded_seq;
    active.flushed_time = loaded_time;
    let last_ts = scan.last_ts.or(prev_ts);
    let mut state = new_state(
        sealed,
        active,
        scan.next_seq,
        last_ts,
        start.generation,
        start.pos,
    );
    state.seq_reserved = r.ckpt.map_or(SeqNo(0), |c| c.seq_reserved);
    state.recovery.scanned_bytes = scan.end_pos - start.pos;
    state.recovery.truncated_bytes = len - scan.end_pos;
    if scan.end_pos != start.pos || start.generation == 0 {
        write_recovered_point(r, &mut state, base)?;
    }
    tracing::debug!(log = %dir.display(), scanned = scan.end_pos - start.pos, next_seq = %scan.next_seq, "recovered");
    Ok(state)
}

/// An open segment file, its length, and its mapping.
type Mapped = (Arc<dyn FileHandle>, u64, Arc<dyn Mapping>);

/// Opens the active segment's file and maps it with the active mapping's capacity.
fn open_mapped(fs: &dyn FileSystem, config: &LogConfig, path: &Path) -> Result<Mapped> {
    let file = fs.open(path).map_err(|e| Error::io(path, e))?;
    let len = file.len().map_err(|e| Error::io(path, e))?;
    let map = file
        .map(config.map_capacity())
        .map_err(|e| Error::io(path, e))?;
    Ok((file, len, map))
}

/// Makes the next open cheap: indexes what was scanned and records the new point, with
/// the sequence reservation carried over.
fn write_recovered_point(r: &Recovering<'_>, state: &mut State, base: SeqNo) -> Result<()> {
    for kind in [SegmentFile::SeqIndex, SegmentFile::TimeIndex] {
        let (entries, from) = match kind {
            SegmentFile::SeqIndex => (&state.active.indexer.seq, state.active.flushed_seq),
            _ => (&state.active.indexer.time, state.active.flushed_time),
        };
        flush_index(r.fs, r.dir, base, kind, entries, from)?;
    }
    state.active.flushed_seq = state.active.indexer.seq.len();
    state.active.flushed_time = state.active.indexer.time.len();
    let c = Checkpoint {
        generation: state.checkpoint_generation + 1,
        base,
        position: state.active.written,
        next_seq: state.next_seq,
        last_ts: state.last_ts,
        seq_reserved: state
            .seq_reserved
            .max(SeqNo(state.next_seq.0.saturating_add(r.config.seq_reserve))),
    };
    write_checkpoint_slot(r.fs, r.dir, &c)?;
    state.checkpoint_generation = c.generation;
    state.checkpoint_pos = c.position;
    state.seq_reserved = c.seq_reserved;
    Ok(())
}

/// The checkpoint, if it is for the active segment and its index entries are on disk;
/// otherwise the segment's start.
fn start_point(r: &Recovering<'_>, base: SeqNo, len: u64, prev_ts: Option<TimestampMs>) -> Start {
    let (fs, dir, config) = (r.fs, r.dir, r.config);
    let ckpt = r.ckpt;
    let generation = ckpt.map_or(0, |c| c.generation);
    let from_start = Start {
        pos: HEADER_BYTES as u64,
        seq: base,
        last_ts: prev_ts,
        indexer: Indexer::new(config.index_interval_bytes),
        generation,
    };
    // `repair` reads the whole active segment too: damage before the recovery point is
    // found there (as fewer records than the point vouches for) instead of by reads.
    let Some(c) = ckpt.filter(|_| !config.repair) else {
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

/// The newest recovery point. A damaged file is ignored (the active segment is then
/// scanned whole); a file of an older format is read, then removed, so that the next
/// recovery point is written in the current one.
fn read_checkpoint(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(names::CHECKPOINT);
    let Ok(file) = fs.open(&path) else {
        return Ok(None);
    };
    let len = file.len().map_err(|e| Error::io(&path, e))? as usize;
    let mut bytes = vec![0u8; len.min(checkpoint::CKPT_FILE_BYTES)];
    file.read_exact_at(0, &mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    let decoded = Checkpoint::decode_file_versioned(&bytes);
    let replace = !matches!(decoded, Ok(f) if f.version == CKPT_VERSION);
    if replace {
        fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
        fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
    }
    match decoded {
        Ok(f) => Ok(f.newest),
        Err(why) => {
            tracing::warn!(file = %path.display(), reason = %why, "ignoring a damaged checkpoint; scanning the active segment");
            Ok(None)
        }
    }
}

/// The gaps file; with `repair`, a damaged one is set aside and rebuilt (as sealed
/// segments are checked whole, each gap is found again).
fn load_gaps(fs: &dyn FileSystem, dir: &Path, repair: bool) -> Result<Vec<Gap>> {
    match gaps::read(fs, dir) {
        Err(Error::Corrupt { path, reason, .. }) if repair => {
            tracing::error!(file = %path.display(), reason = %reason, "repair: the gaps file is damaged; removing it and finding the gaps again");
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
            Ok(Vec::new())
        }
        other => other,
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
        file.sync_data().map_err(|e| Error::sync(&path, e))?;
    }
    Ok(())
}

/// Cuts the active segment after its last whole batch, durably. A torn tail (never
/// acknowledged) is a warning; damage was already reported at error level.
fn truncate(
    file: &dyn FileHandle,
    path: &Path,
    at: u64,
    len: u64,
    why: &str,
    damaged: bool,
) -> Result<()> {
    if damaged {
        tracing::info!(segment = %path.display(), position = at, bytes_dropped = len - at, "truncating the damaged tail of the log");
    } else {
        tracing::warn!(
            segment = %path.display(),
            position = at,
            bytes_dropped = len - at,
            reason = why,
            "truncating a torn tail (a write the stop cut short, never acknowledged)"
        );
    }
    file.set_len(at).map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::sync(path, e))
}

/// The seal marker's next sequence, if the log is sealed. A damaged marker is an error,
/// or with `repair` is removed (the shard manager seals again what its journal closed).
fn read_seal_marker(fs: &dyn FileSystem, dir: &Path, repair: bool) -> Result<Option<SeqNo>> {
    let path = dir.join(names::SEALED);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))? as usize;
    let mut bytes = vec![0u8; len.min(checkpoint::SEAL_BYTES)];
    file.read_exact_at(0, &mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    match checkpoint::decode_seal(&bytes) {
        Ok(at) => Ok(Some(at)),
        Err(why) if repair => {
            tracing::error!(file = %path.display(), reason = %why, "repair: removing a damaged seal marker");
            fs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
            Ok(None)
        }
        Err(why) => Err(Error::corrupt(&path, 0, why)),
    }
}

// The log is shared across threads; keep it that way.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<crate::Log>();
};
