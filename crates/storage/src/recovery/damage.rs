//! What recovery does with damage: bytes that were once whole and no longer are.
//!
//! Damaged bytes are copied aside for inspection (to the configured `set_aside_dir`,
//! normally the data directory's `lost+found/`) before anything is cut, and the sequence
//! numbers they may have held are given up for good: recorded as a gap (`gaps`), so reads
//! step over them and numbering goes on above them. The bound of what was given up is the
//! highest of: the recovery point's reservation (above every number ever acknowledged),
//! the next sequence the recovery point vouches for, and the most records the dropped
//! bytes could hold (one per 32-byte frame header). For a sealed log it is the seal
//! marker's sequence, which is exact.
//!
//! Order, so that a crash at any step is recovered the same way again: copy aside (synced),
//! record the gap (synced), then cut or rewrite the segment.

use std::path::{Path, PathBuf};

use super::Recovering;
use crate::error::{Error, Result};
use crate::frame::FRAME_HEADER_BYTES;
use crate::gaps::{self, Gap};
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::Indexer;
use crate::log::write_atomically;
use crate::names::SegmentFile;
use crate::segment::{self, SealedMeta};
use crate::types::{SeqNo, TimestampMs};

/// Handles damage at the end of the active segment: the bytes from `cut` (`tail`) are
/// dropped, and the numbers from `next` up to the bound are given up. The caller cuts.
pub(super) fn active_tail(
    r: &mut Recovering<'_>,
    base: SeqNo,
    path: &Path,
    cut: u64,
    tail: &[u8],
    next: SeqNo,
    reason: &str,
) -> Result<()> {
    let to = bound(r, next, tail.len() as u64);
    let aside = match tail.is_empty() {
        true => None,
        false => Some(set_aside(r, base, cut, tail)?),
    };
    r.stats.damaged_bytes += tail.len() as u64;
    tracing::error!(
        segment = %path.display(),
        position = cut,
        bytes = tail.len(),
        lost_from = %next,
        lost_to = %to,
        set_aside = %aside.as_deref().map_or_else(|| "nothing to copy".into(), |p| p.display().to_string()),
        reason,
        "damage in the active segment: acknowledged records from {next} may be lost; their numbers up to {to} are never given again"
    );
    give_up(r, next, to, path, reason)
}

/// Handles an active segment whose header is damaged: every record in it is unreadable.
/// The whole file is set aside and replaced by an empty segment with a good header.
pub(super) fn replace_damaged_active(
    r: &mut Recovering<'_>,
    base: SeqNo,
    path: &Path,
    bytes: &[u8],
) -> Result<()> {
    let records_bytes = (bytes.len() as u64).saturating_sub(HEADER_BYTES as u64);
    let to = bound(r, base, records_bytes);
    let aside = set_aside(r, base, 0, bytes)?;
    r.stats.damaged_bytes += bytes.len() as u64;
    tracing::error!(
        segment = %path.display(),
        bytes = bytes.len(),
        lost_from = %base,
        lost_to = %to,
        set_aside = %aside.display(),
        "the active segment's header is damaged: its records are lost; their numbers are never given again"
    );
    give_up(r, base, to, path, "damaged segment header")?;
    write_atomically(r.fs, r.dir, path, &empty_segment(base))
}

/// With `repair`: reads a sealed segment whole; a damaged one is copied aside, cut back
/// to its last whole batch (or emptied, when its header is damaged), its indexes rebuilt,
/// and its missing records recorded as a gap.
pub(super) fn verify_sealed(r: &mut Recovering<'_>, meta: SealedMeta) -> Result<SealedMeta> {
    let path = segment::log_path(r.dir, meta.base);
    let file = r.fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let map = file.map(0).map_err(|e| Error::io(&path, e))?;
    let bytes = map.bytes().get(..len as usize).unwrap_or_default();
    let header_ok = segment::check_header(bytes, SegmentFile::Log, meta.base, &path).is_ok();
    let scan = match header_ok {
        true => segment::scan(
            bytes,
            HEADER_BYTES as u64,
            len,
            meta.base,
            meta.base,
            None,
            &mut Indexer::new(r.config.index_interval_bytes),
        ),
        false => segment::Scan {
            end_pos: 0,
            next_seq: meta.base,
            last_ts: None,
            stop: Some(segment::Stop {
                pos: 0,
                reason: "damaged segment header".into(),
                torn: false,
            }),
        },
    };
    if header_ok && scan.next_seq >= meta.records_end && scan.end_pos == len {
        // Whole: make sure its indexes are sound too.
        let checked = SealedMeta {
            max_ts: scan.last_ts,
            ..meta
        };
        segment::open_sealed(r.fs, r.dir, &checked, r.config.index_interval_bytes)?;
        return Ok(checked);
    }
    let reason = scan
        .stop
        .as_ref()
        .map_or("segment ends early".to_owned(), |s| s.reason.clone());
    let aside = set_aside(r, meta.base, 0, bytes)?;
    let lost_from = scan.next_seq.min(meta.records_end);
    r.stats.segments_repaired += 1;
    r.stats.damaged_bytes += len - scan.end_pos.min(len);
    tracing::error!(
        segment = %path.display(),
        position = scan.end_pos,
        bytes = len - scan.end_pos.min(len),
        lost_from = %lost_from,
        lost_to = %meta.end,
        set_aside = %aside.display(),
        reason = %reason,
        "repair: sealed segment damaged; set aside, cut back to its last whole batch, and its missing records recorded as a gap"
    );
    if lost_from < meta.end {
        give_up(r, lost_from, meta.end, &path, &reason)?;
    }
    drop(map);
    rewrite_prefix(r, meta.base, &path, header_ok.then_some(scan.end_pos))?;
    let repaired = SealedMeta {
        records_end: lost_from,
        max_ts: scan.last_ts,
        ..meta
    };
    segment::open_sealed(r.fs, r.dir, &repaired, r.config.index_interval_bytes)?;
    Ok(repaired)
}

/// Gives up the numbers `from .. to`: records them as a gap, durably.
pub(super) fn give_up(
    r: &mut Recovering<'_>,
    from: SeqNo,
    to: SeqNo,
    file: &Path,
    reason: &str,
) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let known = r.gaps.iter().any(|g| g.from <= from && to <= g.to);
    if !known {
        r.stats.sequences_skipped += to.0 - from.0;
    }
    gaps::insert(&mut r.gaps, Gap { from, to });
    gaps::write(r.fs, r.dir, &r.gaps)?;
    tracing::error!(
        log = %r.dir.display(),
        file = %file.display(),
        from = %from,
        to = %to,
        reason,
        "sequences given up after damage: reads skip them and no record will get them"
    );
    Ok(())
}

/// Above every number the dropped bytes from `next` on may have held.
fn bound(r: &Recovering<'_>, next: SeqNo, dropped_bytes: u64) -> SeqNo {
    if let Some(at) = r.sealed_at.filter(|at| *at > next) {
        return at;
    }
    let by_size = SeqNo(next.0 + dropped_bytes / FRAME_HEADER_BYTES as u64 + 1);
    let (reserved, vouched) = r
        .ckpt
        .map_or((SeqNo(0), SeqNo(0)), |c| (c.seq_reserved, c.next_seq));
    by_size.max(reserved).max(vouched)
}

/// Copies damaged bytes (`bytes`, from byte `offset` of segment `base`) aside, durably.
/// Returns where.
fn set_aside(r: &Recovering<'_>, base: SeqNo, offset: u64, bytes: &[u8]) -> Result<PathBuf> {
    let (dir, name) = match &r.config.set_aside_dir {
        Some(dir) => (
            dir.clone(),
            format!("{}-{:020}-from-{offset}.damaged", dir_tag(r.dir), base.0),
        ),
        None => (
            r.dir.to_path_buf(),
            format!("{:020}.log.damaged-from-{offset}", base.0),
        ),
    };
    if !r.fs.exists(&dir) {
        r.fs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        if let Some(parent) = dir.parent() {
            r.fs.sync_dir(parent).map_err(|e| Error::sync(parent, e))?;
        }
    }
    let path = dir.join(name);
    write_atomically(r.fs, &dir, &path, bytes)?;
    Ok(path)
}

/// The log directory's last two components, joined: `<stream uid>-<shardId-N>` for a
/// shard, so a set-aside file names the log it came from.
fn dir_tag(dir: &Path) -> String {
    let mut parts: Vec<String> = dir
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.reverse();
    parts.join("-")
}

/// Cuts a sealed segment's file back to `keep` bytes, or, without a good header, replaces
/// it with an empty segment; then rebuilds its indexes.
fn rewrite_prefix(r: &Recovering<'_>, base: SeqNo, path: &Path, keep: Option<u64>) -> Result<()> {
    match keep {
        Some(len) => {
            let file = r.fs.open(path).map_err(|e| Error::io(path, e))?;
            file.set_len(len).map_err(|e| Error::io(path, e))?;
            file.sync_data().map_err(|e| Error::sync(path, e))?;
        }
        None => write_atomically(r.fs, r.dir, path, &empty_segment(base))?,
    }
    let file = r.fs.open(path).map_err(|e| Error::io(path, e))?;
    let len = file.len().map_err(|e| Error::io(path, e))?;
    let map = file.map(0).map_err(|e| Error::io(path, e))?;
    segment::rebuild_sealed(r.fs, r.dir, base, map, len, r.config.index_interval_bytes)?;
    Ok(())
}

/// The bytes of a segment that holds no record.
fn empty_segment(base: SeqNo) -> Vec<u8> {
    FileHeader {
        kind: SegmentFile::Log,
        base,
        created: TimestampMs(0),
    }
    .encode()
    .to_vec()
}
