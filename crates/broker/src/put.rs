//! PutRecord and PutRecords: validate, route each record to its open shard, append each
//! shard's records as one batch (one group commit per shard), and retry records whose shard
//! was closed by a split or merge while they were on their way.

use std::sync::Arc;

use bytes::Bytes;
use sluice_shards::{HashKey, Route, RouteKey, ShardId};
use sluice_storage::{Log, RecordIn};

use crate::broker::{Broker, blocking, now_ms};
use crate::error::{Error, Result};
use crate::seqnum::{self, SequenceNumber, ShardOrigin};
use crate::types::{PutRecordInput, PutRecordOutput, PutRecordsEntry, PutRecordsOutput};

/// Partition keys are 1 to 256 Unicode characters.
pub const PARTITION_KEY_CHARS_MAX: usize = 256;
/// How often a record is re-routed when its shard closes under it.
const ROUTE_ATTEMPTS: usize = 100;
/// Requests up to this many bytes (data plus keys) are routed and written on the runtime
/// thread when nothing they need is locked: a PutRecord, or a small PutRecords. Larger
/// ones take the blocking pool, so one `pwrite` never holds a runtime thread for long.
const INLINE_WRITE_BYTES_MAX: usize = 64 * 1024;

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
        // A small request is routed and written right here on the runtime thread when
        // nothing it needs is locked (a thread hand-off each way costs more than its
        // `pwrite`); anything else, or anything that would wait, goes to the blocking pool.
        let inline = pending
            .iter()
            .map(|p| p.data.len() + p.key.len())
            .sum::<usize>()
            <= INLINE_WRITE_BYTES_MAX;
        for attempt in 0..ROUTE_ATTEMPTS {
            let reroute_allowed = attempt + 1 < ROUTE_ATTEMPTS;
            let step = if inline {
                self.route_and_write(stream, pending, now, reroute_allowed, Wait::Never)?
            } else {
                Step::WouldBlock(pending)
            };
            let step = match step {
                Step::WouldBlock(rest) => {
                    let this = self.clone();
                    let name = stream.to_owned();
                    blocking(move || {
                        this.route_and_write(&name, rest, now, reroute_allowed, Wait::Allowed)
                    })
                    .await?
                }
                step => step,
            };
            let written = match step {
                Step::Reroute(rest) | Step::WouldBlock(rest) => {
                    pending = rest;
                    pending.sort_by_key(|p| p.index);
                    tokio::task::yield_now().await;
                    continue;
                }
                Step::Written(written) => written,
            };
            // Groups whose log was busy on the runtime thread are written on the pool.
            let written = if written.iter().any(|(_, o)| matches!(o, Outcome::Deferred)) {
                blocking(move || Ok(finish_writes(written, now))).await?
            } else {
                finish_writes(written, now)
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
                let origin = ShardOrigin {
                    stream_uid: g.uid,
                    created_ms: g.created_ms,
                    index: g.shard.index() as u32,
                };
                for (i, p) in g.records.iter().enumerate() {
                    let seq = sluice_storage::SeqNo(a.first.0 + i as u64);
                    results[p.index] = Some(PutRecordsEntry::Ok(PutRecordOutput {
                        shard_id: shard_id.clone(),
                        sequence_number: numbers.encode(SequenceNumber::for_record(
                            origin,
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

    /// Routes the request and writes each shard's group into the page cache (the syncs
    /// are waited for later, as futures). With [`Wait::Never`] nothing here waits on a
    /// lock: what would is handed back ([`Step::WouldBlock`] before anything is written,
    /// [`Outcome::Deferred`] for one shard's group).
    fn route_and_write(
        self: &Arc<Self>,
        stream: &str,
        pending: Vec<Pending>,
        now: sluice_storage::TimestampMs,
        reroute_allowed: bool,
        wait: Wait,
    ) -> Result<Step> {
        let groups = match self.route_all(stream, pending, wait)? {
            Routed::Groups(groups) => groups,
            Routed::WouldBlock(pending) => return Ok(Step::WouldBlock(pending)),
        };
        // A reshard that lands while this request is being routed sends its earlier
        // records to the closing parent and its later ones to a child; writing the child's
        // group first would put them out of request order. A parent is sealed before the
        // route table changes, so a sealed log here means routing saw two tables: route
        // everything again (nothing is written yet).
        if reroute_allowed {
            let mut sealed = false;
            for g in &groups {
                match wait {
                    Wait::Allowed => sealed |= g.log.is_sealed(),
                    Wait::Never => match g.log.try_is_sealed() {
                        Some(s) => sealed |= s,
                        None => return Ok(Step::WouldBlock(unroute(groups))),
                    },
                }
            }
            if sealed {
                return Ok(Step::Reroute(unroute(groups)));
            }
        }
        Ok(Step::Written(
            groups
                .into_iter()
                .map(|g| {
                    let outcome = if !self.admit(&g) {
                        Outcome::Refused
                    } else {
                        match wait {
                            Wait::Allowed => Outcome::Done(write_group(&g, now)),
                            Wait::Never => {
                                try_write_group(&g, now).map_or(Outcome::Deferred, Outcome::Done)
                            }
                        }
                    };
                    (g, outcome)
                })
                .collect(),
        ))
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
    /// limit; groups them by shard in request order. With [`Wait::Allowed`] it blocks on
    /// the catalogue's lock; with [`Wait::Never`] it hands the records back instead.
    fn route_all(&self, stream: &str, pending: Vec<Pending>, wait: Wait) -> Result<Routed> {
        let now = now_ms();
        let mut groups: Vec<Group> = Vec::new();
        let mut rest = pending.into_iter();
        while let Some(p) = rest.next() {
            let key = match p.hash {
                Some(h) => RouteKey::ExplicitHashKey(h),
                None => RouteKey::PartitionKey(p.key.as_bytes()),
            };
            let Some((route, limit)) = self.locate(stream, key, now, wait)? else {
                return Ok(would_block(groups, p, rest));
            };
            let size = p.data.len() + p.key.len();
            if size > limit {
                return Err(Error::Validation(format!(
                    "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to {limit} (record {} is {size} bytes with its partition key)",
                    p.index
                )));
            }
            if let Some(g) = groups
                .iter_mut()
                .find(|g| g.shard == route.shard && g.uid == route.stream_uid)
            {
                g.records.push(p);
                continue;
            }
            let created_ms = match wait {
                Wait::Allowed => self.shard_created_ms(stream, route.stream_uid, route.shard)?,
                Wait::Never => match self.cached_shard_created_ms(route.stream_uid, route.shard) {
                    Some(ms) => ms,
                    None => return Ok(would_block(groups, p, rest)),
                },
            };
            groups.push(Group {
                shard: route.shard,
                uid: route.stream_uid,
                created_ms,
                log: route.log,
                records: vec![p],
            });
        }
        Ok(Routed::Groups(groups))
    }

    /// A record's open shard and the stream's record size limit; `None` when `wait` is
    /// [`Wait::Never`] and finding out would wait on the catalogue.
    fn locate(
        &self,
        stream: &str,
        key: RouteKey<'_>,
        now: sluice_storage::TimestampMs,
        wait: Wait,
    ) -> Result<Option<(Route, usize)>> {
        let route = match wait {
            Wait::Allowed => self.manager.route(stream, key, now)?,
            Wait::Never => match self.manager.try_route(stream, key, now) {
                Some(route) => route?,
                None => return Ok(None),
            },
        };
        let facts = match wait {
            Wait::Allowed => self.facts(stream, route.stream_uid)?,
            Wait::Never => match self.cached_facts(route.stream_uid) {
                Some(facts) => facts,
                None => return Ok(None),
            },
        };
        Ok(Some((route, facts.record_bytes_max)))
    }
}

/// Whether a put's routing and writing may wait on a lock (on the blocking pool) or must
/// not (on a runtime thread).
#[derive(Debug, Clone, Copy)]
enum Wait {
    Allowed,
    Never,
}

/// What routing a request found.
enum Routed {
    Groups(Vec<Group>),
    /// Something it needed was locked; nothing was written.
    WouldBlock(Vec<Pending>),
}

/// What routing and writing a request did.
enum Step {
    /// Routing saw a sealed parent: route these again.
    Reroute(Vec<Pending>),
    /// Something was locked and the caller must not wait: nothing was written.
    WouldBlock(Vec<Pending>),
    /// Each group and what became of it.
    Written(Vec<(Group, Outcome)>),
}

/// What became of one shard's group.
enum Outcome {
    /// The shard's write limit refused it.
    Refused,
    /// The shard's log was busy; the group still has to be written (on the pool).
    Deferred,
    Done(std::result::Result<sluice_storage::Written, sluice_storage::Error>),
}

/// Routing gave up at `p`: every record back, in request order.
fn would_block(groups: Vec<Group>, p: Pending, rest: impl Iterator<Item = Pending>) -> Routed {
    let mut back = unroute(groups);
    back.push(p);
    back.extend(rest);
    back.sort_by_key(|p| p.index);
    Routed::WouldBlock(back)
}

/// The records of `groups` back in request order.
fn unroute(groups: Vec<Group>) -> Vec<Pending> {
    let mut pending: Vec<Pending> = groups.into_iter().flat_map(|g| g.records).collect();
    pending.sort_by_key(|p| p.index);
    pending
}

/// Writes the deferred groups (blocking: call it on the pool when there are any); `None`
/// for a group the write limit refused.
#[allow(clippy::type_complexity)]
fn finish_writes(
    written: Vec<(Group, Outcome)>,
    now: sluice_storage::TimestampMs,
) -> Vec<(
    Group,
    Option<std::result::Result<sluice_storage::Written, sluice_storage::Error>>,
)> {
    written
        .into_iter()
        .map(|(g, outcome)| {
            let done = match outcome {
                Outcome::Refused => None,
                Outcome::Done(w) => Some(w),
                Outcome::Deferred => Some(write_group(&g, now)),
            };
            (g, done)
        })
        .collect()
}

/// Writes a group's records as one batch, without waiting for the sync. Blocking.
fn write_group(
    g: &Group,
    now: sluice_storage::TimestampMs,
) -> std::result::Result<sluice_storage::Written, sluice_storage::Error> {
    g.log.append_nowait(&records_in(g), now)
}

/// [`write_group`] without waiting: `None` (nothing written) when the log is busy or the
/// group would roll its segment.
fn try_write_group(
    g: &Group,
    now: sluice_storage::TimestampMs,
) -> Option<std::result::Result<sluice_storage::Written, sluice_storage::Error>> {
    g.log.try_append_nowait(&records_in(g), now)
}

/// A group's records as the log takes them.
fn records_in(g: &Group) -> Vec<RecordIn<'_>> {
    g.records
        .iter()
        .map(|p| RecordIn {
            partition_key: p.key.as_bytes(),
            explicit_hash_key: p.hash.map(HashKey::to_be_bytes),
            data: &p.data,
        })
        .collect()
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
