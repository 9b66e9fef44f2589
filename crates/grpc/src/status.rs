//! The one place where a broker [`Error`] becomes a gRPC [`Status`].
//!
//! Every status carries a machine-readable reason, the Kinesis exception name, twice: in
//! the response metadata key [`REASON_METADATA_KEY`] (for programs) and as a
//! `[ReasonException] ` prefix of the message (for people and for clients that drop
//! metadata). The code follows gRPC's meaning of each category, so generic clients retry
//! and report sensibly.
//!
//! An internal failure's text is the broker's, which names files of the data directory
//! (`I/O error on /var/lib/sluice/streams/...`): it is logged, and the client gets
//! [`INTERNAL_FAILURE_MESSAGE`] instead. Requests that do not decode are refused by the
//! codec (`sluice_proto::codec`) with INVALID_ARGUMENT and `SerializationException`.

use sluice_broker::Error;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The response metadata key holding the reason of a failed call.
pub use sluice_proto::codec::REASON_METADATA_KEY;

/// What a client is told of an internal failure; the detail goes to the server's log.
pub const INTERNAL_FAILURE_MESSAGE: &str =
    "Internal service failure; the server's log has the details.";

/// The gRPC code and the Kinesis exception name of a broker error.
pub fn code_and_reason(error: &Error) -> (Code, &'static str) {
    match error {
        Error::ResourceNotFound(_) => (Code::NotFound, "ResourceNotFoundException"),
        // The broker does not say whether the name is taken or the state forbids the call,
        // so both are FAILED_PRECONDITION: retrying unchanged will not help until the
        // stream's state changes.
        Error::ResourceInUse(_) => (Code::FailedPrecondition, "ResourceInUseException"),
        Error::InvalidArgument(_) => (Code::InvalidArgument, "InvalidArgumentException"),
        Error::Validation(_) => (Code::InvalidArgument, "ValidationException"),
        Error::LimitExceeded(_) => (Code::ResourceExhausted, "LimitExceededException"),
        Error::ProvisionedThroughputExceeded(_) => (
            Code::ResourceExhausted,
            "ProvisionedThroughputExceededException",
        ),
        Error::ExpiredIterator(_) => (Code::FailedPrecondition, "ExpiredIteratorException"),
        Error::Unsupported(_) => (Code::Unimplemented, "UnsupportedOperationException"),
        Error::Internal(_) => (Code::Internal, "InternalFailureException"),
        // `Error` is non-exhaustive: a variant added later is an internal failure here
        // until it is given its own mapping.
        _ => (Code::Internal, "InternalFailureException"),
    }
}

/// The status a failed broker call is answered with.
pub fn to_status(error: Error) -> Status {
    let (code, reason) = code_and_reason(&error);
    if code == Code::Internal {
        tracing::error!(reason, error = %error, "internal failure answered to a client");
        return with_reason(code, reason, INTERNAL_FAILURE_MESSAGE);
    }
    with_reason(code, reason, &error.to_string())
}

/// A status with `reason` in [`REASON_METADATA_KEY`] and as a `[Reason] ` prefix of
/// `message`.
pub fn with_reason(code: Code, reason: &'static str, message: &str) -> Status {
    let mut status = Status::new(code, format!("[{reason}] {message}"));
    status
        .metadata_mut()
        .insert(REASON_METADATA_KEY, MetadataValue::from_static(reason));
    status
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

/// The reason of a status made by [`to_status`], read from its metadata.
pub fn reason(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: Error, code: Code, reason_expected: &str) {
        let message = match error {
            Error::Internal(_) => INTERNAL_FAILURE_MESSAGE.to_owned(),
            _ => error.to_string(),
        };
        let status = to_status(error);
        assert_eq!(status.code(), code);
        assert_eq!(reason(&status), Some(reason_expected));
        assert_eq!(status.message(), format!("[{reason_expected}] {message}"));
    }

    #[test]
    fn internal_failures_do_not_show_the_brokers_text() {
        let detail = "I/O error on /srv/sluice/data/streams/7/shardId-000000000000/00000000000000000000.sidx: Too many open files (os error 24)";
        let status = to_status(Error::Internal(detail.into()));
        assert_eq!(
            status.message(),
            format!("[InternalFailureException] {INTERNAL_FAILURE_MESSAGE}")
        );
        assert!(!format!("{status:?}").contains("/srv/sluice"));
        assert_eq!(
            entry_message("InternalFailure", detail.into()),
            INTERNAL_FAILURE_MESSAGE
        );
        let throttled = "Rate exceeded for shard shardId-000000000000";
        assert_eq!(
            entry_message("ProvisionedThroughputExceededException", throttled.into()),
            throttled
        );
    }

    #[test]
    fn every_error_maps_to_its_code_and_kinesis_name() {
        let m = || "m".to_string();
        check(
            Error::ResourceNotFound(m()),
            Code::NotFound,
            "ResourceNotFoundException",
        );
        check(
            Error::ResourceInUse(m()),
            Code::FailedPrecondition,
            "ResourceInUseException",
        );
        check(
            Error::InvalidArgument(m()),
            Code::InvalidArgument,
            "InvalidArgumentException",
        );
        check(
            Error::Validation(m()),
            Code::InvalidArgument,
            "ValidationException",
        );
        check(
            Error::LimitExceeded(m()),
            Code::ResourceExhausted,
            "LimitExceededException",
        );
        check(
            Error::ProvisionedThroughputExceeded(m()),
            Code::ResourceExhausted,
            "ProvisionedThroughputExceededException",
        );
        check(
            Error::ExpiredIterator(m()),
            Code::FailedPrecondition,
            "ExpiredIteratorException",
        );
        check(
            Error::Unsupported(m()),
            Code::Unimplemented,
            "UnsupportedOperationException",
        );
        check(
            Error::Internal(m()),
            Code::Internal,
            "InternalFailureException",
        );
    }
}
