//! Sequence numbers on the wire: decimal strings in the layout of real Kinesis numbers
//! (version 2, 47 hex digits, about 56 decimal digits). Pure codec, no I/O.
//!
//! | hex digits | bits | field |
//! |-----------:|-----:|-------|
//! | 0      | 4  | constant 2 |
//! | 1–9    | 36 | shard creation time, epoch seconds |
//! | 10     | 4  | low hex digit of the shard index |
//! | 11–26  | 64 | per-shard counter (top bit 0): 0 is the shard's starting number, record `n` of the log is `n + 1`, `i64::MAX` is a closed shard's ending number |
//! | 27–28  | 8  | stream incarnation check: `1 + uid mod 255` of the stream's uid; 0 in numbers issued before Sluice wrote it |
//! | 29–37  | 36 | record arrival time, epoch seconds |
//! | 38–45  | 32 | shard index |
//! | 46     | 4  | version, 2 |
//!
//! Creation time is the most significant field, so every record of a child shard compares
//! greater than every record of its parents, and numbers compare correctly as integers.
//! The counter sits above the incarnation check, so within a shard numbers still order
//! by counter alone.
//!
//! The shard index, the creation time and the incarnation check let the broker refuse a
//! number from another shard, from another stream whose shard of the same index was
//! created in the same second, or from an earlier stream of the same name (a stream's uid
//! is its journaled creation number, never reused, so two incarnations differ in the check
//! unless their uids are a multiple of 255 apart). Numbers issued before the check existed
//! carry 0 there and are still accepted, checked as before by shard index and creation
//! second only: they can only name shards created before the upgrade, so they can never be
//! mistaken for a number of a stream created after it.

use sluice_storage::SeqNo;

/// The counter of a closed shard's `EndingSequenceNumber`.
pub const ENDING_COUNTER: u64 = i64::MAX as u64;
/// The incarnation check of numbers issued before it existed.
pub const INCARNATION_UNCHECKED: u8 = 0;
const SECONDS_MASK: u64 = (1 << 36) - 1;
const DIGITS_MAX: usize = 129;

/// The incarnation check of stream `uid`: never [`INCARNATION_UNCHECKED`].
pub fn incarnation_check(uid: u64) -> u8 {
    // `uid % 255` is below 255, so the sum fits and is at least 1.
    (uid % 255) as u8 + 1
}

/// The shard a number belongs to: its stream incarnation, creation time and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardOrigin {
    /// The stream's uid (its creation number).
    pub stream_uid: u64,
    /// When the shard was created, ms since the epoch.
    pub created_ms: u64,
    /// The shard's index (`shardId-000000000007` is 7).
    pub index: u32,
}

/// The fields of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceNumber {
    /// The shard's creation time, epoch seconds.
    pub shard_created_s: u64,
    /// The shard's index (`shardId-000000000007` is 7).
    pub shard_index: u32,
    /// The per-shard counter.
    pub counter: u64,
    /// The stream incarnation check ([`incarnation_check`]), or
    /// [`INCARNATION_UNCHECKED`] in a number issued before it existed.
    pub incarnation: u8,
    /// The record's arrival time, epoch seconds.
    pub arrival_s: u64,
}

/// Why a string is not a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl SequenceNumber {
    /// The number of the record at `seq` in a shard's log.
    pub fn for_record(shard: ShardOrigin, seq: SeqNo, arrival_ms: u64) -> Self {
        SequenceNumber {
            counter: seq.0 + 1,
            arrival_s: arrival_ms / 1000,
            ..SequenceNumber::starting(shard)
        }
    }

    /// A shard's `StartingSequenceNumber`: below every record of the shard.
    pub fn starting(shard: ShardOrigin) -> Self {
        SequenceNumber {
            shard_created_s: shard.created_ms / 1000,
            shard_index: shard.index,
            counter: 0,
            incarnation: incarnation_check(shard.stream_uid),
            arrival_s: shard.created_ms / 1000,
        }
    }

    /// A closed shard's `EndingSequenceNumber`: above every record of the shard.
    pub fn ending(shard: ShardOrigin, closed_ms: u64) -> Self {
        SequenceNumber {
            counter: ENDING_COUNTER,
            arrival_s: closed_ms / 1000,
            ..SequenceNumber::starting(shard)
        }
    }

    /// Whether the number may belong to stream incarnation `uid`: it carries that
    /// incarnation's check, or none (issued before the check existed).
    pub fn may_belong_to_stream(&self, uid: u64) -> bool {
        self.incarnation == INCARNATION_UNCHECKED || self.incarnation == incarnation_check(uid)
    }

    /// The log position an `AT_SEQUENCE_NUMBER` iterator starts at: the record with this
    /// number, or the first after it if there is none.
    pub fn at_position(&self) -> SeqNo {
        SeqNo(self.counter.saturating_sub(1))
    }

    /// The log position an `AFTER_SEQUENCE_NUMBER` iterator starts at.
    pub fn after_position(&self) -> SeqNo {
        SeqNo(self.counter)
    }

    /// The decimal string.
    pub fn encode(&self) -> String {
        self.value().to_decimal()
    }

    /// The decimal digits, written at the start of `out`; returns how many.
    fn write_digits(&self, out: &mut [u8; ENCODED_BYTES_MAX]) -> usize {
        self.value().write_decimal(out)
    }

    /// The number as an integer: the fields at their bit positions.
    fn value(&self) -> U192 {
        let mut v = U192::default();
        v.push(2, 4);
        v.push(self.shard_created_s & SECONDS_MASK, 36);
        v.push(u64::from(self.shard_index) & 0xF, 4);
        v.push(self.counter & ENDING_COUNTER, 64);
        v.push(u64::from(self.incarnation), 8);
        v.push(self.arrival_s & SECONDS_MASK, 36);
        v.push(u64::from(self.shard_index), 32);
        v.push(2, 4);
        v
    }

    /// Parses a decimal string made by [`SequenceNumber::encode`].
    pub fn decode(s: &str) -> Result<SequenceNumber, Malformed> {
        if s.is_empty() || s.len() > DIGITS_MAX || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Malformed("not a decimal number"));
        }
        if s.len() > 1 && s.starts_with('0') {
            return Err(Malformed("leading zero"));
        }
        let mut v = U192::from_decimal(s).ok_or(Malformed("too large"))?;
        let version = v.pop(4);
        let shard_index = v.pop(32) as u32;
        let arrival_s = v.pop(36);
        let incarnation = v.pop(8) as u8;
        let counter = v.pop(64);
        let index_digit = v.pop(4);
        let shard_created_s = v.pop(36);
        let head = v.pop(4);
        if version != 2 || head != 2 || !v.is_zero() {
            return Err(Malformed("not a version 2 sequence number"));
        }
        if counter > ENDING_COUNTER || index_digit != u64::from(shard_index & 0xF) {
            return Err(Malformed("inconsistent fields"));
        }
        Ok(SequenceNumber {
            shard_created_s,
            shard_index,
            counter,
            incarnation,
            arrival_s,
        })
    }
}

/// The difference between the numbers of two consecutive records of a shard that arrived
/// in the same second: one counter step, 2^80 (the counter sits above 80 bits of fields).
const COUNTER_STEP_DIGITS: &[u8] = b"1208925819614629174706176";
/// Room for any number's digits: 2^192 < 10^63, printed as at most seven groups of nine.
const ENCODED_BYTES_MAX: usize = 64;
const _: () = assert!(9 * 7 <= ENCODED_BYTES_MAX);

/// Encodes numbers one after another, cheaply when each is its predecessor's successor
/// (same shard, same arrival second, counter + 1), as the records of one append or one
/// read are: the digits of the previous number plus 2^80, added in decimal, instead of a
/// full conversion. Anything else is encoded in full.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The number last encoded, whose digits are `digits[..len]`.
    prev: Option<SequenceNumber>,
    digits: [u8; ENCODED_BYTES_MAX],
    len: usize,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder {
            prev: None,
            digits: [0; ENCODED_BYTES_MAX],
            len: 0,
        }
    }
}

impl Encoder {
    /// `n`'s decimal string, the same as [`SequenceNumber::encode`].
    pub fn encode(&mut self, n: SequenceNumber) -> String {
        // Only ASCII digits are written, so the check never fails.
        match std::str::from_utf8(self.digits(n)) {
            Ok(text) => text.to_owned(),
            Err(_) => n.encode(),
        }
    }

    /// `n`'s decimal digits (ASCII), the same as [`SequenceNumber::encode`], borrowed
    /// from the encoder until the next call: for writers that copy them straight into
    /// their output.
    pub fn digits(&mut self, n: SequenceNumber) -> &[u8] {
        let successor = self.prev.is_some_and(|prev| {
            n.counter <= ENDING_COUNTER
                && prev.counter.checked_add(1) == Some(n.counter)
                && SequenceNumber {
                    counter: n.counter,
                    ..prev
                } == n
        });
        // A failed addition leaves the digits unusable; the full encoding rewrites them.
        if !(successor && add_decimal(&mut self.digits, &mut self.len, COUNTER_STEP_DIGITS)) {
            self.len = n.write_digits(&mut self.digits);
        }
        self.prev = Some(n);
        &self.digits[..self.len]
    }
}

/// Adds the decimal `addend` to the decimal number in `digits[..*len]`, in place; false
/// (and `digits` unusable) if the sum does not fit the buffer.
fn add_decimal(digits: &mut [u8; ENCODED_BYTES_MAX], len: &mut usize, addend: &[u8]) -> bool {
    if addend.len() > *len {
        return false;
    }
    let mut carry = 0u8;
    let mut addend = addend.iter().rev();
    for d in digits[..*len].iter_mut().rev() {
        let a = addend.next().map_or(0, |&a| a - b'0');
        if a == 0 && carry == 0 && addend.len() == 0 {
            break;
        }
        let sum = (*d - b'0') + a + carry;
        *d = b'0' + sum % 10;
        carry = sum / 10;
    }
    if carry > 0 {
        if *len == digits.len() {
            return false;
        }
        digits.copy_within(..*len, 1);
        digits[0] = b'1';
        *len += 1;
    }
    true
}

/// A 192-bit unsigned integer, three u64 limbs, most significant first: just enough
/// arithmetic for the codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct U192([u64; 3]);

impl U192 {
    /// Shifts left by `bits` (1..=64) and ors in `value`.
    fn push(&mut self, value: u64, bits: u32) {
        let [a, b, c] = self.0;
        let shl = |x: u64| if bits == 64 { 0 } else { x << bits };
        let carry = |x: u64| if bits == 64 { x } else { x >> (64 - bits) };
        self.0 = [shl(a) | carry(b), shl(b) | carry(c), shl(c) | value];
    }

    /// Takes the low `bits` (1..=64) off.
    fn pop(&mut self, bits: u32) -> u64 {
        let [a, b, c] = self.0;
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1 << bits) - 1
        };
        let out = c & mask;
        let shr = |x: u64| if bits == 64 { 0 } else { x >> bits };
        let spill = |x: u64| if bits == 64 { x } else { x << (64 - bits) };
        self.0 = [shr(a), shr(b) | spill(a), shr(c) | spill(b)];
        out
    }

    fn is_zero(&self) -> bool {
        self.0 == [0, 0, 0]
    }

    /// Multiplies by `m` and adds `add`; `None` on overflow.
    fn mul_add(&mut self, m: u64, add: u64) -> Option<()> {
        let mut carry = u128::from(add);
        for limb in self.0.iter_mut().rev() {
            let cur = u128::from(*limb) * u128::from(m) + carry;
            *limb = cur as u64;
            carry = cur >> 64;
        }
        (carry == 0).then_some(())
    }

    /// The decimal string of [`U192::write_decimal`].
    fn to_decimal(self) -> String {
        let mut out = [0u8; ENCODED_BYTES_MAX];
        let len = self.write_decimal(&mut out);
        // Only ASCII digits were written, so this never falls back.
        std::str::from_utf8(&out[..len])
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// The decimal digits, written at the start of `out`; returns how many. This runs
    /// once per record on every put and read, so it stays off 128-bit division (a library
    /// call per step): the value is cut into 32-bit limbs and divided by 10^9, whose
    /// quotient fits a u64 division by a constant (a multiply), then printed nine digits
    /// at a time. It allocates nothing.
    fn write_decimal(self, out: &mut [u8; ENCODED_BYTES_MAX]) -> usize {
        const BILLION: u64 = 1_000_000_000;
        let [a, b, c] = self.0;
        let mut limbs = [
            (a >> 32) as u32,
            a as u32,
            (b >> 32) as u32,
            b as u32,
            (c >> 32) as u32,
            c as u32,
        ];
        // 2^192 < 10^63: at most seven groups of nine digits, least significant first.
        let mut groups = [0u32; 7];
        let mut n = 0;
        while limbs.iter().any(|&l| l != 0) && n < groups.len() {
            let mut rem = 0u64;
            for limb in &mut limbs {
                let cur = (rem << 32) | u64::from(*limb);
                *limb = (cur / BILLION) as u32;
                rem = cur % BILLION;
            }
            groups[n] = rem as u32;
            n += 1;
        }
        let used = (n * 9).max(1);
        out[..used].fill(b'0');
        for (i, &g) in groups[..n].iter().rev().enumerate() {
            let mut x = g;
            for d in out[i * 9..(i + 1) * 9].iter_mut().rev() {
                *d = b'0' + (x % 10) as u8;
                x /= 10;
            }
        }
        let first = out[..used]
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(used - 1);
        out.copy_within(first..used, 0);
        used - first
    }

    fn from_decimal(s: &str) -> Option<U192> {
        let mut v = U192::default();
        for b in s.bytes() {
            v.mul_add(10, u64::from(b - b'0'))?;
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The digits the slow, obvious way: long division by 10 over 128-bit steps.
    fn reference_decimal(v: U192) -> String {
        let mut limbs = v.0;
        let mut digits = Vec::new();
        loop {
            let mut rem: u128 = 0;
            for limb in &mut limbs {
                let cur = (rem << 64) | u128::from(*limb);
                *limb = (cur / 10) as u64;
                rem = cur % 10;
            }
            digits.push(b'0' + rem as u8);
            if limbs == [0, 0, 0] {
                break;
            }
        }
        digits.reverse();
        String::from_utf8(digits).unwrap()
    }

    proptest! {
        #[test]
        fn decimal_digits_match_long_division(a in any::<u64>(), b in any::<u64>(), c in any::<u64>(), shift in 0u32..192) {
            // Every magnitude, from one digit to the full 58.
            let mut v = U192([a, b, c]);
            for _ in 0..shift / 64 {
                v.pop(64);
            }
            if shift % 64 > 0 {
                v.pop(shift % 64);
            }
            prop_assert_eq!(v.to_decimal(), reference_decimal(v));
        }
    }

    proptest! {
        #[test]
        fn the_encoder_matches_a_full_encode(created in 0u64..(1 << 36) * 1000, index in any::<u32>(), uid in any::<u64>(), start in 0u64..ENDING_COUNTER, steps in prop::collection::vec((0u8..4, 0u64..3000), 1..60)) {
            let shard = ShardOrigin { stream_uid: uid, created_ms: created, index };
            let mut enc = Encoder::default();
            let mut counter = start;
            let mut arrival = created;
            for (kind, delta) in steps {
                match kind {
                    0 => arrival += delta,
                    1 => counter = counter.saturating_sub(delta),
                    _ => {}
                }
                counter = (counter + 1).min(ENDING_COUNTER);
                let n = SequenceNumber::for_record(shard, SeqNo(counter - 1), arrival);
                prop_assert_eq!(enc.encode(n), n.encode());
            }
        }
    }

    #[test]
    fn the_encoder_carries_into_a_new_digit() {
        // A counter step that makes the number one digit longer.
        let mut digits = [b'0'; ENCODED_BYTES_MAX];
        let nines = b"9999999999999999999999999999";
        digits[..nines.len()].copy_from_slice(nines);
        let mut len = nines.len();
        assert!(add_decimal(&mut digits, &mut len, COUNTER_STEP_DIGITS));
        let sum: u128 = 9_999_999_999_999_999_999_999_999_999 + (1u128 << 80);
        assert_eq!(
            std::str::from_utf8(&digits[..len]).unwrap(),
            sum.to_string()
        );
    }

    #[test]
    fn decimal_edges() {
        for v in [
            [0, 0, 0],
            [0, 0, 9],
            [0, 0, 10],
            [0, 0, u64::MAX],
            [0, 1, 0],
            [u64::MAX; 3],
        ] {
            assert_eq!(U192(v).to_decimal(), reference_decimal(U192(v)));
        }
        assert_eq!(U192([0, 0, 1_000_000_000]).to_decimal(), "1000000000");
    }

    #[test]
    fn a_record_number_looks_like_a_real_one() {
        let shard = ShardOrigin {
            stream_uid: 7,
            created_ms: 1_571_000_000_123,
            index: 0,
        };
        let n = SequenceNumber::for_record(shard, SeqNo(159), 1_571_000_100_000);
        let s = n.encode();
        assert_eq!(s.len(), 56, "{s}");
        assert_eq!(n.incarnation, 8);
        assert_eq!(SequenceNumber::decode(&s), Ok(n));
    }

    #[test]
    fn starting_is_below_every_record_and_ending_above() {
        let created = 1_700_000_000_000;
        let shard = ShardOrigin {
            stream_uid: 254,
            created_ms: created,
            index: 3,
        };
        let start = SequenceNumber::starting(shard).encode();
        let rec = SequenceNumber::for_record(shard, SeqNo(0), created).encode();
        let end = SequenceNumber::ending(shard, created + 10_000).encode();
        let num = |s: &str| s.parse::<f64>().unwrap_or(0.0);
        assert!(start.len() <= rec.len() && (start.len() < rec.len() || start < rec));
        assert!(num(&end) > num(&rec));
    }

    #[test]
    fn decimals_round_trip_at_chunk_boundaries() {
        let max = "6277101735386680763835789423207666416102355444464034512895"; // 2^192 - 1
        for s in [
            "0",
            "7",
            "9999999999999999999",
            "10000000000000000000",
            "10000000000000000000000000000000000000",
            max,
        ] {
            let v = U192::from_decimal(s).unwrap();
            assert_eq!(v.to_decimal(), s);
        }
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for s in ["", "abc", "0123", &"9".repeat(130), "1"] {
            assert!(SequenceNumber::decode(s).is_err(), "{s}");
        }
    }

    #[test]
    fn a_real_kinesis_number_decodes_and_re_encodes_identically() {
        // From the AWS CLI documentation's put-record example.
        let real = "49590338271490256608559692538361571095921575989136588898";
        let n = SequenceNumber::decode(real).unwrap();
        assert_eq!(n.shard_index, 6, "both index fields agree on shard 6");
        assert_eq!(n.shard_created_s, 1_542_776_258);
        assert_eq!(n.encode(), real);
        assert_eq!(n.counter, 1_734_642_199);
        assert_eq!(n.incarnation, INCARNATION_UNCHECKED);
        assert!(n.may_belong_to_stream(0) && n.may_belong_to_stream(12_345));
    }

    #[test]
    fn numbers_name_their_stream_incarnation() {
        // Two streams whose shard 0 was created in the same second, and a stream and the
        // next incarnation of its name: the numbers differ only in the check, and each
        // belongs to its own stream only.
        for (a, b) in [(0, 1), (41, 42), (254, 255), (255, 256), (7, 7 + 254)] {
            let shard = |uid| ShardOrigin {
                stream_uid: uid,
                created_ms: 1_700_000_000_500,
                index: 0,
            };
            let na = SequenceNumber::for_record(shard(a), SeqNo(9), 1_700_000_001_000);
            let nb = SequenceNumber::for_record(shard(b), SeqNo(9), 1_700_000_001_000);
            let (da, db) = (
                SequenceNumber::decode(&na.encode()).unwrap(),
                SequenceNumber::decode(&nb.encode()).unwrap(),
            );
            assert_ne!(na.encode(), nb.encode(), "uids {a} and {b}");
            assert!(da.may_belong_to_stream(a) && !da.may_belong_to_stream(b));
            assert!(db.may_belong_to_stream(b) && !db.may_belong_to_stream(a));
        }
        assert!((0..10_000).all(|uid| incarnation_check(uid) != INCARNATION_UNCHECKED));
    }

    #[test]
    fn a_number_issued_before_the_incarnation_check_still_decodes() {
        // The digits bd32030 gave record 4 of shard 2 (8 zero bits where the check is now).
        let old = SequenceNumber {
            shard_created_s: 1_763_000_000,
            shard_index: 2,
            counter: 5,
            incarnation: INCARNATION_UNCHECKED,
            arrival_s: 1_763_000_100,
        };
        let n = SequenceNumber::decode(&old.encode()).unwrap();
        assert_eq!(n, old);
        assert_eq!(n.at_position(), SeqNo(4));
        assert!(n.may_belong_to_stream(3));
    }

    proptest! {
        #[test]
        fn numbers_round_trip_and_sort_like_their_position(
            created in 0u64..(1 << 36) * 1000, index in any::<u32>(), uid in any::<u64>(),
            seq_a in 0u64..(1 << 62), seq_b in 0u64..(1 << 62),
            arrival_a in 0u64..(1 << 36) * 1000, arrival_b in 0u64..(1 << 36) * 1000,
        ) {
            let shard = ShardOrigin { stream_uid: uid, created_ms: created, index };
            let a = SequenceNumber::for_record(shard, SeqNo(seq_a), arrival_a);
            let b = SequenceNumber::for_record(shard, SeqNo(seq_b), arrival_b);
            let (sa, sb) = (a.encode(), b.encode());
            prop_assert_eq!(SequenceNumber::decode(&sa), Ok(a));
            prop_assert_eq!(a.at_position(), SeqNo(seq_a));
            // Same shard: compare as integers (length, then lexicographic) like the counters.
            let cmp = sa.len().cmp(&sb.len()).then(sa.cmp(&sb));
            prop_assert_eq!(cmp, seq_a.cmp(&seq_b).then(arrival_a.cmp(&arrival_b)));
        }

        #[test]
        fn every_number_of_a_child_sorts_after_every_number_of_its_parent(
            parent_created in 0u64..(1 << 35) * 1000, later_s in 1u64..1_000_000,
            parent_index in 0u32..100_000, child_index in 0u32..100_000, uid in any::<u64>(),
            parent_seq in 0u64..(1 << 62), child_seq in 0u64..(1 << 62),
            arrival_p in 0u64..(1 << 36) * 1000, arrival_c in 0u64..(1 << 36) * 1000,
        ) {
            let parent = ShardOrigin { stream_uid: uid, created_ms: parent_created, index: parent_index };
            let child = ShardOrigin { created_ms: parent_created + later_s * 1000, index: child_index, ..parent };
            let integer = |n: SequenceNumber| n.value();
            let p = SequenceNumber::for_record(parent, SeqNo(parent_seq), arrival_p);
            let c = SequenceNumber::for_record(child, SeqNo(child_seq), arrival_c);
            prop_assert!(integer(c).0 > integer(p).0);
            prop_assert!(integer(SequenceNumber::ending(parent, arrival_p)).0 > integer(p).0);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "[0-9]{0,140}") {
            let _ = SequenceNumber::decode(&s);
        }
    }
}
