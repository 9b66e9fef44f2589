//! Helpers shared by the broker's integration tests.

// Not every test file uses every helper; helpers panic on failure like the tests do.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use sluice_broker::{Broker, StreamStatus};

/// Waits until `name` is ACTIVE: splits, merges and resizes are carried out by the
/// broker's background worker thread after the call returns. Polls, bounded by a minute
/// of real time (std's clock, not tokio's: on a paused tokio clock the worker thread's
/// progress is invisible to tokio, so a bound counted in tokio sleeps could run out while
/// the worker is still busy). Never a timing assertion: a minute is far beyond what any
/// change here takes.
pub async fn wait_active(b: &Broker, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(d) = b.describe_stream(name, Some(1), None).await {
            if d.status == StreamStatus::Active {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream {name} did not become ACTIVE within a minute");
}
