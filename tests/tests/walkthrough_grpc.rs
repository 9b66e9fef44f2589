#![allow(clippy::unwrap_used)]
//! The classic Kinesis walkthrough through the generated tonic client, against the real
//! `sluice` server: create a one-shard stream, wait for ACTIVE, put test1..test6 with one
//! partition key, then every iterator type at its exact boundary.

mod support;

use std::time::Duration;

use sluice_proto::v1 as pb;
use support::{Client, Server, get, iterator, position, put};

const STREAM: &str = "walkthrough";
const SHARD: &str = "shardId-000000000000";
/// The pause between puts, so arrival milliseconds differ.
const PAUSE: Duration = Duration::from_millis(25);

#[test]
fn kinesis_walkthrough_through_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    support::run_async(async {
        let mut client = server.client().await;
        support::create_active(&mut client, STREAM, 1).await;
        let shards = support::list_shards(&mut client, STREAM).await;
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].shard_id, SHARD);

        let mut numbers = Vec::new();
        let mut between_4_and_5_ms = 0;
        for i in 1..=6 {
            if i == 5 {
                tokio::time::sleep(PAUSE).await;
                between_4_and_5_ms = support::now_ms();
            }
            tokio::time::sleep(PAUSE).await;
            let reply = put(&mut client, STREAM, "pk", format!("test{i}").as_bytes()).await;
            assert_eq!(reply.shard_id, SHARD);
            numbers.push(reply.sequence_number);
        }
        // Sequence numbers are decimal strings (wider than u128) that grow as integers:
        // without leading zeros, a longer one is larger, and equal lengths compare as text.
        let as_int = |n: &String| (n.len(), n.clone());
        assert!(
            numbers.windows(2).all(|w| as_int(&w[0]) < as_int(&w[1])),
            "{numbers:?}"
        );

        let trim = pb::ShardIteratorType::TrimHorizon;
        let all = read(&mut client, position(trim)).await;
        assert_eq!(
            data(&all),
            ["test1", "test2", "test3", "test4", "test5", "test6"]
        );
        let read_numbers: Vec<&String> = all.records.iter().map(|r| &r.sequence_number).collect();
        assert_eq!(read_numbers, numbers.iter().collect::<Vec<_>>());
        assert!(all.records.iter().all(|r| r.partition_key == "pk"));
        assert!(all.next_shard_iterator.is_some());
        assert!(all.child_shards.is_empty());

        let at = at_number(pb::ShardIteratorType::AtSequenceNumber, &numbers[5]);
        assert_eq!(data(&read(&mut client, at).await), ["test6"]);
        let after = at_number(pb::ShardIteratorType::AfterSequenceNumber, &numbers[4]);
        assert_eq!(data(&read(&mut client, after).await), ["test6"]);

        // LATEST: nothing until new records arrive, then exactly those.
        let latest = position(pb::ShardIteratorType::Latest);
        let latest = iterator(&mut client, STREAM, SHARD, latest).await.unwrap();
        let empty = get(&mut client, &latest).await;
        assert!(empty.records.is_empty());
        assert_eq!(empty.millis_behind_latest, 0);
        put(&mut client, STREAM, "pk", b"test7").await;
        put(&mut client, STREAM, "pk", b"test8").await;
        let next = empty.next_shard_iterator.unwrap();
        assert_eq!(data(&get(&mut client, &next).await), ["test7", "test8"]);

        // AT_TIMESTAMP between test4 and test5 starts at test5; test5's own arrival time
        // is inclusive.
        let between = pb::StartingPosition {
            r#type: pb::ShardIteratorType::AtTimestamp as i32,
            sequence_number: None,
            timestamp_ms: Some(between_4_and_5_ms),
        };
        assert_eq!(
            data(&read(&mut client, between).await),
            ["test5", "test6", "test7", "test8"]
        );
        let test5 = pb::StartingPosition {
            r#type: pb::ShardIteratorType::AtTimestamp as i32,
            sequence_number: None,
            timestamp_ms: Some(all.records[4].approximate_arrival_timestamp_ms),
        };
        assert_eq!(data(&read(&mut client, test5).await)[0], "test5");

        // Limit: one record at a time, following NextShardIterator.
        let mut it = iterator(&mut client, STREAM, SHARD, position(trim))
            .await
            .unwrap();
        let mut one_by_one = Vec::new();
        for _ in 0..8 {
            let reply = client
                .get_records(pb::GetRecordsRequest {
                    shard_iterator: it,
                    limit: Some(1),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.records.len(), 1);
            one_by_one.extend(data(&reply));
            it = reply.next_shard_iterator.unwrap();
        }
        assert_eq!(one_by_one.len(), 8);
        assert_eq!(one_by_one[7], "test8");
    });
}

fn at_number(kind: pb::ShardIteratorType, number: &str) -> pb::StartingPosition {
    pb::StartingPosition {
        r#type: kind as i32,
        sequence_number: Some(number.to_owned()),
        timestamp_ms: None,
    }
}

async fn read(client: &mut Client, at: pb::StartingPosition) -> pb::GetRecordsResponse {
    let it = iterator(client, STREAM, SHARD, at).await.unwrap();
    get(client, &it).await
}

fn data(reply: &pb::GetRecordsResponse) -> Vec<String> {
    reply
        .records
        .iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect()
}
