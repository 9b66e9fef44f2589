//! The broker's deferred work: the timers (retention: deleting expired segments, expiring
//! closed shards, purging deleted streams; in the relaxed sync mode, the periodic sync),
//! and [`AdminWorker`], the thread that carries out stream administration in the
//! background (reshards, purges, removing deleted streams' files) as soon as a call asks
//! for it.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use sluice_shards::{ShardManager, WorkReport};
use sluice_storage::SyncMode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, blocking, lock, now_ms};
use crate::error::Result;

/// The longest the admin worker sleeps before looking for due work on its own (a deleted
/// stream's delay ending, work left by a failed pass).
const ADMIN_WORKER_IDLE: Duration = Duration::from_secs(1);

/// The thread that runs [`ShardManager::run_pending`]: woken by every administrative call,
/// and on its own when a deletion's delay ends. One thread, so background work runs one
/// change at a time and never on the async runtime.
pub(crate) struct AdminWorker {
    manager: Arc<ShardManager>,
    signal: Arc<(Mutex<WorkerSignal>, Condvar)>,
    thread: Mutex<Option<ThreadHandle<()>>>,
}

#[derive(Default)]
struct WorkerSignal {
    /// Work was asked for since the last pass started.
    requested: bool,
    stop: bool,
}

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
        let (report, tick, work) = blocking(move || {
            let now = now_ms();
            // Normally the admin worker has done this already; a pass here costs nothing
            // then, and keeps administration going if that thread could not start.
            let work = m.run_pending(&now_ms)?;
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
            Ok((report, tick, work))
        })
        .await?;
        self.after_admin_work(&work);
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

impl AdminWorker {
    /// Starts the worker thread for `manager`; after a pass it hands the report to the
    /// broker (if it still exists) to wake readers and drop per-shard state.
    pub(crate) fn start(manager: Arc<ShardManager>, broker: Weak<Broker>) -> AdminWorker {
        let signal: Arc<(Mutex<WorkerSignal>, Condvar)> = Arc::default();
        let thread = {
            let (signal, manager) = (Arc::clone(&signal), Arc::clone(&manager));
            std::thread::Builder::new()
                .name("sluice-admin".into())
                .spawn(move || run_worker(&manager, &broker, &signal))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Administration then waits for the maintenance timer's passes.
                tracing::error!(error = %e, "cannot start the stream administration thread");
                None
            }
        };
        AdminWorker {
            manager,
            signal,
            thread: Mutex::new(thread),
        }
    }

    /// Asks for a pass now.
    pub(crate) fn wake(&self) {
        let (state, cv) = &*self.signal;
        lock(state).requested = true;
        cv.notify_all();
    }

    /// Stops the thread after its current pass and waits for it (unless called from the
    /// thread itself). Pending work stays pending: the next start finds the streams as
    /// the journal has them.
    pub(crate) fn stop(&self) {
        let (state, cv) = &*self.signal;
        lock(state).stop = true;
        self.manager.stop_work();
        cv.notify_all();
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// The worker's loop: wait until asked or until work is due, run a pass, report it.
fn run_worker(
    manager: &ShardManager,
    broker: &Weak<Broker>,
    signal: &(Mutex<WorkerSignal>, Condvar),
) {
    let (state, cv) = signal;
    loop {
        {
            let mut s = lock(state);
            let now = now_ms();
            let due = manager.next_work_at(now).is_some_and(|at| at <= now);
            if !s.requested && !due && !s.stop {
                let wait = manager
                    .next_work_at(now)
                    .map_or(ADMIN_WORKER_IDLE, |at| {
                        Duration::from_millis(at.0.saturating_sub(now.0))
                    })
                    .min(ADMIN_WORKER_IDLE);
                s = cv
                    .wait_timeout(s, wait)
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            if s.stop {
                return;
            }
            s.requested = false;
        }
        match manager.run_pending(&now_ms) {
            Ok(report) => {
                if let Some(b) = broker.upgrade() {
                    b.after_admin_work(&report);
                }
            }
            Err(e) => tracing::error!(error = %e, "stream administration failed"),
        }
    }
}

impl Broker {
    /// What the broker does after a pass of background administration: readers of shards
    /// a reshard closed look again now (not at their next heartbeat), and what it kept
    /// for purged streams goes.
    pub(crate) fn after_admin_work(&self, report: &WorkReport) {
        if !report.reshards_committed.is_empty() {
            self.wake_all();
        }
        for uid in &report.streams_purged_uids {
            self.forget(*uid, None);
        }
        if report != &WorkReport::default() {
            tracing::debug!(?report, "stream administration pass");
        }
    }
}
