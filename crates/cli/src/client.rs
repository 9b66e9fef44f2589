//! Connecting to the broker: the endpoint flag becomes a tonic channel with bounded
//! connect time and message sizes large enough for the biggest GetRecords reply.

use std::time::Duration;

use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, chain};

/// The generated gRPC client over one HTTP/2 connection.
pub type Client = SluiceClient<Channel>;

/// How long to wait for the TCP connection before giving up (exit code 3).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest message sent or received: a GetRecords reply holds up to 10 MiB of data,
/// and the proto asks clients to allow at least 32 MiB.
const MESSAGE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A client for `endpoint` (`http://host:port`; a bare `host:port` means http).
///
/// The connection is made by the first call, not here, so a command whose arguments are
/// wrong fails with a usage error (exit 2) before anything touches the network. A call
/// that cannot connect fails with UNAVAILABLE and no reason, which
/// [`CliError::from_status`] reports as a connection failure (exit 3).
pub fn connect(endpoint: &str) -> Result<Client, CliError> {
    let uri = with_scheme(endpoint);
    let channel = Endpoint::from_shared(uri)
        .map_err(|e| CliError::Usage(format!("invalid --endpoint {endpoint:?}: {}", chain(&e))))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_lazy();
    Ok(SluiceClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX))
}

/// `endpoint` with `http://` in front unless it names a scheme already.
fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_and_port_means_http() {
        assert_eq!(with_scheme("127.0.0.1:4567"), "http://127.0.0.1:4567");
        assert_eq!(with_scheme("http://h:1"), "http://h:1");
        assert_eq!(with_scheme("https://h:1"), "https://h:1");
    }
}
