//! [`ShardManager`]: the API the broker uses. It owns the catalogue, the journal and one
//! `Arc<Log>` per live shard, and recovers all three from a data directory.
//!
//! Layout under the data directory:
//! - `meta/journal`, `meta/snapshot`: the metadata journal and its compaction (see `journal`);
//! - `streams/<uid>/<shardId-NNNNNNNNNNNN>/`: one shard log each, where `<uid>` is the
//!   stream's 20-digit creation number, unique per creation, so a name can be reused while
//!   the old stream's logs are still being removed.
//!
//! Ordering of every change, which is what makes a crash harmless:
//! 1. create and sync the directories of new shard logs;
//! 2. seal the parents' logs (this fixes their ending sequences);
//! 3. append the event to the journal and sync it (the commit point);
//! 4. apply it to the catalogue and the routing tables.
//!
//! A crash before 3 leaves new, empty directories the journal never names (removed at
//! start-up; one holding records means the journal was damaged, and goes to `lost+found/`)
//! and sealed parents the journal says are open (unsealed at start-up): the stream is
//! wholly before the change. A crash after 3 replays it: wholly after. Deletions go the
//! other way round: journal first, then remove, so a crash leaves only an unnamed directory
//! that start-up removes, never a named shard without its log.
//!
//! Concurrency: one `RwLock`. Puts route under the read lock and append to the returned
//! `Arc<Log>` after releasing it. A split, merge or resize holds the write lock from seal to
//! apply, so once a parent's ending sequence is fixed no record can land in it: an append
//! racing the seal fails with [`sluice_storage::Error::Sealed`] (wrapped in
//! [`Error::Storage`]), and the caller routes again, which waits for the write lock and finds
//! the children.
//!
//! Time: every call takes `now`. Status delays (CREATING, UPDATING, DELETING) are computed
//! from it, and [`ShardManager::tick`] does the deferred work (purging deleted streams,
//! expiring closed shards); there is no background thread.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use sluice_storage::fs::FileSystem;
use sluice_storage::{
    Log, LogConfig, RecoveryStats, SegmentCache, SyncScheduler, SyncfsPolicy, TimestampMs,
};

use crate::catalogue::{Catalogue, Event};
use crate::error::{Error, Result};
use crate::hash_range::HashKey;
use crate::journal::{self, Journal};
use crate::lineage::{
    Reshard, ReshardKind, ReshardPlan, RouteTable, ShardId, ShardInfo, ShardState,
};
use crate::stream::{
    CreateStream, StreamDescription, StreamMeta, StreamPage, StreamStatus, StreamSummary,
    TAG_KEYS_PER_REMOVE_MAX, TAGS_PER_ADD_MAX, TAGS_PER_STREAM_MAX, TagPage,
    validate_max_record_size_kib, validate_retention_hours, validate_stream_name, validate_tag,
};

/// Settings of the shard manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Region in stream ARNs. Default `us-east-1`.
    pub region: String,
    /// Account id in ARNs and messages. Default `000000000000`.
    pub account: String,
    /// How long CREATING, UPDATING and DELETING last, in ms. Default 0 (immediate).
    pub status_delay_ms: u64,
    /// Open shards allowed across all streams (the account quota). Default 10,000.
    pub open_shards_max: u32,
    /// Open shards allowed in one stream (Kinesis: 10,000). Default 10,000.
    pub shards_per_stream_max: u32,
    /// Streams allowed in CREATING at once (Kinesis: 5). Default 5.
    pub streams_creating_max: u32,
    /// UpdateShardCount calls per stream per rolling 24 h (Kinesis: 10). Default 10.
    pub shard_count_updates_per_day_max: u32,
    /// Compact the journal into a snapshot once it is this long. Default 1 MiB.
    pub journal_compact_bytes: u64,
    /// Shard logs that may run their own `fdatasync` at once; past that, waiting logs share
    /// one `syncfs` of the data directory's file system (see
    /// [`sluice_storage::SyncScheduler`]). 0 = always one `fdatasync` per log. Default 4.
    pub sync_coalesce_after: usize,
    /// Whether that shared sync may be a `syncfs`: by default only on file systems known to
    /// flush data with it (ext4, xfs, btrfs). Default [`SyncfsPolicy::Auto`].
    pub syncfs: SyncfsPolicy,
    /// Template for every shard log; `record_bytes_max` is set per stream from its
    /// `MaxRecordSizeInKiB`.
    pub log: LogConfig,
}

/// The shard catalogue of one data directory. `Send + Sync`; share it as `Arc`.
#[derive(Debug)]
pub struct ShardManager {
    fs: Arc<dyn FileSystem>,
    streams_dir: PathBuf,
    config: ManagerConfig,
    cache: Arc<SegmentCache>,
    syncer: Arc<SyncScheduler>,
    inner: RwLock<Inner>,
}

/// What a put is routed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKey<'a> {
    /// A partition key's bytes; its MD5 picks the shard.
    PartitionKey(&'a [u8]),
    /// An explicit hash key.
    ExplicitHashKey(HashKey),
}

/// Where a put goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The stream's creation number.
    pub stream_uid: u64,
    /// The open shard owning the key.
    pub shard: ShardId,
    /// The key that was routed.
    pub hash_key: HashKey,
    /// The shard's log. An append may fail with `Sealed` if a reshard won the race: route
    /// again.
    pub log: Arc<Log>,
}

/// A shard with its log, for reads.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    /// The stream's creation number.
    pub stream_uid: u64,
    /// The shard's metadata.
    pub info: ShardInfo,
    /// Shards made from this one (for `ChildShards` at the end of a closed shard).
    pub children: Vec<ShardId>,
    /// The log; `None` once the shard has expired.
    pub log: Option<Arc<Log>>,
}

/// What UpdateShardCount answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateShardCountOutput {
    /// Open shards before the call.
    pub current: u32,
    /// Open shards after it.
    pub target: u32,
}

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

#[derive(Debug)]
struct Inner {
    catalogue: Catalogue,
    journal: Journal,
    runtime: HashMap<u64, StreamLogs>,
    poisoned: Option<String>,
}

/// The live logs of one stream.
#[derive(Debug, Default)]
struct StreamLogs {
    routes: RouteTable,
    /// Parallel to `routes.ids()`.
    route_logs: Vec<Arc<Log>>,
    /// Every shard not expired.
    logs: BTreeMap<ShardId, Arc<Log>>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            region: "us-east-1".into(),
            account: "000000000000".into(),
            status_delay_ms: 0,
            open_shards_max: 10_000,
            shards_per_stream_max: 10_000,
            streams_creating_max: 5,
            shard_count_updates_per_day_max: 10,
            journal_compact_bytes: 1 << 20,
            sync_coalesce_after: 4,
            syncfs: SyncfsPolicy::Auto,
            log: LogConfig::default(),
        }
    }
}

impl ManagerConfig {
    /// `arn:aws:kinesis:{region}:{account}:stream/{name}`.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.region, self.account
        )
    }

    /// The stream name in an ARN of this region and account; `None` for any other text.
    pub fn stream_name_from_arn<'a>(&self, arn: &'a str) -> Option<&'a str> {
        let prefix = format!("arn:aws:kinesis:{}:{}:stream/", self.region, self.account);
        arn.strip_prefix(prefix.as_str())
    }
}

impl ShardManager {
    /// Opens the catalogue in `data_dir` (creating it if empty): replays the journal, opens
    /// every live shard log, rolls back reshards that never reached the journal (unsealing
    /// their parents, removing their children's directories), removes directories no live
    /// shard names, and purges streams whose deletion completed before `now`.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        data_dir: &Path,
        mut config: ManagerConfig,
        cache: Arc<SegmentCache>,
        now: TimestampMs,
    ) -> Result<ShardManager> {
        config.log.validate()?;
        // Bytes a shard log drops as damaged are copied here, beside set-aside shards.
        if config.log.set_aside_dir.is_none() {
            config.log.set_aside_dir = Some(data_dir.join(LOST_FOUND_DIR));
        }
        let recovered = journal::recover(&fs, &data_dir.join("meta"))?;
        if recovered.truncated_bytes > 0 || recovered.replayed > 0 {
            tracing::info!(
                replayed = recovered.replayed,
                truncated_bytes = recovered.truncated_bytes,
                "metadata journal recovered"
            );
        }
        let journal_cut = recovered.truncated_at;
        let streams_dir = data_dir.join("streams");
        fs.create_dir_all(&streams_dir)
            .map_err(|e| Error::io(&streams_dir, e))?;
        let syncer =
            SyncScheduler::for_data_dir(&*fs, data_dir, config.sync_coalesce_after, config.syncfs);
        let manager = ShardManager {
            fs,
            streams_dir,
            syncer,
            config,
            cache,
            inner: RwLock::new(Inner {
                catalogue: recovered.catalogue,
                journal: recovered.journal,
                runtime: HashMap::new(),
                poisoned: None,
            }),
        };
        {
            let mut inner = manager.write();
            manager.remove_orphans(&inner.catalogue, journal_cut.as_ref())?;
            let uids: Vec<u64> = inner.catalogue.streams().map(|s| s.uid).collect();
            for uid in uids {
                let logs = manager.open_stream_logs(&inner.catalogue, uid)?;
                inner.runtime.insert(uid, logs);
            }
            log_recovery_summary(&inner);
        }
        manager.tick(now)?;
        Ok(manager)
    }

    /// Whether this data directory's shared syncs may be one `syncfs` (see
    /// [`ManagerConfig::syncfs`]).
    pub fn sync_uses_syncfs(&self) -> bool {
        self.syncer.uses_syncfs()
    }

    /// Every live (not expired) shard log, with its stream's name and retention hours, in
    /// one pass under the read lock: what the broker's timers (retention, periodic sync)
    /// walk.
    pub fn live_logs(&self) -> Vec<(String, u32, Arc<Log>)> {
        let inner = self.read();
        let mut out = Vec::new();
        for (uid, rt) in &inner.runtime {
            if let Some(s) = inner.catalogue.by_uid(*uid) {
                out.extend(
                    rt.logs
                        .values()
                        .map(|log| (s.name.clone(), s.retention_hours, log.clone())),
                );
            }
        }
        out
    }

    /// What the shared sync scheduler of this data directory has done: how many group
    /// commits asked for a sync, and how many `fdatasync` and `syncfs` calls answered them.
    pub fn sync_stats(&self) -> sluice_storage::SyncStats {
        self.syncer.stats()
    }

    /// The configuration the manager was opened with.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// CreateStream. With no status delay the stream is ACTIVE at once.
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
        let mut inner = self.write_ok()?;
        if let Some(old) = inner.catalogue.by_name(&req.name) {
            match old.status(now) {
                None => {
                    let uid = old.uid;
                    self.purge(&mut inner, uid)?;
                }
                Some(status) => return Err(self.in_use(status, &self.exists_message(&req.name))),
            }
        }
        self.check_create_limits(&inner.catalogue, req, now)?;
        self.create_committed(&mut inner, req, now)
    }

    /// DeleteStream: DELETING now, gone after the status delay (at once with no delay).
    pub fn delete_stream(&self, name: &str, now: TimestampMs) -> Result<()> {
        let mut inner = self.write_ok()?;
        let stream = self.stream(&inner.catalogue, name, now)?;
        let status = stream.status(now).unwrap_or(StreamStatus::Deleting);
        if status == StreamStatus::Deleting {
            return Err(self.in_use(status, &self.not_active_message(name, status)));
        }
        let uid = stream.uid;
        let gone_at = TimestampMs(now.0.saturating_add(self.config.status_delay_ms));
        self.commit(
            &mut inner,
            Event::StreamDeleting {
                uid,
                at: now,
                gone_at,
            },
        )?;
        if self.config.status_delay_ms == 0 {
            self.purge(&mut inner, uid)?;
        }
        Ok(())
    }

    /// ListStreams: names after `exclusive_start` in lexicographic order, at most `limit`
    /// (1 ..= 10,000).
    pub fn list_streams(
        &self,
        exclusive_start: Option<&str>,
        limit: usize,
        now: TimestampMs,
    ) -> Result<StreamPage> {
        if !(1..=10_000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "Limit {limit} is outside 1 ..= 10000."
            )));
        }
        let inner = self.read();
        let mut live = inner
            .catalogue
            .names_after(exclusive_start)
            .filter_map(|s| s.status(now).map(|st| (s, st)));
        let streams = live
            .by_ref()
            .take(limit)
            .map(|(s, status)| StreamSummary {
                name: s.name.clone(),
                arn: self.config.stream_arn(&s.name),
                status,
                created: s.created,
            })
            .collect();
        let has_more = live.next().is_some();
        Ok(StreamPage { streams, has_more })
    }

    /// DescribeStream / DescribeStreamSummary: every shard, expired ones included.
    pub fn describe_stream(&self, name: &str, now: TimestampMs) -> Result<StreamDescription> {
        let inner = self.read();
        let s = self.stream(&inner.catalogue, name, now)?;
        let status = s.status(now).unwrap_or(StreamStatus::Deleting);
        let creating = status == StreamStatus::Creating;
        Ok(StreamDescription {
            name: s.name.clone(),
            arn: self.config.stream_arn(&s.name),
            uid: s.uid,
            status,
            retention_hours: s.retention_hours,
            max_record_size_kib: s.max_record_size_kib,
            created: s.created,
            open_shard_count: if creating { 0 } else { s.lineage.open_count() },
            shards: if creating {
                Vec::new()
            } else {
                s.lineage.all().to_vec()
            },
        })
    }

    /// ListShards: shards not expired, in id order (ShardFilter is the caller's job).
    pub fn list_shards(&self, name: &str, now: TimestampMs) -> Result<Vec<ShardInfo>> {
        let inner = self.read();
        let s = self.readable_stream(&inner.catalogue, name, now)?;
        Ok(s.lineage
            .all()
            .iter()
            .filter(|sh| sh.state() != ShardState::Expired)
            .cloned()
            .collect())
    }

    /// One shard and its log, for GetShardIterator and GetRecords.
    pub fn shard(&self, name: &str, shard: ShardId, now: TimestampMs) -> Result<ShardHandle> {
        let inner = self.read();
        let s = self.readable_stream(&inner.catalogue, name, now)?;
        let info = s
            .lineage
            .get(shard)
            .ok_or_else(|| self.shard_not_found(name, shard))?
            .clone();
        let log = inner
            .runtime
            .get(&s.uid)
            .and_then(|r| r.logs.get(&shard))
            .cloned();
        Ok(ShardHandle {
            stream_uid: s.uid,
            children: s.lineage.children(shard),
            info,
            log,
        })
    }

    /// Routes a put to the open shard owning its key (a binary search, under the read lock).
    pub fn route(&self, name: &str, key: RouteKey<'_>, now: TimestampMs) -> Result<Route> {
        self.route_in(&self.read(), name, key, now)
    }

    /// [`ShardManager::route`] for a caller that must not wait (an async runtime thread):
    /// `None` while a stream or shard operation holds the catalogue (a reshard syncs
    /// files under it).
    pub fn try_route(
        &self,
        name: &str,
        key: RouteKey<'_>,
        now: TimestampMs,
    ) -> Option<Result<Route>> {
        let inner = match self.inner.try_read() {
            Ok(inner) => inner,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(self.route_in(&inner, name, key, now))
    }

    fn route_in(
        &self,
        inner: &Inner,
        name: &str,
        key: RouteKey<'_>,
        now: TimestampMs,
    ) -> Result<Route> {
        if let Some(reason) = &inner.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        let s = self.stream(&inner.catalogue, name, now)?;
        if !matches!(
            s.status(now),
            Some(StreamStatus::Active | StreamStatus::Updating)
        ) {
            return Err(Error::ResourceNotFound(self.not_found_message(name)));
        }
        let hash_key = match key {
            RouteKey::PartitionKey(pk) => HashKey::of_partition_key(pk),
            RouteKey::ExplicitHashKey(k) => k,
        };
        let runtime = inner.runtime.get(&s.uid);
        let found = runtime.and_then(|r| {
            let (slot, shard) = r.routes.lookup(hash_key)?;
            Some((shard, Arc::clone(r.route_logs.get(slot)?)))
        });
        let (shard, log) = found
            .ok_or_else(|| Error::corrupt(&self.streams_dir, 0, "no open shard owns a hash key"))?;
        Ok(Route {
            stream_uid: s.uid,
            shard,
            hash_key,
            log,
        })
    }

    /// SplitShard at `new_starting_hash_key` (`start + 1 < key < end`); the lower child gets
    /// the lower id and the lower half.
    pub fn split_shard(
        &self,
        name: &str,
        shard: ShardId,
        new_starting_hash_key: HashKey,
        now: TimestampMs,
    ) -> Result<()> {
        let mut inner = self.write_ok()?;
        let s = self.active_stream(&inner.catalogue, name, now)?;
        let parent = self.open_shard(s, shard)?;
        if !parent.range().split_allowed(new_starting_hash_key) {
            return Err(Error::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} used in SplitShard() on shard {shard} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                self.config.account,
                parent.range().start(),
                parent.range().end()
            )));
        }
        self.check_shard_quota(&inner.catalogue, s, 1)?;
        let plan = s.lineage.plan_split(parent, new_starting_hash_key);
        let plan = plan.ok_or_else(|| {
            Error::InvalidArgument(format!("cannot split {shard} at {new_starting_hash_key}"))
        })?;
        let uid = s.uid;
        self.reshard(&mut inner, uid, plan, ReshardKind::Split, now)
    }

    /// MergeShards: `shard` must be the lower of the two and `adjacent` the open shard
    /// directly above it.
    pub fn merge_shards(
        &self,
        name: &str,
        shard: ShardId,
        adjacent: ShardId,
        now: TimestampMs,
    ) -> Result<()> {
        let mut inner = self.write_ok()?;
        let s = self.active_stream(&inner.catalogue, name, now)?;
        let lower = self.open_shard(s, shard)?;
        let upper = self.open_shard(s, adjacent)?;
        let plan = s.lineage.plan_merge(lower, upper).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "Shards {shard} and {adjacent} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                self.config.account
            ))
        })?;
        let uid = s.uid;
        self.reshard(&mut inner, uid, plan, ReshardKind::Merge, now)
    }

    /// UpdateShardCount with UNIFORM_SCALING: at most double, at least half the open shards.
    pub fn update_shard_count(
        &self,
        name: &str,
        target: u32,
        now: TimestampMs,
    ) -> Result<UpdateShardCountOutput> {
        let mut inner = self.write_ok()?;
        let s = self.active_stream(&inner.catalogue, name, now)?;
        let current = u32::try_from(s.lineage.open_count()).unwrap_or(u32::MAX);
        self.check_shard_count_update(&inner.catalogue, s, current, target, now)?;
        let plan = s.lineage.plan_uniform(target);
        let uid = s.uid;
        if !plan.creates.is_empty() {
            self.reshard(
                &mut inner,
                uid,
                plan,
                ReshardKind::UniformScaling { target },
                now,
            )?;
        }
        Ok(UpdateShardCountOutput { current, target })
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
        let mut inner = self.write_ok()?;
        let s = self.taggable_stream(&inner.catalogue, name, now)?;
        let kept = s.tags.keys().filter(|k| !tags.contains_key(*k)).count();
        if tags.is_empty() {
            return Err(Error::InvalidArgument(
                "Tags must hold at least one tag.".into(),
            ));
        }
        self.validate_tags_to_add(name, tags, kept)?;
        let uid = s.uid;
        self.commit(
            &mut inner,
            Event::TagsAdded {
                uid,
                tags: tags.clone(),
            },
        )
    }

    /// RemoveTagsFromStream: 1 ..= 50 keys; unknown keys are ignored.
    pub fn remove_tags(&self, name: &str, keys: &[String], now: TimestampMs) -> Result<()> {
        if !(1..=TAG_KEYS_PER_REMOVE_MAX).contains(&keys.len()) {
            return Err(Error::InvalidArgument(format!(
                "TagKeys must hold 1 to {TAG_KEYS_PER_REMOVE_MAX} keys; it holds {}.",
                keys.len()
            )));
        }
        let mut inner = self.write_ok()?;
        let s = self.taggable_stream(&inner.catalogue, name, now)?;
        let uid = s.uid;
        self.commit(
            &mut inner,
            Event::TagsRemoved {
                uid,
                keys: keys.to_vec(),
            },
        )
    }

    /// ListTagsForStream: keys after `exclusive_start`, sorted, at most `limit` (1 ..= 50).
    pub fn list_tags(
        &self,
        name: &str,
        exclusive_start: Option<&str>,
        limit: usize,
        now: TimestampMs,
    ) -> Result<TagPage> {
        if !(1..=TAGS_PER_STREAM_MAX).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "Limit {limit} is outside 1 ..= 50."
            )));
        }
        let inner = self.read();
        let s = self.stream(&inner.catalogue, name, now)?;
        let mut after = s
            .tags
            .iter()
            .filter(|(k, _)| exclusive_start.is_none_or(|start| k.as_str() > start));
        let tags = after
            .by_ref()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let has_more = after.next().is_some();
        Ok(TagPage { tags, has_more })
    }

    /// Does the deferred work due at `now`: purges streams whose deletion completed, and
    /// expires closed shards whose records are all past retention (journaling the change,
    /// then removing the log; the shard stays describable).
    pub fn tick(&self, now: TimestampMs) -> Result<TickReport> {
        let mut inner = self.write_ok()?;
        let mut report = TickReport::default();
        let gone: Vec<(u64, String)> = inner
            .catalogue
            .streams()
            .filter(|s| s.status(now).is_none())
            .map(|s| (s.uid, s.name.clone()))
            .collect();
        for (uid, name) in gone {
            self.purge(&mut inner, uid)?;
            report.streams_purged.push(name);
            report.streams_purged_uids.push(uid);
        }
        for (uid, name, shard) in self.expired_shards(&inner, now) {
            self.commit(
                &mut inner,
                Event::ShardExpired {
                    uid,
                    shard,
                    at: now,
                },
            )?;
            let log = inner
                .runtime
                .get_mut(&uid)
                .and_then(|r| r.logs.remove(&shard));
            let dir = log.map_or_else(|| self.shard_dir(uid, shard), |l| l.dir().to_path_buf());
            sluice_storage::remove_log(self.fs.as_ref(), &dir)?;
            tracing::info!(stream = %name, shard = %shard, "closed shard expired; log removed");
            report.shards_expired.push((name, shard));
            report.shards_expired_by_uid.push((uid, shard));
        }
        Ok(report)
    }

    /// Writes a snapshot and empties the journal now (it also happens on its own once the
    /// journal passes `journal_compact_bytes`).
    pub fn compact(&self) -> Result<()> {
        let mut inner = self.write_ok()?;
        let inner = &mut *inner;
        let result = inner.journal.compact(&inner.catalogue);
        if let Err(e) = &result {
            inner.poisoned = Some(e.to_string());
        }
        result
    }

    // ---- locking and lookups ----

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic under the lock leaves the catalogue as the last completed change left it.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The write lock, refused while poisoned.
    fn write_ok(&self) -> Result<RwLockWriteGuard<'_, Inner>> {
        let inner = self.write();
        match &inner.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(inner),
        }
    }

    /// The stream named `name` unless its deletion has completed.
    fn stream<'a>(
        &self,
        catalogue: &'a Catalogue,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        catalogue
            .by_name(name)
            .filter(|s| s.status(now).is_some())
            .ok_or_else(|| Error::ResourceNotFound(self.not_found_message(name)))
    }

    /// A stream whose shards can be listed and read: not CREATING (it has no shards yet).
    fn readable_stream<'a>(
        &self,
        catalogue: &'a Catalogue,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        let s = self.stream(catalogue, name, now)?;
        if s.status(now) == Some(StreamStatus::Creating) {
            return Err(Error::ResourceNotFound(self.not_found_message(name)));
        }
        Ok(s)
    }

    /// A stream in ACTIVE, as reshards and retention changes need.
    fn active_stream<'a>(
        &self,
        catalogue: &'a Catalogue,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        let s = self.stream(catalogue, name, now)?;
        match s.status(now) {
            Some(StreamStatus::Active) => Ok(s),
            other => {
                let status = other.unwrap_or(StreamStatus::Deleting);
                Err(self.in_use(status, &self.not_active_message(name, status)))
            }
        }
    }

    /// A stream whose tags may change: ACTIVE or UPDATING.
    fn taggable_stream<'a>(
        &self,
        catalogue: &'a Catalogue,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        let s = self.stream(catalogue, name, now)?;
        match s.status(now) {
            Some(StreamStatus::Active | StreamStatus::Updating) => Ok(s),
            other => {
                let status = other.unwrap_or(StreamStatus::Deleting);
                Err(self.in_use(status, &self.not_active_message(name, status)))
            }
        }
    }

    fn open_shard<'a>(&self, s: &'a StreamMeta, shard: ShardId) -> Result<&'a ShardInfo> {
        let info = s
            .lineage
            .get(shard)
            .ok_or_else(|| self.shard_not_found(&s.name, shard))?;
        if info.state() != ShardState::Open {
            return Err(Error::InvalidArgument(format!(
                "Shard {shard} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
                s.name, self.config.account
            )));
        }
        Ok(info)
    }

    // ---- validation ----

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
        catalogue: &Catalogue,
        req: &CreateStream,
        now: TimestampMs,
    ) -> Result<()> {
        if req.shard_count > self.config.shards_per_stream_max {
            return Err(Error::LimitExceeded(format!(
                "ShardCount {} for stream {} exceeds the limit of {} shards per stream.",
                req.shard_count, req.name, self.config.shards_per_stream_max
            )));
        }
        let creating = catalogue
            .streams()
            .filter(|s| s.status(now) == Some(StreamStatus::Creating))
            .count();
        if creating >= self.config.streams_creating_max as usize {
            return Err(Error::LimitExceeded(format!(
                "Account {} already has {creating} streams in CREATING; at most {} may be created at once.",
                self.config.account, self.config.streams_creating_max
            )));
        }
        self.check_quota(catalogue, u64::from(req.shard_count))
    }

    fn check_shard_quota(&self, catalogue: &Catalogue, s: &StreamMeta, more: u64) -> Result<()> {
        let after = s.lineage.open_count() as u64 + more;
        if after > u64::from(self.config.shards_per_stream_max) {
            return Err(Error::LimitExceeded(format!(
                "Stream {} would have {after} open shards; the limit is {} per stream.",
                s.name, self.config.shards_per_stream_max
            )));
        }
        self.check_quota(catalogue, more)
    }

    /// The account quota of open shards.
    fn check_quota(&self, catalogue: &Catalogue, more: u64) -> Result<()> {
        let current: u64 = catalogue
            .streams()
            .filter(|s| s.deleting.is_none())
            .map(|s| s.lineage.open_count() as u64)
            .sum();
        let limit = u64::from(self.config.open_shards_max);
        if current + more > limit {
            return Err(Error::LimitExceeded(format!(
                "This request would exceed the shard limit for the account {} in {}. Current shard count for the account: {current}. Limit: {limit}. Number of additional shards that would have resulted from this request: {more}.",
                self.config.account, self.config.region
            )));
        }
        Ok(())
    }

    fn check_shard_count_update(
        &self,
        catalogue: &Catalogue,
        s: &StreamMeta,
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
        self.check_shard_quota(catalogue, s, u64::from(target.saturating_sub(current)))
    }

    fn change_retention(
        &self,
        name: &str,
        hours: u32,
        increase: bool,
        now: TimestampMs,
    ) -> Result<()> {
        validate_retention_hours(hours)?;
        let mut inner = self.write_ok()?;
        let s = self.active_stream(&inner.catalogue, name, now)?;
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
        let uid = s.uid;
        self.commit(&mut inner, Event::RetentionChanged { uid, hours })
    }

    // ---- changes ----

    /// Appends `event` to the journal (poisoning on failure), applies it, and compacts the
    /// journal when it has grown.
    fn commit(&self, inner: &mut Inner, event: Event) -> Result<()> {
        if let Err(e) = inner.journal.append(&event) {
            tracing::error!(error = %e, "metadata journal append failed; manager poisoned");
            inner.poisoned = Some(e.to_string());
            return Err(e);
        }
        if let Err(reason) = inner.catalogue.apply(&event) {
            // The event was built from this catalogue after every check: a bug, not bad input.
            inner.poisoned = Some(reason.clone());
            return Err(Error::corrupt(
                &self.streams_dir,
                0,
                format!("journaled event does not apply: {reason}"),
            ));
        }
        if inner.journal.len_bytes() >= self.config.journal_compact_bytes {
            let inner = &mut *inner;
            if let Err(e) = inner.journal.compact(&inner.catalogue) {
                // The change itself is durable; only the compaction's outcome is unknown.
                tracing::error!(error = %e, "metadata journal compaction failed; manager poisoned");
                inner.poisoned = Some(e.to_string());
            }
        }
        Ok(())
    }

    fn create_committed(
        &self,
        inner: &mut Inner,
        req: &CreateStream,
        now: TimestampMs,
    ) -> Result<()> {
        let uid = inner.catalogue.uid_next();
        let stream_dir = self.stream_dir(uid);
        let config = self.log_config(req.max_record_size_kib);
        let mut logs = BTreeMap::new();
        let opened = (0..u64::from(req.shard_count)).try_for_each(|i| {
            let id = ShardId::from_index(i);
            logs.insert(id, self.open_log(uid, id, &config)?);
            Ok(())
        });
        let synced = opened.and_then(|()| self.sync_new_dirs(&stream_dir));
        if let Err(e) = synced {
            drop(logs);
            self.remove_dir_quietly(&stream_dir);
            return Err(e);
        }
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
        self.commit(inner, event)?;
        let mut runtime = StreamLogs {
            logs,
            ..StreamLogs::default()
        };
        if let Some(s) = inner.catalogue.by_uid(uid) {
            runtime.rebuild_routes(s);
        }
        inner.runtime.insert(uid, runtime);
        tracing::info!(stream = %req.name, uid, shards = req.shard_count, "stream created");
        Ok(())
    }

    /// Runs a planned split, merge or resize: new logs, seal parents, journal, apply.
    fn reshard(
        &self,
        inner: &mut Inner,
        uid: u64,
        plan: ReshardPlan,
        kind: ReshardKind,
        now: TimestampMs,
    ) -> Result<()> {
        let Some(s) = inner.catalogue.by_uid(uid) else {
            return Err(Error::corrupt(
                &self.streams_dir,
                0,
                format!("stream uid {uid} vanished"),
            ));
        };
        let first_new = s.lineage.next_id();
        let config = self.log_config(s.max_record_size_kib);
        let new_logs = self.create_shard_logs(uid, &plan, &config)?;
        let closes = match self.seal_parents(inner, uid, &plan, &new_logs, first_new) {
            Ok(closes) => closes,
            Err(e) => {
                self.remove_shard_dirs(uid, &new_logs);
                return Err(e);
            }
        };
        let ready_at = TimestampMs(now.0.saturating_add(self.config.status_delay_ms));
        let change = Reshard {
            kind,
            at: now,
            creates: plan.creates.clone(),
            closes,
        };
        self.commit(
            inner,
            Event::Resharded {
                uid,
                ready_at,
                change,
            },
        )?;
        if let (Some(rt), Some(s)) = (inner.runtime.get_mut(&uid), inner.catalogue.by_uid(uid)) {
            rt.logs.extend(new_logs);
            rt.rebuild_routes(s);
        }
        tracing::info!(uid, kind = ?kind, created = plan.creates.len(), closed = plan.closes.len(), "resharded");
        Ok(())
    }

    /// Creates (and makes durable) the logs of a plan's new shards.
    fn create_shard_logs(
        &self,
        uid: u64,
        plan: &ReshardPlan,
        config: &LogConfig,
    ) -> Result<BTreeMap<ShardId, Arc<Log>>> {
        let mut logs = BTreeMap::new();
        let created = plan.creates.iter().try_for_each(|new| {
            logs.insert(new.id, self.open_log(uid, new.id, config)?);
            Ok(())
        });
        match created.and_then(|()| self.sync_new_dirs(&self.stream_dir(uid))) {
            Ok(()) => Ok(logs),
            Err(e) => {
                self.remove_shard_dirs(uid, &logs);
                Err(e)
            }
        }
    }

    /// Seals every shard the plan closes and returns `(shard, end)` pairs in plan order. On
    /// failure the parents sealed so far are unsealed again.
    fn seal_parents(
        &self,
        inner: &Inner,
        uid: u64,
        plan: &ReshardPlan,
        new_logs: &BTreeMap<ShardId, Arc<Log>>,
        first_new: ShardId,
    ) -> Result<Vec<(ShardId, sluice_storage::SeqNo)>> {
        let mut closes = Vec::with_capacity(plan.closes.len());
        let mut sealed: Vec<Arc<Log>> = Vec::new();
        for &id in &plan.closes {
            let log = if id >= first_new {
                new_logs.get(&id)
            } else {
                inner.runtime.get(&uid).and_then(|r| r.logs.get(&id))
            };
            let Some(log) = log else {
                return Err(Error::corrupt(
                    self.shard_dir(uid, id),
                    0,
                    "no open log for a shard being closed",
                ));
            };
            if let Err(e) = log.seal() {
                for l in &sealed {
                    // Best effort: if this fails too, start-up unseals it (the journal says open).
                    let _ = l.unseal();
                }
                return Err(e.into());
            }
            sealed.push(Arc::clone(log));
            closes.push((id, log.next_seq()));
        }
        Ok(closes)
    }

    /// Journals a deleted stream's purge, drops its logs and removes its directory.
    fn purge(&self, inner: &mut Inner, uid: u64) -> Result<()> {
        let name = inner
            .catalogue
            .by_uid(uid)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.commit(inner, Event::StreamPurged { uid })?;
        inner.runtime.remove(&uid);
        let dir = self.stream_dir(uid);
        if self.fs.exists(&dir) {
            self.fs
                .remove_dir_all(&dir)
                .map_err(|e| Error::io(&dir, e))?;
            self.fs
                .sync_dir(&self.streams_dir)
                .map_err(|e| Error::io(&self.streams_dir, e))?;
        }
        tracing::info!(stream = %name, uid, "deleted stream purged");
        Ok(())
    }

    /// Closed shards whose newest record (or, if later, whose close) is past retention.
    fn expired_shards(&self, inner: &Inner, now: TimestampMs) -> Vec<(u64, String, ShardId)> {
        let mut out = Vec::new();
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
                let last = logs
                    .and_then(|r| r.logs.get(&sh.id()))
                    .and_then(|l| l.last_timestamp())
                    .unwrap_or(close.at);
                if last.max(close.at).0.saturating_add(s.retention_ms()) <= now.0 {
                    out.push((s.uid, s.name.clone(), sh.id()));
                }
            }
        }
        out
    }

    // ---- start-up ----

    /// Opens the logs of every live shard of a stream, rolling back unjournaled seals.
    fn open_stream_logs(&self, catalogue: &Catalogue, uid: u64) -> Result<StreamLogs> {
        let mut rt = StreamLogs::default();
        let Some(s) = catalogue.by_uid(uid) else {
            return Ok(rt);
        };
        let config = self.log_config(s.max_record_size_kib);
        for sh in s
            .lineage
            .all()
            .iter()
            .filter(|sh| sh.state() != ShardState::Expired)
        {
            let dir = self.shard_dir(uid, sh.id());
            if !self.fs.exists(&dir) {
                return Err(Error::corrupt(
                    &dir,
                    0,
                    format!("the log of {} in stream {} is missing", sh.id(), s.name),
                ));
            }
            let log = Log::open_with_syncer(
                Arc::clone(&self.fs),
                &dir,
                config.clone(),
                Arc::clone(&self.cache),
                Arc::clone(&self.syncer),
            )?;
            match sh.closed() {
                None if log.is_sealed() => {
                    log.unseal()?;
                    tracing::info!(stream = %s.name, shard = %sh.id(), "unsealed a parent whose reshard never reached the journal");
                }
                Some(close) => {
                    log.seal()?;
                    if log.next_seq() != close.end {
                        return Err(Error::corrupt(
                            &dir,
                            0,
                            format!(
                                "sealed log ends before {} but the journal says {}",
                                log.next_seq(),
                                close.end
                            ),
                        ));
                    }
                }
                None => {}
            }
            rt.logs.insert(sh.id(), Arc::new(log));
        }
        rt.rebuild_routes(s);
        Ok(rt)
    }

    /// Removes every directory under `streams/` that no live shard names: children of
    /// reshards that never reached the journal, and expired or purged logs whose removal a
    /// crash interrupted.
    ///
    /// A directory the catalogue has never heard of (a stream uid at or past its next uid, a
    /// shard id at or past its stream's next id) is normally an empty child of a reshard
    /// that never reached the journal. If it holds records, the journal lost events it had
    /// synced, since records reach a shard only after the event creating it is durable:
    /// its tail was damaged, not torn. Such a directory is never deleted: it is moved to
    /// `lost+found/` and reported at error level with the bytes it holds and where the
    /// journal was cut.
    fn remove_orphans(
        &self,
        catalogue: &Catalogue,
        journal_cut: Option<&(PathBuf, u64)>,
    ) -> Result<()> {
        let streams_dir = &self.streams_dir;
        let mut removed = 0;
        for entry in self
            .fs
            .list_dir(streams_dir)
            .map_err(|e| Error::io(streams_dir, e))?
        {
            let path = streams_dir.join(&entry);
            let uid = parse_stream_dir_name(&entry);
            let Some(stream) = uid.and_then(|u| catalogue.by_uid(u)) else {
                let unknown = uid.is_none_or(|u| u >= catalogue.uid_next());
                self.drop_orphan(&path, &entry, unknown, journal_cut)?;
                removed += 1;
                continue;
            };
            let mut removed_here = 0;
            for shard_entry in self.fs.list_dir(&path).map_err(|e| Error::io(&path, e))? {
                let live = stream.lineage.all().iter().any(|sh| {
                    sh.state() != ShardState::Expired && sh.id().to_string() == shard_entry
                });
                if !live {
                    let unknown = ShardId::parse(&shard_entry)
                        .is_none_or(|id| id >= stream.lineage.next_id());
                    self.drop_orphan(
                        &path.join(&shard_entry),
                        &format!("{entry}-{shard_entry}"),
                        unknown,
                        journal_cut,
                    )?;
                    removed_here += 1;
                }
            }
            if removed_here > 0 {
                self.fs.sync_dir(&path).map_err(|e| Error::io(&path, e))?;
                removed += removed_here;
            }
        }
        if removed > 0 {
            self.fs
                .sync_dir(streams_dir)
                .map_err(|e| Error::io(streams_dir, e))?;
            tracing::info!(
                directories = removed,
                "removed or set aside directories no live shard names"
            );
        }
        Ok(())
    }

    /// Removes one orphan directory, or moves it to `lost+found/<name>` when the catalogue
    /// never knew it (`unknown`) and it holds records. The caller syncs `path`'s parent.
    fn drop_orphan(
        &self,
        path: &Path,
        name: &str,
        unknown: bool,
        journal_cut: Option<&(PathBuf, u64)>,
    ) -> Result<()> {
        let bytes = if unknown {
            self.record_bytes_under(path)?
        } else {
            0
        };
        if bytes == 0 {
            return self.fs.remove_dir_all(path).map_err(|e| Error::io(path, e));
        }
        let lost_found = self.streams_dir.with_file_name(LOST_FOUND_DIR);
        self.fs
            .create_dir_all(&lost_found)
            .map_err(|e| Error::io(&lost_found, e))?;
        let mut dest = lost_found.join(name);
        let mut n = 1;
        while self.fs.exists(&dest) {
            dest = lost_found.join(format!("{name}.{n}"));
            n += 1;
        }
        self.fs
            .rename(path, &dest)
            .map_err(|e| Error::io(path, e))?;
        self.fs
            .sync_dir(&lost_found)
            .map_err(|e| Error::io(&lost_found, e))?;
        let cause = match journal_cut {
            Some((journal, at)) => format!(
                "the metadata journal {} was cut at offset {at} and lost the events naming it",
                journal.display()
            ),
            None => "the metadata journal and snapshot do not name it".to_owned(),
        };
        tracing::error!(
            dir = %path.display(),
            moved_to = %dest.display(),
            record_bytes = bytes,
            "{} holds {bytes} bytes of records but {cause}: moved to {} and no longer served; \
             those records are lost to readers until restored by hand",
            path.display(),
            dest.display()
        );
        Ok(())
    }

    /// Bytes of records in the shard log at `path`, or in the shard logs directly under it.
    fn record_bytes_under(&self, path: &Path) -> Result<u64> {
        let mut total = Log::stored_record_bytes(self.fs.as_ref(), path)?;
        for entry in self.fs.list_dir(path).map_err(|e| Error::io(path, e))? {
            if ShardId::parse(&entry).is_some() {
                total += Log::stored_record_bytes(self.fs.as_ref(), &path.join(entry))?;
            }
        }
        Ok(total)
    }

    // ---- files ----

    fn stream_dir(&self, uid: u64) -> PathBuf {
        self.streams_dir.join(stream_dir_name(uid))
    }

    fn shard_dir(&self, uid: u64, shard: ShardId) -> PathBuf {
        self.stream_dir(uid).join(shard.to_string())
    }

    fn log_config(&self, max_record_size_kib: u32) -> LogConfig {
        let mut config = self.config.log.clone();
        config.record_bytes_max = max_record_size_kib as usize * 1024;
        config
    }

    fn open_log(&self, uid: u64, shard: ShardId, config: &LogConfig) -> Result<Arc<Log>> {
        let dir = self.shard_dir(uid, shard);
        let log = Log::open_with_syncer(
            Arc::clone(&self.fs),
            &dir,
            config.clone(),
            Arc::clone(&self.cache),
            Arc::clone(&self.syncer),
        )?;
        Ok(Arc::new(log))
    }

    /// Makes new shard directories durable: the stream directory and its parent.
    fn sync_new_dirs(&self, stream_dir: &Path) -> Result<()> {
        self.fs
            .sync_dir(stream_dir)
            .map_err(|e| Error::io(stream_dir, e))?;
        self.fs
            .sync_dir(&self.streams_dir)
            .map_err(|e| Error::io(&self.streams_dir, e))
    }

    /// Best-effort cleanup after a failed change; start-up removes whatever is left.
    fn remove_shard_dirs(&self, uid: u64, logs: &BTreeMap<ShardId, Arc<Log>>) {
        for id in logs.keys() {
            self.remove_dir_quietly(&self.shard_dir(uid, *id));
        }
    }

    fn remove_dir_quietly(&self, dir: &Path) {
        if self.fs.exists(dir) && self.fs.remove_dir_all(dir).is_err() {
            tracing::warn!(dir = %dir.display(), "could not remove the directory of a failed change; start-up will");
        }
    }

    // ---- messages ----

    fn in_use(&self, status: StreamStatus, message: &str) -> Error {
        Error::ResourceInUse {
            status,
            message: message.to_owned(),
        }
    }

    fn not_found_message(&self, name: &str) -> String {
        format!(
            "Stream {name} under account {} not found.",
            self.config.account
        )
    }

    fn exists_message(&self, name: &str) -> String {
        format!(
            "Stream {name} under account {} already exists.",
            self.config.account
        )
    }

    fn not_active_message(&self, name: &str, status: StreamStatus) -> String {
        format!(
            "Stream {name} under account {} not ACTIVE, instead in state {status}",
            self.config.account
        )
    }

    fn shard_not_found(&self, name: &str, shard: ShardId) -> Error {
        Error::ResourceNotFound(format!(
            "Could not find shard {shard} in stream {name} under account {}.",
            self.config.account
        ))
    }
}

impl StreamLogs {
    fn rebuild_routes(&mut self, s: &StreamMeta) {
        self.routes = s.lineage.route_table();
        self.route_logs = self
            .routes
            .ids()
            .iter()
            .filter_map(|id| self.logs.get(id).cloned())
            .collect();
        assert_eq!(
            self.route_logs.len(),
            self.routes.ids().len(),
            "every open shard has a log"
        );
    }
}

/// Logs what recovering the shard logs did, once for the whole data directory: at error
/// level when any log found damage.
fn log_recovery_summary(inner: &Inner) {
    let logs: Vec<&Arc<Log>> = inner
        .runtime
        .values()
        .flat_map(|r| r.logs.values())
        .collect();
    let mut total = RecoveryStats::default();
    let mut damaged = 0;
    for log in &logs {
        let s = log.recovery_stats();
        damaged += usize::from(s.found_damage());
        total.scanned_bytes += s.scanned_bytes;
        total.truncated_bytes += s.truncated_bytes;
        total.damaged_bytes += s.damaged_bytes;
        total.sequences_skipped += s.sequences_skipped;
        total.segments_repaired += s.segments_repaired;
    }
    if damaged > 0 {
        tracing::error!(
            shards = logs.len(),
            shards_damaged = damaged,
            damaged_bytes = total.damaged_bytes,
            sequences_skipped = total.sequences_skipped,
            segments_repaired = total.segments_repaired,
            truncated_bytes = total.truncated_bytes,
            "shard logs recovered with damage: see the errors above for each file; the damaged bytes are in lost+found"
        );
    } else {
        tracing::info!(
            shards = logs.len(),
            scanned_bytes = total.scanned_bytes,
            truncated_bytes = total.truncated_bytes,
            "shard logs recovered"
        );
    }
}

/// A stream's directory name: its uid as 20 zero-padded digits.
fn stream_dir_name(uid: u64) -> String {
    format!("{uid:020}")
}

/// The uid a stream directory's name gives, if it is one.
fn parse_stream_dir_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Where start-up sets aside shard directories holding records the catalogue does not name.
pub const LOST_FOUND_DIR: &str = "lost+found";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::CreateStream;
    use sluice_storage::{SegmentCache, SimFs};

    #[test]
    fn try_route_agrees_with_route_and_refuses_while_the_catalogue_is_held() {
        let now = TimestampMs(1_000);
        let m = ShardManager::open(
            SimFs::new().shared(),
            Path::new("/data"),
            ManagerConfig::default(),
            SegmentCache::new(8),
            now,
        )
        .unwrap();
        m.create_stream(&CreateStream::new("s", 4), now).unwrap();
        for i in 0..64u32 {
            let key = format!("key-{i}");
            let a = m
                .route("s", RouteKey::PartitionKey(key.as_bytes()), now)
                .unwrap();
            let b = m
                .try_route("s", RouteKey::PartitionKey(key.as_bytes()), now)
                .unwrap()
                .unwrap();
            assert_eq!((a.shard, a.hash_key), (b.shard, b.hash_key));
            assert!(Arc::ptr_eq(&a.log, &b.log));
        }
        assert!(matches!(
            m.try_route("nope", RouteKey::PartitionKey(b"k"), now),
            Some(Err(Error::ResourceNotFound(_)))
        ));
        let held = m.write();
        assert!(
            m.try_route("s", RouteKey::PartitionKey(b"k"), now)
                .is_none()
        );
        drop(held);
        assert!(
            m.try_route("s", RouteKey::PartitionKey(b"k"), now)
                .is_some()
        );
    }
}
