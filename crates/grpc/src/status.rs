//! The one place where a broker [`Error`] becomes a gRPC [`Status`].
//!
//! Every status carries a machine-readable reason, the Kinesis exception name, twice: in
//! the response metadata key [`REASON_METADATA_KEY`] (for programs) and as a
//! `[ReasonException] ` prefix of the message (for people and for clients that drop
//! metadata). The code follows gRPC's meaning of each category, so generic clients retry
//! and report sensibly.

use sluice_broker::Error;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The response metadata key holding the reason of a failed call.
pub const REASON_METADATA_KEY: &str = "x-sluice-error";

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
        tracing::warn!(reason, error = %error, "internal failure answered to a client");
    }
    let mut status = Status::new(code, format!("[{reason}] {error}"));
    status
        .metadata_mut()
        .insert(REASON_METADATA_KEY, MetadataValue::from_static(reason));
    status
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
        let message = error.to_string();
        let status = to_status(error);
        assert_eq!(status.code(), code);
        assert_eq!(reason(&status), Some(reason_expected));
        assert_eq!(status.message(), format!("[{reason_expected}] {message}"));
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
