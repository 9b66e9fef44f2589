//! Errors on the wire: `{"__type": ..., "message": ...}` with Kinesis's error names and
//! status codes. The mapping from broker errors is this file's one `match`.
//!
//! An internal failure's text is the broker's and names files of the data directory; it
//! travels in [`ApiError::detail`], which the router logs with the request id, and the
//! client gets [`INTERNAL_FAILURE_MESSAGE`].

use sluice_broker::Error;

/// What a client is told of an internal failure; the detail goes to the server's log.
pub const INTERNAL_FAILURE_MESSAGE: &str =
    "Internal service failure; the server's log has the details.";

/// An error as the Kinesis API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The `__type`: `ResourceNotFoundException`, `ValidationException`...
    pub kind: &'static str,
    /// The `message`.
    pub message: String,
    /// The HTTP status: 400 for client errors, 500 for internal failures.
    pub status: u16,
    /// What only the server's log sees (an internal failure's own text).
    pub detail: Option<String>,
}

impl ApiError {
    /// A client error (400) of the given type.
    pub fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            status: 400,
            detail: None,
        }
    }

    /// An internal failure (500): the client sees [`INTERNAL_FAILURE_MESSAGE`], the log
    /// `detail`.
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError {
            kind: "InternalFailureException",
            message: INTERNAL_FAILURE_MESSAGE.to_owned(),
            status: 500,
            detail: Some(detail.into()),
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
        let kind = match e {
            Error::ResourceNotFound(_) => "ResourceNotFoundException",
            Error::ResourceInUse(_) => "ResourceInUseException",
            Error::InvalidArgument(_) => "InvalidArgumentException",
            Error::Validation(_) => "ValidationException",
            Error::LimitExceeded(_) => "LimitExceededException",
            Error::ProvisionedThroughputExceeded(_) => "ProvisionedThroughputExceededException",
            Error::ExpiredIterator(_) => "ExpiredIteratorException",
            Error::Unsupported(_) => "UnsupportedOperationException",
            Error::Internal(detail) => return ApiError::internal(detail),
            // The broker's error set is closed in practice; a new variant is an internal
            // failure until it is mapped here.
            other => return ApiError::internal(other.to_string()),
        };
        ApiError::new(kind, e.to_string())
    }
}

/// The message of a failed PutRecords entry as a client may see it: an internal
/// failure's text is logged and replaced ([`INTERNAL_FAILURE_MESSAGE`]).
pub fn entry_message(error_code: &str, error_message: String) -> String {
    if error_code == "InternalFailure" {
        tracing::error!(error = %error_message, "a PutRecords entry failed");
        return INTERNAL_FAILURE_MESSAGE.to_owned();
    }
    error_message
}

/// `StreamName` -> `streamName`, as member paths appear in validation messages.
pub fn lower_camel(member: &str) -> String {
    let mut c = member.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_keep_their_text_out_of_the_message() {
        let detail = "I/O error on /srv/sluice/data/consumers.tmp: Is a directory (os error 21)";
        let e = ApiError::from(Error::Internal(detail.into()));
        assert_eq!(e.kind, "InternalFailureException");
        assert_eq!(e.status, 500);
        assert_eq!(e.message, INTERNAL_FAILURE_MESSAGE);
        assert_eq!(e.detail.as_deref(), Some(detail));
        assert_eq!(
            entry_message("InternalFailure", detail.into()),
            INTERNAL_FAILURE_MESSAGE
        );
        let client = ApiError::from(Error::ResourceNotFound("Stream s not found".into()));
        assert_eq!(
            (client.status, client.message.as_str()),
            (400, "Stream s not found")
        );
        assert_eq!(client.detail, None);
    }
}
