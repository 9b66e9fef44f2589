//! Enhanced fan-out consumers: registered per stream, named by an ARN that embeds their
//! creation time, and used by SubscribeToShard.
//!
//! The registry is small (at most 20 consumers per stream) and changes rarely, so it is one
//! text file in the data directory, rewritten whole on every change (temporary name, sync,
//! rename, sync the directory):
//!
//! ```text
//! SLUICE-CONSUMERS 1
//! <stream uid>\t<created ms>\t<stream name>\t<consumer name>
//! ```
//!
//! A consumer belongs to one incarnation of a stream (its uid); when the stream is deleted,
//! its consumers go with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_storage::TimestampMs;

use crate::broker::{Broker, blocking, lock, now_ms};
use crate::error::{Error, Result};
use crate::subscribe::Subscription;
use crate::types::StartingPosition;

const FILE: &str = "consumers";
const HEADER: &str = "SLUICE-CONSUMERS 1";
/// Consumers one stream may have (Kinesis: 20).
pub const CONSUMERS_PER_STREAM_MAX: usize = 20;

/// A registered consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerView {
    /// Its name.
    pub name: String,
    /// `{stream ARN}/consumer/{name}:{creation epoch seconds}`.
    pub arn: String,
    /// `ACTIVE` (registration completes at once).
    pub status: &'static str,
    /// When it was registered.
    pub created: TimestampMs,
    /// Its stream's ARN.
    pub stream_arn: String,
}

/// How a call names a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRef {
    /// By its ARN.
    Arn(String),
    /// By its stream's name and its own name.
    Name {
        /// The stream.
        stream: String,
        /// The consumer.
        name: String,
    },
}

/// One line of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    uid: u64,
    created_ms: u64,
    stream: String,
    name: String,
}

/// The registry, loaded at start-up.
pub(crate) fn load(dir: &Path) -> Result<Vec<Registered>> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Internal(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let corrupt =
        |line: usize| Error::Internal(format!("{} is corrupt at line {line}", path.display()));
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(corrupt(1));
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            match f[..] {
                [uid, created, stream, name] => Ok(Registered {
                    uid: uid.parse().map_err(|_| corrupt(i + 2))?,
                    created_ms: created.parse().map_err(|_| corrupt(i + 2))?,
                    stream: stream.to_owned(),
                    name: name.to_owned(),
                }),
                _ => Err(corrupt(i + 2)),
            }
        })
        .collect()
}

fn save(dir: &Path, all: &[Registered]) -> Result<()> {
    let path = dir.join(FILE);
    let tmp: PathBuf = dir.join(format!("{FILE}.tmp"));
    let io = |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    let mut text = format!("{HEADER}\n");
    for r in all {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            r.uid, r.created_ms, r.stream, r.name
        ));
    }
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Broker {
    /// RegisterStreamConsumer.
    pub async fn register_consumer(&self, stream: &str, name: &str) -> Result<ConsumerView> {
        if !valid_name(name) {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{name}' at 'consumerName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 1 and 128"
            )));
        }
        let uid = self.current_uid(stream).await?;
        let mut all = lock(&self.consumers);
        let mine: Vec<&Registered> = all.iter().filter(|r| r.uid == uid).collect();
        if mine.iter().any(|r| r.name == name) {
            return Err(Error::ResourceInUse(format!(
                "Consumer {name} under stream {stream} already exists for account {}.",
                self.config.manager.account
            )));
        }
        if mine.len() >= CONSUMERS_PER_STREAM_MAX {
            return Err(Error::LimitExceeded(format!(
                "Stream {stream} already has {CONSUMERS_PER_STREAM_MAX} registered consumers."
            )));
        }
        let r = Registered {
            uid,
            created_ms: now_ms().0,
            stream: stream.to_owned(),
            name: name.to_owned(),
        };
        let mut next = all.clone();
        next.push(r.clone());
        save(&self.config.data_dir, &next)?;
        *all = next;
        Ok(self.view(&r))
    }

    /// DescribeStreamConsumer.
    pub async fn describe_consumer(&self, by: &ConsumerRef) -> Result<ConsumerView> {
        let r = self.find_consumer(by).await?;
        Ok(self.view(&r))
    }

    /// ListStreamConsumers.
    pub async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerView>> {
        let uid = self.current_uid(stream).await?;
        let all = lock(&self.consumers);
        Ok(all
            .iter()
            .filter(|r| r.uid == uid)
            .map(|r| self.view(r))
            .collect())
    }

    /// DeregisterStreamConsumer.
    pub async fn deregister_consumer(&self, by: &ConsumerRef) -> Result<()> {
        let r = self.find_consumer(by).await?;
        let mut all = lock(&self.consumers);
        let next: Vec<Registered> = all.iter().filter(|x| **x != r).cloned().collect();
        save(&self.config.data_dir, &next)?;
        *all = next;
        Ok(())
    }

    /// DeleteStream as Kinesis defines it: refused while consumers are registered unless
    /// `enforce_consumer_deletion`, which deregisters them.
    pub async fn delete_stream_with_consumers(
        &self,
        name: &str,
        enforce_consumer_deletion: bool,
    ) -> Result<()> {
        let uid = self.current_uid(name).await?;
        let has = lock(&self.consumers).iter().any(|r| r.uid == uid);
        if has && !enforce_consumer_deletion {
            return Err(Error::ResourceInUse(format!(
                "Stream {name} under account {} has registered consumers; set EnforceConsumerDeletion to delete them with the stream.",
                self.config.manager.account
            )));
        }
        self.delete_stream(name).await
    }

    /// SubscribeToShard: a subscription on behalf of a registered consumer, which may
    /// have one per shard (a second within `subscription_takeover_ms` of the first is
    /// refused with `ResourceInUse`; a later one takes over).
    pub async fn subscribe_consumer(
        self: &Arc<Self>,
        consumer_arn: &str,
        shard_id: &str,
        position: StartingPosition,
    ) -> Result<Subscription> {
        let r = self
            .find_consumer(&ConsumerRef::Arn(consumer_arn.to_owned()))
            .await?;
        let arn = self.view(&r).arn;
        self.subscribe_as(&r.stream, shard_id, position, Some(arn))
            .await
    }

    pub(crate) fn drop_consumers_of(&self, uid: u64) -> Result<()> {
        let mut all = lock(&self.consumers);
        if all.iter().any(|r| r.uid == uid) {
            let next: Vec<Registered> = all.iter().filter(|r| r.uid != uid).cloned().collect();
            save(&self.config.data_dir, &next)?;
            *all = next;
        }
        Ok(())
    }

    async fn current_uid(&self, stream: &str) -> Result<u64> {
        let (m, name) = (self.manager.clone(), stream.to_owned());
        let (d, _) =
            blocking(move || Ok(m.describe_stream_page(&name, None, 0, now_ms())?)).await?;
        Ok(d.uid)
    }

    async fn find_consumer(&self, by: &ConsumerRef) -> Result<Registered> {
        let (stream, name, created_s) = match by {
            ConsumerRef::Name { stream, name } => (stream.clone(), name.clone(), None),
            ConsumerRef::Arn(arn) => {
                let bad =
                    || Error::InvalidArgument(format!("ConsumerARN {arn} is not a consumer ARN."));
                let (stream_arn, rest) = arn.split_once("/consumer/").ok_or_else(bad)?;
                let (name, created) = rest.rsplit_once(':').ok_or_else(bad)?;
                let stream = self
                    .config
                    .manager
                    .stream_name_from_arn(stream_arn)
                    .ok_or_else(bad)?;
                (
                    stream.to_owned(),
                    name.to_owned(),
                    Some(created.parse::<u64>().map_err(|_| bad())?),
                )
            }
        };
        let not_found = || {
            Error::ResourceNotFound(format!(
                "Consumer {name} under stream {stream} not found for account {}.",
                self.config.manager.account
            ))
        };
        let uid = match self.current_uid(&stream).await {
            Ok(uid) => uid,
            Err(Error::ResourceNotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e),
        };
        let all = lock(&self.consumers);
        all.iter()
            .find(|r| {
                r.uid == uid && r.name == name && created_s.is_none_or(|c| c == r.created_ms / 1000)
            })
            .cloned()
            .ok_or_else(not_found)
    }

    fn view(&self, r: &Registered) -> ConsumerView {
        let stream_arn = self.config.manager.stream_arn(&r.stream);
        ConsumerView {
            name: r.name.clone(),
            arn: format!("{stream_arn}/consumer/{}:{}", r.name, r.created_ms / 1000),
            status: "ACTIVE",
            created: TimestampMs(r.created_ms),
            stream_arn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_file_round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let all = vec![Registered {
            uid: 3,
            created_ms: 1_700_000_000_123,
            stream: "s".into(),
            name: "c-1".into(),
        }];
        save(dir.path(), &all).unwrap();
        assert_eq!(load(dir.path()).unwrap(), all);
        std::fs::write(dir.path().join(FILE), "SLUICE-CONSUMERS 1\nnot\ta\tline\n").unwrap();
        assert!(load(dir.path()).is_err());
    }

    #[test]
    fn consumer_names_follow_the_kinesis_pattern() {
        assert!(valid_name("my.consumer-1_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name("tab\tname"));
        assert!(!valid_name(&"a".repeat(129)));
    }
}
