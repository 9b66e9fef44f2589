//! Durable append throughput of the storage engine on a real disk, for comparison with
//! `dd if=/dev/zero of=FILE bs=1M count=2048 conv=fdatasync` on the same file system.
//!
//! `storage-throughput [--dir D] [--logs N] [--threads T] [--batch B] [--record BYTES]
//!  [--seconds S] [--sync always|none]`: T threads append batches of B records to N logs
//! (thread i writes to log i mod N) for S seconds, then it prints payload MB/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_benches::{arg, payloads, records};
use sluice_storage::{Log, LogConfig, RealFs, SegmentCache, SyncMode, TimestampMs};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let logs_n: usize = arg(&args, "--logs", 4);
    let threads: usize = arg(&args, "--threads", 4);
    let batch: usize = arg(&args, "--batch", 500);
    let record: usize = arg(&args, "--record", 1024);
    let seconds: u64 = arg(&args, "--seconds", 10);
    let sync: String = arg(&args, "--sync", "always".to_owned());
    let base: String = arg(&args, "--dir", String::new());
    let tmp = if base.is_empty() {
        tempfile::tempdir()?
    } else {
        tempfile::tempdir_in(&base)?
    };
    let config = LogConfig {
        sync: if sync == "none" {
            SyncMode::Interval {
                interval_ms: 1_000_000,
            }
        } else {
            SyncMode::Always
        },
        ..LogConfig::default()
    };
    let cache = SegmentCache::new(64);
    let logs: Vec<Arc<Log>> = (0..logs_n)
        .map(|i| {
            Log::open(
                RealFs::shared(),
                &tmp.path().join(format!("shard-{i}")),
                config.clone(),
                cache.clone(),
            )
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let appends = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, stop, bytes, appends) = (
                logs[t % logs_n].clone(),
                stop.clone(),
                bytes.clone(),
                appends.clone(),
            );
            std::thread::spawn(move || -> Result<(), sluice_storage::Error> {
                let data = payloads(batch, record);
                let recs = records(&data);
                while !stop.load(Ordering::Relaxed) {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    log.append(&recs, TimestampMs(now))?;
                    bytes.fetch_add((batch * record) as u64, Ordering::Relaxed);
                    appends.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "append thread panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    println!(
        "{{\"logs\":{logs_n},\"threads\":{threads},\"batch\":{batch},\"record_bytes\":{record},\"sync\":\"{sync}\",\"seconds\":{secs:.2},\"appends_per_s\":{:.0},\"records_per_s\":{:.0},\"mb_per_s\":{:.1}}}",
        appends.load(Ordering::Relaxed) as f64 / secs,
        appends.load(Ordering::Relaxed) as f64 * batch as f64 / secs,
        mb / secs
    );
    Ok(())
}
