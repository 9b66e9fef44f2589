//! `sluice-shards`: the catalogue of streams and shards, and its durable history.
//!
//! A stream is a set of shards, each owning a contiguous inclusive range of the 128-bit
//! hash-key space ([`HashRange`]) and one `sluice_storage::Log`. The open shards of a stream
//! always tile `0 ..= 2^128-1`; a put is routed to the open shard whose range holds the MD5
//! of its partition key (or its explicit hash key) by a binary search. SplitShard,
//! MergeShards and UpdateShardCount close parent shards (sealing their logs, which fixes
//! their ending sequence) and open children that name their parents, so the lineage is a
//! DAG that consumers walk to keep per-key order.
//!
//! Every change is one event in a CRC-framed, append-only metadata journal, synced before it
//! is applied and replayed at start-up; the journal is compacted into a snapshot when it
//! grows. A crash leaves each stream wholly before or after a change.
//!
//! Map: `hash_range` (keys, ranges, uniform layout, MD5 routing), `lineage` (one stream's
//! shards, routing table, split/merge/resize planners), `stream` (stream metadata, status
//! lifecycle, argument rules), `catalogue` (all streams and the events that change them),
//! `codec` (event and snapshot encoding), `journal` (framing, replay, compaction),
//! `manager` ([`ShardManager`]: the API, logs, locking, crash recovery), `error`.

#![warn(missing_docs)]

mod catalogue;
mod codec;
mod error;
mod hash_range;
mod journal;
mod lineage;
mod manager;
mod stream;

pub use error::{Error, Result};
pub use hash_range::{HashKey, HashRange, uniform_layout};
pub use lineage::{ShardClose, ShardId, ShardInfo, ShardState};
pub use manager::{
    LOST_FOUND_DIR, ManagerConfig, Route, RouteKey, ShardHandle, ShardManager, TickReport,
    UpdateShardCountOutput, WorkReport, side_by_side,
};
pub use stream::{
    CreateStream, RECORD_SIZE_KIB_MAX, RECORD_SIZE_KIB_MIN, RETENTION_HOURS_MAX,
    RETENTION_HOURS_MIN, StreamDescription, StreamPage, StreamStatus, StreamSummary,
    TAGS_PER_STREAM_MAX, TagPage,
};
