//! Sparse sequence and timestamp indexes: entry codecs, lookups and checks. No I/O.
//!
//! An index file is a [`crate::header`] followed by fixed-size entries:
//!
//! | index | entry bytes | entry layout (little-endian) |
//! |-------|------------:|------------------------------|
//! | sequence (`.sidx`)  | 8  | relative sequence u32, byte position of the frame in the log u32 |
//! | timestamp (`.tidx`) | 12 | timestamp ms u64, relative sequence u32 |
//!
//! The same encoded bytes serve the active segment (a `Vec<u8>` in memory, flushed to the
//! file at checkpoints) and sealed segments (a memory map of the file), so both are searched
//! by one code path. Entries are added by [`Indexer`]: for the first record of a segment and
//! then for the first record at least `interval` bytes after the previous entry. A sealed
//! segment's timestamp index also ends with an entry for its last record, so its last entry
//! tells the segment's newest timestamp and record count without reading the log.
//!
//! Indexes are hints: a lookup result is always verified by decoding the frame it points to.

use crate::frame::{read_u32, read_u64};
use crate::header::HEADER_BYTES;
use crate::types::TimestampMs;

/// Bytes of a sequence-index entry.
pub const SEQ_ENTRY_BYTES: usize = 8;
/// Bytes of a timestamp-index entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// A sequence-index entry: the frame of relative sequence `rel` starts at byte `pos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqEntry {
    /// Sequence relative to the segment's base.
    pub rel: u32,
    /// Byte position of the frame in the segment file.
    pub pos: u32,
}

/// A timestamp-index entry: the record of relative sequence `rel` arrived at `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Arrival time of the record.
    pub ts: TimestampMs,
    /// Sequence relative to the segment's base.
    pub rel: u32,
}

/// Encoded sequence-index entries.
#[derive(Debug, Clone, Copy)]
pub struct SeqIndex<'a>(pub &'a [u8]);

/// Encoded timestamp-index entries.
#[derive(Debug, Clone, Copy)]
pub struct TimeIndex<'a>(pub &'a [u8]);

impl SeqEntry {
    /// Appends the encoded entry.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel.to_le_bytes());
        out.extend_from_slice(&self.pos.to_le_bytes());
    }
}

impl TimeEntry {
    /// Appends the encoded entry.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.0.to_le_bytes());
        out.extend_from_slice(&self.rel.to_le_bytes());
    }
}

impl<'a> SeqIndex<'a> {
    /// The number of entries (a partial trailing entry is ignored).
    pub fn len(&self) -> usize {
        self.0.len() / SEQ_ENTRY_BYTES
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i` (< len).
    pub fn get(&self, i: usize) -> SeqEntry {
        let at = i * SEQ_ENTRY_BYTES;
        SeqEntry {
            rel: read_u32(self.0, at).unwrap_or_default(),
            pos: read_u32(self.0, at + 4).unwrap_or_default(),
        }
    }

    /// The last entry whose relative sequence is at most `rel`.
    pub fn floor(&self, rel: u32) -> Option<SeqEntry> {
        let n = partition_point(self.len(), |i| self.get(i).rel <= rel);
        n.checked_sub(1).map(|i| self.get(i))
    }

    /// Checks the entries against the rules an index written by us obeys.
    pub fn check(&self, log_len: u64) -> Result<(), String> {
        if self.0.len() % SEQ_ENTRY_BYTES != 0 {
            return Err("sequence index length is not a whole number of entries".into());
        }
        let mut prev: Option<SeqEntry> = None;
        for i in 0..self.len() {
            let e = self.get(i);
            if u64::from(e.pos) >= log_len || (e.pos as usize) < HEADER_BYTES {
                return Err(format!("entry {i} points outside the log"));
            }
            match prev {
                None if e.rel != 0 || e.pos as usize != HEADER_BYTES => {
                    return Err("first entry is not the first record".into());
                }
                Some(p) if e.rel <= p.rel || e.pos <= p.pos => {
                    return Err(format!("entry {i} is not after entry {}", i - 1));
                }
                _ => {}
            }
            prev = Some(e);
        }
        Ok(())
    }
}

impl<'a> TimeIndex<'a> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len() / TIME_ENTRY_BYTES
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i` (< len).
    pub fn get(&self, i: usize) -> TimeEntry {
        let at = i * TIME_ENTRY_BYTES;
        TimeEntry {
            ts: TimestampMs(read_u64(self.0, at).unwrap_or_default()),
            rel: read_u32(self.0, at + 8).unwrap_or_default(),
        }
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry with a timestamp strictly before `ts`: every record up to it arrived
    /// before `ts`, so a search for the first record at or after `ts` can start there.
    pub fn last_before(&self, ts: TimestampMs) -> Option<TimeEntry> {
        let n = partition_point(self.len(), |i| self.get(i).ts < ts);
        n.checked_sub(1).map(|i| self.get(i))
    }

    /// Checks the entries: whole, timestamps never decreasing, sequences increasing.
    pub fn check(&self) -> Result<(), String> {
        if self.0.len() % TIME_ENTRY_BYTES != 0 {
            return Err("timestamp index length is not a whole number of entries".into());
        }
        for i in 1..self.len() {
            let (p, e) = (self.get(i - 1), self.get(i));
            if e.ts < p.ts || e.rel <= p.rel {
                return Err(format!("entry {i} is not after entry {}", i - 1));
            }
        }
        Ok(())
    }
}

/// Decides where entries go while records are appended or scanned, and collects them.
#[derive(Debug, Clone, Default)]
pub struct Indexer {
    /// Encoded sequence entries.
    pub seq: Vec<u8>,
    /// Encoded timestamp entries.
    pub time: Vec<u8>,
    last_pos: Option<u32>,
    interval_bytes: u32,
}

impl Indexer {
    /// An empty indexer adding an entry at least every `interval_bytes` of log.
    pub fn new(interval_bytes: u32) -> Indexer {
        Indexer {
            interval_bytes,
            ..Indexer::default()
        }
    }

    /// Starts from entries already on disk (a prefix of what this indexer would produce).
    pub fn resume(interval_bytes: u32, seq: Vec<u8>, time: Vec<u8>) -> Indexer {
        let index = SeqIndex(&seq);
        let last_pos = index.len().checked_sub(1).map(|i| index.get(i).pos);
        Indexer {
            seq,
            time,
            last_pos,
            interval_bytes,
        }
    }

    /// Notes a record at byte `pos` with relative sequence `rel` and timestamp `ts`.
    pub fn observe(&mut self, rel: u32, pos: u32, ts: TimestampMs) {
        let due = match self.last_pos {
            None => true,
            Some(last) => pos.saturating_sub(last) >= self.interval_bytes,
        };
        if due {
            SeqEntry { rel, pos }.encode(&mut self.seq);
            TimeEntry { ts, rel }.encode(&mut self.time);
            self.last_pos = Some(pos);
        }
    }

    /// Remembers the current entries, to undo a failed write with [`Indexer::restore_marks`].
    pub fn clone_marks(&self) -> IndexerMarks {
        IndexerMarks {
            seq_len: self.seq.len(),
            time_len: self.time.len(),
            last_pos: self.last_pos,
        }
    }

    /// Forgets every entry added since `marks` was taken.
    pub fn restore_marks(&mut self, marks: IndexerMarks) {
        self.seq.truncate(marks.seq_len);
        self.time.truncate(marks.time_len);
        self.last_pos = marks.last_pos;
    }

    /// Adds the closing timestamp entry for the segment's last record, if it lacks one.
    pub fn finish(&mut self, last_rel: u32, last_ts: TimestampMs) {
        if TimeIndex(&self.time).last().map(|e| e.rel) != Some(last_rel) {
            TimeEntry {
                ts: last_ts,
                rel: last_rel,
            }
            .encode(&mut self.time);
        }
    }
}

/// A point to roll an [`Indexer`] back to.
#[derive(Debug, Clone, Copy)]
pub struct IndexerMarks {
    seq_len: usize,
    time_len: usize,
    last_pos: Option<u32>,
}

/// The number of leading indices `i < n` for which `pred(i)` holds (`pred` must be true
/// then false, like `slice::partition_point`).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(records: &[(u32, u64)], interval: u32) -> Indexer {
        // records: (frame length, timestamp), placed one after another after the header.
        let mut ix = Indexer::new(interval);
        let mut pos = HEADER_BYTES as u32;
        for (rel, (len, ts)) in records.iter().enumerate() {
            ix.observe(rel as u32, pos, TimestampMs(*ts));
            pos += len;
        }
        ix
    }

    #[test]
    fn first_record_always_gets_an_entry() {
        let ix = build(&[(10, 1)], 1 << 20);
        assert_eq!(
            SeqIndex(&ix.seq).get(0),
            SeqEntry {
                rel: 0,
                pos: HEADER_BYTES as u32
            }
        );
        assert!(SeqIndex(&ix.seq).check(1000).is_ok());
    }

    #[test]
    fn check_rejects_disorder_and_partial_entries() {
        let mut bytes = Vec::new();
        SeqEntry { rel: 0, pos: 40 }.encode(&mut bytes);
        SeqEntry { rel: 0, pos: 80 }.encode(&mut bytes);
        assert!(SeqIndex(&bytes).check(1000).is_err());
        assert!(SeqIndex(&bytes[..11]).check(1000).is_err());
        let mut t = Vec::new();
        TimeEntry {
            ts: TimestampMs(5),
            rel: 0,
        }
        .encode(&mut t);
        TimeEntry {
            ts: TimestampMs(4),
            rel: 1,
        }
        .encode(&mut t);
        assert!(TimeIndex(&t).check().is_err());
    }

    proptest! {
        #[test]
        fn seq_lookup_equals_a_linear_scan(
            lens in proptest::collection::vec(20u32..300, 1..400),
            interval in 1u32..2000,
            probe in any::<proptest::sample::Index>(),
        ) {
            let recs: Vec<(u32, u64)> = lens.iter().map(|l| (*l, 0)).collect();
            let ix = build(&recs, interval);
            let index = SeqIndex(&ix.seq);
            let total: u64 = HEADER_BYTES as u64 + lens.iter().map(|l| u64::from(*l)).sum::<u64>();
            prop_assert!(index.check(total).is_ok());
            let rel = probe.index(lens.len()) as u32;
            let linear = (0..index.len()).map(|i| index.get(i)).rfind(|e| e.rel <= rel);
            prop_assert_eq!(index.floor(rel), linear);
            // The entry's position is the true position of its record.
            let e = index.floor(rel).unwrap();
            let true_pos = HEADER_BYTES as u32 + lens[..e.rel as usize].iter().sum::<u32>();
            prop_assert_eq!(e.pos, true_pos);
        }

        #[test]
        fn time_lookup_equals_a_linear_scan(
            steps in proptest::collection::vec((20u32..300, 0u64..5), 1..400),
            interval in 1u32..2000,
            t in 0u64..1200,
        ) {
            let mut ts = 0;
            let recs: Vec<(u32, u64)> = steps.iter().map(|(l, d)| { ts += d; (*l, ts) }).collect();
            let mut ix = build(&recs, interval);
            ix.finish(recs.len() as u32 - 1, TimestampMs(ts));
            let index = TimeIndex(&ix.time);
            prop_assert!(index.check().is_ok());
            prop_assert_eq!(index.last().map(|e| e.rel), Some(recs.len() as u32 - 1));
            let linear = (0..index.len()).map(|i| index.get(i)).rfind(|e| e.ts < TimestampMs(t));
            prop_assert_eq!(index.last_before(TimestampMs(t)), linear);
        }
    }
}
