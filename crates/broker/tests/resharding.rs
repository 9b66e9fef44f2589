//! Split and merge while producers write: nothing lost or duplicated, per-key order kept
//! when consumers finish parents before children; subscriptions follow a shard to its end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_broker::{
    Broker, BrokerConfig, CreateStream, PutRecordInput, PutRecordsEntry, StartingPosition,
};
use tokio::sync::watch;

async fn drain_shard(b: &Broker, shard: &str) -> (Vec<(String, u64)>, Vec<String>) {
    let mut it = b
        .get_shard_iterator("s", shard, StartingPosition::TrimHorizon)
        .await
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let r = b.get_records(&it, None).await.unwrap();
        for rec in &r.records {
            let v: u64 = String::from_utf8(rec.data.to_vec())
                .unwrap()
                .parse()
                .unwrap();
            out.push((rec.partition_key.clone(), v));
        }
        match r.next_shard_iterator {
            Some(next) => {
                if r.records.is_empty() {
                    return (out, Vec::new());
                }
                it = next;
            }
            None => {
                return (
                    out,
                    r.child_shards.into_iter().map(|c| c.shard_id).collect(),
                );
            }
        }
    }
    panic!("shard {shard} never ended");
}

/// Producers and reshards are ordered by gates, not by time: producer `p` waits before its
/// put `GATE * k` until reshard `k` is done, and reshard `k` starts once the producers have
/// made `RESHARD_AFTER[k - 1]` puts in all, half a gate before they could all be waiting.
/// So every reshard runs while puts are in flight, and every producer writes before and
/// after each reshard, however the threads are scheduled.
const PRODUCERS: u64 = 4;
const PUTS_PER_PRODUCER: u64 = 80;
const GATE: u64 = 20;
const RESHARD_AFTER: [u64; 3] = [
    PRODUCERS * GATE / 2,
    PRODUCERS * GATE * 3 / 2,
    PRODUCERS * GATE * 5 / 2,
];
/// A bound on any wait for the other side of a gate; reached only if something hangs.
const GATE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshards_under_load_lose_nothing_and_keep_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap();
    b.create_stream(CreateStream::new("s", 2)).await.unwrap();
    let puts_made = Arc::new(watch::Sender::new(0u64));
    let (reshards_done, reshards) = watch::channel(0u64);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (b, puts_made, mut reshards) = (b.clone(), puts_made.clone(), reshards.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..PUTS_PER_PRODUCER {
                    if i > 0 && i % GATE == 0 {
                        let k = i / GATE;
                        tokio::time::timeout(GATE_TIMEOUT, reshards.wait_for(|done| *done >= k))
                            .await
                            .unwrap_or_else(|_| panic!("reshard {k} never finished"))
                            .unwrap();
                    }
                    let key = format!("key-{p}-{}", i % 5);
                    let v = p * 1_000_000 + i;
                    let batch = vec![PutRecordInput {
                        partition_key: key.clone(),
                        explicit_hash_key: None,
                        data: Bytes::from(v.to_string()),
                    }];
                    let out = b.put_records("s", batch).await.unwrap();
                    if let PutRecordsEntry::Ok(_) = &out.records[0] {
                        acked.push((key, v));
                    }
                    puts_made.send_modify(|n| *n += 1);
                }
                acked
            })
        })
        .collect();
    let mut made = puts_made.subscribe();
    for (k, after) in (1..).zip(RESHARD_AFTER) {
        tokio::time::timeout(GATE_TIMEOUT, made.wait_for(|n| *n >= after))
            .await
            .unwrap_or_else(|_| panic!("producers stopped before {after} puts"))
            .unwrap();
        match k {
            1 => {
                let mid = (u128::MAX / 4).to_string();
                b.split_shard("s", "shardId-000000000000", &mid)
                    .await
                    .unwrap();
            }
            2 => b
                .merge_shards("s", "shardId-000000000002", "shardId-000000000003")
                .await
                .unwrap(),
            _ => {
                b.update_shard_count("s", 4).await.unwrap();
            }
        }
        common::wait_active(&b, "s").await;
        reshards_done.send_replace(k);
    }
    let mut acked = Vec::new();
    for p in producers {
        acked.extend(p.await.unwrap());
    }
    // Consume in lineage order: a shard only after all its parents are finished.
    let shards = b.list_shards("s", None, None).await.unwrap().shards;
    let mut done: HashSet<String> = HashSet::new();
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut rounds = 0;
    while done.len() < shards.len() {
        rounds += 1;
        assert!(rounds < 100, "lineage never finished");
        for s in &shards {
            let parents_done = [&s.parent_shard_id, &s.adjacent_parent_shard_id]
                .iter()
                .all(|p| p.as_ref().is_none_or(|p| done.contains(p)));
            if done.contains(&s.shard_id) || !parents_done {
                continue;
            }
            let (records, children) = drain_shard(&b, &s.shard_id).await;
            if s.ending_sequence_number.is_some() {
                assert!(
                    !children.is_empty(),
                    "closed shard {} gave no children",
                    s.shard_id
                );
            }
            for (k, v) in records {
                per_key.entry(k).or_default().push(v);
                all.push(v);
            }
            done.insert(s.shard_id.clone());
        }
    }
    let mut seen = HashMap::new();
    for v in &all {
        *seen.entry(*v).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "a record was read twice");
    for (_, v) in &acked {
        assert_eq!(seen.get(v), Some(&1), "acknowledged record {v} lost");
    }
    for (k, vs) in &per_key {
        assert!(
            vs.windows(2).all(|w| w[0] < w[1]),
            "key {k} out of order: {vs:?}"
        );
    }
    assert_eq!(all.len(), acked.len());
}

/// On tokio's paused clock: time moves only when every task waits on a timer and no
/// blocking-pool work (the broker's appends and syncs) is running, so a wake-up that came
/// from the subscription's 5-second heartbeat timer instead of the commit shows as 5
/// seconds gone, on any machine, and a slow machine never looks like one.
#[tokio::test(start_paused = true)]
async fn a_subscription_gets_records_live_and_ends_with_the_children() {
    let dir = tempfile::tempdir().unwrap();
    let b: Arc<Broker> = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap();
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    b.put_record(
        "s",
        PutRecordInput {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"before"),
        },
    )
    .await
    .unwrap();
    let mut sub = b
        .subscribe("s", "shardId-000000000000", StartingPosition::Latest)
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    b.put_record(
        "s",
        PutRecordInput {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"live"),
        },
    )
    .await
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(60), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "delivered on commit, not on a timer"
    );
    assert_eq!(ev.event.records.len(), 1);
    assert_eq!(ev.event.records[0].data, Bytes::from_static(b"live"));
    // Resuming after the continuation number gets exactly what came later.
    b.put_record(
        "s",
        PutRecordInput {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: Bytes::from_static(b"later"),
        },
    )
    .await
    .unwrap();
    let it = b
        .get_shard_iterator(
            "s",
            "shardId-0",
            StartingPosition::AfterSequenceNumber(ev.event.continuation_sequence_number.clone()),
        )
        .await
        .unwrap();
    let rest = b.get_records(&it, None).await.unwrap();
    assert_eq!(rest.records.len(), 1);
    assert_eq!(rest.records[0].data, Bytes::from_static(b"later"));
    b.split_shard("s", "shardId-000000000000", "1000")
        .await
        .unwrap();
    common::wait_active(&b, "s").await;
    let mut children = Vec::new();
    for _ in 0..10 {
        let ev = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if !ev.event.child_shards.is_empty() {
            children = ev.event.child_shards;
            break;
        }
    }
    assert_eq!(children.len(), 2);
    assert_eq!(
        children[0].parent_shards,
        vec!["shardId-000000000000".to_owned()]
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .is_none(),
        "the subscription ends at the shard's end"
    );
}

/// Regression: a reader at the end of a shard while appends are in flight (written, not
/// yet synced) got "sequence N is beyond the end of the log" as an internal error, from
/// a LATEST iterator or from the MillisBehindLatest probe after a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_at_the_tip_never_fail_while_producers_write() {
    const READS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    })
    .unwrap();
    b.create_stream(CreateStream::new("s", 1)).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = Arc::new(watch::Sender::new(vec![0u64; 4]));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (b, stop, written) = (b.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1_000_000 {
                    let rec = PutRecordInput {
                        partition_key: format!("k{p}"),
                        explicit_hash_key: None,
                        data: Bytes::from(n.to_string()),
                    };
                    b.put_record("s", rec).await.unwrap();
                    n += 1;
                    written.send_modify(|w| w[p] = n);
                }
                n
            })
        })
        .collect();
    // Reads start once every producer has written (gate), and go on for a fixed number of
    // rounds while the producers keep writing until told to stop.
    let mut written_by = written.subscribe();
    tokio::time::timeout(
        Duration::from_secs(60),
        written_by.wait_for(|w| w.iter().all(|n| *n > 0)),
    )
    .await
    .expect("a producer never wrote")
    .unwrap();
    let mut seen = 0usize;
    let mut it = b
        .get_shard_iterator("s", "shardId-000000000000", StartingPosition::TrimHorizon)
        .await
        .unwrap();
    for _ in 0..READS {
        let latest = b
            .get_shard_iterator("s", "shardId-000000000000", StartingPosition::Latest)
            .await
            .unwrap();
        b.get_records(&latest, None).await.unwrap();
        let out = b.get_records(&it, Some(7)).await.unwrap();
        seen += out.records.len();
        it = out.next_shard_iterator.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for p in producers {
        written += p.await.unwrap();
    }
    assert!(
        written >= 4,
        "every producer wrote before the reads: {written}"
    );
    assert!(seen > 0, "the reader never caught up with a record");
}
