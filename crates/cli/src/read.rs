//! Reads: `get-shard-iterator` and `get-records`.
//!
//! The starting position is checked here before anything is sent, with the rule Kinesis
//! applies: AT_/AFTER_SEQUENCE_NUMBER need `--starting-sequence-number`, AT_TIMESTAMP
//! needs `--timestamp`, and neither goes with any other type.

use serde_json::{Map, Value, json};
use sluice_proto::v1 as pb;

use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, DataEncoding};
use crate::timestamp;

/// The iterator types, spelled as in Kinesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IteratorType {
    /// The oldest retained record.
    #[value(name = "TRIM_HORIZON")]
    TrimHorizon,
    /// Only records written after the iterator is made.
    #[value(name = "LATEST")]
    Latest,
    /// The record with the given number, inclusive.
    #[value(name = "AT_SEQUENCE_NUMBER")]
    AtSequenceNumber,
    /// Strictly after the record with the given number.
    #[value(name = "AFTER_SEQUENCE_NUMBER")]
    AfterSequenceNumber,
    /// The first record that arrived at or after the given time.
    #[value(name = "AT_TIMESTAMP")]
    AtTimestamp,
}

/// `get-shard-iterator` arguments.
#[derive(Debug, clap::Args)]
pub struct GetShardIteratorArgs {
    /// The stream.
    #[arg(long)]
    pub stream_name: String,
    /// The shard to read, `shardId-000000000000`.
    #[arg(long)]
    pub shard_id: String,
    /// Where to start.
    #[arg(long, value_enum)]
    pub shard_iterator_type: IteratorType,
    /// The sequence number for AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER.
    #[arg(long, conflicts_with = "timestamp")]
    pub starting_sequence_number: Option<String>,
    /// The time for AT_TIMESTAMP: epoch seconds (decimals allowed) or RFC 3339.
    #[arg(long)]
    pub timestamp: Option<String>,
}

/// `get-records` arguments.
#[derive(Debug, clap::Args)]
pub struct GetRecordsArgs {
    /// A token from get-shard-iterator or from a previous get-records.
    #[arg(long)]
    pub shard_iterator: String,
    /// The most records to return, 1 to 10000.
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `get-shard-iterator`: `{"ShardIterator": ...}`.
pub async fn get_shard_iterator(
    client: &mut Client,
    args: GetShardIteratorArgs,
) -> Result<Option<Value>, CliError> {
    let position = starting_position(
        args.shard_iterator_type,
        args.starting_sequence_number,
        args.timestamp.as_deref(),
    )
    .map_err(CliError::Usage)?;
    let request = pb::GetShardIteratorRequest {
        stream_name: args.stream_name,
        shard_id: args.shard_id,
        starting_position: Some(position),
    };
    let reply = client
        .get_shard_iterator(request)
        .await
        .map_err(|s| CliError::from_status("GetShardIterator", &s))?
        .into_inner();
    Ok(Some(json!({ "ShardIterator": reply.shard_iterator })))
}

/// `get-records`: `{"Records": [...], "NextShardIterator": ..., "MillisBehindLatest": N}`,
/// plus `"ChildShards"` at the end of a closed shard (where `NextShardIterator` is absent).
pub async fn get_records(
    client: &mut Client,
    args: GetRecordsArgs,
    encoding: DataEncoding,
) -> Result<Option<Value>, CliError> {
    let request = pb::GetRecordsRequest {
        shard_iterator: args.shard_iterator,
        limit: args.limit,
    };
    let reply = client
        .get_records(request)
        .await
        .map_err(|s| CliError::from_status("GetRecords", &s))?
        .into_inner();
    Ok(Some(get_records_output(&reply, encoding)))
}

/// The proto starting position for an iterator type and the value it needs.
pub fn starting_position(
    kind: IteratorType,
    sequence_number: Option<String>,
    timestamp_text: Option<&str>,
) -> Result<pb::StartingPosition, String> {
    let name = kind_name(kind);
    let needs_number = matches!(
        kind,
        IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber
    );
    let needs_time = kind == IteratorType::AtTimestamp;
    match (&sequence_number, needs_number) {
        (None, true) => return Err(format!("{name} needs --starting-sequence-number")),
        (Some(_), false) => {
            return Err(format!(
                "--starting-sequence-number does not go with {name}"
            ));
        }
        _ => {}
    }
    let timestamp_ms = match (timestamp_text, needs_time) {
        (None, true) => return Err(format!("{name} needs --timestamp")),
        (Some(_), false) => return Err(format!("--timestamp does not go with {name}")),
        (Some(text), true) => Some(timestamp::parse_ms(text)?),
        (None, false) => None,
    };
    Ok(pb::StartingPosition {
        r#type: proto_kind(kind) as i32,
        sequence_number,
        timestamp_ms,
    })
}

/// The GetRecords object.
fn get_records_output(reply: &pb::GetRecordsResponse, encoding: DataEncoding) -> Value {
    let mut fields = Map::new();
    let records: Vec<Value> = reply
        .records
        .iter()
        .map(|r| output::record(r, encoding))
        .collect();
    fields.insert("Records".into(), Value::Array(records));
    if let Some(next) = &reply.next_shard_iterator {
        fields.insert("NextShardIterator".into(), json!(next));
    }
    fields.insert(
        "MillisBehindLatest".into(),
        json!(reply.millis_behind_latest),
    );
    if !reply.child_shards.is_empty() {
        let children: Vec<Value> = reply.child_shards.iter().map(output::child_shard).collect();
        fields.insert("ChildShards".into(), Value::Array(children));
    }
    Value::Object(fields)
}

fn kind_name(kind: IteratorType) -> &'static str {
    proto_kind(kind)
        .as_str_name()
        .trim_start_matches("SHARD_ITERATOR_TYPE_")
}

fn proto_kind(kind: IteratorType) -> pb::ShardIteratorType {
    match kind {
        IteratorType::TrimHorizon => pb::ShardIteratorType::TrimHorizon,
        IteratorType::Latest => pb::ShardIteratorType::Latest,
        IteratorType::AtSequenceNumber => pb::ShardIteratorType::AtSequenceNumber,
        IteratorType::AfterSequenceNumber => pb::ShardIteratorType::AfterSequenceNumber,
        IteratorType::AtTimestamp => pb::ShardIteratorType::AtTimestamp,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: GetShardIteratorArgs,
    }

    fn parse(extra: &[&str]) -> Result<GetShardIteratorArgs, clap::Error> {
        let base = [
            "x",
            "--stream-name",
            "s",
            "--shard-id",
            "shardId-000000000000",
        ];
        Wrapper::try_parse_from(base.iter().chain(extra)).map(|w| w.args)
    }

    fn position(extra: &[&str]) -> Result<pb::StartingPosition, String> {
        let args = parse(extra).unwrap();
        starting_position(
            args.shard_iterator_type,
            args.starting_sequence_number,
            args.timestamp.as_deref(),
        )
    }

    #[test]
    fn iterator_types_use_the_kinesis_spelling() {
        let p = position(&["--shard-iterator-type", "TRIM_HORIZON"]).unwrap();
        assert_eq!(p.r#type, pb::ShardIteratorType::TrimHorizon as i32);
        let p = position(&[
            "--shard-iterator-type",
            "AFTER_SEQUENCE_NUMBER",
            "--starting-sequence-number",
            "42",
        ])
        .unwrap();
        assert_eq!(p.r#type, pb::ShardIteratorType::AfterSequenceNumber as i32);
        assert_eq!(p.sequence_number.as_deref(), Some("42"));
        assert!(parse(&["--shard-iterator-type", "trim-horizon"]).is_err());
    }

    #[test]
    fn at_timestamp_takes_epoch_seconds_or_rfc3339() {
        let p = position(&[
            "--shard-iterator-type",
            "AT_TIMESTAMP",
            "--timestamp",
            "1700000000.5",
        ])
        .unwrap();
        assert_eq!(p.timestamp_ms, Some(1_700_000_000_500));
        let p = position(&[
            "--shard-iterator-type",
            "AT_TIMESTAMP",
            "--timestamp",
            "2023-11-14T22:13:20Z",
        ])
        .unwrap();
        assert_eq!(p.timestamp_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn position_values_must_match_the_type() {
        let check = |extra: &[&str], expected: &str| {
            assert_eq!(position(extra).unwrap_err(), expected);
        };
        check(
            &["--shard-iterator-type", "AT_SEQUENCE_NUMBER"],
            "AT_SEQUENCE_NUMBER needs --starting-sequence-number",
        );
        check(
            &["--shard-iterator-type", "AT_TIMESTAMP"],
            "AT_TIMESTAMP needs --timestamp",
        );
        check(
            &[
                "--shard-iterator-type",
                "LATEST",
                "--starting-sequence-number",
                "1",
            ],
            "--starting-sequence-number does not go with LATEST",
        );
        check(
            &["--shard-iterator-type", "TRIM_HORIZON", "--timestamp", "1"],
            "--timestamp does not go with TRIM_HORIZON",
        );
        // Both values at once is refused by the parser itself.
        assert!(
            parse(&[
                "--shard-iterator-type",
                "AT_TIMESTAMP",
                "--timestamp",
                "1",
                "--starting-sequence-number",
                "1"
            ])
            .is_err()
        );
    }

    #[test]
    fn get_records_output_leaves_out_a_missing_next_iterator_and_empty_children() {
        let open = pb::GetRecordsResponse {
            records: Vec::new(),
            next_shard_iterator: Some("it".into()),
            millis_behind_latest: 0,
            child_shards: Vec::new(),
        };
        assert_eq!(
            get_records_output(&open, DataEncoding::Auto),
            json!({"Records": [], "NextShardIterator": "it", "MillisBehindLatest": 0})
        );
        let closed = pb::GetRecordsResponse {
            records: Vec::new(),
            next_shard_iterator: None,
            millis_behind_latest: 0,
            child_shards: vec![pb::ChildShard {
                shard_id: "shardId-000000000001".into(),
                parent_shards: vec!["shardId-000000000000".into()],
                hash_key_range: None,
            }],
        };
        let value = get_records_output(&closed, DataEncoding::Auto);
        assert!(value.get("NextShardIterator").is_none());
        assert_eq!(
            value["ChildShards"][0]["ShardId"],
            json!("shardId-000000000001")
        );
    }
}
