//! A process that appends to a storage log until it is killed, printing each acknowledged
//! batch: `ACK <first seq> <last seq> <first id>` (ids are consecutive within a batch).
//!
//! `log-writer DIR ID_BASE THREADS [SEGMENT_BYTES [BATCH_MAX]]`: thread `t` appends, in
//! round `r`, a batch of `1 + (7r + t) % BATCH_MAX` records (default 20) whose ids follow
//! each other in the thread's own range, `ID_BASE + t * 10^9` on; segments roll at
//! SEGMENT_BYTES (default 256 KiB). The checker kills it with SIGKILL at a random moment
//! and verifies that every acknowledged record is in the log, intact, and that every batch
//! is there whole or not at all (it knows every batch from the ids alone).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_storage::{Log, LogConfig, RealFs, RecordIn, SegmentCache, TimestampMs};
use sluice_tests::payload;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(base), Some(threads)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: log-writer DIR ID_BASE THREADS [SEGMENT_BYTES [BATCH_MAX]]".into());
    };
    let base: u64 = base.parse()?;
    let threads: u64 = threads.parse()?;
    let segment_bytes_max: u64 = args.get(4).map_or(Ok(256 * 1024), |a| a.parse())?;
    let batch_max: u64 = args.get(5).map_or(Ok(20), |a| a.parse())?;
    let config = LogConfig {
        segment_bytes_max,
        checkpoint_interval_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let log = Arc::new(Log::open(
        RealFs::shared(),
        dir.as_ref(),
        config,
        SegmentCache::new(16),
    )?);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut id = base + t * 1_000_000_000;
                for round in 0u64.. {
                    let n = sluice_tests::batch_len(round, t, batch_max);
                    let data: Vec<Vec<u8>> = (id..id + n).map(payload).collect();
                    let recs: Vec<RecordIn<'_>> = data
                        .iter()
                        .map(|d| RecordIn {
                            partition_key: b"k",
                            explicit_hash_key: None,
                            data: d,
                        })
                        .collect();
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let a = log
                        .append(&recs, TimestampMs(now))
                        .map_err(|e| e.to_string())?;
                    let mut out = out.lock().map_err(|_| "stdout lock poisoned")?;
                    writeln!(out, "ACK {} {} {}", a.first.0, a.last.0, id)
                        .map_err(|e| e.to_string())?;
                    out.flush().map_err(|e| e.to_string())?;
                    id += n;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "writer thread panicked")??;
    }
    Ok(())
}
