//! The checks after every restart: read the whole stream in lineage order (a shard only
//! after each parent was read to its end, as a Kinesis consumer must) and compare it, and
//! the shard listing, with the [`Model`].
//!
//! What must hold: every acknowledged record is read exactly once, at the shard and
//! sequence number it was acknowledged with, byte for byte; so is every record a reader
//! was ever shown (visible means synced); every record read is one a producer sent, whole;
//! sequence numbers are unique and increase within a shard; each partition key's records
//! come in the order they were sent; every shard the server listed after an acknowledged
//! change is still there with the same parents, range and starting number (and ending
//! number once closed), the open shards tile the hash-key space, and a closed shard's
//! `ChildShards` are its children in the listing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sluice_proto::v1 as pb;

use crate::model::{Model, Placement, RecordId, Violation, check_bytes, seq_cmp};
use crate::server::Client;
use crate::workload::{STREAM, ending, facts, list_shards, parents, range};

/// GetRecords calls per shard at most (a bound; a shard holds far fewer pages).
const PAGES_MAX: usize = 100_000;

/// What one verification pass found.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems found.
    pub violations: Vec<String>,
    /// Acknowledged records found intact and in place.
    pub verified: u64,
    /// Records read in all.
    pub read: u64,
}

/// One shard read to its end (closed) or until caught up (open).
struct ShardRead {
    records: Vec<pb::Record>,
    children: Vec<String>,
}

/// Reads and checks the whole stream; records what was read as seen.
pub async fn check(client: &mut Client, model: &mut Model) -> Result<Report, String> {
    let shards = list_shards(client)
        .await
        .map_err(|e| format!("ListShards: {e}"))?;
    let mut report = Report::default();
    check_lineage(&shards, model, &mut report.violations);
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for shard in &shards {
        for parent in parents(shard) {
            children
                .entry(parent)
                .or_default()
                .insert(shard.shard_id.clone());
        }
    }
    let mut done: HashSet<String> = HashSet::new();
    let mut reads: Vec<(String, pb::Record)> = Vec::new();
    while done.len() < shards.len() {
        let ready: Vec<&pb::Shard> = shards
            .iter()
            .filter(|s| !done.contains(&s.shard_id))
            .filter(|s| parents(s).iter().all(|p| done.contains(p)))
            .collect();
        if ready.is_empty() {
            report.violations.push("lineage has a cycle".into());
            break;
        }
        for shard in ready {
            let read = read_shard(client, &shard.shard_id)
                .await
                .map_err(|e| format!("reading {}: {e}", shard.shard_id))?;
            if ending(shard).is_some() {
                let listed = children.get(&shard.shard_id).cloned().unwrap_or_default();
                let reported: BTreeSet<String> = read.children.into_iter().collect();
                if listed != reported {
                    report.violations.push(format!(
                        "{}: ChildShards {reported:?} but the listing has {listed:?}",
                        shard.shard_id
                    ));
                }
            }
            reads.extend(
                read.records
                    .into_iter()
                    .map(|r| (shard.shard_id.clone(), r)),
            );
            done.insert(shard.shard_id.clone());
        }
    }
    check_records(&reads, model, &mut report);
    Ok(report)
}

/// Lineage: every shard known from an acknowledged change is listed unchanged, there are
/// at least as many shards as acknowledged changes made, and the open shards tile the
/// hash-key space.
fn check_lineage(shards: &[pb::Shard], model: &Model, violations: &mut Vec<String>) {
    let listed: HashMap<&str, &pb::Shard> =
        shards.iter().map(|s| (s.shard_id.as_str(), s)).collect();
    if shards.len() < model.shards_min {
        violations.push(format!(
            "{} shards listed, at least {} were acknowledged",
            shards.len(),
            model.shards_min
        ));
    }
    for (id, known) in &model.shards {
        let Some(shard) = listed.get(id.as_str()) else {
            violations.push(format!("acknowledged shard {id} is gone"));
            continue;
        };
        let now = facts(shard);
        let same = now.parents == known.parents
            && now.hash_range == known.hash_range
            && now.starting_sequence_number == known.starting_sequence_number
            && (known.ending_sequence_number.is_none()
                || now.ending_sequence_number == known.ending_sequence_number);
        if !same {
            violations.push(format!("{id} changed: was {known:?}, now {now:?}"));
        }
    }
    let mut open: Vec<(u128, u128)> = shards
        .iter()
        .filter(|s| ending(s).is_none())
        .map(range)
        .collect();
    open.sort_unstable();
    let mut next = Some(0u128);
    for (start, end) in &open {
        if Some(*start) != next {
            violations.push(format!("open shards do not tile: {open:?}"));
            return;
        }
        next = end.checked_add(1);
    }
    if next.is_some() {
        violations.push(format!("open shards do not reach 2^128-1: {open:?}"));
    }
}

/// Records: intact, sent, once, in place, in order; nothing acknowledged or seen missing.
fn check_records(reads: &[(String, pb::Record)], model: &mut Model, report: &mut Report) {
    let mut ids: HashSet<RecordId> = HashSet::new();
    let mut seqs: HashSet<&str> = HashSet::new();
    let mut last_in_shard: HashMap<&str, &str> = HashMap::new();
    let mut last_of_key: HashMap<&str, u64> = HashMap::new();
    let mut found: Vec<(RecordId, Placement)> = Vec::new();
    let v = &mut report.violations;
    for (shard_id, r) in reads {
        report.read += 1;
        let seq = r.sequence_number.as_str();
        if !seqs.insert(seq) {
            v.push(format!("sequence number {seq} appears twice"));
        }
        if let Some(last) = last_in_shard.insert(shard_id, seq) {
            if seq_cmp(seq, last) != std::cmp::Ordering::Greater {
                v.push(format!("{shard_id}: {seq} after {last}"));
            }
        }
        let id = match check_bytes(&r.partition_key, &r.data, &model.sent_max) {
            Ok(id) => id,
            Err(what) => {
                v.push(format!("{shard_id} at {seq}: {what}"));
                continue;
            }
        };
        if !ids.insert(id) {
            v.push(format!("{id:?} read twice (again at {shard_id} {seq})"));
        }
        if let Some(n) = last_of_key.insert(&r.partition_key, id.n) {
            if id.n <= n {
                v.push(format!("key {}: {id:?} after n={n}", r.partition_key));
            }
        }
        let here = Placement {
            shard_id: shard_id.clone(),
            sequence_number: seq.to_owned(),
        };
        for (what, known) in [("acknowledged", &model.acked), ("seen", &model.seen)] {
            if let Some(p) = known.get(&id) {
                if *p != here {
                    v.push(format!("{id:?} {what} at {p:?}, read at {here:?}"));
                }
            }
        }
        if model.acked.contains_key(&id) {
            report.verified += 1;
        }
        found.push((id, here));
    }
    for (what, known) in [("acknowledged", &model.acked), ("seen", &model.seen)] {
        let mut lost: Vec<&RecordId> = known.keys().filter(|id| !ids.contains(id)).collect();
        lost.sort_unstable();
        if let Some(first) = lost.first() {
            v.push(format!(
                "{} {what} records lost, first {first:?} at {:?}",
                lost.len(),
                known.get(first)
            ));
        }
    }
    for (id, here) in found {
        model.seen.entry(id).or_insert(here);
    }
}

/// Reads one shard from its start to its end (closed) or until caught up (open).
async fn read_shard(client: &mut Client, shard_id: &str) -> Result<ShardRead, tonic::Status> {
    let request = pb::GetShardIteratorRequest {
        stream_name: STREAM.into(),
        shard_id: shard_id.to_owned(),
        starting_position: Some(pb::StartingPosition {
            r#type: pb::ShardIteratorType::TrimHorizon as i32,
            sequence_number: None,
            timestamp_ms: None,
        }),
    };
    let mut next = Some(
        client
            .get_shard_iterator(request)
            .await?
            .into_inner()
            .shard_iterator,
    );
    let mut read = ShardRead {
        records: Vec::new(),
        children: Vec::new(),
    };
    for _ in 0..PAGES_MAX {
        let Some(shard_iterator) = next else {
            return Ok(read);
        };
        let request = pb::GetRecordsRequest {
            shard_iterator,
            limit: None,
        };
        let reply = client.get_records(request).await?.into_inner();
        let empty = reply.records.is_empty();
        read.records.extend(reply.records);
        read.children
            .extend(reply.child_shards.into_iter().map(|c| c.shard_id));
        next = reply.next_shard_iterator;
        if next.is_some() && empty && reply.millis_behind_latest == 0 {
            return Ok(read);
        }
    }
    Err(tonic::Status::deadline_exceeded(format!(
        "{shard_id} was not read to its end in {PAGES_MAX} calls"
    )))
}

/// Turns a report's problems into violations of `cycle`.
pub fn violations(report: &Report, cycle: u64) -> Vec<Violation> {
    report
        .violations
        .iter()
        .map(|what| Violation {
            cycle,
            what: what.clone(),
        })
        .collect()
}
