//! `sluice-bench`, the load generator: command-line arguments, the target (a spawned
//! server or given endpoints), and the run of one mode. The modes themselves are in
//! `modes`; the protocols in `api`; counting and output in `report`.
//!
//! Every run is bounded in time: the measured phase by `--duration`, a preload by
//! `--preload-timeout`, and start-up by fixed timeouts. Any failed request or refused
//! record makes the exit status non-zero, so a smoke run in CI fails on errors.

pub mod abuse;
mod admin;
pub mod api;
mod modes;
pub mod report;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Parser, ValueEnum};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// PutRecords batches at full speed (or `--rate`).
    Put,
    /// PutRecord, one record per request.
    SinglePut,
    /// Catch-up read of every shard from TRIM_HORIZON (after `--preload`).
    Get,
    /// End-to-end latency from a put being acknowledged to its delivery on a gRPC
    /// Subscribe stream, at `--rate` records/s.
    Subscribe,
    /// Producers at full speed (or `--rate`) while `--readers` readers tail every shard
    /// from TRIM_HORIZON.
    Mixed,
    /// Preload (optional), SIGKILL the spawned server (or stop it with SIGTERM, with
    /// `--stop term`), start it again, and time how long until it serves a put and a read.
    Restart,
    /// A normal producer and reader while a hostile client applies one attack per phase
    /// (issue 22); see `--attack` and the other abuse flags.
    Abuse,
    /// A steady put and read load (as `mixed`; pace it with `--rate`) while another client
    /// creates a stream of `--admin-shards`, writes to `--admin-records` of its shards,
    /// resizes it (to `--admin-target`, default half as many again) and deletes it, in a
    /// loop.
    Admin,
}

/// How `--mode restart` stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stop {
    /// SIGKILL: start-up recovers every log from its last recovery point.
    Kill,
    /// SIGTERM: a clean stop, which writes every log's recovery point first.
    Term,
}

/// Which wire protocol carries the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Api {
    /// `sluice.v1.Sluice` over gRPC.
    Grpc,
    /// The Kinesis HTTP API (AWS JSON 1.1 over HTTP/1.1).
    Kinesis,
}

/// A load generator for Sluice and other Kinesis-compatible servers.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "put")]
    pub mode: Mode,
    /// Protocol of the load (subscribe always uses gRPC).
    #[arg(long, value_enum, default_value = "grpc")]
    pub api: Api,
    /// Start this `sluice` binary on loopback ports with a temporary data directory.
    #[arg(long, value_name = "PATH")]
    pub spawn_server: Option<PathBuf>,
    /// With --spawn-server: use (and keep) this data directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --spawn-server: make the temporary data directory under DIR (choose the disk).
    #[arg(long, value_name = "DIR")]
    pub tmp_parent: Option<PathBuf>,
    /// With --spawn-server: environment for the server, `KEY=VALUE` (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// The gRPC endpoint of a running server, `http://host:port`.
    #[arg(long, value_name = "URL")]
    pub grpc: Option<String>,
    /// The Kinesis endpoint of a running server, `http://host:port`.
    #[arg(long, value_name = "URL")]
    pub kinesis: Option<String>,
    /// Send Kinesis requests without the dummy SigV4 Authorization header.
    #[arg(long)]
    pub unsigned: bool,
    /// Stream name (with --streams N > 1, the names are NAME-0 .. NAME-{N-1}).
    #[arg(long, default_value = "bench")]
    pub stream: String,
    /// Number of streams, written round-robin.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Shards per stream (when the bench creates the streams).
    #[arg(long, default_value_t = 4)]
    pub shards: u32,
    /// Records per PutRecords call.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Partition keys: `uniform` (over --key-count keys), `hot:F` (a fraction F of
    /// records use one hot key, the rest uniform), or `fixed` (one key).
    #[arg(long, default_value = "uniform")]
    pub keys: String,
    /// Distinct partition keys for `uniform` and `hot:F`.
    #[arg(long, default_value_t = 100_000)]
    pub key_count: u64,
    /// Concurrent requests in flight (producers).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// gRPC connections the producers share (HTTP/2 multiplexes the rest).
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// How long the measured phase lasts, seconds (an upper bound with --count).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many records have been put.
    #[arg(long)]
    pub count: Option<u64>,
    /// Target records/s across all producers (open loop; latency counts from the
    /// scheduled send time). Full speed when absent; subscribe defaults to 10,000.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of payload to put before a get or restart run (e.g. 2GiB, 512MiB).
    #[arg(long)]
    pub preload: Option<String>,
    /// Upper bound on the preload, seconds.
    #[arg(long, default_value_t = 900.0)]
    pub preload_timeout: f64,
    /// Readers (tailing tasks per shard) in mixed mode.
    #[arg(long, default_value_t = 1)]
    pub readers: usize,
    /// Records per GetRecords call.
    #[arg(long, default_value_t = 10_000)]
    pub get_limit: u32,
    /// Do not create the streams (they exist already).
    #[arg(long)]
    pub no_create: bool,
    /// Print only the JSON line.
    #[arg(long)]
    pub json_only: bool,
    /// Process id of a server not spawned here, to report its memory and descriptors.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The flags of `--mode abuse`.
    #[command(flatten)]
    pub abuse: abuse::AbuseArgs,
    /// Admin mode: shards of the stream created, resized and deleted in a loop.
    #[arg(long, default_value_t = 2_000)]
    pub admin_shards: u32,
    /// Admin mode: shards of that stream that get one record each cycle.
    #[arg(long, default_value_t = 200)]
    pub admin_records: u32,
    /// Admin mode: the shard count it is resized to (default: half as many again).
    #[arg(long)]
    pub admin_target: Option<u32>,
    /// Before the run (and any preload), put one record into every shard of every stream
    /// (over gRPC), so each shard has a log: for the many-shards measurements.
    #[arg(long)]
    pub fill_shards: bool,
    /// Restart mode: how the server is stopped before it starts again.
    #[arg(long, value_enum, default_value = "kill")]
    pub stop: Stop,
}

impl Args {
    /// The names of the streams under load.
    pub fn stream_names(&self) -> Vec<String> {
        if self.streams <= 1 {
            vec![self.stream.clone()]
        } else {
            (0..self.streams)
                .map(|i| format!("{}-{i}", self.stream))
                .collect()
        }
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.0))
    }
}

/// Runs the tool with `args`; an error (including any failed request) is the exit status.
pub async fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.concurrency == 0 || args.streams == 0 || args.shards == 0 {
        bail!("--batch, --concurrency, --streams and --shards must be at least 1");
    }
    if args.mode == Mode::Restart && args.spawn_server.is_none() {
        bail!("--mode restart needs --spawn-server");
    }
    let preload = args.preload.as_deref().map(parse_bytes).transpose()?;
    let (dir, _tmp) = server::data_dir(args.data_dir.as_deref(), args.tmp_parent.as_deref())?;
    let mut spawned = match &args.spawn_server {
        Some(bin) => Some(server::Spawned::start(bin, &dir, &args.server_env)?),
        None => None,
    };
    let (grpc, kinesis) = match &spawned {
        Some(s) => (Some(s.grpc.clone()), Some(s.kinesis.clone())),
        None => (args.grpc.clone(), args.kinesis.clone()),
    };
    let target = modes::Target {
        grpc,
        kinesis,
        signed: !args.unsigned,
    };
    let pid = spawned
        .as_ref()
        .map(server::Spawned::pid)
        .or(args.server_pid);
    let outcome = modes::run(&args, &target, preload, pid, &mut spawned, &dir).await?;
    report::print(
        &outcome.header,
        &outcome.phases,
        &outcome.extra,
        args.json_only,
    );
    let errors: u64 = outcome.phases.iter().map(|p| p.errors).sum();
    if errors > 0 {
        return Err(anyhow!("{errors} requests or records failed"));
    }
    Ok(())
}

/// Parses `2GiB`, `512MiB`, `64KiB`, `1000` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.trim().parse().map_err(|_| anyhow!("not a size: {s}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => bail!("unknown size unit {other} in {s}"),
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert_eq!(parse_bytes("1.5kb").unwrap(), 1500);
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn many_streams_are_numbered() {
        let args = Args::parse_from(["sluice-bench", "--streams", "3", "--stream", "s"]);
        assert_eq!(args.stream_names(), ["s-0", "s-1", "s-2"]);
    }
}
