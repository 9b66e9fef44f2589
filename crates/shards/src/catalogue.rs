//! The catalogue: every stream and its lineage, and the [`Event`]s that change it.
//!
//! This is the state the journal describes. It changes only through [`Catalogue::apply`],
//! both live (after the event is synced) and at replay, so the two cannot drift apart. It
//! holds no files and no logs: the manager keeps those beside it.

use std::collections::BTreeMap;

use sluice_storage::TimestampMs;

use crate::lineage::{Lineage, Reshard, ReshardKind, ShardId};
use crate::stream::{Deleting, StreamMeta};

/// One change to the catalogue: one journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// CreateStream. The shards are the uniform layout of `shard_count`, ids `0..count`.
    StreamCreated {
        uid: u64,
        name: String,
        shard_count: u32,
        retention_hours: u32,
        max_record_size_kib: u32,
        tags: BTreeMap<String, String>,
        created: TimestampMs,
        ready_at: TimestampMs,
    },
    /// SplitShard, MergeShards or UpdateShardCount. UPDATING until `ready_at`.
    Resharded {
        uid: u64,
        ready_at: TimestampMs,
        change: Reshard,
    },
    /// Increase/DecreaseStreamRetentionPeriod.
    RetentionChanged { uid: u64, hours: u32 },
    /// AddTagsToStream (overwrites existing keys).
    TagsAdded {
        uid: u64,
        tags: BTreeMap<String, String>,
    },
    /// RemoveTagsFromStream (unknown keys ignored).
    TagsRemoved { uid: u64, keys: Vec<String> },
    /// DeleteStream: DELETING from `at`, gone at `gone_at`.
    StreamDeleting {
        uid: u64,
        at: TimestampMs,
        gone_at: TimestampMs,
    },
    /// The deleted stream's record is dropped; its logs are removed after this is durable.
    StreamPurged { uid: u64 },
    /// A closed shard's records all expired; its log is removed after this is durable.
    ShardExpired {
        uid: u64,
        shard: ShardId,
        at: TimestampMs,
    },
}

/// Every stream not yet purged, by uid, with a name index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Catalogue {
    streams: BTreeMap<u64, StreamMeta>,
    names: BTreeMap<String, u64>,
    uid_next: u64,
}

impl Catalogue {
    /// Rebuilds a catalogue from a snapshot's streams, checking names are unique.
    pub fn from_parts(streams: Vec<StreamMeta>, uid_next: u64) -> Result<Catalogue, String> {
        let mut c = Catalogue {
            uid_next,
            ..Catalogue::default()
        };
        for s in streams {
            if s.uid >= uid_next {
                return Err(format!(
                    "stream uid {} is not below uid_next {uid_next}",
                    s.uid
                ));
            }
            if c.names.insert(s.name.clone(), s.uid).is_some() {
                return Err(format!("stream name {:?} appears twice", s.name));
            }
            if c.streams.insert(s.uid, s).is_some() {
                return Err("a stream uid appears twice".into());
            }
        }
        Ok(c)
    }

    /// The uid the next created stream gets.
    pub fn uid_next(&self) -> u64 {
        self.uid_next
    }

    /// The stream named `name` (possibly deleting or past deletion, not yet purged).
    pub fn by_name(&self, name: &str) -> Option<&StreamMeta> {
        self.names.get(name).and_then(|uid| self.streams.get(uid))
    }

    /// The stream with this uid.
    pub fn by_uid(&self, uid: u64) -> Option<&StreamMeta> {
        self.streams.get(&uid)
    }

    /// Every stream, in uid order.
    pub fn streams(&self) -> impl Iterator<Item = &StreamMeta> {
        self.streams.values()
    }

    /// Streams with names after `after`, in name order.
    pub fn names_after<'a>(
        &'a self,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a StreamMeta> {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        self.names
            .range::<str, _>((lower, Bound::Unbounded))
            .filter_map(|(_, uid)| self.streams.get(uid))
    }

    /// Applies one event. `Err` names the broken rule (a corrupt journal on replay, a bug
    /// when live, as events are built from checked requests).
    pub fn apply(&mut self, event: &Event) -> Result<(), String> {
        match event {
            Event::StreamCreated { .. } => self.apply_created(event),
            Event::Resharded {
                uid,
                ready_at,
                change,
            } => apply_resharded(self.stream_mut(*uid)?, *ready_at, change),
            Event::RetentionChanged { uid, hours } => {
                self.stream_mut(*uid)?.retention_hours = *hours;
                Ok(())
            }
            Event::TagsAdded { uid, tags } => {
                let s = self.stream_mut(*uid)?;
                s.tags
                    .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                Ok(())
            }
            Event::TagsRemoved { uid, keys } => {
                let s = self.stream_mut(*uid)?;
                for k in keys {
                    s.tags.remove(k);
                }
                Ok(())
            }
            Event::StreamDeleting { uid, at, gone_at } => {
                let s = self.stream_mut(*uid)?;
                if s.deleting.is_some() {
                    return Err(format!("stream uid {uid} is deleted twice"));
                }
                s.deleting = Some(Deleting {
                    at: *at,
                    gone_at: *gone_at,
                });
                Ok(())
            }
            Event::StreamPurged { uid } => {
                let s = self
                    .streams
                    .remove(uid)
                    .ok_or_else(|| format!("purge of unknown stream uid {uid}"))?;
                if s.deleting.is_none() {
                    return Err(format!("purge of stream uid {uid}, which was not deleted"));
                }
                self.names.remove(&s.name);
                Ok(())
            }
            Event::ShardExpired { uid, shard, at } => {
                self.stream_mut(*uid)?.lineage.expire(*shard, *at)
            }
        }
    }

    fn apply_created(&mut self, event: &Event) -> Result<(), String> {
        let meta = self.created(event)?;
        self.insert_created(meta)
    }

    /// The stream a StreamCreated event creates, checked against the catalogue but not
    /// added to it (a caller builds it outside the catalogue's lock, then adds it with
    /// [`Catalogue::insert_created`]). `Err` as [`Catalogue::apply`].
    pub fn created(&self, event: &Event) -> Result<StreamMeta, String> {
        let Event::StreamCreated {
            uid,
            name,
            shard_count,
            retention_hours,
            max_record_size_kib,
            tags,
            created,
            ready_at,
        } = event
        else {
            return Err("not a StreamCreated event".into());
        };
        if *uid != self.uid_next {
            return Err(format!(
                "stream created with uid {uid}, expected {}",
                self.uid_next
            ));
        }
        if self.names.contains_key(name) {
            return Err(format!(
                "stream {name:?} created while another has the name"
            ));
        }
        if *shard_count == 0 {
            return Err(format!("stream {name:?} created with no shard"));
        }
        let meta = StreamMeta {
            uid: *uid,
            name: name.clone(),
            created: *created,
            ready_at: *ready_at,
            updating_until: *ready_at,
            retention_hours: *retention_hours,
            max_record_size_kib: *max_record_size_kib,
            tags: tags.clone(),
            count_updates: Vec::new(),
            deleting: None,
            lineage: Lineage::initial(*shard_count, *created),
        };
        Ok(meta)
    }

    /// Adds a stream built by [`Catalogue::created`], checking again that its uid is the
    /// next one and its name is free.
    pub fn insert_created(&mut self, meta: StreamMeta) -> Result<(), String> {
        if meta.uid != self.uid_next || self.names.contains_key(&meta.name) {
            return Err(format!(
                "stream {:?} (uid {}) no longer fits the catalogue",
                meta.name, meta.uid
            ));
        }
        self.uid_next += 1;
        self.names.insert(meta.name.clone(), meta.uid);
        self.streams.insert(meta.uid, meta);
        Ok(())
    }

    /// The stream a reshard event changes, as it is after the event: a copy, built without
    /// touching the catalogue (so a caller can build it outside the catalogue's lock and
    /// swap it in with [`Catalogue::replace`]). `Err` as [`Catalogue::apply`].
    pub fn resharded(&self, event: &Event) -> Result<StreamMeta, String> {
        let Event::Resharded {
            uid,
            ready_at,
            change,
        } = event
        else {
            return Err("not a reshard event".into());
        };
        let mut s = self
            .streams
            .get(uid)
            .ok_or_else(|| format!("event names unknown stream uid {uid}"))?
            .clone();
        apply_resharded(&mut s, *ready_at, change)?;
        Ok(s)
    }

    /// Puts `s` in place of the stream with its uid (and name); returns the one replaced.
    pub fn replace(&mut self, s: StreamMeta) -> Result<StreamMeta, String> {
        let old = self.stream_mut(s.uid)?;
        if old.name != s.name {
            return Err(format!(
                "stream uid {} is {}, not {}",
                s.uid, old.name, s.name
            ));
        }
        Ok(std::mem::replace(old, s))
    }

    fn stream_mut(&mut self, uid: u64) -> Result<&mut StreamMeta, String> {
        self.streams
            .get_mut(&uid)
            .ok_or_else(|| format!("event names unknown stream uid {uid}"))
    }
}

/// A journaled reshard applied to its stream.
fn apply_resharded(
    s: &mut StreamMeta,
    ready_at: TimestampMs,
    change: &Reshard,
) -> Result<(), String> {
    s.lineage.apply(change)?;
    s.updating_until = s.updating_until.max(ready_at);
    if let ReshardKind::UniformScaling { .. } = change.kind {
        s.count_updates.push(change.at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_storage::SeqNo;

    fn created(uid: u64, name: &str, shards: u32) -> Event {
        Event::StreamCreated {
            uid,
            name: name.into(),
            shard_count: shards,
            retention_hours: 24,
            max_record_size_kib: 1024,
            tags: BTreeMap::new(),
            created: TimestampMs(1),
            ready_at: TimestampMs(1),
        }
    }

    fn resize(c: &Catalogue, uid: u64, target: u32) -> Event {
        let plan = c.by_uid(uid).unwrap().lineage.plan_uniform(target);
        Event::Resharded {
            uid,
            ready_at: TimestampMs(5),
            change: Reshard {
                kind: ReshardKind::UniformScaling { target },
                at: TimestampMs(2),
                creates: plan.creates,
                closes: plan.closes.into_iter().map(|id| (id, SeqNo(0))).collect(),
            },
        }
    }

    /// Building a change outside the catalogue and swapping it in gives what applying it
    /// in place gives; a stale build is refused, not swapped in.
    #[test]
    fn built_outside_then_swapped_in_equals_applied_in_place() {
        let mut in_place = Catalogue::default();
        let mut swapped = Catalogue::default();
        let event = created(0, "s", 10);
        in_place.apply(&event).unwrap();
        let meta = swapped.created(&event).unwrap();
        swapped.insert_created(meta.clone()).unwrap();
        assert_eq!(in_place, swapped);
        assert!(
            swapped.insert_created(meta).is_err(),
            "uid and name now taken"
        );

        let event = resize(&in_place, 0, 13);
        in_place.apply(&event).unwrap();
        let after = swapped.resharded(&event).unwrap();
        let mut renamed = after.clone();
        renamed.name = "t".into();
        assert!(swapped.replace(renamed).is_err());
        let before = swapped.replace(after).unwrap();
        assert_eq!(in_place, swapped);
        assert_eq!(before.lineage.open_count(), 10);
        assert!(swapped.resharded(&created(1, "u", 1)).is_err());
        assert!(swapped.resharded(&event).is_err(), "the same closes twice");
    }
}
