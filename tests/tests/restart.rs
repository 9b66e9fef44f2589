#![allow(clippy::unwrap_used)]
//! Stopping and starting the real server on the same data directory.
//!
//! SIGTERM must exit 0, and after a restart every stream, shard, lineage (after a split)
//! and record must be as before, and writes must go on. SIGKILL while producers write,
//! several times over: after each restart every acknowledged record is there once, with
//! the sequence number it was acknowledged with, in per-key order; a record whose put
//! was cut off may be there or not, but never damaged.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::v1 as pb;
use support::{Client, Server, list_shards, put};
use tokio::sync::watch;

/// Everything a client can observe about one stream.
#[derive(Debug, PartialEq)]
struct StreamState {
    name: String,
    status: i32,
    retention_period_hours: u32,
    shards: Vec<pb::Shard>,
    records: Vec<(String, pb::Record)>,
}

#[test]
fn sigterm_exits_0_and_a_restart_keeps_streams_shards_lineage_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let before = support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, "a", 1).await;
        support::create_active(&mut client, "b", 3).await;
        for i in 0..20 {
            put(
                &mut client,
                "a",
                &format!("k{i}"),
                format!("a{i}").as_bytes(),
            )
            .await;
            put(
                &mut client,
                "b",
                &format!("k{i}"),
                format!("b{i}").as_bytes(),
            )
            .await;
        }
        client
            .split_shard(pb::SplitShardRequest {
                stream_name: "a".into(),
                shard_to_split: "shardId-000000000000".into(),
                new_starting_hash_key: (1u128 << 127).to_string(),
            })
            .await
            .unwrap();
        support::wait_active(&mut client, "a").await;
        for i in 20..40 {
            put(
                &mut client,
                "a",
                &format!("k{i}"),
                format!("a{i}").as_bytes(),
            )
            .await;
        }
        snapshot(&mut client).await
    });
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].shards.len(), 3, "the split is in the lineage");
    assert_eq!(before[0].records.len(), 40);
    assert_eq!(before[1].records.len(), 20);

    let status = server.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must stop the server cleanly"
    );

    let server = Server::start(dir.path());
    support::run_async(async {
        let mut client = server.client().await;
        let after = snapshot(&mut client).await;
        assert_eq!(after, before);
        // Writes go on after the restart, into the children, after every old record.
        let reply = put(&mut client, "a", "k0", b"after restart").await;
        assert_ne!(reply.shard_id, "shardId-000000000000");
        let records = support::read_in_lineage_order(&mut client, "a").await;
        let last = records
            .iter()
            .rfind(|(shard, _)| *shard == reply.shard_id)
            .unwrap();
        assert_eq!(&last.1.data[..], b"after restart");
        assert_eq!(last.1.sequence_number, reply.sequence_number);
        assert_eq!(records.len(), 41);
    });
}

#[test]
fn sigkill_under_load_then_restart_keeps_every_acknowledged_record() {
    const CYCLES: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    // key -> n -> acknowledged sequence number, over every cycle.
    let mut acked: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    let mut next_n: BTreeMap<String, u64> = BTreeMap::new();
    for cycle in 0..CYCLES {
        let server = Server::start(dir.path());
        let results = support::run_async(async {
            let mut client = server.client().await;
            if cycle == 0 {
                support::create_active(&mut client, "k", 2).await;
            }
            check_acked(&mut client, &acked).await;
            let acks = Arc::new(watch::Sender::new([0usize; 2]));
            let mut producers = Vec::new();
            for p in 0..2 {
                let client = server.client().await;
                let keys: Vec<(String, u64)> = (0..4)
                    .map(|k| {
                        let key = format!("p{p}-k{k}");
                        let n = next_n.get(&key).copied().unwrap_or(0);
                        (key, n)
                    })
                    .collect();
                let counter = (acks.clone(), p);
                producers.push(tokio::spawn(produce_until_failure(client, keys, counter)));
            }
            // Kill while the producers are mid-flight, at a different point each cycle: once
            // each has this many acknowledgements (a gate, not a time, so every producer has
            // some on any machine) and goes on writing.
            let want = 5 + 20 * cycle;
            let mut acked_now = acks.subscribe();
            tokio::time::timeout(
                Duration::from_secs(60),
                acked_now.wait_for(|n| n.iter().all(|n| *n >= want)),
            )
            .await
            .unwrap_or_else(|_| panic!("the producers did not reach {want} acknowledgements"))
            .expect("the producers stopped");
            let pid = rustix::process::Pid::from_raw(server.pid() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            let mut results = Vec::new();
            for producer in producers {
                results.push(producer.await.unwrap());
            }
            results
        });
        server.kill();
        for (acks, tried) in results {
            assert!(!acks.is_empty(), "a producer got nothing acknowledged");
            for (key, n, sequence_number) in acks {
                acked.entry(key).or_default().insert(n, sequence_number);
            }
            for (key, n) in tried {
                next_n.insert(key, n + 1);
            }
        }
    }
    let server = Server::start(dir.path());
    support::run_async(async {
        let mut client = server.client().await;
        check_acked(&mut client, &acked).await;
    });
}

/// Puts `key:n` records round-robin over `keys` until a put fails (the server died),
/// counting its acknowledgements in slot `counter.1` of `counter.0`. Returns the
/// acknowledged `(key, n, sequence number)` and, per key, the last n tried.
async fn produce_until_failure(
    mut client: Client,
    mut keys: Vec<(String, u64)>,
    counter: (Arc<watch::Sender<[usize; 2]>>, usize),
) -> (Vec<(String, u64, String)>, Vec<(String, u64)>) {
    let (acked, slot) = counter;
    let mut acks = Vec::new();
    let mut tried: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..1_000_000 {
        let (key, n) = &mut keys[i % 4];
        tried.insert(key.clone(), *n);
        let request = pb::PutRecordRequest {
            stream_name: "k".into(),
            partition_key: key.clone(),
            explicit_hash_key: None,
            data: format!("{key}:{n}").into_bytes().into(),
        };
        match client.put_record(request).await {
            Ok(reply) => {
                acks.push((key.clone(), *n, reply.into_inner().sequence_number));
                acked.send_modify(|counts| counts[slot] += 1);
            }
            Err(_) => break,
        }
        *n += 1;
    }
    (acks, tried.into_iter().collect())
}

/// Every acknowledged record is read back once with its number, keys in order; any
/// other record is an intact `key:n` from a cut-off put.
async fn check_acked(client: &mut Client, acked: &BTreeMap<String, BTreeMap<u64, String>>) {
    let read = support::read_in_lineage_order(client, "k").await;
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut last_n: BTreeMap<String, u64> = BTreeMap::new();
    for (_, r) in &read {
        let text = std::str::from_utf8(&r.data).unwrap();
        let (key, n) = text.rsplit_once(':').unwrap();
        let n: u64 = n.parse().unwrap();
        assert_eq!(r.partition_key, key, "damaged record {text}");
        assert!(seen.insert((key.to_owned(), n)), "{text} read twice");
        if let Some(m) = last_n.get(key) {
            assert!(n > *m, "{key} out of order");
        }
        last_n.insert(key.to_owned(), n);
        if let Some(sequence_number) = acked.get(key).and_then(|ns| ns.get(&n)) {
            assert_eq!(sequence_number, &r.sequence_number, "{text}");
        }
    }
    for (key, ns) in acked {
        for n in ns.keys() {
            assert!(
                seen.contains(&(key.clone(), *n)),
                "acknowledged {key}:{n} lost"
            );
        }
    }
}

/// Every stream, its status, retention, shards and records.
async fn snapshot(client: &mut Client) -> Vec<StreamState> {
    let names = client
        .list_streams(pb::ListStreamsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .streams;
    let mut states = Vec::new();
    for summary in names {
        let name = summary.stream_name;
        let description = client
            .describe_stream(pb::DescribeStreamRequest {
                stream_name: name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .stream_description
            .unwrap();
        states.push(StreamState {
            status: description.stream_status,
            retention_period_hours: description.retention_period_hours,
            shards: list_shards(client, &name).await,
            records: support::read_in_lineage_order(client, &name).await,
            name,
        });
    }
    states
}
