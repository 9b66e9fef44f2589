//! Message mapping between `sluice.v1` and the broker's types, field by field.
//!
//! Requests become broker inputs, and a malformed request becomes a broker
//! [`Error::InvalidArgument`], so `status` stays the only place that knows gRPC codes.
//! Numbers cross as checked conversions: a count that does not fit saturates rather than
//! wraps, and a negative timestamp is refused.

use sluice_broker::TimestampMs;
use sluice_broker::types::{
    ChildShard, CreateStream, GetRecordsOutput, HashKeyRange, PutRecordInput, PutRecordsEntry,
    PutRecordsOutput, RecordView, ShardList, ShardView, StartingPosition, StreamList, StreamStatus,
    StreamView, SubscribeEvent,
};
use sluice_broker::{Error, Result};
use sluice_proto::v1 as pb;

/// Maps a request's starting position, which must name a type and the value it needs.
pub fn starting_position(position: Option<pb::StartingPosition>) -> Result<StartingPosition> {
    let position = position.ok_or_else(|| invalid("starting_position is required"))?;
    let kind = pb::ShardIteratorType::try_from(position.r#type)
        .map_err(|_| invalid(format!("unknown shard iterator type {}", position.r#type)))?;
    let sequence_number = |name: &str| {
        position
            .sequence_number
            .clone()
            .ok_or_else(|| invalid(format!("{name} needs starting_position.sequence_number")))
    };
    match kind {
        pb::ShardIteratorType::Unspecified => Err(invalid(
            "starting_position.type must be TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, \
             AFTER_SEQUENCE_NUMBER or AT_TIMESTAMP",
        )),
        pb::ShardIteratorType::TrimHorizon => Ok(StartingPosition::TrimHorizon),
        pb::ShardIteratorType::Latest => Ok(StartingPosition::Latest),
        pb::ShardIteratorType::AtSequenceNumber => Ok(StartingPosition::AtSequenceNumber(
            sequence_number("AT_SEQUENCE_NUMBER")?,
        )),
        pb::ShardIteratorType::AfterSequenceNumber => Ok(StartingPosition::AfterSequenceNumber(
            sequence_number("AFTER_SEQUENCE_NUMBER")?,
        )),
        pb::ShardIteratorType::AtTimestamp => {
            let ms = position
                .timestamp_ms
                .ok_or_else(|| invalid("AT_TIMESTAMP needs starting_position.timestamp_ms"))?;
            let ms = u64::try_from(ms)
                .map_err(|_| invalid(format!("timestamp_ms {ms} is before the epoch")))?;
            Ok(StartingPosition::AtTimestamp(TimestampMs(ms)))
        }
    }
}

/// Maps CreateStream; absent optional fields take the Kinesis defaults.
pub fn create_stream(request: pb::CreateStreamRequest) -> CreateStream {
    let mut create = CreateStream::new(request.stream_name, request.shard_count);
    if let Some(hours) = request.retention_period_hours {
        create.retention_hours = hours;
    }
    if let Some(kib) = request.max_record_size_kib {
        create.max_record_size_kib = kib;
    }
    create.tags = request.tags;
    create
}

/// Maps one record of PutRecord.
pub fn put_record_input(request: pb::PutRecordRequest) -> (String, PutRecordInput) {
    let input = PutRecordInput {
        partition_key: request.partition_key,
        explicit_hash_key: request.explicit_hash_key,
        data: request.data,
    };
    (request.stream_name, input)
}

/// Maps one record of PutRecords.
pub fn put_records_entry(entry: pb::PutRecordsRequestEntry) -> PutRecordInput {
    PutRecordInput {
        partition_key: entry.partition_key,
        explicit_hash_key: entry.explicit_hash_key,
        data: entry.data,
    }
}

/// Maps the outcome of PutRecords, keeping request order.
pub fn put_records_response(output: PutRecordsOutput) -> pb::PutRecordsResponse {
    let records = output
        .records
        .into_iter()
        .map(|entry| match entry {
            PutRecordsEntry::Ok(ok) => pb::PutRecordsResultEntry {
                shard_id: ok.shard_id,
                sequence_number: ok.sequence_number,
                error_code: None,
                error_message: None,
            },
            PutRecordsEntry::Failed {
                error_code,
                error_message,
            } => pb::PutRecordsResultEntry {
                shard_id: String::new(),
                sequence_number: String::new(),
                error_message: Some(crate::status::entry_message(&error_code, error_message)),
                error_code: Some(error_code),
            },
        })
        .collect();
    pb::PutRecordsResponse {
        failed_record_count: saturate_u32(output.failed_record_count),
        records,
    }
}

/// Maps a GetRecords page.
pub fn get_records_response(output: GetRecordsOutput) -> pb::GetRecordsResponse {
    pb::GetRecordsResponse {
        records: output.records.into_iter().map(record).collect(),
        next_shard_iterator: output.next_shard_iterator,
        millis_behind_latest: output.millis_behind_latest,
        child_shards: output.child_shards.into_iter().map(child_shard).collect(),
    }
}

/// Maps one subscription event.
pub fn subscribe_event(event: SubscribeEvent) -> pb::SubscribeEvent {
    pb::SubscribeEvent {
        records: event.records.into_iter().map(record).collect(),
        continuation_sequence_number: event.continuation_sequence_number,
        millis_behind_latest: event.millis_behind_latest,
        child_shards: event.child_shards.into_iter().map(child_shard).collect(),
    }
}

/// Maps DescribeStream's view of a stream.
pub fn stream_description(view: StreamView) -> pb::StreamDescription {
    pb::StreamDescription {
        stream_name: view.name,
        stream_arn: view.arn,
        stream_status: stream_status(view.status).into(),
        retention_period_hours: view.retention_hours,
        max_record_size_kib: view.max_record_size_kib,
        stream_creation_timestamp_ms: timestamp_ms(view.created),
        open_shard_count: saturate_u32(view.open_shard_count),
        shards: view.shards.into_iter().map(shard).collect(),
        has_more_shards: view.has_more_shards,
    }
}

/// Maps a ListStreams page.
pub fn list_streams_response(list: StreamList) -> pb::ListStreamsResponse {
    let streams = list
        .streams
        .into_iter()
        .map(|s| pb::StreamSummary {
            stream_name: s.name,
            stream_arn: s.arn,
            stream_status: stream_status(s.status).into(),
            stream_creation_timestamp_ms: timestamp_ms(s.created),
        })
        .collect();
    pb::ListStreamsResponse {
        streams,
        has_more_streams: list.has_more,
    }
}

/// Maps a ListShards page.
pub fn list_shards_response(list: ShardList) -> pb::ListShardsResponse {
    pb::ListShardsResponse {
        shards: list.shards.into_iter().map(shard).collect(),
        next_exclusive_start_shard_id: list.next_exclusive_start_shard_id,
    }
}

/// Maps a ListTagsForStream page.
pub fn list_tags_response(
    tags: Vec<(String, String)>,
    has_more: bool,
) -> pb::ListTagsForStreamResponse {
    pb::ListTagsForStreamResponse {
        tags: tags
            .into_iter()
            .map(|(key, value)| pb::Tag { key, value })
            .collect(),
        has_more_tags: has_more,
    }
}

/// A page size from the wire; `u32` always fits a `usize` on the targets we build for,
/// and would saturate otherwise.
pub fn limit(n: Option<u32>) -> Option<usize> {
    n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// The wire form of a stream status.
pub fn stream_status(status: StreamStatus) -> pb::StreamStatus {
    match status {
        StreamStatus::Creating => pb::StreamStatus::Creating,
        StreamStatus::Active => pb::StreamStatus::Active,
        StreamStatus::Updating => pb::StreamStatus::Updating,
        StreamStatus::Deleting => pb::StreamStatus::Deleting,
    }
}

fn record(r: RecordView) -> pb::Record {
    pb::Record {
        sequence_number: r.sequence_number,
        approximate_arrival_timestamp_ms: timestamp_ms(r.approximate_arrival_timestamp),
        data: r.data,
        partition_key: r.partition_key,
    }
}

fn shard(s: ShardView) -> pb::Shard {
    pb::Shard {
        shard_id: s.shard_id,
        parent_shard_id: s.parent_shard_id,
        adjacent_parent_shard_id: s.adjacent_parent_shard_id,
        hash_key_range: Some(hash_key_range(s.hash_key_range)),
        sequence_number_range: Some(pb::SequenceNumberRange {
            starting_sequence_number: s.starting_sequence_number,
            ending_sequence_number: s.ending_sequence_number,
        }),
    }
}

pub(crate) fn child_shard(c: ChildShard) -> pb::ChildShard {
    pb::ChildShard {
        shard_id: c.shard_id,
        parent_shards: c.parent_shards,
        hash_key_range: Some(hash_key_range(c.hash_key_range)),
    }
}

fn hash_key_range(r: HashKeyRange) -> pb::HashKeyRange {
    pb::HashKeyRange {
        starting_hash_key: r.starting_hash_key,
        ending_hash_key: r.ending_hash_key,
    }
}

pub(crate) fn timestamp_ms(t: TimestampMs) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn saturate_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(
        kind: pb::ShardIteratorType,
        seq: Option<&str>,
        ts: Option<i64>,
    ) -> Option<pb::StartingPosition> {
        Some(pb::StartingPosition {
            r#type: kind.into(),
            sequence_number: seq.map(str::to_string),
            timestamp_ms: ts,
        })
    }

    fn check(input: Option<pb::StartingPosition>, expected: Result<StartingPosition>) {
        assert_eq!(starting_position(input), expected);
    }

    fn is_invalid(input: Option<pb::StartingPosition>) {
        let got = starting_position(input);
        assert!(matches!(got, Err(Error::InvalidArgument(_))), "{got:?}");
    }

    #[test]
    fn every_iterator_type_maps_to_its_position() {
        use pb::ShardIteratorType as T;
        check(
            position(T::TrimHorizon, None, None),
            Ok(StartingPosition::TrimHorizon),
        );
        check(
            position(T::Latest, Some("9"), None),
            Ok(StartingPosition::Latest),
        );
        check(
            position(T::AtSequenceNumber, Some("42"), None),
            Ok(StartingPosition::AtSequenceNumber("42".into())),
        );
        check(
            position(T::AfterSequenceNumber, Some("42"), None),
            Ok(StartingPosition::AfterSequenceNumber("42".into())),
        );
        check(
            position(T::AtTimestamp, None, Some(1_700_000_000_000)),
            Ok(StartingPosition::AtTimestamp(TimestampMs(
                1_700_000_000_000,
            ))),
        );
    }

    #[test]
    fn incomplete_positions_are_invalid_arguments() {
        use pb::ShardIteratorType as T;
        is_invalid(None);
        is_invalid(position(T::Unspecified, None, None));
        is_invalid(position(T::AtSequenceNumber, None, None));
        is_invalid(position(T::AfterSequenceNumber, None, None));
        is_invalid(position(T::AtTimestamp, None, None));
        is_invalid(position(T::AtTimestamp, None, Some(-1)));
        is_invalid(Some(pb::StartingPosition {
            r#type: 99,
            sequence_number: None,
            timestamp_ms: None,
        }));
    }

    #[test]
    fn create_stream_keeps_defaults_unless_given() {
        let plain = create_stream(pb::CreateStreamRequest {
            stream_name: "s".into(),
            shard_count: 2,
            ..Default::default()
        });
        assert_eq!(plain, CreateStream::new("s", 2));
        let custom = create_stream(pb::CreateStreamRequest {
            stream_name: "s".into(),
            shard_count: 2,
            retention_period_hours: Some(48),
            max_record_size_kib: Some(2048),
            tags: [("k".to_string(), "v".to_string())].into(),
        });
        assert_eq!(custom.retention_hours, 48);
        assert_eq!(custom.max_record_size_kib, 2048);
        assert_eq!(custom.tags.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn failed_put_records_entries_carry_their_error() {
        let out = put_records_response(PutRecordsOutput {
            failed_record_count: 1,
            records: vec![PutRecordsEntry::Failed {
                error_code: "InternalFailure".into(),
                error_message: "disk".into(),
            }],
        });
        assert_eq!(out.failed_record_count, 1);
        assert_eq!(
            out.records[0].error_code.as_deref(),
            Some("InternalFailure")
        );
        assert!(out.records[0].shard_id.is_empty());
    }
}
