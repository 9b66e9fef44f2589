//! Pure encoding of journal events and of the catalogue snapshot: bytes in, values out, no
//! files. Framing (length, checksums, sequence) is `journal`'s job; docs/FORMAT.md
//! (Metadata journal) mirrors the layouts below.
//!
//! Primitives, all little-endian: `u8`, `u32`, `u64`, `u128` (16 bytes); `str` = `u32` byte
//! length + UTF-8; `opt<T>` = `u8` flag (0 absent, 1 present) + `T` if present;
//! `map` = `u32` count + `count × (str key, str value)`, keys ascending.
//!
//! Event body (first byte is the tag):
//!
//! | tag | event | fields after the tag |
//! |---|---|---|
//! | 1 | StreamCreated | uid u64, name str, shard_count u32, retention_hours u32, max_record_size_kib u32, tags map, created u64, ready_at u64 |
//! | 2 | Resharded | uid u64, ready_at u64, kind u8 (1 split, 2 merge, 3 uniform), target u32, at u64, creates u32 n + n × new-shard, closes u32 n + n × (shard u64, end u64) |
//! | 3 | RetentionChanged | uid u64, hours u32 |
//! | 4 | TagsAdded | uid u64, tags map |
//! | 5 | TagsRemoved | uid u64, keys u32 n + n × str |
//! | 6 | StreamDeleting | uid u64, at u64, gone_at u64 |
//! | 7 | StreamPurged | uid u64 |
//! | 8 | ShardExpired | uid u64, shard u64, at u64 |
//!
//! new-shard = id u64, start u128, end u128, parent u64, adjacent_parent opt<u64>.
//!
//! Snapshot body: uid_next u64, streams u32 n, then per stream: uid u64, name str, created
//! u64, ready_at u64, updating_until u64, retention_hours u32, max_record_size_kib u32, tags
//! map, count_updates u32 n + n × u64, deleting opt<(at u64, gone_at u64)>, shards u32 n +
//! n × shard; shard = id u64, start u128, end u128, parent opt<u64>, adjacent_parent
//! opt<u64>, created u64, closed opt<(at u64, end u64)>, expired opt<u64>.

use std::collections::BTreeMap;

use sluice_storage::{SeqNo, TimestampMs};

use crate::catalogue::{Catalogue, Event};
use crate::hash_range::{HashKey, HashRange};
use crate::lineage::{Lineage, NewShard, Reshard, ReshardKind, ShardClose, ShardId, ShardInfo};
use crate::stream::{Deleting, StreamMeta};

const TAG_STREAM_CREATED: u8 = 1;
const TAG_RESHARDED: u8 = 2;
const TAG_RETENTION_CHANGED: u8 = 3;
const TAG_TAGS_ADDED: u8 = 4;
const TAG_TAGS_REMOVED: u8 = 5;
const TAG_STREAM_DELETING: u8 = 6;
const TAG_STREAM_PURGED: u8 = 7;
const TAG_SHARD_EXPIRED: u8 = 8;

const KIND_SPLIT: u8 = 1;
const KIND_MERGE: u8 = 2;
const KIND_UNIFORM: u8 = 3;

/// Appends the encoding of `event` to `out`.
pub(crate) fn encode_event(event: &Event, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    match event {
        Event::StreamCreated {
            uid,
            name,
            shard_count,
            retention_hours,
            max_record_size_kib,
            tags,
            created,
            ready_at,
        } => {
            w.u8(TAG_STREAM_CREATED);
            w.u64(*uid);
            w.str(name);
            w.u32(*shard_count);
            w.u32(*retention_hours);
            w.u32(*max_record_size_kib);
            w.map(tags);
            w.u64(created.0);
            w.u64(ready_at.0);
        }
        Event::Resharded {
            uid,
            ready_at,
            change,
        } => {
            w.u8(TAG_RESHARDED);
            w.u64(*uid);
            w.u64(ready_at.0);
            w.reshard(change);
        }
        Event::RetentionChanged { uid, hours } => {
            w.u8(TAG_RETENTION_CHANGED);
            w.u64(*uid);
            w.u32(*hours);
        }
        Event::TagsAdded { uid, tags } => {
            w.u8(TAG_TAGS_ADDED);
            w.u64(*uid);
            w.map(tags);
        }
        Event::TagsRemoved { uid, keys } => {
            w.u8(TAG_TAGS_REMOVED);
            w.u64(*uid);
            w.len(keys.len());
            for k in keys {
                w.str(k);
            }
        }
        Event::StreamDeleting { uid, at, gone_at } => {
            w.u8(TAG_STREAM_DELETING);
            w.u64(*uid);
            w.u64(at.0);
            w.u64(gone_at.0);
        }
        Event::StreamPurged { uid } => {
            w.u8(TAG_STREAM_PURGED);
            w.u64(*uid);
        }
        Event::ShardExpired { uid, shard, at } => {
            w.u8(TAG_SHARD_EXPIRED);
            w.u64(*uid);
            w.u64(shard.index());
            w.u64(at.0);
        }
    }
}

/// Decodes one event body. `Err` says what was wrong and at which byte of the body.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut r = Reader { bytes, pos: 0 };
    let event = match r.u8()? {
        TAG_STREAM_CREATED => Event::StreamCreated {
            uid: r.u64()?,
            name: r.str()?,
            shard_count: r.u32()?,
            retention_hours: r.u32()?,
            max_record_size_kib: r.u32()?,
            tags: r.map()?,
            created: TimestampMs(r.u64()?),
            ready_at: TimestampMs(r.u64()?),
        },
        TAG_RESHARDED => Event::Resharded {
            uid: r.u64()?,
            ready_at: TimestampMs(r.u64()?),
            change: r.reshard()?,
        },
        TAG_RETENTION_CHANGED => Event::RetentionChanged {
            uid: r.u64()?,
            hours: r.u32()?,
        },
        TAG_TAGS_ADDED => Event::TagsAdded {
            uid: r.u64()?,
            tags: r.map()?,
        },
        TAG_TAGS_REMOVED => {
            let uid = r.u64()?;
            let n = r.u32()?;
            let keys = (0..n).map(|_| r.str()).collect::<Result<_, _>>()?;
            Event::TagsRemoved { uid, keys }
        }
        TAG_STREAM_DELETING => Event::StreamDeleting {
            uid: r.u64()?,
            at: TimestampMs(r.u64()?),
            gone_at: TimestampMs(r.u64()?),
        },
        TAG_STREAM_PURGED => Event::StreamPurged { uid: r.u64()? },
        TAG_SHARD_EXPIRED => Event::ShardExpired {
            uid: r.u64()?,
            shard: ShardId::from_index(r.u64()?),
            at: TimestampMs(r.u64()?),
        },
        tag => return Err(format!("unknown event tag {tag}")),
    };
    r.finish()?;
    Ok(event)
}

/// Appends the snapshot encoding of the whole catalogue to `out`.
pub(crate) fn encode_catalogue(catalogue: &Catalogue, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.u64(catalogue.uid_next());
    let streams: Vec<&StreamMeta> = catalogue.streams().collect();
    w.len(streams.len());
    for s in streams {
        w.stream(s);
    }
}

/// Decodes a snapshot body, checking every stream's lineage invariants.
pub(crate) fn decode_catalogue(bytes: &[u8]) -> Result<Catalogue, String> {
    let mut r = Reader { bytes, pos: 0 };
    let uid_next = r.u64()?;
    let n = r.u32()?;
    let streams = (0..n).map(|_| r.stream()).collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Catalogue::from_parts(streams, uid_next)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Every encoded collection is bounded far below 2^32 by the manager's limits
        // (names, tags, shards per stream), so this only fires on our own bug.
        let n = u32::try_from(n).expect("collection length fits in u32");
        self.u32(n);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn map(&mut self, m: &BTreeMap<String, String>) {
        self.len(m.len());
        for (k, v) in m {
            self.str(k);
            self.str(v);
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    fn range(&mut self, r: HashRange) {
        self.u128(r.start().0);
        self.u128(r.end().0);
    }
    fn reshard(&mut self, c: &Reshard) {
        let (kind, target) = match c.kind {
            ReshardKind::Split => (KIND_SPLIT, 0),
            ReshardKind::Merge => (KIND_MERGE, 0),
            ReshardKind::UniformScaling { target } => (KIND_UNIFORM, target),
        };
        self.u8(kind);
        self.u32(target);
        self.u64(c.at.0);
        self.len(c.creates.len());
        for s in &c.creates {
            self.u64(s.id.index());
            self.range(s.range);
            self.u64(s.parent.index());
            self.opt_u64(s.adjacent_parent.map(ShardId::index));
        }
        self.len(c.closes.len());
        for (id, end) in &c.closes {
            self.u64(id.index());
            self.u64(end.0);
        }
    }
    fn stream(&mut self, s: &StreamMeta) {
        self.u64(s.uid);
        self.str(&s.name);
        self.u64(s.created.0);
        self.u64(s.ready_at.0);
        self.u64(s.updating_until.0);
        self.u32(s.retention_hours);
        self.u32(s.max_record_size_kib);
        self.map(&s.tags);
        self.len(s.count_updates.len());
        for t in &s.count_updates {
            self.u64(t.0);
        }
        match s.deleting {
            Some(d) => {
                self.u8(1);
                self.u64(d.at.0);
                self.u64(d.gone_at.0);
            }
            None => self.u8(0),
        }
        self.len(s.lineage.all().len());
        for sh in s.lineage.all() {
            self.shard(sh);
        }
    }
    fn shard(&mut self, s: &ShardInfo) {
        self.u64(s.id().index());
        self.range(s.range());
        self.opt_u64(s.parent().map(ShardId::index));
        self.opt_u64(s.adjacent_parent().map(ShardId::index));
        self.u64(s.created().0);
        match s.closed() {
            Some(c) => {
                self.u8(1);
                self.u64(c.at.0);
                self.u64(c.end.0);
            }
            None => self.u8(0),
        }
        self.opt_u64(s.expired().map(|t| t.0));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos.checked_add(N).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "body ends at byte {} inside a {N}-byte field",
                self.bytes.len()
            ));
        };
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_le_bytes(self.take()?))
    }
    fn flag(&mut self) -> Result<bool, String> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!(
                "flag byte {v} at body byte {at} is neither 0 nor 1"
            )),
        }
    }
    fn str(&mut self) -> Result<String, String> {
        let at = self.pos;
        let n = self.u32()? as usize;
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "string of {n} bytes at body byte {at} runs past the end"
            ));
        };
        let s = std::str::from_utf8(&self.bytes[self.pos..end])
            .map_err(|_| format!("string at body byte {at} is not UTF-8"))?;
        self.pos = end;
        Ok(s.to_owned())
    }
    fn map(&mut self) -> Result<BTreeMap<String, String>, String> {
        let n = self.u32()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.str()?;
            m.insert(k, v);
        }
        Ok(m)
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, String> {
        Ok(if self.flag()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    fn range(&mut self) -> Result<HashRange, String> {
        let (start, end) = (self.u128()?, self.u128()?);
        HashRange::new(HashKey(start), HashKey(end))
            .ok_or_else(|| format!("hash range starts at {start} after its end {end}"))
    }
    fn reshard(&mut self) -> Result<Reshard, String> {
        let kind = match (self.u8()?, self.u32()?) {
            (KIND_SPLIT, _) => ReshardKind::Split,
            (KIND_MERGE, _) => ReshardKind::Merge,
            (KIND_UNIFORM, target) => ReshardKind::UniformScaling { target },
            (k, _) => return Err(format!("unknown reshard kind {k}")),
        };
        let at = TimestampMs(self.u64()?);
        let n = self.u32()?;
        let creates = (0..n)
            .map(|_| {
                Ok(NewShard {
                    id: ShardId::from_index(self.u64()?),
                    range: self.range()?,
                    parent: ShardId::from_index(self.u64()?),
                    adjacent_parent: self.opt_u64()?.map(ShardId::from_index),
                })
            })
            .collect::<Result<_, String>>()?;
        let n = self.u32()?;
        let closes = (0..n)
            .map(|_| Ok((ShardId::from_index(self.u64()?), SeqNo(self.u64()?))))
            .collect::<Result<_, String>>()?;
        Ok(Reshard {
            kind,
            at,
            creates,
            closes,
        })
    }
    fn stream(&mut self) -> Result<StreamMeta, String> {
        let uid = self.u64()?;
        let name = self.str()?;
        let created = TimestampMs(self.u64()?);
        let ready_at = TimestampMs(self.u64()?);
        let updating_until = TimestampMs(self.u64()?);
        let retention_hours = self.u32()?;
        let max_record_size_kib = self.u32()?;
        let tags = self.map()?;
        let n = self.u32()?;
        let count_updates = (0..n)
            .map(|_| self.u64().map(TimestampMs))
            .collect::<Result<_, _>>()?;
        let deleting = if self.flag()? {
            Some(Deleting {
                at: TimestampMs(self.u64()?),
                gone_at: TimestampMs(self.u64()?),
            })
        } else {
            None
        };
        let n = self.u32()?;
        let shards = (0..n)
            .map(|_| self.shard())
            .collect::<Result<Vec<_>, _>>()?;
        let lineage = Lineage::from_shards(shards).map_err(|e| format!("stream {name:?}: {e}"))?;
        Ok(StreamMeta {
            uid,
            name,
            created,
            ready_at,
            updating_until,
            retention_hours,
            max_record_size_kib,
            tags,
            count_updates,
            deleting,
            lineage,
        })
    }
    fn shard(&mut self) -> Result<ShardInfo, String> {
        let id = ShardId::from_index(self.u64()?);
        let range = self.range()?;
        let parent = self.opt_u64()?.map(ShardId::from_index);
        let adjacent_parent = self.opt_u64()?.map(ShardId::from_index);
        let created = TimestampMs(self.u64()?);
        let closed = if self.flag()? {
            Some(ShardClose {
                at: TimestampMs(self.u64()?),
                end: SeqNo(self.u64()?),
            })
        } else {
            None
        };
        let expired = self.opt_u64()?.map(TimestampMs);
        if expired.is_some() && closed.is_none() {
            return Err(format!("{id} is expired but was never closed"));
        }
        Ok(ShardInfo::from_parts(
            id,
            range,
            parent,
            adjacent_parent,
            created,
            closed,
            expired,
        ))
    }
    fn finish(&self) -> Result<(), String> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after the body",
                self.bytes.len() - self.pos
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_events() -> Vec<Event> {
        let tags: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
        vec![
            Event::StreamCreated {
                uid: 0,
                name: "s".into(),
                shard_count: 2,
                retention_hours: 24,
                max_record_size_kib: 1024,
                tags: tags.clone(),
                created: TimestampMs(1),
                ready_at: TimestampMs(2),
            },
            Event::Resharded {
                uid: 0,
                ready_at: TimestampMs(9),
                change: Reshard {
                    kind: ReshardKind::UniformScaling { target: 3 },
                    at: TimestampMs(3),
                    creates: vec![NewShard {
                        id: ShardId::from_index(2),
                        range: HashRange::FULL,
                        parent: ShardId::from_index(0),
                        adjacent_parent: Some(ShardId::from_index(1)),
                    }],
                    closes: vec![
                        (ShardId::from_index(0), SeqNo(7)),
                        (ShardId::from_index(1), SeqNo(0)),
                    ],
                },
            },
            Event::RetentionChanged { uid: 0, hours: 48 },
            Event::TagsAdded { uid: 0, tags },
            Event::TagsRemoved {
                uid: 0,
                keys: vec!["k".into(), "x".into()],
            },
            Event::ShardExpired {
                uid: 0,
                shard: ShardId::from_index(0),
                at: TimestampMs(100),
            },
            Event::StreamDeleting {
                uid: 0,
                at: TimestampMs(200),
                gone_at: TimestampMs(201),
            },
            Event::StreamPurged { uid: 0 },
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for e in sample_events() {
            let mut buf = Vec::new();
            encode_event(&e, &mut buf);
            assert_eq!(decode_event(&buf).unwrap(), e);
        }
    }

    #[test]
    fn truncated_or_padded_events_are_errors_not_panics() {
        for e in sample_events() {
            let mut buf = Vec::new();
            encode_event(&e, &mut buf);
            for cut in 0..buf.len() {
                assert!(decode_event(&buf[..cut]).is_err());
            }
            buf.push(0);
            assert!(decode_event(&buf).unwrap_err().contains("unexpected bytes"));
        }
        assert!(
            decode_event(&[99])
                .unwrap_err()
                .contains("unknown event tag 99")
        );
    }

    #[test]
    fn catalogue_round_trips_through_a_snapshot() {
        let mut c = Catalogue::default();
        for e in sample_events().into_iter().take(6) {
            c.apply(&e).unwrap();
        }
        let mut buf = Vec::new();
        encode_catalogue(&c, &mut buf);
        assert_eq!(decode_catalogue(&buf).unwrap(), c);
    }
}
