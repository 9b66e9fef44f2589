//! Settings of the broker.

use std::path::PathBuf;

use sluice_shards::ManagerConfig;

/// Settings of the broker engine. Defaults follow Kinesis.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where streams, shard logs and the iterator key live. Default `./data`.
    pub data_dir: PathBuf,
    /// The shard manager's settings (region, account, quotas, the log template).
    pub manager: ManagerConfig,
    /// How long a shard iterator stays valid, ms. Default 300,000 (Kinesis: 5 minutes).
    pub iterator_ttl_ms: u64,
    /// Records in one PutRecords call. Default 500 (Kinesis).
    pub put_records_max: usize,
    /// Bytes (data and partition keys) in one PutRecords call. Default 5 MiB (Kinesis).
    pub put_records_bytes_max: usize,
    /// Records returned by one GetRecords call. Default 10,000 (Kinesis).
    pub get_records_max: usize,
    /// Bytes returned by one GetRecords call. Default 10 MiB (Kinesis).
    pub get_records_bytes_max: usize,
    /// Enforce Kinesis's per-shard throughput limits (writes 1,000 records/s and 1 MiB/s,
    /// reads 5 calls/s and 2 MiB/s). Default off: a self-hosted broker goes as fast as
    /// its disk.
    pub throughput_limits: bool,
    /// How often retention and deferred stream work run, ms. Default 10,000.
    pub maintenance_interval_ms: u64,
    /// How long a subscription lasts before it ends (a client resubscribes with the
    /// continuation number). Default 300,000 ms, as Kinesis's SubscribeToShard.
    pub subscription_ttl_ms: u64,
    /// Subscriptions (Subscribe and SubscribeToShard) open at once, across all shards;
    /// one more is refused with `LimitExceeded`. Default 1024.
    pub subscriptions_max: usize,
    /// Subscriptions of one shard open at once; one more is refused with
    /// `LimitExceeded`. Default 20 (Kinesis: 20 consumers per stream, each with one
    /// subscription per shard).
    pub subscriptions_per_shard_max: usize,
    /// Record bytes (data and partition keys) one subscription may hold read but not yet
    /// sent. The transport may hold two events, so one event carries at most half of
    /// this, except a single larger record, which goes alone. Default 2 MiB.
    pub subscription_bytes_max: usize,
    /// Record bytes all subscriptions together may hold read but not yet sent; a
    /// subscription whose next event does not fit waits, reading nothing more, until
    /// others have sent theirs. Default 256 MiB.
    pub subscription_bytes_total_max: usize,
    /// A second SubscribeToShard of one consumer on one shard is refused with
    /// `ResourceInUse` while the first is younger than this; once it is older, the new
    /// one takes over and the first ends with `ResourceInUse`. Default 5,000 ms (Kinesis).
    pub subscription_takeover_ms: u64,
    /// Sealed segments kept memory-mapped at once, across all shards. Default 1024.
    pub segment_cache_capacity: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("data"),
            manager: ManagerConfig::default(),
            iterator_ttl_ms: 300_000,
            put_records_max: 500,
            put_records_bytes_max: 5 * 1024 * 1024,
            get_records_max: 10_000,
            get_records_bytes_max: 10 * 1024 * 1024,
            throughput_limits: false,
            maintenance_interval_ms: 10_000,
            subscription_ttl_ms: 300_000,
            subscriptions_max: 1024,
            subscriptions_per_shard_max: 20,
            subscription_bytes_max: 2 * 1024 * 1024,
            subscription_bytes_total_max: 256 * 1024 * 1024,
            subscription_takeover_ms: 5_000,
            segment_cache_capacity: 1024,
        }
    }
}
