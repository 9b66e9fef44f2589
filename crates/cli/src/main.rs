//! `sluice-cli`: the command-line client of Sluice.
//!
//! It speaks gRPC to a running `sluice` server through the client generated in
//! `sluice-proto`, and mirrors the `aws kinesis` commands a Kinesis user already knows
//! (same subcommand and flag names, same PascalCase field names in the JSON it prints),
//! plus `tail`, which follows a whole stream live across reshards.
//!
//! One module per subcommand group: `streams` (create, delete, describe, list),
//! `put` (put-record, put-records), `read` (get-shard-iterator, get-records), `reshard`
//! (split, merge, update-shard-count) and `tail`. Around them: `client` (connecting),
//! `output` (the JSON shapes and how record data is shown), `timestamp` (parsing and
//! printing times) and `error` (what is printed on failure, and the exit code).
//!
//! Exit codes: 0 success, 1 the server refused the call, 2 bad usage, 3 no connection.

mod client;
mod error;
mod output;
mod put;
mod read;
mod reshard;
mod streams;
mod tail;
mod timestamp;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;
use crate::output::DataEncoding;

/// The command line: global flags, then one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-cli",
    version,
    about = "Command-line client of the Sluice stream broker (the `aws kinesis` commands, over gRPC)",
    after_help = "Output is JSON with the AWS CLI's field names. Record data is printed as text \
                  when it is valid UTF-8 (otherwise as base64, with \"DataEncoding\": \"base64\" \
                  beside it); pass --data-encoding base64 to always get base64, as the AWS CLI \
                  prints it.\n\nExit codes: 0 ok, 1 server error, 2 usage error, 3 connection failure."
)]
struct Cli {
    /// The broker's gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "SLUICE_ENDPOINT",
        default_value = "http://127.0.0.1:4567"
    )]
    endpoint: String,
    /// How record data is printed: `auto` (text when valid UTF-8, else base64) or
    /// `base64` (always, as the AWS CLI does).
    #[arg(long, global = true, value_enum, default_value_t = DataEncoding::Auto)]
    data_encoding: DataEncoding,
    #[command(subcommand)]
    command: Command,
}

/// Every subcommand, by group.
#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a stream with N shards evenly splitting the hash-key space.
    CreateStream(streams::CreateStreamArgs),
    /// Deletes a stream and all its records.
    DeleteStream(streams::DeleteStreamArgs),
    /// Describes a stream and all its shards.
    DescribeStream(streams::DescribeStreamArgs),
    /// Lists every stream.
    ListStreams(streams::ListStreamsArgs),
    /// Lists every shard of a stream (open and closed).
    ListShards(streams::ListShardsArgs),
    /// Writes one record.
    PutRecord(put::PutRecordArgs),
    /// Writes up to 500 records in one call.
    PutRecords(put::PutRecordsArgs),
    /// Returns a shard iterator, valid for five minutes.
    GetShardIterator(read::GetShardIteratorArgs),
    /// Reads records from a shard iterator.
    GetRecords(read::GetRecordsArgs),
    /// Splits an open shard in two at a hash key.
    SplitShard(reshard::SplitShardArgs),
    /// Merges two adjacent open shards.
    MergeShards(reshard::MergeShardsArgs),
    /// Reshards a stream to N evenly sized shards.
    UpdateShardCount(reshard::UpdateShardCountArgs),
    /// Follows a stream live: every shard, in order per shard, children after parents.
    Tail(tail::TailArgs),
}

fn main() -> ExitCode {
    // A usage error exits here with code 2 (clap's convention, and ours).
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Connects, runs the subcommand and prints its JSON result (if the AWS CLI prints one).
async fn run(cli: Cli) -> Result<(), CliError> {
    let encoding = cli.data_encoding;
    let mut client = client::connect(&cli.endpoint)?;
    let value = match cli.command {
        Command::CreateStream(args) => streams::create_stream(&mut client, args).await?,
        Command::DeleteStream(args) => streams::delete_stream(&mut client, args).await?,
        Command::DescribeStream(args) => streams::describe_stream(&mut client, args).await?,
        Command::ListStreams(args) => streams::list_streams(&mut client, args).await?,
        Command::ListShards(args) => streams::list_shards(&mut client, args).await?,
        Command::PutRecord(args) => put::put_record(&mut client, args).await?,
        Command::PutRecords(args) => put::put_records(&mut client, args).await?,
        Command::GetShardIterator(args) => read::get_shard_iterator(&mut client, args).await?,
        Command::GetRecords(args) => read::get_records(&mut client, args, encoding).await?,
        Command::SplitShard(args) => reshard::split_shard(&mut client, args).await?,
        Command::MergeShards(args) => reshard::merge_shards(&mut client, args).await?,
        Command::UpdateShardCount(args) => reshard::update_shard_count(&mut client, args).await?,
        Command::Tail(args) => tail::tail(client, args, encoding).await?,
    };
    match value {
        Some(value) => output::print(&value),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sluice-cli").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn endpoint_and_encoding_have_defaults_and_are_global() {
        let cli = parse(&["list-streams"]).unwrap();
        // SLUICE_ENDPOINT may be set in the environment running the tests.
        if std::env::var_os("SLUICE_ENDPOINT").is_none() {
            assert_eq!(cli.endpoint, "http://127.0.0.1:4567");
        }
        assert_eq!(cli.data_encoding, DataEncoding::Auto);
        let cli = parse(&[
            "list-streams",
            "--endpoint",
            "http://127.0.0.1:9",
            "--data-encoding",
            "base64",
        ])
        .unwrap();
        assert_eq!(cli.endpoint, "http://127.0.0.1:9");
        assert_eq!(cli.data_encoding, DataEncoding::Base64);
    }

    #[test]
    fn unknown_subcommand_is_a_usage_error_with_exit_code_2() {
        let error = parse(&["describe-streams"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn missing_required_flag_is_a_usage_error_with_exit_code_2() {
        let error = parse(&["create-stream", "--stream-name", "s"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn create_stream_takes_the_aws_flags() {
        let cli = parse(&["create-stream", "--stream-name", "s", "--shard-count", "3"]).unwrap();
        let Command::CreateStream(args) = cli.command else {
            panic!("wrong command: {:?}", cli.command)
        };
        assert_eq!(args.stream_name, "s");
        assert_eq!(args.shard_count, 3);
    }
}
