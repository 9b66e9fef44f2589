//! The 128-bit hash-key space: keys, inclusive ranges, the Kinesis initial layout, and the
//! MD5 routing of partition keys.
//!
//! Everything here is pure arithmetic so it can be property-tested on its own. The open
//! shards of a stream always tile `0 ..= 2^128-1`; [`uniform_layout`] is the one place that
//! computes the even split Kinesis uses at creation and after `UpdateShardCount`.

use std::fmt;

use md5::{Digest, Md5};

/// A point of the hash-key space: MD5 of a partition key read big-endian, or a caller's
/// explicit hash key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HashKey(pub u128);

/// An inclusive range of hash keys, `start <= end`. Fields are private so the order holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashRange {
    start: HashKey,
    end: HashKey,
}

impl HashKey {
    /// The largest key, 2^128-1.
    pub const MAX: HashKey = HashKey(u128::MAX);

    /// The key of a partition key: MD5 of its bytes as a big-endian unsigned integer.
    pub fn of_partition_key(partition_key: &[u8]) -> HashKey {
        let digest: [u8; 16] = Md5::digest(partition_key).into();
        HashKey(u128::from_be_bytes(digest))
    }

    /// Parses the Kinesis decimal form (`0|[1-9][0-9]{0,38}`, at most 2^128-1). `None` when
    /// the text is not such a number.
    pub fn parse_decimal(text: &str) -> Option<HashKey> {
        let bytes = text.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 39
            && bytes.iter().all(u8::is_ascii_digit)
            && (bytes.len() == 1 || bytes.first() != Some(&b'0'));
        if !well_formed {
            return None;
        }
        text.parse::<u128>().ok().map(HashKey)
    }

    /// The key as 16 big-endian bytes (the form storage keeps an explicit hash key in).
    pub fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The key from 16 big-endian bytes.
    pub fn from_be_bytes(bytes: [u8; 16]) -> HashKey {
        HashKey(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl HashRange {
    /// The whole space, `0 ..= 2^128-1`.
    pub const FULL: HashRange = HashRange {
        start: HashKey(0),
        end: HashKey::MAX,
    };

    /// The range `start ..= end`; `None` when `start > end`.
    pub fn new(start: HashKey, end: HashKey) -> Option<HashRange> {
        (start <= end).then_some(HashRange { start, end })
    }

    /// The first key of the range.
    pub fn start(&self) -> HashKey {
        self.start
    }

    /// The last key of the range (inclusive).
    pub fn end(&self) -> HashKey {
        self.end
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: HashKey) -> bool {
        self.start <= key && key <= self.end
    }

    /// Splits at `at` into `start ..= at-1` and `at ..= end`. `None` unless both halves are
    /// non-empty (`start < at <= end`). The API rule of SplitShard is stricter; see
    /// [`HashRange::split_allowed`].
    pub fn split_at(&self, at: HashKey) -> Option<(HashRange, HashRange)> {
        if at <= self.start || at > self.end {
            return None;
        }
        let lower = HashRange {
            start: self.start,
            end: HashKey(at.0 - 1),
        };
        let upper = HashRange {
            start: at,
            end: self.end,
        };
        Some((lower, upper))
    }

    /// The SplitShard rule: `start + 1 < at < end`, so each child gets at least two keys.
    pub fn split_allowed(&self, at: HashKey) -> bool {
        self.start.0.checked_add(1).is_some_and(|s1| s1 < at.0) && at < self.end
    }

    /// The union of this range and the one directly above it; `None` unless
    /// `self.end + 1 == upper.start`.
    pub fn merge_with_upper(&self, upper: &HashRange) -> Option<HashRange> {
        let adjacent = self.end.0.checked_add(1) == Some(upper.start.0);
        adjacent.then_some(HashRange {
            start: self.start,
            end: upper.end,
        })
    }
}

impl fmt::Display for HashRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// The Kinesis layout of `count` shards (`count >= 1`): with `step = floor(2^128 / count)`,
/// shard `i` covers `i*step ..= (i+1)*step - 1`, and the last one ends at 2^128-1.
pub fn uniform_layout(count: u32) -> Vec<HashRange> {
    assert!(count >= 1, "a stream has at least one shard");
    let step = uniform_step(count);
    let count = u128::from(count);
    (0..count)
        .map(|i| {
            let start = HashKey(i * step);
            let end = if i + 1 == count {
                HashKey::MAX
            } else {
                HashKey((i + 1) * step - 1)
            };
            HashRange { start, end }
        })
        .collect()
}

/// The boundaries (range starts other than 0) of [`uniform_layout`]`(count)`.
pub fn uniform_boundaries(count: u32) -> Vec<HashKey> {
    let step = uniform_step(count);
    (1..u128::from(count)).map(|i| HashKey(i * step)).collect()
}

/// `floor(2^128 / count)`, computed without overflow; saturates at 2^128-1 for one shard
/// (where the step is never multiplied by anything but 0).
pub(crate) fn uniform_step(count: u32) -> u128 {
    assert!(count >= 1, "a stream has at least one shard");
    let count = u128::from(count);
    // 2^128 = (2^128 - 1) + 1, so floor(2^128 / n) = floor((2^128-1) / n) + carry, where the
    // carry is 1 exactly when n divides 2^128, i.e. when (2^128-1) % n == n-1.
    (u128::MAX / count).saturating_add(u128::from(u128::MAX % count == count - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ends(count: u32) -> Vec<u128> {
        uniform_layout(count).iter().map(|r| r.end().0).collect()
    }

    #[test]
    fn three_shards_match_the_aws_cli_example() {
        let e = ends(3);
        assert_eq!(e[0], 113427455640312821154458202477256070484);
        assert_eq!(e[1], 226854911280625642308916404954512140969);
        assert_eq!(e[2], u128::MAX);
    }

    #[test]
    fn four_shards_have_boundaries_at_multiples_of_2_pow_126() {
        let starts: Vec<u128> = uniform_layout(4).iter().map(|r| r.start().0).collect();
        assert_eq!(starts, vec![0, 1 << 126, 2 << 126, 3 << 126]);
        assert_eq!(
            uniform_boundaries(4),
            vec![HashKey(1 << 126), HashKey(2 << 126), HashKey(3 << 126)]
        );
    }

    #[test]
    fn one_shard_covers_everything() {
        assert_eq!(uniform_layout(1), vec![HashRange::FULL]);
    }

    #[test]
    fn partition_key_a_hashes_as_the_reference_says() {
        let key = HashKey::of_partition_key(b"a");
        assert_eq!(key.0, 16955237001963240173058271559858726497);
        assert!(uniform_layout(4)[0].contains(key));
    }

    #[test]
    fn decimal_parsing_follows_the_kinesis_pattern() {
        assert_eq!(HashKey::parse_decimal("0"), Some(HashKey(0)));
        assert_eq!(
            HashKey::parse_decimal("340282366920938463463374607431768211455"),
            Some(HashKey::MAX)
        );
        for bad in [
            "",
            "01",
            "-1",
            "1a",
            "340282366920938463463374607431768211456",
            " 1",
        ] {
            assert_eq!(HashKey::parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn split_rule_needs_two_keys_on_each_side() {
        let r = HashRange::new(HashKey(10), HashKey(20)).unwrap();
        assert!(!r.split_allowed(HashKey(11)));
        assert!(r.split_allowed(HashKey(12)));
        assert!(r.split_allowed(HashKey(19)));
        assert!(!r.split_allowed(HashKey(20)));
        assert!(!HashRange::FULL.split_allowed(HashKey(0)));
    }

    #[test]
    fn merge_needs_the_range_directly_above() {
        let a = HashRange::new(HashKey(0), HashKey(9)).unwrap();
        let b = HashRange::new(HashKey(10), HashKey(20)).unwrap();
        let c = HashRange::new(HashKey(12), HashKey(20)).unwrap();
        assert_eq!(
            a.merge_with_upper(&b),
            HashRange::new(HashKey(0), HashKey(20))
        );
        assert_eq!(b.merge_with_upper(&a), None);
        assert_eq!(a.merge_with_upper(&c), None);
    }

    proptest! {
        #[test]
        fn uniform_layout_tiles_the_space(count in 1u32..=10_000) {
            let layout = uniform_layout(count);
            prop_assert_eq!(layout.len(), count as usize);
            prop_assert_eq!(layout[0].start(), HashKey(0));
            prop_assert_eq!(layout[layout.len() - 1].end(), HashKey::MAX);
            for pair in layout.windows(2) {
                prop_assert_eq!(pair[0].end().0 + 1, pair[1].start().0);
            }
            if count > 1 {
                prop_assert_eq!(layout[0].end().0, uniform_step(count) - 1);
            }
        }

        #[test]
        fn split_halves_rejoin(start in any::<u128>(), len in 1u128..1000, cut in any::<u128>()) {
            let end = start.saturating_add(len);
            let r = HashRange::new(HashKey(start), HashKey(end)).unwrap();
            if let Some((lo, hi)) = r.split_at(HashKey(cut)) {
                prop_assert_eq!(lo.merge_with_upper(&hi), Some(r));
            }
        }
    }
}
