//! `sluice-broker`: the engine both front-ends share.
//!
//! [`Broker`] routes puts to shards (`put`), hands out shard iterators that are opaque,
//! signed and expiring (`iterator`), serves GetRecords with NextShardIterator,
//! MillisBehindLatest and the children of a closed shard (`read`), pushes committed records
//! to subscribers within caps and a byte budget (`subscribe`, `subscribers`), enforces
//! Kinesis's limits (`limits`), and runs retention
//! (`maintenance`). Sequence numbers are decided once, here, in the layout of real Kinesis
//! numbers (`seqnum`). Every operation returns an [`Error`] whose variants are the Kinesis
//! error categories; the front-ends map them to their wire form and do nothing else.
//!
//! The crate knows nothing of HTTP or protobuf. Storage and the shard manager are
//! synchronous; every call into them runs on tokio's blocking pool.

#![warn(missing_docs)]

mod broker;
mod config;
mod consumers;
mod durable;
mod error;
pub mod iterator;
mod limits;
mod maintenance;
mod put;
mod read;
pub mod seqnum;
mod subscribe;
mod subscribers;
pub mod types;

pub use broker::{Broker, parse_shard_id};
pub use config::BrokerConfig;
pub use consumers::{CONSUMERS_PER_STREAM_MAX, ConsumerRef, ConsumerView};
pub use error::{Error, Result};
pub use maintenance::MaintenanceReport;
pub use sluice_shards::ManagerConfig;
pub use sluice_storage::{LogConfig, SyncMode, SyncfsPolicy, TimestampMs};
pub use subscribe::{Delivery, Subscription};
pub use subscribers::{HeldBytes, SubscriptionStats};
pub use types::*;
