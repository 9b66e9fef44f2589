//! The gRPC front-end of Sluice: the `sluice.v1.Sluice` service over a [`Broker`], plus
//! the standard gRPC health and reflection services, so `grpcurl` works out of the box.
//!
//! - `service`: [`SluiceService`], thin handlers (decode, call the broker, encode);
//! - `convert`: message mapping between `sluice_proto::v1` and the broker's types;
//! - `get_records`: GetRecords replies written straight from the broker's page, and
//!   [`SluiceRoutes`], which serves that method so, Subscribe through `subscribe`, and the
//!   rest through the generated server;
//! - `subscribe`: Subscribe's response body, one message per event that holds the event's
//!   bytes against the subscription budgets until it is sent;
//! - `status`: the one mapping from `sluice_broker::Error` to `tonic::Status`, with the
//!   Kinesis exception name as a machine-readable reason;
//! - `limits`: [`RequestLimitsLayer`], request bodies charged to the in-flight budget
//!   (`sluice_net::Budget`) and bounded in time, refused as RESOURCE_EXHAUSTED or
//!   DEADLINE_EXCEEDED.
//!
//! [`routes`] assembles everything a server needs; the server binds, serves and shuts down.
//! This crate knows tonic and the broker, and nothing of configuration files or sockets.

#![warn(missing_docs)]

pub mod convert;
pub mod get_records;
pub mod limits;
pub mod service;
pub mod status;
pub mod subscribe;

use std::sync::Arc;

use sluice_broker::Broker;
use sluice_proto::v1::sluice_server::SluiceServer;
use tokio::sync::watch;
use tonic::service::Routes;

pub use get_records::SluiceRoutes;
pub use limits::RequestLimitsLayer;
pub use service::SluiceService;

/// The fully qualified name of the Sluice service, as reflection and health report it.
pub const SERVICE_NAME: &str = "sluice.v1.Sluice";

/// The largest gRPC message the service reads or writes: room for the largest PutRecords
/// request or GetRecords response the broker allows, or one record of the largest size a
/// stream may set (10 MiB), whichever is larger, plus framing (keys, sequence numbers).
pub fn message_bytes_max(broker: &Broker) -> usize {
    const RECORD_BYTES_MAX: usize = 10 * 1024 * 1024;
    const FRAMING_BYTES: usize = 8 * 1024 * 1024;
    let config = broker.config();
    let payload = config
        .put_records_bytes_max
        .max(config.get_records_bytes_max)
        .max(RECORD_BYTES_MAX);
    payload.saturating_add(FRAMING_BYTES)
}

/// The Sluice service, gRPC health (`grpc.health.v1.Health`, SERVING for `""` and
/// [`SERVICE_NAME`]) and reflection (`grpc.reflection.v1` and `v1alpha`), ready for
/// `tonic::transport::Server::add_routes`. Subscriptions end once `shutdown` turns true.
pub async fn routes(
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Result<Routes, tonic_reflection::server::Error> {
    let message_bytes_max = message_bytes_max(&broker);
    let sluice = SluiceRoutes::new(SluiceService::new(broker, shutdown), message_bytes_max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SluiceServer<SluiceService>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    Ok(Routes::new(sluice)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

#[cfg(test)]
mod tests {
    use sluice_proto::v1::sluice_server::SluiceServer;
    use tonic::server::NamedService;

    use super::*;

    #[test]
    fn service_name_matches_the_generated_server() {
        assert_eq!(
            <SluiceServer<SluiceService> as NamedService>::NAME,
            SERVICE_NAME
        );
    }
}
