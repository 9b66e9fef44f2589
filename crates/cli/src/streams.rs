//! Stream administration: `create-stream`, `delete-stream`, `describe-stream`,
//! `list-streams` and `list-shards`.
//!
//! The listing commands follow the server's pages to the end and print one answer, as the
//! AWS CLI's automatic pagination does; the page loops are bounded so a server that keeps
//! saying "more" cannot spin the client forever.

use serde_json::{Value, json};
use sluice_proto::v1 as pb;

use crate::client::Client;
use crate::error::CliError;
use crate::output;
use crate::timestamp;

/// The most pages one listing follows (at the server's page sizes, millions of items).
const PAGES_MAX: usize = 10_000;

/// `create-stream` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateStreamArgs {
    /// The new stream's name.
    #[arg(long)]
    pub stream_name: String,
    /// The number of shards.
    #[arg(long)]
    pub shard_count: u32,
}

/// `delete-stream` arguments.
#[derive(Debug, clap::Args)]
pub struct DeleteStreamArgs {
    /// The stream to delete.
    #[arg(long)]
    pub stream_name: String,
}

/// `describe-stream` arguments.
#[derive(Debug, clap::Args)]
pub struct DescribeStreamArgs {
    /// The stream to describe.
    #[arg(long)]
    pub stream_name: String,
}

/// `list-streams` arguments (none).
#[derive(Debug, clap::Args)]
pub struct ListStreamsArgs {}

/// `list-shards` arguments.
#[derive(Debug, clap::Args)]
pub struct ListShardsArgs {
    /// The stream whose shards to list.
    #[arg(long)]
    pub stream_name: String,
}

/// `create-stream`: prints nothing, as the AWS CLI.
pub async fn create_stream(
    client: &mut Client,
    args: CreateStreamArgs,
) -> Result<Option<Value>, CliError> {
    let request = pb::CreateStreamRequest {
        stream_name: args.stream_name,
        shard_count: args.shard_count,
        ..Default::default()
    };
    client
        .create_stream(request)
        .await
        .map_err(|s| CliError::from_status("CreateStream", &s))?;
    Ok(None)
}

/// `delete-stream`: prints nothing, as the AWS CLI.
pub async fn delete_stream(
    client: &mut Client,
    args: DeleteStreamArgs,
) -> Result<Option<Value>, CliError> {
    let request = pb::DeleteStreamRequest {
        stream_name: args.stream_name,
    };
    client
        .delete_stream(request)
        .await
        .map_err(|s| CliError::from_status("DeleteStream", &s))?;
    Ok(None)
}

/// `describe-stream`: `{"StreamDescription": {...}}` with every shard.
pub async fn describe_stream(
    client: &mut Client,
    args: DescribeStreamArgs,
) -> Result<Option<Value>, CliError> {
    let mut shards = Vec::new();
    let mut description = None;
    for _ in 0..PAGES_MAX {
        let request = pb::DescribeStreamRequest {
            stream_name: args.stream_name.clone(),
            limit: None,
            exclusive_start_shard_id: shards.last().map(|s: &pb::Shard| s.shard_id.clone()),
        };
        let page = client
            .describe_stream(request)
            .await
            .map_err(|s| CliError::from_status("DescribeStream", &s))?
            .into_inner()
            .stream_description
            .ok_or_else(|| missing("DescribeStream", "stream_description"))?;
        let more = page.has_more_shards && !page.shards.is_empty();
        shards.extend(page.shards.iter().cloned());
        description = Some(page);
        if !more {
            break;
        }
    }
    let description = description.ok_or_else(|| missing("DescribeStream", "a page"))?;
    Ok(Some(
        json!({ "StreamDescription": stream_description(&description, &shards) }),
    ))
}

/// `list-streams`: `{"StreamNames": [...], "StreamSummaries": [...], "HasMoreStreams": false}`.
pub async fn list_streams(
    client: &mut Client,
    _args: ListStreamsArgs,
) -> Result<Option<Value>, CliError> {
    let mut streams: Vec<pb::StreamSummary> = Vec::new();
    for _ in 0..PAGES_MAX {
        let request = pb::ListStreamsRequest {
            exclusive_start_stream_name: streams.last().map(|s| s.stream_name.clone()),
            limit: None,
        };
        let page = client
            .list_streams(request)
            .await
            .map_err(|s| CliError::from_status("ListStreams", &s))?
            .into_inner();
        let more = page.has_more_streams && !page.streams.is_empty();
        streams.extend(page.streams);
        if !more {
            break;
        }
    }
    Ok(Some(stream_list(&streams)))
}

/// `list-shards`: `{"Shards": [...]}`.
pub async fn list_shards(
    client: &mut Client,
    args: ListShardsArgs,
) -> Result<Option<Value>, CliError> {
    let shards = all_shards(client, &args.stream_name).await?;
    Ok(Some(json!({
        "Shards": shards.iter().map(output::shard).collect::<Vec<_>>(),
    })))
}

/// Every shard of a stream that has not expired, in id order, following ListShards pages.
pub async fn all_shards(
    client: &mut Client,
    stream_name: &str,
) -> Result<Vec<pb::Shard>, CliError> {
    let mut shards = Vec::new();
    let mut next = None;
    for _ in 0..PAGES_MAX {
        let request = pb::ListShardsRequest {
            stream_name: stream_name.to_owned(),
            exclusive_start_shard_id: next.take(),
            max_results: None,
        };
        let page = client
            .list_shards(request)
            .await
            .map_err(|s| CliError::from_status("ListShards", &s))?
            .into_inner();
        let empty = page.shards.is_empty();
        shards.extend(page.shards);
        match page.next_exclusive_start_shard_id {
            Some(start) if !empty => next = Some(start),
            _ => break,
        }
    }
    Ok(shards)
}

/// The `StreamDescription` object for a description and all its shards.
fn stream_description(description: &pb::StreamDescription, shards: &[pb::Shard]) -> Value {
    json!({
        "StreamName": description.stream_name,
        "StreamARN": description.stream_arn,
        "StreamStatus": output::stream_status(description.stream_status),
        "Shards": shards.iter().map(output::shard).collect::<Vec<_>>(),
        "HasMoreShards": false,
        "RetentionPeriodHours": description.retention_period_hours,
        "StreamCreationTimestamp": timestamp::format_ms(description.stream_creation_timestamp_ms),
        "MaxRecordSizeInKiB": description.max_record_size_kib,
    })
}

/// The ListStreams object: the names alone (as older AWS CLIs print) and the summaries.
fn stream_list(streams: &[pb::StreamSummary]) -> Value {
    let names: Vec<&str> = streams.iter().map(|s| s.stream_name.as_str()).collect();
    let summaries: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({
                "StreamName": s.stream_name,
                "StreamARN": s.stream_arn,
                "StreamStatus": output::stream_status(s.stream_status),
                "StreamCreationTimestamp": timestamp::format_ms(s.stream_creation_timestamp_ms),
            })
        })
        .collect();
    json!({ "StreamNames": names, "HasMoreStreams": false, "StreamSummaries": summaries })
}

/// A reply that lacks a field the proto promises.
fn missing(operation: &'static str, field: &str) -> CliError {
    CliError::Server {
        operation,
        reason: "InvalidResponse".to_owned(),
        message: format!("the server's reply has no {field}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_description_has_aws_fields_and_all_shards() {
        let description = pb::StreamDescription {
            stream_name: "s".into(),
            stream_arn: "arn:aws:kinesis:r:a:stream/s".into(),
            stream_status: pb::StreamStatus::Active as i32,
            retention_period_hours: 24,
            max_record_size_kib: 1024,
            stream_creation_timestamp_ms: 0,
            open_shard_count: 1,
            shards: Vec::new(),
            has_more_shards: true,
        };
        let shard = pb::Shard {
            shard_id: "shardId-000000000000".into(),
            ..Default::default()
        };
        let value = stream_description(&description, &[shard]);
        assert_eq!(value["StreamName"], json!("s"));
        assert_eq!(value["StreamStatus"], json!("ACTIVE"));
        assert_eq!(value["HasMoreShards"], json!(false));
        assert_eq!(value["Shards"][0]["ShardId"], json!("shardId-000000000000"));
        assert_eq!(
            value["StreamCreationTimestamp"],
            json!("1970-01-01T00:00:00.000+00:00")
        );
    }

    #[test]
    fn stream_list_has_names_and_summaries() {
        let summary = pb::StreamSummary {
            stream_name: "a".into(),
            stream_arn: "arn".into(),
            stream_status: pb::StreamStatus::Creating as i32,
            stream_creation_timestamp_ms: 0,
        };
        let value = stream_list(&[summary]);
        assert_eq!(value["StreamNames"], json!(["a"]));
        assert_eq!(
            value["StreamSummaries"][0]["StreamStatus"],
            json!("CREATING")
        );
    }
}
