//! PutRecord and PutRecords: validate, route each record to its open shard, append each
//! shard's records as one batch (one group commit per shard), and retry records whose shard
//! was closed by a split or merge while they were on their way.

use std::sync::Arc;

use bytes::Bytes;
use sluice_shards::{HashKey, RouteKey, ShardId};
use sluice_storage::{Log, RecordIn};

use crate::broker::{Broker, blocking, now_ms};
use crate::error::{Error, Result};
use crate::seqnum::{self, SequenceNumber};
use crate::types::{PutRecordInput, PutRecordOutput, PutRecordsEntry, PutRecordsOutput};

/// Partition keys are 1 to 256 Unicode characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// How often a record is re-routed when its shard closes under it.
const ROUTE_ATTEMPTS: usize = 100;

/// A validated record on its way to a shard.
struct Pending {
    index: usize,
    key: String,
    hash: Option<HashKey>,
    data: Bytes,
}

/// Records bound for one shard, in request order.
struct Group {
    shard: ShardId,
    uid: u64,
    created_ms: u64,
    log: Arc<Log>,
    records: Vec<Pending>,
}

impl Broker {
    /// PutRecord.
    pub async fn put_record(
        self: &Arc<Self>,
        stream: &str,
        input: PutRecordInput,
    ) -> Result<PutRecordOutput> {
        let out = self.put(stream, vec![input]).await?;
        match out.records.into_iter().next() {
            Some(PutRecordsEntry::Ok(o)) => Ok(o),
            Some(PutRecordsEntry::Failed {
                error_code,
                error_message,
            }) if error_code == "ProvisionedThroughputExceededException" => {
                Err(Error::ProvisionedThroughputExceeded(error_message))
            }
            Some(PutRecordsEntry::Failed { error_message, .. }) => {
                Err(Error::Internal(error_message))
            }
            None => Err(Error::Internal("no result for the record".into())),
        }
    }

    /// PutRecords: 1 to 500 records, at most 5 MiB in all. Each record succeeds or fails on
    /// its own; records for one shard keep their request order.
    pub async fn put_records(
        self: &Arc<Self>,
        stream: &str,
        inputs: Vec<PutRecordInput>,
    ) -> Result<PutRecordsOutput> {
        let max = self.config.put_records_max;
        if inputs.is_empty() || inputs.len() > max {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length between 1 and {max}",
                inputs.len()
            )));
        }
        let total: usize = inputs
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .sum();
        if total > self.config.put_records_bytes_max {
            return Err(Error::InvalidArgument(format!(
                "Records size of {total} bytes exceeds the limit of {} bytes for one PutRecords request.",
                self.config.put_records_bytes_max
            )));
        }
        self.put(stream, inputs).await
    }

    async fn put(
        self: &Arc<Self>,
        stream: &str,
        inputs: Vec<PutRecordInput>,
    ) -> Result<PutRecordsOutput> {
        let mut pending = inputs
            .into_iter()
            .enumerate()
            .map(|(i, r)| validate(i, r))
            .collect::<Result<Vec<_>>>()?;
        let mut results: Vec<Option<PutRecordsEntry>> = vec![None; pending.len()];
        let now = now_ms();
        for attempt in 0..ROUTE_ATTEMPTS {
            let this = self.clone();
            let name = stream.to_owned();
            let reroute_allowed = attempt + 1 < ROUTE_ATTEMPTS;
            // One hop to the blocking pool routes the request and writes each shard's
            // group (into the page cache). Waiting for the syncs happens below, as futures.
            let step = blocking(move || {
                let groups = this.route_all(&name, pending)?;
                // A reshard that lands while this request is being routed sends its
                // earlier records to the closing parent and its later ones to a child;
                // writing the child's group first would put them out of request order. A
                // parent is sealed before the route table changes, so a sealed log here
                // means routing saw two tables: route everything again (nothing is
                // written yet).
                if reroute_allowed && groups.iter().any(|g| g.log.is_sealed()) {
                    return Ok(Step::Reroute(groups));
                }
                Ok(Step::Written(
                    groups
                        .into_iter()
                        .map(|g| {
                            let outcome = this.admit(&g).then(|| write_group(&g, now));
                            (g, outcome)
                        })
                        .collect(),
                ))
            })
            .await?;
            let written = match step {
                Step::Reroute(groups) => {
                    pending = groups.into_iter().flat_map(|g| g.records).collect();
                    pending.sort_by_key(|p| p.index);
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Written(written) => written,
            };
            pending = Vec::new();
            // Start every shard's sync before waiting for any: they run side by side.
            let drivers: Vec<_> = written
                .iter()
                .map(|(g, outcome)| match outcome {
                    Some(Ok(sluice_storage::Written {
                        durable_at: Some(target),
                        ..
                    })) => {
                        let driver = self.sync_driver(g.uid, g.shard.index());
                        driver.start(&g.log, *target);
                        Some(driver)
                    }
                    _ => None,
                })
                .collect();
            for ((g, outcome), driver) in written.into_iter().zip(drivers) {
                let written = match outcome {
                    None => {
                        let message = format!(
                            "Rate exceeded for shard {} in stream {stream} under account {}.",
                            g.shard, self.config.manager.account
                        );
                        for p in &g.records {
                            results[p.index] =
                                Some(failed("ProvisionedThroughputExceededException", &message));
                        }
                        continue;
                    }
                    Some(Err(sluice_storage::Error::Sealed { .. })) => {
                        pending.extend(g.records);
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::error!(stream, shard = %g.shard, error = %e, "append failed");
                        for p in &g.records {
                            results[p.index] = Some(failed("InternalFailure", &e.to_string()));
                        }
                        continue;
                    }
                    Some(Ok(written)) => written,
                };
                if let (Some(target), Some(driver)) = (written.durable_at, driver) {
                    if let Err(e) = driver.wait(&g.log, target).await {
                        tracing::error!(stream, shard = %g.shard, error = %e, "sync failed");
                        for p in &g.records {
                            results[p.index] = Some(failed("InternalFailure", &e));
                        }
                        continue;
                    }
                }
                let a = written.appended;
                let shard_id = g.shard.to_string();
                let mut numbers = seqnum::Encoder::default();
                for (i, p) in g.records.iter().enumerate() {
                    let seq = sluice_storage::SeqNo(a.first.0 + i as u64);
                    results[p.index] = Some(PutRecordsEntry::Ok(PutRecordOutput {
                        shard_id: shard_id.clone(),
                        sequence_number: numbers.encode(SequenceNumber::for_record(
                            g.created_ms,
                            g.shard.index() as u32,
                            seq,
                            a.timestamp.0,
                        )),
                    }));
                }
                self.notifier(g.uid, g.shard.index()).notify_waiters();
            }
            if pending.is_empty() {
                break;
            }
            pending.sort_by_key(|p| p.index);
            tokio::task::yield_now().await;
        }
        for p in &pending {
            results[p.index] = Some(failed(
                "InternalFailure",
                "the record's shard kept closing; retry",
            ));
        }
        let records: Vec<PutRecordsEntry> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| failed("InternalFailure", "the record was not written")))
            .collect();
        let failed_record_count = records
            .iter()
            .filter(|r| matches!(r, PutRecordsEntry::Failed { .. }))
            .count();
        Ok(PutRecordsOutput {
            failed_record_count,
            records,
        })
    }

    /// Whether the shard's write limit (when enforced) admits the group now.
    fn admit(self: &Arc<Self>, g: &Group) -> bool {
        let bytes: u64 = g
            .records
            .iter()
            .map(|p| (p.data.len() + p.key.len()) as u64)
            .sum();
        self.admit_write(g.uid, g.shard.index(), g.records.len() as u64, bytes)
    }

    /// Routes every record to its open shard and checks its size against the stream's
    /// limit; groups them by shard in request order. Blocking.
    fn route_all(&self, stream: &str, pending: Vec<Pending>) -> Result<Vec<Group>> {
        let now = now_ms();
        let mut groups: Vec<Group> = Vec::new();
        for p in pending {
            let key = match p.hash {
                Some(h) => RouteKey::ExplicitHashKey(h),
                None => RouteKey::PartitionKey(p.key.as_bytes()),
            };
            let route = self.manager.route(stream, key, now)?;
            let limit = self.record_bytes_max(stream, route.stream_uid)?;
            let size = p.data.len() + p.key.len();
            if size > limit {
                return Err(Error::Validation(format!(
                    "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to {limit} (record {} is {size} bytes with its partition key)",
                    p.index
                )));
            }
            match groups
                .iter_mut()
                .find(|g| g.shard == route.shard && g.uid == route.stream_uid)
            {
                Some(g) => g.records.push(p),
                None => {
                    let created_ms =
                        self.shard_created_ms(stream, route.stream_uid, route.shard)?;
                    groups.push(Group {
                        shard: route.shard,
                        uid: route.stream_uid,
                        created_ms,
                        log: route.log,
                        records: vec![p],
                    });
                }
            }
        }
        Ok(groups)
    }
}

/// What the blocking hop of a put did.
enum Step {
    /// Routing saw a sealed parent: route these again.
    Reroute(Vec<Group>),
    /// Each group, and its write: `None` when the shard's write limit refused it.
    Written(
        Vec<(
            Group,
            Option<std::result::Result<sluice_storage::Written, sluice_storage::Error>>,
        )>,
    ),
}

/// Writes a group's records as one batch, without waiting for the sync. Blocking.
fn write_group(
    g: &Group,
    now: sluice_storage::TimestampMs,
) -> std::result::Result<sluice_storage::Written, sluice_storage::Error> {
    let ins: Vec<RecordIn<'_>> = g
        .records
        .iter()
        .map(|p| RecordIn {
            partition_key: p.key.as_bytes(),
            explicit_hash_key: p.hash.map(HashKey::to_be_bytes),
            data: &p.data,
        })
        .collect();
    g.log.append_nowait(&ins, now)
}

fn failed(code: &str, message: &str) -> PutRecordsEntry {
    PutRecordsEntry::Failed {
        error_code: code.to_owned(),
        error_message: message.to_owned(),
    }
}

fn validate(index: usize, r: PutRecordInput) -> Result<Pending> {
    let chars = r.partition_key.chars().count();
    if chars == 0 || chars > PARTITION_KEY_CHARS_MAX {
        return Err(Error::Validation(format!(
            "1 validation error detected: Value '{}' at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and {PARTITION_KEY_CHARS_MAX}",
            r.partition_key.chars().take(300).collect::<String>()
        )));
    }
    let hash = match &r.explicit_hash_key {
        None => None,
        Some(text) => Some(HashKey::parse_decimal(text).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        })?),
    };
    Ok(Pending {
        index,
        key: r.partition_key,
        hash,
        data: r.data,
    })
}
