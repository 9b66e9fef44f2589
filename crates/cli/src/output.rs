//! The JSON the CLI prints: the AWS CLI's shapes and PascalCase field names, so scripts
//! and habits written for `aws kinesis` carry over.
//!
//! One difference on purpose: record data is shown as text when it is valid UTF-8. The
//! AWS CLI prints only base64, which is the most common complaint about it. Data that is
//! not UTF-8 is printed as base64 with `"DataEncoding": "base64"` next to it, so output is
//! never ambiguous; `--data-encoding base64` prints base64 always, as the AWS CLI does.
//! Absent optional fields are left out, as the AWS CLI leaves out nulls.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sluice_proto::v1 as pb;

use crate::error::CliError;
use crate::timestamp;

/// How record data is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataEncoding {
    /// Text when the bytes are valid UTF-8, base64 otherwise (and then marked).
    Auto,
    /// Always base64, as the AWS CLI prints it.
    Base64,
}

/// Prints `value` as indented JSON on stdout.
pub fn print(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.to_string()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::Output(e.to_string()))
}

/// A record as GetRecords prints it.
pub fn record(record: &pb::Record, encoding: DataEncoding) -> Value {
    let mut fields = Map::new();
    fields.insert("SequenceNumber".into(), json!(record.sequence_number));
    fields.insert(
        "ApproximateArrivalTimestamp".into(),
        json!(timestamp::format_ms(
            record.approximate_arrival_timestamp_ms
        )),
    );
    insert_data(&mut fields, &record.data, encoding);
    fields.insert("PartitionKey".into(), json!(record.partition_key));
    Value::Object(fields)
}

/// Adds `Data` (and `DataEncoding` when `auto` had to fall back to base64).
pub fn insert_data(fields: &mut Map<String, Value>, data: &[u8], encoding: DataEncoding) {
    match (encoding, std::str::from_utf8(data)) {
        (DataEncoding::Auto, Ok(text)) => {
            fields.insert("Data".into(), json!(text));
        }
        (DataEncoding::Auto, Err(_)) => {
            fields.insert("Data".into(), json!(STANDARD.encode(data)));
            fields.insert("DataEncoding".into(), json!("base64"));
        }
        (DataEncoding::Base64, _) => {
            fields.insert("Data".into(), json!(STANDARD.encode(data)));
        }
    }
}

/// A shard as DescribeStream and ListShards print it.
pub fn shard(shard: &pb::Shard) -> Value {
    let mut fields = Map::new();
    fields.insert("ShardId".into(), json!(shard.shard_id));
    if let Some(parent) = &shard.parent_shard_id {
        fields.insert("ParentShardId".into(), json!(parent));
    }
    if let Some(adjacent) = &shard.adjacent_parent_shard_id {
        fields.insert("AdjacentParentShardId".into(), json!(adjacent));
    }
    fields.insert(
        "HashKeyRange".into(),
        hash_key_range(shard.hash_key_range.as_ref()),
    );
    let mut range = Map::new();
    if let Some(sequence) = &shard.sequence_number_range {
        range.insert(
            "StartingSequenceNumber".into(),
            json!(sequence.starting_sequence_number),
        );
        if let Some(end) = &sequence.ending_sequence_number {
            range.insert("EndingSequenceNumber".into(), json!(end));
        }
    }
    fields.insert("SequenceNumberRange".into(), Value::Object(range));
    Value::Object(fields)
}

/// A child shard as GetRecords and tail report it.
pub fn child_shard(child: &pb::ChildShard) -> Value {
    json!({
        "ShardId": child.shard_id,
        "ParentShards": child.parent_shards,
        "HashKeyRange": hash_key_range(child.hash_key_range.as_ref()),
    })
}

/// A hash-key range; the server always sends one, an absent one prints as empty.
pub fn hash_key_range(range: Option<&pb::HashKeyRange>) -> Value {
    match range {
        Some(range) => json!({
            "StartingHashKey": range.starting_hash_key,
            "EndingHashKey": range.ending_hash_key,
        }),
        None => json!({}),
    }
}

/// A stream status as the AWS CLI spells it (`ACTIVE`).
pub fn stream_status(status: i32) -> String {
    match pb::StreamStatus::try_from(status) {
        Ok(status) => status
            .as_str_name()
            .trim_start_matches("STREAM_STATUS_")
            .to_owned(),
        Err(_) => format!("UNKNOWN({status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_record(data: &[u8]) -> pb::Record {
        pb::Record {
            sequence_number: "49".into(),
            approximate_arrival_timestamp_ms: 1_700_000_000_250,
            data: data.to_vec().into(),
            partition_key: "k".into(),
        }
    }

    #[test]
    fn utf8_data_prints_as_text_with_aws_field_names() {
        let value = record(&sample_record(b"test1"), DataEncoding::Auto);
        assert_eq!(
            value,
            json!({
                "SequenceNumber": "49",
                "ApproximateArrivalTimestamp": "2023-11-14T22:13:20.250+00:00",
                "Data": "test1",
                "PartitionKey": "k",
            })
        );
    }

    #[test]
    fn binary_data_prints_as_marked_base64_in_auto_mode() {
        let value = record(&sample_record(&[0xff, 0x00, 0x01]), DataEncoding::Auto);
        assert_eq!(value["Data"], json!("/wAB"));
        assert_eq!(value["DataEncoding"], json!("base64"));
    }

    #[test]
    fn base64_mode_prints_base64_always_and_unmarked_like_the_aws_cli() {
        let value = record(&sample_record(b"test1"), DataEncoding::Base64);
        assert_eq!(value["Data"], json!("dGVzdDE="));
        assert!(value.get("DataEncoding").is_none());
    }

    #[test]
    fn shard_leaves_out_absent_parents_and_ending_number() {
        let open = pb::Shard {
            shard_id: "shardId-000000000002".into(),
            parent_shard_id: Some("shardId-000000000000".into()),
            adjacent_parent_shard_id: None,
            hash_key_range: Some(pb::HashKeyRange {
                starting_hash_key: "0".into(),
                ending_hash_key: "9".into(),
            }),
            sequence_number_range: Some(pb::SequenceNumberRange {
                starting_sequence_number: "100".into(),
                ending_sequence_number: None,
            }),
        };
        assert_eq!(
            shard(&open),
            json!({
                "ShardId": "shardId-000000000002",
                "ParentShardId": "shardId-000000000000",
                "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "9"},
                "SequenceNumberRange": {"StartingSequenceNumber": "100"},
            })
        );
    }

    #[test]
    fn child_shard_lists_its_parents() {
        let child = pb::ChildShard {
            shard_id: "shardId-000000000003".into(),
            parent_shards: vec!["shardId-000000000001".into(), "shardId-000000000002".into()],
            hash_key_range: None,
        };
        assert_eq!(
            child_shard(&child),
            json!({
                "ShardId": "shardId-000000000003",
                "ParentShards": ["shardId-000000000001", "shardId-000000000002"],
                "HashKeyRange": {},
            })
        );
    }

    #[test]
    fn stream_status_drops_the_proto_prefix() {
        assert_eq!(stream_status(pb::StreamStatus::Active as i32), "ACTIVE");
        assert_eq!(stream_status(pb::StreamStatus::Creating as i32), "CREATING");
        assert_eq!(stream_status(99), "UNKNOWN(99)");
    }
}
