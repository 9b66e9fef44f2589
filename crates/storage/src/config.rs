//! Settings of a shard log.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::frame::{DATA_BYTES_LIMIT, FRAME_OVERHEAD_BYTES_MAX, KEY_BYTES_LIMIT};

/// When appends become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// An append returns only after its bytes are on stable storage (group commit).
    Always,
    /// An append returns once written to the OS; a sync runs at most every `interval_ms`
    /// (driven by appends and by [`crate::Log::sync_if_due`]). A crash can lose the records
    /// of the last interval, and their sequence numbers are then reused.
    Interval {
        /// The longest time between syncs, in ms.
        interval_ms: u64,
    },
}

/// Settings of one shard log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before this many bytes. Default 128 MiB; 4 KiB ..= 1 GiB.
    pub segment_bytes_max: u64,
    /// Roll a segment whose first record is this old, in ms. Default 1 h; `None` = never.
    pub segment_age_max_ms: Option<u64>,
    /// The largest record payload accepted. Default 1 MiB; at most 10 MiB.
    pub record_bytes_max: usize,
    /// Bytes of log between two sparse index entries. Default 16 KiB; 64 B ..= 1 MiB.
    pub index_interval_bytes: u32,
    /// Write a recovery point after this many bytes; bounds recovery work. Default 16 MiB.
    pub checkpoint_interval_bytes: u64,
    /// When appends are acknowledged. Default [`SyncMode::Always`].
    pub sync: SyncMode,
    /// The largest batch one append may write, in encoded bytes (frames included). A batch
    /// is never split across segments, so a segment may pass `segment_bytes_max` by up to
    /// this much. Default 16 MiB (a 10 MiB record with the largest key fits); at least
    /// one such frame of `record_bytes_max`, at most 1 GiB.
    pub batch_bytes_max: u64,
    /// Sequences reserved ahead in each recovery point: the checkpoint always holds a
    /// bound above every sequence acknowledged, raised by this much whenever it is
    /// written, so damage found at recovery never leads to a number given twice. Default
    /// 2^20; at least 1.
    pub seq_reserve: u64,
    /// Where recovery copies bytes it had to drop as damaged, for inspection: the data
    /// directory's `lost+found/`. Files are named after the log's directory and its parent
    /// (`<parent>-<dir>-<segment base>-from-<offset>.damaged`). `None` (default): beside the
    /// segment, as `<segment>.damaged-from-<offset>`.
    pub set_aside_dir: Option<PathBuf>,
    /// Check every segment at open (the active one from its start, not from the recovery
    /// point), and set a damaged sealed one aside instead of failing or serving errors:
    /// its bytes are copied out, its good records kept, and the rest recorded as a gap in
    /// the sequence. Slow (reads the whole log). Default false; the server's `--repair`.
    pub repair: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 128 * 1024 * 1024,
            segment_age_max_ms: Some(60 * 60 * 1000),
            record_bytes_max: 1024 * 1024,
            index_interval_bytes: 16 * 1024,
            checkpoint_interval_bytes: 16 * 1024 * 1024,
            sync: SyncMode::Always,
            batch_bytes_max: 16 * 1024 * 1024,
            seq_reserve: 1 << 20,
            set_aside_dir: None,
            repair: false,
        }
    }
}

impl LogConfig {
    /// Checks every bound, naming the setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if !(4096..=1 << 30).contains(&self.segment_bytes_max) {
            return bad(format!(
                "segment_bytes_max {} is outside 4 KiB ..= 1 GiB",
                self.segment_bytes_max
            ));
        }
        if self.record_bytes_max > DATA_BYTES_LIMIT {
            return bad(format!(
                "record_bytes_max {} exceeds the format's limit of {DATA_BYTES_LIMIT}",
                self.record_bytes_max
            ));
        }
        if !(64..=1 << 20).contains(&self.index_interval_bytes) {
            return bad(format!(
                "index_interval_bytes {} is outside 64 ..= 1 MiB",
                self.index_interval_bytes
            ));
        }
        if self.checkpoint_interval_bytes == 0 {
            return bad("checkpoint_interval_bytes must be positive".into());
        }
        if self.segment_age_max_ms == Some(0) {
            return bad("segment_age_max_ms must be positive".into());
        }
        if let SyncMode::Interval { interval_ms: 0 } = self.sync {
            return bad("sync interval must be positive".into());
        }
        let frame_max = (FRAME_OVERHEAD_BYTES_MAX + KEY_BYTES_LIMIT + self.record_bytes_max) as u64;
        if !(frame_max..=1 << 30).contains(&self.batch_bytes_max) {
            return bad(format!(
                "batch_bytes_max {} is outside {frame_max} (one largest record) ..= 1 GiB",
                self.batch_bytes_max
            ));
        }
        if self.seq_reserve == 0 {
            return bad("seq_reserve must be positive".into());
        }
        Ok(())
    }

    /// The length of the active segment's mapping: the largest size the segment can reach
    /// (one batch past `segment_bytes_max`), so it never needs remapping.
    pub(crate) fn map_capacity(&self) -> u64 {
        self.segment_bytes_max + self.batch_bytes_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LogConfig::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let c = LogConfig {
            segment_bytes_max: 10,
            ..LogConfig::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("segment_bytes_max"), "{err}");
        let c = LogConfig {
            record_bytes_max: 11 << 20,
            ..LogConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("record_bytes_max")
        );
        let c = LogConfig {
            record_bytes_max: 10 << 20,
            batch_bytes_max: 10 << 20,
            ..LogConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("batch_bytes_max")
        );
    }
}
