#![allow(clippy::unwrap_used)]
//! Regression (found by `sluice-torture`, issue 6): a reshard that landed while one
//! PutRecords request's records were being routed sent the earlier records to the closing
//! parent and the later ones to its child. The child's group was appended first; the
//! parent's group failed with `Sealed`, was routed again to the same child and appended
//! after it. Records of one request for one shard then had sequence numbers out of request
//! order, which broke per-key order (the proto promises "records for one shard keep their
//! order"). The broker now routes a request again when any of its routes went to a log a
//! reshard had already sealed, so one route table serves every record.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_broker::{Broker, BrokerConfig, CreateStream, PutRecordInput, PutRecordsEntry};
use sluice_shards::ManagerConfig;

/// Orders two sequence numbers numerically.
fn seq_less(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_putrecords_keep_request_order_per_shard_while_resharding() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        manager: ManagerConfig {
            shard_count_updates_per_day_max: 1_000_000,
            ..ManagerConfig::default()
        },
        ..BrokerConfig::default()
    })
    .unwrap();
    b.create_stream(CreateStream::new("s", 2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let resharder = {
        let b = b.clone();
        tokio::spawn(async move {
            // At least one reshard, however late this task starts.
            let mut target = 1;
            loop {
                b.update_shard_count("s", target).await.unwrap();
                common::wait_active(&b, "s").await;
                target = if target == 1 { 2 } else { 1 };
                if Instant::now() >= deadline {
                    break;
                }
            }
        })
    };
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let b = b.clone();
            tokio::spawn(async move {
                // At least one request, however late this task starts: the time only
                // bounds how long the race is tried, no assertion depends on it.
                let mut requests = 0u64;
                while requests == 0 || Instant::now() < deadline {
                    let batch: Vec<PutRecordInput> = (0..200u64)
                        .map(|i| PutRecordInput {
                            partition_key: format!("key-{p}-{i}"),
                            explicit_hash_key: None,
                            data: Bytes::from(i.to_string()),
                        })
                        .collect();
                    let out = b.put_records("s", batch).await.unwrap();
                    let mut last: std::collections::HashMap<String, String> =
                        std::collections::HashMap::new();
                    for (i, entry) in out.records.iter().enumerate() {
                        let PutRecordsEntry::Ok(ok) = entry else {
                            continue;
                        };
                        if let Some(before) = last.get(&ok.shard_id) {
                            assert!(
                                seq_less(before, &ok.sequence_number),
                                "record {i} of a request got {} in {}, before the {before} of an earlier record",
                                ok.sequence_number,
                                ok.shard_id
                            );
                        }
                        last.insert(ok.shard_id.clone(), ok.sequence_number.clone());
                    }
                    requests += 1;
                }
                requests
            })
        })
        .collect();
    // A put that never returns (a lost wake-up of its sync's waiters) fails the test
    // instead of hanging it.
    let limit = Duration::from_secs(60);
    for p in producers {
        let requests = tokio::time::timeout(limit, p)
            .await
            .expect("a put never returned: its sync's wake-up was lost")
            .unwrap();
        assert!(requests > 0);
    }
    tokio::time::timeout(limit, resharder)
        .await
        .expect("the resharder never returned")
        .unwrap();
}
