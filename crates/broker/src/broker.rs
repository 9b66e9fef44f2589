//! [`Broker`]: the engine both front-ends share. This file holds the struct, start-up,
//! stream and shard administration, and the helpers the data paths use; puts are in
//! `put`, iterators, reads and subscriptions in `read`, timers in `maintenance`.
//!
//! Storage and the shard manager are synchronous and may block on `fdatasync` or page
//! faults, so every call into them runs on the blocking thread pool (`spawn_blocking`),
//! never on the async runtime's threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_shards::{CreateStream, ShardHandle, ShardId, ShardInfo, ShardManager};
use sluice_storage::{RealFs, SegmentCache, TimestampMs};
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::durable::SyncDriver;
use crate::error::{Error, Result};
use crate::iterator::IteratorKey;
use crate::limits::Usage;
use crate::maintenance::AdminWorker;
use crate::seqnum::{SequenceNumber, ShardOrigin};
use crate::subscribers::Subscribers;
use crate::types::{
    HashKeyRange, ShardCountUpdate, ShardList, ShardView, StreamList, StreamListEntry, StreamView,
};

/// The name of the iterator key file in the data directory.
const ITERATOR_KEY_FILE: &str = "iterator.key";
/// The lock file that keeps a second broker out of the data directory.
const LOCK_FILE: &str = "LOCK";

/// The broker engine. Share it as `Arc<Broker>`.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) manager: Arc<ShardManager>,
    pub(crate) key: IteratorKey,
    /// Woken after every append to a shard, keyed by (stream uid, shard index).
    notifiers: Mutex<HashMap<(u64, u64), Arc<Notify>>>,
    /// Per shard log: the task leading its syncs for waiting puts (see `durable`).
    sync_drivers: Mutex<HashMap<(u64, u64), Arc<SyncDriver>>>,
    /// Creation times of shards (they never change), keyed by (stream uid, shard index).
    created: Mutex<HashMap<(u64, u64), u64>>,
    /// What the data paths need to know of a stream, per stream uid.
    facts: Mutex<HashMap<u64, StreamFacts>>,
    /// Per-shard throughput accounting, when limits are on.
    pub(crate) usage: Mutex<HashMap<(u64, u64), Usage>>,
    /// Registered enhanced fan-out consumers.
    pub(crate) consumers: Mutex<Vec<crate::consumers::Registered>>,
    /// Open subscriptions, their caps and their byte budget.
    pub(crate) subscribers: Arc<Subscribers>,
    /// Carries out stream administration in the background (see `maintenance`).
    admin_worker: Arc<AdminWorker>,
    /// Held for the broker's lifetime: an exclusive lock on the data directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> TimestampMs {
    TimestampMs(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// Runs blocking storage work off the async runtime's threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// Takes an exclusive lock on the data directory, so two brokers never write the same
/// logs (which would corrupt them). The lock goes with the process, however it ends.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    use rustix::fs::{FlockOperation, flock};
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::ResourceInUse(format!(
            "data directory {} is in use by another sluice process",
            dir.display()
        ))),
        Err(e) => Err(Error::Internal(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The shard manager's settings, with the shard logs' batch limit raised to hold the
/// largest batch a put can send one shard: a whole PutRecords request (a batch is written
/// whole into one segment, never split).
fn manager_config(config: &BrokerConfig) -> sluice_shards::ManagerConfig {
    let mut manager = config.manager.clone();
    let request_max = config.put_records_bytes_max as u64
        + config.put_records_max as u64 * sluice_storage::frame::FRAME_OVERHEAD_BYTES_MAX as u64;
    manager.log.batch_bytes_max = manager.log.batch_bytes_max.max(request_max);
    manager
}

/// Parses a shard id leniently, as Kinesis does: `shardId-000000000005`, `shardId-5` and
/// `shard-5` all name shard 5.
pub fn parse_shard_id(text: &str) -> Option<ShardId> {
    let digits = text.rsplit_once('-').map_or(text, |(_, d)| d);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ShardId::new(digits.parse().ok()?)
}

impl Broker {
    /// Opens the broker on `config.data_dir` (created if absent): replays the metadata
    /// journal and recovers every shard log. Blocking; call it once at start-up.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        Broker::open_with_fs(config, RealFs::shared())
    }

    /// As [`Broker::open`], with the shard logs and the metadata journal on `fs` (a
    /// simulated disk in fault tests). The lock, iterator key and consumers files stay on
    /// the real file system in `config.data_dir`; `fs` holds its files under the same path.
    pub fn open_with_fs(
        config: BrokerConfig,
        fs: Arc<dyn sluice_storage::FileSystem>,
    ) -> Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let key_path = config.data_dir.join(ITERATOR_KEY_FILE);
        let key = IteratorKey::load_or_create(&key_path)
            .map_err(|e| Error::Internal(format!("iterator key {}: {e}", key_path.display())))?;
        let config_dir = config.data_dir.clone();
        let subscribers = Subscribers::new(&config);
        let manager = ShardManager::open(
            fs,
            &config.data_dir,
            manager_config(&config),
            SegmentCache::new(config.segment_cache_capacity),
            now_ms(),
        )?;
        let consumers = Mutex::new(crate::consumers::load(&config_dir)?);
        let manager = Arc::new(manager);
        Ok(Arc::new_cyclic(|broker| Broker {
            config,
            admin_worker: Arc::new(AdminWorker::start(Arc::clone(&manager), broker.clone())),
            manager,
            key,
            notifiers: Mutex::new(HashMap::new()),
            sync_drivers: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            facts: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            consumers,
            subscribers,
            _lock: lock,
        }))
    }

    /// The configuration the broker was opened with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Stops background administration (a reshard not yet committed stays undone, as after
    /// a crash), then syncs every shard log and writes its recovery point, so the next start
    /// scans nothing. Call it after the front-ends have stopped taking requests.
    pub async fn shutdown(&self) -> Result<()> {
        let manager = self.manager.clone();
        let worker = Arc::clone(&self.admin_worker);
        blocking(move || {
            worker.stop();
            let syncs = manager.sync_stats();
            tracing::info!(
                group_commits = syncs.requests,
                fdatasync = syncs.file_syncs,
                syncfs = syncs.filesystem_syncs,
                "storage syncs since start"
            );
            // Side by side: each close syncs the log and writes its recovery point, and
            // 10,000 written shards closed one after another took 43 s.
            let logs = manager.live_logs();
            let closed = sluice_shards::side_by_side(&logs, |(_, _, log)| {
                log.close().inspect_err(|e| {
                    tracing::error!(log = %log.dir().display(), error = %e, "could not close a shard log");
                })
            });
            closed.into_iter().find_map(|r| r.err()).map_or(Ok(()), |e| Err(Error::from(e)))
        })
        .await
    }

    /// CreateStream: one journal event, whatever the shard count (each shard's log is
    /// created on its first use). The stream is CREATING for the configured status delay.
    pub async fn create_stream(&self, req: CreateStream) -> Result<()> {
        let m = self.manager.clone();
        blocking(move || Ok(m.create_stream(&req, now_ms())?)).await
    }

    /// DeleteStream, deregistering the stream's consumers with it. Returns once DELETING is
    /// journaled; the stream is gone after the status delay (at once without one) and its
    /// files are removed in the background.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        // The uid of the stream this call deleted (one looked up before could be of a
        // stream deleted and created again in between).
        let uid = blocking(move || Ok(m.delete_stream(&name, now_ms())?)).await?;
        self.admin_worker.wake();
        // Nothing is written to or read from a DELETING stream, so its per-shard state
        // goes now (a put in flight keeps its own reference), and its subscriptions end.
        self.forget(uid, None);
        self.drop_consumers_of(uid)
    }

    /// DescribeStream: the stream and a page of its shards (`limit` default 100, at most
    /// 100 returned) after `exclusive_start_shard_id`.
    pub async fn describe_stream(
        &self,
        name: &str,
        limit: Option<usize>,
        exclusive_start_shard_id: Option<&str>,
    ) -> Result<StreamView> {
        let limit = limit.unwrap_or(100);
        if !(1..=10_000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "Limit {limit} is outside 1 ..= 10000."
            )));
        }
        let after = exclusive_start_shard_id.map(shard_after).transpose()?;
        let (m, name) = (self.manager.clone(), name.to_owned());
        let page = limit.min(100);
        let (d, has_more_shards) =
            blocking(move || Ok(m.describe_stream_page(&name, after, page, now_ms())?)).await?;
        Ok(StreamView {
            has_more_shards,
            shards: d.shards.iter().map(|s| shard_view(d.uid, s)).collect(),
            name: d.name,
            arn: d.arn,
            status: d.status,
            retention_hours: d.retention_hours,
            max_record_size_kib: d.max_record_size_kib,
            created: d.created,
            open_shard_count: d.open_shard_count,
        })
    }

    /// ListStreams: names in order after `exclusive_start` (`limit` default 100, at most
    /// 100 returned).
    pub async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<StreamList> {
        let limit = limit.unwrap_or(100);
        if !(1..=10_000).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "Limit {limit} is outside 1 ..= 10000."
            )));
        }
        let (m, start) = (self.manager.clone(), exclusive_start.map(str::to_owned));
        let page =
            blocking(move || Ok(m.list_streams(start.as_deref(), limit.min(100), now_ms())?))
                .await?;
        Ok(StreamList {
            streams: page
                .streams
                .into_iter()
                .map(|s| StreamListEntry {
                    name: s.name,
                    arn: s.arn,
                    status: s.status,
                    created: s.created,
                })
                .collect(),
            has_more: page.has_more,
        })
    }

    /// ListShards: shards not yet expired, in id order, after `exclusive_start_shard_id`
    /// (`max_results` default 1000, 1 ..= 10000, at most 1000 returned).
    pub async fn list_shards(
        &self,
        name: &str,
        exclusive_start_shard_id: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<ShardList> {
        let max = max_results.unwrap_or(1000);
        if !(1..=10_000).contains(&max) {
            return Err(Error::InvalidArgument(format!(
                "MaxResults {max} is outside 1 ..= 10000."
            )));
        }
        let after = exclusive_start_shard_id.map(shard_after).transpose()?;
        let (m, name) = (self.manager.clone(), name.to_owned());
        let (uid, shards) = blocking(move || Ok(m.list_shards_of(&name, now_ms())?)).await?;
        let rest: Vec<&ShardInfo> = shards
            .iter()
            .filter(|s| after.is_none_or(|a| s.id() > a))
            .collect();
        let page = max.min(1000);
        let more = rest.len() > page;
        let shards: Vec<ShardView> = rest
            .into_iter()
            .take(page)
            .map(|s| shard_view(uid, s))
            .collect();
        Ok(ShardList {
            next_exclusive_start_shard_id: if more {
                shards.last().map(|s| s.shard_id.clone())
            } else {
                None
            },
            shards,
        })
    }

    /// SplitShard: returns once accepted, with the stream UPDATING until the admin worker
    /// has sealed the parent and committed the split.
    pub async fn split_shard(
        &self,
        name: &str,
        shard_id: &str,
        new_starting_hash_key: &str,
    ) -> Result<()> {
        let shard = self.shard_id_for_change(name, shard_id)?;
        let key = sluice_shards::HashKey::parse_decimal(new_starting_hash_key).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "NewStartingHashKey {new_starting_hash_key} is not a decimal number in 0 ..= 2^128-1."
            ))
        })?;
        let (m, name) = (self.manager.clone(), name.to_owned());
        blocking(move || Ok(m.split_shard(&name, shard, key, now_ms())?)).await?;
        self.admin_worker.wake();
        Ok(())
    }

    /// MergeShards: `shard_id` is the lower of two adjacent open shards. Returns once
    /// accepted, as [`Broker::split_shard`] does.
    pub async fn merge_shards(
        &self,
        name: &str,
        shard_id: &str,
        adjacent_shard_id: &str,
    ) -> Result<()> {
        let a = self.shard_id_for_change(name, shard_id)?;
        let b = self.shard_id_for_change(name, adjacent_shard_id)?;
        let (m, name) = (self.manager.clone(), name.to_owned());
        blocking(move || Ok(m.merge_shards(&name, a, b, now_ms())?)).await?;
        self.admin_worker.wake();
        Ok(())
    }

    /// UpdateShardCount with uniform scaling. Returns once accepted, as
    /// [`Broker::split_shard`] does.
    pub async fn update_shard_count(&self, name: &str, target: u32) -> Result<ShardCountUpdate> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        let out = blocking(move || Ok(m.update_shard_count(&name, target, now_ms())?)).await?;
        self.admin_worker.wake();
        Ok(ShardCountUpdate {
            current_shard_count: out.current,
            target_shard_count: out.target,
        })
    }

    /// IncreaseStreamRetentionPeriod.
    pub async fn increase_retention(&self, name: &str, hours: u32) -> Result<()> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        let out = blocking(move || Ok(m.increase_retention(&name, hours, now_ms())?)).await;
        lock(&self.facts).clear();
        out
    }

    /// DecreaseStreamRetentionPeriod.
    pub async fn decrease_retention(&self, name: &str, hours: u32) -> Result<()> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        let out = blocking(move || Ok(m.decrease_retention(&name, hours, now_ms())?)).await;
        lock(&self.facts).clear();
        out
    }

    /// AddTagsToStream.
    pub async fn add_tags(&self, name: &str, tags: BTreeMap<String, String>) -> Result<()> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        blocking(move || Ok(m.add_tags(&name, &tags, now_ms())?)).await
    }

    /// RemoveTagsFromStream.
    pub async fn remove_tags(&self, name: &str, keys: Vec<String>) -> Result<()> {
        let (m, name) = (self.manager.clone(), name.to_owned());
        blocking(move || Ok(m.remove_tags(&name, &keys, now_ms())?)).await
    }

    /// ListTagsForStream: `(tags, has_more)`.
    pub async fn list_tags(
        &self,
        name: &str,
        exclusive_start: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<(String, String)>, bool)> {
        let (m, name, start) = (
            self.manager.clone(),
            name.to_owned(),
            exclusive_start.map(str::to_owned),
        );
        let limit = limit.unwrap_or(50);
        let page =
            blocking(move || Ok(m.list_tags(&name, start.as_deref(), limit, now_ms())?)).await?;
        Ok((page.tags, page.has_more))
    }

    // ---- helpers for the data paths ----

    fn shard_id_for_change(&self, stream: &str, text: &str) -> Result<ShardId> {
        parse_shard_id(text).ok_or_else(|| {
            Error::ResourceNotFound(format!(
                "Could not find shard {text} in stream {stream} under account {}.",
                self.config.manager.account
            ))
        })
    }

    /// Resolves a shard for reading; an unknown or malformed id is not found.
    pub(crate) async fn shard_handle(&self, stream: &str, shard_id: &str) -> Result<ShardHandle> {
        let not_found = || {
            Error::ResourceNotFound(format!(
                "Shard {shard_id} in stream {stream} under account {} does not exist",
                self.config.manager.account
            ))
        };
        let id = parse_shard_id(shard_id).ok_or_else(not_found)?;
        let (m, name) = (self.manager.clone(), stream.to_owned());
        let handle = blocking(move || Ok(m.shard(&name, id, now_ms())?)).await?;
        if handle.log.is_none() {
            return Err(not_found());
        }
        Ok(handle)
    }

    /// The creation time of a shard, ms (cached: it never changes).
    pub(crate) fn shard_created_ms(&self, stream: &str, uid: u64, shard: ShardId) -> Result<u64> {
        if let Some(ms) = self.cached_shard_created_ms(uid, shard) {
            return Ok(ms);
        }
        let handle = self.manager.shard_info(stream, shard, now_ms())?;
        let ms = handle.info.created().0;
        lock(&self.created).insert((uid, shard.index()), ms);
        Ok(ms)
    }

    /// [`Broker::shard_created_ms`] if it is cached (no catalogue lock taken).
    pub(crate) fn cached_shard_created_ms(&self, uid: u64, shard: ShardId) -> Option<u64> {
        lock(&self.created).get(&(uid, shard.index())).copied()
    }

    /// [`Broker::facts`] if they are cached (no catalogue lock taken).
    pub(crate) fn cached_facts(&self, uid: u64) -> Option<StreamFacts> {
        lock(&self.facts).get(&uid).copied()
    }

    /// What the data paths need to know of a stream (cached per stream incarnation;
    /// retention changes clear it).
    pub(crate) fn facts(&self, stream: &str, uid: u64) -> Result<StreamFacts> {
        if let Some(f) = self.cached_facts(uid) {
            return Ok(f);
        }
        let (d, _) = self
            .manager
            .describe_stream_page(stream, None, 0, now_ms())?;
        let f = StreamFacts {
            record_bytes_max: d.max_record_size_kib as usize * 1024,
            retention_ms: u64::from(d.retention_hours) * 3_600_000,
        };
        if d.uid == uid {
            lock(&self.facts).insert(uid, f);
        }
        Ok(f)
    }

    /// The sync driver of a shard's log.
    pub(crate) fn sync_driver(&self, uid: u64, shard: u64) -> Arc<SyncDriver> {
        lock(&self.sync_drivers)
            .entry((uid, shard))
            .or_default()
            .clone()
    }

    /// The notifier woken after appends to a shard.
    pub(crate) fn notifier(&self, uid: u64, shard: u64) -> Arc<Notify> {
        lock(&self.notifiers)
            .entry((uid, shard))
            .or_default()
            .clone()
    }

    /// Drops what the broker keeps per shard (notifier, sync driver, creation time,
    /// throughput usage) for one shard of stream `uid`, or for all of them and the
    /// stream's facts when `shard` is `None`: without it a broker that creates and deletes
    /// streams, or reshards, for months would keep an entry for every shard it ever saw.
    /// The subscriptions of what is forgotten end with `ResourceNotFound`, so none keeps
    /// waiting on a stream or shard that is gone (nor its files).
    pub(crate) fn forget(&self, uid: u64, shard: Option<u64>) {
        self.subscribers.end_deleted(uid, shard);
        let gone = |&(u, s): &(u64, u64)| u == uid && shard.is_none_or(|x| x == s);
        lock(&self.notifiers).retain(|k, _| !gone(k));
        lock(&self.sync_drivers).retain(|k, _| !gone(k));
        lock(&self.created).retain(|k, _| !gone(k));
        lock(&self.usage).retain(|k, _| !gone(k));
        if shard.is_none() {
            lock(&self.facts).remove(&uid);
        }
    }

    /// Per-shard entries kept now, across all maps (for tests).
    #[cfg(test)]
    pub(crate) fn per_shard_entries(&self) -> usize {
        lock(&self.notifiers).len()
            + lock(&self.sync_drivers).len()
            + lock(&self.created).len()
            + lock(&self.usage).len()
    }

    /// Wakes every subscription, so those on shards a reshard just closed see their end
    /// now rather than at their next heartbeat.
    pub(crate) fn wake_all(&self) {
        for n in lock(&self.notifiers).values() {
            n.notify_waiters();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // The worker holds the shard manager: stop it before the data directory's lock goes,
        // so a broker opened next on the directory is its only writer.
        self.admin_worker.stop();
    }
}

/// What the data paths need to know of a stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamFacts {
    /// Largest record, data plus partition key, bytes.
    pub record_bytes_max: usize,
    /// Records older than this are never returned, ms.
    pub retention_ms: u64,
}

/// Locks a mutex, carrying on after a panic elsewhere (the data inside stays consistent:
/// every critical section here is a single map operation).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn shard_after(text: &str) -> Result<ShardId> {
    parse_shard_id(text).ok_or_else(|| {
        Error::InvalidArgument(format!("ExclusiveStartShardId {text} is not a shard id."))
    })
}

/// A shard of stream `uid` as clients see it.
pub(crate) fn shard_view(uid: u64, s: &ShardInfo) -> ShardView {
    let origin = ShardOrigin {
        stream_uid: uid,
        created_ms: s.created().0,
        index: s.id().index() as u32,
    };
    ShardView {
        shard_id: s.id().to_string(),
        parent_shard_id: s.parent().map(|p| p.to_string()),
        adjacent_parent_shard_id: s.adjacent_parent().map(|p| p.to_string()),
        hash_key_range: HashKeyRange {
            starting_hash_key: s.range().start().0.to_string(),
            ending_hash_key: s.range().end().0.to_string(),
        },
        starting_sequence_number: SequenceNumber::starting(origin).encode(),
        ending_sequence_number: s
            .closed()
            .map(|c| SequenceNumber::ending(origin, c.at.0).encode()),
        created: s.created(),
        closed: s.closed().map(|c| c.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_stream_drops_its_per_shard_state() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        })
        .unwrap();
        for name in ["kept", "deleted"] {
            b.create_stream(CreateStream::new(name, 2)).await.unwrap();
            for i in 0..20 {
                let input = crate::PutRecordInput {
                    partition_key: format!("key-{i}"),
                    explicit_hash_key: None,
                    data: bytes::Bytes::from_static(b"payload"),
                };
                b.put_record(name, input).await.unwrap();
            }
        }
        let both = b.per_shard_entries();
        assert!(both > 0, "puts keep per-shard state");
        b.delete_stream("deleted").await.unwrap();
        let kept = b.per_shard_entries();
        assert!(kept > 0 && kept < both, "{kept} of {both} entries left");
        b.delete_stream("kept").await.unwrap();
        assert_eq!(b.per_shard_entries(), 0);
    }

    #[test]
    fn shard_ids_parse_leniently() {
        assert_eq!(
            parse_shard_id("shardId-000000000005").map(ShardId::index),
            Some(5)
        );
        assert_eq!(parse_shard_id("shardId-5").map(ShardId::index), Some(5));
        assert_eq!(parse_shard_id("shard-12").map(ShardId::index), Some(12));
        for bad in ["", "shardId-", "shardId-x", "shardId-1234567890123", "abc"] {
            assert_eq!(parse_shard_id(bad), None, "{bad}");
        }
    }
}
