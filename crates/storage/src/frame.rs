//! Record frames: the unit written to a segment. Pure encode/decode, no I/O.
//!
//! Byte layout (little-endian; docs/FORMAT.md mirrors this table):
//!
//! | offset | width | field |
//! |-------:|------:|-------|
//! | 0  | 4  | `body_len`: bytes after the CRC field (24 + hash key + key + data) |
//! | 4  | 4  | CRC32C of the `body_len` bytes that follow |
//! | 8  | 8  | sequence |
//! | 16 | 8  | arrival timestamp, ms since the epoch |
//! | 24 | 2  | partition key length |
//! | 26 | 1  | flags: bit 0 = explicit hash key present; bit 1 = more frames of this batch follow; other bits zero |
//! | 27 | 1  | reserved, zero |
//! | 28 | 4  | data length |
//! | 32 | 16 | explicit hash key, big-endian (only when flag bit 0 is set) |
//! | .. | .. | partition key bytes, then data bytes |
//!
//! The CRC covers everything after itself, so a torn write, a flipped bit or a frame
//! pointing past the end are all detected before a byte of it is handed out.
//!
//! Batches: the frames of one append are written together, and every frame but the last
//! has flag bit 1 set. Recovery keeps a batch only when its last frame (bit 1 clear) is
//! there, so a write cut short never leaves part of a batch behind. Frames written before
//! the bit existed have it clear: each reads as a complete batch of one record.

use crate::types::{Record, RecordIn, SeqNo, TimestampMs};

const OFF_BODY_LEN: usize = 0;
const OFF_CRC: usize = 4;
const OFF_SEQ: usize = 8;
const OFF_TIMESTAMP: usize = 16;
const OFF_KEY_LEN: usize = 24;
const OFF_FLAGS: usize = 26;
const OFF_RESERVED: usize = 27;
const OFF_DATA_LEN: usize = 28;
/// Bytes of a frame before its variable part.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Bytes counted by `body_len` that are always present.
const BODY_FIXED_BYTES: usize = FRAME_HEADER_BYTES - OFF_SEQ;
const HASH_KEY_BYTES: usize = 16;
const FLAG_HASH_KEY: u8 = 1;
const FLAG_MORE: u8 = 2;
const FLAGS_KNOWN: u8 = FLAG_HASH_KEY | FLAG_MORE;

/// The largest payload the format can carry (10 MiB, Kinesis's largest record size).
pub const DATA_BYTES_LIMIT: usize = 10 * 1024 * 1024;
/// The largest partition key the format can carry.
pub const KEY_BYTES_LIMIT: usize = u16::MAX as usize;
/// The largest frame the decoder accepts; anything longer is damage.
pub const FRAME_BYTES_LIMIT: usize =
    FRAME_HEADER_BYTES + HASH_KEY_BYTES + KEY_BYTES_LIMIT + DATA_BYTES_LIMIT;

/// The most bytes a frame adds to its record's key and data: what bounds a batch's size
/// from the sizes its records are checked against.
pub const FRAME_OVERHEAD_BYTES_MAX: usize = FRAME_HEADER_BYTES + HASH_KEY_BYTES;

const _: () = assert!(OFF_DATA_LEN + 4 == FRAME_HEADER_BYTES);
const _: () = assert!(FRAME_BYTES_LIMIT < u32::MAX as usize);

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: the end of the written log, or a torn write.
    Truncated,
    /// The bytes are damaged (bad CRC, impossible lengths or flags).
    Invalid(String),
}

/// A decoded frame that borrows its variable parts from the segment bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The record's sequence.
    pub seq: SeqNo,
    /// The record's arrival time.
    pub timestamp: TimestampMs,
    /// The partition key.
    pub partition_key: &'a [u8],
    /// The explicit hash key, if present.
    pub explicit_hash_key: Option<[u8; 16]>,
    /// The payload.
    pub data: &'a [u8],
    /// Whether more frames of the same batch follow this one (flag bit 1).
    pub more: bool,
    /// Total bytes of the frame, header included.
    pub frame_len: usize,
}

impl FrameRef<'_> {
    /// Copies the frame into an owned record.
    pub fn to_record(&self) -> Record {
        Record {
            seq: self.seq,
            timestamp: self.timestamp,
            partition_key: self.partition_key.to_vec(),
            explicit_hash_key: self.explicit_hash_key,
            data: self.data.to_vec(),
        }
    }
}

/// The encoded size of a record.
pub fn encoded_len(record: &RecordIn<'_>) -> usize {
    FRAME_HEADER_BYTES
        + if record.explicit_hash_key.is_some() {
            HASH_KEY_BYTES
        } else {
            0
        }
        + record.partition_key.len()
        + record.data.len()
}

/// Appends the frame of `record`, a batch of its own, to `out`. The caller has checked the
/// size limits.
pub fn encode(record: &RecordIn<'_>, seq: SeqNo, timestamp: TimestampMs, out: &mut Vec<u8>) {
    encode_in_batch(record, seq, timestamp, false, out);
}

/// Appends the frame of `record` to `out`, marked as followed by more frames of its batch
/// when `more` (every frame of a batch but the last). The caller has checked the limits.
pub fn encode_in_batch(
    record: &RecordIn<'_>,
    seq: SeqNo,
    timestamp: TimestampMs,
    more: bool,
    out: &mut Vec<u8>,
) {
    assert!(record.partition_key.len() <= KEY_BYTES_LIMIT);
    assert!(record.data.len() <= DATA_BYTES_LIMIT);
    let start = out.len();
    let total = encoded_len(record);
    let body_len = (total - OFF_SEQ) as u32;
    out.reserve(total);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below.
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(&timestamp.0.to_le_bytes());
    out.extend_from_slice(&(record.partition_key.len() as u16).to_le_bytes());
    let mut flags = if record.explicit_hash_key.is_some() {
        FLAG_HASH_KEY
    } else {
        0
    };
    if more {
        flags |= FLAG_MORE;
    }
    out.push(flags);
    out.push(0);
    out.extend_from_slice(&(record.data.len() as u32).to_le_bytes());
    if let Some(key) = record.explicit_hash_key {
        out.extend_from_slice(&key);
    }
    out.extend_from_slice(record.partition_key);
    out.extend_from_slice(record.data);
    let crc = crc32c::crc32c(&out[start + OFF_SEQ..]);
    out[start + OFF_CRC..start + OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, total);
    debug_assert!(decode(&out[start..]).is_ok());
}

/// Decodes the frame at the start of `bytes` (which may hold more after it).
pub fn decode(bytes: &[u8]) -> Result<FrameRef<'_>, FrameError> {
    let body_len = read_u32(bytes, OFF_BODY_LEN).ok_or(FrameError::Truncated)? as usize;
    if !(BODY_FIXED_BYTES..=FRAME_BYTES_LIMIT - OFF_SEQ).contains(&body_len) {
        return Err(FrameError::Invalid(format!(
            "frame length {body_len} out of range"
        )));
    }
    let frame_len = OFF_SEQ + body_len;
    let frame = bytes.get(..frame_len).ok_or(FrameError::Truncated)?;
    let crc_stored = read_u32(frame, OFF_CRC).ok_or(FrameError::Truncated)?;
    let crc_actual = crc32c::crc32c(&frame[OFF_SEQ..]);
    if crc_stored != crc_actual {
        return Err(FrameError::Invalid(format!(
            "CRC mismatch (stored {crc_stored:#010x}, computed {crc_actual:#010x})"
        )));
    }
    decode_checked(frame, frame_len)
}

/// Decodes the fields of a frame whose CRC is known good.
fn decode_checked(frame: &[u8], frame_len: usize) -> Result<FrameRef<'_>, FrameError> {
    let invalid = |why: &str| FrameError::Invalid(why.to_owned());
    let seq = read_u64(frame, OFF_SEQ).ok_or_else(|| invalid("short header"))?;
    let timestamp = read_u64(frame, OFF_TIMESTAMP).ok_or_else(|| invalid("short header"))?;
    let key_len = read_u16(frame, OFF_KEY_LEN).ok_or_else(|| invalid("short header"))? as usize;
    let flags = frame[OFF_FLAGS];
    if flags & !FLAGS_KNOWN != 0 || frame[OFF_RESERVED] != 0 {
        return Err(invalid("unknown flags"));
    }
    let data_len = read_u32(frame, OFF_DATA_LEN).ok_or_else(|| invalid("short header"))? as usize;
    let mut pos = FRAME_HEADER_BYTES;
    let explicit_hash_key = if flags & FLAG_HASH_KEY != 0 {
        let key: [u8; 16] = frame
            .get(pos..pos + HASH_KEY_BYTES)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| invalid("hash key past the frame end"))?;
        pos += HASH_KEY_BYTES;
        Some(key)
    } else {
        None
    };
    if pos + key_len + data_len != frame_len || data_len > DATA_BYTES_LIMIT {
        return Err(invalid("field lengths disagree with the frame length"));
    }
    Ok(FrameRef {
        seq: SeqNo(seq),
        timestamp: TimestampMs(timestamp),
        partition_key: &frame[pos..pos + key_len],
        explicit_hash_key,
        data: &frame[pos + key_len..frame_len],
        more: flags & FLAG_MORE != 0,
        frame_len,
    })
}

/// Whether the bytes at the start of `bytes`, the tail of a log after the last good frame,
/// look like the beginning of a frame that a write cut short: as much of a frame header as
/// is there agrees with a frame of sequence `expect` written at or after `last_ts`, and
/// the frame runs past the end of `bytes` or its bytes end in zeros that reach the end (a
/// size extended before all its pages were written). A flipped bit in a whole frame, or
/// a length field damaged to point past the end, does not pass: its other fields disagree.
pub fn looks_torn(bytes: &[u8], expect: SeqNo, last_ts: Option<TimestampMs>) -> bool {
    let header = &bytes[..bytes.len().min(FRAME_HEADER_BYTES)];
    let Some(body_len) = read_u32(header, OFF_BODY_LEN).map(|n| n as usize) else {
        return true;
    };
    if !(BODY_FIXED_BYTES..=FRAME_BYTES_LIMIT - OFF_SEQ).contains(&body_len) {
        return false;
    }
    if read_u64(header, OFF_SEQ).is_some_and(|s| s != expect.0) {
        return false;
    }
    let ts = read_u64(header, OFF_TIMESTAMP);
    if ts.zip(last_ts).is_some_and(|(t, last)| t < last.0) {
        return false;
    }
    if header.len() == FRAME_HEADER_BYTES {
        let flags = header[OFF_FLAGS];
        let key_len = read_u16(header, OFF_KEY_LEN).unwrap_or_default() as usize;
        let data_len = read_u32(header, OFF_DATA_LEN).unwrap_or_default() as usize;
        let hash = if flags & FLAG_HASH_KEY != 0 {
            HASH_KEY_BYTES
        } else {
            0
        };
        let agrees = flags & !FLAGS_KNOWN == 0
            && header[OFF_RESERVED] == 0
            && data_len <= DATA_BYTES_LIMIT
            && FRAME_HEADER_BYTES + hash + key_len + data_len == OFF_SEQ + body_len;
        if !agrees {
            return false;
        }
    }
    let frame_len = OFF_SEQ + body_len;
    if frame_len > bytes.len() {
        return true;
    }
    // The frame is whole but fails its CRC: torn only if zeros run from inside it to the end.
    let zeros = bytes.iter().rev().take_while(|b| **b == 0).count();
    zeros > 0 && bytes.len() - zeros < frame_len
}

/// Reads only the sequence and timestamp of a frame (no CRC check), for index scans that
/// verify the frame separately.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(key: &[u8], hash: Option<[u8; 16]>, data: &[u8], seq: u64, ts: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let rec = RecordIn {
            partition_key: key,
            explicit_hash_key: hash,
            data,
        };
        encode(&rec, SeqNo(seq), TimestampMs(ts), &mut out);
        out
    }

    #[test]
    fn empty_data_round_trips() {
        let bytes = encoded(b"k", None, b"", 3, 9);
        let f = decode(&bytes).unwrap();
        assert_eq!(f.data, b"");
        assert_eq!(f.seq, SeqNo(3));
        assert_eq!(f.frame_len, bytes.len());
    }

    #[test]
    fn the_batch_bit_round_trips_and_old_frames_are_whole_batches() {
        let rec = RecordIn {
            partition_key: b"k",
            explicit_hash_key: Some([3; 16]),
            data: b"d",
        };
        let mut out = Vec::new();
        encode_in_batch(&rec, SeqNo(5), TimestampMs(6), true, &mut out);
        let f = decode(&out).unwrap();
        assert!(f.more);
        assert_eq!(f.explicit_hash_key, Some([3; 16]));
        // A frame of the first format (bit 1 clear) is the last of its batch.
        let old = encoded(b"k", None, b"d", 1, 2);
        assert!(!decode(&old).unwrap().more);
        // Bits above 1 are still refused.
        let mut bad = old.clone();
        bad[OFF_FLAGS] |= 4;
        let crc = crc32c::crc32c(&bad[OFF_SEQ..]);
        bad[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bad), Err(FrameError::Invalid(_))));
    }

    #[test]
    fn a_cut_short_frame_looks_torn_and_a_damaged_one_does_not() {
        let f = encoded(b"key", None, &[7; 100], 9, 50);
        let ok = |b: &[u8]| looks_torn(b, SeqNo(9), Some(TimestampMs(40)));
        for cut in 0..f.len() {
            assert!(ok(&f[..cut]), "a prefix of {cut} bytes");
        }
        // Zeros from inside the frame to the end: pages that never reached the disk.
        let mut zeroed = f.clone();
        zeroed[60..].fill(0);
        assert!(ok(&zeroed));
        // A flipped data byte in a whole frame, a wrong sequence, a length pointing past
        // the end: damage.
        let mut flipped = f.clone();
        flipped[70] ^= 1;
        assert!(!ok(&flipped));
        assert!(!looks_torn(&f[..50], SeqNo(8), None));
        let mut long = f.clone();
        long[0] ^= 0x40;
        assert!(!ok(&long));
        assert!(!ok(&[0xAB; 64]));
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert!(matches!(decode(&[0; 64]), Err(FrameError::Invalid(_))));
        assert_eq!(decode(&[0; 3]), Err(FrameError::Truncated));
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            key in proptest::collection::vec(any::<u8>(), 0..300),
            hash in proptest::option::of(any::<[u8; 16]>()),
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            seq in any::<u64>(), ts in any::<u64>(),
        ) {
            let bytes = encoded(&key, hash, &data, seq, ts);
            prop_assert_eq!(bytes.len(), encoded_len(&RecordIn { partition_key: &key, explicit_hash_key: hash, data: &data }));
            let f = decode(&bytes).unwrap();
            prop_assert_eq!(f.partition_key, &key[..]);
            prop_assert_eq!(f.explicit_hash_key, hash);
            prop_assert_eq!(f.data, &data[..]);
            prop_assert_eq!(f.seq, SeqNo(seq));
            prop_assert_eq!(f.timestamp, TimestampMs(ts));
        }

        #[test]
        fn any_flipped_bit_is_detected(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut bytes = encoded(b"key", Some([7; 16]), &data, 1, 2);
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
            prop_assert!(decode(&bytes).is_err());
        }

        #[test]
        fn any_truncation_is_detected(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<proptest::sample::Index>(),
        ) {
            let bytes = encoded(b"key", None, &data, 1, 2);
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes);
            let _ = looks_torn(&bytes, SeqNo(1), Some(TimestampMs(1)));
        }
    }
}
