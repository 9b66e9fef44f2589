//! Issue 13: stream administration runs beside the data path. Against the real server: a
//! CreateStream of 2,000 shards, an UpdateShardCount of it to 3,000 (after a few hundred of
//! its shards got records, so the resize seals hundreds of logs) and its DeleteStream each
//! return within a second and show CREATING, UPDATING and DELETING, while another stream's
//! puts keep succeeding, each within a second; the big stream becomes ACTIVE, then gone,
//! and its files are removed.
//!
//! Before the fix each call held the catalogue for seconds (1,000 shards: 8-13 s) and the
//! other stream's puts waited as long. The bounds here are the (a call answers
//! within a second) and generous for a put (its own bound is milliseconds); the statuses
//! are pinned with a five-second status delay, so nothing depends on how fast the
//! background work is. The steady stream's latencies are printed, not asserted.

// Test code panics on failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_proto::v1 as pb;
use support::{Client, Server};

const STEADY: &str = "steady";
const BIG: &str = "big";
const SHARDS: u32 = 2_000;
/// The bound for an administrative call, and the generous one for a put here.
const CALL_BOUND: Duration = Duration::from_secs(1);
/// Shards of the big stream that get a record (and so a log to seal and remove).
const WRITTEN: u128 = 400;

#[test]
fn create_resize_and_delete_of_2000_shards_answer_at_once_beside_steady_puts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(dir.path(), &[("SLUICE_BROKER_STATUS_DELAY", "5s")]);
    support::run_async(async {
        let mut admin = server.client().await;
        support::create_active(&mut admin, STEADY, 2).await;
        let stop = Arc::new(AtomicBool::new(false));
        let steady = tokio::spawn(steady_puts(server.client().await, stop.clone()));

        let took = timed(admin.create_stream(pb::CreateStreamRequest {
            stream_name: BIG.into(),
            shard_count: SHARDS,
            ..Default::default()
        }))
        .await;
        assert!(
            took < CALL_BOUND,
            "CreateStream of {SHARDS} shards took {took:?}"
        );
        assert_eq!(status(&mut admin).await, Some(pb::StreamStatus::Creating));
        support::wait_active(&mut admin, BIG).await;
        write_to_many_shards(&mut admin).await;

        let took = timed(admin.update_shard_count(pb::UpdateShardCountRequest {
            stream_name: BIG.into(),
            target_shard_count: SHARDS + SHARDS / 2,
        }))
        .await;
        assert!(took < CALL_BOUND, "UpdateShardCount took {took:?}");
        assert_eq!(status(&mut admin).await, Some(pb::StreamStatus::Updating));
        support::wait_active(&mut admin, BIG).await;
        let shards = support::list_shards(&mut admin, BIG).await;
        let open = shards.iter().filter(|s| is_open(s)).count();
        assert_eq!(open, (SHARDS + SHARDS / 2) as usize);

        let took = timed(admin.delete_stream(pb::DeleteStreamRequest {
            stream_name: BIG.into(),
        }))
        .await;
        assert!(took < CALL_BOUND, "DeleteStream took {took:?}");
        assert_eq!(status(&mut admin).await, Some(pb::StreamStatus::Deleting));
        wait_gone(&mut admin, dir.path()).await;

        stop.store(true, Ordering::Relaxed);
        let latencies = steady.await.unwrap();
        report(&latencies);
    });
}

/// Puts to the steady stream until stopped; every put must succeed within the bound.
/// Returns every latency.
async fn steady_puts(mut client: Client, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) || n > 1_000_000 {
            break;
        }
        let started = Instant::now();
        support::put(&mut client, STEADY, &format!("k{}", n % 8), b"steady").await;
        let took = started.elapsed();
        assert!(took < CALL_BOUND, "a put to {STEADY} took {took:?}");
        latencies.push(took);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    latencies
}

/// One record into each of `WRITTEN` shards spread over the big stream, so they get logs.
async fn write_to_many_shards(client: &mut Client) {
    let step = u128::MAX / WRITTEN;
    let records: Vec<pb::PutRecordsRequestEntry> = (0..WRITTEN)
        .map(|i| pb::PutRecordsRequestEntry {
            partition_key: "k".into(),
            explicit_hash_key: Some((i * step).to_string()),
            data: format!("record {i}").into_bytes().into(),
        })
        .collect();
    let reply = client
        .put_records(pb::PutRecordsRequest {
            stream_name: BIG.into(),
            records,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.failed_record_count, 0);
}

async fn timed<T>(call: impl std::future::Future<Output = Result<T, tonic::Status>>) -> Duration {
    let started = Instant::now();
    call.await.unwrap();
    started.elapsed()
}

async fn status(client: &mut Client) -> Option<pb::StreamStatus> {
    let reply = client
        .describe_stream(pb::DescribeStreamRequest {
            stream_name: BIG.into(),
            limit: Some(1),
            exclusive_start_shard_id: None,
        })
        .await
        .ok()?
        .into_inner();
    pb::StreamStatus::try_from(reply.stream_description?.stream_status).ok()
}

/// Waits (bounded) until the big stream is not found and only the steady stream has files.
async fn wait_gone(client: &mut Client, data_dir: &Path) {
    for _ in 0..1_200 {
        let described = client
            .describe_stream(pb::DescribeStreamRequest {
                stream_name: BIG.into(),
                ..Default::default()
            })
            .await;
        let files = std::fs::read_dir(data_dir.join("streams")).unwrap().count();
        if let Err(status) = &described {
            assert_eq!(status.code(), tonic::Code::NotFound);
            if files == 1 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{BIG} was not gone, files and all, within a minute");
}

fn is_open(shard: &pb::Shard) -> bool {
    shard
        .sequence_number_range
        .as_ref()
        .is_some_and(|r| r.ending_sequence_number.is_none())
}

fn report(latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "steady puts during administration: {} puts, p50 {:?}, p99 {:?}, max {:?}",
        sorted.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert!(!sorted.is_empty());
}
