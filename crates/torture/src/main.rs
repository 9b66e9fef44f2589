//! `sluice-torture`: kills a real `sluice` server with SIGKILL at random moments under a
//! mixed workload, restarts it, and checks after every restart that nothing acknowledged
//! was lost, duplicated, moved or damaged, and nothing unacknowledged is half-visible.
//!
//! ```text
//! sluice-torture --server target/release/sluice --cycles 1000 [--seed S] [--data-dir DIR]
//!                [--seconds-per-cycle 0.5] [--shards 2]
//! ```
//!
//! Each cycle: (sometimes) start the server and kill it again within its start-up
//! recovery; start it; verify (`verify`); run the workload (`workload`) and kill the
//! server at a random moment or just after a reshard request went out. Tiny segments,
//! frequent maintenance and journal compaction (`server::TORTURE_ENV`) put a segment roll,
//! a checkpoint or a compaction inside most kill windows. The run ends with a summary
//! table and one JSON line, and exits 1 if anything was violated, with the seed to replay
//! (`--seed` or `SLUICE_SEED`).

#![warn(missing_docs)]

mod model;
mod server;
mod verify;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sluice_proto::v1 as pb;
use tokio::sync::Notify;

use model::{Model, Rng, Violation};
use server::Server;
use workload::{Outcome, STREAM, Shared};

/// Kill a real sluice server at random moments and check nothing acknowledged is lost.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The `sluice` binary to run.
    #[arg(long)]
    server: PathBuf,
    /// Kill cycles to run.
    #[arg(long, default_value_t = 100)]
    cycles: u64,
    /// The seed (default: `SLUICE_SEED`, else from the clock); printed to replay a run.
    #[arg(long)]
    seed: Option<u64>,
    /// The server's data directory (default: a new directory under the temp directory,
    /// removed after a run without violations).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The longest a workload runs before its kill, seconds.
    #[arg(long, default_value_t = 0.5)]
    seconds_per_cycle: f64,
    /// Shards the stream is created with. With hundreds, the resharder's resizes seal and
    /// create hundreds of shards in the background, and the kills land inside that work.
    #[arg(long, default_value_t = 2)]
    shards: u32,
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    kills_under_load: u64,
    kills_in_reshard: u64,
    kills_in_startup: u64,
    reshards_acked: u64,
    put_errors: u64,
    checks: u64,
    records_verified: u64,
    records_read_last: u64,
}

/// The longest the workload's tasks may take to notice the kill.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args
        .seed
        .or_else(|| std::env::var("SLUICE_SEED").ok()?.parse().ok())
        .unwrap_or_else(clock_seed);
    eprintln!("sluice-torture: seed {seed} (replay with --seed {seed})");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sluice-torture: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let data_dir = match server::data_dir(args.data_dir.clone(), seed) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("sluice-torture: cannot create the data directory: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut model = Model::default();
    let violations = runtime.block_on(run(&args, &data_dir, seed, &mut totals, &mut model));
    summary(seed, &totals, &model, &violations, started.elapsed());
    if violations.is_empty() {
        if args.data_dir.is_none() {
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "sluice-torture: FAILED; data directory kept at {}; replay with --seed {seed}",
            data_dir.display()
        );
        ExitCode::from(1)
    }
}

/// Every cycle, then a last restart and check; returns the violations found.
async fn run(
    args: &Args,
    data_dir: &std::path::Path,
    seed: u64,
    totals: &mut Totals,
    model: &mut Model,
) -> Vec<Violation> {
    let mut rng = Rng(seed);
    for cycle in 0..=args.cycles {
        if cycle > 0 && rng.chance(1, 3) {
            // Kill during start-up recovery: the previous kill's damage is being repaired.
            match Server::spawn(&args.server, data_dir) {
                Ok(mut early) => {
                    tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
                    early.kill();
                    totals.kills_in_startup += 1;
                }
                Err(e) => return vec![failure(cycle, format!("cannot spawn the server: {e}"))],
            }
        }
        let mut server = match Server::spawn(&args.server, data_dir) {
            Ok(server) => server,
            Err(e) => return vec![failure(cycle, format!("cannot spawn the server: {e}"))],
        };
        if let Err(e) = server.wait_ready() {
            return vec![failure(cycle, restart_failure(&server, &e))];
        }
        let mut client = match server.client().await {
            Ok(client) => client,
            Err(e) => return vec![failure(cycle, e)],
        };
        if cycle == 0 {
            if let Err(e) = create_stream(&mut client, model, args.shards).await {
                return vec![failure(cycle, e)];
            }
        } else {
            match verify::check(&mut client, model).await {
                Ok(report) => {
                    totals.checks += 1;
                    totals.records_verified += report.verified;
                    totals.records_read_last = report.read;
                    let found = verify::violations(&report, cycle);
                    if !found.is_empty() {
                        eprintln!("server log:\n{}", server.log_tail().join("\n"));
                        return found;
                    }
                }
                Err(e) => return vec![failure(cycle, restart_failure(&server, &e))],
            }
        }
        if cycle == args.cycles {
            return Vec::new();
        }
        let found = run_workload(&mut server, &client, model, cycle, args, &mut rng, totals).await;
        totals.cycles += 1;
        if !found.is_empty() {
            return found;
        }
        if cycle % 10 == 9 {
            eprintln!(
                "sluice-torture: {} cycles, {} records acknowledged, {} verified",
                totals.cycles,
                model.acked.len(),
                totals.records_verified
            );
        }
    }
    Vec::new()
}

/// One cycle's workload, ended by a SIGKILL at a random moment or inside a reshard.
async fn run_workload(
    server: &mut Server,
    client: &server::Client,
    model: &mut Model,
    cycle: u64,
    args: &Args,
    rng: &mut Rng,
    totals: &mut Totals,
) -> Vec<Violation> {
    let shared = Shared {
        outcome: Arc::new(Mutex::new(Outcome {
            model: std::mem::take(model),
            violations: Vec::new(),
            cycle,
            reshards_now: 0,
            put_errors: 0,
        })),
        stop: Arc::new(AtomicBool::new(false)),
        reshard_starting: Arc::new(Notify::new()),
        initial_shards: args.shards as usize,
    };
    let tasks = workload::spawn(client, &shared, rng);
    let window_ms = (args.seconds_per_cycle.max(0.001) * 1000.0) as u64;
    if rng.chance(1, 4) {
        let deadline = Duration::from_millis(window_ms.max(200) * 4);
        if tokio::time::timeout(deadline, shared.reshard_starting.notified())
            .await
            .is_ok()
        {
            totals.kills_in_reshard += 1;
        } else {
            totals.kills_under_load += 1;
        }
        tokio::time::sleep(Duration::from_micros(rng.below(5_000))).await;
    } else {
        tokio::time::sleep(Duration::from_millis(rng.below(window_ms + 1))).await;
        totals.kills_under_load += 1;
    }
    shared.stop.store(true, Ordering::Relaxed);
    server.kill();
    let mut hung = false;
    for task in tasks {
        hung |= tokio::time::timeout(DRAIN_TIMEOUT, task).await.is_err();
    }
    let mut outcome = shared.outcome.lock().unwrap_or_else(|e| e.into_inner());
    *model = std::mem::take(&mut outcome.model);
    totals.reshards_acked += outcome.reshards_now;
    totals.put_errors += outcome.put_errors;
    let mut found = std::mem::take(&mut outcome.violations);
    if hung {
        found.push(failure(cycle, "a workload task hung after the kill".into()));
    }
    found
}

/// Creates the stream and records its shards as fact.
async fn create_stream(
    client: &mut server::Client,
    model: &mut Model,
    shards: u32,
) -> Result<(), String> {
    let request = pb::CreateStreamRequest {
        stream_name: STREAM.into(),
        shard_count: shards,
        ..Default::default()
    };
    client
        .create_stream(request)
        .await
        .map_err(|e| format!("CreateStream: {e}"))?;
    let shards = workload::list_shards(client)
        .await
        .map_err(|e| format!("ListShards: {e}"))?;
    workload::record_shards(model, &shards, shards.len());
    Ok(())
}

fn failure(cycle: u64, what: String) -> Violation {
    Violation { cycle, what }
}

fn restart_failure(server: &Server, error: &str) -> String {
    format!(
        "the server did not come back: {error}\nserver log:\n{}",
        server.log_tail().join("\n")
    )
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Prints the table, the violations and one JSON line.
fn summary(seed: u64, totals: &Totals, model: &Model, violations: &[Violation], elapsed: Duration) {
    let kills = totals.kills_under_load + totals.kills_in_reshard + totals.kills_in_startup;
    for v in violations {
        println!("VIOLATION (cycle {}): {}", v.cycle, v.what);
    }
    let rows = [
        ("seed", seed.to_string()),
        ("cycles", totals.cycles.to_string()),
        ("kills", kills.to_string()),
        ("  under load", totals.kills_under_load.to_string()),
        ("  in a reshard", totals.kills_in_reshard.to_string()),
        ("  in start-up", totals.kills_in_startup.to_string()),
        ("reshards acknowledged", totals.reshards_acked.to_string()),
        ("records acknowledged", model.acked.len().to_string()),
        ("puts refused (live)", totals.put_errors.to_string()),
        (
            "records in the stream",
            totals.records_read_last.to_string(),
        ),
        ("checks after restart", totals.checks.to_string()),
        ("records verified", totals.records_verified.to_string()),
        ("violations", violations.len().to_string()),
        ("seconds", format!("{:.1}", elapsed.as_secs_f64())),
    ];
    for (name, value) in rows {
        println!("{name:<24}{value:>14}");
    }
    println!(
        "{{\"seed\":{seed},\"cycles\":{},\"kills\":{kills},\"kills_in_startup\":{},\"kills_in_reshard\":{},\"reshards_acked\":{},\"records_acked\":{},\"records_verified\":{},\"checks\":{},\"violations\":{},\"seconds\":{:.1}}}",
        totals.cycles,
        totals.kills_in_startup,
        totals.kills_in_reshard,
        totals.reshards_acked,
        model.acked.len(),
        totals.records_verified,
        totals.checks,
        violations.len(),
        elapsed.as_secs_f64()
    );
}
