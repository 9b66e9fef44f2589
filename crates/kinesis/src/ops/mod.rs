//! The operations: one function per Kinesis operation, grouped by area. Each reads its
//! members from [`Fields`], calls the broker, and builds the response [`Value`].

mod consumers;
mod data;
mod streams;
mod tags;

use std::sync::Arc;

use sluice_broker::Broker;

use crate::errors::ApiError;
use crate::value::{Fields, Value};

pub use consumers::subscribe_to_shard;

/// What an operation answers: a body, or nothing (void operations answer an empty body).
pub type OpResult = Result<Option<Value>, ApiError>;

/// Operations that exist in the Kinesis API and that Sluice refuses, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "StartStreamEncryption",
        "streams are not encrypted with KMS; encrypt the disk instead",
    ),
    ("StopStreamEncryption", "streams are not encrypted with KMS"),
    (
        "UpdateStreamMode",
        "every stream is PROVISIONED; resize it with UpdateShardCount",
    ),
    ("UpdateStreamWarmThroughput", "every stream is PROVISIONED"),
    (
        "UpdateMaxRecordSize",
        "the maximum record size is fixed when the stream is created (MaxRecordSizeInKiB)",
    ),
    (
        "EnableEnhancedMonitoring",
        "there is no CloudWatch; shard metrics are not collected",
    ),
    (
        "DisableEnhancedMonitoring",
        "there is no CloudWatch; shard metrics are not collected",
    ),
    (
        "PutResourcePolicy",
        "there is no IAM; access is whoever reaches the port",
    ),
    ("GetResourcePolicy", "there is no IAM"),
    ("DeleteResourcePolicy", "there is no IAM"),
    ("DescribeAccountSettings", "there are no account settings"),
    ("UpdateAccountSettings", "there are no account settings"),
];

/// Runs the operation named by `X-Amz-Target` (SubscribeToShard is handled by the router).
pub async fn dispatch(broker: &Arc<Broker>, op: &str, body: &Value) -> OpResult {
    let f = Fields::of(body)?;
    match op {
        "CreateStream" => streams::create(broker, &f).await,
        "DeleteStream" => streams::delete(broker, &f).await,
        "DescribeStream" => streams::describe(broker, &f).await,
        "DescribeStreamSummary" => streams::describe_summary(broker, &f).await,
        "ListStreams" => streams::list(broker, &f).await,
        "ListShards" => streams::list_shards(broker, &f).await,
        "SplitShard" => streams::split(broker, &f).await,
        "MergeShards" => streams::merge(broker, &f).await,
        "UpdateShardCount" => streams::update_shard_count(broker, &f).await,
        "IncreaseStreamRetentionPeriod" => streams::retention(broker, &f, true).await,
        "DecreaseStreamRetentionPeriod" => streams::retention(broker, &f, false).await,
        "DescribeLimits" => streams::describe_limits(broker).await,
        "AddTagsToStream" => tags::add(broker, &f).await,
        "RemoveTagsFromStream" => tags::remove(broker, &f).await,
        "ListTagsForStream" => tags::list(broker, &f).await,
        "TagResource" => tags::tag_resource(broker, &f).await,
        "UntagResource" => tags::untag_resource(broker, &f).await,
        "ListTagsForResource" => tags::list_for_resource(broker, &f).await,
        "PutRecord" => data::put_record(broker, &f).await,
        "PutRecords" => data::put_records(broker, &f).await,
        "GetShardIterator" => data::get_shard_iterator(broker, &f).await,
        "GetRecords" => data::get_records(broker, &f).await,
        "RegisterStreamConsumer" => consumers::register(broker, &f).await,
        "DescribeStreamConsumer" => consumers::describe(broker, &f).await,
        "ListStreamConsumers" => consumers::list(broker, &f).await,
        "DeregisterStreamConsumer" => consumers::deregister(broker, &f).await,
        other => match UNSUPPORTED.iter().find(|(name, _)| *name == other) {
            Some((name, why)) => Err(ApiError::unsupported(name, why)),
            None => Err(ApiError::new(
                "UnknownOperationException",
                format!("Unknown operation {other}"),
            )),
        },
    }
}

/// The stream a request names, by `StreamName` or `StreamARN`.
pub(crate) fn stream_name(broker: &Broker, f: &Fields<'_>) -> Result<String, ApiError> {
    if let Some(name) = f.opt_str("StreamName")? {
        check_name("streamName", name)?;
        return Ok(name.to_owned());
    }
    let arn = f
        .opt_str("StreamARN")?
        .ok_or_else(|| ApiError::invalid("Either StreamName or StreamARN should be provided."))?;
    broker
        .config()
        .manager
        .stream_name_from_arn(arn)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "StreamARN {arn} is not a stream ARN of this broker."
            ))
        })
}

/// Checks a stream, shard or consumer name against `[a-zA-Z0-9_.-]{1,128}`.
pub(crate) fn check_name(member: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128",
            name.chars().take(200).collect::<String>()
        )))
    }
}

/// An integer member within a range, as a `usize`.
pub(crate) fn opt_count(
    f: &Fields<'_>,
    member: &str,
    min: i128,
    max: i128,
) -> Result<Option<usize>, ApiError> {
    match f.opt_int(member)? {
        None => Ok(None),
        Some(n) if (min..=max).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at '{}' failed to satisfy constraint: Member must have value between {min} and {max}",
            crate::errors::lower_camel(member)
        ))),
    }
}
