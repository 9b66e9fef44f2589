//! `stall-probe`: how much memory subscribers that never read cost the server.
//!
//! Starts `sluice` (the binary given) on loopback with a temporary data directory, fills
//! streams of one shard each with `--data` bytes, then opens `--grpc` gRPC Subscribe
//! streams and `--kinesis` Kinesis SubscribeToShard streams from TRIM_HORIZON whose
//! clients never read (a 64 KiB HTTP/2 window, a 4 KiB socket receive buffer). Streams
//! hold 20 subscribers each (the gRPC ones and the Kinesis ones on streams of their own)
//! and every Kinesis subscriber has a consumer of its own, so
//! the per-shard and per-consumer caps of a server that has them are not what stops
//! them. It prints the server's resident memory (`VmRSS`, `RssAnon`) before and once it
//! has settled after each group, and how many subscriptions the server accepted or
//! refused (with the error). A measuring tool, not a test: it waits for memory to settle.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};
use sluice_benches::loadgen::server::{Spawned, data_dir, resources};
use sluice_proto::v1 as pb;
use sluice_proto::v1::sluice_client::SluiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint};

/// Subscribers per stream (one shard each): Kinesis's consumers per stream.
const SUBSCRIBERS_PER_STREAM: usize = 20;
/// Size of each record put.
const RECORD_BYTES: usize = 512 * 1024;

#[derive(Debug, Parser)]
#[command(about = "Server memory with subscribers that never read")]
struct Args {
    /// The `sluice` binary to start.
    #[arg(long)]
    server: PathBuf,
    /// Where the temporary data directory goes (default: the system's temp dir).
    #[arg(long)]
    tmp_parent: Option<PathBuf>,
    /// Extra server environment, `KEY=VALUE` (repeatable).
    #[arg(long)]
    server_env: Vec<String>,
    /// Stalled gRPC Subscribe streams.
    #[arg(long, default_value_t = 100)]
    grpc: usize,
    /// Stalled Kinesis SubscribeToShard streams.
    #[arg(long, default_value_t = 40)]
    kinesis: usize,
    /// Data in each stream, MiB.
    #[arg(long, default_value_t = 10)]
    data_mib: usize,
    /// The longest to wait for memory to settle after each group, seconds.
    #[arg(long, default_value_t = 30)]
    settle_s: u64,
    /// Seconds to keep everything open after the last report (to inspect the server).
    #[arg(long, default_value_t = 0)]
    hold_s: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stall-probe: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let (dir, _tmp) = data_dir(None, args.tmp_parent.as_deref())?;
    let server = Spawned::start(&args.server, &dir, &args.server_env)?;
    let pid = server.pid();
    let grpc_streams = args.grpc.div_ceil(SUBSCRIBERS_PER_STREAM);
    let streams = grpc_streams + args.kinesis.div_ceil(SUBSCRIBERS_PER_STREAM);
    let mut client = grpc_client(&server.grpc).await?;
    fill(&mut client, streams, args.data_mib).await?;
    let settle = Duration::from_secs(args.settle_s);
    report("filled", pid, "", settle).await?;
    let mut held = Vec::new();
    let mut outcomes = Outcomes::default();
    for i in 0..args.grpc {
        match stalled_grpc(&server.grpc, &stream_name(i / SUBSCRIBERS_PER_STREAM)).await? {
            Ok(s) => {
                held.push(s);
                outcomes.accepted += 1;
            }
            Err(e) => outcomes.refused(e),
        }
    }
    report("gRPC", pid, &outcomes.to_string(), settle).await?;
    let authority = server
        .kinesis
        .strip_prefix("http://")
        .unwrap_or(&server.kinesis)
        .to_owned();
    let mut sockets = Vec::new();
    let mut outcomes = Outcomes::default();
    for i in 0..args.kinesis {
        let stream = stream_name(grpc_streams + i / SUBSCRIBERS_PER_STREAM);
        let arn = register(&authority, &stream, &format!("c{i}")).await?;
        match stalled_kinesis(&authority, &arn).await? {
            Ok(s) => {
                sockets.push(s);
                outcomes.accepted += 1;
            }
            Err(e) => outcomes.refused(e),
        }
    }
    report("Kinesis", pid, &outcomes.to_string(), settle).await?;
    if args.hold_s > 0 {
        println!("holding for {} s; server pid {pid}", args.hold_s);
        tokio::time::sleep(Duration::from_secs(args.hold_s)).await;
    }
    drop((held, sockets));
    server.kill()
}

fn stream_name(i: usize) -> String {
    format!("stall-{i}")
}

/// Subscriptions the server accepted, and the errors of those it refused.
#[derive(Default)]
struct Outcomes {
    accepted: usize,
    refused: std::collections::BTreeMap<String, usize>,
}

impl Outcomes {
    fn refused(&mut self, error: String) {
        *self.refused.entry(error).or_default() += 1;
    }
}

impl std::fmt::Display for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "accepted={}", self.accepted)?;
        for (e, n) in &self.refused {
            write!(f, " refused({e})={n}")?;
        }
        Ok(())
    }
}

async fn grpc_client(endpoint: &str) -> Result<SluiceClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    Ok(SluiceClient::new(channel))
}

/// Creates `streams` streams of one shard and puts `mib` MiB into each.
async fn fill(client: &mut SluiceClient<Channel>, streams: usize, mib: usize) -> Result<()> {
    for s in 0..streams {
        let name = stream_name(s);
        client
            .create_stream(pb::CreateStreamRequest {
                stream_name: name.clone(),
                shard_count: 1,
                ..Default::default()
            })
            .await?;
        for i in 0..mib * (1 << 20) / RECORD_BYTES {
            let data = vec![(i % 251) as u8; RECORD_BYTES - 16];
            client
                .put_record(pb::PutRecordRequest {
                    stream_name: name.clone(),
                    partition_key: format!("k{i}"),
                    explicit_hash_key: None,
                    data: data.into(),
                })
                .await?;
        }
    }
    Ok(())
}

/// Waits until the server's memory stops changing (or `settle` passes) and prints it.
async fn report(phase: &str, pid: u32, note: &str, settle: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + settle;
    let mut last = resources(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}"))?;
    let mut steady = 0;
    while steady < 8 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = resources(pid).ok_or_else(|| anyhow!("cannot read /proc/{pid}"))?;
        let moved = now.rss_kib.abs_diff(last.rss_kib) > 1024;
        steady = if moved { 0 } else { steady + 1 };
        last = now;
    }
    println!(
        "{phase:8} VmRSS={:>7} MiB RssAnon={:>7} MiB fds={:>5} {note}",
        last.rss_kib / 1024,
        last.rss_anon_kib / 1024,
        last.fds
    );
    Ok(())
}

/// A Subscribe stream on its own connection, never read, or the error it was refused with.
async fn stalled_grpc(
    endpoint: &str,
    stream: &str,
) -> Result<std::result::Result<tonic::Streaming<pb::SubscribeEvent>, String>> {
    let channel = Endpoint::from_shared(endpoint.to_owned())?
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await?;
    let mut client = SluiceClient::new(channel).max_decoding_message_size(64 << 20);
    let request = pb::SubscribeRequest {
        stream_name: stream.to_owned(),
        shard_id: "shardId-000000000000".into(),
        starting_position: Some(pb::StartingPosition {
            r#type: pb::ShardIteratorType::TrimHorizon as i32,
            sequence_number: None,
            timestamp_ms: None,
        }),
    };
    Ok(match client.subscribe(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) => Err(format!("{:?}", s.code())),
    })
}

/// One Kinesis call on a connection of its own; the reply's JSON.
async fn kinesis_call(authority: &str, op: &str, body: &Value) -> Result<Value> {
    let mut tcp = TcpStream::connect(authority).await?;
    tcp.write_all(&request(authority, op, body)).await?;
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{op}: no HTTP reply"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{op}: {head} {body}");
    }
    Ok(serde_json::from_str(body)?)
}

fn request(authority: &str, op: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST / HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/x-amz-json-1.1\r\n\
         x-amz-target: Kinesis_20131202.{op}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn register(authority: &str, stream: &str, consumer: &str) -> Result<String> {
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let reply = kinesis_call(
        authority,
        "RegisterStreamConsumer",
        &json!({"StreamARN": arn, "ConsumerName": consumer}),
    )
    .await?;
    reply["Consumer"]["ConsumerARN"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("RegisterStreamConsumer: no ConsumerARN in {reply}"))
}

/// A SubscribeToShard whose client reads the reply's head and then nothing more, or the
/// error type it was refused with.
async fn stalled_kinesis(
    authority: &str,
    consumer_arn: &str,
) -> Result<std::result::Result<TcpStream, String>> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let addr = tokio::net::lookup_host(authority)
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {authority}"))?;
    let mut tcp = socket.connect(addr).await?;
    let body = json!({
        "ConsumerARN": consumer_arn,
        "ShardId": "shardId-000000000000",
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    });
    tcp.write_all(&request(authority, "SubscribeToShard", &body))
        .await?;
    let mut head = [0u8; 1024];
    let n = tcp.read(&mut head).await?;
    let text = String::from_utf8_lossy(&head[..n]);
    if text.starts_with("HTTP/1.1 200") {
        return Ok(Ok(tcp));
    }
    let kind = text
        .split("\"__type\":\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or("?");
    Ok(Err(kind.to_owned()))
}
