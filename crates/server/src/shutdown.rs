//! Graceful shutdown: which signals stop the server, and the order of the stop.
//!
//! The handlers are installed before the server announces its address, so a SIGTERM sent
//! as soon as the address is known is always a graceful stop, never the default kill.
//! The order after a signal: the shutdown watch turns true (the listener stops accepting
//! and every Subscribe stream ends), in-flight calls finish within the grace period, the
//! maintenance task stops, then the broker syncs and checkpoints every shard log.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The stop signals, installed.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Installs handlers for SIGINT and SIGTERM. Needs a tokio runtime.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone): the shutdown future handed to
/// tonic.
pub async fn requested(mut stop: tokio::sync::watch::Receiver<bool>) {
    // An error means the sender was dropped, which only happens on the way out anyway.
    let _ = stop.wait_for(|stop| *stop).await;
}
