//! `--mode admin`: a steady put and read load on the bench stream while another client
//! creates, resizes and deletes a big stream in a loop (issue 13). Reports the steady
//! client's put and read latencies for the whole run (`put`, `get`), how long each
//! administrative call took to answer (`admin-call`), and how long each change took to be
//! carried out: created to ACTIVE (`to-active`), resized to ACTIVE (`resized`), deleted to
//! not found (`to-gone`) and, with a spawned server, to its files removed (`files-gone`).
//!
//! The administration speaks gRPC whatever `--api` the steady load uses. Each cycle writes
//! one record into `--admin-records` of the big stream's shards, so the resize has logs to
//! seal and the deletion files to remove. Every wait is bounded; a change not carried out
//! within [`CHANGE_TIMEOUT`] is an error, and so is any failed call.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use tokio::time::Instant as TokioInstant;
use tonic::transport::Channel;

use super::Args;
use super::modes::{Target, get_phase, put_phase};
use super::report::Stats;

/// The longest one administrative change may take to be carried out.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

type Grpc = sluice_proto::v1::sluice_client::SluiceClient<Channel>;

/// The steady load and the administration loop side by side, until `--duration` ends (the
/// cycle in progress then finishes, bounded).
pub async fn run(
    args: &Args,
    target: &Target,
    streams: &[String],
    shards: &[(String, String)],
    data_dir: Option<PathBuf>,
) -> Result<(Vec<Stats>, Value)> {
    let deadline = TokioInstant::now() + args.duration();
    let readers = {
        let (args, shards, target) = (args.clone(), shards.to_vec(), target.clone());
        tokio::spawn(async move { get_phase(&args, &target, &shards, Some(deadline)).await })
    };
    let admin = {
        let grpc = target.grpc_client().await?;
        let (shards, records) = (args.admin_shards, args.admin_records);
        let target = args.admin_target.unwrap_or(shards + shards / 2);
        let size = Size {
            shards,
            records,
            target,
        };
        tokio::spawn(async move { admin_loop(grpc, size, data_dir, deadline).await })
    };
    let put = put_phase(args, target, streams, false).await?;
    let get = readers.await??;
    let (cycles, mut stats) = admin.await??;
    let mut phases = vec![put, get];
    phases.append(&mut stats);
    let extra = json!({
        "admin_shards": args.admin_shards,
        "admin_target": args.admin_target.unwrap_or(args.admin_shards + args.admin_shards / 2),
        "admin_records": args.admin_records,
        "admin_cycles": cycles,
    });
    Ok((phases, extra))
}

/// The stream the administration loop works on.
#[derive(Clone, Copy)]
struct Size {
    shards: u32,
    records: u32,
    /// The shard count it is resized to.
    target: u32,
}

/// Creates, fills, resizes (to `size.target`) and deletes a stream of `size.shards` shards, again and again
/// until `deadline`; returns the cycles completed and the stats. With the server's data
/// directory, also waits for the deleted stream's files to be removed.
async fn admin_loop(
    mut c: Grpc,
    Size {
        shards,
        records,
        target,
    }: Size,
    data_dir: Option<PathBuf>,
    deadline: TokioInstant,
) -> Result<(u64, Vec<Stats>)> {
    let mut calls = Stats::new("admin-call");
    let mut active = Stats::new("to-active");
    let mut resized = Stats::new("resized");
    let mut gone = Stats::new("to-gone");
    let mut files = Stats::new("files-gone");
    let started = Instant::now();
    let mut cycles = 0u64;
    // A second handle on the same connection makes the calls while `c` waits for them.
    let mut admin = c.clone();
    while TokioInstant::now() < deadline {
        let name = format!("bench-admin-{cycles}");
        let active_status = Some(pb::StreamStatus::Active);
        let create = pb::CreateStreamRequest {
            stream_name: name.clone(),
            shard_count: shards,
            ..Default::default()
        };
        let call = admin.create_stream(create);
        change(call, &mut c, &name, active_status, &mut calls, &mut active).await?;
        fill(&mut c, &name, records).await?;
        let resize = pb::UpdateShardCountRequest {
            stream_name: name.clone(),
            target_shard_count: target,
        };
        let call = admin.update_shard_count(resize);
        change(call, &mut c, &name, active_status, &mut calls, &mut resized).await?;
        let delete = pb::DeleteStreamRequest {
            stream_name: name.clone(),
        };
        let call = admin.delete_stream(delete);
        let t = change(call, &mut c, &name, None, &mut calls, &mut gone).await?;
        if let Some(dir) = &data_dir {
            wait_files_removed(dir, t, &mut files).await?;
        }
        cycles += 1;
    }
    for st in [&mut calls, &mut active, &mut resized, &mut gone, &mut files] {
        st.elapsed = started.elapsed();
    }
    let mut stats = vec![calls, active, resized, gone];
    if data_dir.is_some() {
        stats.push(files);
    }
    Ok((cycles, stats))
}

/// One administrative change of stream `name`: `call` (its answer timed into `calls`),
/// then the wait until the stream is in state `want` (`None`: gone), timed from before
/// the call into `carried_out`. Returns when the call was made.
async fn change<T>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    c: &mut Grpc,
    name: &str,
    want: Option<pb::StreamStatus>,
    calls: &mut Stats,
    carried_out: &mut Stats,
) -> Result<Instant> {
    let t = Instant::now();
    timed(calls, call).await?;
    wait(c, name, want, t, carried_out).await?;
    Ok(t)
}

/// Waits until the server's `streams/` directory holds one entry (the bench stream's),
/// then records the time since `since`. Bounded by [`CHANGE_TIMEOUT`].
async fn wait_files_removed(data_dir: &Path, since: Instant, st: &mut Stats) -> Result<()> {
    let streams = data_dir.join("streams");
    while since.elapsed() < CHANGE_TIMEOUT {
        if std::fs::read_dir(&streams)?.count() <= 1 {
            st.record(since.elapsed());
            st.ops += 1;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    st.errors += 1;
    Err(anyhow!(
        "a deleted stream's files were still in {} after {CHANGE_TIMEOUT:?}",
        streams.display()
    ))
}

/// Times one administrative call into `st`.
async fn timed<T>(
    st: &mut Stats,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<()> {
    let t = Instant::now();
    let result = call.await;
    st.record(t.elapsed());
    st.ops += 1;
    result.map(drop).map_err(|s| {
        st.errors += 1;
        anyhow!("administrative call failed: {s}")
    })
}

/// Waits until the stream has `want` (or is gone, for `None`), then records the time since
/// `since` into `st`. Polls every few milliseconds; bounded by [`CHANGE_TIMEOUT`].
async fn wait(
    c: &mut Grpc,
    name: &str,
    want: Option<pb::StreamStatus>,
    since: Instant,
    st: &mut Stats,
) -> Result<()> {
    while since.elapsed() < CHANGE_TIMEOUT {
        let request = pb::DescribeStreamRequest {
            stream_name: name.to_owned(),
            limit: Some(1),
            exclusive_start_shard_id: None,
        };
        let now = match c.describe_stream(request).await {
            Ok(reply) => reply
                .into_inner()
                .stream_description
                .and_then(|d| pb::StreamStatus::try_from(d.stream_status).ok()),
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(anyhow!("DescribeStream {name}: {s}")),
        };
        if now == want {
            st.record(since.elapsed());
            st.ops += 1;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    st.errors += 1;
    Err(anyhow!(
        "{name} did not reach {want:?} within {CHANGE_TIMEOUT:?}"
    ))
}

/// One record each at `records` hash keys spread evenly over the key space (the middles of
/// `records` equal ranges): one record into each shard of a new stream of that many.
pub async fn fill(c: &mut Grpc, name: &str, records: u32) -> Result<()> {
    let step = u128::MAX / u128::from(records.max(1));
    let entries: Vec<pb::PutRecordsRequestEntry> = (0..u128::from(records))
        .map(|i| pb::PutRecordsRequestEntry {
            partition_key: "admin".into(),
            explicit_hash_key: Some((i * step + step / 2).to_string()),
            data: b"admin".to_vec().into(),
        })
        .collect();
    for chunk in entries.chunks(500) {
        let request = pb::PutRecordsRequest {
            stream_name: name.to_owned(),
            records: chunk.to_vec(),
        };
        let reply = c
            .put_records(request)
            .await
            .map_err(|s| anyhow!("PutRecords {name}: {s}"))?
            .into_inner();
        if reply.failed_record_count > 0 {
            return Err(anyhow!(
                "PutRecords {name}: {} failed",
                reply.failed_record_count
            ));
        }
    }
    Ok(())
}
