//! The server's configuration: one [`Config`] read from TOML, overridden by environment
//! variables, checked, and mapped onto [`BrokerConfig`].
//!
//! Sources, lowest precedence first:
//! 1. the embedded default, `config/sluice.toml` ([`DEFAULT_TOML`]), or the file given
//!    with `--config` (keys it leaves out take their defaults);
//! 2. environment variables: a top-level key `k` is `SLUICE_K` and a key `k` of section
//!    `[s]` is `SLUICE_S_K`, upper-cased (`SLUICE_DATA_DIR`, `SLUICE_GRPC_LISTEN`,
//!    `SLUICE_STORAGE_SYNC_MODE`); `SLUICE_LOG` is a short name for `SLUICE_LOG_FILTER`
//!    and wins over it;
//! 3. the command-line flags `--data-dir` and `--grpc-listen` (applied by `main`).
//!
//! An unknown key in the file is an error that names it; an unknown `SLUICE_` variable is
//! reported as a warning, since the environment is shared with other programs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_broker::{BrokerConfig, LogConfig, ManagerConfig, SyncMode, SyncfsPolicy};

use crate::human::{ByteSize, Millis, MillisOrNever};

/// The default configuration, embedded so that `sluice` needs no file to start. A test
/// checks it equals [`Config::default`].
pub const DEFAULT_TOML: &str = include_str!("../../../config/sluice.toml");

/// The prefix of every environment variable that sets a key.
pub const ENV_PREFIX: &str = "SLUICE_";

/// The short name of `SLUICE_LOG_FILTER`, in the style of `RUST_LOG`.
pub const LOG_ENV: &str = "SLUICE_LOG";

/// Everything `sluice` can be told. Field docs give the default and the bounds;
/// `config/sluice.toml` says the same for users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where streams, shard logs and the iterator key live; created if absent.
    /// Default `./data`.
    pub data_dir: PathBuf,
    /// The gRPC listen address. Default `127.0.0.1:4567`; port 0 picks a free port.
    pub grpc_listen: SocketAddr,
    /// The Kinesis API (AWS JSON 1.1 and CBOR over HTTP/1.1 and HTTP/2) listen address.
    /// Default `127.0.0.1:4568`; port 0 picks a free port.
    pub kinesis_listen: SocketAddr,
    /// A `tracing` filter (`RUST_LOG` syntax). Default `info`.
    pub log_filter: String,
    /// How long shutdown waits for in-flight calls before closing anyway. Default 30s;
    /// at least 1ms.
    pub shutdown_grace: Millis,
    /// Engine settings.
    pub broker: BrokerSection,
    /// Request limits and quotas.
    pub limits: LimitsSection,
    /// Shard log settings.
    pub storage: StorageSection,
    /// Connection caps, timeouts and the in-flight request budget of both listeners.
    pub network: NetworkSection,
}

/// `[network]`: what keeps one client from starving the others, on both listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Connections open at once, both listeners together; lowered at start-up to the
    /// open-files limit minus `fd_reserve`. Default 10000; at least 1.
    pub connections_max: usize,
    /// Connections open at once from one client address. Default 1024; at least 1.
    pub connections_per_client_max: usize,
    /// File descriptors kept free of connections for shard logs, indexes and the
    /// journal. Default 1024.
    pub fd_reserve: u64,
    /// How long a new connection has to send its first HTTP/1.1 request's headers or the
    /// HTTP/2 client preface, and an HTTP/1.1 connection each request's headers.
    /// Default 30s; at least 100ms.
    pub header_read_timeout: Millis,
    /// How long a connection may move no byte either way before it is closed. Default
    /// 2m; at least 1s.
    pub idle_timeout: Millis,
    /// How long a request body may take to arrive. Default 1m; at least 100ms.
    pub body_timeout: Millis,
    /// HTTP/2 streams open at once on one connection. Default 100; 1 ..= 10000.
    pub h2_streams_max: u32,
    /// Request bytes in flight, both listeners together. Default 256MiB; at least
    /// `request_bytes_in_flight_per_client_max`.
    pub request_bytes_in_flight_max: ByteSize,
    /// Request bytes in flight from one client address. Default 64MiB; at least 32MiB.
    pub request_bytes_in_flight_per_client_max: ByteSize,
    /// How long a request waits for room in the total before it is throttled. Default
    /// 250ms.
    pub request_bytes_wait: Millis,
}

/// The smallest `network.request_bytes_in_flight_per_client_max`: one request of the
/// largest size either listener reads (a 16 MiB Kinesis body, an 18 MiB gRPC message)
/// must fit a client's share, or it could never be served.
pub const REQUEST_BYTES_PER_CLIENT_MIN: u64 = 32 << 20;

/// `[broker]`: the engine's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Region in stream ARNs. Default `us-east-1`; not empty.
    pub region: String,
    /// Account id in ARNs. Default `000000000000`; not empty.
    pub account: String,
    /// How long CREATING, UPDATING and DELETING last. Default 0ms (immediate).
    pub status_delay: Millis,
    /// How long a shard iterator stays valid. Default 5m (Kinesis); at least 1s.
    pub iterator_ttl: Millis,
    /// How often retention and deferred work run. Default 10s; at least 10ms.
    pub maintenance_interval: Millis,
    /// How long one subscription lasts. Default 5m (Kinesis); at least 1s.
    pub subscription_ttl: Millis,
    /// How old a consumer's SubscribeToShard to a shard must be before a second one takes
    /// over (younger: the second is refused with ResourceInUse). Default 5s (Kinesis).
    pub subscription_takeover: Millis,
    /// Enforce Kinesis's per-shard throughput limits. Default false.
    pub throughput_limits: bool,
}

/// `[limits]`: request sizes and quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Records in one PutRecords call. Default 500; 1 ..= 100000.
    pub put_records_max: usize,
    /// Data and partition keys in one PutRecords call. Default 5MiB; 1KiB ..= 64MiB.
    pub put_records_size_max: ByteSize,
    /// Records in one GetRecords response. Default 10000; 1 ..= 100000.
    pub get_records_max: usize,
    /// Data in one GetRecords response. Default 10MiB; 1KiB ..= 64MiB.
    pub get_records_size_max: ByteSize,
    /// Open shards across all streams. Default 10000; at least 1.
    pub open_shards_max: u32,
    /// Open shards in one stream. Default 10000; at least 1.
    pub shards_per_stream_max: u32,
    /// Streams in CREATING at once. Default 5; at least 1.
    pub streams_creating_max: u32,
    /// UpdateShardCount calls per stream per rolling 24 h. Default 10; at least 1.
    pub shard_count_updates_per_day_max: u32,
    /// Subscriptions open at once, across all shards. Default 1024; 1 ..= 1000000.
    pub subscriptions_max: usize,
    /// Subscriptions of one shard open at once. Default 20; 1 ..= 100000.
    pub subscriptions_per_shard_max: usize,
    /// Record bytes one subscription may hold read and not yet sent (two events of at
    /// most half of it, or one larger record). Default 2MiB; 64KiB ..= 64MiB.
    pub subscription_buffer_size_max: ByteSize,
    /// Record bytes all subscriptions may hold read and not yet sent. Default 256MiB; at
    /// least 16MiB and at least `subscription_buffer_size_max`.
    pub subscription_buffer_total_size_max: ByteSize,
}

/// `[storage]`: every shard log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Roll to a new segment before this size. Default 128MiB; 4KiB ..= 1GiB.
    pub segment_size_max: ByteSize,
    /// Roll a segment whose first record is this old. Default 1h; or `never`.
    pub segment_age_max: MillisOrNever,
    /// Log bytes between two sparse index entries. Default 16KiB; 64B ..= 1MiB.
    pub index_interval: ByteSize,
    /// Log bytes between two recovery points. Default 16MiB; at least 1B.
    pub checkpoint_interval: ByteSize,
    /// When a put is acknowledged. Default `always`.
    pub sync_mode: SyncModeName,
    /// In `interval` mode, the longest time between syncs. Default 5ms; at least 1ms.
    pub sync_interval: Millis,
    /// Compact the metadata journal into a snapshot at this size. Default 1MiB; at least 1KiB.
    pub journal_compact_size: ByteSize,
    /// Sealed segments kept memory-mapped at once, across all shards (an LRU). Default
    /// 1024; at least 1.
    pub segment_cache_capacity: usize,
    /// Shards that may run their own `fdatasync` at once; past that, waiting shards share
    /// one `syncfs` of the data directory's file system. Default 4; 0 = never `syncfs`.
    pub sync_coalesce_after: usize,
    /// Whether that shared sync may be a `syncfs`: `auto` (default) only on file systems
    /// known to flush data with it (ext4, xfs, btrfs), `always`, or `never`.
    pub syncfs: SyncfsName,
}

/// `storage.syncfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncfsName {
    /// Only where the data directory's file system is known to flush data with `syncfs`.
    Auto,
    /// On any file system (the operator vouches for it).
    Always,
    /// Never: one `fdatasync` per shard.
    Never,
}

/// `storage.sync_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncModeName {
    /// A put returns once its bytes are on stable storage (group commit).
    Always,
    /// A put returns once written to the OS; a sync runs every `sync_interval`.
    Interval,
}

/// Why a configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, or names an unknown key, or a value has the wrong type.
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message, which names the key and the line.
        message: String,
    },
    /// An environment variable's value does not fit its key.
    Env {
        /// The variable.
        var: String,
        /// Why.
        reason: String,
    },
    /// A value is out of its bounds.
    Invalid {
        /// The key, as written in the file (`storage.segment_size_max`).
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// A loaded configuration and what the loader noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// `SLUICE_` variables that name no key (logged once logging starts).
    pub unknown_env: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 4567)),
            kinesis_listen: SocketAddr::from(([127, 0, 0, 1], 4568)),
            log_filter: "info".into(),
            shutdown_grace: Millis(30_000),
            broker: BrokerSection::default(),
            limits: LimitsSection::default(),
            storage: StorageSection::default(),
            network: NetworkSection::default(),
        }
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            connections_max: 10_000,
            connections_per_client_max: 1024,
            fd_reserve: 1024,
            header_read_timeout: Millis(30_000),
            idle_timeout: Millis(120_000),
            body_timeout: Millis(60_000),
            h2_streams_max: 100,
            request_bytes_in_flight_max: ByteSize(256 << 20),
            request_bytes_in_flight_per_client_max: ByteSize(64 << 20),
            request_bytes_wait: Millis(250),
        }
    }
}

impl NetworkSection {
    /// The cap on open connections under an open-files limit of `open_files_max`
    /// (`None`: unlimited): `connections_max`, lowered so that `fd_reserve` descriptors
    /// stay free for the data path.
    pub fn connections_cap(&self, open_files_max: Option<u64>) -> Result<usize, ConfigError> {
        let Some(limit) = open_files_max else {
            return Ok(self.connections_max);
        };
        let room = limit.saturating_sub(self.fd_reserve);
        let cap = usize::try_from(room)
            .map_or(self.connections_max, |room| room.min(self.connections_max));
        if cap == 0 {
            return Err(ConfigError::Invalid {
                key: "network.fd_reserve",
                reason: format!(
                    "the open-files limit ({limit}) leaves no descriptor for connections once {} are reserved; raise the limit (ulimit -n) or lower the reserve",
                    self.fd_reserve
                ),
            });
        }
        Ok(cap)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        at_least("network.connections_max", self.connections_max as u64, 1)?;
        at_least(
            "network.connections_per_client_max",
            self.connections_per_client_max as u64,
            1,
        )?;
        at_least(
            "network.header_read_timeout",
            self.header_read_timeout.0,
            100,
        )?;
        at_least("network.idle_timeout", self.idle_timeout.0, 1_000)?;
        at_least("network.body_timeout", self.body_timeout.0, 100)?;
        within(
            "network.h2_streams_max",
            u64::from(self.h2_streams_max),
            1,
            10_000,
        )?;
        within(
            "network.request_bytes_in_flight_per_client_max",
            self.request_bytes_in_flight_per_client_max.0,
            REQUEST_BYTES_PER_CLIENT_MIN,
            1 << 40,
        )?;
        within(
            "network.request_bytes_in_flight_max",
            self.request_bytes_in_flight_max.0,
            self.request_bytes_in_flight_per_client_max.0,
            1 << 40,
        )?;
        Ok(())
    }
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            status_delay: Millis(0),
            iterator_ttl: Millis(300_000),
            maintenance_interval: Millis(10_000),
            subscription_ttl: Millis(300_000),
            subscription_takeover: Millis(5_000),
            throughput_limits: false,
        }
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            put_records_max: 500,
            put_records_size_max: ByteSize(5 << 20),
            get_records_max: 10_000,
            get_records_size_max: ByteSize(10 << 20),
            open_shards_max: 10_000,
            shards_per_stream_max: 10_000,
            streams_creating_max: 5,
            shard_count_updates_per_day_max: 10,
            subscriptions_max: 1024,
            subscriptions_per_shard_max: 20,
            subscription_buffer_size_max: ByteSize(2 << 20),
            subscription_buffer_total_size_max: ByteSize(256 << 20),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            segment_size_max: ByteSize(128 << 20),
            segment_age_max: MillisOrNever(Some(Millis(3_600_000))),
            index_interval: ByteSize(16 << 10),
            checkpoint_interval: ByteSize(16 << 20),
            sync_mode: SyncModeName::Always,
            sync_interval: Millis(5),
            journal_compact_size: ByteSize(1 << 20),
            segment_cache_capacity: 1024,
            sync_coalesce_after: 4,
            syncfs: SyncfsName::Auto,
        }
    }
}

impl Config {
    /// Reads the file (or the embedded default) and applies the `SLUICE_` variables of
    /// `env`.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Loaded, ConfigError> {
        let (origin, text) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                (path.display().to_string(), text)
            }
            None => ("the embedded default".to_string(), DEFAULT_TOML.to_string()),
        };
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.clone(),
            message: e.to_string(),
        };
        // Parsing the text straight into `Config` first gives errors with line numbers.
        toml::from_str::<Config>(&text).map_err(parse_error)?;
        let mut table: toml::Table = toml::from_str(&text).map_err(parse_error)?;
        let unknown_env = apply_env(&mut table, env)?;
        let config = toml::Value::Table(table)
            .try_into::<Config>()
            .map_err(|e| ConfigError::Parse {
                origin: format!("{origin} with the environment"),
                message: e.to_string(),
            })?;
        Ok(Loaded {
            config,
            unknown_env,
        })
    }

    /// The configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Checks every bound and maps the configuration onto the broker's.
    pub fn broker_config(&self) -> Result<BrokerConfig, ConfigError> {
        self.validate()?;
        let storage = &self.storage;
        let log = LogConfig {
            segment_bytes_max: storage.segment_size_max.0,
            segment_age_max_ms: storage.segment_age_max.0.map(|m| m.0),
            index_interval_bytes: to_u32("storage.index_interval", storage.index_interval.0)?,
            checkpoint_interval_bytes: storage.checkpoint_interval.0,
            sync: match storage.sync_mode {
                SyncModeName::Always => SyncMode::Always,
                SyncModeName::Interval => SyncMode::Interval {
                    interval_ms: storage.sync_interval.0,
                },
            },
            ..LogConfig::default()
        };
        log.validate().map_err(|e| ConfigError::Invalid {
            key: "storage",
            reason: e.to_string(),
        })?;
        let limits = &self.limits;
        let manager = ManagerConfig {
            region: self.broker.region.clone(),
            account: self.broker.account.clone(),
            status_delay_ms: self.broker.status_delay.0,
            open_shards_max: limits.open_shards_max,
            shards_per_stream_max: limits.shards_per_stream_max,
            streams_creating_max: limits.streams_creating_max,
            shard_count_updates_per_day_max: limits.shard_count_updates_per_day_max,
            journal_compact_bytes: storage.journal_compact_size.0,
            sync_coalesce_after: storage.sync_coalesce_after,
            syncfs: match storage.syncfs {
                SyncfsName::Auto => SyncfsPolicy::Auto,
                SyncfsName::Always => SyncfsPolicy::Always,
                SyncfsName::Never => SyncfsPolicy::Never,
            },
            log,
        };
        Ok(BrokerConfig {
            data_dir: self.data_dir.clone(),
            manager,
            iterator_ttl_ms: self.broker.iterator_ttl.0,
            put_records_max: limits.put_records_max,
            put_records_bytes_max: to_usize(
                "limits.put_records_size_max",
                limits.put_records_size_max.0,
            )?,
            get_records_max: limits.get_records_max,
            get_records_bytes_max: to_usize(
                "limits.get_records_size_max",
                limits.get_records_size_max.0,
            )?,
            throughput_limits: self.broker.throughput_limits,
            maintenance_interval_ms: self.broker.maintenance_interval.0,
            subscription_ttl_ms: self.broker.subscription_ttl.0,
            subscriptions_max: limits.subscriptions_max,
            subscriptions_per_shard_max: limits.subscriptions_per_shard_max,
            subscription_bytes_max: to_usize(
                "limits.subscription_buffer_size_max",
                limits.subscription_buffer_size_max.0,
            )?,
            subscription_bytes_total_max: to_usize(
                "limits.subscription_buffer_total_size_max",
                limits.subscription_buffer_total_size_max.0,
            )?,
            subscription_takeover_ms: self.broker.subscription_takeover.0,
            segment_cache_capacity: storage.segment_cache_capacity,
        })
    }

    /// Checks the bounds the broker and storage do not check themselves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return invalid(
                "log_filter",
                format!("{:?} is not a tracing filter: {e}", self.log_filter),
            );
        }
        at_least("shutdown_grace", self.shutdown_grace.0, 1)?;
        let b = &self.broker;
        if b.region.is_empty() {
            return invalid("broker.region", "must not be empty".into());
        }
        if b.account.is_empty() {
            return invalid("broker.account", "must not be empty".into());
        }
        at_least("broker.iterator_ttl", b.iterator_ttl.0, 1_000)?;
        at_least("broker.maintenance_interval", b.maintenance_interval.0, 10)?;
        at_least("broker.subscription_ttl", b.subscription_ttl.0, 1_000)?;
        let l = &self.limits;
        within(
            "limits.put_records_max",
            l.put_records_max as u64,
            1,
            100_000,
        )?;
        within(
            "limits.put_records_size_max",
            l.put_records_size_max.0,
            1 << 10,
            64 << 20,
        )?;
        within(
            "limits.get_records_max",
            l.get_records_max as u64,
            1,
            100_000,
        )?;
        within(
            "limits.get_records_size_max",
            l.get_records_size_max.0,
            1 << 10,
            64 << 20,
        )?;
        at_least("limits.open_shards_max", u64::from(l.open_shards_max), 1)?;
        at_least(
            "limits.shards_per_stream_max",
            u64::from(l.shards_per_stream_max),
            1,
        )?;
        at_least(
            "limits.streams_creating_max",
            u64::from(l.streams_creating_max),
            1,
        )?;
        at_least(
            "limits.shard_count_updates_per_day_max",
            u64::from(l.shard_count_updates_per_day_max),
            1,
        )?;
        validate_subscriptions(l)?;
        at_least(
            "storage.journal_compact_size",
            self.storage.journal_compact_size.0,
            1 << 10,
        )?;
        at_least("storage.sync_interval", self.storage.sync_interval.0, 1)?;
        at_least(
            "storage.segment_cache_capacity",
            self.storage.segment_cache_capacity as u64,
            1,
        )?;
        self.network.validate()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(
                    f,
                    "cannot read configuration file {}: {source}",
                    path.display()
                )
            }
            ConfigError::Parse { origin, message } => {
                write!(
                    f,
                    "invalid configuration in {origin}: {}",
                    message.trim_end()
                )
            }
            ConfigError::Env { var, reason } => {
                write!(f, "invalid environment variable {var}: {reason}")
            }
            ConfigError::Invalid { key, reason } => {
                write!(f, "invalid configuration key `{key}`: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The environment variable of every key, with its path in the TOML table:
/// `("SLUICE_STORAGE_SYNC_MODE", Some("storage"), "sync_mode")`.
pub fn env_keys() -> Vec<(String, Option<String>, String)> {
    let mut keys = Vec::new();
    for (key, value) in default_table() {
        match value {
            toml::Value::Table(section) => {
                for inner in section.keys() {
                    keys.push((env_name(&[&key, inner]), Some(key.clone()), inner.clone()));
                }
            }
            _ => keys.push((env_name(&[&key]), None, key.clone())),
        }
    }
    keys
}

/// Applies `SLUICE_` variables to `table`; returns the ones that name no key.
fn apply_env(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ConfigError> {
    let defaults = default_table();
    let mut used = Vec::new();
    let mut overrides: Vec<(String, Option<String>, String, &String)> = Vec::new();
    for (var, section, key) in env_keys() {
        if let Some(text) = env.get(&var) {
            overrides.push((var.clone(), section, key, text));
            used.push(var);
        }
    }
    // `SLUICE_LOG` is applied last, so it wins over `SLUICE_LOG_FILTER`.
    if let Some(text) = env.get(LOG_ENV) {
        overrides.push((LOG_ENV.to_string(), None, "log_filter".into(), text));
        used.push(LOG_ENV.to_string());
    }
    for (var, section, key, text) in overrides {
        let default = match &section {
            Some(s) => defaults.get(s).and_then(|t| t.get(&key)),
            None => defaults.get(&key),
        };
        let value = typed_like(default, text).map_err(|reason| ConfigError::Env { var, reason })?;
        let target = match section {
            Some(s) => {
                let entry = table
                    .entry(s)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                match entry.as_table_mut() {
                    Some(t) => t,
                    None => continue,
                }
            }
            None => &mut *table,
        };
        target.insert(key, value);
    }
    Ok(env
        .keys()
        .filter(|k| k.starts_with(ENV_PREFIX) && !used.contains(k))
        .cloned()
        .collect())
}

/// Parses an environment value into the TOML type of the key's default.
fn typed_like(default: Option<&toml::Value>, text: &str) -> Result<toml::Value, String> {
    match default {
        Some(toml::Value::Integer(_)) => text
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{text:?} is not an integer")),
        Some(toml::Value::Boolean(_)) => text
            .trim()
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| format!("{text:?} is not true or false")),
        _ => Ok(toml::Value::String(text.to_string())),
    }
}

fn default_table() -> toml::Table {
    // Serializing plain structs of strings, integers and booleans cannot fail; an empty
    // table would only disable environment overrides, which the tests would catch.
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

fn env_name(path: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", path.join("_").to_ascii_uppercase())
}

/// The subscription limits: caps at least 1, and a total budget that holds the largest
/// record (10 MiB) and at least one subscription's buffer.
fn validate_subscriptions(l: &LimitsSection) -> Result<(), ConfigError> {
    within(
        "limits.subscriptions_max",
        l.subscriptions_max as u64,
        1,
        1_000_000,
    )?;
    within(
        "limits.subscriptions_per_shard_max",
        l.subscriptions_per_shard_max as u64,
        1,
        100_000,
    )?;
    within(
        "limits.subscription_buffer_size_max",
        l.subscription_buffer_size_max.0,
        64 << 10,
        64 << 20,
    )?;
    at_least(
        "limits.subscription_buffer_total_size_max",
        l.subscription_buffer_total_size_max.0,
        (16 << 20u64).max(l.subscription_buffer_size_max.0),
    )
}

fn at_least(key: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{value} is below the minimum {min}"),
        });
    }
    Ok(())
}

fn within(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    at_least(key, value, min)?;
    if value > max {
        return Err(ConfigError::Invalid {
            key,
            reason: format!("{value} is above the maximum {max}"),
        });
    }
    Ok(())
}

fn to_u32(key: &'static str, value: u64) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| ConfigError::Invalid {
        key,
        reason: format!("{value} does not fit in 32 bits"),
    })
}

fn to_usize(key: &'static str, value: u64) -> Result<usize, ConfigError> {
    usize::try_from(value).map_err(|_| ConfigError::Invalid {
        key,
        reason: format!("{value} does not fit in this machine's address space"),
    })
}

#[cfg(test)]
mod tests;
