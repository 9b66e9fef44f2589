//! `sluice-abuse`: what one hostile client costs the others. For each attack of
//! `sluice_benches::loadgen::abuse`, it starts a fresh server, runs a normal client
//! alone (baseline), then beside the attack, and prints the normal client's latency
//! (p50, p99, max, errors) and the server's resident memory (peak sampled, and `VmHWM`)
//! and descriptors.
//!
//! The normal client, from 127.0.0.1, loops: a gRPC PutRecord of 1 KiB and a GetRecords
//! on one channel, and a Kinesis ListStreams on one HTTP/1.1 connection; each call is
//! bounded by 5 s (a call that times out counts as 5 s and as an error). Its connections
//! are made after the attack has started, as a new client's would be.
//!
//! ```sh
//! sluice-abuse --server target/release/sluice --seconds 10
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use clap::Parser;
use serde_json::json;
use sluice_benches::loadgen::abuse::{self, Kind, Targets};
use sluice_benches::loadgen::api::{Client, Start};
use sluice_benches::loadgen::server::{Spawned, data_dir, resources};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What one hostile client costs the others.
#[derive(Debug, Parser)]
#[command(name = "sluice-abuse")]
struct Args {
    /// The `sluice` binary to start (once per attack).
    #[arg(long)]
    server: PathBuf,
    /// Attacks to run (default: all).
    #[arg(long, value_enum)]
    attack: Vec<Kind>,
    /// Seconds of normal traffic per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds for an attack to set up before the normal client starts.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Connections opened by the connection attacks.
    #[arg(long, default_value_t = 19_000)]
    connections: usize,
    /// Environment for the server, `KEY=VALUE` (repeatable).
    #[arg(long)]
    server_env: Vec<String>,
    /// Make the temporary data directories under DIR.
    #[arg(long)]
    tmp_parent: Option<PathBuf>,
}

/// The normal client's latencies in one phase.
#[derive(Debug, Default)]
struct Stats {
    latencies_us: Vec<u64>,
    errors: u64,
}

impl Stats {
    fn record(&mut self, started: Instant, ok: bool) {
        self.latencies_us.push(started.elapsed().as_micros() as u64);
        self.errors += u64::from(!ok);
    }

    fn json(&mut self) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let at = |q: f64| {
            let n = self.latencies_us.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            self.latencies_us[i] as f64 / 1000.0
        };
        json!({
            "calls": self.latencies_us.len(),
            "errors": self.errors,
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": at(1.0),
        })
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the normal client for `seconds`.
async fn normal_client(grpc: &str, kinesis: SocketAddr, seconds: u64) -> Stats {
    let mut stats = Stats::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut client = match tokio::time::timeout(CALL_TIMEOUT, Client::grpc(grpc)).await {
        Ok(Ok(c)) => Some(c),
        _ => None,
    };
    stats.record(started, client.is_some());
    let mut iterator: Option<String> = None;
    let mut http = None;
    let data = Bytes::from(vec![7u8; 1024]);
    while Instant::now() < deadline {
        if let Some(c) = client.as_mut() {
            let t = Instant::now();
            let put =
                tokio::time::timeout(CALL_TIMEOUT, c.put_record("normal", "k", data.clone())).await;
            stats.record(t, matches!(put, Ok(Ok(_))));
            let t = Instant::now();
            let got = match &iterator {
                Some(it) => tokio::time::timeout(CALL_TIMEOUT, c.get_records(it, 100))
                    .await
                    .map_err(|_| anyhow!("timeout"))
                    .and_then(|r| r)
                    .map(|o| o.next),
                None => tokio::time::timeout(
                    CALL_TIMEOUT,
                    c.iterator("normal", "shardId-000000000000", Start::Latest),
                )
                .await
                .map_err(|_| anyhow!("timeout"))
                .and_then(|r| r)
                .map(Some),
            };
            stats.record(t, got.is_ok());
            if let Ok(next) = got {
                iterator = next;
            }
        } else {
            // No gRPC connection: try again, as a client would.
            let t = Instant::now();
            client = match tokio::time::timeout(CALL_TIMEOUT, Client::grpc(grpc)).await {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
            stats.record(t, client.is_some());
        }
        let t = Instant::now();
        let listed = list_streams(&mut http, kinesis).await;
        stats.record(t, listed.is_ok());
        if listed.is_err() {
            http = None;
        }
    }
    stats
}

type Http1 = hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>;

/// A Kinesis ListStreams on `conn` (connecting it first if needed).
async fn list_streams(conn: &mut Option<Http1>, addr: SocketAddr) -> Result<()> {
    let call = async {
        if conn.is_none() {
            let stream = abuse::connect_from(1, addr).await?;
            let (send, c) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(c);
            *conn = Some(send);
        }
        let send = conn.as_mut().ok_or_else(|| anyhow!("no connection"))?;
        let request = hyper::Request::post("/")
            .header("host", "localhost")
            .header("x-amz-target", "Kinesis_20131202.ListStreams")
            .header("content-type", "application/x-amz-json-1.1")
            .body(http_body_util::Full::new(Bytes::from_static(b"{}")))?;
        let response = send.send_request(request).await?;
        let ok = response.status().is_success();
        http_body_util::BodyExt::collect(response.into_body()).await?;
        if ok {
            Ok(())
        } else {
            Err(anyhow!("ListStreams failed"))
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("timeout"))?
}

/// Samples the server's resident memory every 100 ms until dropped; returns the peak.
fn sample_rss(
    pid: u32,
) -> (
    tokio::task::JoinHandle<u64>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            if let Some(r) = resources(pid) {
                peak = peak.max(r.rss_kib);
            }
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (task, stop)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn socket_addr(endpoint: &str) -> Result<SocketAddr> {
    endpoint
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("bad endpoint {endpoint}"))
}

/// One attack on a fresh server: baseline, then the attack.
async fn run_one(args: &Args, kind: Kind) -> Result<serde_json::Value> {
    let (dir, _tmp) = data_dir(None, args.tmp_parent.as_deref())?;
    let server = Spawned::start(&args.server, &dir, &args.server_env)?;
    let pid = server.pid();
    let targets = Targets {
        grpc: socket_addr(&server.grpc)?,
        kinesis: socket_addr(&server.kinesis)?,
    };
    let mut setup = Client::grpc(&server.grpc).await?;
    setup.create_stream("normal", 1).await?;
    setup.shards("normal").await?;
    let mut baseline = normal_client(&server.grpc, targets.kinesis, args.seconds).await;
    let (sampler, stop) = sample_rss(pid);
    let attack = abuse::start(kind, targets, args.connections).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let mut during = normal_client(&server.grpc, targets.kinesis, args.seconds).await;
    let fds = resources(pid).map_or(0, |r| r.fds);
    let _ = stop.send(());
    let rss_peak_kib = sampler.await.unwrap_or(0);
    drop(attack);
    Ok(json!({
        "attack": format!("{kind:?}"),
        "baseline": baseline.json(),
        "during": during.json(),
        "server_rss_peak_mib": rss_peak_kib / 1024,
        "server_vm_hwm_mib": vm_hwm_kib(pid) / 1024,
        "server_fds": fds,
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let kinds = if args.attack.is_empty() {
        vec![
            Kind::JsonMembers,
            Kind::CborArrays,
            Kind::JsonArrays,
            Kind::IdleConnections,
            Kind::Slowloris,
            Kind::HalfSent,
        ]
    } else {
        args.attack.clone()
    };
    let mut failed = false;
    for kind in kinds {
        match run_one(&args, kind).await {
            Ok(v) => println!("{v}"),
            Err(e) => {
                eprintln!("sluice-abuse: {kind:?}: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
