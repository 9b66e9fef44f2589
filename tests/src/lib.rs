//! Helpers for Sluice's end-to-end tests: the record contents every writer and checker
//! agree on, so a test can tell a record's identity and integrity from its bytes alone.

#![warn(missing_docs)]

/// The payload of the record with identity `id`: the id, then bytes derived from it, with a
/// length that varies with the id (0 to 1,500 bytes after the id).
pub fn payload(id: u64) -> Vec<u8> {
    let len = (id.wrapping_mul(2_654_435_761) % 1_500) as usize;
    let mut data = id.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (i as u64 ^ id) as u8));
    data
}

/// The identity of a payload made by [`payload`], if it is one.
pub fn identify(data: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
    (payload(id) == data).then_some(id)
}

/// The number of records `log-writer`'s thread `thread` appends in round `round` with
/// batches of at most `batch_max` records: the writer and the checker agree on every batch
/// from this alone.
pub fn batch_len(round: u64, thread: u64, batch_max: u64) -> u64 {
    1 + (round * 7 + thread) % batch_max.max(1)
}
