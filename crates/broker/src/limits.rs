//! Kinesis's per-shard throughput limits, off by default: writes of 1,000 records and
//! 1 MiB per second, reads of 5 calls and 2 MiB per second. Counted in one-second windows.

use std::sync::Arc;

use crate::broker::{Broker, lock, now_ms};
use crate::error::{Error, Result};

/// Records per second a shard accepts.
pub const WRITE_RECORDS_PER_S: u64 = 1000;
/// Bytes per second a shard accepts.
pub const WRITE_BYTES_PER_S: u64 = 1024 * 1024;
/// GetRecords calls per second a shard serves.
pub const READ_CALLS_PER_S: u64 = 5;
/// Bytes per second a shard serves.
pub const READ_BYTES_PER_S: u64 = 2 * 1024 * 1024;

/// One shard's use in the current second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    second: u64,
    records: u64,
    bytes: u64,
    reads: u64,
    read_bytes: u64,
}

impl Usage {
    fn roll(&mut self, second: u64) {
        if self.second != second {
            *self = Usage {
                second,
                ..Usage::default()
            };
        }
    }
}

impl Broker {
    /// Accounts a write of `records` records and `bytes` bytes to a shard, or refuses it.
    pub(crate) fn admit_write(
        self: &Arc<Self>,
        uid: u64,
        shard: u64,
        records: u64,
        bytes: u64,
    ) -> bool {
        if !self.config.throughput_limits {
            return true;
        }
        let mut usage = lock(&self.usage);
        let u = usage.entry((uid, shard)).or_default();
        u.roll(now_ms().0 / 1000);
        if u.records + records > WRITE_RECORDS_PER_S || u.bytes + bytes > WRITE_BYTES_PER_S {
            return false;
        }
        u.records += records;
        u.bytes += bytes;
        true
    }

    /// Accounts a GetRecords call to a shard, or refuses it.
    pub(crate) fn admit_read(&self, uid: u64, shard: u64, stream: &str) -> Result<()> {
        if !self.config.throughput_limits {
            return Ok(());
        }
        let mut usage = lock(&self.usage);
        let u = usage.entry((uid, shard)).or_default();
        u.roll(now_ms().0 / 1000);
        if u.reads >= READ_CALLS_PER_S || u.read_bytes >= READ_BYTES_PER_S {
            return Err(Error::ProvisionedThroughputExceeded(format!(
                "Rate exceeded for shard shardId-{shard:012} in stream {stream} under account {}.",
                self.config.manager.account
            )));
        }
        u.reads += 1;
        Ok(())
    }

    /// Accounts bytes returned by a GetRecords call.
    pub(crate) fn account_read_bytes(&self, uid: u64, shard: u64, bytes: u64) {
        if self.config.throughput_limits {
            lock(&self.usage)
                .entry((uid, shard))
                .or_default()
                .read_bytes += bytes;
        }
    }
}
