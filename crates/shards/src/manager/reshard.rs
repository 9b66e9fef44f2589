//! SplitShard, MergeShards and UpdateShardCount: checked and planned when called (the
//! stream turns UPDATING), carried out later by [`ShardManager::run_pending`]: seal every
//! parent, journal the change with their ending sequences, apply it.
//!
//! Nothing of a pending reshard is durable: a crash before its commit leaves sealed
//! parents that start-up unseals, and the stream as it was. Parents keep taking puts until
//! their own seal; from then until the commit, a put routed to one waits in
//! [`ShardManager::route`] (never holding a manager-wide lock) and then goes to a child.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_storage::{SeqNo, TimestampMs};

use super::slot::ShardLog;
use super::{ShardManager, StreamLogs, UpdateShardCountOutput};
use crate::catalogue::Event;
use crate::error::{Error, Result};
use crate::hash_range::HashKey;
use crate::lineage::{Reshard, ReshardKind, ReshardPlan, ShardId};

/// A reshard accepted and not yet committed: the stream shows UPDATING meanwhile.
#[derive(Debug, Clone)]
pub(super) struct PendingReshard {
    kind: ReshardKind,
    plan: ReshardPlan,
    /// When it was asked for: UPDATING lasts at least the status delay from here.
    requested: TimestampMs,
    /// The lineage's next id when planned; the commit checks nothing changed since.
    first_new: ShardId,
    /// How many more shards are open once it commits (negative when merging), for quotas.
    pub open_delta: i64,
}

/// The shards a reshard closes that exist now, with their slots.
type Parents = Vec<(ShardId, Arc<ShardLog>)>;

/// What became of one pending reshard.
enum Outcome {
    Committed,
    /// Given up (the stream was deleted meanwhile, or a seal failed); the stream is as
    /// it was.
    Abandoned,
}

impl ShardManager {
    /// SplitShard at `new_starting_hash_key` (`start + 1 < key < end`); the lower child gets
    /// the lower id and the lower half. Returns once accepted; the stream is UPDATING until
    /// [`ShardManager::run_pending`] commits it.
    pub fn split_shard(
        &self,
        name: &str,
        shard: ShardId,
        new_starting_hash_key: HashKey,
        now: TimestampMs,
    ) -> Result<()> {
        self.accept(name, now, |inner, s| {
            let parent = self.open_shard(s, shard)?;
            if !parent.range().split_allowed(new_starting_hash_key) {
                return Err(Error::InvalidArgument(format!(
                    "NewStartingHashKey {new_starting_hash_key} used in SplitShard() on shard {shard} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                    self.config.account,
                    parent.range().start(),
                    parent.range().end()
                )));
            }
            self.check_shard_quota(inner, s, 1)?;
            let plan = s.lineage.plan_split(parent, new_starting_hash_key);
            let plan = plan.ok_or_else(|| {
                Error::InvalidArgument(format!("cannot split {shard} at {new_starting_hash_key}"))
            })?;
            Ok(Some((ReshardKind::Split, plan, 1)))
        })
        .map(drop)
    }

    /// MergeShards: `shard` must be the lower of the two and `adjacent` the open shard
    /// directly above it. Returns once accepted, as [`ShardManager::split_shard`] does.
    pub fn merge_shards(
        &self,
        name: &str,
        shard: ShardId,
        adjacent: ShardId,
        now: TimestampMs,
    ) -> Result<()> {
        self.accept(name, now, |_, s| {
            let lower = self.open_shard(s, shard)?;
            let upper = self.open_shard(s, adjacent)?;
            let plan = s.lineage.plan_merge(lower, upper).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "Shards {shard} and {adjacent} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                    self.config.account
                ))
            })?;
            Ok(Some((ReshardKind::Merge, plan, -1)))
        })
        .map(drop)
    }

    /// UpdateShardCount with UNIFORM_SCALING: at most double, at least half the open shards.
    /// Returns once accepted, as [`ShardManager::split_shard`] does; a target the stream
    /// already has in the uniform layout changes nothing.
    pub fn update_shard_count(
        &self,
        name: &str,
        target: u32,
        now: TimestampMs,
    ) -> Result<UpdateShardCountOutput> {
        let mut current = 0;
        self.accept(name, now, |inner, s| {
            current = u32::try_from(s.lineage.open_count()).unwrap_or(u32::MAX);
            self.check_shard_count_update(inner, s, current, target, now)?;
            let plan = s.lineage.plan_uniform(target);
            let delta = i64::from(target) - i64::from(current);
            let kind = ReshardKind::UniformScaling { target };
            Ok((!plan.creates.is_empty()).then_some((kind, plan, delta)))
        })?;
        Ok(UpdateShardCountOutput { current, target })
    }

    /// Checks and plans a reshard of an ACTIVE stream under the admin lock (so no other
    /// change slips in between) and records it as pending. `plan` returns `None` for a
    /// change that does nothing.
    fn accept(
        &self,
        name: &str,
        now: TimestampMs,
        plan: impl FnOnce(
            &super::Inner,
            &crate::stream::StreamMeta,
        ) -> Result<Option<(ReshardKind, ReshardPlan, i64)>>,
    ) -> Result<bool> {
        let _journal = self.admin_ok()?;
        let (uid, pending) = {
            let inner = self.read();
            let s = self.active_stream(&inner, name, now)?;
            let Some((kind, plan, open_delta)) = plan(&inner, s)? else {
                return Ok(false);
            };
            let pending = PendingReshard {
                kind,
                plan,
                requested: now,
                first_new: s.lineage.next_id(),
                open_delta,
            };
            (s.uid, pending)
        };
        tracing::info!(stream = name, uid, kind = ?pending.kind, "reshard accepted");
        self.write().pending.insert(uid, pending);
        Ok(true)
    }

    /// Runs every pending reshard; returns the uids committed and those given up.
    pub(super) fn run_reshards(
        &self,
        clock: &dyn Fn() -> TimestampMs,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let uids: Vec<u64> = self.read().pending.keys().copied().collect();
        let (mut committed, mut abandoned) = (Vec::new(), Vec::new());
        for uid in uids {
            match self.run_reshard(uid, clock)? {
                Some(Outcome::Committed) => committed.push(uid),
                Some(Outcome::Abandoned) => abandoned.push(uid),
                None => {}
            }
        }
        Ok((committed, abandoned))
    }

    /// Seals the parents of stream `uid`'s pending reshard, then commits it. `Err` only
    /// when the journal failed (the manager is poisoned); anything else gives the reshard
    /// up and leaves the stream as it was.
    fn run_reshard(&self, uid: u64, clock: &dyn Fn() -> TimestampMs) -> Result<Option<Outcome>> {
        let Some((job, parents)) = self.pending_job(uid) else {
            return Ok(None);
        };
        for (_, slot) in &parents {
            slot.set_closing(true);
        }
        let outcome = match self.seal_all(&parents) {
            Ok(Some(closes)) => self.commit_reshard(uid, &job, closes, clock()),
            Ok(None) => Ok(Outcome::Abandoned),
            Err(e) => {
                tracing::error!(uid, error = %e, "a reshard could not seal a parent");
                Ok(Outcome::Abandoned)
            }
        };
        if !matches!(outcome, Ok(Outcome::Committed)) {
            self.give_up(uid, &parents);
        }
        for (_, slot) in &parents {
            slot.set_closing(false);
        }
        self.notify_reshard_done();
        outcome.map(Some)
    }

    /// The pending reshard of `uid` and the slots of the shards it closes that exist now.
    fn pending_job(&self, uid: u64) -> Option<(PendingReshard, Parents)> {
        let inner = self.read();
        let job = inner.pending.get(&uid)?.clone();
        let rt = inner.runtime.get(&uid)?;
        let parents = job
            .plan
            .closes
            .iter()
            .filter(|id| **id < job.first_new)
            .filter_map(|id| rt.logs.get(id).map(|slot| (*id, Arc::clone(slot))))
            .collect();
        Some((job, parents))
    }

    /// Journals and applies a reshard whose parents are sealed, after checking under the
    /// admin lock that the stream is still the one it was planned on.
    fn commit_reshard(
        &self,
        uid: u64,
        job: &PendingReshard,
        mut closes: Vec<(ShardId, SeqNo)>,
        now: TimestampMs,
    ) -> Result<Outcome> {
        let mut journal = self.admin_ok()?;
        let (still_planned, files) = {
            let inner = self.read();
            let same = inner
                .catalogue
                .by_uid(uid)
                .is_some_and(|s| s.deleting.is_none() && s.lineage.next_id() == job.first_new);
            let ours = inner.pending.contains_key(&uid);
            let files = inner.runtime.get(&uid).map(|rt| Arc::clone(&rt.files));
            (
                same && ours && closes.len() + intermediates(job).count() == job.plan.closes.len(),
                files,
            )
        };
        let Some(files) = files.filter(|_| still_planned) else {
            return Ok(Outcome::Abandoned);
        };
        // Intermediate shards close in the change that made them: never written, empty.
        closes.extend(intermediates(job).map(|id| (id, SeqNo(0))));
        let closed_at_once: BTreeSet<ShardId> = intermediates(job).collect();
        let new_slots: BTreeMap<ShardId, Arc<ShardLog>> = job
            .plan
            .creates
            .iter()
            .map(|c| {
                let closed = closed_at_once.contains(&c.id);
                (c.id, ShardLog::absent(&files, c.id, closed))
            })
            .collect();
        let requested_ready = job.requested.0.saturating_add(self.config.status_delay_ms);
        let event = Event::Resharded {
            uid,
            ready_at: TimestampMs(requested_ready.max(now.0)),
            change: Reshard {
                kind: job.kind,
                at: now,
                creates: job.plan.creates.clone(),
                closes,
            },
        };
        // The stream as it is after the change, and its routing tables, are built here,
        // outside the catalogue's write lock (the admin lock we hold keeps anything else
        // from changing them): for thousands of shards that takes milliseconds, and the
        // write lock is then held only to swap them in. What they replace is freed after.
        let (meta, new_rt) = {
            let inner = self.read();
            let meta = inner.catalogue.resharded(&event);
            let logs = inner.runtime.get(&uid).map(|rt| rt.logs.clone());
            (meta, logs)
        };
        let new_rt = match (&meta, new_rt) {
            (Ok(after), Some(mut logs)) => {
                logs.extend(new_slots);
                Some(StreamLogs::new(files, logs, after))
            }
            _ => None,
        };
        let mut replaced = None;
        self.commit_with(&mut journal, &event, |inner| {
            let before = inner.catalogue.replace(meta?)?;
            inner.pending.remove(&uid);
            let old_rt = match (inner.runtime.get_mut(&uid), new_rt) {
                (Some(rt), Some(new_rt)) => Some(std::mem::replace(rt, new_rt)),
                _ => None,
            };
            replaced = Some((before, old_rt));
            Ok(())
        })?;
        drop(replaced);
        tracing::info!(uid, kind = ?job.kind, created = job.plan.creates.len(), closed = job.plan.closes.len(), "resharded");
        Ok(Outcome::Committed)
    }

    /// Gives a pending reshard up: reopens the parents it sealed and drops it, so the
    /// stream is ACTIVE as before. A parent that cannot be unsealed stays sealed until
    /// the next start-up unseals it (the journal says it is open).
    fn give_up(&self, uid: u64, parents: &[(ShardId, Arc<ShardLog>)]) {
        for (id, slot) in parents {
            if let Err(e) = slot.unseal() {
                tracing::error!(uid, shard = %id, error = %e, "could not unseal a parent of a reshard given up");
            }
        }
        self.write().pending.remove(&uid);
        tracing::warn!(uid, "pending reshard given up; the stream is as it was");
    }

    fn check_shard_count_update(
        &self,
        inner: &super::Inner,
        s: &crate::stream::StreamMeta,
        current: u32,
        target: u32,
        now: TimestampMs,
    ) -> Result<()> {
        if target == 0 {
            return Err(Error::InvalidArgument(
                "TargetShardCount must be at least 1.".into(),
            ));
        }
        if u64::from(target) > 2 * u64::from(current) {
            return Err(Error::InvalidArgument(format!(
                "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        if 2 * u64::from(target) < u64::from(current) {
            return Err(Error::InvalidArgument(format!(
                "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        let done = s.count_updates_within_day(now);
        if done >= self.config.shard_count_updates_per_day_max as usize {
            return Err(Error::LimitExceeded(format!(
                "Stream {} under account {} has already been updated {done} times in the last 24 hours; the limit is {}.",
                s.name, self.config.account, self.config.shard_count_updates_per_day_max
            )));
        }
        self.check_shard_quota(inner, s, u64::from(target.saturating_sub(current)))
    }
}

/// The shards a plan both creates and closes.
fn intermediates(job: &PendingReshard) -> impl Iterator<Item = ShardId> + '_ {
    job.plan
        .closes
        .iter()
        .copied()
        .filter(|id| *id >= job.first_new)
}

impl ShardManager {
    /// Seals every parent, several at once, and returns `(shard, ending sequence)` pairs in
    /// plan order; an error if any seal failed, `None` when asked to stop (the caller
    /// unseals them all either way).
    fn seal_all(
        &self,
        parents: &[(ShardId, Arc<ShardLog>)],
    ) -> Result<Option<Vec<(ShardId, SeqNo)>>> {
        // Side by side: a put routed to a parent sealed early waits for the commit, so the
        // time from the first seal to the commit is what those puts wait.
        let sealed = super::side_by_side(parents, |(id, slot)| {
            if self.is_stopping() {
                return Ok(None);
            }
            slot.seal().map(|end| Some((*id, end)))
        });
        let mut ends = Vec::with_capacity(parents.len());
        for seal in sealed {
            match seal? {
                Some(end) => ends.push(end),
                None => return Ok(None),
            }
        }
        Ok(Some(ends))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use sluice_storage::{RecordIn, SegmentCache, SimFs};

    use super::*;
    use crate::manager::{ManagerConfig, RouteKey, SEALED_ROUTE_WAIT};
    use crate::stream::CreateStream;

    const T: TimestampMs = TimestampMs(1_000);

    /// A one-shard stream with a record, and a split of it accepted: its uid.
    fn split_pending() -> (ShardManager, u64) {
        let m = ShardManager::open(
            SimFs::new().shared(),
            Path::new("/data"),
            ManagerConfig::default(),
            SegmentCache::new(8),
            T,
        )
        .unwrap();
        m.create_stream(&CreateStream::new("s", 1), T).unwrap();
        let route = m.route("s", RouteKey::PartitionKey(b"k"), T).unwrap();
        let record = RecordIn {
            partition_key: b"k",
            explicit_hash_key: None,
            data: b"x",
        };
        route.log.append(&[record], T).unwrap();
        let parent = ShardId::new(0).unwrap();
        m.split_shard("s", parent, HashKey(1 << 127), T).unwrap();
        let uid = m.describe_stream("s", T).unwrap().uid;
        (m, uid)
    }

    /// Does the worker's first half: marks and seals the parents.
    fn seal_parents(m: &ShardManager, uid: u64) -> (PendingReshard, Vec<(ShardId, SeqNo)>) {
        let (job, parents) = m.pending_job(uid).unwrap();
        for (_, slot) in &parents {
            slot.set_closing(true);
        }
        (job, m.seal_all(&parents).unwrap().unwrap())
    }

    #[test]
    fn a_put_to_a_parent_sealed_by_a_pending_reshard_waits_for_the_commit() {
        let (m, uid) = split_pending();
        let (job, closes) = seal_parents(&m, uid);
        assert!(m.try_route("s", RouteKey::PartitionKey(b"k"), T).is_none());
        std::thread::scope(|s| {
            let put = s.spawn(|| m.route("s", RouteKey::PartitionKey(b"k"), T).unwrap());
            assert!(matches!(
                m.commit_reshard(uid, &job, closes, T),
                Ok(Outcome::Committed)
            ));
            m.notify_reshard_done();
            // Whether it asked before or after the commit, it never gets the sealed parent.
            let route = put.join().unwrap();
            assert_ne!(route.shard, ShardId::new(0).unwrap());
            assert!(!route.log.is_sealed());
        });
    }

    #[test]
    fn a_put_waits_a_bounded_time_for_a_reshard_that_does_not_commit() {
        let (m, uid) = split_pending();
        let _sealed = seal_parents(&m, uid);
        let started = Instant::now();
        let route = m.route("s", RouteKey::PartitionKey(b"k"), T).unwrap();
        assert!(started.elapsed() >= SEALED_ROUTE_WAIT, "it waited");
        assert_eq!(route.shard, ShardId::new(0).unwrap());
        assert!(
            route.log.is_sealed(),
            "the append will be refused and routed again"
        );
    }

    #[test]
    fn a_reshard_that_cannot_commit_unseals_its_parents() {
        let (m, uid) = split_pending();
        let (_, parents) = m.pending_job(uid).unwrap();
        seal_parents(&m, uid);
        m.give_up(uid, &parents);
        assert!(!parents[0].1.is_sealed());
        assert_eq!(
            m.describe_stream("s", T).unwrap().status,
            crate::StreamStatus::Active
        );
        let route = m.route("s", RouteKey::PartitionKey(b"k"), T).unwrap();
        assert_eq!(route.shard, ShardId::new(0).unwrap());
    }
}
