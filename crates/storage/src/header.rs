//! The header every segment and index file starts with. Pure codec, no I/O.
//!
//! | offset | width | field |
//! |-------:|------:|-------|
//! | 0  | 8 | magic: `SLUICLOG`, `SLUISIDX` or `SLUITIDX` |
//! | 8  | 4 | format version (1) |
//! | 12 | 4 | reserved, zero |
//! | 16 | 8 | base sequence of the segment |
//! | 24 | 8 | creation time, ms since the epoch (segments; zero in indexes) |
//! | 32 | 4 | CRC32C of bytes 0..32 |
//! | 36 | 4 | reserved, zero |

use crate::frame::{read_u32, read_u64};
use crate::names::SegmentFile;
use crate::types::{SeqNo, TimestampMs};

/// Bytes of a file header.
pub const HEADER_BYTES: usize = 40;
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const OFF_VERSION: usize = 8;
const OFF_BASE: usize = 16;
const OFF_CREATED: usize = 24;
const OFF_CRC: usize = 32;

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Which kind of file.
    pub kind: SegmentFile,
    /// The segment's base sequence.
    pub base: SeqNo,
    /// When the segment was created (zero in index files).
    pub created: TimestampMs,
}

fn magic(kind: SegmentFile) -> &'static [u8; 8] {
    match kind {
        SegmentFile::Log => b"SLUICLOG",
        SegmentFile::SeqIndex => b"SLUISIDX",
        SegmentFile::TimeIndex => b"SLUITIDX",
    }
}

impl FileHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[..8].copy_from_slice(magic(self.kind));
        out[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[OFF_BASE..OFF_BASE + 8].copy_from_slice(&self.base.0.to_le_bytes());
        out[OFF_CREATED..OFF_CREATED + 8].copy_from_slice(&self.created.0.to_le_bytes());
        let crc = crc32c::crc32c(&out[..OFF_CRC]);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header of the expected kind.
    pub fn decode(bytes: &[u8], kind: SegmentFile) -> Result<FileHeader, String> {
        let h = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| format!("file shorter than its {HEADER_BYTES}-byte header"))?;
        if &h[..8] != magic(kind) {
            return Err("bad magic number".to_owned());
        }
        let crc = read_u32(h, OFF_CRC).unwrap_or_default();
        if crc != crc32c::crc32c(&h[..OFF_CRC]) {
            return Err("header CRC mismatch".to_owned());
        }
        let version = read_u32(h, OFF_VERSION).unwrap_or_default();
        if version != FORMAT_VERSION {
            return Err(format!(
                "unknown format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        Ok(FileHeader {
            kind,
            base: SeqNo(read_u64(h, OFF_BASE).unwrap_or_default()),
            created: TimestampMs(read_u64(h, OFF_CREATED).unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_the_wrong_kind() {
        let h = FileHeader {
            kind: SegmentFile::Log,
            base: SeqNo(42),
            created: TimestampMs(7),
        };
        let bytes = h.encode();
        assert_eq!(FileHeader::decode(&bytes, SegmentFile::Log), Ok(h));
        assert!(FileHeader::decode(&bytes, SegmentFile::SeqIndex).is_err());
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = FileHeader {
            kind: SegmentFile::Log,
            base: SeqNo(1),
            created: TimestampMs(0),
        }
        .encode();
        bytes[OFF_VERSION] = 2;
        let crc = crc32c::crc32c(&bytes[..OFF_CRC]);
        bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        let err = FileHeader::decode(&bytes, SegmentFile::Log).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let bytes = FileHeader {
            kind: SegmentFile::TimeIndex,
            base: SeqNo(5),
            created: TimestampMs(0),
        }
        .encode();
        for i in 0..OFF_CRC + 4 {
            let mut b = bytes;
            b[i] ^= 0x40;
            assert!(
                FileHeader::decode(&b, SegmentFile::TimeIndex).is_err(),
                "byte {i}"
            );
        }
    }
}
