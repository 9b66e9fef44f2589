#![allow(clippy::unwrap_used)]
//! The `sluice-cli` binary without a server: help, usage errors and an unreachable
//! endpoint, each with its documented exit code (0, 2, 3). Tests against a running server
//! are in the workspace's `tests/` crate.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-cli"))
        .args(args)
        .env_remove("SLUICE_ENDPOINT")
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_aws_commands_and_tail() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["create-stream", "put-records", "get-shard-iterator", "tail"] {
        assert!(text.contains(command), "{command} missing from {text}");
    }
    assert!(text.contains("--data-encoding"), "{text}");
}

#[test]
fn usage_errors_exit_with_2_and_send_nothing() {
    let out = run(&["put-record", "--stream-name", "s"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "get-shard-iterator",
        "--stream-name",
        "s",
        "--shard-id",
        "shardId-0",
        "--shard-iterator-type",
        "AT_SEQUENCE_NUMBER",
        // Port 1 on loopback: nothing listens, but the usage check comes first.
        "--endpoint",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn unreachable_endpoint_exits_with_3() {
    let out = run(&["list-streams", "--endpoint", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("connection failed"), "{text}");
}
