//! File names inside a shard directory. Built and parsed here only.
//!
//! - `{base:020}.log`: a segment holding records from sequence `base` on;
//! - `{base:020}.sidx`: its sparse sequence index;
//! - `{base:020}.tidx`: its sparse timestamp index;
//! - `checkpoint`: the recovery point (two slots, see `checkpoint`);
//! - `sealed`: present when the log is closed for writes;
//! - `gaps`: sequences given up after damage (see `gaps`);
//! - `*.deleted`, `*.tmp`: leftovers of an interrupted delete or write, removed at open.

use std::path::{Path, PathBuf};

use crate::types::SeqNo;

/// The kinds of per-segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFile {
    /// The record log.
    Log,
    /// The sparse sequence index.
    SeqIndex,
    /// The sparse timestamp index.
    TimeIndex,
}

impl SegmentFile {
    fn suffix(self) -> &'static str {
        match self {
            SegmentFile::Log => "log",
            SegmentFile::SeqIndex => "sidx",
            SegmentFile::TimeIndex => "tidx",
        }
    }

    /// All kinds, the log first.
    pub const ALL: [SegmentFile; 3] = [
        SegmentFile::Log,
        SegmentFile::SeqIndex,
        SegmentFile::TimeIndex,
    ];
}

/// The checkpoint file's name.
pub const CHECKPOINT: &str = "checkpoint";
/// The seal marker's name.
pub const SEALED: &str = "sealed";
/// The name of the file listing the log's gaps.
pub const GAPS: &str = "gaps";
/// Suffix of a file being deleted.
pub const DELETED_SUFFIX: &str = ".deleted";
/// Suffix of a file being written before its rename.
pub const TMP_SUFFIX: &str = ".tmp";

/// The path of one of a segment's files.
pub fn segment_path(dir: &Path, base: SeqNo, kind: SegmentFile) -> PathBuf {
    dir.join(format!("{:020}.{}", base.0, kind.suffix()))
}

/// Parses a segment file name into its base sequence and kind.
pub fn parse_segment_name(name: &str) -> Option<(SeqNo, SegmentFile)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let kind = SegmentFile::ALL
        .into_iter()
        .find(|k| k.suffix() == suffix)?;
    Some((SeqNo(stem.parse().ok()?), kind))
}

/// The path a file is renamed to before it is unlinked.
pub fn deleted_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(DELETED_SUFFIX);
    PathBuf::from(s)
}

/// The temporary path a file is written at before it is renamed into place.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort() {
        let dir = Path::new("/x");
        let a = segment_path(dir, SeqNo(9), SegmentFile::Log);
        let b = segment_path(dir, SeqNo(10), SegmentFile::Log);
        assert!(a < b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some((SeqNo(9), SegmentFile::Log)));
        assert_eq!(
            parse_segment_name("00000000000000000010.tidx"),
            Some((SeqNo(10), SegmentFile::TimeIndex))
        );
    }

    #[test]
    fn foreign_names_are_not_segments() {
        for name in [
            "checkpoint",
            "gaps",
            "00000000000000000007.log.damaged-from-40",
            "1.log",
            "0000000000000000000a.log",
            "00000000000000000001.log.deleted",
            "00000000000000000001.txt",
        ] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
