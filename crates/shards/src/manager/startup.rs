//! Start-up: replay the journal, open the shard logs that exist, roll back reshards that
//! never reached the journal, and clear away directories no live shard names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use sluice_storage::fs::FileSystem;
use sluice_storage::{Log, RecoveryStats, SegmentCache, SyncScheduler, TimestampMs};

use super::side_by_side;
use super::slot::ShardLog;
use super::{
    Inner, LOST_FOUND_DIR, ManagerConfig, ShardManager, StreamLogs, parse_stream_dir_name,
};
use crate::catalogue::Catalogue;
use crate::error::{Error, Result};
use crate::journal;
use crate::lineage::{ShardId, ShardInfo, ShardState};
use crate::stream::StreamMeta;

/// [`ShardManager::open`].
pub(super) fn open(
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
        admin: Mutex::new(recovered.journal),
        inner: RwLock::new(Inner {
            catalogue: recovered.catalogue,
            runtime: HashMap::new(),
            pending: BTreeMap::new(),
            poisoned: None,
        }),
        unlink: Mutex::new(Vec::new()),
        worker: Mutex::new(()),
        stopping: std::sync::atomic::AtomicBool::new(false),
        reshards_done: (Mutex::new(0), Condvar::new()),
    };
    {
        let mut inner = manager.write();
        manager.remove_orphans(&inner.catalogue, journal_cut.as_ref())?;
        let uids: Vec<u64> = inner.catalogue.streams().map(|s| s.uid).collect();
        for uid in uids {
            if let Some(s) = inner.catalogue.by_uid(uid) {
                let logs = manager.open_stream_logs(s)?;
                inner.runtime.insert(uid, logs);
            }
        }
        log_recovery_summary(&inner);
    }
    manager.tick(now)?;
    Ok(manager)
}

impl ShardManager {
    /// Opens the logs of every live shard of a stream that has one, rolling back
    /// unjournaled seals. A shard without a directory was never written: an empty log
    /// (sealed if closed), unless the journal says it closed holding records.
    fn open_stream_logs(&self, s: &StreamMeta) -> Result<StreamLogs> {
        let dir_exists = self.fs.exists(&self.stream_dir(s.uid));
        let files = self.stream_files(s.uid, s.max_record_size_kib, dir_exists);
        let mut logs = BTreeMap::new();
        let mut with_logs = Vec::new();
        for sh in s
            .lineage
            .all()
            .iter()
            .filter(|sh| sh.state() != ShardState::Expired)
        {
            let dir = files.shard_dir(sh.id());
            if dir_exists && self.fs.exists(&dir) {
                with_logs.push(sh);
                continue;
            }
            if sh.closed().is_some_and(|c| c.end.0 > 0) {
                return Err(Error::corrupt(
                    &dir,
                    0,
                    format!(
                        "the log of {} in stream {} is missing, and it holds records",
                        sh.id(),
                        s.name
                    ),
                ));
            }
            logs.insert(
                sh.id(),
                ShardLog::absent(&files, sh.id(), sh.closed().is_some()),
            );
        }
        let opened = side_by_side(&with_logs, |sh| self.open_shard_log(s, sh, &files));
        for (sh, log) in with_logs.iter().zip(opened) {
            logs.insert(sh.id(), ShardLog::open(&files, sh.id(), log?));
        }
        Ok(StreamLogs::new(files, logs, s))
    }

    /// Opens one shard's existing log and makes its seal agree with the journal.
    fn open_shard_log(
        &self,
        s: &StreamMeta,
        sh: &ShardInfo,
        files: &super::slot::StreamFiles,
    ) -> Result<Arc<Log>> {
        let log = files.open_log(sh.id())?;
        match sh.closed() {
            None if log.is_sealed() => {
                log.unseal()?;
                tracing::info!(stream = %s.name, shard = %sh.id(), "unsealed a parent whose reshard never reached the journal");
            }
            Some(close) => {
                log.seal()?;
                if log.next_seq() != close.end {
                    return Err(Error::corrupt(
                        log.dir(),
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
        Ok(log)
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
                if unknown {
                    self.drop_orphan(&path, &entry, unknown, journal_cut)?;
                    removed += 1;
                } else {
                    // A purged stream's files: removed in the background, not before serving.
                    self.queue_unlink(path);
                }
                continue;
            };
            let mut removed_here = 0;
            for shard_entry in self.fs.list_dir(&path).map_err(|e| Error::io(&path, e))? {
                // A lookup by id, not a scan: 10,000 directories against 10,000 shards.
                let live = ShardId::parse(&shard_entry)
                    .and_then(|id| stream.lineage.get(id))
                    .is_some_and(|sh| sh.state() != ShardState::Expired);
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
}

/// Logs what recovering the shard logs did, once for the whole data directory: at error
/// level when any log found damage. Shards never written have no log and are not counted.
fn log_recovery_summary(inner: &Inner) {
    let logs: Vec<Arc<Log>> = inner
        .runtime
        .values()
        .flat_map(|r| r.logs.values())
        .filter_map(|slot| slot.log())
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
