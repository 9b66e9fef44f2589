//! Domain numbers as newtypes, so a sequence is never mixed up with a byte position.

use std::fmt;

/// A record's sequence within one shard's log: starts at 0, grows by one per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u64);

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimestampMs(pub u64);

impl SeqNo {
    /// The next sequence.
    pub fn next(self) -> SeqNo {
        SeqNo(self.0 + 1)
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A record to append. Borrowed so a front-end's buffers are written without copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordIn<'a> {
    /// The partition key's bytes (opaque to storage).
    pub partition_key: &'a [u8],
    /// An explicit 128-bit hash key, big-endian (opaque to storage).
    pub explicit_hash_key: Option<[u8; 16]>,
    /// The payload: 0 bytes up to the log's configured maximum.
    pub data: &'a [u8],
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence in the shard.
    pub seq: SeqNo,
    /// Arrival time, assigned at append; never decreases within a shard.
    pub timestamp: TimestampMs,
    /// The partition key's bytes.
    pub partition_key: Vec<u8>,
    /// The explicit hash key, if one was given.
    pub explicit_hash_key: Option<[u8; 16]>,
    /// The payload.
    pub data: Vec<u8>,
}
