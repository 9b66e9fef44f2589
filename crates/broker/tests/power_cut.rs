#![allow(clippy::unwrap_used)]
//! Power cuts under concurrent puts, through the broker's whole write path (route, write,
//! the per-shard sync drivers that wake waiting puts), on a simulated disk: after the
//! machine loses every unsynced write, each acknowledged record is there exactly once at
//! its sequence number, and a request whose records all went to one shard (one key) is
//! there whole or not at all, acknowledged or not. SIGKILL tests cannot see an early
//! acknowledgement (the page cache survives a killed process); these can.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_broker::{
    Broker, BrokerConfig, CreateStream, PutRecordInput, PutRecordsEntry, StartingPosition,
};
use sluice_storage::{CrashMode, SimFs, SplitMix};

const SHARDS: u32 = 4;
const PRODUCERS: usize = 24;

fn open(config: &BrokerConfig, fs: &SimFs) -> Arc<Broker> {
    Broker::open_with_fs(config.clone(), fs.shared()).unwrap()
}

/// data -> (shard id, sequence number) of every acknowledged record.
type Acked = Arc<Mutex<HashMap<String, (String, String)>>>;
/// The data of every request sent whose records share one key (one shard, one batch).
type OneShard = Arc<Mutex<Vec<Vec<String>>>>;

async fn produce(broker: Arc<Broker>, acked: Acked, one_shard: OneShard, producer: usize) {
    for i in 0..10_000 {
        let batch = 1 + (producer + i) % 5;
        // Every other request puts all its records under one key: one shard's batch.
        let same_key = i % 2 == 0;
        let inputs: Vec<PutRecordInput> = (0..batch)
            .map(|j| PutRecordInput {
                partition_key: match same_key {
                    true => format!("p{producer}-{i}"),
                    false => format!("p{producer}-{i}-{j}"),
                },
                explicit_hash_key: None,
                data: Bytes::from(format!("p{producer}-r{i}-{j}")),
            })
            .collect();
        if same_key {
            let data = inputs
                .iter()
                .map(|r| String::from_utf8(r.data.to_vec()).unwrap());
            one_shard.lock().unwrap().push(data.collect());
        }
        let Ok(out) = broker.put_records("s", inputs.clone()).await else {
            return;
        };
        let mut any_failed = false;
        for (input, entry) in inputs.iter().zip(out.records) {
            match entry {
                PutRecordsEntry::Ok(o) => {
                    let data = String::from_utf8(input.data.to_vec()).unwrap();
                    acked
                        .lock()
                        .unwrap()
                        .insert(data, (o.shard_id, o.sequence_number));
                }
                PutRecordsEntry::Failed { .. } => any_failed = true,
            }
        }
        if any_failed {
            return;
        }
    }
}

/// Every record of every shard: data -> (shard id, sequence numbers it was read at).
async fn read_all(b: &Broker) -> HashMap<String, Vec<(String, String)>> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for shard in 0..SHARDS {
        let id = format!("shardId-{shard:012}");
        let mut it = b
            .get_shard_iterator("s", &id, StartingPosition::TrimHorizon)
            .await
            .unwrap();
        for _ in 0..10_000 {
            let r = b.get_records(&it, None).await.unwrap();
            let empty = r.records.is_empty();
            for rec in r.records {
                out.entry(String::from_utf8(rec.data.to_vec()).unwrap())
                    .or_default()
                    .push((id.clone(), rec.sequence_number));
            }
            match r.next_shard_iterator {
                Some(next) if !empty => it = next,
                _ => break,
            }
        }
    }
    out
}

#[test]
fn acknowledged_puts_survive_a_power_cut_at_any_moment() {
    let scenarios: u64 = std::env::var("SLUICE_POWER_CUT_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let mut rng = SplitMix(0x9E37);
    let mut acked_total = 0;
    for scenario in 0..scenarios {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        // Every other scenario rolls 4 KiB segments all the time: a put whose batch would
        // roll is not written on the runtime thread but handed to the blocking pool, so
        // both ways of writing meet the power cut.
        if scenario % 2 == 1 {
            config.manager.log.segment_bytes_max = 4096;
        }
        let fs = SimFs::new();
        let broker = open(&config, &fs);
        let acked: Acked = Arc::default();
        let one_shard: OneShard = Arc::default();
        let writing = runtime();
        writing.block_on(async {
            broker
                .create_stream(CreateStream::new("s", SHARDS))
                .await
                .unwrap();
            fs.set_sync_delay(std::time::Duration::from_micros(500));
            // The disk dies after a random number of operations, tearing the write it
            // dies in; every later operation fails until the crash below.
            let ops = 20 + rng.below(400);
            fs.power_cut_after(ops, Some(rng.below(200) as usize));
            let tasks: Vec<_> = (0..PRODUCERS)
                .map(|p| tokio::spawn(produce(broker.clone(), acked.clone(), one_shard.clone(), p)))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        drop(broker);
        // Sync drivers still on the blocking pool fail fast on the dead disk; shutting
        // the runtime down waits for them, so none touches the disk once power is back.
        writing.shutdown_timeout(std::time::Duration::from_secs(30));
        fs.crash(CrashMode::TornTail { seed: scenario });
        let broker = open(&config, &fs);
        let found = runtime().block_on(read_all(&broker));
        let acked = acked.lock().unwrap();
        for (data, (shard, seq)) in acked.iter() {
            let at = found.get(data);
            assert_eq!(
                at.map(Vec::as_slice),
                Some(&[(shard.clone(), seq.clone())][..]),
                "scenario {scenario}: acknowledged {data} lost, moved or duplicated"
            );
        }
        for request in one_shard.lock().unwrap().iter() {
            let present = request.iter().filter(|d| found.contains_key(*d)).count();
            assert!(
                present == 0 || present == request.len(),
                "scenario {scenario}: {present} of the {} records of one request survived",
                request.len()
            );
        }
        acked_total += acked.len();
        drop(broker);
    }
    eprintln!(
        "power cuts under concurrent puts: {scenarios} scenarios, {acked_total} acknowledged records checked"
    );
    assert!(acked_total > 0, "nothing was ever acknowledged");
}
