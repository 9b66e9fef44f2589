//! [`SyncScheduler`]: how the logs of one data directory share the disk's sync budget.
//!
//! Each log already gathers its own concurrent appends into one sync (group commit, see
//! `log`). Across logs, a batch spread over many shards would still cost one `fdatasync`
//! per shard. The scheduler lets up to `coalesce_after` of those run side by side, as
//! before (few shards: no queueing, no added latency); past that, waiting logs queue and one
//! of them issues a single `syncfs` that makes every queued log durable at once, and every
//! log whose request arrived while it ran joins the next one. So 1,000 shards written by one
//! request cost a handful of syncs, not 1,000.
//!
//! Correctness: a request is answered only by a sync that *started* after the request was
//! made (the caller's bytes were already written), so nothing is acknowledged that the sync
//! did not cover. A failed `syncfs` fails every request it was answering: each of those logs
//! poisons itself, as after a failed `fdatasync`, because the error may be any file's.
//!
//! `syncfs` is a data barrier only where the file system makes it one: on FUSE it returns
//! success without flushing anything below. [`SyncScheduler::for_data_dir`] therefore uses
//! it only on file systems known to flush every file's data with it (ext4, xfs, btrfs;
//! [`crate::fs::FsInfo`]), unless the operator's [`SyncfsPolicy`] says otherwise; everywhere
//! else every log syncs its own file with `fdatasync`.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::fs::{FileHandle, FileSystem};

/// When the syncs of many waiting logs may be shared as one `syncfs` (`storage.syncfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncfsPolicy {
    /// Only where the data directory's file system is known to flush every file's data
    /// with `syncfs` (ext4, xfs, btrfs); elsewhere one `fdatasync` per log.
    #[default]
    Auto,
    /// Whatever the file system: the operator vouches that its `syncfs` flushes data.
    Always,
    /// Never: one `fdatasync` per log, always.
    Never,
}

/// Counts of what a [`SyncScheduler`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Sync requests from logs.
    pub requests: u64,
    /// `fdatasync` calls made for them.
    pub file_syncs: u64,
    /// `syncfs` calls made for them.
    pub filesystem_syncs: u64,
    /// Requests queued now for a shared `syncfs` and not yet answered (one may be leading
    /// it): a gauge, not a count. Lets a test see that requests have queued.
    pub waiting: u64,
}

/// Shares the disk's syncs among the logs of one data directory.
#[derive(Debug)]
pub struct SyncScheduler {
    coalesce_after: usize,
    queue: Mutex<Queue>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// `fdatasync` calls in flight.
    direct: usize,
    /// Tickets are handed out in order; every ticket below `done_below` has its answer.
    next_ticket: u64,
    done_below: u64,
    /// Whether a `syncfs` is running (it answers every ticket below `next_ticket` as it was
    /// when it started).
    group_running: bool,
    /// Answers that are errors, by ticket, until their owner takes them.
    failed: HashMap<u64, (io::ErrorKind, String)>,
    stats: SyncStats,
}

impl SyncScheduler {
    /// A scheduler that runs up to `coalesce_after` `fdatasync`s at once and coalesces the
    /// rest into `syncfs` calls. `0` never coalesces: every request is its own `fdatasync`.
    pub fn new(coalesce_after: usize) -> Arc<SyncScheduler> {
        Arc::new(SyncScheduler {
            coalesce_after,
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
        })
    }

    /// The scheduler for the logs of the data directory `dir` on `fs`: [`SyncScheduler::new`]
    /// with `coalesce_after` where `policy` allows `syncfs` on that file system, and with
    /// 0 (one `fdatasync` per log) where it does not. Logs the mode chosen.
    pub fn for_data_dir(
        fs: &dyn FileSystem,
        dir: &Path,
        coalesce_after: usize,
        policy: SyncfsPolicy,
    ) -> Arc<SyncScheduler> {
        let info = fs.fs_info(dir);
        let (name, flushes) = match &info {
            Ok(i) => (i.name.clone(), i.syncfs_flushes_data),
            Err(e) => (format!("unknown ({e})"), false),
        };
        let syncfs = match policy {
            SyncfsPolicy::Always => true,
            SyncfsPolicy::Never => false,
            SyncfsPolicy::Auto => flushes,
        };
        let coalesce = if syncfs { coalesce_after } else { 0 };
        let mode = if coalesce > 0 {
            "per-log fdatasync, shared syncfs past sync_coalesce_after waiting logs"
        } else {
            "per-log fdatasync only"
        };
        tracing::info!(
            data_dir = %dir.display(),
            file_system = %name,
            syncfs_flushes_data = flushes,
            policy = ?policy,
            coalesce_after = coalesce,
            "sync mode: {mode}"
        );
        if policy == SyncfsPolicy::Always && !flushes && coalesce > 0 {
            tracing::warn!(file_system = %name, "storage.syncfs = \"always\" on a file system not known to flush data with syncfs: acknowledged records may be lost in a power loss");
        }
        SyncScheduler::new(coalesce)
    }

    /// Whether this scheduler ever answers a request with `syncfs`.
    pub fn uses_syncfs(&self) -> bool {
        self.coalesce_after > 0
    }

    /// What the scheduler has done so far.
    pub fn stats(&self) -> SyncStats {
        let q = self.lock();
        SyncStats {
            waiting: q.next_ticket - q.done_below,
            ..q.stats
        }
    }

    /// Makes every write to `file` made before this call durable.
    pub fn sync_data(&self, file: &Arc<dyn FileHandle>) -> io::Result<()> {
        let mut q = self.lock();
        q.stats.requests += 1;
        if self.coalesce_after == 0 || q.direct < self.coalesce_after {
            q.direct += 1;
            q.stats.file_syncs += 1;
            drop(q);
            let result = file.sync_data();
            self.lock().direct -= 1;
            return result;
        }
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        loop {
            if ticket < q.done_below {
                return match q.failed.remove(&ticket) {
                    None => Ok(()),
                    Some((kind, message)) => Err(io::Error::new(kind, message)),
                };
            }
            if q.group_running {
                q = self.done.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: one syncfs answers every ticket handed out so far, ours included.
            q.group_running = true;
            q.stats.filesystem_syncs += 1;
            let covered = q.next_ticket;
            drop(q);
            let result = file.sync_filesystem();
            q = self.lock();
            if let Err(e) = &result {
                for t in q.done_below..covered {
                    q.failed
                        .insert(t, (e.kind(), format!("syncfs failed: {e}")));
                }
            }
            q.done_below = covered;
            q.group_running = false;
            self.done.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FileSystem;
    use crate::sim::SimFs;
    use std::path::Path;

    /// `n` files whose names are durable and whose four bytes of data are not yet.
    fn files(fs: &SimFs, n: usize) -> Vec<Arc<dyn FileHandle>> {
        fs.create_dir_all(Path::new("/d")).unwrap();
        let out: Vec<Arc<dyn FileHandle>> =
            (0..n).map(|i| fs.create_new(&name(i)).unwrap()).collect();
        fs.sync_dir(Path::new("/d")).unwrap();
        for f in &out {
            f.write_all_at(0, b"data").unwrap();
        }
        out
    }

    fn name(i: usize) -> std::path::PathBuf {
        Path::new("/d").join(format!("f{i}"))
    }

    #[test]
    fn few_waiters_sync_their_own_files() {
        let fs = SimFs::new();
        let s = SyncScheduler::new(4);
        for f in files(&fs, 3) {
            s.sync_data(&f).unwrap();
        }
        assert_eq!(
            s.stats(),
            SyncStats {
                requests: 3,
                file_syncs: 3,
                filesystem_syncs: 0,
                waiting: 0,
            }
        );
    }

    /// Long enough for any machine: the gates below return as soon as their event happens.
    const LONG: std::time::Duration = std::time::Duration::from_secs(60);

    /// Ordered by a gate, not by time: the two direct syncs and the first `syncfs` are held
    /// at the gate until the 61 other requests have queued behind that `syncfs`, so one
    /// more `syncfs` answers them all, however the threads are scheduled.
    #[test]
    fn many_waiters_share_filesystem_syncs_and_all_become_durable() {
        let fs = SimFs::new();
        fs.set_syncfs_flushes(true);
        let s = SyncScheduler::new(2);
        let all = files(&fs, 64);
        std::thread::scope(|scope| {
            let gate = fs.gate_syncs();
            let s = &s;
            let mut handles: Vec<_> = all[..2]
                .iter()
                .map(|f| scope.spawn(move || s.sync_data(f).is_ok()))
                .collect();
            assert!(gate.wait_arrived(2, LONG), "the direct syncs never started");
            // Both direct slots are taken: the next request leads a syncfs, alone.
            handles.push(scope.spawn(|| s.sync_data(&all[2]).is_ok()));
            assert!(gate.wait_arrived(3, LONG), "no syncfs started");
            handles.extend(
                all[3..]
                    .iter()
                    .map(|f| scope.spawn(move || s.sync_data(f).is_ok())),
            );
            let deadline = std::time::Instant::now() + LONG;
            while s.stats().waiting < 62 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "requests never queued"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(gate.arrived(), 3, "a sync started while the syncfs ran");
            gate.open();
            assert!(handles.into_iter().all(|h| h.join().unwrap()));
        });
        let stats = s.stats();
        assert_eq!(
            stats,
            SyncStats {
                requests: 64,
                file_syncs: 2,
                filesystem_syncs: 2,
                waiting: 0,
            },
            "61 requests queued behind one syncfs must share the next"
        );
        fs.crash(crate::sim::CrashMode::DropUnsynced);
        for i in 0..64 {
            let f = fs.open(&name(i)).unwrap();
            let mut buf = [0u8; 4];
            f.read_exact_at(0, &mut buf).unwrap();
            assert_eq!(&buf, b"data", "file {i} lost its synced bytes");
        }
    }

    #[test]
    fn no_request_a_failed_sync_answered_is_told_it_is_durable() {
        let fs = SimFs::new();
        fs.set_syncfs_flushes(true);
        let s = SyncScheduler::new(1);
        let all = files(&fs, 16);
        let gate = fs.gate_syncs();
        let oks: Vec<bool> = std::thread::scope(|scope| {
            let (s, gate) = (&s, &gate);
            // The direct sync takes the only direct slot and waits at the gate (ticket 0).
            let first = &all[0];
            let direct = scope.spawn(move || s.sync_data(first).is_ok());
            assert!(gate.wait_arrived(1, LONG), "the direct sync never started");
            // Every other request queues behind it, and one of them leads a syncfs, which
            // reaches the gate second (ticket 1) while the direct sync still holds its slot.
            let queued: Vec<_> = all[1..]
                .iter()
                .map(|f| scope.spawn(move || s.sync_data(f).is_ok()))
                .collect();
            assert!(gate.wait_arrived(2, LONG), "no syncfs started");
            // The direct sync lands first; then the syncfs, set to fail; then the rest.
            gate.release(1);
            assert!(gate.wait_passed(1, LONG));
            fs.fail_nth_sync(0, io::ErrorKind::Other);
            gate.release(1);
            assert!(gate.wait_passed(2, LONG));
            gate.open();
            std::iter::once(direct)
                .chain(queued)
                .map(|h| h.join().unwrap())
                .collect()
        });
        assert!(oks[0], "the direct sync was not the one set to fail");
        assert!(oks.iter().any(|ok| !ok), "the failed sync answered nobody");
        assert!(s.lock().failed.is_empty(), "answers left behind");
        fs.crash(crate::sim::CrashMode::DropUnsynced);
        for (i, ok) in oks.iter().enumerate() {
            let f = fs.open(&name(i)).unwrap();
            if *ok {
                assert_eq!(f.len().unwrap(), 4, "file {i} was told it was durable");
            }
        }
    }

    #[test]
    fn a_file_system_whose_syncfs_flushes_nothing_gets_one_fdatasync_per_log() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let all = files(&fs, 8);
        let auto = SyncScheduler::for_data_dir(&fs, dir, 2, SyncfsPolicy::Auto);
        assert!(!auto.uses_syncfs());
        // Every request is its own fdatasync, however many wait at once: all durable.
        let gate = fs.gate_syncs();
        std::thread::scope(|scope| {
            let (auto, gate) = (&auto, &gate);
            let handles: Vec<_> = all
                .iter()
                .map(|f| scope.spawn(move || auto.sync_data(f).unwrap()))
                .collect();
            assert!(gate.wait_arrived(8, LONG), "eight syncs at once");
            gate.open();
            handles.into_iter().for_each(|h| h.join().unwrap());
        });
        assert_eq!(auto.stats().filesystem_syncs, 0);
        fs.crash(crate::sim::CrashMode::DropUnsynced);
        for i in 0..8 {
            assert_eq!(fs.open(&name(i)).unwrap().len().unwrap(), 4, "file {i}");
        }
        // The operator may force either way; a file system that flushes gets syncfs.
        assert!(SyncScheduler::for_data_dir(&fs, dir, 2, SyncfsPolicy::Always).uses_syncfs());
        fs.set_syncfs_flushes(true);
        assert!(SyncScheduler::for_data_dir(&fs, dir, 2, SyncfsPolicy::Auto).uses_syncfs());
        assert!(!SyncScheduler::for_data_dir(&fs, dir, 2, SyncfsPolicy::Never).uses_syncfs());
    }
}
