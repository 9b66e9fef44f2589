//! `sluice-storage`: one shard's durable log on disk.
//!
//! A [`Log`] is a directory of segment files, each named by its first sequence and
//! followed by a sparse sequence index and a sparse timestamp index. Records are framed
//! with a length and a CRC32C ([`frame`]), appended in batches under group commit, read
//! back through memory maps, found by sequence or by arrival time through the indexes,
//! and deleted a whole segment at a time by retention. Opening a log recovers it after any
//! stop, scanning only what was written since its last recovery point.
//!
//! The crate knows nothing of streams, hash keys or the network: a partition key and an
//! explicit hash key are opaque bytes here. All file I/O goes through [`fs::FileSystem`],
//! whose simulated implementation ([`sim::SimFs`]) drives the crash and fault tests.
//!
//! A batch is written whole into one segment and recovered whole or not at all; only a
//! failed sync poisons a log; damage found at recovery is set aside and its sequence
//! numbers are given up as a gap, never given to another record.
//!
//! Map: `frame` (record codec, batch flag), `header` (file headers), `index` (sparse
//! indexes), `checkpoint` (recovery point with the sequence reservation, seal marker),
//! `gaps` (sequences given up after damage), `names` (file names), `segment` (scans and
//! sealed segments), `cache` (LRU of mapped sealed segments), `log` (appends, group
//! commit, seal, retention; `log/read` reads and seeks, `log/roll` rolls and recovery
//! points), `recovery` (open after a stop; `recovery/damage`, including repair),
//! `syncer` (syncs shared across logs, `syncfs` only where it flushes), `fs` and `sim`
//! (the file-system seam; `sim/gate` orders test threads), `config`, `error`, `types`.

#![warn(missing_docs)]

mod cache;
mod checkpoint;
mod config;
mod error;
pub mod frame;
pub mod fs;
mod gaps;
mod header;
pub mod index;
mod log;
mod names;
mod recovery;
mod segment;
pub mod sim;
mod syncer;
mod types;

pub use cache::SegmentCache;
pub use config::{LogConfig, SyncMode};
pub use error::{Error, Result};
pub use fs::{FileHandle, FileSystem, FsInfo, Mapping, RealFs};
pub use log::{
    Appended, Log, ReadBatch, RecoveryStats, RetentionOutcome, SharedBatch, SharedRecord, Written,
};
pub use sim::{CrashMode, Gate, SimFs, SimStats, SplitMix};
pub use syncer::{SyncScheduler, SyncStats, SyncfsPolicy};
pub use types::{Record, RecordIn, SeqNo, TimestampMs};

use std::path::Path;

/// Removes a whole log directory crash-safely: it is renamed to `<dir>.deleted` (and the
/// parent synced) before anything is unlinked, so a crash leaves either the whole log or a
/// `.deleted` directory that [`remove_leftover_logs`] finishes off.
pub fn remove_log(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let doomed = names::deleted_path(dir);
    if fs.exists(dir) {
        fs.rename(dir, &doomed).map_err(|e| Error::io(dir, e))?;
        fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    if fs.exists(&doomed) {
        fs.remove_dir_all(&doomed)
            .map_err(|e| Error::io(&doomed, e))?;
        fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(())
}

/// Finishes deletions that [`remove_log`] started before a crash: removes every
/// `*.deleted` entry directly inside `parent`. Returns how many were removed.
pub fn remove_leftover_logs(fs: &dyn FileSystem, parent: &Path) -> Result<usize> {
    let mut removed = 0;
    for name in fs.list_dir(parent).map_err(|e| Error::io(parent, e))? {
        if name.ends_with(names::DELETED_SUFFIX) {
            let path = parent.join(&name);
            fs.remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
    }
    Ok(removed)
}
