//! What the torture run knows to be true: the records producers sent (each one rebuilt
//! byte for byte from its id), the ones the server acknowledged or showed to a reader, and
//! the shards whose existence the server acknowledged.
//!
//! A record's partition key and data are pure functions of its [`RecordId`], so any record
//! read back can be checked byte for byte without storing what was sent: a record that does
//! not parse, or differs in one byte from what its id says, was never sent whole.

use std::collections::{BTreeMap, HashMap};

/// Partition keys per producer; each key belongs to exactly one producer, so the order in
/// which a producer sends is the order per key.
pub const KEYS_PER_PRODUCER: u64 = 4;

/// The run's deterministic generator (SplitMix64), the one the simulated disk uses.
pub use sluice_storage::SplitMix as Rng;

/// The identity of one record a producer sent: the producer and its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// The producer (0-based).
    pub producer: u32,
    /// The producer's counter, strictly increasing over the whole run.
    pub n: u64,
}

impl RecordId {
    /// The partition key this record is sent with.
    pub fn partition_key(self) -> String {
        format!("p{}-k{}", self.producer, self.n % KEYS_PER_PRODUCER)
    }

    /// The exact data this record is sent with: a parseable prefix, then filler of a length
    /// and content derived from the id (so records vary in size, some spanning index
    /// intervals and segment rolls).
    pub fn data(self) -> Vec<u8> {
        let mut data = format!("torture|{}|{}|", self.producer, self.n).into_bytes();
        let mut rng = Rng(u64::from(self.producer) << 40 ^ self.n);
        let filler = rng.below(300) as usize;
        data.extend((0..filler).map(|_| b'a' + (rng.below(26) as u8)));
        data
    }

    /// The id a record's data claims, if it has the shape of torture data.
    pub fn parse(data: &[u8]) -> Option<RecordId> {
        let text = data.strip_prefix(b"torture|")?;
        let mut parts = text.splitn(3, |b| *b == b'|');
        let producer = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let n = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        parts.next()?;
        Some(RecordId { producer, n })
    }
}

/// Where the server put a record: what an acknowledgement or a read tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The shard id.
    pub shard_id: String,
    /// The sequence number.
    pub sequence_number: String,
}

/// What the server said about one shard while it was running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFacts {
    /// The parent and adjacent parent, as listed.
    pub parents: Vec<String>,
    /// Starting and ending hash keys, decimal.
    pub hash_range: (String, String),
    /// The starting sequence number.
    pub starting_sequence_number: String,
    /// The ending sequence number, once closed.
    pub ending_sequence_number: Option<String>,
}

/// Everything the run has been told, merged from every cycle's workload.
#[derive(Debug, Default)]
pub struct Model {
    /// Acknowledged records and where the server said it put them.
    pub acked: HashMap<RecordId, Placement>,
    /// Records a reader or subscriber saw (and so were durable), with their placement.
    pub seen: HashMap<RecordId, Placement>,
    /// The highest counter each producer ever sent (acknowledged or not).
    pub sent_max: BTreeMap<u32, u64>,
    /// The next counter of each producer.
    pub next_n: BTreeMap<u32, u64>,
    /// Shards as the server listed them after an acknowledged change.
    pub shards: BTreeMap<String, ShardFacts>,
    /// The fewest shards the stream may have: raised by every acknowledged split or merge.
    pub shards_min: usize,
}

/// One problem found: what was expected and what was found.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The cycle after whose restart (or during whose workload) it was found.
    pub cycle: u64,
    /// A one-line description with the record id, shard and sequence number involved.
    pub what: String,
}

/// Checks a record read from the server against what its id says was sent; returns the id
/// if the record is intact and was sent, or a description of the damage.
pub fn check_bytes(
    partition_key: &str,
    data: &[u8],
    sent_max: &BTreeMap<u32, u64>,
) -> Result<RecordId, String> {
    let Some(id) = RecordId::parse(data) else {
        return Err(format!(
            "unparseable record (key {partition_key:?}, {} bytes)",
            data.len()
        ));
    };
    if id.data() != data {
        return Err(format!("{id:?}: data differs from what was sent"));
    }
    if id.partition_key() != partition_key {
        return Err(format!("{id:?}: partition key {partition_key:?} is wrong"));
    }
    if sent_max.get(&id.producer).is_none_or(|max| id.n > *max) {
        return Err(format!("{id:?}: never sent"));
    }
    Ok(id)
}

/// Orders two decimal sequence numbers numerically (they have no leading zeros).
pub fn seq_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_parses_back_to_its_id() {
        for n in 0..200 {
            let id = RecordId { producer: 3, n };
            assert_eq!(RecordId::parse(&id.data()), Some(id));
        }
    }

    #[test]
    fn a_changed_byte_is_detected() {
        let id = RecordId { producer: 1, n: 7 };
        let sent = BTreeMap::from([(1, 10)]);
        let mut data = id.data();
        assert!(check_bytes(&id.partition_key(), &data, &sent).is_ok());
        let last = data.len() - 1;
        data[last] ^= 1;
        assert!(check_bytes(&id.partition_key(), &data, &sent).is_err());
        assert!(check_bytes("other", &id.data(), &sent).is_err());
    }

    #[test]
    fn a_record_never_sent_is_refused() {
        let id = RecordId { producer: 1, n: 11 };
        let sent = BTreeMap::from([(1, 10)]);
        assert!(check_bytes(&id.partition_key(), &id.data(), &sent).is_err());
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(seq_cmp("9", "10"), std::cmp::Ordering::Less);
        assert_eq!(seq_cmp("12", "11"), std::cmp::Ordering::Greater);
    }
}
