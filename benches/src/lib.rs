//! Shared pieces of Sluice's benchmarks: record generation and a tiny argument parser, so
//! the criterion benches and the throughput probes build the same workloads, and
//! [`loadgen`], the `sluice-bench` load generator.

#![warn(missing_docs)]

pub mod loadgen;

use sluice_storage::RecordIn;

/// `n` payloads of `size` bytes, each different, to append as a batch.
pub fn payloads(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| (0..size).map(|j| (i * 31 + j) as u8).collect())
        .collect()
}

/// Borrows payloads as records with a fixed partition key.
pub fn records(payloads: &[Vec<u8>]) -> Vec<RecordIn<'_>> {
    payloads
        .iter()
        .map(|d| RecordIn {
            partition_key: b"bench-key",
            explicit_hash_key: None,
            data: d,
        })
        .collect()
}

/// The value after `--name` in `args`, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
