#![allow(clippy::unwrap_used)]
//! CI's runs of `sluice-torture`: 50 SIGKILL cycles of the real `sluice` server under the
//! mixed workload, and a dozen on a stream of hundreds of shards whose resizes run in the
//! background when the kill lands, with every check after every restart. Bounded: short
//! cycles, and the process is killed if it runs past its limit.
//!
//! The seed is printed (by `sluice-torture`) and taken from `SLUICE_SEED` when set.
//! Longer runs: see docs/RELIABILITY.md.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The longest the run may take before it is killed and the test fails.
const LIMIT: Duration = Duration::from_secs(300);

/// `target/<profile>/sluice`, built (or confirmed fresh) by cargo first: cargo builds a
/// package's own binaries for its tests, not another package's.
fn sluice_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["build", "-p", "sluice-server"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building sluice failed");
    profile_dir.join("sluice")
}

#[test]
fn fifty_kill_cycles_lose_nothing_acknowledged() {
    run_torture(&["--cycles", "50", "--seconds-per-cycle", "0.3"]);
}

/// Issue 13: the kills land inside the background work of resizes that seal and create
/// hundreds of shards (and inside the first writes to hundreds of new shard logs).
#[test]
fn kill_cycles_inside_resizes_of_hundreds_of_shards_lose_nothing_acknowledged() {
    run_torture(&[
        "--cycles",
        "12",
        "--seconds-per-cycle",
        "0.5",
        "--shards",
        "200",
    ]);
}

fn run_torture(args: &[&str]) {
    let server = sluice_binary();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice-torture"));
    command
        .arg("--server")
        .arg(&server)
        .args(args)
        .arg("--data-dir")
        .arg(data.path().join("torture"));
    if let Ok(seed) = std::env::var("SLUICE_SEED") {
        command.args(["--seed", &seed]);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice-torture ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "sluice-torture found violations ({status}); its output above has the seed"
    );
}
