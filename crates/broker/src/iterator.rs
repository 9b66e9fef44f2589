//! Shard iterators: opaque, tamper-evident tokens that name a position in one shard of one
//! incarnation of a stream. Pure codec plus the key file.
//!
//! Token bytes, before URL-safe base64 without padding:
//!
//! | offset | width | field |
//! |-------:|------:|-------|
//! | 0  | 1  | format version (1) |
//! | 1  | 8  | stream uid (unique per creation) |
//! | 9  | 4  | shard index |
//! | 13 | 8  | log position: the next record to return |
//! | 21 | 8  | AT_TIMESTAMP lower bound, ms (`u64::MAX`: none) |
//! | 29 | 8  | issue time, ms |
//! | 37 | 1  | stream name length `n` (1..=128) |
//! | 38 | n  | stream name |
//! | 38+n | 16 | first 16 bytes of HMAC-SHA256(key, all bytes before) |
//!
//! The key is 32 random bytes kept in the data directory, so iterators survive a restart
//! for their five minutes; a forged or altered token fails the MAC and is refused.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_storage::{SeqNo, TimestampMs};

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const FIXED_BYTES: usize = 38;
const NO_TIMESTAMP: u64 = u64::MAX;

/// The secret that signs iterators.
#[derive(Clone)]
pub struct IteratorKey([u8; 32]);

impl std::fmt::Debug for IteratorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IteratorKey(..)")
    }
}

/// A position named by an iterator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The stream's name.
    pub stream: String,
    /// The stream's creation number.
    pub stream_uid: u64,
    /// The shard's index.
    pub shard_index: u32,
    /// The next record to return.
    pub seq: SeqNo,
    /// Records before this time are skipped (an AT_TIMESTAMP iterator whose time had no
    /// record yet when it was made).
    pub min_ts: Option<TimestampMs>,
    /// When the iterator was issued.
    pub issued: TimestampMs,
}

impl IteratorKey {
    /// A key from bytes (tests, or a key shared between servers).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        IteratorKey(bytes)
    }

    /// Reads the key at `path`, or creates it with fresh random bytes (written to a
    /// temporary name, synced and renamed).
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte key", path.display()),
                    )
                })?;
                Ok(IteratorKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let tmp = path.with_extension("tmp");
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&key)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(IteratorKey(key))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, bytes: &[u8]) -> [u8; MAC_BYTES] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(bytes);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    /// Encodes and signs a position.
    pub fn encode(&self, p: &Position) -> String {
        let name = p.stream.as_bytes();
        debug_assert!(!name.is_empty() && name.len() <= 128);
        let mut b = Vec::with_capacity(FIXED_BYTES + name.len() + MAC_BYTES);
        b.push(VERSION);
        b.extend_from_slice(&p.stream_uid.to_le_bytes());
        b.extend_from_slice(&p.shard_index.to_le_bytes());
        b.extend_from_slice(&p.seq.0.to_le_bytes());
        b.extend_from_slice(&p.min_ts.map_or(NO_TIMESTAMP, |t| t.0).to_le_bytes());
        b.extend_from_slice(&p.issued.0.to_le_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        let mac = self.mac(&b);
        b.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Checks and decodes a token; `None` for anything this key did not sign.
    pub fn decode(&self, token: &str) -> Option<Position> {
        if token.len() > 512 {
            return None;
        }
        let b = URL_SAFE_NO_PAD.decode(token).ok()?;
        let body_len = b.len().checked_sub(MAC_BYTES)?;
        let (body, mac) = b.split_at(body_len);
        // Constant-time comparison through the MAC crate.
        let mut check = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        check.update(body);
        check.verify_truncated_left(mac).ok()?;
        if body.len() < FIXED_BYTES || body[0] != VERSION {
            return None;
        }
        let u64_at = |at: usize| {
            body.get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let name_len = usize::from(body[37]);
        let name = body.get(FIXED_BYTES..FIXED_BYTES + name_len)?;
        if FIXED_BYTES + name_len != body.len() {
            return None;
        }
        let min_ts = u64_at(21)?;
        Some(Position {
            stream: String::from_utf8(name.to_vec()).ok()?,
            stream_uid: u64_at(1)?,
            shard_index: u32::from_le_bytes(body.get(9..13)?.try_into().ok()?),
            seq: SeqNo(u64_at(13)?),
            min_ts: (min_ts != NO_TIMESTAMP).then_some(TimestampMs(min_ts)),
            issued: TimestampMs(u64_at(29)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos() -> Position {
        Position {
            stream: "orders".into(),
            stream_uid: 7,
            shard_index: 3,
            seq: SeqNo(42),
            min_ts: Some(TimestampMs(5)),
            issued: TimestampMs(1_700_000_000_000),
        }
    }

    #[test]
    fn tokens_round_trip() {
        let key = IteratorKey::from_bytes([9; 32]);
        let t = key.encode(&pos());
        assert!(t.len() <= 512);
        assert_eq!(key.decode(&t), Some(pos()));
    }

    #[test]
    fn another_key_or_garbage_is_refused() {
        let t = IteratorKey::from_bytes([9; 32]).encode(&pos());
        assert_eq!(IteratorKey::from_bytes([8; 32]).decode(&t), None);
        for bad in ["", "!!!", "AAAA", &"A".repeat(600)] {
            assert_eq!(IteratorKey::from_bytes([9; 32]).decode(bad), None);
        }
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iterator.key");
        let a = IteratorKey::load_or_create(&path).unwrap();
        let b = IteratorKey::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(&path, b"short").unwrap();
        assert!(IteratorKey::load_or_create(&path).is_err());
    }

    proptest! {
        #[test]
        fn any_altered_byte_is_refused(i in any::<proptest::sample::Index>(), flip in 1u8..=255) {
            let key = IteratorKey::from_bytes([9; 32]);
            let mut raw = URL_SAFE_NO_PAD.decode(key.encode(&pos())).unwrap();
            let i = i.index(raw.len());
            raw[i] ^= flip;
            prop_assert_eq!(key.decode(&URL_SAFE_NO_PAD.encode(raw)), None);
        }
    }
}
