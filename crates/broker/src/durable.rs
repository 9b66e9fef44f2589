//! Waiting for durability without holding a thread per request.
//!
//! A put writes its records on the blocking pool ([`Log::append_nowait`]) and then waits,
//! as a future, until the shard's log is durable past them. Per shard, at most one task on
//! the blocking pool leads the syncs ([`Log::wait_durable_until`], the log's own group
//! commit) and publishes each new durable point on a watch channel; every waiting put of
//! that shard wakes from it. 64 concurrent single-record puts on 4 shards thus park 64
//! futures and keep 4 blocking threads busy, instead of parking 64 threads on a condition
//! variable.
//!
//! The hand-off cannot lose a wake-up: a put writes *before* it kicks the driver, and the
//! driver clears its running flag *before* it reads the durable point (publishing it) and
//! looks for unsynced records, so either the running driver sees the put's records and
//! publishes a durable point past them (its own sync's, or one a seal or roll reached
//! meanwhile), or the put finds the flag clear and starts a new driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_storage::{Log, SeqNo};
use tokio::sync::watch;

/// The durable point of one log, as last published by its driver.
#[derive(Debug, Clone, Default)]
struct Durable {
    next: SeqNo,
    /// Set once a sync failed: the log is poisoned, nothing more becomes durable.
    failed: Option<String>,
}

/// Leads one log's syncs on the blocking pool and wakes the puts waiting for them.
#[derive(Debug, Default)]
pub(crate) struct SyncDriver {
    running: AtomicBool,
    durable: watch::Sender<Durable>,
}

impl SyncDriver {
    /// Waits until every record of `log` before `target` is durable. The records must have
    /// been written (by [`Log::append_nowait`]) before this is called.
    pub(crate) async fn wait(
        self: &Arc<Self>,
        log: &Arc<Log>,
        target: SeqNo,
    ) -> std::result::Result<(), String> {
        let mut rx = self.durable.subscribe();
        if log.durable_next() >= target {
            return Ok(());
        }
        self.kick(log);
        let reached = rx
            .wait_for(|d| d.next >= target || d.failed.is_some())
            .await
            .map_err(|_| "the shard's sync driver is gone".to_owned())?;
        if reached.next >= target {
            Ok(())
        } else {
            Err(reached
                .failed
                .clone()
                .unwrap_or_else(|| "sync failed".to_owned()))
        }
    }

    /// Makes sure a sync that will cover `target` is under way, without waiting for it.
    pub(crate) fn start(self: &Arc<Self>, log: &Arc<Log>, target: SeqNo) {
        if log.durable_next() < target {
            self.kick(log);
        }
    }

    /// Raises the published durable point to `next` (it never goes back), and records a
    /// failure.
    fn publish(&self, next: SeqNo, failed: Option<String>) {
        self.durable.send_if_modified(|d| {
            let raised = next > d.next;
            d.next = d.next.max(next);
            let failing = failed.is_some() && d.failed.is_none();
            if failing {
                d.failed = failed;
            }
            raised || failing
        });
    }

    /// Starts a driver on the blocking pool unless one is running.
    fn kick(self: &Arc<Self>, log: &Arc<Log>) {
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let (driver, log) = (Arc::clone(self), Arc::clone(log));
        tokio::task::spawn_blocking(move || {
            loop {
                let want = log.next_seq();
                let result = log.wait_durable_until(want);
                let failed = result.err().map(|e| e.to_string());
                let stop = failed.is_some();
                driver.publish(log.durable_next(), failed);
                driver.running.store(false, Ordering::SeqCst);
                // Publish again now that the flag is clear: a sync outside this driver
                // (a seal or a roll) may have made more durable since, and a put that
                // found the flag set is waiting for this driver to say so.
                let durable = log.durable_next();
                driver.publish(durable, None);
                // Records written while this sync ran need another; take it unless a put
                // already started a new driver.
                if stop || durable >= log.next_seq() || driver.running.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }
}
