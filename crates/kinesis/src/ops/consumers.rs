//! Enhanced fan-out: consumer registration and SubscribeToShard's event stream.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use sluice_broker::{Broker, ConsumerRef, ConsumerView, HeldBytes, SubscribeEvent};

use super::data::{children_value, record_value, starting_position};
use super::{OpResult, check_name, opt_count, stream_name};
use crate::errors::ApiError;
use crate::eventstream;
use crate::value::{Fields, Value};

fn consumer_value(c: &ConsumerView, with_stream: bool) -> Value {
    Value::map([
        ("ConsumerName", Value::str(&c.name)),
        ("ConsumerARN", Value::str(&c.arn)),
        ("ConsumerStatus", Value::str(c.status)),
        ("ConsumerCreationTimestamp", Value::Timestamp(c.created.0)),
        (
            "StreamARN",
            if with_stream {
                Value::str(&c.stream_arn)
            } else {
                Value::Null
            },
        ),
    ])
}

fn consumer_ref(b: &Broker, f: &Fields<'_>) -> Result<ConsumerRef, ApiError> {
    if let Some(arn) = f.opt_str("ConsumerARN")? {
        return Ok(ConsumerRef::Arn(arn.to_owned()));
    }
    let (Some(_), Some(name)) = (f.opt_str("StreamARN")?, f.opt_str("ConsumerName")?) else {
        return Err(ApiError::invalid(
            "Either ConsumerARN or both StreamARN and ConsumerName should be provided.",
        ));
    };
    Ok(ConsumerRef::Name {
        stream: stream_name(b, f)?,
        name: name.to_owned(),
    })
}

pub(super) async fn register(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let stream = stream_name(b, f)?;
    let name = f.str("ConsumerName")?;
    check_name("consumerName", name)?;
    let c = b.register_consumer(&stream, name).await?;
    Ok(Some(Value::map([("Consumer", consumer_value(&c, false))])))
}

pub(super) async fn describe(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let c = b.describe_consumer(&consumer_ref(b, f)?).await?;
    Ok(Some(Value::map([(
        "ConsumerDescription",
        consumer_value(&c, true),
    )])))
}

pub(super) async fn list(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    let stream = stream_name(b, f)?;
    let max = opt_count(f, "MaxResults", 1, 10_000)?.unwrap_or(100);
    let all = b.list_consumers(&stream).await?;
    let start = f.opt_str("NextToken")?.map(str::to_owned);
    let rest: Vec<&ConsumerView> = all
        .iter()
        .filter(|c| start.as_ref().is_none_or(|s| c.name > *s))
        .collect();
    let page: Vec<Value> = rest
        .iter()
        .take(max)
        .map(|c| consumer_value(c, false))
        .collect();
    let next = (rest.len() > max).then(|| rest[max - 1].name.clone());
    Ok(Some(Value::map([
        ("Consumers", Value::Array(page)),
        ("NextToken", Value::opt_str(next)),
    ])))
}

pub(super) async fn deregister(b: &Arc<Broker>, f: &Fields<'_>) -> OpResult {
    b.deregister_consumer(&consumer_ref(b, f)?).await?;
    Ok(None)
}

/// An encoded event-stream message and the subscription budget its event holds.
struct HeldMessage {
    bytes: Vec<u8>,
    _held: HeldBytes,
}

impl AsRef<[u8]> for HeldMessage {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// One event of SubscribeToShard as its payload value.
fn event_value(e: &SubscribeEvent) -> Value {
    Value::map([
        (
            "Records",
            Value::Array(e.records.iter().map(record_value).collect()),
        ),
        (
            "ContinuationSequenceNumber",
            Value::str(&e.continuation_sequence_number),
        ),
        (
            "MillisBehindLatest",
            Value::Int(i128::from(e.millis_behind_latest)),
        ),
        ("ChildShards", children_value(&e.child_shards)),
    ])
}

/// SubscribeToShard: checks the request, then returns the event-stream body (an
/// `initial-response` message, then one `SubscribeToShardEvent` per broker event).
/// `encode` writes a payload in the request's format, with its content type.
pub async fn subscribe_to_shard(
    b: &Arc<Broker>,
    body: &Value,
    encode: fn(&Value) -> Vec<u8>,
    content_type: &'static str,
) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + use<>, ApiError> {
    let f = Fields::of(body)?;
    let arn = f.str("ConsumerARN")?;
    let shard = f.str("ShardId")?;
    let sp = f
        .opt_struct("StartingPosition")?
        .ok_or_else(|| ApiError::missing("StartingPosition"))?;
    let position = starting_position(
        sp.str("Type")?,
        sp.opt_str("SequenceNumber")?,
        sp.opt_timestamp("Timestamp")?,
        "startingPosition.type",
    )?;
    let subscription = b.subscribe_consumer(arn, shard, position).await?;
    let initial = eventstream::event(
        "initial-response",
        content_type,
        &encode(&Value::Map(Vec::new())),
    );
    // The subscription reads its next event only when hyper polls the body for it, and
    // each message holds its event's bytes against the subscription budgets until hyper
    // has written it and drops it.
    let events = futures_util::stream::unfold(Some(subscription), move |s| async move {
        let mut s = s?;
        let msg = match s.next().await? {
            Ok(delivery) => {
                let bytes = eventstream::event(
                    "SubscribeToShardEvent",
                    content_type,
                    &encode(&event_value(&delivery.event)),
                );
                Bytes::from_owner(HeldMessage {
                    bytes,
                    _held: delivery.held,
                })
            }
            Err(e) => {
                let e = ApiError::from(e);
                if let Some(detail) = &e.detail {
                    tracing::error!(kind = e.kind, error = %detail, "subscription failed");
                }
                let payload = encode(&Value::map([("message", Value::str(&e.message))]));
                // An error ends the subscription.
                return Some((
                    Ok(Bytes::from(eventstream::exception(
                        e.kind,
                        content_type,
                        &payload,
                    ))),
                    None,
                ));
            }
        };
        Some((Ok(msg), Some(s)))
    });
    Ok(futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok(Bytes::from(initial))]),
        events,
    ))
}
