//! The work that runs after the calls that asked for it: pending reshards, purges of
//! deleted streams, removal of their files ([`ShardManager::run_pending`], driven by a
//! worker), and the expiry of closed shards past retention ([`ShardManager::tick`], driven
//! by the maintenance timer). Each change is journaled under the admin lock, one at a
//! time; the file work around it (sealing, unlinking) takes no manager-wide lock.

use std::path::PathBuf;

use sluice_storage::TimestampMs;

use super::ShardManager;
use crate::catalogue::Event;
use crate::error::Result;
use crate::lineage::{ShardId, ShardState};

/// What [`ShardManager::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Deleted streams whose logs were removed, by name.
    pub streams_purged: Vec<String>,
    /// Closed shards whose records all expired and whose logs were removed.
    pub shards_expired: Vec<(String, ShardId)>,
    /// The same shards by stream uid, for callers that keep state per shard.
    pub shards_expired_by_uid: Vec<(u64, ShardId)>,
    /// The uids of the purged streams.
    pub streams_purged_uids: Vec<u64>,
}

/// What [`ShardManager::run_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkReport {
    /// Streams whose pending reshard committed, by uid (their closed shards' readers
    /// should look again).
    pub reshards_committed: Vec<u64>,
    /// Streams whose pending reshard was given up (deleted meanwhile, or a seal failed).
    pub reshards_abandoned: Vec<u64>,
    /// Deleted streams purged, by uid.
    pub streams_purged_uids: Vec<u64>,
    /// Directories of purged streams removed.
    pub directories_removed: usize,
}

impl ShardManager {
    /// Does the background work due at `clock()`: commits pending reshards (sealing their
    /// parents first), purges streams whose deletion delay has passed, and removes the
    /// directories of purged streams. Blocking, and long for big streams, but holding no
    /// lock that routing, reads or other administration need for more than one journal
    /// sync at a time. One caller at a time; `Err` only when the journal failed.
    pub fn run_pending(&self, clock: &dyn Fn() -> TimestampMs) -> Result<WorkReport> {
        let _worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_stopping() {
            return Ok(WorkReport::default());
        }
        let (reshards_committed, reshards_abandoned) = self.run_reshards(clock)?;
        let streams_purged_uids = self
            .purge_gone(clock())?
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        let directories_removed = self.unlink_queued();
        Ok(WorkReport {
            reshards_committed,
            reshards_abandoned,
            streams_purged_uids,
            directories_removed,
        })
    }

    /// Makes a running [`ShardManager::run_pending`] give up the reshard it is sealing
    /// parents for, and later calls do nothing: for shutdown, so a long reshard does not
    /// hold it up. What was given up is as if a crash had come first: not done.
    pub fn stop_work(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// When [`ShardManager::run_pending`] has work: `Some(now)` or earlier when some is
    /// waiting, the time a deleted stream's delay ends, or `None` when nothing is planned.
    pub fn next_work_at(&self, now: TimestampMs) -> Option<TimestampMs> {
        let queued = !self
            .unlink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        let inner = self.read();
        if queued || !inner.pending.is_empty() {
            return Some(now);
        }
        inner
            .catalogue
            .streams()
            .filter_map(|s| s.deleting.map(|d| d.gone_at))
            .min()
    }

    /// Does the deferred work due at `now` that the maintenance timer drives: purges
    /// streams whose deletion completed, and expires closed shards whose records are all
    /// past retention (journaling the change, then removing the log; the shard stays
    /// describable).
    pub fn tick(&self, now: TimestampMs) -> Result<TickReport> {
        let mut report = TickReport::default();
        for (uid, name) in self.purge_gone(now)? {
            report.streams_purged.push(name);
            report.streams_purged_uids.push(uid);
        }
        for (uid, name, shard) in self.expired_shards(now) {
            if self.expire(uid, shard, now)? {
                tracing::info!(stream = %name, shard = %shard, "closed shard expired; log removed");
                report.shards_expired.push((name, shard));
                report.shards_expired_by_uid.push((uid, shard));
            }
        }
        Ok(report)
    }

    /// Queues a purged stream's directory for removal.
    pub(super) fn queue_unlink(&self, dir: PathBuf) {
        self.unlink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir);
    }

    /// Purges every stream whose deletion delay has passed; returns their uids and names.
    fn purge_gone(&self, now: TimestampMs) -> Result<Vec<(u64, String)>> {
        let gone: Vec<(u64, String)> = self
            .read()
            .catalogue
            .streams()
            .filter(|s| s.status(now).is_none())
            .map(|s| (s.uid, s.name.clone()))
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let mut journal = self.admin_ok()?;
        for (uid, _) in &gone {
            if self.read().catalogue.by_uid(*uid).is_some() {
                self.purge_locked(&mut journal, *uid)?;
            }
        }
        Ok(gone)
    }

    /// Removes the queued directories of purged streams, oldest first. A failure is
    /// logged and the directory left for start-up, which removes what no stream names.
    fn unlink_queued(&self) -> usize {
        let dirs = std::mem::take(&mut *self.unlink.lock().unwrap_or_else(|e| e.into_inner()));
        let mut removed = 0;
        for dir in dirs {
            if !self.fs.exists(&dir) {
                continue;
            }
            let done = self
                .fs
                .remove_dir_all(&dir)
                .and_then(|()| self.fs.sync_dir(&self.streams_dir));
            match done {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted stream's files; start-up will");
                }
            }
        }
        removed
    }

    /// Closed shards whose newest record (or, if later, whose close) is past retention.
    /// The catalogue is read once; the logs are asked for their newest record after.
    fn expired_shards(&self, now: TimestampMs) -> Vec<(u64, String, ShardId)> {
        let mut candidates = Vec::new();
        {
            let inner = self.read();
            for s in inner
                .catalogue
                .streams()
                .filter(|s| s.status(now).is_some())
            {
                let logs = inner.runtime.get(&s.uid);
                for sh in s.lineage.all() {
                    let (ShardState::Closed, Some(close)) = (sh.state(), sh.closed()) else {
                        continue;
                    };
                    let slot = logs.and_then(|r| r.logs.get(&sh.id())).cloned();
                    candidates.push((
                        s.uid,
                        s.name.clone(),
                        sh.id(),
                        close.at,
                        s.retention_ms(),
                        slot,
                    ));
                }
            }
        }
        candidates
            .into_iter()
            .filter(|(.., close_at, retention_ms, slot)| {
                let last = slot
                    .as_ref()
                    .and_then(|l| l.last_timestamp())
                    .unwrap_or(*close_at);
                last.max(*close_at).0.saturating_add(*retention_ms) <= now.0
            })
            .map(|(uid, name, shard, ..)| (uid, name, shard))
            .collect()
    }

    /// Journals one closed shard's expiry, drops its slot and removes its log. `false` if
    /// it is no longer a closed shard of a live stream.
    fn expire(&self, uid: u64, shard: ShardId, now: TimestampMs) -> Result<bool> {
        let mut journal = self.admin_ok()?;
        let closed = self.read().catalogue.by_uid(uid).is_some_and(|s| {
            s.deleting.is_none()
                && s.lineage
                    .get(shard)
                    .is_some_and(|sh| sh.state() == ShardState::Closed)
        });
        if !closed {
            return Ok(false);
        }
        let mut slot = None;
        let event = Event::ShardExpired {
            uid,
            shard,
            at: now,
        };
        self.commit(&mut journal, &event, |inner| {
            slot = inner
                .runtime
                .get_mut(&uid)
                .and_then(|r| r.logs.remove(&shard));
        })?;
        drop(journal);
        let dir = slot
            .as_ref()
            .map_or_else(|| self.stream_dir(uid).join(shard.to_string()), |s| s.dir());
        drop(slot.and_then(|s| s.retire()));
        sluice_storage::remove_log(self.fs.as_ref(), &dir)?;
        Ok(true)
    }
}
