//! The values the broker takes and returns: plain Rust, shaped like the Kinesis API so
//! both front-ends translate field by field.

use std::borrow::Cow;

use bytes::Bytes;
use sluice_storage::TimestampMs;

use crate::seqnum::SequenceNumber;

pub use sluice_shards::{CreateStream, StreamStatus};

/// One record to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordInput {
    /// 1 to 256 Unicode characters; its MD5 picks the shard.
    pub partition_key: String,
    /// A decimal 128-bit hash key that overrides the partition key's hash.
    pub explicit_hash_key: Option<String>,
    /// The payload (may be empty).
    pub data: Bytes,
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordOutput {
    /// `shardId-NNNNNNNNNNNN`.
    pub shard_id: String,
    /// The record's sequence number (decimal string).
    pub sequence_number: String,
}

/// The outcome of one record of a PutRecords call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutRecordsEntry {
    /// Written.
    Ok(PutRecordOutput),
    /// Not written; the client may retry this record.
    Failed {
        /// `ProvisionedThroughputExceededException` or `InternalFailure`.
        error_code: String,
        /// What went wrong.
        error_message: String,
    },
}

/// The outcome of a PutRecords call, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRecordsOutput {
    /// How many records failed.
    pub failed_record_count: usize,
    /// One entry per request record.
    pub records: Vec<PutRecordsEntry>,
}

/// Where an iterator or subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Just after the newest record when the iterator is made.
    Latest,
    /// The record with this sequence number (or the first after it).
    AtSequenceNumber(String),
    /// Strictly after this sequence number.
    AfterSequenceNumber(String),
    /// The first record that arrived at or after this time.
    AtTimestamp(TimestampMs),
}

impl StartingPosition {
    /// The Kinesis name of the iterator type.
    pub fn type_name(&self) -> &'static str {
        match self {
            StartingPosition::TrimHorizon => "TRIM_HORIZON",
            StartingPosition::Latest => "LATEST",
            StartingPosition::AtSequenceNumber(_) => "AT_SEQUENCE_NUMBER",
            StartingPosition::AfterSequenceNumber(_) => "AFTER_SEQUENCE_NUMBER",
            StartingPosition::AtTimestamp(_) => "AT_TIMESTAMP",
        }
    }
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Its sequence number.
    pub sequence_number: String,
    /// When it arrived, ms since the epoch.
    pub approximate_arrival_timestamp: TimestampMs,
    /// Its partition key.
    pub partition_key: String,
    /// Its payload.
    pub data: Bytes,
}

/// A record as read, before a front-end formats it: the fields [`RecordView`] is made
/// of, for front-ends that write their wire format straight from them (no string per
/// record). Key and data are slices of the segment's memory map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Its sequence number.
    pub sequence_number: SequenceNumber,
    /// When it arrived, ms since the epoch.
    pub approximate_arrival_timestamp: TimestampMs,
    /// Its partition key's bytes as written (text from both front-ends; see
    /// [`ReadRecord::partition_key_text`]).
    pub partition_key: Bytes,
    /// Its payload.
    pub data: Bytes,
}

impl ReadRecord {
    /// The partition key as text: the key itself, which both front-ends only accept as
    /// text, or a lossy rendering of bytes that are not UTF-8 (written by an older or
    /// foreign writer).
    pub fn partition_key_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.partition_key)
    }
}

/// Records as read, turned into views (sequence numbers as text), in order.
pub fn record_views(records: Vec<ReadRecord>) -> Vec<RecordView> {
    let mut numbers = crate::seqnum::Encoder::default();
    records
        .into_iter()
        .map(|r| RecordView {
            sequence_number: numbers.encode(r.sequence_number),
            approximate_arrival_timestamp: r.approximate_arrival_timestamp,
            partition_key: r.partition_key_text().into_owned(),
            data: r.data,
        })
        .collect()
}

/// A child of a shard that was read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's id.
    pub shard_id: String,
    /// Its parents' ids (one for a split, two for a merge).
    pub parent_shards: Vec<String>,
    /// Its hash-key range.
    pub hash_key_range: HashKeyRange,
}

/// A hash-key range as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashKeyRange {
    /// First key, inclusive.
    pub starting_hash_key: String,
    /// Last key, inclusive.
    pub ending_hash_key: String,
}

/// The result of GetRecords, with records of type `R`: [`GetRecordsOutput`] or
/// [`GetRecordsPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRecords<R> {
    /// The records, in sequence order.
    pub records: Vec<R>,
    /// Where to read next; `None` once a closed shard has been read to its end.
    pub next_shard_iterator: Option<String>,
    /// How far behind the newest record the response is, ms; 0 when caught up.
    pub millis_behind_latest: u64,
    /// At the end of a closed shard: its children.
    pub child_shards: Vec<ChildShard>,
}

/// The result of GetRecords, records as views (text sequence numbers and keys).
pub type GetRecordsOutput = GetRecords<RecordView>;

/// The result of GetRecords with the records as read ([`Broker::get_records_page`]).
///
/// [`Broker::get_records_page`]: crate::Broker::get_records_page
pub type GetRecordsPage = GetRecords<ReadRecord>;

impl From<GetRecordsPage> for GetRecordsOutput {
    fn from(page: GetRecordsPage) -> GetRecordsOutput {
        GetRecords {
            records: record_views(page.records),
            next_shard_iterator: page.next_shard_iterator,
            millis_behind_latest: page.millis_behind_latest,
            child_shards: page.child_shards,
        }
    }
}

/// One event of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeEvent {
    /// Records committed since the previous event (may be empty: a heartbeat).
    pub records: Vec<RecordView>,
    /// Resume from here (`AFTER_SEQUENCE_NUMBER`) to continue without gaps.
    pub continuation_sequence_number: String,
    /// How far behind the newest record this event is, ms.
    pub millis_behind_latest: u64,
    /// At the end of a closed shard: its children; this is the last event.
    pub child_shards: Vec<ChildShard>,
}

/// A shard as described to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    /// `shardId-NNNNNNNNNNNN`.
    pub shard_id: String,
    /// The shard split to make it, or the lower shard of a merge.
    pub parent_shard_id: Option<String>,
    /// The upper shard of a merge.
    pub adjacent_parent_shard_id: Option<String>,
    /// Its hash-key range.
    pub hash_key_range: HashKeyRange,
    /// Below every record of the shard.
    pub starting_sequence_number: String,
    /// Above every record; present once the shard is closed.
    pub ending_sequence_number: Option<String>,
    /// When the shard was created (for ListShards' ShardFilter).
    pub created: TimestampMs,
    /// When the shard was closed by a reshard, if it was.
    pub closed: Option<TimestampMs>,
}

/// A stream as described by DescribeStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamView {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its status now.
    pub status: StreamStatus,
    /// Retention, hours.
    pub retention_hours: u32,
    /// The largest record accepted, KiB.
    pub max_record_size_kib: u32,
    /// When it was created.
    pub created: TimestampMs,
    /// Open shards.
    pub open_shard_count: usize,
    /// Shards of this page, in id order (expired shards excluded).
    pub shards: Vec<ShardView>,
    /// Whether more shards follow.
    pub has_more_shards: bool,
}

/// A stream in ListStreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamListEntry {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its status now.
    pub status: StreamStatus,
    /// When it was created.
    pub created: TimestampMs,
}

/// A page of ListStreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamList {
    /// The streams, by name.
    pub streams: Vec<StreamListEntry>,
    /// Whether more follow the last one.
    pub has_more: bool,
}

/// A page of ListShards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardList {
    /// The shards, in id order.
    pub shards: Vec<ShardView>,
    /// Pass as `exclusive_start_shard_id` to get the next page; `None` at the end.
    pub next_exclusive_start_shard_id: Option<String>,
}

/// The result of UpdateShardCount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCountUpdate {
    /// Open shards before.
    pub current_shard_count: u32,
    /// Open shards after.
    pub target_shard_count: u32,
}

/// The stream's status as Kinesis spells it.
pub fn status_name(s: StreamStatus) -> &'static str {
    match s {
        StreamStatus::Creating => "CREATING",
        StreamStatus::Active => "ACTIVE",
        StreamStatus::Updating => "UPDATING",
        StreamStatus::Deleting => "DELETING",
    }
}
