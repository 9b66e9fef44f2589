//! `sluice`: the Sluice broker server.
//!
//! With no arguments it runs on the embedded default configuration (`config/sluice.toml`):
//! data in `./data`, gRPC on `127.0.0.1:4567`. `config` reads the file and the
//! environment, `startup` opens the broker and serves, `shutdown` handles SIGINT and
//! SIGTERM. Exit status: 0 after a clean stop, 1 when start-up or shutdown fails, 2 for a
//! bad command line or configuration.

mod config;
mod human;
mod shutdown;
mod startup;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ENV_PREFIX};

/// mimalloc instead of the system allocator: the request paths allocate per record and
/// per request (protobuf strings, 512 KiB buffers), and glibc's malloc, free and its
/// returning of large blocks to the kernel (page faults to get them back) were about a
/// tenth of the server's CPU under ingest (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so each 2 MiB
/// region it touches became resident whole: with 1,000 shards written, 437 MB of
/// anonymous memory instead of 186 MB, for no throughput gained (docs/BENCHMARKS.md).
fn without_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // Best effort: a kernel without the prctl only keeps the larger footprint.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Sluice: a durable, self-hosted stream broker with the Kinesis data model.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
struct Args {
    /// A TOML configuration file (see config/sluice.toml); without it the embedded
    /// default is used. SLUICE_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen for gRPC on this address (overrides the file and SLUICE_GRPC_LISTEN);
    /// port 0 picks a free port, reported in the `listening` log line.
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// Listen for the Kinesis API on this address (overrides the file and
    /// SLUICE_KINESIS_LISTEN); port 0 picks a free port, reported in the `listening` line.
    #[arg(long, value_name = "ADDR")]
    kinesis_listen: Option<SocketAddr>,
    /// Keep data in this directory (overrides the file and SLUICE_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Check every segment of every shard at start-up (reads the whole data directory)
    /// and set a damaged one aside instead of refusing to start: its bytes are copied to
    /// `<data-dir>/lost+found/`, its good records kept, and its lost sequence numbers
    /// recorded as a gap that reads skip and no new record takes. Logs what it did.
    #[arg(long)]
    repair: bool,
}

fn main() -> ExitCode {
    without_huge_pages();
    let args = Args::parse();
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let loaded = match Config::load(args.config.as_deref(), &env) {
        Ok(loaded) => loaded,
        Err(e) => return usage_error(&e),
    };
    let mut config = loaded.config;
    if let Some(addr) = args.grpc_listen {
        config.grpc_listen = addr;
    }
    if let Some(addr) = args.kinesis_listen {
        config.kinesis_listen = addr;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let mut broker_config = match config.broker_config() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    broker_config.manager.log.repair = args.repair;
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }

    init_logging(&config.log_filter);
    for var in &loaded.unknown_env {
        tracing::warn!(
            var,
            "environment variable names no configuration key; ignored"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return failure(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match runtime.block_on(startup::run(config, broker_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

fn init_logging(filter: &str) {
    // `Config::validate` already checked the filter; the fallback is never expected.
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn usage_error(e: &config::ConfigError) -> ExitCode {
    eprintln!("sluice: {e}");
    ExitCode::from(2)
}

fn failure(e: &anyhow::Error) -> ExitCode {
    tracing::error!(error = format!("{e:#}"), "sluice failed");
    eprintln!("sluice: {e:#}");
    ExitCode::FAILURE
}
