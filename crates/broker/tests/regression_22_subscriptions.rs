//! Issue 22, items 7 and 10: subscriptions that grew memory without bound and outlived
//! their stream.
//!
//! Each subscription read ahead into a channel of 16 events of up to 10 MiB each, with no
//! cap on how many subscriptions there were, so subscribers that never read grew the
//! server's memory without bound (100 stalled gRPC subscribers: +1 GiB). A subscription of
//! a deleted stream kept sending heartbeats until its five minutes were up, never ended
//! with an error, and kept the deleted log open, so its disk space was not freed.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_broker::{
    Broker, BrokerConfig, CreateStream, Delivery, Error, PutRecordInput, StartingPosition,
    Subscription,
};

const SHARD: &str = "shardId-000000000000";
/// The longest anything here may take; nothing waits for it unless something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

async fn stream_with(b: &Arc<Broker>, name: &str, records: usize, bytes: usize) {
    b.create_stream(CreateStream::new(name, 1)).await.unwrap();
    for i in 0..records {
        let input = PutRecordInput {
            partition_key: format!("{}", i % 10),
            explicit_hash_key: None,
            data: Bytes::from(vec![i as u8; bytes]),
        };
        b.put_record(name, input).await.unwrap();
    }
}

async fn subscribe(b: &Arc<Broker>, stream: &str, position: StartingPosition) -> Subscription {
    b.subscribe(stream, SHARD, position).await.unwrap()
}

/// Polls `done` (every 10 ms, at most [`PATIENCE`]) until it holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Open descriptors and memory maps of this process that point under `dir`.
fn held_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let fds = std::fs::read_dir("/proc/self/fd").unwrap().flatten();
    let mut held: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&prefix))
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    held.extend(
        maps.lines()
            .filter(|l| l.contains(&prefix))
            .map(str::to_owned),
    );
    held
}

/// The one stream directory under the data directory.
fn stream_dir(data: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("streams"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// Checks the subscription ended with ResourceNotFound; returns the message.
fn assert_not_found(next: Option<sluice_broker::Result<Delivery>>) -> String {
    match next {
        Some(Err(Error::ResourceNotFound(m))) => m,
        Some(Ok(d)) => panic!("the subscription did not end: {:?}", d.event),
        other => panic!("the subscription did not end with ResourceNotFound: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_stream_ends_its_subscriptions_and_releases_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    stream_with(&b, "s", 3, 64 * 1024).await;
    let shard_dir = stream_dir(dir.path());
    // One subscription waits for records at the tip; the other took an event and was not
    // asked for the next (its client stopped reading).
    let mut waiting = subscribe(&b, "s", StartingPosition::Latest).await;
    let mut stalled = subscribe(&b, "s", StartingPosition::TrimHorizon).await;
    // Its client holds the event (and its bytes) as a stalled connection would.
    let Delivery { event, held } = stalled.next().await.unwrap().unwrap();
    assert_eq!(event.records.len(), 3);
    drop(event);
    let waiter = tokio::spawn(async move {
        let event = waiting.next().await;
        (event, waiting)
    });
    b.delete_stream("s").await.unwrap();
    let (event, mut waiting) = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("a subscription of a deleted stream ended at once")
        .unwrap();
    // (Usually "Stream s ... was deleted"; a read racing the deletion says so in its words.)
    assert_not_found(event);
    assert!(waiting.next().await.is_none(), "nothing after the error");
    assert_not_found(
        tokio::time::timeout(PATIENCE, stalled.next())
            .await
            .unwrap(),
    );
    // Both subscriptions are still alive, and neither keeps the stream's files.
    eventually("the deleted stream's files are released", || {
        !shard_dir.exists() && held_under(&shard_dir).is_empty()
    })
    .await;
    assert_eq!(b.subscription_stats().open, 2);
    drop((waiting, stalled));
    assert_eq!(b.subscription_stats().open, 0);
    assert!(
        b.subscription_stats().buffered_bytes > 0,
        "until it is sent"
    );
    drop(held);
    assert_eq!(b.subscription_stats().buffered_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_racing_delete_stream_is_not_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(config(dir.path())).unwrap();
    for round in 0..20 {
        let name = format!("s{round}");
        stream_with(&b, &name, 0, 0).await;
        let (b2, n2) = (b.clone(), name.clone());
        let subscriber = tokio::spawn(async move {
            let mut s = b2.subscribe(&n2, SHARD, StartingPosition::Latest).await?;
            Ok::<_, Error>(s.next().await)
        });
        b.delete_stream(&name).await.unwrap();
        match tokio::time::timeout(PATIENCE, subscriber)
            .await
            .unwrap()
            .unwrap()
        {
            // Refused outright, or subscribed just before the delete and ended by it.
            Err(Error::ResourceNotFound(_)) => {}
            Ok(next) => {
                assert_not_found(next);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_a_cap_are_refused_with_limit_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        subscriptions_max: 3,
        subscriptions_per_shard_max: 2,
        ..config(dir.path())
    })
    .unwrap();
    stream_with(&b, "a", 0, 0).await;
    stream_with(&b, "b", 0, 0).await;
    let a1 = subscribe(&b, "a", StartingPosition::Latest).await;
    let _a2 = subscribe(&b, "a", StartingPosition::Latest).await;
    let refused = b.subscribe("a", SHARD, StartingPosition::Latest).await;
    assert!(
        matches!(&refused, Err(Error::LimitExceeded(m)) if m.contains("subscriptions_per_shard_max")),
        "{refused:?}"
    );
    let _b1 = subscribe(&b, "b", StartingPosition::Latest).await;
    let refused = b.subscribe("b", SHARD, StartingPosition::Latest).await;
    assert!(
        matches!(&refused, Err(Error::LimitExceeded(m)) if m.contains("subscriptions_max")),
        "{refused:?}"
    );
    assert_eq!(b.subscription_stats().open, 3);
    // A subscription that ends gives its place back.
    drop(a1);
    let _a3 = subscribe(&b, "a", StartingPosition::Latest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_has_one_subscription_per_shard() {
    let dir = tempfile::tempdir().unwrap();
    // Takeover only after an hour: a second subscription of the consumer is refused.
    let b = Broker::open(BrokerConfig {
        subscription_takeover_ms: 3_600_000,
        ..config(dir.path())
    })
    .unwrap();
    stream_with(&b, "s", 0, 0).await;
    let arn = b.register_consumer("s", "c").await.unwrap().arn;
    let _first = b
        .subscribe_consumer(&arn, SHARD, StartingPosition::Latest)
        .await
        .unwrap();
    let second = b
        .subscribe_consumer(&arn, SHARD, StartingPosition::Latest)
        .await;
    assert!(
        matches!(&second, Err(Error::ResourceInUse(_))),
        "{second:?}"
    );
    // Another consumer, and plain subscriptions, are not affected.
    let other = b.register_consumer("s", "d").await.unwrap().arn;
    b.subscribe_consumer(&other, SHARD, StartingPosition::Latest)
        .await
        .unwrap();
    subscribe(&b, "s", StartingPosition::Latest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_subscription_of_a_consumer_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        subscription_takeover_ms: 0,
        ..config(dir.path())
    })
    .unwrap();
    stream_with(&b, "s", 1, 10).await;
    let arn = b.register_consumer("s", "c").await.unwrap().arn;
    let mut first = b
        .subscribe_consumer(&arn, SHARD, StartingPosition::Latest)
        .await
        .unwrap();
    let mut second = b
        .subscribe_consumer(&arn, SHARD, StartingPosition::TrimHorizon)
        .await
        .unwrap();
    match tokio::time::timeout(PATIENCE, first.next()).await.unwrap() {
        Some(Err(Error::ResourceInUse(m))) => assert!(m.contains("took over"), "{m}"),
        other => panic!("the older subscription was not ended: {other:?}"),
    }
    assert!(first.next().await.is_none());
    let delivery = second.next().await.unwrap().unwrap();
    assert_eq!(delivery.event.records.len(), 1);
    // The ended one gave its place to the new one at once.
    assert_eq!(b.subscription_stats().open, 1);
    drop(first);
    assert_eq!(b.subscription_stats().open, 1);
    drop(second);
    assert_eq!(b.subscription_stats().open, 0);
}

/// A broker whose subscriptions may hold 2 MiB each and 16 MiB in all, with one stream
/// of 20 records of 524,000 bytes: each event carries two (half the subscription's budget).
async fn budgeted(dir: &Path) -> Arc<Broker> {
    let b = Broker::open(BrokerConfig {
        subscription_bytes_max: 2 << 20,
        subscription_bytes_total_max: TOTAL,
        ..config(dir)
    })
    .unwrap();
    stream_with(&b, "s", 20, 524_000).await;
    b
}

const TOTAL: usize = 16 << 20;

/// Asserts the subscriptions hold no more than the total budget; returns the stats.
fn within_budget(b: &Broker) -> sluice_broker::SubscriptionStats {
    let stats = b.subscription_stats();
    assert!(stats.buffered_bytes <= TOTAL, "{stats:?}");
    stats
}

/// Polls `next` while waiting until one more subscription than `before` waits for a
/// budget; fails if `next` completes first.
async fn until_it_waits<F: std::future::Future>(b: &Broker, before: usize, next: F)
where
    F::Output: std::fmt::Debug,
{
    tokio::pin!(next);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while within_budget(b).waiting == before {
        tokio::select! {
            out = &mut next => panic!("a subscriber over its budget read more: {out:?}"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "it never waited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_holds_no_more_than_its_own_budget() {
    let dir = tempfile::tempdir().unwrap();
    let b = budgeted(dir.path()).await;
    let mut s = subscribe(&b, "s", StartingPosition::TrimHorizon).await;
    // Its connection takes two events (as HTTP/2 does) and sends neither.
    let mut unsent = Vec::new();
    for _ in 0..2 {
        let d = s.next().await.unwrap().unwrap();
        assert_eq!(d.event.records.len(), 2);
        unsent.push(d.held);
    }
    let held = within_budget(&b).buffered_bytes;
    assert!(held > 2_000_000, "{held}");
    // A third would pass its 2 MiB: it waits, reading nothing, though the total has room.
    until_it_waits(&b, 0, s.next()).await;
    assert_eq!(within_budget(&b).buffered_bytes, held);
    // Once the connection has sent one, the next event comes.
    unsent.remove(0);
    let d = tokio::time::timeout(PATIENCE, s.next()).await.unwrap();
    assert_eq!(d.unwrap().unwrap().event.records.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_stop_reading_hold_no_more_than_the_total_budget() {
    const SUBSCRIBERS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let b = budgeted(dir.path()).await;
    // Every subscriber's connection takes an event and does not send it: 1 MiB each,
    // 20 MiB in all, more than the 16 MiB budget.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..SUBSCRIBERS {
        let mut s = subscribe(&b, "s", StartingPosition::TrimHorizon).await;
        let done = done_tx.clone();
        tokio::spawn(async move {
            let d = s.next().await.unwrap().unwrap();
            assert_eq!(d.event.records.len(), 2);
            done.send((s, d.held)).unwrap();
        });
    }
    let mut stalled = Vec::new();
    eventually(
        "every subscriber holds its event or waits for the budget",
        || {
            while let Ok(s) = done_rx.try_recv() {
                stalled.push(s);
            }
            stalled.len() + within_budget(&b).waiting == SUBSCRIBERS
        },
    )
    .await;
    // 16 events of 1,048,002 bytes fit in 16 MiB, not 17.
    assert_eq!(stalled.len(), 16);
    // A stalled subscriber asked for its next event waits too, though its own budget has
    // room: the total has none.
    let waiting = within_budget(&b).waiting;
    until_it_waits(&b, waiting, stalled[0].0.next()).await;
    // Once the stalled connections send their events, the waiting subscribers get theirs.
    let mut finished = stalled.len();
    stalled.clear();
    eventually("the waiting subscribers get their events", || {
        while let Ok(s) = done_rx.try_recv() {
            drop(s);
            finished += 1;
        }
        within_budget(&b);
        finished == SUBSCRIBERS
    })
    .await;
    assert_eq!(b.subscription_stats().buffered_bytes, 0);
}
