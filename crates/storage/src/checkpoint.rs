//! The recovery point of a log and the seal marker: small fixed-layout files.
//!
//! Checkpoint file (`checkpoint`), written in place, two slots used in turn so a torn
//! write of one slot leaves the other intact:
//!
//! | offset | width | field |
//! |-------:|------:|-------|
//! | 0  | 8 | magic `SLUICKPT` |
//! | 8  | 4 | format version (2; version 1 is read, never written) |
//! | 12 | 4 | reserved, zero |
//! | 16 + 56·s | 56 | slot `s` (0 or 1) |
//!
//! Slot (version 2): generation u64, active segment base u64, byte position u64
//! (everything before it in that segment is durable, ends a batch, and its index entries
//! are in the index files), next sequence u64, last timestamp ms u64 (`u64::MAX` = no
//! record yet), sequence reservation u64 (every sequence ever acknowledged is below it),
//! CRC32C of the 48 bytes before it u32, reserved u32. The valid slot with the highest
//! generation wins. Version 1 slots are 48 bytes, without the reservation.
//!
//! Seal marker (`sealed`), written to a temporary name, synced and renamed: magic
//! `SLUISEAL` (8), version u32, reserved u32, next sequence at the seal u64, CRC32C of bytes
//! 0..24 u32, reserved u32 (32 bytes).

use crate::frame::{read_u32, read_u64};
use crate::header::FORMAT_VERSION;
use crate::types::{SeqNo, TimestampMs};

const CKPT_MAGIC: &[u8; 8] = b"SLUICKPT";
const SEAL_MAGIC: &[u8; 8] = b"SLUISEAL";
/// The checkpoint format version written.
pub const CKPT_VERSION: u32 = 2;
/// The first checkpoint format, without the sequence reservation; still read.
const CKPT_VERSION_1: u32 = 1;
/// Bytes of the checkpoint file header.
pub const CKPT_HEADER_BYTES: usize = 16;
/// Bytes of a checkpoint slot.
pub const CKPT_SLOT_BYTES: usize = 56;
const CKPT_SLOT_BYTES_V1: usize = 48;
/// Bytes of the slot covered by its CRC.
const SLOT_BODY_BYTES: usize = 48;
const SLOT_BODY_BYTES_V1: usize = 40;
/// Bytes of the whole checkpoint file.
pub const CKPT_FILE_BYTES: usize = CKPT_HEADER_BYTES + 2 * CKPT_SLOT_BYTES;
/// Bytes of the seal marker.
pub const SEAL_BYTES: usize = 32;
const NO_TIMESTAMP: u64 = u64::MAX;

const _: () = assert!(SLOT_BODY_BYTES + 8 == CKPT_SLOT_BYTES);
const _: () = assert!(SLOT_BODY_BYTES_V1 + 8 == CKPT_SLOT_BYTES_V1);

/// A recovery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Increases with every checkpoint written.
    pub generation: u64,
    /// Base sequence of the segment that was active.
    pub base: SeqNo,
    /// Byte position in that segment up to which all is durable and indexed.
    pub position: u64,
    /// The sequence of the record at `position`.
    pub next_seq: SeqNo,
    /// The newest timestamp before `position`, if any record exists.
    pub last_ts: Option<TimestampMs>,
    /// Every sequence ever acknowledged is below this (0 when read from a version 1 file,
    /// which did not keep one).
    pub seq_reserved: SeqNo,
}

/// A decoded checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFile {
    /// Its newest valid slot, if any.
    pub newest: Option<Checkpoint>,
    /// Its format version: a file of another version than [`CKPT_VERSION`] is replaced
    /// before a slot is written into it.
    pub version: u32,
}

impl Checkpoint {
    /// The byte offset of this checkpoint's slot in the file.
    pub fn slot_offset(&self) -> u64 {
        (CKPT_HEADER_BYTES + (self.generation % 2) as usize * CKPT_SLOT_BYTES) as u64
    }

    /// Encodes the slot.
    pub fn encode_slot(&self) -> [u8; CKPT_SLOT_BYTES] {
        let mut out = [0u8; CKPT_SLOT_BYTES];
        out[0..8].copy_from_slice(&self.generation.to_le_bytes());
        out[8..16].copy_from_slice(&self.base.0.to_le_bytes());
        out[16..24].copy_from_slice(&self.position.to_le_bytes());
        out[24..32].copy_from_slice(&self.next_seq.0.to_le_bytes());
        let ts = self.last_ts.map_or(NO_TIMESTAMP, |t| t.0);
        out[32..40].copy_from_slice(&ts.to_le_bytes());
        out[40..48].copy_from_slice(&self.seq_reserved.0.to_le_bytes());
        let crc = crc32c::crc32c(&out[..SLOT_BODY_BYTES]);
        out[SLOT_BODY_BYTES..SLOT_BODY_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Encodes the file header.
    pub fn encode_file_header() -> [u8; CKPT_HEADER_BYTES] {
        let mut out = [0u8; CKPT_HEADER_BYTES];
        out[..8].copy_from_slice(CKPT_MAGIC);
        out[8..12].copy_from_slice(&CKPT_VERSION.to_le_bytes());
        out
    }

    /// Decodes the newest valid slot of a checkpoint file; `Ok(None)` if no slot is valid.
    /// A bad file header (not a torn slot) is an error.
    #[cfg(test)]
    pub fn decode_file(bytes: &[u8]) -> Result<Option<Checkpoint>, String> {
        Checkpoint::decode_file_versioned(bytes).map(|f| f.newest)
    }

    /// [`Checkpoint::decode_file`], also telling the file's format version.
    pub fn decode_file_versioned(bytes: &[u8]) -> Result<CheckpointFile, String> {
        let header = bytes
            .get(..CKPT_HEADER_BYTES)
            .ok_or("checkpoint shorter than its header")?;
        if &header[..8] != CKPT_MAGIC {
            return Err("bad checkpoint magic number".into());
        }
        let version = read_u32(header, 8).unwrap_or_default();
        let (slot_bytes, body_bytes) = match version {
            CKPT_VERSION => (CKPT_SLOT_BYTES, SLOT_BODY_BYTES),
            CKPT_VERSION_1 => (CKPT_SLOT_BYTES_V1, SLOT_BODY_BYTES_V1),
            other => return Err(format!("unknown checkpoint format version {other}")),
        };
        let newest = (0..2)
            .filter_map(|s| {
                let at = CKPT_HEADER_BYTES + s * slot_bytes;
                decode_slot(bytes.get(at..at + slot_bytes)?, body_bytes)
            })
            .max_by_key(|c| c.generation);
        Ok(CheckpointFile { newest, version })
    }
}

fn decode_slot(slot: &[u8], body_bytes: usize) -> Option<Checkpoint> {
    let crc = read_u32(slot, body_bytes)?;
    if crc != crc32c::crc32c(slot.get(..body_bytes)?) {
        return None;
    }
    let ts = read_u64(slot, 32)?;
    let seq_reserved = if body_bytes == SLOT_BODY_BYTES {
        read_u64(slot, 40)?
    } else {
        0
    };
    Some(Checkpoint {
        generation: read_u64(slot, 0)?,
        base: SeqNo(read_u64(slot, 8)?),
        position: read_u64(slot, 16)?,
        next_seq: SeqNo(read_u64(slot, 24)?),
        last_ts: (ts != NO_TIMESTAMP).then_some(TimestampMs(ts)),
        seq_reserved: SeqNo(seq_reserved),
    })
}

/// Encodes a seal marker for a log sealed when its next sequence was `next_seq`.
pub fn encode_seal(next_seq: SeqNo) -> [u8; SEAL_BYTES] {
    let mut out = [0u8; SEAL_BYTES];
    out[..8].copy_from_slice(SEAL_MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&next_seq.0.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a seal marker into the next sequence at the seal.
pub fn decode_seal(bytes: &[u8]) -> Result<SeqNo, String> {
    let b = bytes.get(..SEAL_BYTES).ok_or("seal marker too short")?;
    if &b[..8] != SEAL_MAGIC {
        return Err("bad seal marker magic number".into());
    }
    if read_u32(b, 24).unwrap_or_default() != crc32c::crc32c(&b[..24]) {
        return Err("seal marker CRC mismatch".into());
    }
    let version = read_u32(b, 8).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(format!("unknown seal marker format version {version}"));
    }
    Ok(SeqNo(read_u64(b, 16).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(slots: &[Checkpoint]) -> Vec<u8> {
        let mut f = vec![0u8; CKPT_FILE_BYTES];
        f[..CKPT_HEADER_BYTES].copy_from_slice(&Checkpoint::encode_file_header());
        for c in slots {
            let at = c.slot_offset() as usize;
            f[at..at + CKPT_SLOT_BYTES].copy_from_slice(&c.encode_slot());
        }
        f
    }

    fn ckpt(generation: u64) -> Checkpoint {
        Checkpoint {
            generation,
            base: SeqNo(10),
            position: 4096,
            next_seq: SeqNo(20 + generation),
            last_ts: Some(TimestampMs(5)),
            seq_reserved: SeqNo(1000 + generation),
        }
    }

    #[test]
    fn newest_valid_slot_wins() {
        let f = file_with(&[ckpt(4), ckpt(5)]);
        assert_eq!(Checkpoint::decode_file(&f), Ok(Some(ckpt(5))));
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other() {
        let mut f = file_with(&[ckpt(4), ckpt(5)]);
        let at = ckpt(5).slot_offset() as usize + 3;
        f[at] ^= 1;
        assert_eq!(Checkpoint::decode_file(&f), Ok(Some(ckpt(4))));
        // The reservation is covered by the CRC too.
        let mut f = file_with(&[ckpt(4), ckpt(5)]);
        f[ckpt(5).slot_offset() as usize + 41] ^= 1;
        assert_eq!(Checkpoint::decode_file(&f), Ok(Some(ckpt(4))));
    }

    #[test]
    fn no_valid_slot_is_none_and_bad_magic_is_an_error() {
        assert_eq!(Checkpoint::decode_file(&file_with(&[])), Ok(None));
        assert!(Checkpoint::decode_file(&[0u8; CKPT_FILE_BYTES]).is_err());
    }

    #[test]
    fn a_version_1_file_is_read_without_a_reservation() {
        // The first format: 48-byte slots, CRC over 40 bytes.
        let mut f = vec![0u8; CKPT_HEADER_BYTES + 2 * CKPT_SLOT_BYTES_V1];
        f[..8].copy_from_slice(CKPT_MAGIC);
        f[8..12].copy_from_slice(&1u32.to_le_bytes());
        let c = ckpt(3);
        let v2 = c.encode_slot();
        let mut v1 = [0u8; CKPT_SLOT_BYTES_V1];
        v1[..40].copy_from_slice(&v2[..40]);
        let crc = crc32c::crc32c(&v1[..40]);
        v1[40..44].copy_from_slice(&crc.to_le_bytes());
        let at = CKPT_HEADER_BYTES + CKPT_SLOT_BYTES_V1;
        f[at..at + CKPT_SLOT_BYTES_V1].copy_from_slice(&v1);
        let read = Checkpoint::decode_file_versioned(&f).unwrap();
        assert_eq!(read.version, 1);
        assert_eq!(
            read.newest,
            Some(Checkpoint {
                seq_reserved: SeqNo(0),
                ..c
            })
        );
    }

    #[test]
    fn seal_marker_round_trips_and_detects_damage() {
        let m = encode_seal(SeqNo(77));
        assert_eq!(decode_seal(&m), Ok(SeqNo(77)));
        let mut bad = m;
        bad[17] ^= 1;
        assert!(decode_seal(&bad).is_err());
    }
}
