#![allow(clippy::unwrap_used)]
//! A gRPC client in another language: Python `grpcio`, with stubs generated at test time
//! from `proto/sluice/v1/sluice.proto` by `grpcio-tools`, runs put, get and subscribe
//! against the real server (`tests/python/interop.py`). Then the Rust client reads what
//! Python wrote, so both sides agree on the bytes.
//!
//! The interpreter is `SLUICE_PYTHON` (set by `tests/run.sh`, which makes a virtualenv at
//! `target/venv` with pinned `grpcio` and `grpcio-tools`), else `target/venv/bin/python`
//! if it exists. Without one the test fails when `CI=true` and is skipped, with the
//! reason printed, otherwise.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_proto::v1 as pb;
use support::{Server, position, wait_bounded};

/// The longest stub generation or the Python client may run.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn python_grpcio_client_puts_gets_and_subscribes() {
    let Some(python) = python() else { return };
    let root = support::workspace_root();
    let generated = tempfile::tempdir().unwrap();

    let proto_root = root.join("proto");
    let mut protoc = Command::new(&python);
    protoc
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_root.display()))
        .arg(format!("--python_out={}", generated.path().display()))
        .arg(format!("--grpc_python_out={}", generated.path().display()))
        .arg(proto_root.join("sluice/v1/sluice.proto"));
    let status = run_bounded(&mut protoc);
    assert!(status.0, "grpc_tools.protoc failed: {}", status.2);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut client_py = Command::new(&python);
    client_py
        .arg(root.join("tests/tests/python/interop.py"))
        .arg(server.addr.to_string())
        .arg(generated.path());
    let (ok, stdout, stderr) = run_bounded(&mut client_py);
    assert!(ok, "the Python client failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["ok"], true);
    let numbers: Vec<String> = report["sequence_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();

    // What Python wrote, read back through the Rust client: same bytes, same numbers.
    support::run_async(async {
        let mut client = server.client().await;
        let trim = position(pb::ShardIteratorType::TrimHorizon);
        let read = support::read_shard(&mut client, "py", "shardId-000000000000", trim).await;
        let data: Vec<&[u8]> = read.records.iter().map(|r| &r.data[..]).collect();
        assert_eq!(
            data,
            [&b"py0"[..], b"py1", b"py2", b"\xff\x00binary", b"live"]
        );
        let read_numbers: Vec<&String> = read.records.iter().map(|r| &r.sequence_number).collect();
        assert_eq!(read_numbers[..4], numbers.iter().collect::<Vec<_>>()[..]);
    });
}

/// The interpreter to use, or `None` (skip) outside CI when there is none.
fn python() -> Option<PathBuf> {
    let venv = support::workspace_root().join("target/venv/bin/python");
    let python = match std::env::var_os("SLUICE_PYTHON") {
        Some(path) => PathBuf::from(path),
        None if venv.exists() => venv,
        None => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !in_ci,
                "SLUICE_PYTHON is not set in CI: tests/run.sh must create target/venv"
            );
            eprintln!(
                "skipped: no Python with grpcio (set SLUICE_PYTHON, or run tests/run.sh \
                 which makes target/venv)"
            );
            return None;
        }
    };
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        check.success(),
        "{} lacks grpcio or grpcio-tools",
        python.display()
    );
    Some(python)
}

/// Runs a command to its exit within [`PYTHON_TIMEOUT`]: success, stdout, stderr.
fn run_bounded(command: &mut Command) -> (bool, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let status = wait_bounded(&mut child, PYTHON_TIMEOUT);
    (status.success(), out.join().unwrap(), err.join().unwrap())
}
