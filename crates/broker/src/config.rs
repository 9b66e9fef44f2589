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
    /// Records buffered per subscriber before the subscription waits for it. Default 16
    /// events.
    pub subscription_buffer: usize,
    /// How long a subscription lasts before it ends (a client resubscribes with the
    /// continuation number). Default 300,000 ms, as Kinesis's SubscribeToShard.
    pub subscription_ttl_ms: u64,
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
            subscription_buffer: 16,
            subscription_ttl_ms: 300_000,
            segment_cache_capacity: 1024,
        }
    }
}
