//! [`ShardManager`]: the API the broker uses. It owns the catalogue, the journal and one
//! lazily created log per live shard, and recovers all three from a data directory.
//!
//! Layout under the data directory:
//! - `meta/journal`, `meta/snapshot`: the metadata journal and its compaction (see `journal`);
//! - `streams/<uid>/<shardId-NNNNNNNNNNNN>/`: one shard log each, where `<uid>` is the
//!   stream's 20-digit creation number, unique per creation, so a name can be reused while
//!   the old stream's logs are still being removed. A shard's directory is created on its
//!   first use (`slot`); until then it has none, and an absent directory is an empty log.
//!
//! Ordering of every change, which is what makes a crash harmless:
//! 1. seal the parents' logs (this fixes their ending sequences);
//! 2. append the event to the journal and sync it (the commit point);
//! 3. apply it to the catalogue and the routing tables.
//!
//! New shards need no step of their own: they have no directory until their first append,
//! which happens after step 3. A crash before 2 leaves sealed parents the journal says are
//! open (unsealed at start-up): the stream is wholly before the change. A crash after 2
//! replays it: wholly after. Deletions go the other way round: journal first, then remove,
//! so a crash leaves only a directory no live shard names, which start-up removes (one
//! holding records the catalogue never knew means the journal was damaged, and goes to
//! `lost+found/`).
//!
//! Asynchronous administration: CreateStream and DeleteStream are one journal event each.
//! SplitShard, MergeShards and UpdateShardCount are checked and planned at the call, which
//! returns with the stream UPDATING; the work (sealing parents, then the commit) runs in
//! [`ShardManager::run_pending`], which the caller drives from a worker (the broker runs
//! one thread for it), as do purging deleted streams and removing their files. A reshard
//! accepted but not committed is not durable: a crash leaves the stream as it was.
//!
//! Concurrency: three locks, none held across more than one journal sync, and routing and
//! reads never wait for administration.
//! - `admin` (a mutex around the journal) serialises changes: the checks before a change,
//!   its journal append and sync, and its apply happen under it, in one order.
//! - `inner` (a read-write lock around the catalogue and the routing tables) is read by
//!   routing and describes and written only to apply a journaled change, in memory. A
//!   new stream's or a reshard's catalogue entry and routing tables (thousands of shards)
//!   are built beforehand under `admin` and only swapped in under the write lock.
//! - each shard's slot has its own mutex, held while its log is created or sealed.
//!
//! Sealing parents, creating directories and removing files take no manager-wide lock. An
//! append racing a seal fails with [`sluice_storage::Error::Sealed`] (wrapped in
//! [`Error::Storage`]); the caller routes again, and [`ShardManager::route`] waits until
//! the reshard commits (or is given up) before answering for a sealed parent.
//!
//! Time: every call takes `now`. Status delays (CREATING, UPDATING, DELETING) are computed
//! from it and the journaled times; [`ShardManager::tick`] expires closed shards.

mod admin;
mod reshard;
mod side_by_side;
mod slot;
mod startup;
mod work;

pub use side_by_side::side_by_side;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
};
use std::time::Duration;

use sluice_storage::fs::FileSystem;
use sluice_storage::{Log, LogConfig, SegmentCache, SyncScheduler, SyncfsPolicy, TimestampMs};

use crate::catalogue::Catalogue;
use crate::error::{Error, Result};
use crate::hash_range::HashKey;
use crate::journal::Journal;
use crate::lineage::{RouteTable, ShardId, ShardInfo, ShardState};
use crate::stream::{
    StreamDescription, StreamMeta, StreamPage, StreamStatus, StreamSummary, TAGS_PER_STREAM_MAX,
    TagPage,
};

use reshard::PendingReshard;
use slot::{ShardLog, StreamFiles};
pub use work::{TickReport, WorkReport};

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
    /// Serialises changes (see the module doc). Never taken by routing or reads.
    admin: Mutex<Journal>,
    /// The catalogue and the routing tables: held only for lookups and to apply a change.
    inner: RwLock<Inner>,
    /// Directories of purged streams still to remove, oldest first.
    unlink: Mutex<Vec<PathBuf>>,
    /// Held by [`ShardManager::run_pending`], so background work runs one caller at a time.
    worker: Mutex<()>,
    /// Set by [`ShardManager::stop_work`]: a running pass gives its reshard up.
    stopping: std::sync::atomic::AtomicBool,
    /// Bumped whenever a pending reshard commits or is given up, waking puts that found
    /// their shard sealed.
    reshards_done: (Mutex<u64>, Condvar),
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

#[derive(Debug)]
struct Inner {
    catalogue: Catalogue,
    runtime: HashMap<u64, StreamLogs>,
    /// Reshards accepted and not yet committed or given up, by stream uid: such a stream
    /// is UPDATING.
    pending: BTreeMap<u64, PendingReshard>,
    poisoned: Option<String>,
}

/// The shard logs of one stream.
#[derive(Debug)]
struct StreamLogs {
    files: Arc<StreamFiles>,
    routes: RouteTable,
    /// Parallel to `routes.ids()`.
    route_logs: Vec<Arc<ShardLog>>,
    /// Every shard not expired.
    logs: BTreeMap<ShardId, Arc<ShardLog>>,
}

/// How long a put that found its shard sealed by a reshard waits, at most, for that
/// reshard to commit before routing anyway (and being told `Sealed` again).
pub(crate) const SEALED_ROUTE_WAIT: Duration = Duration::from_secs(2);

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
    /// every shard log that exists, rolls back reshards that never reached the journal
    /// (unsealing their parents), removes directories no live shard names, and purges
    /// streams whose deletion completed before `now`.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        data_dir: &Path,
        config: ManagerConfig,
        cache: Arc<SegmentCache>,
        now: TimestampMs,
    ) -> Result<ShardManager> {
        startup::open(fs, data_dir, config, cache, now)
    }

    /// Whether this data directory's shared syncs may be one `syncfs` (see
    /// [`ManagerConfig::syncfs`]).
    pub fn sync_uses_syncfs(&self) -> bool {
        self.syncer.uses_syncfs()
    }

    /// Every open shard log (shards never used have none), with its stream's name and
    /// retention hours: what the broker's timers (retention, periodic sync) and shutdown
    /// walk. The catalogue is read once; the logs are collected after releasing it.
    pub fn live_logs(&self) -> Vec<(String, u32, Arc<Log>)> {
        let slots: Vec<(String, u32, Arc<ShardLog>)> = {
            let inner = self.read();
            let mut out = Vec::new();
            for (uid, rt) in &inner.runtime {
                if let Some(s) = inner.catalogue.by_uid(*uid) {
                    out.extend(
                        rt.logs
                            .values()
                            .map(|slot| (s.name.clone(), s.retention_hours, Arc::clone(slot))),
                    );
                }
            }
            out
        };
        slots
            .into_iter()
            .filter_map(|(name, hours, slot)| slot.log().map(|log| (name, hours, log)))
            .collect()
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
            .filter_map(|s| inner.status(s, now).map(|st| (s, st)));
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
        self.describe_with(name, now, |all| all.to_vec())
    }

    /// DescribeStream's page: the stream with at most `limit` of its shards that have not
    /// expired, in id order after `after`, and whether more follow. Copies only that page
    /// (a stream of 10,000 shards is described, and polled by waiters, without copying
    /// them all); `limit` 0 describes the stream alone.
    pub fn describe_stream_page(
        &self,
        name: &str,
        after: Option<ShardId>,
        limit: usize,
        now: TimestampMs,
    ) -> Result<(StreamDescription, bool)> {
        let mut more = false;
        let d = self.describe_with(name, now, |all| {
            let from = after.map_or(0, |a| {
                usize::try_from(a.index()).map_or(all.len(), |i| i + 1)
            });
            let mut live = all
                .get(from..)
                .unwrap_or_default()
                .iter()
                .filter(|sh| sh.state() != ShardState::Expired);
            let page = live.by_ref().take(limit).cloned().collect();
            more = live.next().is_some();
            page
        })?;
        Ok((d, more))
    }

    fn describe_with(
        &self,
        name: &str,
        now: TimestampMs,
        shards: impl FnOnce(&[ShardInfo]) -> Vec<ShardInfo>,
    ) -> Result<StreamDescription> {
        let inner = self.read();
        let s = self.stream(&inner, name, now)?;
        let status = inner.status(s, now).unwrap_or(StreamStatus::Deleting);
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
                shards(s.lineage.all())
            },
        })
    }

    /// ListShards: shards not expired, in id order (ShardFilter is the caller's job).
    pub fn list_shards(&self, name: &str, now: TimestampMs) -> Result<Vec<ShardInfo>> {
        Ok(self.list_shards_of(name, now)?.1)
    }

    /// [`ShardManager::list_shards`] with the stream's uid, which the shards' sequence
    /// numbers carry.
    pub fn list_shards_of(&self, name: &str, now: TimestampMs) -> Result<(u64, Vec<ShardInfo>)> {
        let inner = self.read();
        let s = self.readable_stream(&inner, name, now)?;
        let shards = s
            .lineage
            .all()
            .iter()
            .filter(|sh| sh.state() != ShardState::Expired)
            .cloned()
            .collect();
        Ok((s.uid, shards))
    }

    /// One shard and its log, for GetShardIterator and GetRecords. A shard never written
    /// gets its (empty) log created here, outside every lock but its own: blocking.
    pub fn shard(&self, name: &str, shard: ShardId, now: TimestampMs) -> Result<ShardHandle> {
        let (mut handle, slot) = self.shard_slot(name, shard, now)?;
        handle.log = slot.map(|slot| slot.materialize()).transpose()?;
        Ok(handle)
    }

    /// [`ShardManager::shard`] without the log (`log` is `None`): creates nothing, for
    /// callers that only need the shard's metadata and children.
    pub fn shard_info(&self, name: &str, shard: ShardId, now: TimestampMs) -> Result<ShardHandle> {
        Ok(self.shard_slot(name, shard, now)?.0)
    }

    fn shard_slot(
        &self,
        name: &str,
        shard: ShardId,
        now: TimestampMs,
    ) -> Result<(ShardHandle, Option<Arc<ShardLog>>)> {
        let inner = self.read();
        let s = self.readable_stream(&inner, name, now)?;
        let info = s
            .lineage
            .get(shard)
            .ok_or_else(|| self.shard_not_found(name, shard))?
            .clone();
        let slot = inner
            .runtime
            .get(&s.uid)
            .and_then(|r| r.logs.get(&shard))
            .cloned();
        let handle = ShardHandle {
            stream_uid: s.uid,
            children: s.lineage.children(shard),
            info,
            log: None,
        };
        Ok((handle, slot))
    }

    /// Routes a put to the open shard owning its key (a binary search, under the read
    /// lock). Blocking: creates the shard's log on its first use, and while a reshard has
    /// sealed the shard but not yet committed, waits (up to a bound) for the commit, then
    /// routes again.
    pub fn route(&self, name: &str, key: RouteKey<'_>, now: TimestampMs) -> Result<Route> {
        let started = std::time::Instant::now();
        loop {
            let seen = self.reshards_done_count();
            let (mut route, slot) = self.lookup(&self.read(), name, key, now)?;
            let waiting = slot.closing() && slot.is_sealed();
            if waiting && started.elapsed() < SEALED_ROUTE_WAIT {
                self.wait_reshard_done(seen, SEALED_ROUTE_WAIT - started.elapsed());
                continue;
            }
            route.log = Some(slot.materialize()?);
            return route.into_route();
        }
    }

    /// [`ShardManager::route`] for a caller that must not wait (an async runtime thread):
    /// `None` when answering would wait: while the catalogue is being changed, while a
    /// reshard is closing the shard, and when the shard's log does not exist yet.
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
        let (mut route, slot) = match self.lookup(&inner, name, key, now) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        drop(inner);
        if slot.closing() {
            return None;
        }
        route.log = Some(slot.try_log()?);
        Some(route.into_route())
    }

    /// The open shard owning a key, and its slot.
    fn lookup(
        &self,
        inner: &Inner,
        name: &str,
        key: RouteKey<'_>,
        now: TimestampMs,
    ) -> Result<(PartialRoute, Arc<ShardLog>)> {
        if let Some(reason) = &inner.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        let s = self.stream(inner, name, now)?;
        if !matches!(
            inner.status(s, now),
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
        let (shard, slot) = found
            .ok_or_else(|| Error::corrupt(&self.streams_dir, 0, "no open shard owns a hash key"))?;
        let route = PartialRoute {
            stream_uid: s.uid,
            shard,
            hash_key,
            log: None,
        };
        Ok((route, slot))
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
        let s = self.stream(&inner, name, now)?;
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

    /// Writes a snapshot and empties the journal now (it also happens on its own once the
    /// journal passes `journal_compact_bytes`).
    pub fn compact(&self) -> Result<()> {
        let mut journal = self.admin_ok()?;
        self.compact_locked(&mut journal)
    }

    // ---- locking ----

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic under the lock leaves the catalogue as the last completed change left it.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn admin(&self) -> MutexGuard<'_, Journal> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The admin lock, refused while poisoned.
    fn admin_ok(&self) -> Result<MutexGuard<'_, Journal>> {
        let journal = self.admin();
        match &self.read().poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(journal),
        }
    }

    fn poison(&self, reason: String) {
        self.write().poisoned.get_or_insert(reason);
    }

    fn reshards_done_count(&self) -> u64 {
        *self
            .reshards_done
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a reshard commits or is given up after `seen`, or `timeout` passes.
    fn wait_reshard_done(&self, seen: u64, timeout: Duration) {
        let (count, cv) = &self.reshards_done;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let _ = cv.wait_timeout_while(guard, timeout, |n| *n == seen);
    }

    fn notify_reshard_done(&self) {
        let (count, cv) = &self.reshards_done;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
    }

    // ---- lookups ----

    /// The stream named `name` unless its deletion has completed.
    fn stream<'a>(&self, inner: &'a Inner, name: &str, now: TimestampMs) -> Result<&'a StreamMeta> {
        inner
            .catalogue
            .by_name(name)
            .filter(|s| s.status(now).is_some())
            .ok_or_else(|| Error::ResourceNotFound(self.not_found_message(name)))
    }

    /// A stream whose shards can be listed and read: not CREATING (it has no shards yet).
    fn readable_stream<'a>(
        &self,
        inner: &'a Inner,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        let s = self.stream(inner, name, now)?;
        if s.status(now) == Some(StreamStatus::Creating) {
            return Err(Error::ResourceNotFound(self.not_found_message(name)));
        }
        Ok(s)
    }

    /// A stream in ACTIVE, as reshards and retention changes need.
    fn active_stream<'a>(
        &self,
        inner: &'a Inner,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        self.stream_in(inner, name, now, &[StreamStatus::Active])
    }

    /// A stream whose tags may change: ACTIVE or UPDATING.
    fn taggable_stream<'a>(
        &self,
        inner: &'a Inner,
        name: &str,
        now: TimestampMs,
    ) -> Result<&'a StreamMeta> {
        self.stream_in(
            inner,
            name,
            now,
            &[StreamStatus::Active, StreamStatus::Updating],
        )
    }

    /// The stream, if its status is one of `allowed`; ResourceInUse with Kinesis's message
    /// otherwise.
    fn stream_in<'a>(
        &self,
        inner: &'a Inner,
        name: &str,
        now: TimestampMs,
        allowed: &[StreamStatus],
    ) -> Result<&'a StreamMeta> {
        let s = self.stream(inner, name, now)?;
        let status = inner.status(s, now).unwrap_or(StreamStatus::Deleting);
        if allowed.contains(&status) {
            Ok(s)
        } else {
            Err(self.in_use(status, &self.not_active_message(name, status)))
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

    // ---- files ----

    fn stream_dir(&self, uid: u64) -> PathBuf {
        self.streams_dir.join(stream_dir_name(uid))
    }

    fn log_config(&self, max_record_size_kib: u32) -> LogConfig {
        let mut config = self.config.log.clone();
        config.record_bytes_max = max_record_size_kib as usize * 1024;
        config
    }

    /// The shared file settings of stream `uid`.
    fn stream_files(
        &self,
        uid: u64,
        max_record_size_kib: u32,
        dir_durable: bool,
    ) -> Arc<StreamFiles> {
        StreamFiles::new(
            Arc::clone(&self.fs),
            &self.streams_dir,
            self.stream_dir(uid),
            self.log_config(max_record_size_kib),
            Arc::clone(&self.cache),
            Arc::clone(&self.syncer),
            dir_durable,
        )
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

/// A route before its log is known.
struct PartialRoute {
    stream_uid: u64,
    shard: ShardId,
    hash_key: HashKey,
    log: Option<Arc<Log>>,
}

impl PartialRoute {
    fn into_route(self) -> Result<Route> {
        let log = self.log.ok_or_else(|| {
            Error::corrupt(PathBuf::new(), 0, "a route was completed without its log")
        })?;
        Ok(Route {
            stream_uid: self.stream_uid,
            shard: self.shard,
            hash_key: self.hash_key,
            log,
        })
    }
}

impl Inner {
    /// A stream's status at `now`: from its journaled times, and UPDATING while a reshard
    /// of it is pending.
    fn status(&self, s: &StreamMeta, now: TimestampMs) -> Option<StreamStatus> {
        let status = s.status(now)?;
        let pending = self.pending.contains_key(&s.uid);
        Some(if status == StreamStatus::Active && pending {
            StreamStatus::Updating
        } else {
            status
        })
    }
}

impl StreamLogs {
    /// The logs of a stream whose shards all have slots in `logs`.
    fn new(
        files: Arc<StreamFiles>,
        logs: BTreeMap<ShardId, Arc<ShardLog>>,
        s: &StreamMeta,
    ) -> StreamLogs {
        let mut rt = StreamLogs {
            files,
            routes: RouteTable::default(),
            route_logs: Vec::new(),
            logs,
        };
        rt.rebuild_routes(s);
        rt
    }

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
            "every open shard has a log slot"
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
mod tests;
