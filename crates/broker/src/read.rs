//! Reading: GetShardIterator (five starting positions, exact boundaries) and GetRecords
//! (limits, NextShardIterator, MillisBehindLatest, ChildShards at the end of a closed
//! shard), and the reads subscriptions (`subscribe`) are made of.

use std::sync::Arc;

use sluice_shards::{ShardHandle, ShardId};
use sluice_storage::{Log, SeqNo, TimestampMs};

use crate::broker::{Broker, blocking, now_ms};
use crate::error::{Error, Result};
use crate::iterator::Position;
use crate::seqnum::{ENDING_COUNTER, SequenceNumber, ShardOrigin};
use crate::types::{
    ChildShard, GetRecordsOutput, GetRecordsPage, HashKeyRange, ReadRecord, StartingPosition,
};

/// What one read of a shard produced.
pub(crate) struct Batch {
    pub records: Vec<ReadRecord>,
    /// Where the next read starts.
    pub next: SeqNo,
    /// The AT_TIMESTAMP bound still to apply (cleared once a record passed it).
    pub min_ts: Option<TimestampMs>,
    pub millis_behind: u64,
    /// Data bytes of the records.
    pub bytes: u64,
    /// Partition key bytes of the records.
    pub key_bytes: u64,
    /// Whether the log was sealed when the read ended (nothing more will be appended).
    pub sealed: bool,
}

/// Where a reader is: a shard of one stream incarnation and a log position.
#[derive(Clone)]
pub(crate) struct Cursor {
    pub stream: String,
    pub uid: u64,
    pub shard: ShardId,
    pub created_ms: u64,
    pub log: Arc<Log>,
    pub seq: SeqNo,
    pub min_ts: Option<TimestampMs>,
}

impl Cursor {
    /// The shard the cursor reads, as its sequence numbers name it.
    pub(crate) fn origin(&self) -> ShardOrigin {
        ShardOrigin {
            stream_uid: self.uid,
            created_ms: self.created_ms,
            index: self.shard.index() as u32,
        }
    }
}

impl Broker {
    /// GetShardIterator.
    pub async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        position: StartingPosition,
    ) -> Result<String> {
        let now = now_ms();
        let cursor = self.start(stream, shard_id, &position, now).await?;
        Ok(self.key.encode(&Position {
            stream: cursor.stream,
            stream_uid: cursor.uid,
            shard_index: cursor.shard.index() as u32,
            seq: cursor.seq,
            min_ts: cursor.min_ts,
            issued: now,
        }))
    }

    /// GetRecords: up to `limit` records (default and at most 10,000) and 10 MiB.
    pub async fn get_records(
        &self,
        iterator: &str,
        limit: Option<usize>,
    ) -> Result<GetRecordsOutput> {
        Ok(self.get_records_page(iterator, limit).await?.into())
    }

    /// [`Broker::get_records`] with the records as read: sequence numbers as fields and
    /// keys as bytes, for a front-end that writes them to the wire itself.
    pub async fn get_records_page(
        &self,
        iterator: &str,
        limit: Option<usize>,
    ) -> Result<GetRecordsPage> {
        let limit = limit.unwrap_or(self.config.get_records_max);
        if !(1..=self.config.get_records_max).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "Limit {limit} is outside 1 ..= {}.",
                self.config.get_records_max
            )));
        }
        let pos = self
            .key
            .decode(iterator)
            .ok_or_else(|| Error::InvalidArgument("Invalid ShardIterator.".into()))?;
        let now = now_ms();
        let age = now.0.saturating_sub(pos.issued.0);
        if age > self.config.iterator_ttl_ms {
            return Err(Error::ExpiredIterator(format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                pos.issued.0, now.0, self.config.iterator_ttl_ms
            )));
        }
        let (handle, cursor) = self.resume(&pos).await?;
        self.admit_read(cursor.uid, cursor.shard.index(), &cursor.stream)?;
        let batch = self
            .read_batch(&cursor, limit, self.config.get_records_bytes_max)
            .await?;
        self.account_read_bytes(cursor.uid, cursor.shard.index(), batch.bytes);
        let end = self.closed_end(&handle, &cursor, batch.sealed).await?;
        let (next_shard_iterator, child_shards) = match end {
            Some(end) if batch.next >= end => {
                (None, self.child_shards(&cursor.stream, &handle).await?)
            }
            _ => {
                let next = Position {
                    seq: batch.next,
                    min_ts: batch.min_ts,
                    issued: now,
                    ..pos
                };
                (Some(self.key.encode(&next)), Vec::new())
            }
        };
        Ok(GetRecordsPage {
            records: batch.records,
            next_shard_iterator,
            millis_behind_latest: batch.millis_behind,
            child_shards,
        })
    }

    /// Resolves a starting position on a shard.
    pub(crate) async fn start(
        &self,
        stream: &str,
        shard_id: &str,
        position: &StartingPosition,
        now: TimestampMs,
    ) -> Result<Cursor> {
        let handle = self.shard_handle(stream, shard_id).await?;
        let log = handle.log.clone().ok_or_else(|| {
            Error::ResourceNotFound(format!(
                "Shard {shard_id} in stream {stream} does not exist"
            ))
        })?;
        let mut cursor = Cursor {
            stream: stream.to_owned(),
            uid: handle.stream_uid,
            shard: handle.info.id(),
            created_ms: handle.info.created().0,
            log,
            seq: SeqNo(0),
            min_ts: None,
        };
        let number = match position {
            StartingPosition::AtSequenceNumber(s) | StartingPosition::AfterSequenceNumber(s) => {
                Some(self.number_for_shard(s, &cursor)?)
            }
            StartingPosition::AtTimestamp(t) if t.0 > now.0 => {
                return Err(Error::InvalidArgument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {}, currentTimestampInMillis: {}",
                    t.0, now.0
                )));
            }
            StartingPosition::AtTimestamp(t) => {
                cursor.min_ts = Some(*t);
                None
            }
            StartingPosition::TrimHorizon | StartingPosition::Latest => None,
        };
        let closed_end = handle.info.closed().map(|c| c.end);
        let (log, at) = (cursor.log.clone(), position.clone());
        let seq = blocking(move || resolve(&log, &at, number, closed_end)).await?;
        cursor.seq = seq.ok_or_else(|| {
            let text = match position {
                StartingPosition::AtSequenceNumber(s)
                | StartingPosition::AfterSequenceNumber(s) => s,
                _ => "",
            };
            self.invalid_number(text, &cursor, "")
        })?;
        Ok(cursor)
    }

    /// Decodes a sequence number and checks that it belongs to the cursor's shard of its
    /// stream incarnation.
    fn number_for_shard(&self, text: &str, cursor: &Cursor) -> Result<SequenceNumber> {
        let shard = cursor.shard;
        let n = SequenceNumber::decode(text).map_err(|_| self.invalid_number(text, cursor, ""))?;
        if u64::from(n.shard_index) != shard.index() {
            let other = ShardId::new(u64::from(n.shard_index))
                .map_or_else(|| n.shard_index.to_string(), |s| s.to_string());
            return Err(Error::InvalidArgument(format!(
                "Invalid StartingSequenceNumber. It encodes {other}, while it was used in a call to a shard with {shard}"
            )));
        }
        if n.shard_created_s != cursor.created_ms / 1000 || !n.may_belong_to_stream(cursor.uid) {
            return Err(self.invalid_number(
                text,
                cursor,
                " because it did not come from this stream",
            ));
        }
        Ok(n)
    }

    /// Kinesis's InvalidArgumentException for a starting sequence number, with `why`
    /// before the full stop.
    fn invalid_number(&self, text: &str, cursor: &Cursor, why: &str) -> Error {
        Error::InvalidArgument(format!(
            "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid{why}.",
            cursor.shard, cursor.stream, self.config.manager.account
        ))
    }

    /// Finds the shard an iterator names, refusing one from an earlier stream of the name.
    async fn resume(&self, pos: &Position) -> Result<(ShardHandle, Cursor)> {
        let shard = ShardId::new(u64::from(pos.shard_index));
        let not_found = || {
            Error::ResourceNotFound(format!(
                "Shard shardId-{:012} in stream {} under account {} does not exist",
                pos.shard_index, pos.stream, self.config.manager.account
            ))
        };
        let shard = shard.ok_or_else(not_found)?;
        let handle = match self.shard_handle(&pos.stream, &shard.to_string()).await {
            Ok(h) if h.stream_uid == pos.stream_uid => h,
            Ok(_) | Err(Error::ResourceNotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let log = handle.log.clone().ok_or_else(not_found)?;
        let cursor = Cursor {
            stream: pos.stream.clone(),
            uid: pos.stream_uid,
            shard,
            created_ms: handle.info.created().0,
            log,
            seq: pos.seq,
            min_ts: pos.min_ts,
        };
        Ok((handle, cursor))
    }

    /// Reads up to `limit` records and `bytes_max` bytes of keys and data (at least one
    /// record when any is readable) from a cursor, skipping records past retention or
    /// before an AT_TIMESTAMP bound.
    pub(crate) async fn read_batch(
        &self,
        cursor: &Cursor,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Batch> {
        let facts = self.facts(&cursor.stream, cursor.uid)?;
        let c = cursor.clone();
        let now = now_ms();
        let (records, next, min_ts, behind_ts, sealed) = blocking(move || {
            let log = &c.log;
            // Look first: once sealed, the log takes no more records, so what the read
            // below finds is all there will be.
            let sealed = log.is_sealed();
            let from = c.seq.max(log.trim_horizon());
            if from >= log.next_seq() {
                return Ok((Vec::new(), c.seq.max(from), c.min_ts, None, sealed));
            }
            // Shared reads: the data stays in the segment's mapping until the front-end
            // encodes it, the one copy on the way to the socket. Records written but not
            // yet synced are past the readable end: nothing to return yet, not an error.
            let batch = match log.read_shared(from, limit, bytes_max) {
                Err(sluice_storage::Error::BeyondEnd { .. }) => {
                    return Ok((Vec::new(), c.seq.max(from), c.min_ts, None, sealed));
                }
                other => other?,
            };
            let cutoff = now.0.saturating_sub(facts.retention_ms);
            let mut min_ts = c.min_ts;
            let mut records = batch.records;
            records.retain(|r| {
                let keep = r.timestamp.0 >= cutoff && min_ts.is_none_or(|t| r.timestamp >= t);
                if keep {
                    min_ts = None;
                }
                keep
            });
            // How far behind: the arrival time of the first record not returned.
            // Unsynced records are not readable yet, so they count as caught up.
            let behind_ts = if batch.next < log.next_seq() {
                match log.read_shared(batch.next, 1, 0) {
                    Ok(next) => next.records.first().map(|r| r.timestamp),
                    Err(sluice_storage::Error::BeyondEnd { .. }) => None,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            Ok((records, batch.next, min_ts, behind_ts, sealed))
        })
        .await?;
        let (mut bytes, mut key_bytes) = (0u64, 0u64);
        let records: Vec<ReadRecord> = records
            .into_iter()
            .map(|r| {
                bytes += r.data.len() as u64;
                key_bytes += r.partition_key.len() as u64;
                ReadRecord {
                    sequence_number: SequenceNumber::for_record(
                        cursor.origin(),
                        r.seq,
                        r.timestamp.0,
                    ),
                    approximate_arrival_timestamp: r.timestamp,
                    partition_key: r.partition_key,
                    data: r.data,
                }
            })
            .collect();
        let millis_behind = behind_ts.map_or(0, |t| now.0.saturating_sub(t.0));
        Ok(Batch {
            records,
            next,
            min_ts,
            millis_behind,
            bytes,
            key_bytes,
            sealed,
        })
    }

    /// The position after a closed shard's last record, `None` while it is open.
    /// `sealed` says whether the cursor's log was sealed when last read.
    pub(crate) async fn closed_end(
        &self,
        handle: &ShardHandle,
        cursor: &Cursor,
        sealed: bool,
    ) -> Result<Option<SeqNo>> {
        if let Some(c) = handle.info.closed() {
            return Ok(Some(c.end));
        }
        if !sealed {
            return Ok(None);
        }
        // Sealed since the handle was taken: ask the catalogue whether the reshard committed.
        let fresh = self
            .shard_handle(&cursor.stream, &cursor.shard.to_string())
            .await?;
        Ok(fresh.info.closed().map(|c| c.end))
    }

    /// The children of a closed shard, as ChildShards.
    pub(crate) async fn child_shards(
        &self,
        stream: &str,
        handle: &ShardHandle,
    ) -> Result<Vec<ChildShard>> {
        let handle = if handle.children.is_empty() {
            self.shard_handle(stream, &handle.info.id().to_string())
                .await?
        } else {
            handle.clone()
        };
        let mut out = Vec::with_capacity(handle.children.len());
        for child in &handle.children {
            let (m, name, id) = (self.manager.clone(), stream.to_owned(), *child);
            let h = blocking(move || Ok(m.shard(&name, id, now_ms())?)).await?;
            let info = &h.info;
            out.push(ChildShard {
                shard_id: info.id().to_string(),
                parent_shards: info
                    .parent()
                    .into_iter()
                    .chain(info.adjacent_parent())
                    .map(|p| p.to_string())
                    .collect(),
                hash_key_range: HashKeyRange {
                    starting_hash_key: info.range().start().0.to_string(),
                    ending_hash_key: info.range().end().0.to_string(),
                },
            });
        }
        Ok(out)
    }
}

/// Where a starting position puts a reader of `log` (on the blocking pool: it takes the
/// log's lock and may read the timestamp index). `None` for a sequence number beyond the
/// shard's end: one no record of the shard has had yet, other than a closed shard's
/// `EndingSequenceNumber` (which positions at its end). `closed_end` is the position after
/// a closed shard's last record.
fn resolve(
    log: &Log,
    position: &StartingPosition,
    number: Option<SequenceNumber>,
    closed_end: Option<SeqNo>,
) -> Result<Option<SeqNo>> {
    let beyond = |n: &SequenceNumber| n.counter > log.next_seq().0;
    Ok(match (position, number) {
        (StartingPosition::TrimHorizon, _) => Some(log.trim_horizon()),
        (StartingPosition::Latest, _) => Some(log.next_seq()),
        (StartingPosition::AtTimestamp(t), _) => Some(log.seek_time(*t)?),
        (_, Some(n)) if n.counter == ENDING_COUNTER && closed_end.is_some() => closed_end,
        (_, Some(n)) if beyond(&n) => None,
        (StartingPosition::AtSequenceNumber(_), Some(n)) => Some(n.at_position()),
        (StartingPosition::AfterSequenceNumber(_), Some(n)) => Some(n.after_position()),
        (_, None) => None,
    })
}
