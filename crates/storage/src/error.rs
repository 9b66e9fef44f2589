//! The storage crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::types::SeqNo;

/// Everything that can go wrong in a shard log, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes on disk are not what the engine wrote. Never served as data.
    #[error("corrupt data in {}: at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The disk is full (ENOSPC); nothing was written for this call.
    #[error("disk full writing {}: {source}", path.display())]
    Full {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A sync (`fdatasync`, `syncfs`, or a directory's `fsync`) failed: the kernel may
    /// have dropped the bytes it was to write, so the log poisons itself.
    #[error("sync failed on {}: {source}", path.display())]
    SyncFailed {
        /// The file or directory being synced.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A sync failed earlier, so what the kernel holds can no longer be trusted: the log
    /// refuses writes until it is reopened (the sync is never retried).
    #[error("log {} is poisoned by an earlier failed sync ({reason}); reopen it", path.display())]
    Poisoned {
        /// The shard directory.
        path: PathBuf,
        /// The error of the failed sync.
        reason: String,
    },
    /// The log is sealed (closed for writes).
    #[error("log {} is sealed; it accepts no more records", path.display())]
    Sealed {
        /// The shard directory.
        path: PathBuf,
    },
    /// A sequence number outside what the log holds.
    #[error("sequence {requested} is beyond the end of the log (next sequence is {next})")]
    BeyondEnd {
        /// What was asked for.
        requested: SeqNo,
        /// The next sequence the log would assign.
        next: SeqNo,
    },
    /// A caller's argument is invalid (oversize record, bad configuration...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The storage crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns, telling a full disk apart.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            Error::Full { path, source }
        } else {
            Error::Io { path, source }
        }
    }

    /// Wraps the error of a failed sync: the caller must poison its log.
    pub(crate) fn sync(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::SyncFailed {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}
