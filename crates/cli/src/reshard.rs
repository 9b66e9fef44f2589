//! Resharding: `split-shard`, `merge-shards` and `update-shard-count`.
//!
//! Each closes shards and opens children; readers find the children through `ChildShards`
//! at the end of a parent, or through `ParentShardId` in `list-shards`.

use serde_json::{Value, json};
use sluice_proto::v1 as pb;

use crate::client::Client;
use crate::error::CliError;

/// The scaling types of UpdateShardCount; Kinesis has only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalingType {
    /// Evenly sized shards.
    #[value(name = "UNIFORM_SCALING")]
    UniformScaling,
}

/// `split-shard` arguments.
#[derive(Debug, clap::Args)]
pub struct SplitShardArgs {
    /// The stream.
    #[arg(long)]
    pub stream_name: String,
    /// The open shard to split.
    #[arg(long)]
    pub shard_to_split: String,
    /// The first hash key of the upper child, a decimal strictly inside the shard's range.
    #[arg(long)]
    pub new_starting_hash_key: String,
}

/// `merge-shards` arguments.
#[derive(Debug, clap::Args)]
pub struct MergeShardsArgs {
    /// The stream.
    #[arg(long)]
    pub stream_name: String,
    /// One open shard.
    #[arg(long)]
    pub shard_to_merge: String,
    /// The open shard whose hash-key range is adjacent to it.
    #[arg(long)]
    pub adjacent_shard_to_merge: String,
}

/// `update-shard-count` arguments.
#[derive(Debug, clap::Args)]
pub struct UpdateShardCountArgs {
    /// The stream.
    #[arg(long)]
    pub stream_name: String,
    /// The number of open shards wanted (half to double the current count).
    #[arg(long)]
    pub target_shard_count: u32,
    /// How to reshard; only UNIFORM_SCALING exists.
    #[arg(long, value_enum, default_value_t = ScalingType::UniformScaling)]
    pub scaling_type: ScalingType,
}

/// `split-shard`: prints nothing, as the AWS CLI.
pub async fn split_shard(
    client: &mut Client,
    args: SplitShardArgs,
) -> Result<Option<Value>, CliError> {
    let request = pb::SplitShardRequest {
        stream_name: args.stream_name,
        shard_to_split: args.shard_to_split,
        new_starting_hash_key: args.new_starting_hash_key,
    };
    client
        .split_shard(request)
        .await
        .map_err(|s| CliError::from_status("SplitShard", &s))?;
    Ok(None)
}

/// `merge-shards`: prints nothing, as the AWS CLI.
pub async fn merge_shards(
    client: &mut Client,
    args: MergeShardsArgs,
) -> Result<Option<Value>, CliError> {
    let request = pb::MergeShardsRequest {
        stream_name: args.stream_name,
        shard_to_merge: args.shard_to_merge,
        adjacent_shard_to_merge: args.adjacent_shard_to_merge,
    };
    client
        .merge_shards(request)
        .await
        .map_err(|s| CliError::from_status("MergeShards", &s))?;
    Ok(None)
}

/// `update-shard-count`: `{"StreamName", "CurrentShardCount", "TargetShardCount"}`.
pub async fn update_shard_count(
    client: &mut Client,
    args: UpdateShardCountArgs,
) -> Result<Option<Value>, CliError> {
    let ScalingType::UniformScaling = args.scaling_type;
    let request = pb::UpdateShardCountRequest {
        stream_name: args.stream_name,
        target_shard_count: args.target_shard_count,
    };
    let reply = client
        .update_shard_count(request)
        .await
        .map_err(|s| CliError::from_status("UpdateShardCount", &s))?
        .into_inner();
    Ok(Some(json!({
        "StreamName": reply.stream_name,
        "CurrentShardCount": reply.current_shard_count,
        "TargetShardCount": reply.target_shard_count,
    })))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: UpdateShardCountArgs,
    }

    #[test]
    fn scaling_type_defaults_to_uniform_and_accepts_only_it() {
        let base = ["x", "--stream-name", "s", "--target-shard-count", "4"];
        let args = Wrapper::try_parse_from(base).unwrap().args;
        assert_eq!(args.scaling_type, ScalingType::UniformScaling);
        assert_eq!(args.target_shard_count, 4);
        let explicit = base.iter().chain(&["--scaling-type", "UNIFORM_SCALING"]);
        assert!(Wrapper::try_parse_from(explicit).is_ok());
        let other = base.iter().chain(&["--scaling-type", "OTHER"]);
        assert!(Wrapper::try_parse_from(other).is_err());
    }
}
