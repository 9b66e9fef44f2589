//! Counting and reporting: one [`Stats`] per phase (put, get, delivery), a latency
//! histogram in microseconds (HdrHistogram, 3 significant digits, up to 5 minutes), and
//! the two output forms: a table for people and one JSON line for scripts.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The largest latency recorded, µs; longer ones are clamped to it.
const LATENCY_MAX_US: u64 = 300_000_000;

/// What one phase of a run did.
#[derive(Clone)]
pub struct Stats {
    /// The phase's name in the report (`put`, `get`, `deliver`, ...).
    pub name: String,
    /// Requests (or deliveries) timed.
    pub ops: u64,
    /// Records.
    pub records: u64,
    /// Payload bytes (data only, not keys or framing).
    pub bytes: u64,
    /// Failed requests plus records refused inside successful ones.
    pub errors: u64,
    /// Latency per operation, µs.
    pub latency: Histogram<u64>,
    /// Wall time of the phase.
    pub elapsed: Duration,
}

impl Stats {
    /// Empty stats for phase `name`.
    pub fn new(name: &str) -> Stats {
        Stats {
            name: name.to_owned(),
            ops: 0,
            records: 0,
            bytes: 0,
            errors: 0,
            latency: new_histogram(),
            elapsed: Duration::ZERO,
        }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        // Within the histogram's bounds by the clamp above, so this cannot fail.
        let _ = self.latency.record(us);
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Stats) {
        self.ops += other.ops;
        self.records += other.records;
        self.bytes += other.bytes;
        self.errors += other.errors;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, quantile: f64) -> f64 {
        if self.latency.is_empty() {
            return 0.0;
        }
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// The phase as a JSON object.
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "seconds": round(self.secs(), 3),
            "ops": self.ops,
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
            "records_per_s": round(self.records as f64 / self.secs(), 1),
            "mb_per_s": round(self.bytes as f64 / self.secs() / 1e6, 1),
            "ops_per_s": round(self.ops as f64 / self.secs(), 1),
            "p50_ms": round(self.ms(0.5), 3),
            "p99_ms": round(self.ms(0.99), 3),
            "p999_ms": round(self.ms(0.999), 3),
            "max_ms": round(self.max_ms(), 3),
        })
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant, valid histogram bounds")
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Prints the table (unless `json_only`) and then the JSON line.
pub fn print(header: &Value, phases: &[Stats], extra: &Value, json_only: bool) {
    if !json_only {
        println!("{}", describe(header));
        println!(
            "{:<10} {:>9} {:>12} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "phase",
            "seconds",
            "records/s",
            "MB/s",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors"
        );
        for s in phases {
            println!(
                "{:<10} {:>9.2} {:>12.0} {:>9.1} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                s.name,
                s.secs(),
                s.records as f64 / s.secs(),
                s.bytes as f64 / s.secs() / 1e6,
                s.ops as f64 / s.secs(),
                s.ms(0.5),
                s.ms(0.99),
                s.ms(0.999),
                s.max_ms(),
                s.errors
            );
        }
        if let Some(map) = extra.as_object() {
            for (k, v) in map {
                println!("{k}: {v}");
            }
        }
    }
    let mut line = header.clone();
    line["phases"] = Value::Array(phases.iter().map(Stats::json).collect());
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            line.insert(k.clone(), v.clone());
        }
    }
    println!("{line}");
}

fn describe(header: &Value) -> String {
    header
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_counts_and_keep_percentiles() {
        let mut a = Stats::new("put");
        let mut b = Stats::new("put");
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_secs(2));
        a.ops = 100;
        b.ops = 1;
        a.merge(&b);
        assert_eq!(a.ops, 101);
        assert_eq!(a.latency.len(), 101);
        assert!((a.ms(0.5) - 51.0).abs() < 0.5);
        assert!((a.max_ms() - 2000.0).abs() < 5.0);
    }
}
