//! Start-up and the serving loop: raise the open-files limit, bind the gRPC listener, open
//! the broker (which replays the journal and recovers every shard), serve until a stop
//! signal, then shut down in order (see `shutdown`).
//!
//! The listener is bound before the broker opens, so a taken port fails fast, before any
//! recovery work. The bound address is logged as `grpc_addr=IP:PORT` in the `listening`
//! line, which is how a caller that asked for port 0 learns the port.
//!
//! Both listeners accept through `sluice_net`: one [`Gate`] caps their connections
//! together (at most the open-files limit minus `network.fd_reserve`, so accepting can
//! never take the descriptors shard logs need), and one [`Budget`] bounds their request
//! bytes in flight.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_broker::{Broker, BrokerConfig};
use sluice_kinesis::KinesisConfig;
use sluice_net::http::HttpLimits;
use sluice_net::{Budget, ConnTimeouts, Gate, Listener};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, NetworkSection};
use crate::shutdown::{self, StopSignals};

/// HTTP/2 receive window per gRPC stream: two full PutRecords requests (5 MiB each).
const H2_STREAM_WINDOW: u32 = 10 << 20;
/// HTTP/2 receive window per connection, shared by its streams.
const H2_CONNECTION_WINDOW: u32 = 64 << 20;
/// Largest HTTP/2 frame the server accepts (the protocol's default is 16 KiB).
const H2_FRAME_BYTES_MAX: u32 = 1 << 20;

/// Runs the server until SIGINT or SIGTERM, then stops it gracefully.
pub async fn run(config: Config, broker_config: BrokerConfig) -> anyhow::Result<()> {
    let network = Network::new(&config.network, raise_open_files_limit())?;
    let mut signals = StopSignals::install().context("cannot install signal handlers")?;

    let listener = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc_listen))?;
    let grpc_addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let kinesis_listener = TcpListener::bind(config.kinesis_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the Kinesis API on {}",
                config.kinesis_listen
            )
        })?;
    let kinesis_addr = kinesis_listener
        .local_addr()
        .context("cannot read the Kinesis listener's address")?;

    let broker = open_broker(&config, broker_config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let maintenance = broker.spawn_maintenance(stop_rx.clone());
    let message_bytes_max = sluice_grpc::message_bytes_max(&broker);
    let routes = sluice_grpc::routes(broker.clone(), stop_rx.clone())
        .await
        .context("cannot build the gRPC reflection service")?;

    // The accept loop sets TCP_NODELAY: without it a small reply waits for the client's
    // delayed ACK (up to 40 ms), where the p99 of every gRPC call sat.
    let grpc_incoming = network.listener(listener, "grpc").incoming();
    let server = network
        .grpc_server(message_bytes_max)
        .add_routes(routes)
        .serve_with_incoming_shutdown(grpc_incoming, shutdown::requested(stop_rx.clone()));
    let mut server = std::pin::pin!(server);
    let kinesis = tokio::spawn(sluice_kinesis::serve(
        network.listener(kinesis_listener, "kinesis"),
        broker.clone(),
        network.kinesis_config(),
        stop_rx.clone(),
    ));
    tracing::info!(%grpc_addr, %kinesis_addr, data_dir = %config.data_dir.display(), "listening");

    tokio::select! {
        served = &mut server => {
            served.context("the gRPC server failed")?;
            anyhow::bail!("the gRPC server stopped without being asked to");
        }
        signal = signals.recv() => tracing::info!(signal, "shutting down"),
    }

    // Stop accepting, end subscriptions and the maintenance timers.
    let _ = stop_tx.send(true);
    let grace = Duration::from_millis(config.shutdown_grace.0);
    let drained = async {
        let grpc = (&mut server).await;
        let kinesis = kinesis.await;
        (grpc, kinesis)
    };
    match tokio::time::timeout(grace, drained).await {
        Ok((grpc, kinesis)) => {
            grpc.context("the gRPC server failed while draining")?;
            match kinesis {
                Ok(served) => served.context("the Kinesis server failed while draining")?,
                Err(e) => tracing::error!(error = %e, "the Kinesis server task failed"),
            }
        }
        Err(_) => tracing::warn!(
            grace_ms = config.shutdown_grace.0,
            "calls still in flight after the grace period; closing anyway"
        ),
    }
    if let Err(e) = maintenance.await {
        tracing::error!(error = %e, "the maintenance task failed");
    }
    broker
        .shutdown()
        .await
        .context("could not sync every shard log on shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

/// Creates the data directory if needed and opens the broker on the blocking pool, since
/// recovery reads and syncs files.
async fn open_broker(config: &Config, broker_config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("data directory {} is unusable", data_dir.display()))?;
    let started = std::time::Instant::now();
    let repair = broker_config.manager.log.repair;
    if repair {
        tracing::warn!(data_dir = %data_dir.display(), "repair: checking every segment of every shard; damaged ones are set aside in lost+found");
    }
    let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
        .await
        .context("opening the broker panicked")?
        .with_context(|| {
            let hint = if repair {
                ""
            } else {
                " (if a shard log is damaged, `sluice --repair` sets the damaged segment aside and starts)"
            };
            format!("cannot open the data directory {}{hint}", data_dir.display())
        })?;
    tracing::info!(
        data_dir = %data_dir.display(),
        elapsed_ms = started.elapsed().as_millis(),
        "broker open"
    );
    Ok(broker)
}

/// What both listeners share: the connection gate, the request budget, the timeouts.
struct Network {
    gate: Gate,
    budget: Budget,
    timeouts: ConnTimeouts,
    body_timeout: Duration,
    http: HttpLimits,
}

impl Network {
    /// The limits of `[network]` under an open-files limit of `open_files_max`.
    fn new(network: &NetworkSection, open_files_max: Option<u64>) -> anyhow::Result<Network> {
        let connections_max = network.connections_cap(open_files_max)?;
        tracing::info!(
            connections_max,
            per_client = network.connections_per_client_max,
            open_files_max,
            fd_reserve = network.fd_reserve,
            "connection limits"
        );
        let millis = Duration::from_millis;
        Ok(Network {
            gate: Gate::new(connections_max, network.connections_per_client_max),
            budget: Budget::new(
                to_usize(network.request_bytes_in_flight_max.0),
                to_usize(network.request_bytes_in_flight_per_client_max.0),
                millis(network.request_bytes_wait.0),
            ),
            timeouts: ConnTimeouts {
                first_request: millis(network.header_read_timeout.0),
                idle: millis(network.idle_timeout.0),
            },
            body_timeout: millis(network.body_timeout.0),
            http: HttpLimits {
                header_read_timeout: millis(network.header_read_timeout.0),
                h2_streams_max: network.h2_streams_max,
            },
        })
    }

    fn listener(&self, tcp: TcpListener, name: &'static str) -> Listener {
        Listener::new(tcp, self.gate.clone(), self.timeouts, name)
    }

    /// The gRPC server: HTTP/2 settings and the request limits layer.
    fn grpc_server(
        &self,
        message_bytes_max: usize,
    ) -> tonic::transport::Server<
        tower_layer::Stack<sluice_grpc::RequestLimitsLayer, tower_layer::Identity>,
    > {
        tonic::transport::Server::builder()
            // A PutRecords of 500 x 1 KiB is half a MiB: with HTTP/2's default 64 KiB
            // windows and 16 KiB frames, each such request took several WINDOW_UPDATE
            // round trips and 32 frames. Large windows let several producers' batches
            // stream in at once.
            .initial_stream_window_size(Some(H2_STREAM_WINDOW))
            .initial_connection_window_size(Some(H2_CONNECTION_WINDOW))
            .max_frame_size(Some(H2_FRAME_BYTES_MAX))
            .max_concurrent_streams(Some(self.http.h2_streams_max))
            .layer(sluice_grpc::RequestLimitsLayer::new(
                self.budget.clone(),
                self.body_timeout,
                message_bytes_max,
            ))
    }

    /// The Kinesis listener's settings, sharing the budget with gRPC.
    fn kinesis_config(&self) -> KinesisConfig {
        KinesisConfig {
            body_timeout: self.body_timeout,
            budget: self.budget.clone(),
            http: self.http,
            ..KinesisConfig::default()
        }
    }
}

/// Sizes were checked against 1 TiB by `Config::validate`.
fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Raises the soft limit on open files to the hard limit: each shard holds its active
/// segment and indexes open, and each client holds a socket. Returns the soft limit in
/// force (`None`: unlimited).
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(hard) = limit.maximum else {
        // An unlimited hard limit cannot be set as the soft limit on Linux (it is capped
        // by fs.nr_open); keep the soft one.
        tracing::info!(soft = ?limit.current, hard = "unlimited", "open files limit");
        return limit.current;
    };
    if limit.current.is_some_and(|soft| soft >= hard) {
        tracing::info!(soft = hard, hard, "open files limit");
        return Some(hard);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(soft = hard, hard, "open files limit raised");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(soft = ?limit.current, hard, error = %e, "cannot raise the open files limit");
            limit.current
        }
    }
}
