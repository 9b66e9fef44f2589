//! [`ShardLog`]: one shard's log, created on its first use.
//!
//! A shard that was never written has no directory, no file and no descriptor: an absent
//! directory is an empty log. So CreateStream of 10,000 shards is one journal event, and a
//! reshard closes a never-written parent without touching the disk (its ending sequence is
//! 0). The directory is created, with its files synced and its name made durable in the
//! stream's directory, by the first append routed to the shard or the first read of it,
//! under this slot's own mutex: it costs that one caller a few syncs and no other shard or
//! stream anything.
//!
//! Crash safety: a directory is durable before the first record is appended to it, so a
//! crash never loses one holding acknowledged records. A crash while creating it leaves a
//! directory the journal names (recovered as an empty log, as its creation was never
//! finished) or none at all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use sluice_storage::fs::FileSystem;
use sluice_storage::{Log, LogConfig, SegmentCache, SeqNo, SyncScheduler, TimestampMs};

use crate::error::{Error, Result};
use crate::lineage::ShardId;

/// What the shard logs of one stream share: where they live and how they are opened.
#[derive(Debug)]
pub(crate) struct StreamFiles {
    fs: Arc<dyn FileSystem>,
    /// `streams/<uid>`.
    dir: PathBuf,
    /// `streams/`.
    streams_dir: PathBuf,
    config: LogConfig,
    cache: Arc<SegmentCache>,
    syncer: Arc<SyncScheduler>,
    /// Whether `dir` exists with its name durable in `streams/`.
    dir_durable: Mutex<bool>,
}

/// One shard's log slot: absent until first used, then the open log.
#[derive(Debug)]
pub(crate) struct ShardLog {
    files: Arc<StreamFiles>,
    id: ShardId,
    /// Set while a reshard closes this shard: routing sends puts that would wait on it to
    /// the blocking path, which waits for the reshard to commit or give up.
    closing: AtomicBool,
    state: Mutex<Slot>,
}

#[derive(Debug)]
enum Slot {
    /// No directory yet: an empty log, sealed once a reshard closed the shard.
    Absent { sealed: bool },
    /// The log, open.
    Open(Arc<Log>),
    /// The stream was purged or the shard expired: nothing is created here again.
    Retired,
}

impl StreamFiles {
    /// The files of stream `uid` under `streams_dir`. `dir_durable` says whether its
    /// directory is known to exist durably (found at start-up).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fs: Arc<dyn FileSystem>,
        streams_dir: &Path,
        dir: PathBuf,
        config: LogConfig,
        cache: Arc<SegmentCache>,
        syncer: Arc<SyncScheduler>,
        dir_durable: bool,
    ) -> Arc<StreamFiles> {
        Arc::new(StreamFiles {
            fs,
            dir,
            streams_dir: streams_dir.to_path_buf(),
            config,
            cache,
            syncer,
            dir_durable: Mutex::new(dir_durable),
        })
    }

    /// The directory of one shard's log.
    pub fn shard_dir(&self, id: ShardId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Opens (recovering) the log of a shard whose directory exists.
    pub fn open_log(&self, id: ShardId) -> Result<Arc<Log>> {
        let log = Log::open_with_syncer(
            Arc::clone(&self.fs),
            &self.shard_dir(id),
            self.config.clone(),
            Arc::clone(&self.cache),
            Arc::clone(&self.syncer),
        )?;
        Ok(Arc::new(log))
    }

    /// Creates the log of a shard that has none: its directory and files (synced by
    /// `Log::open`), then its name in the stream directory, and the stream directory's in
    /// `streams/` the first time.
    fn create_log(&self, id: ShardId) -> Result<Arc<Log>> {
        {
            let mut durable = self.dir_durable.lock().unwrap_or_else(|e| e.into_inner());
            if !*durable {
                let (fs, dir, parent) = (&self.fs, &self.dir, &self.streams_dir);
                fs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
                *durable = true;
            }
        }
        let log = self.open_log(id)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        Ok(log)
    }
}

impl ShardLog {
    /// A shard with no log yet (`sealed` once a reshard closed it).
    pub fn absent(files: &Arc<StreamFiles>, id: ShardId, sealed: bool) -> Arc<ShardLog> {
        ShardLog::with(files, id, Slot::Absent { sealed })
    }

    /// A shard whose log is open.
    pub fn open(files: &Arc<StreamFiles>, id: ShardId, log: Arc<Log>) -> Arc<ShardLog> {
        ShardLog::with(files, id, Slot::Open(log))
    }

    fn with(files: &Arc<StreamFiles>, id: ShardId, slot: Slot) -> Arc<ShardLog> {
        Arc::new(ShardLog {
            files: Arc::clone(files),
            id,
            closing: AtomicBool::new(false),
            state: Mutex::new(slot),
        })
    }

    /// The shard's log directory (which may not exist).
    pub fn dir(&self) -> PathBuf {
        self.files.shard_dir(self.id)
    }

    /// Whether a reshard is closing the shard now.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Marks (or unmarks) the shard as being closed by a reshard.
    pub fn set_closing(&self, closing: bool) {
        self.closing.store(closing, Ordering::Release);
    }

    /// The open log, if there is one, without waiting: `None` while the slot is being
    /// created or sealed, and for a shard with no log yet.
    pub fn try_log(&self) -> Option<Arc<Log>> {
        let slot = match self.state.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        match &*slot {
            Slot::Open(log) => Some(Arc::clone(log)),
            Slot::Absent { .. } | Slot::Retired => None,
        }
    }

    /// The open log, if there is one (nothing is created).
    pub fn log(&self) -> Option<Arc<Log>> {
        match &*self.lock() {
            Slot::Open(log) => Some(Arc::clone(log)),
            Slot::Absent { .. } | Slot::Retired => None,
        }
    }

    /// Whether appends are refused: sealed by a reshard (or retired).
    pub fn is_sealed(&self) -> bool {
        match &*self.lock() {
            Slot::Open(log) => log.is_sealed(),
            Slot::Absent { sealed } => *sealed,
            Slot::Retired => true,
        }
    }

    /// The arrival time of the newest record, if the shard has any.
    pub fn last_timestamp(&self) -> Option<TimestampMs> {
        self.log().and_then(|log| log.last_timestamp())
    }

    /// The log, created empty (and sealed, if the shard is) when the shard has none.
    /// Blocking: it syncs the new files and directory names.
    pub fn materialize(&self) -> Result<Arc<Log>> {
        let mut slot = self.lock();
        let sealed = match &*slot {
            Slot::Open(log) => return Ok(Arc::clone(log)),
            Slot::Retired => {
                return Err(Error::ResourceNotFound(format!(
                    "Shard {} no longer exists.",
                    self.id
                )));
            }
            Slot::Absent { sealed } => *sealed,
        };
        let log = self.files.create_log(self.id)?;
        if sealed {
            log.seal()?;
        }
        tracing::debug!(log = %log.dir().display(), "shard log created on first use");
        *slot = Slot::Open(Arc::clone(&log));
        Ok(log)
    }

    /// Seals the shard for a reshard and returns its ending sequence (0 for a shard that
    /// never had a log: nothing on disk changes then).
    pub fn seal(&self) -> Result<SeqNo> {
        let mut slot = self.lock();
        match &mut *slot {
            Slot::Open(log) => {
                log.seal()?;
                Ok(log.next_seq())
            }
            Slot::Absent { sealed } => {
                *sealed = true;
                Ok(SeqNo(0))
            }
            Slot::Retired => Err(Error::ResourceNotFound(format!(
                "Shard {} no longer exists.",
                self.id
            ))),
        }
    }

    /// Reopens the shard for appends after a reshard that sealed it was given up.
    pub fn unseal(&self) -> Result<()> {
        match &mut *self.lock() {
            Slot::Open(log) => Ok(log.unseal()?),
            Slot::Absent { sealed } => {
                *sealed = false;
                Ok(())
            }
            Slot::Retired => Ok(()),
        }
    }

    /// Retires the slot (its stream was purged or it expired) and hands back its log, if
    /// it had one, for the caller to drop and remove outside any lock.
    pub fn retire(&self) -> Option<Arc<Log>> {
        match std::mem::replace(&mut *self.lock(), Slot::Retired) {
            Slot::Open(log) => Some(log),
            Slot::Absent { .. } | Slot::Retired => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while creating or sealing leaves the slot as its last step left it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
