//! The broker's timers: retention (deleting expired segments, expiring closed shards,
//! purging deleted streams) and, in the relaxed sync mode, the periodic sync.

use std::sync::Arc;
use std::time::Duration;

use sluice_storage::SyncMode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, blocking, now_ms};
use crate::error::Result;

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Segments deleted by retention.
    pub segments_deleted: usize,
    /// Closed shards whose records all expired.
    pub shards_expired: usize,
    /// Deleted streams whose data is now gone.
    pub streams_purged: usize,
}

impl Broker {
    /// Runs one maintenance pass now.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport> {
        let m = self.manager.clone();
        let (report, tick) = blocking(move || {
            let now = now_ms();
            let tick = m.tick(now)?;
            let mut report = MaintenanceReport {
                shards_expired: tick.shards_expired.len(),
                streams_purged: tick.streams_purged.len(),
                ..MaintenanceReport::default()
            };
            for (stream, hours, log) in m.live_logs() {
                match log.apply_retention(now, u64::from(hours) * 3_600_000) {
                    Ok(out) => report.segments_deleted += out.segments_deleted,
                    Err(e) => tracing::error!(stream, log = %log.dir().display(), error = %e, "retention failed"),
                }
            }
            Ok((report, tick))
        })
        .await?;
        for uid in tick.streams_purged_uids {
            self.forget(uid, None);
        }
        for (uid, shard) in tick.shards_expired_by_uid {
            self.forget(uid, Some(shard.index()));
        }
        Ok(report)
    }

    /// Starts the maintenance timers; they stop when `shutdown` turns true or is dropped.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut maintenance = tokio::time::interval(Duration::from_millis(
                this.config.maintenance_interval_ms.max(1),
            ));
            let sync_every = match this.config.manager.log.sync {
                SyncMode::Interval { interval_ms } => Duration::from_millis(interval_ms.max(1)),
                SyncMode::Always => Duration::from_secs(3600),
            };
            let mut sync = tokio::time::interval(sync_every);
            loop {
                tokio::select! {
                    _ = maintenance.tick() => {
                        match this.run_maintenance().await {
                            Ok(r) if r != MaintenanceReport::default() => tracing::info!(
                                segments_deleted = r.segments_deleted,
                                shards_expired = r.shards_expired,
                                streams_purged = r.streams_purged,
                                "retention"
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::error!(error = %e, "maintenance failed"),
                        }
                    }
                    _ = sync.tick(), if matches!(this.config.manager.log.sync, SyncMode::Interval { .. }) => {
                        let m = this.manager.clone();
                        let synced = blocking(move || {
                            for (_, _, log) in m.live_logs() {
                                log.sync_if_due()?;
                            }
                            Ok(())
                        })
                        .await;
                        if let Err(e) = synced {
                            tracing::error!(error = %e, "periodic sync failed");
                        }
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }
}
