//! `tail`: follow a whole stream live, printing one JSON line per record.
//!
//! One Subscribe call per shard, each in its own task, feeds a bounded channel; the main
//! loop prints records as they come, so records of one shard appear in sequence order
//! (shards interleave). Resharding is followed the way Kinesis asks consumers to (the
//! KCL rule): a child shard is read only once every parent has been read to its end,
//! which the server signals with a last event carrying `ChildShards`. That keeps the
//! order of each partition key across splits and merges. The [`Lineage`] type holds
//! that rule and nothing else, so it is tested without a server.
//!
//! A subscription lasts five minutes on the server; when one ends without `ChildShards`
//! the task subscribes again AFTER the last continuation number, with no gap and no
//! duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::error::CliError;
use crate::output::{self, DataEncoding};
use crate::streams;

/// Events buffered between the shard tasks and the printer.
const EVENTS_CAPACITY: usize = 64;

/// The pause before subscribing again after a subscription ended, so a server that ends
/// subscriptions at once (while shutting down) is not called in a tight loop.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(100);

/// Where `tail` starts in the shards open when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// Every retained record, closed shards included (parents before children).
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

/// `tail` arguments.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The stream to follow.
    #[arg(long)]
    pub stream_name: String,
    /// Where to start.
    #[arg(long, value_enum, default_value_t = From::Latest)]
    pub from: From,
    /// Exit (code 0) after printing this many records; without it, tail runs until
    /// interrupted.
    #[arg(long)]
    pub max_records: Option<u64>,
}

/// Follows the stream until interrupted, `--max-records` are printed, or an error.
pub async fn tail(
    mut client: Client,
    args: TailArgs,
    encoding: DataEncoding,
) -> Result<Option<Value>, CliError> {
    let shards = streams::all_shards(&mut client, &args.stream_name).await?;
    let (mut lineage, starts) = Lineage::new(&shards, args.from);
    let (tx, mut rx) = mpsc::channel(EVENTS_CAPACITY);
    // Dropping the set when tail returns aborts every shard task.
    let mut tasks = JoinSet::new();
    let mut spawn = |shard_id: String, kind: pb::ShardIteratorType| {
        let follower = Follower {
            client: client.clone(),
            stream_name: args.stream_name.clone(),
            shard_id,
            tx: tx.clone(),
        };
        tasks.spawn(follower.run(kind));
    };
    let mut following = 0usize;
    for (shard_id, kind) in starts {
        spawn(shard_id, kind);
        following += 1;
    }
    let mut printed = 0u64;
    while following > 0 && args.max_records.is_none_or(|max| printed < max) {
        let Some(event) = rx.recv().await else { break };
        match event {
            Event::Records { shard_id, records } => {
                let room = args.max_records.map_or(u64::MAX, |max| max - printed);
                let take = records
                    .len()
                    .min(usize::try_from(room).unwrap_or(usize::MAX));
                if !print_lines(&shard_id, &records[..take], encoding)? {
                    return Ok(None); // The reader went away (`tail | head`): a normal end.
                }
                printed += take as u64;
            }
            Event::Ended { shard_id, children } => {
                following -= 1;
                let ready = lineage.end(&shard_id, &children);
                let names: Vec<&str> = children.iter().map(|c| c.shard_id.as_str()).collect();
                eprintln!("tail: {shard_id} ended; its children: {}", names.join(", "));
                for child in ready {
                    spawn(child, pb::ShardIteratorType::TrimHorizon);
                    following += 1;
                }
            }
            Event::Failed(error) => return Err(error),
        }
    }
    Ok(None)
}

/// What a shard task reports.
#[derive(Debug)]
enum Event {
    /// Records of one shard, in sequence order.
    Records {
        shard_id: String,
        records: Vec<pb::Record>,
    },
    /// The shard was closed and has been read to its end.
    Ended {
        shard_id: String,
        children: Vec<pb::ChildShard>,
    },
    /// The subscription failed; tail stops.
    Failed(CliError),
}

/// Which shards to read and when: a shard starts once all its known parents ended.
#[derive(Debug, Default)]
struct Lineage {
    /// Every shard seen (listed at start or announced as a child), with its parents.
    parents: BTreeMap<String, Vec<String>>,
    /// Shards read to their end (or, with `--from latest`, closed before tail began).
    ended: BTreeSet<String>,
    /// Shards whose task has been started (or that will never be read).
    started: BTreeSet<String>,
}

impl Lineage {
    /// The lineage of the listed shards, and the shards to start now with their
    /// position: with `trim-horizon`, every shard without a listed parent, from its
    /// start; with `latest`, every open shard, from its tip (closed shards count as
    /// ended, since nothing new can arrive in them).
    fn new(shards: &[pb::Shard], from: From) -> (Lineage, Vec<(String, pb::ShardIteratorType)>) {
        let mut lineage = Lineage::default();
        for shard in shards {
            let parents = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            lineage.parents.insert(shard.shard_id.clone(), parents);
        }
        let starts = match from {
            From::TrimHorizon => lineage
                .take_ready()
                .into_iter()
                .map(|id| (id, pb::ShardIteratorType::TrimHorizon))
                .collect(),
            From::Latest => {
                let mut starts = Vec::new();
                for shard in shards {
                    let closed = shard
                        .sequence_number_range
                        .as_ref()
                        .is_some_and(|r| r.ending_sequence_number.is_some());
                    lineage.started.insert(shard.shard_id.clone());
                    if closed {
                        lineage.ended.insert(shard.shard_id.clone());
                    } else {
                        starts.push((shard.shard_id.clone(), pb::ShardIteratorType::Latest));
                    }
                }
                starts
            }
        };
        (lineage, starts)
    }

    /// Records that `shard_id` was read to its end, learns its children, and returns the
    /// shards that may start now (from their start).
    fn end(&mut self, shard_id: &str, children: &[pb::ChildShard]) -> Vec<String> {
        self.ended.insert(shard_id.to_owned());
        for child in children {
            self.parents
                .entry(child.shard_id.clone())
                .or_insert_with(|| child.parent_shards.clone());
        }
        self.take_ready()
    }

    /// Marks as started, and returns, every shard not started whose known parents ended.
    /// A parent tail never saw (expired before it listed the stream) cannot hold a
    /// child back.
    fn take_ready(&mut self) -> Vec<String> {
        let ready: Vec<String> = self
            .parents
            .iter()
            .filter(|(id, parents)| {
                !self.started.contains(*id)
                    && parents
                        .iter()
                        .all(|p| self.ended.contains(p) || !self.parents.contains_key(p))
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.started.extend(ready.iter().cloned());
        ready
    }
}

/// One shard's subscription, renewed until the shard ends.
struct Follower {
    client: Client,
    stream_name: String,
    shard_id: String,
    tx: mpsc::Sender<Event>,
}

impl Follower {
    /// Follows the shard and reports to the printer; a failure is reported, not returned.
    async fn run(mut self, kind: pb::ShardIteratorType) {
        let tx = self.tx.clone();
        if let Err(error) = self.follow(kind).await {
            let _ = tx.send(Event::Failed(error)).await;
        }
    }

    async fn follow(&mut self, kind: pb::ShardIteratorType) -> Result<(), CliError> {
        let mut position = pb::StartingPosition {
            r#type: kind as i32,
            sequence_number: None,
            timestamp_ms: None,
        };
        // Each round is one subscription (five minutes on the server); tail is meant to
        // run until interrupted, so the rounds are not counted.
        loop {
            let request = pb::SubscribeRequest {
                stream_name: self.stream_name.clone(),
                shard_id: self.shard_id.clone(),
                starting_position: Some(position.clone()),
            };
            let status = |s: tonic::Status| CliError::from_status("Subscribe", &s);
            let mut events = self
                .client
                .subscribe(request)
                .await
                .map_err(status)?
                .into_inner();
            while let Some(event) = events.message().await.map_err(status)? {
                if !event.continuation_sequence_number.is_empty() {
                    position = pb::StartingPosition {
                        r#type: pb::ShardIteratorType::AfterSequenceNumber as i32,
                        sequence_number: Some(event.continuation_sequence_number.clone()),
                        timestamp_ms: None,
                    };
                }
                let shard_id = self.shard_id.clone();
                if !event.records.is_empty() {
                    let records = event.records;
                    if self
                        .tx
                        .send(Event::Records {
                            shard_id: shard_id.clone(),
                            records,
                        })
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                if !event.child_shards.is_empty() {
                    let children = event.child_shards;
                    let _ = self.tx.send(Event::Ended { shard_id, children }).await;
                    return Ok(());
                }
            }
            tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
        }
    }
}

/// One JSON line per record: the record as GetRecords prints it, plus its `ShardId`.
fn line(shard_id: &str, record: &pb::Record, encoding: DataEncoding) -> Value {
    let mut value = output::record(record, encoding);
    if let Value::Object(fields) = &mut value {
        fields.insert("ShardId".into(), json!(shard_id));
    }
    value
}

/// Prints records as JSON lines and flushes; `false` when stdout is a closed pipe.
fn print_lines(
    shard_id: &str,
    records: &[pb::Record],
    encoding: DataEncoding,
) -> Result<bool, CliError> {
    let mut stdout = std::io::stdout().lock();
    let result = records
        .iter()
        .try_for_each(|r| writeln!(stdout, "{}", line(shard_id, r, encoding)))
        .and_then(|()| stdout.flush());
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Output(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: u32, parents: &[u32], closed: bool) -> pb::Shard {
        let name = |i: &u32| format!("shardId-{i:012}");
        pb::Shard {
            shard_id: name(&id),
            parent_shard_id: parents.first().map(name),
            adjacent_parent_shard_id: parents.get(1).map(name),
            hash_key_range: None,
            sequence_number_range: Some(pb::SequenceNumberRange {
                starting_sequence_number: "0".into(),
                ending_sequence_number: closed.then(|| "9".into()),
            }),
        }
    }

    fn child(id: u32, parents: &[u32]) -> pb::ChildShard {
        pb::ChildShard {
            shard_id: format!("shardId-{id:012}"),
            parent_shards: parents.iter().map(|p| format!("shardId-{p:012}")).collect(),
            hash_key_range: None,
        }
    }

    fn ids(starts: &[(String, pb::ShardIteratorType)]) -> Vec<&str> {
        starts.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn trim_horizon_starts_roots_and_holds_children_until_parents_end() {
        // 0 split into 1 and 2; 1 and 2 merged into 3.
        let shards = [
            shard(0, &[], true),
            shard(1, &[0], true),
            shard(2, &[0], true),
            shard(3, &[1, 2], false),
        ];
        let (mut lineage, starts) = Lineage::new(&shards, From::TrimHorizon);
        assert_eq!(ids(&starts), ["shardId-000000000000"]);
        assert!(
            starts
                .iter()
                .all(|(_, k)| *k == pb::ShardIteratorType::TrimHorizon)
        );
        let ready = lineage.end("shardId-000000000000", &[child(1, &[0]), child(2, &[0])]);
        assert_eq!(ready, ["shardId-000000000001", "shardId-000000000002"]);
        // The merged child waits for both parents.
        assert!(
            lineage
                .end("shardId-000000000001", &[child(3, &[1, 2])])
                .is_empty()
        );
        let ready = lineage.end("shardId-000000000002", &[child(3, &[1, 2])]);
        assert_eq!(ready, ["shardId-000000000003"]);
    }

    #[test]
    fn a_parent_that_expired_before_listing_does_not_hold_its_child() {
        let shards = [shard(1, &[0], true), shard(2, &[0], false)];
        let (_, starts) = Lineage::new(&shards, From::TrimHorizon);
        assert_eq!(
            ids(&starts),
            ["shardId-000000000001", "shardId-000000000002"]
        );
    }

    #[test]
    fn latest_starts_open_shards_at_the_tip_and_follows_new_children_from_their_start() {
        let shards = [
            shard(0, &[], true),
            shard(1, &[0], false),
            shard(2, &[0], false),
        ];
        let (mut lineage, starts) = Lineage::new(&shards, From::Latest);
        assert_eq!(
            ids(&starts),
            ["shardId-000000000001", "shardId-000000000002"]
        );
        assert!(
            starts
                .iter()
                .all(|(_, k)| *k == pb::ShardIteratorType::Latest)
        );
        // A split of shard 1 while tailing: its children start at once.
        let ready = lineage.end("shardId-000000000001", &[child(3, &[1]), child(4, &[1])]);
        assert_eq!(ready, ["shardId-000000000003", "shardId-000000000004"]);
        // A child is started once only, however often it is announced.
        assert!(
            lineage
                .end("shardId-000000000001", &[child(3, &[1])])
                .is_empty()
        );
    }

    #[test]
    fn a_tail_line_is_the_record_plus_its_shard() {
        let record = pb::Record {
            sequence_number: "7".into(),
            approximate_arrival_timestamp_ms: 0,
            data: b"hi".to_vec().into(),
            partition_key: "k".into(),
        };
        let value = line("shardId-000000000000", &record, DataEncoding::Auto);
        assert_eq!(value["ShardId"], json!("shardId-000000000000"));
        assert_eq!(value["Data"], json!("hi"));
        assert_eq!(value["SequenceNumber"], json!("7"));
    }
}
