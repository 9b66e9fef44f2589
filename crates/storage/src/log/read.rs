//! Reads and seeks: finding a sequence or a time in the segments, and decoding frames
//! through the memory maps, every CRC checked.
//!
//! Sequences may have gaps: numbers that recovery gave up after damage (see `gaps`). A
//! sealed segment's records then end (`records_end`) before the next segment's base
//! (`end`); a read that reaches `records_end` goes on at `end`, and a segment whose
//! records end before `records_end` is damage, reported as `Corrupt`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{Log, ReadBatch, SharedBatch, SharedRecord, State};
use crate::error::{Error, Result};
use crate::frame;
use crate::fs::Mapping;
use crate::header::{FileHeader, HEADER_BYTES};
use crate::index::{SeqIndex, TimeIndex};
use crate::names::SegmentFile;
use crate::segment::{self, SealedMaps, SealedMeta};
use crate::types::{SeqNo, TimestampMs};

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

/// How one segment's part of a read ended.
enum Step {
    /// A limit stopped the read.
    Done,
    /// The segment has nothing more: go on at this sequence.
    Next(SeqNo),
}

impl Log {
    /// Reads up to `max_records` records, and up to `max_bytes` of keys and data (at least
    /// one record when any is available), from `from` on. A `from` older than the trim
    /// horizon reads from the trim horizon; one in a gap reads from the gap's end. Each
    /// record is copied into owned buffers; see [`Log::read_shared`] for reads that copy
    /// nothing.
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
            let limit = Limits {
                end,
                max_records,
                max_bytes,
            };
            let step = match target {
                Target::Sealed(meta) => match self.read_sealed(&meta, seq, &limit, &mut sink) {
                    // Retention may have deleted it since: go again from the new horizon.
                    Err(_) if !self.holds_segment(meta.base) => Step::Next(seq),
                    other => other?,
                },
                Target::Active {
                    map,
                    base,
                    visible,
                    entry,
                } => {
                    let path = segment::log_path(&self.dir, base);
                    let seg = SegmentBytes::new(map, visible as usize);
                    match read_frames(&seg, &path, entry, seq, &limit, &mut sink)? {
                        true => Step::Done,
                        false => Step::Next(last.map_or(seq, SeqNo::next)),
                    }
                }
            };
            match step {
                Step::Done => break,
                Step::Next(at) => seq = at,
            }
        }
        let next = last.map_or(seq, SeqNo::next).max(seq);
        Ok((out, next))
    }

    /// Reads a sealed segment's part of a read from `seq`. At the end of its records it
    /// goes on at the next segment, across a recorded gap; records missing before the gap
    /// are damage.
    fn read_sealed<R, F: FnMut(&frame::FrameRef<'_>, &SegmentBytes) -> R>(
        &self,
        meta: &SealedMeta,
        seq: SeqNo,
        limit: &Limits,
        sink: &mut Sink<'_, R, F>,
    ) -> Result<Step> {
        let maps = self.sealed_maps(meta)?;
        let limit = Limits {
            end: limit.end.min(meta.records_end),
            ..*limit
        };
        let path = segment::log_path(&self.dir, meta.base);
        let entry = floor_entry(&SeqIndex(maps.seq.entries()), meta.base, seq);
        let seg = SegmentBytes::new(maps.log.clone(), maps.log_len as usize);
        let before = *sink.last;
        if read_frames(&seg, &path, entry, seq, &limit, sink)? {
            return Ok(Step::Done);
        }
        let have = sink
            .last
            .filter(|l| Some(*l) != before)
            .map_or(seq, SeqNo::next)
            .max(seq);
        if have < limit.end {
            return Err(Error::corrupt(
                path,
                maps.log_len,
                format!(
                    "segment ends before records {have}..{} (missing)",
                    meta.records_end
                ),
            ));
        }
        // Past the segment's records: the rest of its range is a gap, or beyond `end`.
        Ok(Step::Next(if have >= meta.records_end {
            meta.end
        } else {
            have
        }))
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
                let bytes = map.bytes().get(..visible as usize).unwrap_or_default();
                Ok(first_at_or_after(bytes, &path, entry, t, end)?.unwrap_or(end))
            }
            Target::Sealed(meta) => {
                let maps = self.sealed_maps(&meta)?;
                let tidx = TimeIndex(maps.time.entries());
                let from = tidx
                    .last_before(t)
                    .map_or(meta.base, |e| SeqNo(meta.base.0 + u64::from(e.rel)));
                let entry = floor_entry(&SeqIndex(maps.seq.entries()), meta.base, from);
                let path = segment::log_path(&self.dir, meta.base);
                let bytes = maps
                    .log
                    .bytes()
                    .get(..maps.log_len as usize)
                    .unwrap_or_default();
                let found = first_at_or_after(bytes, &path, entry, t, meta.records_end)?;
                Ok(found.unwrap_or(meta.end).min(end))
            }
        }
    }

    /// Whether `base` is still one of the log's sealed segments.
    fn holds_segment(&self, base: SeqNo) -> bool {
        self.lock().sealed.iter().any(|m| m.base == base)
    }

    /// Finds where `seq` is: in the active segment (with a start position from its index),
    /// or in a sealed segment.
    fn locate(&self, st: &mut State, seq: SeqNo) -> Target {
        if seq >= st.active.base {
            let active = &mut st.active;
            if (active.map.bytes().len() as u64) < active.visible {
                // Only the simulated disk maps a snapshot; the real one maps full capacity.
                if let Ok(map) = active.file.map(self.config.map_capacity()) {
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
                records_end: seq,
                max_ts: None,
            }),
        }
    }

    pub(super) fn sealed_maps(&self, meta: &SealedMeta) -> Result<Arc<SealedMaps>> {
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

/// The index entry to start a search for `seq` from: (position, sequence at it).
fn floor_entry(sidx: &SeqIndex<'_>, base: SeqNo, seq: SeqNo) -> (u64, SeqNo) {
    let rel = u32::try_from(seq.0.saturating_sub(base.0)).unwrap_or(u32::MAX);
    match sidx.floor(rel) {
        Some(e) => (u64::from(e.pos), SeqNo(base.0 + u64::from(e.rel))),
        None => (HEADER_BYTES as u64, base),
    }
}

#[derive(Clone, Copy)]
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

/// Decodes frames of one segment from an index entry, collecting those from `from` on, up
/// to `limit.end` (no frame at or past it is decoded). Returns true when a limit on records
/// or bytes stopped the read (as opposed to the segment's end or `limit.end`).
fn read_frames<R, F: FnMut(&frame::FrameRef<'_>, &SegmentBytes) -> R>(
    seg: &SegmentBytes,
    path: &Path,
    entry: (u64, SeqNo),
    from: SeqNo,
    limit: &Limits,
    sink: &mut Sink<'_, R, F>,
) -> Result<bool> {
    let mut frames = Frames::new(seg.bytes(), path, entry, limit.end)?;
    while let Some(f) = frames.next_frame()? {
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

/// The sequence of the first frame before `end` at or after time `t`, if any.
fn first_at_or_after(
    bytes: &[u8],
    path: &Path,
    entry: (u64, SeqNo),
    t: TimestampMs,
    end: SeqNo,
) -> Result<Option<SeqNo>> {
    let mut frames = Frames::new(bytes, path, entry, end)?;
    while let Some(f) = frames.next_frame()? {
        if f.timestamp >= t {
            return Ok(Some(f.seq));
        }
    }
    Ok(None)
}

/// Iterates over the frames of a segment from an index hint up to the sequence `end`,
/// checking every CRC and that sequences follow each other. A hint that does not point at
/// the frame it names is dropped for a scan from the segment's start; damage after that is
/// an error.
struct Frames<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    pos: u64,
    expect: SeqNo,
    end: SeqNo,
}

impl<'a> Frames<'a> {
    fn new(bytes: &'a [u8], path: &'a Path, entry: (u64, SeqNo), end: SeqNo) -> Result<Frames<'a>> {
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
                end,
            })
        } else {
            Frames::from_start(bytes, path, end)
        }
    }

    fn from_start(bytes: &'a [u8], path: &'a Path, end: SeqNo) -> Result<Frames<'a>> {
        let header = FileHeader::decode(bytes, SegmentFile::Log)
            .map_err(|why| Error::corrupt(path, 0, why))?;
        Ok(Frames {
            bytes,
            path,
            pos: HEADER_BYTES as u64,
            expect: header.base,
            end,
        })
    }

    fn next_frame(&mut self) -> Result<Option<frame::FrameRef<'a>>> {
        if self.expect >= self.end {
            return Ok(None);
        }
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
