#![allow(clippy::unwrap_used)]
//! Resharding while producers write, against the real server.
//!
//! Producers put numbered records per partition key through gRPC (PutRecord and
//! PutRecords) while the test splits a shard, merges two, and runs UpdateShardCount. A
//! consumer then reads the stream the way Kinesis requires (a shard only after every
//! parent was read to its end, lineage from ListShards and checked against
//! `ChildShards`): no acknowledged record may be lost, none duplicated, and each key's
//! records must come in the order they were written. A second test follows a split
//! live with `sluice-cli tail` and with the Subscribe RPC itself.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_proto::v1 as pb;
use support::{CliProcess, Client, Server, list_shards, position, put};
use tokio::sync::watch;

const STREAM: &str = "load";
const PRODUCERS: usize = 3;
const KEYS_PER_PRODUCER: usize = 6;
/// A bound on each producer's loop, far above what it reaches before it is stopped.
const PUTS_PER_PRODUCER_MAX: usize = 200_000;
/// The calls each producer makes between two reshards: two rounds over its keys, so every
/// key is written before and after every reshard, however the tasks are scheduled.
const PHASE_CALLS: u64 = 2 * KEYS_PER_PRODUCER as u64;
/// A bound on waiting for the producers' progress; reached only if they hang.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// One acknowledged record: key, per-key number, shard and sequence number.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    n: u64,
    shard_id: String,
    sequence_number: String,
}

#[test]
fn no_record_lost_duplicated_or_reordered_across_split_merge_and_resize() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    support::run_async(async {
        let mut admin = server.client().await;
        support::create_active(&mut admin, STREAM, 2).await;

        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(watch::Sender::new(vec![0u64; PRODUCERS]));
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let client = server.client().await;
            producers.push(tokio::spawn(produce(
                client,
                p,
                stop.clone(),
                progress.clone(),
            )));
        }

        // Each phase ends when every producer has made PHASE_CALLS more calls (a gate, not
        // a time): records land in every shard of every generation on any machine.
        let mut calls = progress.subscribe();
        each_producer_calls(&mut calls, PHASE_CALLS).await;
        split_first_open_shard(&mut admin, STREAM).await;
        each_producer_calls(&mut calls, PHASE_CALLS).await;
        merge_an_adjacent_pair(&mut admin).await;
        each_producer_calls(&mut calls, PHASE_CALLS).await;
        let open = open_shards(&list_shards(&mut admin, STREAM).await).len();
        let target = u32::try_from(open * 2).unwrap();
        let resized = admin
            .update_shard_count(pb::UpdateShardCountRequest {
                stream_name: STREAM.into(),
                target_shard_count: target,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resized.target_shard_count, target);
        support::wait_active(&mut admin, STREAM).await;
        each_producer_calls(&mut calls, PHASE_CALLS).await;
        stop.store(true, Ordering::Relaxed);

        let mut acked = Vec::new();
        for producer in producers {
            acked.extend(producer.await.unwrap());
        }
        let shards = list_shards(&mut admin, STREAM).await;
        assert_eq!(open_shards(&shards).len(), target as usize);
        let read = support::read_in_lineage_order(&mut admin, STREAM).await;
        check(&acked, &read, &shards);
    });
}

#[test]
fn tail_and_subscribe_follow_a_split() {
    let dir = tempfile::tempdir().unwrap();
    // Short subscriptions, so tail also has to resubscribe from its continuation number.
    let server = Server::start_with_env(dir.path(), &[("SLUICE_BROKER_SUBSCRIPTION_TTL", "1s")]);
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "tail", 1).await;
        let mut written = Vec::new();
        for i in 0..10 {
            written.push(put_numbered(&mut client, "tail", i).await);
        }
        let tail = CliProcess::spawn(
            &server.endpoint(),
            &[
                "tail",
                "--stream-name",
                "tail",
                "--from",
                "trim-horizon",
                "--max-records",
                "30",
            ],
        );
        let mut lines = blocking_lines(&tail, 10).await;
        // Outlive one subscription, then write more to the parent. (A lower bound: tail's
        // first subscription has ended by then on any machine; nothing asserts an upper.)
        tokio::time::sleep(Duration::from_millis(1300)).await;
        for i in 10..15 {
            written.push(put_numbered(&mut client, "tail", i).await);
        }
        lines.extend(blocking_lines(&tail, 5).await);
        split_first_open_shard(&mut client, "tail").await;
        for i in 15..30 {
            written.push(put_numbered(&mut client, "tail", i).await);
        }
        lines.extend(blocking_lines(&tail, 15).await);
        let status = tokio::task::spawn_blocking(move || tail.wait())
            .await
            .unwrap();
        assert!(status.success(), "tail exited with {status}");
        check_tail(&lines, &written);
        subscribe_reports_children(&mut client).await;
    });
}

/// Waits (bounded) until every producer has made `more` calls since the last wait.
async fn each_producer_calls(calls: &mut watch::Receiver<Vec<u64>>, more: u64) {
    let from = calls.borrow_and_update().clone();
    let enough = |now: &Vec<u64>| now.iter().zip(&from).all(|(n, f)| *n >= f + more);
    tokio::time::timeout(PROGRESS_TIMEOUT, calls.wait_for(enough))
        .await
        .unwrap_or_else(|_| {
            panic!("a producer made fewer than {more} calls in {PROGRESS_TIMEOUT:?}")
        })
        .expect("the producers are gone");
}

/// Writes `key:n` records on this producer's keys until stopped, counting its calls in
/// `progress`; returns what was acked.
async fn produce(
    mut client: Client,
    producer: usize,
    stop: Arc<AtomicBool>,
    progress: Arc<watch::Sender<Vec<u64>>>,
) -> Vec<Acked> {
    let keys: Vec<String> = (0..KEYS_PER_PRODUCER)
        .map(|k| format!("p{producer}-k{k}"))
        .collect();
    let mut next_n = vec![0u64; keys.len()];
    let mut acked = Vec::new();
    for i in 0..PUTS_PER_PRODUCER_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = i % keys.len();
        if i % 2 == 0 {
            let n = next_n[k];
            let reply = put(
                &mut client,
                STREAM,
                &keys[k],
                record(&keys[k], n).as_bytes(),
            )
            .await;
            acked.push(acked_record(
                &keys[k],
                n,
                reply.shard_id,
                reply.sequence_number,
            ));
            next_n[k] += 1;
        } else {
            // A batch of three records of one key: PutRecords keeps their order.
            let ns: Vec<u64> = (next_n[k]..next_n[k] + 3).collect();
            let entries = ns
                .iter()
                .map(|n| pb::PutRecordsRequestEntry {
                    partition_key: keys[k].clone(),
                    explicit_hash_key: None,
                    data: record(&keys[k], *n).into_bytes().into(),
                })
                .collect();
            let reply = client
                .put_records(pb::PutRecordsRequest {
                    stream_name: STREAM.into(),
                    records: entries,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.failed_record_count, 0, "{reply:?}");
            for (n, result) in ns.iter().zip(reply.records) {
                acked.push(acked_record(
                    &keys[k],
                    *n,
                    result.shard_id,
                    result.sequence_number,
                ));
            }
            next_n[k] += 3;
        }
        progress.send_modify(|calls| calls[producer] += 1);
    }
    acked
}

fn acked_record(key: &str, n: u64, shard_id: String, sequence_number: String) -> Acked {
    Acked {
        key: key.to_owned(),
        n,
        shard_id,
        sequence_number,
    }
}

fn record(key: &str, n: u64) -> String {
    format!("{key}:{n}")
}

/// `key:n` back from a record's data.
fn parse(data: &[u8]) -> (String, u64) {
    let text = std::str::from_utf8(data).unwrap();
    let (key, n) = text.rsplit_once(':').unwrap();
    (key.to_owned(), n.parse().unwrap())
}

/// Every acknowledged record read once, where it was acknowledged, in key order.
fn check(acked: &[Acked], read: &[(String, pb::Record)], shards: &[pb::Shard]) {
    assert!(
        acked.len() > 100,
        "producers wrote too little: {}",
        acked.len()
    );
    let by_record: BTreeMap<(String, u64), &Acked> =
        acked.iter().map(|a| ((a.key.clone(), a.n), a)).collect();
    assert_eq!(
        by_record.len(),
        acked.len(),
        "a record was acknowledged twice"
    );
    let mut seen = BTreeSet::new();
    let mut last_n: BTreeMap<String, u64> = BTreeMap::new();
    for (shard_id, r) in read {
        let (key, n) = parse(&r.data);
        assert!(seen.insert((key.clone(), n)), "{key}:{n} read twice");
        let a = by_record
            .get(&(key.clone(), n))
            .unwrap_or_else(|| panic!("{key}:{n} read but never acknowledged"));
        assert_eq!(&a.shard_id, shard_id, "{key}:{n} is not in its shard");
        assert_eq!(a.sequence_number, r.sequence_number, "{key}:{n}");
        assert_eq!(r.partition_key, key);
        let expected = last_n.get(&key).map_or(0, |m| m + 1);
        assert_eq!(n, expected, "{key} out of order");
        last_n.insert(key, n);
    }
    assert_eq!(seen.len(), acked.len(), "acknowledged records are missing");
    // The test means something only if records landed in parents and children alike.
    let shards_with_records: BTreeSet<&String> = read.iter().map(|(s, _)| s).collect();
    let closed = shards.len() - open_shards(shards).len();
    assert!(closed >= 3, "{shards:?}");
    assert!(shards_with_records.len() >= 5, "{shards_with_records:?}");
}

/// Tail printed each record once, parents before children, per-key order kept.
fn check_tail(lines: &[String], written: &[(String, u64)]) {
    let mut seen = BTreeSet::new();
    let mut last_n: BTreeMap<String, u64> = BTreeMap::new();
    let mut child_seen = false;
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let shard = value["ShardId"].as_str().unwrap();
        let data = value["Data"].as_str().unwrap();
        let (key, n) = parse(data.as_bytes());
        assert_eq!(value["PartitionKey"], key.as_str());
        assert!(seen.insert((key.clone(), n)), "{data} printed twice");
        if let Some(m) = last_n.get(&key) {
            assert!(n > *m, "{key} out of order");
        }
        last_n.insert(key, n);
        if shard == "shardId-000000000000" {
            assert!(!child_seen, "a parent record after a child's: {lines:?}");
        } else {
            child_seen = true;
        }
    }
    let expected: BTreeSet<(String, u64)> = written.iter().cloned().collect();
    assert_eq!(seen, expected);
    assert!(child_seen, "no record of a child shard: {lines:?}");
}

/// The parent's subscription ends with its two children, after all its records. The
/// server ends every subscription after its one-second lifetime, which on a slow machine
/// can come first: then the test resumes after the last continuation number, as a
/// consumer does.
async fn subscribe_reports_children(client: &mut Client) {
    let mut start = position(pb::ShardIteratorType::TrimHorizon);
    let mut records = 0;
    for _ in 0..100 {
        let request = pb::SubscribeRequest {
            stream_name: "tail".into(),
            shard_id: "shardId-000000000000".into(),
            starting_position: Some(start.clone()),
        };
        let mut events = client.subscribe(request).await.unwrap().into_inner();
        while let Some(event) = events.message().await.unwrap() {
            records += event.records.len();
            start = pb::StartingPosition {
                r#type: pb::ShardIteratorType::AfterSequenceNumber as i32,
                sequence_number: Some(event.continuation_sequence_number.clone()),
                timestamp_ms: None,
            };
            if event.child_shards.is_empty() {
                continue;
            }
            assert_eq!(records, 15);
            let children: Vec<&str> = event
                .child_shards
                .iter()
                .map(|c| c.shard_id.as_str())
                .collect();
            assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
            for child in &event.child_shards {
                assert_eq!(child.parent_shards, ["shardId-000000000000"]);
            }
            return;
        }
    }
    panic!("no ChildShards event in 100 subscriptions");
}

/// Puts record `n` on one of five keys; returns `(key, n)`.
async fn put_numbered(client: &mut Client, stream: &str, n: u64) -> (String, u64) {
    let key = format!("k{}", n % 5);
    put(client, stream, &key, record(&key, n).as_bytes()).await;
    (key, n)
}

async fn blocking_lines(tail: &CliProcess, n: usize) -> Vec<String> {
    tokio::task::block_in_place(|| tail.take_lines(n, Duration::from_secs(30)))
}

fn open_shards(shards: &[pb::Shard]) -> Vec<&pb::Shard> {
    shards
        .iter()
        .filter(|s| {
            s.sequence_number_range
                .as_ref()
                .unwrap()
                .ending_sequence_number
                .is_none()
        })
        .collect()
}

fn range(shard: &pb::Shard) -> (u128, u128) {
    let r = shard.hash_key_range.as_ref().unwrap();
    (
        r.starting_hash_key.parse().unwrap(),
        r.ending_hash_key.parse().unwrap(),
    )
}

async fn split_first_open_shard(client: &mut Client, stream: &str) {
    let shards = list_shards(client, stream).await;
    let shard = open_shards(&shards)[0].clone();
    let (start, end) = range(&shard);
    client
        .split_shard(pb::SplitShardRequest {
            stream_name: stream.into(),
            shard_to_split: shard.shard_id.clone(),
            new_starting_hash_key: (start + (end - start) / 2 + 1).to_string(),
        })
        .await
        .unwrap();
    support::wait_active(client, stream).await;
}

async fn merge_an_adjacent_pair(client: &mut Client) {
    let shards = list_shards(client, STREAM).await;
    let mut open = open_shards(&shards);
    open.sort_by_key(|s| range(s).0);
    let pair = open
        .windows(2)
        .find(|w| range(w[0]).1 + 1 == range(w[1]).0)
        .unwrap();
    client
        .merge_shards(pb::MergeShardsRequest {
            stream_name: STREAM.into(),
            shard_to_merge: pair[0].shard_id.clone(),
            adjacent_shard_to_merge: pair[1].shard_id.clone(),
        })
        .await
        .unwrap();
    support::wait_active(client, STREAM).await;
}
