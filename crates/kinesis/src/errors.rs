//! Errors on the wire: `{"__type": ..., "message": ...}` with Kinesis's error names and
//! status codes. The mapping from broker errors is this file's one `match`.

use sluice_broker::Error;

/// An error as the Kinesis API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The `__type`: `ResourceNotFoundException`, `ValidationException`...
    pub kind: &'static str,
    /// The `message`.
    pub message: String,
    /// The HTTP status: 400 for client errors, 500 for internal failures.
    pub status: u16,
}

impl ApiError {
    /// A client error (400) of the given type.
    pub fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            status: 400,
        }
    }

    /// The body could not be read as the operation's input (`SerializationException`).
    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::new("SerializationException", message)
    }

    /// A model constraint failed (`ValidationException`).
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    /// A required member is absent.
    pub fn missing(member: &str) -> ApiError {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            lower_camel(member)
        ))
    }

    /// An argument is wrong (`InvalidArgumentException`).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidArgumentException", message)
    }

    /// An operation Sluice does not implement.
    pub fn unsupported(op: &str, why: &str) -> ApiError {
        ApiError::new(
            "UnsupportedOperationException",
            format!("{op} is not supported by Sluice: {why}"),
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let message = e.to_string();
        let kind = match e {
            Error::ResourceNotFound(_) => "ResourceNotFoundException",
            Error::ResourceInUse(_) => "ResourceInUseException",
            Error::InvalidArgument(_) => "InvalidArgumentException",
            Error::Validation(_) => "ValidationException",
            Error::LimitExceeded(_) => "LimitExceededException",
            Error::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            Error::ExpiredIterator(_) => "ExpiredIteratorException",
            Error::Unsupported(_) => "UnsupportedOperationException",
            Error::Internal(_) => {
                return ApiError {
                    kind: "InternalFailureException",
                    message,
                    status: 500,
                };
            }
            // The broker's error set is closed in practice; a new variant is an internal
            // failure until it is mapped here.
            _ => {
                return ApiError {
                    kind: "InternalFailureException",
                    message,
                    status: 500,
                };
            }
        };
        ApiError {
            kind,
            message,
            status: 400,
        }
    }
}

/// `StreamName` -> `streamName`, as member paths appear in validation messages.
pub fn lower_camel(member: &str) -> String {
    let mut c = member.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}
