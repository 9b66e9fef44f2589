//! Gaps: ranges of sequences that hold no record, because recovery gave them up after
//! damage (the records acknowledged under them are lost, and no later record may take their
//! numbers). Kept in the shard directory's `gaps` file, so reads step over them and a
//! sealed segment whose records end at a gap is not taken for a damaged one.
//!
//! File layout (little-endian; docs/FORMAT.md mirrors this table), written to a temporary
//! name, synced and renamed, so it is always whole:
//!
//! | offset | width | field |
//! |-------:|------:|-------|
//! | 0  | 8  | magic `SLUIGAPS` |
//! | 8  | 4  | format version (1) |
//! | 12 | 4  | number of gaps `n` |
//! | 16 | 16·n | gaps, ascending: first sequence u64, one past the last u64 |
//! | 16 + 16·n | 4 | CRC32C of every byte before it |

use std::path::Path;

use crate::error::{Error, Result};
use crate::frame::{read_u32, read_u64};
use crate::fs::FileSystem;
use crate::names;
use crate::types::SeqNo;

const MAGIC: &[u8; 8] = b"SLUIGAPS";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 16;
const ENTRY_BYTES: usize = 16;
/// More gaps than this in one log is damage, not history.
const GAPS_MAX: usize = 1 << 16;

/// Sequences `from .. to` hold no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The first sequence of the gap.
    pub from: SeqNo,
    /// One past its last sequence.
    pub to: SeqNo,
}

/// Encodes a list of gaps.
pub fn encode(gaps: &[Gap]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + gaps.len() * ENTRY_BYTES + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(gaps.len() as u32).to_le_bytes());
    for g in gaps {
        out.extend_from_slice(&g.from.0.to_le_bytes());
        out.extend_from_slice(&g.to.0.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a gaps file; every gap non-empty, in order, none overlapping.
pub fn decode(bytes: &[u8]) -> Result<Vec<Gap>, String> {
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err("bad gaps magic number".into());
    }
    let version = read_u32(bytes, 8).ok_or("gaps file too short")?;
    if version != VERSION {
        return Err(format!("unknown gaps format version {version}"));
    }
    let n = read_u32(bytes, 12).ok_or("gaps file too short")? as usize;
    if n > GAPS_MAX {
        return Err(format!("{n} gaps is more than {GAPS_MAX}"));
    }
    let body = HEADER_BYTES + n * ENTRY_BYTES;
    if bytes.len() != body + 4 {
        return Err(format!("gaps file of {} bytes for {n} gaps", bytes.len()));
    }
    if read_u32(bytes, body) != Some(crc32c::crc32c(&bytes[..body])) {
        return Err("gaps file CRC mismatch".into());
    }
    let mut gaps = Vec::with_capacity(n);
    for i in 0..n {
        let at = HEADER_BYTES + i * ENTRY_BYTES;
        let (Some(from), Some(to)) = (read_u64(bytes, at), read_u64(bytes, at + 8)) else {
            return Err("gaps file too short".into());
        };
        let gap = Gap {
            from: SeqNo(from),
            to: SeqNo(to),
        };
        if gap.from >= gap.to || gaps.last().is_some_and(|p: &Gap| p.to > gap.from) {
            return Err(format!("gap {i} ({from}..{to}) is empty or out of order"));
        }
        gaps.push(gap);
    }
    Ok(gaps)
}

/// Adds `gap` to `gaps`, merging it with any it overlaps or touches; keeps them sorted.
pub fn insert(gaps: &mut Vec<Gap>, gap: Gap) {
    debug_assert!(gap.from < gap.to);
    let mut merged = gap;
    gaps.retain(|g| {
        let touches = g.from <= merged.to && merged.from <= g.to;
        if touches {
            merged.from = merged.from.min(g.from);
            merged.to = merged.to.max(g.to);
        }
        !touches
    });
    let at = gaps.partition_point(|g| g.from < merged.from);
    gaps.insert(at, merged);
}

/// The gaps recorded in the log directory `dir` (none if there is no file).
pub fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<Gap>> {
    let path = dir.join(names::GAPS);
    if !fs.exists(&path) {
        return Ok(Vec::new());
    }
    let file = fs.open(&path).map_err(|e| Error::io(&path, e))?;
    let len = file.len().map_err(|e| Error::io(&path, e))?;
    let mut bytes = vec![0u8; len.min((HEADER_BYTES + GAPS_MAX * ENTRY_BYTES + 4) as u64) as usize];
    file.read_exact_at(0, &mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    decode(&bytes).map_err(|why| Error::corrupt(&path, 0, why))
}

/// Replaces the gaps file of `dir` with `gaps`, durably.
pub fn write(fs: &dyn FileSystem, dir: &Path, gaps: &[Gap]) -> Result<()> {
    crate::log::write_atomically(fs, dir, &dir.join(names::GAPS), &encode(gaps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(from: u64, to: u64) -> Gap {
        Gap {
            from: SeqNo(from),
            to: SeqNo(to),
        }
    }

    #[test]
    fn gaps_round_trip_and_damage_is_detected() {
        let gaps = vec![gap(3, 10), gap(20, 1 << 40)];
        let bytes = encode(&gaps);
        assert_eq!(decode(&bytes), Ok(gaps));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i}");
            assert!(decode(&bytes[..i]).is_err(), "cut at {i}");
        }
        assert_eq!(decode(&encode(&[])), Ok(vec![]));
    }

    #[test]
    fn overlapping_or_empty_gaps_are_refused() {
        let mut bytes = encode(&[gap(3, 10), gap(5, 12)]);
        assert!(decode(&bytes).is_err());
        bytes = encode(&[gap(4, 4)]);
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn inserting_merges_touching_gaps_and_keeps_order() {
        let mut gaps = vec![gap(10, 20)];
        insert(&mut gaps, gap(30, 40));
        insert(&mut gaps, gap(1, 5));
        assert_eq!(gaps, vec![gap(1, 5), gap(10, 20), gap(30, 40)]);
        insert(&mut gaps, gap(20, 30));
        assert_eq!(gaps, vec![gap(1, 5), gap(10, 40)]);
        insert(&mut gaps, gap(12, 15));
        assert_eq!(gaps, vec![gap(1, 5), gap(10, 40)]);
    }
}
