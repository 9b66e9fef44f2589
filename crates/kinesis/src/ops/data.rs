//! The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.

use std::sync::Arc;

use sluice_broker::seqnum::SequenceNumber;
use sluice_broker::{
    Broker, ChildShard, PutRecordInput, PutRecordsEntry, RecordView, StartingPosition, TimestampMs,
};

use super::{OpResult, opt_count, stream_name};
use crate::errors::ApiError;
use crate::value::{Fields, Value};

fn record_input(f: &Fields<'_>) -> Result<PutRecordInput, ApiError> {
    let data = f
        .opt_blob("Data")?
        .ok_or_else(|| ApiError::missing("Data"))?;
    let partition_key = f.str("PartitionKey")?.to_owned();
    let explicit_hash_key = f.opt_str("ExplicitHashKey")?.map(str::to_owned);
    Ok(PutRecordInput {
        partition_key,
        explicit_hash_key,
        data,
    })
}

pub(super) async fn put_record(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    if let Some(v) = f.opt_str("SequenceNumberForOrdering")? {
        // Appends are serialised per shard, so every new number already exceeds any issued
        // before it: the value only has to be a sequence number.
        SequenceNumber::decode(v).map_err(|_| {
            ApiError::invalid(format!(
                "ExclusiveMinimumSequenceNumber {v} used in PutRecord on stream {name} under account {} is invalid.",
                b.config().manager.account
            ))
        })?;
    }
    let out = b.put_record(&name, record_input(f)?).await?;
    Ok(Some(Value::map([
        ("ShardId", Value::str(out.shard_id)),
        ("SequenceNumber", Value::str(out.sequence_number)),
        ("EncryptionType", Value::str("NONE")),
    ])))
}

pub(super) async fn put_records(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let entries = f
        .opt_array("Records")?
        .ok_or_else(|| ApiError::missing("Records"))?;
    let inputs = entries
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let rf = Fields::of(v)?;
            record_input(&rf).map_err(|e| {
                if e.kind == "ValidationException" {
                    ApiError::validation(
                        e.message
                            .replace("at '", &format!("at 'records.{}.member.", i + 1)),
                    )
                } else {
                    e
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = b.put_records(&name, inputs).await?;
    let records = out
        .records
        .into_iter()
        .map(|r| match r {
            PutRecordsEntry::Ok(o) => Value::map([
                ("SequenceNumber", Value::str(o.sequence_number)),
                ("ShardId", Value::str(o.shard_id)),
            ]),
            PutRecordsEntry::Failed {
                error_code,
                error_message,
            } => {
                let message = crate::errors::entry_message(&error_code, error_message);
                Value::map([
                    ("ErrorCode", Value::str(error_code)),
                    ("ErrorMessage", Value::str(message)),
                ])
            }
        })
        .collect();
    Ok(Some(Value::map([
        (
            "FailedRecordCount",
            Value::Int(out.failed_record_count as i128),
        ),
        ("Records", Value::Array(records)),
        ("EncryptionType", Value::str("NONE")),
    ])))
}

/// Reads `StartingPosition`-like members: the iterator type, its sequence number and its
/// timestamp, checked as Kinesis checks them.
pub(crate) fn starting_position(
    kind: &str,
    seq: Option<&str>,
    ts: Option<u64>,
    member: &str,
) -> Result<StartingPosition, ApiError> {
    let need_seq = matches!(kind, "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER");
    if matches!(
        kind,
        "AT_SEQUENCE_NUMBER" | "AFTER_SEQUENCE_NUMBER" | "TRIM_HORIZON" | "LATEST"
    ) && need_seq != seq.is_some()
    {
        return Err(ApiError::invalid(format!(
            "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {kind} and {} StartingSequenceNumber.",
            if seq.is_some() { "also a" } else { "no" }
        )));
    }
    Ok(match (kind, seq) {
        ("TRIM_HORIZON", _) => StartingPosition::TrimHorizon,
        ("LATEST", _) => StartingPosition::Latest,
        ("AT_SEQUENCE_NUMBER", Some(s)) => StartingPosition::AtSequenceNumber(s.to_owned()),
        ("AFTER_SEQUENCE_NUMBER", Some(s)) => StartingPosition::AfterSequenceNumber(s.to_owned()),
        ("AT_TIMESTAMP", _) => StartingPosition::AtTimestamp(TimestampMs(ts.ok_or_else(|| {
            ApiError::invalid("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.")
        })?)),
        (other, _) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at '{member}' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
            )));
        }
    })
}

pub(super) async fn get_shard_iterator(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let shard = f.str("ShardId")?;
    let kind = f.str("ShardIteratorType")?;
    let position = starting_position(
        kind,
        f.opt_str("StartingSequenceNumber")?,
        f.opt_timestamp("Timestamp")?,
        "shardIteratorType",
    )?;
    let it = b.get_shard_iterator(&name, shard, position).await?;
    Ok(Some(Value::map([("ShardIterator", Value::str(it))])))
}

/// A record as GetRecords and SubscribeToShard events write it.
pub(crate) fn record_value(r: &RecordView) -> Value {
    Value::map([
        ("SequenceNumber", Value::str(&r.sequence_number)),
        (
            "ApproximateArrivalTimestamp",
            Value::Timestamp(r.approximate_arrival_timestamp.0),
        ),
        ("Data", Value::Bytes(r.data.clone())),
        ("PartitionKey", Value::str(&r.partition_key)),
    ])
}

/// ChildShards as GetRecords and SubscribeToShard events write them.
pub(crate) fn children_value(children: &[ChildShard]) -> Value {
    if children.is_empty() {
        return Value::Null;
    }
    Value::Array(
        children
            .iter()
            .map(|c| {
                Value::map([
                    ("ShardId", Value::str(&c.shard_id)),
                    (
                        "ParentShards",
                        Value::Array(c.parent_shards.iter().map(Value::str).collect()),
                    ),
                    (
                        "HashKeyRange",
                        Value::map([
                            (
                                "StartingHashKey",
                                Value::str(&c.hash_key_range.starting_hash_key),
                            ),
                            (
                                "EndingHashKey",
                                Value::str(&c.hash_key_range.ending_hash_key),
                            ),
                        ]),
                    ),
                ])
            })
            .collect(),
    )
}

pub(super) async fn get_records(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let it = f.str("ShardIterator")?;
    if it.is_empty() || it.len() > 512 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'shardIterator' failed to satisfy constraint: Member must have length between 1 and 512",
        ));
    }
    let limit = opt_count(f, "Limit", 1, 10_000)?;
    let out = b.get_records(it, limit).await?;
    Ok(Some(Value::map([
        (
            "Records",
            Value::Array(out.records.iter().map(record_value).collect()),
        ),
        ("NextShardIterator", Value::opt_str(out.next_shard_iterator)),
        (
            "MillisBehindLatest",
            Value::Int(i128::from(out.millis_behind_latest)),
        ),
        ("ChildShards", children_value(&out.child_shards)),
    ])))
}
