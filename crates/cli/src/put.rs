//! Writes: `put-record` and `put-records`.
//!
//! Input data is text, taken as its UTF-8 bytes: `--data hello` stores `hello`. (The AWS
//! CLI v2 wants base64 here unless told otherwise, a frequent surprise.) Binary data comes
//! from a file: `--data fileb://payload.bin`, or `"DataBase64"` instead of `"Data"` in a
//! `put-records` entry. `--records` takes the JSON inline or from `file://path`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sluice_proto::v1 as pb;

use crate::client::Client;
use crate::error::CliError;

/// `put-record` arguments.
#[derive(Debug, clap::Args)]
pub struct PutRecordArgs {
    /// The stream to write to.
    #[arg(long)]
    pub stream_name: String,
    /// The partition key: its MD5 picks the shard; one key's records keep their order.
    #[arg(long)]
    pub partition_key: String,
    /// The payload as text, or `fileb://PATH` for a file's raw bytes.
    #[arg(long)]
    pub data: String,
    /// A decimal 128-bit hash key that picks the shard instead of the partition key.
    #[arg(long)]
    pub explicit_hash_key: Option<String>,
}

/// `put-records` arguments.
#[derive(Debug, clap::Args)]
pub struct PutRecordsArgs {
    /// The stream to write to.
    #[arg(long)]
    pub stream_name: String,
    /// A JSON list of `{"Data": TEXT, "PartitionKey": K, "ExplicitHashKey": H}` (or
    /// `"DataBase64"` for binary), inline or as `file://PATH`.
    #[arg(long)]
    pub records: String,
}

/// `put-record`: `{"ShardId": ..., "SequenceNumber": ...}`.
pub async fn put_record(
    client: &mut Client,
    args: PutRecordArgs,
) -> Result<Option<Value>, CliError> {
    let data = data_argument(&args.data)?;
    let request = pb::PutRecordRequest {
        stream_name: args.stream_name,
        partition_key: args.partition_key,
        explicit_hash_key: args.explicit_hash_key,
        data: data.into(),
    };
    let reply = client
        .put_record(request)
        .await
        .map_err(|s| CliError::from_status("PutRecord", &s))?
        .into_inner();
    Ok(Some(json!({
        "ShardId": reply.shard_id,
        "SequenceNumber": reply.sequence_number,
    })))
}

/// `put-records`: `{"FailedRecordCount": N, "Records": [...]}`, one result per record in
/// request order. Failed records do not fail the command, as in the AWS CLI: check
/// `FailedRecordCount`.
pub async fn put_records(
    client: &mut Client,
    args: PutRecordsArgs,
) -> Result<Option<Value>, CliError> {
    let text = file_or_inline(&args.records)?;
    let records = parse_records(&text).map_err(CliError::Usage)?;
    let request = pb::PutRecordsRequest {
        stream_name: args.stream_name,
        records,
    };
    let reply = client
        .put_records(request)
        .await
        .map_err(|s| CliError::from_status("PutRecords", &s))?
        .into_inner();
    Ok(Some(put_records_output(&reply)))
}

/// The bytes of `--data`: the text itself, or a file's contents for `fileb://PATH`.
fn data_argument(data: &str) -> Result<Vec<u8>, CliError> {
    match data.strip_prefix("fileb://") {
        Some(path) => std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("cannot read --data file {path:?}: {e}"))),
        None => Ok(data.as_bytes().to_vec()),
    }
}

/// The text of `--records`: inline, or a file's contents for `file://PATH`.
fn file_or_inline(argument: &str) -> Result<String, CliError> {
    match argument.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read --records file {path:?}: {e}"))),
        None => Ok(argument.to_owned()),
    }
}

/// Parses the `--records` JSON list.
fn parse_records(text: &str) -> Result<Vec<pb::PutRecordsRequestEntry>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("--records is not valid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("--records must be a JSON list of records".to_owned());
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(fields) => {
                parse_entry(fields).map_err(|e| format!("record {index}: {e}"))
            }
            _ => Err(format!("record {index}: must be a JSON object")),
        })
        .collect()
}

/// One entry of `--records`.
fn parse_entry(fields: &Map<String, Value>) -> Result<pb::PutRecordsRequestEntry, String> {
    const KNOWN: [&str; 4] = ["Data", "DataBase64", "PartitionKey", "ExplicitHashKey"];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {unknown:?} (expected one of {KNOWN:?})"
        ));
    }
    let string = |name: &str| -> Result<Option<String>, String> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    let data = match (string("Data")?, string("DataBase64")?) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(encoded)) => STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| format!("DataBase64 is not valid base64: {e}"))?,
        (Some(_), Some(_)) => return Err("give Data or DataBase64, not both".to_owned()),
        (None, None) => return Err("Data is required".to_owned()),
    };
    let partition_key = string("PartitionKey")?.ok_or("PartitionKey is required")?;
    Ok(pb::PutRecordsRequestEntry {
        partition_key,
        explicit_hash_key: string("ExplicitHashKey")?,
        data: data.into(),
    })
}

/// The PutRecords object: successes carry shard and number, failures their error.
fn put_records_output(reply: &pb::PutRecordsResponse) -> Value {
    let records: Vec<Value> = reply
        .records
        .iter()
        .map(|r| match (&r.error_code, &r.error_message) {
            (Some(code), message) => json!({
                "ErrorCode": code,
                "ErrorMessage": message.clone().unwrap_or_default(),
            }),
            (None, _) => json!({ "SequenceNumber": r.sequence_number, "ShardId": r.shard_id }),
        })
        .collect();
    json!({ "FailedRecordCount": reply.failed_record_count, "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_text_base64_and_explicit_hash_key() {
        let records = parse_records(
            r#"[{"Data": "test1", "PartitionKey": "k"},
                {"DataBase64": "/wA=", "PartitionKey": "k2", "ExplicitHashKey": "7"}]"#,
        )
        .unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(&records[0].data[..], b"test1");
        assert_eq!(records[0].partition_key, "k");
        assert_eq!(records[0].explicit_hash_key, None);
        assert_eq!(&records[1].data[..], &[0xff, 0x00]);
        assert_eq!(records[1].explicit_hash_key.as_deref(), Some("7"));
    }

    #[test]
    fn malformed_records_name_the_problem() {
        let check = |text: &str, expected: &str| {
            let error = parse_records(text).unwrap_err();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        };
        check("nope", "not valid JSON");
        check(r#"{"Data": "x"}"#, "JSON list");
        check(r#"[{"Data": "x"}]"#, "record 0: PartitionKey is required");
        check(r#"[{"PartitionKey": "k"}]"#, "Data is required");
        check(
            r#"[{"Data": 1, "PartitionKey": "k"}]"#,
            "Data must be a string",
        );
        check(
            r#"[{"Data": "x", "PartitionKey": "k", "Foo": 1}]"#,
            "unknown field",
        );
        check(r#"[1]"#, "must be a JSON object");
        check(
            r#"[{"DataBase64": "!!", "PartitionKey": "k"}]"#,
            "not valid base64",
        );
    }

    #[test]
    fn records_come_from_a_file_with_the_file_prefix() {
        let dir = std::env::temp_dir().join(format!("sluice-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.json");
        std::fs::write(&path, r#"[{"Data": "a", "PartitionKey": "k"}]"#).unwrap();
        let text = file_or_inline(&format!("file://{}", path.display())).unwrap();
        assert_eq!(parse_records(&text).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
        let error = file_or_inline("file:///no/such/file").unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn data_is_text_unless_it_names_a_binary_file() {
        assert_eq!(data_argument("hello").unwrap(), b"hello");
        assert_eq!(
            data_argument("fileb:///no/such/file")
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn put_records_output_shows_successes_and_failures_in_order() {
        let reply = pb::PutRecordsResponse {
            failed_record_count: 1,
            records: vec![
                pb::PutRecordsResultEntry {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: "1".into(),
                    error_code: None,
                    error_message: None,
                },
                pb::PutRecordsResultEntry {
                    shard_id: String::new(),
                    sequence_number: String::new(),
                    error_code: Some("InternalFailure".into()),
                    error_message: Some("boom".into()),
                },
            ],
        };
        assert_eq!(
            put_records_output(&reply),
            json!({
                "FailedRecordCount": 1,
                "Records": [
                    {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "boom"},
                ],
            })
        );
    }
}
