//! Who is subscribed where, and how many record bytes subscriptions may hold.
//!
//! Every open subscription has a [`Seat`] in [`Subscribers`]: per shard of a stream
//! incarnation, with the consumer for SubscribeToShard. The seats enforce the caps on
//! subscriptions (in total and per shard) and Kinesis's one subscription per consumer
//! per shard, and they are how a subscription is ended from outside: DeleteStream (and
//! the purge or expiry of what it read) ends every seat of the stream or shard with
//! `ResourceNotFound`, and a newer SubscribeToShard of the same consumer ends the older
//! one with `ResourceInUse`. A seat is freed when its subscription is dropped.
//!
//! The byte budgets are semaphores of record bytes (data and partition keys): one per
//! subscription and one for all. An event takes its records' bytes from both after they
//! are read (as slices of the segment's memory map, so reading costs no heap) and before
//! the event is built and encoded, as a [`HeldBytes`]; the front-end keeps that with the
//! event's encoded bytes, so the bytes go back when the transport has sent them and drops
//! its buffer. So the bytes subscriptions hold in encoded events are bounded by the
//! total, a subscriber that stops reading holds at most its own budget, and a
//! subscription whose next event does not fit reads nothing more until it does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::broker::lock;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};

/// Key of a shard: (stream uid, shard index).
type ShardKey = (u64, u64);

/// The seats of every open subscription, and the byte budget they share.
pub(crate) struct Subscribers {
    state: Mutex<State>,
    budget: Arc<Semaphore>,
    bytes_total_max: usize,
    /// Subscriptions waiting for room in the budget.
    waiting: AtomicUsize,
    subscriptions_max: usize,
    per_shard_max: usize,
    takeover_ms: u64,
    account: String,
}

#[derive(Default)]
struct State {
    next_id: u64,
    count: usize,
    shards: HashMap<ShardKey, Vec<Entry>>,
}

/// One open subscription.
struct Entry {
    id: u64,
    /// The consumer ARN of a SubscribeToShard, `None` for gRPC Subscribe.
    consumer: Option<String>,
    started: Instant,
    stream: String,
    shard: String,
    end: watch::Sender<Option<Error>>,
}

/// Who is subscribing: to which shard of which stream incarnation, as which consumer.
pub(crate) struct Subscriber<'a> {
    pub stream: &'a str,
    pub uid: u64,
    pub shard: sluice_shards::ShardId,
    pub consumer: Option<String>,
}

/// A subscription's place; dropping it frees the place.
pub(crate) struct Seat {
    subscribers: Arc<Subscribers>,
    key: ShardKey,
    id: u64,
    end: watch::Receiver<Option<Error>>,
}

/// Record bytes of one event, counted against its subscription's budget and the total
/// until dropped. A front-end keeps it with the event's encoded bytes until the transport
/// has sent them (for example as the owner of a `Bytes` chunk).
#[derive(Debug)]
pub struct HeldBytes {
    _own: Option<OwnedSemaphorePermit>,
    _total: Option<OwnedSemaphorePermit>,
}

/// What subscriptions hold now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Subscriptions open.
    pub open: usize,
    /// Record bytes read for subscribers and not yet sent.
    pub buffered_bytes: usize,
    /// Subscriptions waiting for room in the budget before they send their next event.
    pub waiting: usize,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Subscribers {
    /// Empty, with the caps and the budget of `config`.
    pub(crate) fn new(config: &BrokerConfig) -> Arc<Subscribers> {
        // At least one full-size record must fit, or a subscription could wait forever.
        let bytes_total_max = config
            .subscription_bytes_total_max
            .clamp(config.subscription_bytes_max.max(1), Semaphore::MAX_PERMITS);
        Arc::new(Subscribers {
            state: Mutex::new(State::default()),
            budget: Arc::new(Semaphore::new(bytes_total_max)),
            bytes_total_max,
            waiting: AtomicUsize::new(0),
            subscriptions_max: config.subscriptions_max,
            per_shard_max: config.subscriptions_per_shard_max,
            takeover_ms: config.subscription_takeover_ms,
            account: config.manager.account.clone(),
        })
    }

    /// A seat for `who`, or the error that refuses it: `LimitExceeded` past a cap,
    /// `ResourceInUse` while the same consumer's subscription to the shard is younger
    /// than the takeover time (an older one is ended, and this one takes its place).
    pub(crate) fn join(self: &Arc<Self>, who: Subscriber<'_>) -> Result<Seat> {
        let key = (who.uid, who.shard.index());
        let now = Instant::now();
        let mut state = lock(&self.state);
        let entries = state.shards.get(&key).map_or(&[][..], Vec::as_slice);
        let replaced = match &who.consumer {
            Some(c) => entries.iter().position(|e| e.consumer.as_ref() == Some(c)),
            None => None,
        };
        if let (Some(i), Some(c)) = (replaced, &who.consumer) {
            let age = now.saturating_duration_since(entries[i].started);
            if age.as_millis() < u128::from(self.takeover_ms) {
                return Err(Error::ResourceInUse(format!(
                    "Another active subscription exists for consumer {c} on shard {} of stream {}.",
                    who.shard, who.stream
                )));
            }
        }
        let freed = usize::from(replaced.is_some());
        if state.count - freed >= self.subscriptions_max {
            return Err(Error::LimitExceeded(format!(
                "{} subscriptions are open, the most this server allows (limits.subscriptions_max); retry once one has ended.",
                state.count
            )));
        }
        if entries.len() - freed >= self.per_shard_max {
            return Err(Error::LimitExceeded(format!(
                "Shard {} of stream {} has {} subscriptions open, the most allowed per shard (limits.subscriptions_per_shard_max).",
                who.shard,
                who.stream,
                entries.len()
            )));
        }
        let state = &mut *state;
        let entries = state.shards.entry(key).or_default();
        if let Some(i) = replaced {
            let old = entries.swap_remove(i);
            state.count -= 1;
            old.end.send_replace(Some(Error::ResourceInUse(format!(
                "A newer subscription of consumer {} to shard {} of stream {} took over.",
                old.consumer.as_deref().unwrap_or(""),
                old.shard,
                old.stream
            ))));
        }
        let (end, rx) = watch::channel(None);
        state.next_id += 1;
        let id = state.next_id;
        entries.push(Entry {
            id,
            consumer: who.consumer,
            started: now,
            stream: who.stream.to_owned(),
            shard: who.shard.to_string(),
            end,
        });
        state.count += 1;
        Ok(Seat {
            subscribers: self.clone(),
            key,
            id,
            end: rx,
        })
    }

    /// Ends every subscription of stream `uid` (of one shard of it, when `shard` is
    /// given) with `ResourceNotFound`: the stream was deleted or the shard expired.
    pub(crate) fn end_deleted(&self, uid: u64, shard: Option<u64>) {
        let state = lock(&self.state);
        let ended = state
            .shards
            .iter()
            .filter(|((u, s), _)| *u == uid && shard.is_none_or(|x| x == *s))
            .flat_map(|(_, entries)| entries);
        for e in ended {
            let what = match shard {
                None => format!("Stream {} under account {}", e.stream, self.account),
                Some(_) => format!(
                    "Shard {} in stream {} under account {}",
                    e.shard, e.stream, self.account
                ),
            };
            e.end.send_replace(Some(Error::ResourceNotFound(format!(
                "{what} was deleted; the subscription has ended."
            ))));
        }
    }

    /// A subscription's own budget of `bytes` (at least one).
    pub(crate) fn own_budget(bytes: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(bytes.clamp(1, Semaphore::MAX_PERMITS)))
    }

    /// Takes `bytes` from a subscription's own budget (`own`, of `own_capacity` bytes)
    /// and from the total, waiting while they do not fit; a request larger than a whole
    /// budget takes all of it.
    pub(crate) async fn reserve(
        &self,
        own: &Arc<Semaphore>,
        own_capacity: usize,
        bytes: usize,
    ) -> Result<HeldBytes> {
        Ok(HeldBytes {
            _own: self.take(own, bytes.min(own_capacity)).await?,
            _total: self
                .take(&self.budget, bytes.min(self.bytes_total_max))
                .await?,
        })
    }

    /// Takes `bytes` permits from `budget`, which must have at least that many.
    async fn take(
        &self,
        budget: &Arc<Semaphore>,
        bytes: usize,
    ) -> Result<Option<OwnedSemaphorePermit>> {
        let n = bytes.min(u32::MAX as usize) as u32;
        if n == 0 {
            return Ok(None);
        }
        // Permits go out in request order (tokio's semaphore is fair), so a large event
        // is not starved by small ones; `waiting` counts those that find no room.
        let short = budget.available_permits() < n as usize;
        let _waiting = short.then(|| Waiting::new(&self.waiting));
        let permit = budget
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|_| Error::Internal("a subscription budget is closed".into()))?;
        Ok(Some(permit))
    }

    /// Open subscriptions and the bytes they hold.
    pub(crate) fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            open: lock(&self.state).count,
            buffered_bytes: self.bytes_total_max - self.budget.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    fn leave(&self, key: ShardKey, id: u64) {
        let mut state = lock(&self.state);
        let Some(entries) = state.shards.get_mut(&key) else {
            return;
        };
        let Some(i) = entries.iter().position(|e| e.id == id) else {
            // Taken over: its place was freed then.
            return;
        };
        entries.swap_remove(i);
        if entries.is_empty() {
            state.shards.remove(&key);
        }
        state.count -= 1;
    }
}

impl HeldBytes {
    /// Nothing held (an event without records).
    pub fn none() -> HeldBytes {
        HeldBytes {
            _own: None,
            _total: None,
        }
    }
}

/// Counts one waiter in, and out when its wait ends or is given up.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Seat {
    /// A receiver of why the subscription was ended from outside (`None` until then).
    pub(crate) fn ending(&self) -> watch::Receiver<Option<Error>> {
        self.end.clone()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.subscribers.leave(self.key, self.id);
    }
}

/// Waits until `end` says why the subscription ends. Never returns while nobody has
/// said (a seat's sender lives in the registry until the seat is dropped).
pub(crate) async fn ended(mut end: watch::Receiver<Option<Error>>) -> Error {
    let reason = end
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|r| r.clone());
    match reason {
        Some(e) => e,
        None => std::future::pending().await,
    }
}
