//! Stream and shard administration: create, delete, describe, list, reshard, retention,
//! limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sluice_broker::{Broker, CreateStream, ShardView, StreamStatus, TimestampMs, status_name};

use super::{OpResult, check_name, opt_count, stream_name};
use crate::errors::ApiError;
use crate::value::{Fields, Value};

/// How long a ListShards or ListStreams NextToken stays valid (Kinesis: 300 s).
const NEXT_TOKEN_TTL_MS: u64 = 300_000;

fn provisioned() -> Value {
    Value::map([("StreamMode", Value::str("PROVISIONED"))])
}

fn no_monitoring() -> Value {
    Value::Array(vec![Value::map([(
        "ShardLevelMetrics",
        Value::Array(Vec::new()),
    )])])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A shard as DescribeStream and ListShards write it.
pub(crate) fn shard_value(s: &ShardView) -> Value {
    Value::map([
        ("ShardId", Value::str(&s.shard_id)),
        (
            "ParentShardId",
            Value::opt_str(s.parent_shard_id.as_deref()),
        ),
        (
            "AdjacentParentShardId",
            Value::opt_str(s.adjacent_parent_shard_id.as_deref()),
        ),
        (
            "HashKeyRange",
            Value::map([
                (
                    "StartingHashKey",
                    Value::str(&s.hash_key_range.starting_hash_key),
                ),
                (
                    "EndingHashKey",
                    Value::str(&s.hash_key_range.ending_hash_key),
                ),
            ]),
        ),
        (
            "SequenceNumberRange",
            Value::map([
                (
                    "StartingSequenceNumber",
                    Value::str(&s.starting_sequence_number),
                ),
                (
                    "EndingSequenceNumber",
                    Value::opt_str(s.ending_sequence_number.as_deref()),
                ),
            ]),
        ),
    ])
}

pub(super) async fn create(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = f.str("StreamName")?;
    check_name("streamName", name)?;
    if let Some(mode) = f.opt_struct("StreamModeDetails")? {
        if mode.opt_str("StreamMode")? == Some("ON_DEMAND") {
            return Err(ApiError::unsupported(
                "ON_DEMAND stream mode",
                "every stream is PROVISIONED; give a ShardCount",
            ));
        }
    }
    let count = opt_count(f, "ShardCount", 1, 100_000)?
        .ok_or_else(|| ApiError::invalid("ShardCount is required for a PROVISIONED stream."))?;
    let mut req = CreateStream::new(name, count as u32);
    if let Some(kib) = opt_count(f, "MaxRecordSizeInKiB", 1024, 10_240)? {
        req.max_record_size_kib = kib as u32;
    }
    if let Some(tags) = f.opt_string_map("Tags")? {
        req.tags = tags.into_iter().collect::<BTreeMap<_, _>>();
    }
    b.create_stream(req).await?;
    Ok(None)
}

pub(super) async fn delete(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let enforce = f.opt_bool("EnforceConsumerDeletion")?.unwrap_or(false);
    b.delete_stream_with_consumers(&name, enforce).await?;
    Ok(None)
}

pub(super) async fn describe(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let limit = opt_count(f, "Limit", 1, 10_000)?;
    let start = f.opt_str("ExclusiveStartShardId")?;
    let d = b.describe_stream(&name, limit, start).await?;
    Ok(Some(Value::map([(
        "StreamDescription",
        Value::map([
            ("StreamName", Value::str(&d.name)),
            ("StreamARN", Value::str(&d.arn)),
            ("StreamStatus", Value::str(status_name(d.status))),
            ("StreamModeDetails", provisioned()),
            (
                "Shards",
                Value::Array(if d.status == StreamStatus::Creating {
                    Vec::new()
                } else {
                    d.shards.iter().map(shard_value).collect()
                }),
            ),
            ("HasMoreShards", Value::Bool(d.has_more_shards)),
            (
                "RetentionPeriodHours",
                Value::Int(i128::from(d.retention_hours)),
            ),
            ("StreamCreationTimestamp", Value::Timestamp(d.created.0)),
            ("EnhancedMonitoring", no_monitoring()),
            ("EncryptionType", Value::str("NONE")),
        ]),
    )])))
}

pub(super) async fn describe_summary(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let d = b.describe_stream(&name, Some(1), None).await?;
    let consumers = b.list_consumers(&name).await.map(|c| c.len()).unwrap_or(0);
    Ok(Some(Value::map([(
        "StreamDescriptionSummary",
        Value::map([
            ("StreamName", Value::str(&d.name)),
            ("StreamARN", Value::str(&d.arn)),
            ("StreamStatus", Value::str(status_name(d.status))),
            ("StreamModeDetails", provisioned()),
            (
                "RetentionPeriodHours",
                Value::Int(i128::from(d.retention_hours)),
            ),
            ("StreamCreationTimestamp", Value::Timestamp(d.created.0)),
            ("EnhancedMonitoring", no_monitoring()),
            ("EncryptionType", Value::str("NONE")),
            ("OpenShardCount", Value::Int(d.open_shard_count as i128)),
            ("ConsumerCount", Value::Int(consumers as i128)),
            (
                "MaxRecordSizeInKiB",
                Value::Int(i128::from(d.max_record_size_kib)),
            ),
        ]),
    )])))
}

/// A NextToken: what to continue after, and when it was issued, base64url.
fn make_token(kind: &str, stream: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}\n{}\n{stream}\n{after}", now_ms()))
}

/// Reads a NextToken of `kind`: `(stream, after)`.
fn read_token(kind: &str, token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::invalid(format!("NextToken {token} is invalid."));
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let parts: Vec<&str> = text.splitn(4, '\n').collect();
    let [k, issued, stream, after] = parts[..] else {
        return Err(bad());
    };
    let issued: u64 = issued.parse().map_err(|_| bad())?;
    if k != kind {
        return Err(bad());
    }
    if now_ms().saturating_sub(issued) > NEXT_TOKEN_TTL_MS {
        return Err(ApiError::new(
            "ExpiredNextTokenException",
            format!("The NextToken {token} has expired."),
        ));
    }
    Ok((stream.to_owned(), after.to_owned()))
}

pub(super) async fn list(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let limit = opt_count(f, "Limit", 1, 10_000)?;
    let start = f.opt_str("ExclusiveStartStreamName")?;
    let token = f.opt_str("NextToken")?;
    let after = match (start, token) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "ExclusiveStartStreamName and NextToken cannot both be given.",
            ));
        }
        (Some(s), None) => Some(s.to_owned()),
        (None, Some(t)) => Some(read_token("streams", t)?.1),
        (None, None) => None,
    };
    let page = b.list_streams(after.as_deref(), limit).await?;
    let next = if page.has_more {
        page.streams
            .last()
            .map(|s| make_token("streams", "", &s.name))
    } else {
        None
    };
    Ok(Some(Value::map([
        (
            "StreamNames",
            Value::Array(page.streams.iter().map(|s| Value::str(&s.name)).collect()),
        ),
        ("HasMoreStreams", Value::Bool(page.has_more)),
        ("NextToken", Value::opt_str(next)),
        (
            "StreamSummaries",
            Value::Array(
                page.streams
                    .iter()
                    .map(|s| {
                        Value::map([
                            ("StreamName", Value::str(&s.name)),
                            ("StreamARN", Value::str(&s.arn)),
                            ("StreamStatus", Value::str(status_name(s.status))),
                            ("StreamModeDetails", provisioned()),
                            ("StreamCreationTimestamp", Value::Timestamp(s.created.0)),
                        ])
                    })
                    .collect(),
            ),
        ),
    ])))
}

/// Which shards a ListShards ShardFilter keeps.
enum Filter {
    All,
    After(String),
    OpenAt(u64),
    OpenFrom(u64),
    Latest,
}

fn shard_filter(f: &Fields<'_>) -> Result<Filter, ApiError> {
    let Some(sf) = f.opt_struct("ShardFilter")? else {
        return Ok(Filter::All);
    };
    let kind = sf.str("Type")?;
    let ts = || {
        sf.opt_timestamp("Timestamp")?
            .ok_or_else(|| ApiError::invalid(format!("ShardFilter type {kind} needs a Timestamp.")))
    };
    Ok(match kind {
        "AFTER_SHARD_ID" => Filter::After(
            sf.opt_str("ShardId")?
                .ok_or_else(|| {
                    ApiError::invalid("ShardFilter type AFTER_SHARD_ID needs a ShardId.")
                })?
                .to_owned(),
        ),
        "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" => Filter::All,
        "AT_LATEST" => Filter::Latest,
        "AT_TIMESTAMP" => Filter::OpenAt(ts()?),
        "FROM_TIMESTAMP" => Filter::OpenFrom(ts()?),
        other => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]"
            )));
        }
    })
}

fn keep(filter: &Filter, s: &ShardView) -> bool {
    let closed = s.closed.map(|c: TimestampMs| c.0);
    match filter {
        Filter::All | Filter::After(_) => true,
        Filter::Latest => closed.is_none(),
        Filter::OpenAt(t) => s.created.0 <= *t && closed.is_none_or(|c| c > *t),
        Filter::OpenFrom(t) => closed.is_none_or(|c| c >= *t),
    }
}

pub(super) async fn list_shards(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let max = opt_count(f, "MaxResults", 1, 10_000)?
        .unwrap_or(1000)
        .min(1000);
    let token = f.opt_str("NextToken")?;
    let (name, mut after) = match token {
        Some(t) => {
            if f.opt_str("StreamName")?.is_some() || f.opt_str("StreamARN")?.is_some() {
                return Err(ApiError::invalid(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let (stream, after) = read_token("shards", t)?;
            (stream, Some(after))
        }
        None => (
            stream_name(b, f)?,
            f.opt_str("ExclusiveStartShardId")?.map(str::to_owned),
        ),
    };
    let filter = shard_filter(f)?;
    if let Filter::After(id) = &filter {
        after = Some(id.clone());
    }
    let mut shards = Vec::new();
    let mut cursor = after;
    // Page through the broker until `max` shards pass the filter or the shards run out.
    loop {
        let page = b.list_shards(&name, cursor.as_deref(), Some(1000)).await?;
        for s in page.shards.iter().filter(|s| keep(&filter, s)) {
            if shards.len() == max {
                break;
            }
            shards.push(s.clone());
        }
        match page.next_exclusive_start_shard_id {
            Some(next) if shards.len() < max => cursor = Some(next),
            _ => break,
        }
    }
    let more = match shards.last() {
        Some(last) if shards.len() == max => {
            let rest = b
                .list_shards(&name, Some(&last.shard_id), Some(1000))
                .await?;
            rest.shards.iter().any(|s| keep(&filter, s))
        }
        _ => false,
    };
    let next = if more {
        shards
            .last()
            .map(|s| make_token("shards", &name, &s.shard_id))
    } else {
        None
    };
    Ok(Some(Value::map([
        (
            "Shards",
            Value::Array(shards.iter().map(shard_value).collect()),
        ),
        ("NextToken", Value::opt_str(next)),
    ])))
}

pub(super) async fn split(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let shard = f.str("ShardToSplit")?;
    let key = f.str("NewStartingHashKey")?;
    b.split_shard(&name, shard, key).await?;
    Ok(None)
}

pub(super) async fn merge(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    b.merge_shards(
        &name,
        f.str("ShardToMerge")?,
        f.str("AdjacentShardToMerge")?,
    )
    .await?;
    Ok(None)
}

pub(super) async fn update_shard_count(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let name = stream_name(b, f)?;
    let target = opt_count(f, "TargetShardCount", 1, 100_000)?
        .ok_or_else(|| ApiError::missing("TargetShardCount"))?;
    match f.str("ScalingType")? {
        "UNIFORM_SCALING" => {}
        other => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]"
            )));
        }
    }
    let out = b.update_shard_count(&name, target as u32).await?;
    Ok(Some(Value::map([
        ("StreamName", Value::str(&name)),
        (
            "CurrentShardCount",
            Value::Int(i128::from(out.current_shard_count)),
        ),
        (
            "TargetShardCount",
            Value::Int(i128::from(out.target_shard_count)),
        ),
        (
            "StreamARN",
            Value::str(b.config().manager.stream_arn(&name)),
        ),
    ])))
}

pub(super) async fn retention(b: &Arc<Broker>, f: &Fields<'_>, increase: bool) -> OpResult {
    let name = stream_name(b, f)?;
    let hours = f
        .opt_int("RetentionPeriodHours")?
        .ok_or_else(|| ApiError::missing("RetentionPeriodHours"))?;
    let hours = u32::try_from(hours)
        .map_err(|_| ApiError::invalid(format!("RetentionPeriodHours {hours} is out of range.")))?;
    if increase {
        b.increase_retention(&name, hours).await?;
    } else {
        b.decrease_retention(&name, hours).await?;
    }
    Ok(None)
}

pub(super) async fn describe_limits(b: &Arc<Broker>) -> OpResult {
    let mut open = 0usize;
    let mut after: Option<String> = None;
    loop {
        let page = b.list_streams(after.as_deref(), Some(100)).await?;
        for s in &page.streams {
            if let Ok(d) = b.describe_stream(&s.name, Some(1), None).await {
                open += d.open_shard_count;
            }
        }
        match (page.has_more, page.streams.last()) {
            (true, Some(last)) => after = Some(last.name.clone()),
            _ => break,
        }
    }
    Ok(Some(Value::map([
        (
            "ShardLimit",
            Value::Int(i128::from(b.config().manager.open_shards_max)),
        ),
        ("OpenShardCount", Value::Int(open as i128)),
        ("OnDemandStreamCount", Value::Int(0)),
        ("OnDemandStreamCountLimit", Value::Int(0)),
    ])))
}
