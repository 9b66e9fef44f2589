#![allow(clippy::unwrap_used)]
//! The classic Kinesis walkthrough, run through the `sluice-cli` binary against the real
//! `sluice` server: create a one-shard stream, wait for ACTIVE, put test1..test6 with one
//! partition key, and read them back with each iterator type at its exact boundary.
//! Every step checks the JSON the CLI prints (AWS field names, data as text).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{CliOutput, Server};

const STREAM: &str = "walkthrough";
const SHARD: &str = "shardId-000000000000";
/// The pause between puts, so arrival milliseconds differ and AT_TIMESTAMP can fall
/// strictly between two records.
const PAUSE: Duration = Duration::from_millis(25);

#[test]
fn kinesis_walkthrough_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    // Create and wait for ACTIVE.
    server
        .cli(&[
            "create-stream",
            "--stream-name",
            STREAM,
            "--shard-count",
            "1",
        ])
        .ok();
    wait_active(&server);
    let shards = server.cli(&["list-shards", "--stream-name", STREAM]).json();
    assert_eq!(shards["Shards"].as_array().unwrap().len(), 1);
    assert_eq!(shards["Shards"][0]["ShardId"], SHARD);

    // test1..test6 with the same partition key; note a time between test4 and test5.
    let mut sequence_numbers = Vec::new();
    let mut between_4_and_5_ms = 0;
    for i in 1..=6 {
        if i == 5 {
            std::thread::sleep(PAUSE);
            between_4_and_5_ms = support::now_ms();
        }
        std::thread::sleep(PAUSE);
        let put = put(&server, &format!("test{i}"));
        assert_eq!(put["ShardId"], SHARD);
        sequence_numbers.push(put["SequenceNumber"].as_str().unwrap().to_owned());
    }

    // TRIM_HORIZON: all six, in order, data as text, numbers as put returned them.
    let all = read(&server, &["--shard-iterator-type", "TRIM_HORIZON"]);
    assert_eq!(
        data(&all),
        ["test1", "test2", "test3", "test4", "test5", "test6"]
    );
    let read_numbers: Vec<&str> = all["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["SequenceNumber"].as_str().unwrap())
        .collect();
    assert_eq!(read_numbers, sequence_numbers);
    assert_eq!(all["Records"][0]["PartitionKey"], "pk");
    assert!(all["NextShardIterator"].is_string());
    assert!(all["MillisBehindLatest"].is_u64());

    // AT_SEQUENCE_NUMBER test6 returns test6; AFTER_SEQUENCE_NUMBER test5 only test6.
    let at = read(
        &server,
        &[
            "--shard-iterator-type",
            "AT_SEQUENCE_NUMBER",
            "--starting-sequence-number",
            &sequence_numbers[5],
        ],
    );
    assert_eq!(data(&at), ["test6"]);
    let after = read(
        &server,
        &[
            "--shard-iterator-type",
            "AFTER_SEQUENCE_NUMBER",
            "--starting-sequence-number",
            &sequence_numbers[4],
        ],
    );
    assert_eq!(data(&after), ["test6"]);

    // LATEST: nothing until new records arrive, then exactly those.
    let latest = iterator(&server, &["--shard-iterator-type", "LATEST"]);
    let empty = get_records(&server, &latest);
    assert_eq!(data(&empty), Vec::<String>::new());
    put(&server, "test7");
    put(&server, "test8");
    let next = empty["NextShardIterator"].as_str().unwrap();
    assert_eq!(data(&get_records(&server, next)), ["test7", "test8"]);
    // An iterator is a position: reading from LATEST's first iterator again gives the same.
    assert_eq!(data(&get_records(&server, &latest)), ["test7", "test8"]);

    // AT_TIMESTAMP between test4 and test5 (epoch seconds with decimals) starts at test5.
    let seconds = format!(
        "{}.{:03}",
        between_4_and_5_ms / 1000,
        between_4_and_5_ms % 1000
    );
    let at_time = read(
        &server,
        &[
            "--shard-iterator-type",
            "AT_TIMESTAMP",
            "--timestamp",
            &seconds,
        ],
    );
    assert_eq!(data(&at_time), ["test5", "test6", "test7", "test8"]);
    // The arrival time printed for test5 (RFC 3339) is inclusive.
    let test5_time = all["Records"][4]["ApproximateArrivalTimestamp"]
        .as_str()
        .unwrap();
    let at_test5 = read(
        &server,
        &[
            "--shard-iterator-type",
            "AT_TIMESTAMP",
            "--timestamp",
            test5_time,
        ],
    );
    assert_eq!(data(&at_test5)[0], "test5");

    // --data-encoding base64 prints what the AWS CLI prints.
    let it = iterator(&server, &["--shard-iterator-type", "TRIM_HORIZON"]);
    let base64 = server.cli(&[
        "get-records",
        "--shard-iterator",
        &it,
        "--limit",
        "1",
        "--data-encoding",
        "base64",
    ]);
    assert_eq!(base64.json()["Records"][0]["Data"], "dGVzdDE=");
}

fn wait_active(server: &Server) {
    for _ in 0..300 {
        let description = server
            .cli(&["describe-stream", "--stream-name", STREAM])
            .json();
        if description["StreamDescription"]["StreamStatus"] == "ACTIVE" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{STREAM} did not become ACTIVE");
}

fn put(server: &Server, data: &str) -> Value {
    server
        .cli(&[
            "put-record",
            "--stream-name",
            STREAM,
            "--partition-key",
            "pk",
            "--data",
            data,
        ])
        .json()
}

fn iterator(server: &Server, position: &[&str]) -> String {
    let mut args = vec![
        "get-shard-iterator",
        "--stream-name",
        STREAM,
        "--shard-id",
        SHARD,
    ];
    args.extend_from_slice(position);
    let out: CliOutput = server.cli(&args);
    out.json()["ShardIterator"].as_str().unwrap().to_owned()
}

fn get_records(server: &Server, shard_iterator: &str) -> Value {
    server
        .cli(&["get-records", "--shard-iterator", shard_iterator])
        .json()
}

/// Reads from a fresh iterator at `position` (one GetRecords call).
fn read(server: &Server, position: &[&str]) -> Value {
    let it = iterator(server, position);
    get_records(server, &it)
}

fn data(reply: &Value) -> Vec<String> {
    reply["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Data"].as_str().unwrap().to_owned())
        .collect()
}
