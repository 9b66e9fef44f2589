//! One cycle's mixed workload against a running server, until it is killed: producers
//! (PutRecord and PutRecords with unique record ids), a reader (GetRecords from random
//! shards), a subscriber (Subscribe on an open shard) and a resharder (split, merge,
//! UpdateShardCount and retention changes). Each task stops at its first failed call after
//! the kill, and reports what the server acknowledged or showed into the shared
//! [`Outcome`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::v1 as pb;
use tokio::sync::Notify;

use crate::model::{Model, Placement, RecordId, Rng, ShardFacts, Violation, check_bytes};
use crate::server::Client;

/// The stream the torture run writes.
pub const STREAM: &str = "torture";
/// Producers running at once.
pub const PRODUCERS: u32 = 3;
/// The most records in one PutRecords call.
const BATCH_MAX: u64 = 20;
/// The most open shards the resharder lets a small stream (the default, two shards)
/// reach; a stream created with more may grow to twice its first count.
const OPEN_SHARDS_MAX: usize = 5;
/// How long the resharder waits for an accepted change to be carried out (the stream to
/// turn ACTIVE again) before it stops waiting; a bound, far above what a change takes.
const ACTIVE_WAIT: Duration = Duration::from_secs(120);
/// Calls one task makes in a cycle at most (a bound on every loop).
const CALLS_MAX: u64 = 100_000;

/// What a cycle's tasks learnt, merged into the [`Model`] when the cycle ends.
#[derive(Debug)]
pub struct Outcome {
    /// The model, updated in place by every task.
    pub model: Model,
    /// Problems seen while the server ran.
    pub violations: Vec<Violation>,
    /// The cycle number, for violations.
    pub cycle: u64,
    /// Acknowledged reshards this cycle.
    pub reshards_now: u64,
    /// Puts (or PutRecords entries) refused while the server ran.
    pub put_errors: u64,
}

/// Shared between the tasks of one cycle.
#[derive(Clone)]
pub struct Shared {
    /// The outcome, under a lock held only briefly (never across a call).
    pub outcome: Arc<Mutex<Outcome>>,
    /// Set once the server has been killed: tasks stop at their next failure.
    pub stop: Arc<AtomicBool>,
    /// Signalled just before each reshard request, so the kill can land inside it (or, on
    /// a stream of hundreds of shards, inside the background work that carries it out).
    pub reshard_starting: Arc<Notify>,
    /// The stream's shard count at creation: above [`OPEN_SHARDS_MAX`], the resharder
    /// resizes it by up to half each way.
    pub initial_shards: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records a record some reader was shown, checking it against what was sent and what
    /// was seen of it before.
    fn saw(&self, shard_id: &str, record: &pb::Record) {
        let mut o = self.lock();
        let cycle = o.cycle;
        match check_bytes(&record.partition_key, &record.data, &o.model.sent_max) {
            Err(what) => o.violations.push(Violation {
                cycle,
                what: format!("read from {shard_id}: {what}"),
            }),
            Ok(id) => {
                let placement = Placement {
                    shard_id: shard_id.to_owned(),
                    sequence_number: record.sequence_number.clone(),
                };
                let before = o.model.seen.insert(id, placement.clone());
                let acked = o.model.acked.get(&id).cloned();
                for earlier in [before, acked].into_iter().flatten() {
                    if earlier != placement {
                        o.violations.push(Violation {
                            cycle,
                            what: format!("{id:?} read at {placement:?}, known at {earlier:?}"),
                        });
                    }
                }
            }
        }
    }
}

/// Spawns every task of the workload; they run until `shared.stop` is set and a call
/// fails. Returns their handles.
pub fn spawn(client: &Client, shared: &Shared, rng: &mut Rng) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        let (c, s, r) = (client.clone(), shared.clone(), Rng(rng.next_u64()));
        tasks.push(tokio::spawn(produce(c, s, r, producer)));
    }
    let (c, s, r) = (client.clone(), shared.clone(), Rng(rng.next_u64()));
    tasks.push(tokio::spawn(read(c, s, r)));
    let (c, s, r) = (client.clone(), shared.clone(), Rng(rng.next_u64()));
    tasks.push(tokio::spawn(subscribe(c, s, r)));
    let (c, s, r) = (client.clone(), shared.clone(), Rng(rng.next_u64()));
    tasks.push(tokio::spawn(reshard(c, s, r)));
    tasks
}

/// The next `count` record ids of `producer`, marked as sent before they are sent.
fn next_ids(shared: &Shared, producer: u32, count: u64) -> Vec<RecordId> {
    let mut o = shared.lock();
    let next = o.model.next_n.entry(producer).or_insert(0);
    let first = *next;
    *next += count;
    o.model.sent_max.insert(producer, first + count - 1);
    (first..first + count)
        .map(|n| RecordId { producer, n })
        .collect()
}

fn ack(shared: &Shared, id: RecordId, shard_id: String, sequence_number: String) {
    shared.lock().model.acked.insert(
        id,
        Placement {
            shard_id,
            sequence_number,
        },
    );
}

/// Counts a put (or PutRecords entry) the live server refused; says why when
/// `SLUICE_TORTURE_VERBOSE` is set (read once per run).
fn put_failed(shared: &Shared, why: std::fmt::Arguments<'_>) {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    shared.lock().put_errors += 1;
    if *VERBOSE.get_or_init(|| std::env::var_os("SLUICE_TORTURE_VERBOSE").is_some()) {
        eprintln!("{why}");
    }
}

/// One producer: PutRecord or PutRecords, one call at a time, so its keys stay in order.
async fn produce(mut client: Client, shared: Shared, mut rng: Rng, producer: u32) {
    for _ in 0..CALLS_MAX {
        let result = if rng.chance(1, 2) {
            let [id] = next_ids(&shared, producer, 1)[..] else {
                return;
            };
            let request = pb::PutRecordRequest {
                stream_name: STREAM.into(),
                partition_key: id.partition_key(),
                explicit_hash_key: None,
                data: id.data().into(),
            };
            client.put_record(request).await.map(|reply| {
                let reply = reply.into_inner();
                ack(&shared, id, reply.shard_id, reply.sequence_number);
            })
        } else {
            let ids = next_ids(&shared, producer, 1 + rng.below(BATCH_MAX));
            let records = ids
                .iter()
                .map(|id| pb::PutRecordsRequestEntry {
                    partition_key: id.partition_key(),
                    explicit_hash_key: None,
                    data: id.data().into(),
                })
                .collect();
            let request = pb::PutRecordsRequest {
                stream_name: STREAM.into(),
                records,
            };
            client.put_records(request).await.map(|reply| {
                for (id, entry) in ids.iter().zip(reply.into_inner().records) {
                    match entry.error_code {
                        None => ack(&shared, *id, entry.shard_id, entry.sequence_number),
                        Some(code) => put_failed(
                            &shared,
                            format_args!(
                                "producer {producer}: {id:?} failed: {code} {:?}",
                                entry.error_message
                            ),
                        ),
                    }
                }
            })
        };
        match result {
            Err(_) if shared.stopped() => return,
            Err(status) => put_failed(
                &shared,
                format_args!("producer {producer}: put failed: {status}"),
            ),
            Ok(()) => {}
        }
    }
}

fn position(kind: pb::ShardIteratorType) -> pb::StartingPosition {
    pb::StartingPosition {
        r#type: kind as i32,
        sequence_number: None,
        timestamp_ms: None,
    }
}

/// A reader: picks a shard, reads a few pages from its start or its end, and checks every
/// record it is shown.
async fn read(mut client: Client, shared: Shared, mut rng: Rng) {
    for _ in 0..CALLS_MAX {
        let Ok(shards) = list_shards(&mut client).await else {
            if shared.stopped() {
                return;
            }
            continue;
        };
        let Some(shard) = shards.get(rng.below(shards.len() as u64) as usize) else {
            continue;
        };
        let kind = if rng.chance(1, 3) {
            pb::ShardIteratorType::Latest
        } else {
            pb::ShardIteratorType::TrimHorizon
        };
        let request = pb::GetShardIteratorRequest {
            stream_name: STREAM.into(),
            shard_id: shard.shard_id.clone(),
            starting_position: Some(position(kind)),
        };
        let mut next = match client.get_shard_iterator(request).await {
            Ok(reply) => Some(reply.into_inner().shard_iterator),
            Err(_) if shared.stopped() => return,
            Err(_) => continue,
        };
        for _ in 0..1 + rng.below(4) {
            let Some(shard_iterator) = next.take() else {
                break;
            };
            let request = pb::GetRecordsRequest {
                shard_iterator,
                limit: Some(1 + rng.below(500) as u32),
            };
            match client.get_records(request).await {
                Ok(reply) => {
                    let reply = reply.into_inner();
                    for record in &reply.records {
                        shared.saw(&shard.shard_id, record);
                    }
                    next = reply.next_shard_iterator;
                }
                Err(_) if shared.stopped() => return,
                Err(_) => break,
            }
        }
    }
}

/// A subscriber: follows one open shard from its start, pushed records checked as read.
async fn subscribe(mut client: Client, shared: Shared, mut rng: Rng) {
    for _ in 0..CALLS_MAX {
        let Ok(shards) = list_shards(&mut client).await else {
            if shared.stopped() {
                return;
            }
            continue;
        };
        let open: Vec<&pb::Shard> = shards.iter().filter(|s| ending(s).is_none()).collect();
        let Some(shard) = open.get(rng.below(open.len() as u64) as usize) else {
            continue;
        };
        let request = pb::SubscribeRequest {
            stream_name: STREAM.into(),
            shard_id: shard.shard_id.clone(),
            starting_position: Some(position(pb::ShardIteratorType::TrimHorizon)),
        };
        let mut stream = match client.subscribe(request).await {
            Ok(reply) => reply.into_inner(),
            Err(_) if shared.stopped() => return,
            Err(_) => continue,
        };
        for _ in 0..CALLS_MAX {
            match stream.message().await {
                Ok(Some(event)) => {
                    for record in &event.records {
                        shared.saw(&shard.shard_id, record);
                    }
                    if !event.child_shards.is_empty() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) if shared.stopped() => return,
                Err(_) => break,
            }
        }
    }
}

/// The resharder: now and then a split, a merge, an UpdateShardCount or a retention
/// change; after each acknowledged one has been carried out (the stream is ACTIVE again:
/// reshards run in the background), the shard listing is recorded as fact.
async fn reshard(mut client: Client, shared: Shared, mut rng: Rng) {
    let open_max = OPEN_SHARDS_MAX.max(2 * shared.initial_shards);
    for _ in 0..CALLS_MAX {
        tokio::time::sleep(Duration::from_millis(20 + rng.below(150))).await;
        let Ok(before) = list_shards(&mut client).await else {
            if shared.stopped() {
                return;
            }
            continue;
        };
        let mut open: Vec<&pb::Shard> = before.iter().filter(|s| ending(s).is_none()).collect();
        open.sort_by_key(|s| hash_start(s));
        shared.reshard_starting.notify_one();
        let (result, added) = match rng.below(8) {
            0..=2 if open.len() < open_max => {
                let Some(shard) = open.get(rng.below(open.len() as u64) as usize) else {
                    continue;
                };
                let (start, end) = range(shard);
                if end - start < 2 {
                    continue;
                }
                let request = pb::SplitShardRequest {
                    stream_name: STREAM.into(),
                    shard_to_split: shard.shard_id.clone(),
                    new_starting_hash_key: (start + (end - start) / 2 + 1).to_string(),
                };
                (client.split_shard(request).await.map(drop), 2)
            }
            0..=5 if open.len() > 1 => {
                let i = rng.below(open.len() as u64 - 1) as usize;
                let (Some(a), Some(b)) = (open.get(i), open.get(i + 1)) else {
                    continue;
                };
                let request = pb::MergeShardsRequest {
                    stream_name: STREAM.into(),
                    shard_to_merge: a.shard_id.clone(),
                    adjacent_shard_to_merge: b.shard_id.clone(),
                };
                (client.merge_shards(request).await.map(drop), 1)
            }
            6 => {
                let request = pb::UpdateShardCountRequest {
                    stream_name: STREAM.into(),
                    target_shard_count: resize_target(open.len(), shared.initial_shards, &mut rng),
                };
                (client.update_shard_count(request).await.map(drop), 0)
            }
            _ => (retention(&mut client, &mut rng).await, 0),
        };
        match result {
            Ok(()) => {
                if !wait_active(&mut client, &shared).await {
                    return;
                }
                shared.lock().reshards_now += 1;
                if let Ok(after) = list_shards(&mut client).await {
                    record_shards(&mut shared.lock().model, &after, before.len() + added);
                }
            }
            Err(_) if shared.stopped() => return,
            Err(_) => {}
        }
    }
}

/// An UpdateShardCount target: 1 to 4 for a small stream; for one created with hundreds
/// of shards, anything from half to one and a half times the open count, within half to
/// twice its first count (so most resizes seal and create hundreds of shards).
fn resize_target(open: usize, initial: usize, rng: &mut Rng) -> u32 {
    if initial <= OPEN_SHARDS_MAX {
        return 1 + rng.below(4) as u32;
    }
    let low = open.div_ceil(2).max(initial / 2).max(1);
    let high = (open + open / 2).min(2 * initial).max(low);
    (low + rng.below((high - low + 1) as u64) as usize) as u32
}

/// Waits until the stream is ACTIVE again after an accepted change; `false` once the
/// server is gone (killed) or the wait passed its bound.
async fn wait_active(client: &mut Client, shared: &Shared) -> bool {
    let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
    while tokio::time::Instant::now() < deadline {
        let request = pb::DescribeStreamRequest {
            stream_name: STREAM.into(),
            limit: Some(1),
            exclusive_start_shard_id: None,
        };
        match client.describe_stream(request).await {
            Ok(reply) => {
                let active = pb::StreamStatus::Active as i32;
                let status = reply
                    .into_inner()
                    .stream_description
                    .map(|d| d.stream_status);
                if status == Some(active) {
                    return true;
                }
            }
            Err(_) if shared.stopped() => return false,
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Raises or lowers the retention period (24 h is the Kinesis minimum, so nothing expires
/// within a run; this exercises the journal and maintenance, not deletion).
async fn retention(client: &mut Client, rng: &mut Rng) -> Result<(), tonic::Status> {
    if rng.chance(1, 2) {
        let request = pb::IncreaseStreamRetentionPeriodRequest {
            stream_name: STREAM.into(),
            retention_period_hours: 25,
        };
        client
            .increase_stream_retention_period(request)
            .await
            .map(drop)
    } else {
        let request = pb::DecreaseStreamRetentionPeriodRequest {
            stream_name: STREAM.into(),
            retention_period_hours: 24,
        };
        client
            .decrease_stream_retention_period(request)
            .await
            .map(drop)
    }
}

/// Stores a listing the server gave after an acknowledged change as fact.
pub fn record_shards(model: &mut Model, shards: &[pb::Shard], count_min: usize) {
    model.shards_min = model.shards_min.max(count_min);
    for shard in shards {
        model.shards.insert(shard.shard_id.clone(), facts(shard));
    }
}

/// A shard's parent and adjacent parent, as listed.
pub fn parents(shard: &pb::Shard) -> Vec<String> {
    [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// What a listing says about one shard.
pub fn facts(shard: &pb::Shard) -> ShardFacts {
    let hash_range = shard
        .hash_key_range
        .as_ref()
        .map(|r| (r.starting_hash_key.clone(), r.ending_hash_key.clone()))
        .unwrap_or_default();
    ShardFacts {
        parents: parents(shard),
        hash_range,
        starting_sequence_number: shard
            .sequence_number_range
            .as_ref()
            .map(|r| r.starting_sequence_number.clone())
            .unwrap_or_default(),
        ending_sequence_number: ending(shard),
    }
}

/// A shard's ending sequence number (closed shards only).
pub fn ending(shard: &pb::Shard) -> Option<String> {
    shard
        .sequence_number_range
        .as_ref()
        .and_then(|r| r.ending_sequence_number.clone())
}

fn hash_start(shard: &pb::Shard) -> u128 {
    range(shard).0
}

/// A shard's hash range as numbers (0..=0 if unparseable, which verification reports).
pub fn range(shard: &pb::Shard) -> (u128, u128) {
    let parse = |s: &str| s.parse::<u128>().unwrap_or(0);
    shard
        .hash_key_range
        .as_ref()
        .map(|r| (parse(&r.starting_hash_key), parse(&r.ending_hash_key)))
        .unwrap_or((0, 0))
}

/// Every shard of the stream, following pages (bounded).
pub async fn list_shards(client: &mut Client) -> Result<Vec<pb::Shard>, tonic::Status> {
    let mut shards = Vec::new();
    let mut start = None;
    for _ in 0..1000 {
        let page = client
            .list_shards(pb::ListShardsRequest {
                stream_name: STREAM.into(),
                exclusive_start_shard_id: start.take(),
                max_results: None,
            })
            .await?
            .into_inner();
        shards.extend(page.shards);
        match page.next_exclusive_start_shard_id {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    Ok(shards)
}
