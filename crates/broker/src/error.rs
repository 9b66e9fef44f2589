//! The broker's one error type. Each variant is a Kinesis error category; the front-ends
//! map them to their wire form (`grpc::status`, `kinesis::errors`), in one place each.

/// What went wrong, by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream, shard or consumer does not exist (`ResourceNotFoundException`).
    #[error("{0}")]
    ResourceNotFound(String),
    /// The resource exists but its state forbids the call, or the name is taken
    /// (`ResourceInUseException`).
    #[error("{0}")]
    ResourceInUse(String),
    /// An argument is wrong: out of range, malformed, or inconsistent with the others
    /// (`InvalidArgumentException`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A request breaks a constraint of the API model: a length, a pattern, a count
    /// (`ValidationException`).
    #[error("{0}")]
    Validation(String),
    /// A quota would be exceeded (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// A shard's throughput limit was hit (`ProvisionedThroughputExceededException`).
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    /// The shard iterator is older than five minutes (`ExpiredIteratorException`).
    #[error("{0}")]
    ExpiredIterator(String),
    /// The operation exists in the Kinesis API but Sluice does not implement it.
    #[error("{0}")]
    Unsupported(String),
    /// A fault inside the broker: disk error, corrupt data, poisoned log
    /// (`InternalFailureException`). Nothing acknowledged is lost; the message says what.
    #[error("{0}")]
    Internal(String),
}

/// The broker's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sluice_shards::Error> for Error {
    fn from(e: sluice_shards::Error) -> Self {
        use sluice_shards::Error as S;
        match e {
            S::ResourceNotFound(m) => Error::ResourceNotFound(m),
            S::ResourceInUse { message, .. } => Error::ResourceInUse(message),
            S::InvalidArgument(m) => Error::InvalidArgument(m),
            S::LimitExceeded(m) => Error::LimitExceeded(m),
            S::Storage(e) => e.into(),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<sluice_storage::Error> for Error {
    fn from(e: sluice_storage::Error) -> Self {
        match e {
            sluice_storage::Error::InvalidArgument(m) => Error::InvalidArgument(m),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("a storage task failed: {e}"))
    }
}
