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

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::fs::FileHandle;

/// Counts of what a [`SyncScheduler`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Sync requests from logs.
    pub requests: u64,
    /// `fdatasync` calls made for them.
    pub file_syncs: u64,
    /// `syncfs` calls made for them.
    pub filesystem_syncs: u64,
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

    /// What the scheduler has done so far.
    pub fn stats(&self) -> SyncStats {
        self.lock().stats
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
                filesystem_syncs: 0
            }
        );
    }

    /// Runs `sync_data` for every file on its own thread: the first `direct` files start
    /// alone and take every direct slot (each sync takes 200 ms); the rest start while
    /// those are still running, so they must queue. Returns each request's outcome.
    fn sync_all(s: &SyncScheduler, files: &[Arc<dyn FileHandle>], direct: usize) -> Vec<bool> {
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, f) in files.iter().enumerate() {
                if i == direct {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while s.stats().file_syncs < direct as u64 {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "direct syncs never started"
                        );
                        std::thread::yield_now();
                    }
                }
                handles.push(scope.spawn(move || s.sync_data(f).is_ok()));
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn many_waiters_share_filesystem_syncs_and_all_become_durable() {
        let fs = SimFs::new();
        fs.set_sync_delay(std::time::Duration::from_millis(200));
        let s = SyncScheduler::new(2);
        let all = files(&fs, 64);
        let oks = sync_all(&s, &all, 2);
        assert!(oks.iter().all(|ok| *ok));
        let stats = s.stats();
        assert_eq!(stats.requests, 64);
        assert_eq!(stats.file_syncs, 2, "{stats:?}");
        // 62 queued requests, each answered by a syncfs that started after it: one to
        // three rounds of 200 ms, however the threads were scheduled.
        assert!(
            (1..=8).contains(&stats.filesystem_syncs),
            "62 queued files cost {stats:?}"
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
        fs.set_sync_delay(std::time::Duration::from_millis(200));
        let s = SyncScheduler::new(1);
        let all = files(&fs, 16);
        // The direct sync lands first (it started first); the next, the first syncfs,
        // fails, with every request it answered.
        fs.fail_nth_sync(1, io::ErrorKind::Other);
        let oks = sync_all(&s, &all, 1);
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
}
