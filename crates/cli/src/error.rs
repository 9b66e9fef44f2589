//! What a failed command prints, and the exit code it ends with.
//!
//! Three kinds of failure, told apart because scripts react differently to each: the
//! command line was wrong (2, like clap's own usage errors), the server refused the call
//! (1, with the Kinesis reason the server sent), or the server could not be reached (3).
//! A server error is printed the way the AWS CLI prints one, so it reads familiar:
//! `An error occurred (ResourceNotFoundException) when calling the DescribeStream
//! operation: ...`.

use std::fmt;

use tonic::{Code, Status};

/// The response metadata key holding the Kinesis reason of a failed call.
const REASON_METADATA_KEY: &str = "x-sluice-error";

/// A failed command.
#[derive(Debug)]
pub enum CliError {
    /// The command line (or a file it names) is wrong; nothing was sent.
    Usage(String),
    /// The server answered the call with an error.
    Server {
        /// The RPC, in the AWS operation spelling (`DescribeStream`).
        operation: &'static str,
        /// The Kinesis exception name (`ResourceNotFoundException`), or the gRPC code
        /// when the server sent no reason.
        reason: String,
        /// The server's message, without the reason prefix.
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    Connection(String),
    /// Printing the result failed (a closed pipe, a full disk).
    Output(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Server { .. } | CliError::Output(_) => 1,
            CliError::Connection(_) => 3,
        }
    }

    /// The failure a gRPC status stands for, for a call to `operation`.
    pub fn from_status(operation: &'static str, status: &Status) -> CliError {
        let metadata_reason = status
            .metadata()
            .get(REASON_METADATA_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (prefix_reason, message) = split_reason_prefix(status.message());
        let reason = metadata_reason.or(prefix_reason);
        match reason {
            Some(reason) => CliError::Server {
                operation,
                reason,
                message: message.to_owned(),
            },
            // No reason means the status did not come from the Sluice service: tonic made
            // it because the connection failed or broke.
            None if is_transport_code(status.code()) => CliError::Connection(format!(
                "{operation} failed: {} ({:?})",
                status.message(),
                status.code()
            )),
            None => CliError::Server {
                operation,
                reason: format!("{:?}", status.code()),
                message: message.to_owned(),
            },
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(message) => write!(f, "error: {message}"),
            CliError::Server {
                operation,
                reason,
                message,
            } => write!(
                f,
                "An error occurred ({reason}) when calling the {operation} operation: {message}"
            ),
            CliError::Connection(message) => write!(f, "error: connection failed: {message}"),
            CliError::Output(message) => write!(f, "error: cannot write the output: {message}"),
        }
    }
}

/// The text of an error and of every error it wraps, outermost first; tonic's transport
/// errors say only "transport error" at the top.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    // Error chains are short; the bound only guards against a cycle.
    for _ in 0..16 {
        let Some(inner) = source else { break };
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Splits `[Reason] message` into the reason and the message.
fn split_reason_prefix(message: &str) -> (Option<String>, &str) {
    let Some(rest) = message.strip_prefix('[') else {
        return (None, message);
    };
    match rest.split_once("] ") {
        Some((reason, text)) if is_reason(reason) => (Some(reason.to_owned()), text),
        _ => (None, message),
    }
}

/// Whether `text` looks like a Kinesis exception name.
fn is_reason(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Codes tonic itself produces when a connection fails or breaks.
fn is_transport_code(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled)
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn check(status: Status, expected: &str, exit_code: u8) {
        let error = CliError::from_status("DescribeStream", &status);
        assert_eq!(error.to_string(), expected);
        assert_eq!(error.exit_code(), exit_code);
    }

    #[test]
    fn server_error_prints_reason_and_message_like_the_aws_cli() {
        let mut status = Status::not_found("[ResourceNotFoundException] Stream s not found");
        status.metadata_mut().insert(
            REASON_METADATA_KEY,
            MetadataValue::from_static("ResourceNotFoundException"),
        );
        check(
            status,
            "An error occurred (ResourceNotFoundException) when calling the DescribeStream \
             operation: Stream s not found",
            1,
        );
    }

    #[test]
    fn reason_is_taken_from_the_message_prefix_when_metadata_is_missing() {
        check(
            Status::invalid_argument("[ValidationException] bad"),
            "An error occurred (ValidationException) when calling the DescribeStream operation: bad",
            1,
        );
    }

    #[test]
    fn status_without_reason_from_a_broken_connection_is_a_connection_failure() {
        check(
            Status::unavailable("tcp connect error"),
            "error: connection failed: DescribeStream failed: tcp connect error (Unavailable)",
            3,
        );
    }

    #[test]
    fn status_without_reason_otherwise_names_its_grpc_code() {
        check(
            Status::unimplemented("no such method"),
            "An error occurred (Unimplemented) when calling the DescribeStream operation: \
             no such method",
            1,
        );
    }

    #[test]
    fn a_bracket_that_is_not_a_reason_stays_in_the_message() {
        assert_eq!(split_reason_prefix("[a b] c"), (None, "[a b] c"));
        assert_eq!(split_reason_prefix("plain"), (None, "plain"));
    }

    #[test]
    fn usage_errors_exit_with_2() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }
}
