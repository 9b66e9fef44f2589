//! Stream-level changes: CreateStream, DeleteStream (and the purge that ends it), retention
//! and tags, with the checks and quotas before them, and the one path every change takes to
//! the journal ([`ShardManager::commit`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_storage::TimestampMs;

use super::slot::ShardLog;
use super::{Inner, ShardManager, StreamLogs};
use crate::catalogue::{Catalogue, Event};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::lineage::{Lineage, ShardId};
use crate::stream::{
    CreateStream, StreamMeta, StreamStatus, TAG_KEYS_PER_REMOVE_MAX, TAGS_PER_ADD_MAX,
    TAGS_PER_STREAM_MAX, validate_max_record_size_kib, validate_retention_hours,
    validate_stream_name, validate_tag,
};

impl ShardManager {
    /// CreateStream: one journal event. No shard has a log yet (each gets one on first
    /// use), so this costs the same for one shard as for 10,000. With no status delay the
    /// stream is ACTIVE at once.
    pub fn create_stream(&self, req: &CreateStream, now: TimestampMs) -> Result<()> {
        validate_stream_name(&req.name)?;
        if req.shard_count == 0 {
            return Err(Error::InvalidArgument(format!(
                "ShardCount {} for stream {} must be at least 1.",
                req.shard_count, req.name
            )));
        }
        validate_retention_hours(req.retention_hours)?;
        validate_max_record_size_kib(req.max_record_size_kib)?;
        self.validate_tags_to_add(&req.name, &req.tags, 0)?;
        let mut journal = self.admin_ok()?;
        let old = {
            let inner = self.read();
            match inner.catalogue.by_name(&req.name) {
                Some(old) => match old.status(now) {
                    None => Some(old.uid),
                    Some(_) => {
                        let status = inner.status(old, now).unwrap_or(StreamStatus::Deleting);
                        return Err(self.in_use(status, &self.exists_message(&req.name)));
                    }
                },
                None => None,
            }
        };
        if let Some(uid) = old {
            self.purge_locked(&mut journal, uid)?;
        }
        self.check_create_limits(&self.read(), req, now)?;
        self.create_committed(&mut journal, req, now)
    }

    /// DeleteStream: DELETING now, purged after the status delay (at once with none) by
    /// [`ShardManager::run_pending`] or [`ShardManager::tick`]. The purge is one journal
    /// event; the stream's files are removed afterwards, in the background. Returns the
    /// deleted stream's uid.
    pub fn delete_stream(&self, name: &str, now: TimestampMs) -> Result<u64> {
        let mut journal = self.admin_ok()?;
        let uid = {
            let inner = self.read();
            let stream = self.stream(&inner, name, now)?;
            let status = inner.status(stream, now).unwrap_or(StreamStatus::Deleting);
            if status == StreamStatus::Deleting {
                return Err(self.in_use(status, &self.not_active_message(name, status)));
            }
            stream.uid
        };
        let gone_at = TimestampMs(now.0.saturating_add(self.config.status_delay_ms));
        let event = Event::StreamDeleting {
            uid,
            at: now,
            gone_at,
        };
        self.commit(&mut journal, &event, |_| {})?;
        if self.config.status_delay_ms == 0 {
            self.purge_locked(&mut journal, uid)?;
        }
        Ok(uid)
    }

    /// IncreaseStreamRetentionPeriod: `hours` must not be shorter than the current period.
    pub fn increase_retention(&self, name: &str, hours: u32, now: TimestampMs) -> Result<()> {
        self.change_retention(name, hours, true, now)
    }

    /// DecreaseStreamRetentionPeriod: `hours` must not be longer than the current period.
    /// Closed shards past the new period expire at the next [`ShardManager::tick`].
    pub fn decrease_retention(&self, name: &str, hours: u32, now: TimestampMs) -> Result<()> {
        self.change_retention(name, hours, false, now)
    }

    /// AddTagsToStream: overwrites existing keys; at most 50 tags per stream.
    pub fn add_tags(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
        now: TimestampMs,
    ) -> Result<()> {
        let mut journal = self.admin_ok()?;
        let uid = {
            let inner = self.read();
            let s = self.taggable_stream(&inner, name, now)?;
            let kept = s.tags.keys().filter(|k| !tags.contains_key(*k)).count();
            if tags.is_empty() {
                return Err(Error::InvalidArgument(
                    "Tags must hold at least one tag.".into(),
                ));
            }
            self.validate_tags_to_add(name, tags, kept)?;
            s.uid
        };
        let event = Event::TagsAdded {
            uid,
            tags: tags.clone(),
        };
        self.commit(&mut journal, &event, |_| {})
    }

    /// RemoveTagsFromStream: 1 ..= 50 keys; unknown keys are ignored.
    pub fn remove_tags(&self, name: &str, keys: &[String], now: TimestampMs) -> Result<()> {
        if !(1..=TAG_KEYS_PER_REMOVE_MAX).contains(&keys.len()) {
            return Err(Error::InvalidArgument(format!(
                "TagKeys must hold 1 to {TAG_KEYS_PER_REMOVE_MAX} keys; it holds {}.",
                keys.len()
            )));
        }
        let mut journal = self.admin_ok()?;
        let uid = self.taggable_stream(&self.read(), name, now)?.uid;
        let event = Event::TagsRemoved {
            uid,
            keys: keys.to_vec(),
        };
        self.commit(&mut journal, &event, |_| {})
    }

    // ---- the journal ----

    /// Appends `event` to the journal and syncs it (poisoning on failure), applies it to
    /// the catalogue and lets `then` update the routing tables under the same brief write
    /// lock, and compacts the journal when it has grown. The caller holds the admin lock.
    pub(super) fn commit(
        &self,
        journal: &mut Journal,
        event: &Event,
        then: impl FnOnce(&mut Inner),
    ) -> Result<()> {
        self.commit_with(journal, event, |inner| {
            inner.catalogue.apply(event)?;
            then(inner);
            Ok(())
        })
    }

    /// [`ShardManager::commit`] with the apply itself given: `apply` changes the catalogue
    /// (and routing tables) as `event` says, under the write lock; `Err` names the broken
    /// rule and poisons the manager.
    pub(super) fn commit_with(
        &self,
        journal: &mut Journal,
        event: &Event,
        apply: impl FnOnce(&mut Inner) -> std::result::Result<(), String>,
    ) -> Result<()> {
        if let Err(e) = journal.append(event) {
            tracing::error!(error = %e, "metadata journal append failed; manager poisoned");
            self.poison(e.to_string());
            return Err(e);
        }
        {
            let mut inner = self.write();
            if let Err(reason) = apply(&mut inner) {
                // The event was built from this catalogue after every check: a bug, not
                // bad input.
                inner.poisoned.get_or_insert(reason.clone());
                return Err(Error::corrupt(
                    &self.streams_dir,
                    0,
                    format!("journaled event does not apply: {reason}"),
                ));
            }
        }
        if journal.len_bytes() >= self.config.journal_compact_bytes {
            // The change itself is durable; only the compaction's outcome is unknown.
            let _ = self.compact_locked(journal);
        }
        Ok(())
    }

    /// Compacts the journal into a snapshot of the catalogue (copied, so the catalogue is
    /// not held while the snapshot is written). Poisons on failure.
    pub(super) fn compact_locked(&self, journal: &mut Journal) -> Result<()> {
        let catalogue: Catalogue = self.read().catalogue.clone();
        let result = journal.compact(&catalogue);
        if let Err(e) = &result {
            tracing::error!(error = %e, "metadata journal compaction failed; manager poisoned");
            self.poison(e.to_string());
        }
        result
    }

    fn create_committed(
        &self,
        journal: &mut Journal,
        req: &CreateStream,
        now: TimestampMs,
    ) -> Result<()> {
        let uid = self.read().catalogue.uid_next();
        // Build the routing tables before taking the write lock: 10,000 slots take a
        // moment to allocate, and nothing of this is visible until the commit.
        let files = self.stream_files(uid, req.max_record_size_kib, false);
        let lineage = Lineage::initial(req.shard_count, now);
        let logs: BTreeMap<ShardId, Arc<ShardLog>> = lineage
            .all()
            .iter()
            .map(|sh| (sh.id(), ShardLog::absent(&files, sh.id(), false)))
            .collect();
        let event = Event::StreamCreated {
            uid,
            name: req.name.clone(),
            shard_count: req.shard_count,
            retention_hours: req.retention_hours,
            max_record_size_kib: req.max_record_size_kib,
            tags: req.tags.clone(),
            created: now,
            ready_at: TimestampMs(now.0.saturating_add(self.config.status_delay_ms)),
        };
        let routes = lineage.route_table();
        let route_logs = routes
            .ids()
            .iter()
            .filter_map(|id| logs.get(id).cloned())
            .collect();
        let mut runtime = Some(StreamLogs {
            files,
            routes,
            route_logs,
            logs,
        });
        // The catalogue's entry too is built here, outside the write lock (the admin lock
        // we hold keeps the catalogue as it is); under it, the stream is only inserted.
        let meta = self.read().catalogue.created(&event);
        self.commit_with(journal, &event, |inner| {
            inner.catalogue.insert_created(meta?)?;
            if let Some(rt) = runtime.take() {
                inner.runtime.insert(uid, rt);
            }
            Ok(())
        })?;
        tracing::info!(stream = %req.name, uid, shards = req.shard_count, "stream created");
        Ok(())
    }

    /// Journals a deleted stream's purge and drops it from the catalogue and the routing
    /// tables; its files are queued for removal by [`ShardManager::run_pending`] (start-up
    /// removes them if a crash comes first). The caller holds the admin lock.
    pub(super) fn purge_locked(&self, journal: &mut Journal, uid: u64) -> Result<()> {
        let name = self
            .read()
            .catalogue
            .by_uid(uid)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let mut runtime = None;
        self.commit(journal, &Event::StreamPurged { uid }, |inner| {
            runtime = inner.runtime.remove(&uid);
            inner.pending.remove(&uid);
        })?;
        // Outside the catalogue lock: retire every slot (so nothing is created in the
        // directory again) and let the logs close as their last users drop them.
        if let Some(rt) = runtime {
            for slot in rt.logs.values() {
                drop(slot.retire());
            }
        }
        self.queue_unlink(self.stream_dir(uid));
        tracing::info!(stream = %name, uid, "deleted stream purged");
        Ok(())
    }

    fn change_retention(
        &self,
        name: &str,
        hours: u32,
        increase: bool,
        now: TimestampMs,
    ) -> Result<()> {
        validate_retention_hours(hours)?;
        let mut journal = self.admin_ok()?;
        let uid = {
            let inner = self.read();
            let s = self.active_stream(&inner, name, now)?;
            let cur = s.retention_hours;
            if increase && hours < cur {
                return Err(Error::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({cur} hours). Use DecreaseRetentionPeriod API."
                )));
            }
            if !increase && hours > cur {
                return Err(Error::InvalidArgument(format!(
                    "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({cur} hours). Use IncreaseRetentionPeriod API."
                )));
            }
            s.uid
        };
        self.commit(
            &mut journal,
            &Event::RetentionChanged { uid, hours },
            |_| {},
        )
    }

    // ---- checks ----

    fn validate_tags_to_add(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
        kept: usize,
    ) -> Result<()> {
        if tags.len() > TAGS_PER_ADD_MAX {
            return Err(Error::InvalidArgument(format!(
                "Tags holds {} tags; at most {TAGS_PER_ADD_MAX} may be given at once.",
                tags.len()
            )));
        }
        for (k, v) in tags {
            validate_tag(k, v)?;
        }
        if kept + tags.len() > TAGS_PER_STREAM_MAX {
            return Err(Error::InvalidArgument(format!(
                "Failed to add tags to stream {name} under account {} because a given stream cannot have more than {TAGS_PER_STREAM_MAX} tags.",
                self.config.account
            )));
        }
        Ok(())
    }

    fn check_create_limits(
        &self,
        inner: &Inner,
        req: &CreateStream,
        now: TimestampMs,
    ) -> Result<()> {
        if req.shard_count > self.config.shards_per_stream_max {
            return Err(Error::LimitExceeded(format!(
                "ShardCount {} for stream {} exceeds the limit of {} shards per stream.",
                req.shard_count, req.name, self.config.shards_per_stream_max
            )));
        }
        let creating = inner
            .catalogue
            .streams()
            .filter(|s| s.status(now) == Some(StreamStatus::Creating))
            .count();
        if creating >= self.config.streams_creating_max as usize {
            return Err(Error::LimitExceeded(format!(
                "Account {} already has {creating} streams in CREATING; at most {} may be created at once.",
                self.config.account, self.config.streams_creating_max
            )));
        }
        self.check_quota(inner, u64::from(req.shard_count))
    }

    /// The per-stream and account limits on open shards, for a change adding `more`.
    pub(super) fn check_shard_quota(&self, inner: &Inner, s: &StreamMeta, more: u64) -> Result<()> {
        let after = s.lineage.open_count() as u64 + more;
        if after > u64::from(self.config.shards_per_stream_max) {
            return Err(Error::LimitExceeded(format!(
                "Stream {} would have {after} open shards; the limit is {} per stream.",
                s.name, self.config.shards_per_stream_max
            )));
        }
        self.check_quota(inner, more)
    }

    /// The account quota of open shards, counting the reshards not yet committed.
    fn check_quota(&self, inner: &Inner, more: u64) -> Result<()> {
        let open: u64 = inner
            .catalogue
            .streams()
            .filter(|s| s.deleting.is_none())
            .map(|s| s.lineage.open_count() as u64)
            .sum();
        let pending: i64 = inner.pending.values().map(|p| p.open_delta).sum();
        let current = open.saturating_add_signed(pending);
        let limit = u64::from(self.config.open_shards_max);
        if current + more > limit {
            return Err(Error::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {current}. Limit: {limit}. Number of additional shards that would have resulted from this request: {more}.",
                self.config.account, self.config.region
            )));
        }
        Ok(())
    }
}
