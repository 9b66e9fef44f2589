//! Subscriptions (gRPC Subscribe, Kinesis SubscribeToShard): records pushed as soon as
//! they are committed.
//!
//! A [`Subscription`] is pulled, not pumped: it reads the shard only when its front-end
//! asks for the next event, which the front-end does when the transport asks it for the
//! next message. So nothing is read ahead for a client that does not read. Each event
//! comes as a [`Delivery`] whose [`HeldBytes`] count its record bytes against the
//! subscription's own budget and the total (`subscribers`) until the front-end drops
//! them, with the event's encoded bytes, once the transport has sent those. A transport
//! may hold two events (hyper's HTTP/2 server asks for the next message as soon as it has
//! handed one to its send buffer), so an event carries at most half the subscription's
//! budget: a subscriber that stops reading holds at most `subscription_bytes_max` (or one
//! larger record), and the next read of any subscription waits for room in the total.
//!
//! A subscription never keeps its shard's log open: it holds a weak reference and
//! upgrades it only for the length of a read, so a deleted stream's files are released
//! as soon as the shard manager lets go of them. DeleteStream ends every subscription of
//! the stream at once with `ResourceNotFound` through its seat, whether it is waiting for
//! records, for the budget, or for its client.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sluice_shards::ShardId;
use sluice_storage::{Log, SeqNo, TimestampMs};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::{Broker, blocking, now_ms};
use crate::error::{Error, Result};
use crate::read::Cursor;
use crate::seqnum::{SequenceNumber, ShardOrigin};
use crate::subscribers::{HeldBytes, Seat, Subscriber, Subscribers, SubscriptionStats, ended};
use crate::types::{ChildShard, RecordView, StartingPosition, SubscribeEvent, record_views};

/// A subscription with nothing to deliver sends an empty event this often.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One event of a subscription, with the budget its record bytes hold.
#[derive(Debug)]
pub struct Delivery {
    /// The event.
    pub event: SubscribeEvent,
    /// Its record bytes, counted against the subscription budgets until dropped: keep it
    /// until the event's encoded bytes have been sent.
    pub held: HeldBytes,
}

/// One open subscription to a shard. Call [`Subscription::next`] for each event, when the
/// transport asks for the next message; drop it to end the subscription.
pub struct Subscription {
    broker: Arc<Broker>,
    seat: Seat,
    stream: String,
    uid: u64,
    shard: ShardId,
    created_ms: u64,
    log: Weak<Log>,
    seq: SeqNo,
    min_ts: Option<TimestampMs>,
    notify: Arc<Notify>,
    deadline: Instant,
    /// The subscription's own byte budget.
    own: Arc<tokio::sync::Semaphore>,
    done: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("stream", &self.stream)
            .field("shard", &self.shard)
            .field("seq", &self.seq)
            .finish()
    }
}

impl Broker {
    /// Subscribes to a shard from any starting position: [`Subscription::next`] returns
    /// its records as soon as they are committed. Refused with `LimitExceeded` when the
    /// server or the shard has as many subscriptions as its limits allow.
    pub async fn subscribe(
        self: &Arc<Self>,
        stream: &str,
        shard_id: &str,
        position: StartingPosition,
    ) -> Result<Subscription> {
        self.subscribe_as(stream, shard_id, position, None).await
    }

    /// [`Broker::subscribe`] for `consumer` (a consumer ARN) when given, which may have
    /// one subscription per shard.
    pub(crate) async fn subscribe_as(
        self: &Arc<Self>,
        stream: &str,
        shard_id: &str,
        position: StartingPosition,
        consumer: Option<String>,
    ) -> Result<Subscription> {
        let cursor = self.start(stream, shard_id, &position, now_ms()).await?;
        let seat = self.subscribers.join(Subscriber {
            stream,
            uid: cursor.uid,
            shard: cursor.shard,
            consumer,
        })?;
        // A DeleteStream that ran after `start` but before the seat existed ended no
        // seat: the stream must still be this incarnation, and not deleting.
        self.check_not_deleted(stream, cursor.uid).await?;
        Ok(Subscription {
            broker: self.clone(),
            seat,
            notify: self.notifier(cursor.uid, cursor.shard.index()),
            deadline: Instant::now() + Duration::from_millis(self.config.subscription_ttl_ms),
            stream: cursor.stream,
            uid: cursor.uid,
            shard: cursor.shard,
            created_ms: cursor.created_ms,
            log: Arc::downgrade(&cursor.log),
            seq: cursor.seq,
            min_ts: cursor.min_ts,
            own: Subscribers::own_budget(self.config.subscription_bytes_max),
            done: false,
        })
    }

    /// Subscriptions open now, and the record bytes they hold read but not yet sent.
    pub fn subscription_stats(&self) -> SubscriptionStats {
        self.subscribers.stats()
    }

    async fn check_not_deleted(&self, stream: &str, uid: u64) -> Result<()> {
        let (m, name) = (self.manager.clone(), stream.to_owned());
        let d = blocking(move || Ok(m.describe_stream(&name, now_ms())?)).await?;
        if d.uid != uid || d.status == sluice_shards::StreamStatus::Deleting {
            return Err(Error::ResourceNotFound(format!(
                "Stream {stream} under account {} not found.",
                self.config.manager.account
            )));
        }
        Ok(())
    }
}

impl Subscription {
    /// The next event: the records committed since the last one as soon as there are
    /// any, an empty event every few seconds while there are none, and at the end of a
    /// closed shard a last event with its children. `Some(Err(..))` ends it: the stream
    /// was deleted (`ResourceNotFound`), a newer SubscribeToShard of the same consumer
    /// took over (`ResourceInUse`), or a read failed. `None` once it has ended, also after
    /// its lifetime (`subscription_ttl_ms`).
    ///
    /// Call it when the transport asks for the next message, and keep each delivery's
    /// `held` until its event has been sent (module docs).
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        if self.done {
            return None;
        }
        let (ending, deadline) = (self.seat.ending(), self.deadline);
        let out = tokio::select! {
            biased;
            e = ended(ending) => Some(Err(e)),
            () = tokio::time::sleep_until(deadline) => None,
            out = self.step() => Some(out),
        };
        if !matches!(out, Some(Ok(_))) {
            self.finish();
        }
        out
    }

    /// Reads until there is something to send: records, a heartbeat, or the end.
    async fn step(&mut self) -> Result<Delivery> {
        let config = &self.broker.config;
        // Two events may be held at once (module docs).
        let bytes_max = (config.subscription_bytes_max / 2).max(1);
        let limit = config.get_records_max;
        loop {
            // Register for the wake-up before reading, so an append in between is not missed.
            let notify = self.notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let cursor = self.cursor()?;
            let batch = self.broker.read_batch(&cursor, limit, bytes_max).await?;
            drop(cursor);
            self.seq = batch.next;
            self.min_ts = batch.min_ts;
            if !batch.records.is_empty() {
                let bytes = (batch.bytes + batch.key_bytes) as usize;
                let subscribers = &self.broker.subscribers;
                let held = subscribers
                    .reserve(&self.own, config.subscription_bytes_max, bytes)
                    .await?;
                let records = record_views(batch.records);
                let event = self.event(records, batch.millis_behind, Vec::new());
                return Ok(Delivery { event, held });
            }
            if batch.sealed {
                if let Some(children) = self.children_at_end().await? {
                    self.done = true;
                    return Ok(self.empty(children));
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(HEARTBEAT) => return Ok(self.empty(Vec::new())),
            }
        }
    }

    /// The children of the shard when it is closed and read to its end.
    async fn children_at_end(&self) -> Result<Option<Vec<ChildShard>>> {
        let handle = self
            .broker
            .shard_handle(&self.stream, &self.shard.to_string())
            .await?;
        let cursor = self.cursor()?;
        let end = self.broker.closed_end(&handle, &cursor, true).await?;
        match end {
            Some(end) if self.seq >= end => {
                Ok(Some(self.broker.child_shards(&self.stream, &handle).await?))
            }
            _ => Ok(None),
        }
    }

    /// A cursor at the subscription's position, holding the log for one read; the log
    /// is gone once its stream was deleted.
    fn cursor(&self) -> Result<Cursor> {
        let log = self.log.upgrade().ok_or_else(|| {
            Error::ResourceNotFound(format!(
                "Shard {} in stream {} under account {} was deleted; the subscription has ended.",
                self.shard, self.stream, self.broker.config.manager.account
            ))
        })?;
        Ok(Cursor {
            stream: self.stream.clone(),
            uid: self.uid,
            shard: self.shard,
            created_ms: self.created_ms,
            log,
            seq: self.seq,
            min_ts: self.min_ts,
        })
    }

    /// An event without records (a heartbeat, or the last one with the children).
    fn empty(&self, child_shards: Vec<ChildShard>) -> Delivery {
        Delivery {
            event: self.event(Vec::new(), 0, child_shards),
            held: HeldBytes::none(),
        }
    }

    fn event(
        &self,
        records: Vec<RecordView>,
        millis_behind: u64,
        child_shards: Vec<ChildShard>,
    ) -> SubscribeEvent {
        // A number whose AFTER position is the cursor: resuming from it loses nothing.
        let origin = ShardOrigin {
            stream_uid: self.uid,
            created_ms: self.created_ms,
            index: self.shard.index() as u32,
        };
        let continuation = SequenceNumber {
            counter: self.seq.0,
            arrival_s: now_ms().0 / 1000,
            ..SequenceNumber::starting(origin)
        };
        SubscribeEvent {
            records,
            continuation_sequence_number: continuation.encode(),
            millis_behind_latest: millis_behind,
            child_shards,
        }
    }

    /// Ends the subscription: nothing more is read, and it does not hold its log. Its
    /// seat goes when it is dropped; bytes still held by deliveries when they are.
    fn finish(&mut self) {
        self.done = true;
        self.log = Weak::new();
    }
}
