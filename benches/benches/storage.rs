//! Criterion benchmarks of the storage engine's hot paths: the frame codec, appends with and
//! without sync, reads, seeks by sequence and by time, and recovery time against the bytes
//! written since the last recovery point.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_benches::{payloads, records};
use sluice_storage::{
    Log, LogConfig, RealFs, RecordIn, SegmentCache, SeqNo, SyncMode, TimestampMs, frame,
};

fn open(dir: &Path, config: &LogConfig) -> Log {
    Log::open(
        RealFs::shared(),
        dir,
        config.clone(),
        SegmentCache::new(256),
    )
    .expect("open log")
}

fn relaxed() -> LogConfig {
    LogConfig {
        sync: SyncMode::Interval {
            interval_ms: 3_600_000,
        },
        ..LogConfig::default()
    }
}

fn frame_codec(c: &mut Criterion) {
    let data = vec![7u8; 1024];
    let rec = RecordIn {
        partition_key: b"sensor-42",
        explicit_hash_key: None,
        data: &data,
    };
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(1024));
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("encode_1KiB", |b| {
        b.iter(|| {
            buf.clear();
            frame::encode(black_box(&rec), SeqNo(1), TimestampMs(2), &mut buf);
        })
    });
    buf.clear();
    frame::encode(&rec, SeqNo(1), TimestampMs(2), &mut buf);
    g.bench_function("decode_1KiB", |b| {
        b.iter(|| frame::decode(black_box(&buf)).map(|f| f.seq))
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_1KiB");
    g.measurement_time(Duration::from_secs(4)).sample_size(20);
    for (mode, config) in [("sync", LogConfig::default()), ("nosync", relaxed())] {
        for batch in [1usize, 100, 500] {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = open(dir.path(), &config);
            let data = payloads(batch, 1024);
            let recs = records(&data);
            g.throughput(Throughput::Bytes((batch * 1024) as u64));
            g.bench_with_input(BenchmarkId::new(mode, batch), &batch, |b, _| {
                b.iter(|| log.append(&recs, TimestampMs(1)).expect("append"))
            });
        }
    }
    g.finish();
}

/// A log of one million 100-byte records, one per millisecond.
fn million(dir: &Path) -> Log {
    let log = open(dir, &relaxed());
    let data = payloads(1000, 100);
    let recs = records(&data);
    for t in 0..1000u64 {
        log.append(&recs, TimestampMs(t * 1000)).expect("append");
    }
    log.close().expect("close");
    log
}

fn read_and_seek(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = million(dir.path());
    let mut g = c.benchmark_group("read_1M");
    g.sample_size(30);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    g.bench_function("seek_by_sequence", |b| {
        b.iter(|| {
            log.read(SeqNo(next() % 1_000_000), 1, usize::MAX)
                .expect("read")
        })
    });
    g.bench_function("seek_by_time", |b| {
        b.iter(|| {
            log.seek_time(TimestampMs(next() % 1_000_000))
                .expect("seek")
        })
    });
    g.throughput(Throughput::Bytes(1000 * 100));
    g.bench_function("read_batches_of_1000", |b| {
        b.iter(|| {
            log.read(SeqNo(next() % 999_000), 1000, usize::MAX)
                .expect("read")
        })
    });
    g.bench_function("read_shared_batches_of_1000", |b| {
        b.iter(|| {
            log.read_shared(SeqNo(next() % 999_000), 1000, usize::MAX)
                .expect("read")
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    for mib in [1u64, 8, 32] {
        // Written with no recovery point after the start, then copied fresh for every open.
        let src = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            checkpoint_interval_bytes: 1 << 40,
            ..relaxed()
        };
        {
            let log = open(src.path(), &config);
            let data = payloads(100, 1024);
            let recs = records(&data);
            for _ in 0..(mib * 1024 * 1024 / (100 * 1024)) {
                log.append(&recs, TimestampMs(1)).expect("append");
            }
            log.sync_if_due().expect("sync");
        }
        g.throughput(Throughput::Bytes(mib * 1024 * 1024));
        g.bench_with_input(
            BenchmarkId::new("scan_since_checkpoint_MiB", mib),
            &mib,
            |b, _| {
                b.iter_batched(
                    || {
                        let dst = tempfile::tempdir().expect("tempdir");
                        for e in std::fs::read_dir(src.path()).expect("read_dir") {
                            let e = e.expect("entry");
                            std::fs::copy(e.path(), dst.path().join(e.file_name())).expect("copy");
                        }
                        dst
                    },
                    |dst| {
                        let log = open(dst.path(), &config);
                        assert!(log.recovery_stats().scanned_bytes > 0);
                        (log, dst)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    g.finish();
}

criterion_group!(benches, frame_codec, append, read_and_seek, recovery);
criterion_main!(benches);
