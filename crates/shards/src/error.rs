//! The shard manager's one error type.
//!
//! Variants mirror the Kinesis exceptions the front-ends must produce
//! (`ResourceNotFoundException`, `ResourceInUseException`, `InvalidArgumentException`,
//! `LimitExceededException`), plus the failures of the disk underneath. Messages use the
//! Kinesis texts from the semantics reference where it gives them, so a front-end can pass
//! them through unchanged.

use std::io;
use std::path::PathBuf;

use crate::stream::StreamStatus;

/// Everything that can go wrong in the shard manager, sorted by what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The metadata journal or snapshot is not what the manager wrote. Start-up stops here
    /// rather than serve a shorter history.
    #[error("corrupt metadata in {}: at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// A metadata file carries a format version this build does not know.
    #[error("{} has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A file-system operation on the metadata failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A shard log operation failed (includes [`sluice_storage::Error::Sealed`] when an
    /// append raced a split or merge: re-route and retry).
    #[error(transparent)]
    Storage(#[from] sluice_storage::Error),
    /// A write or sync of the metadata journal failed earlier, so whether the last change is
    /// on disk is unknown: every change and every put is refused until the manager is
    /// reopened (which replays what is really on disk).
    #[error("shard manager is poisoned by an earlier metadata I/O failure ({reason}); reopen it")]
    Poisoned {
        /// The error of the failed write or sync.
        reason: String,
    },
    /// The stream or shard does not exist (Kinesis `ResourceNotFoundException`).
    #[error("{0}")]
    ResourceNotFound(String),
    /// The stream exists but its state forbids the operation, or the name is taken
    /// (Kinesis `ResourceInUseException`).
    #[error("{message}")]
    ResourceInUse {
        /// The stream's status when the call was refused.
        status: StreamStatus,
        /// What was wrong.
        message: String,
    },
    /// An argument is malformed or out of range (Kinesis `InvalidArgumentException`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A quota would be exceeded (Kinesis `LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
}

/// The shard manager's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
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
