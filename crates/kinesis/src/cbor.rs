//! A CBOR (RFC 8949) decoder for request bodies, straight into [`Value`], bounded.
//!
//! ciborium built its own tree first and then ours, and trusted nothing it could check
//! up front: a 15 MiB array of one-byte empty arrays became two trees of 15 million
//! nodes (1.3 to 1.7 GB, about ten seconds of CPU). Here every length is checked against
//! the bytes left before anything is allocated (a definite-length array of `n` items
//! needs at least `n` bytes), every node is charged to the request's [`TreeBudget`]
//! before it is built, maps obey the member limit, nesting the depth limit, and errors
//! are plain sentences that name the byte offset.
//!
//! What a Kinesis request can hold is all that is read: integers (with the bignum tags
//! 2 and 3 up to 128 bits), byte and text strings (definite or chunked), arrays and maps
//! (definite or indefinite), tag 1 over a number (a timestamp in milliseconds; other tags
//! are read through), `false`, `true`, `null`, `undefined` and floats of 16, 32 and 64
//! bits. Map keys must be text. One item fills the whole body.

use std::fmt;

use bytes::Bytes;

use crate::value::{DEPTH_MAX, TooLarge, TreeBudget, Value, keep_last_of_each_name};

/// Why a body is not a CBOR request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CborError {
    /// The body ends inside an item that starts at this offset.
    Truncated(usize),
    /// Something that is not allowed at this offset.
    Invalid(usize, &'static str),
    /// A size limit.
    TooLarge(TooLarge),
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CborError::Truncated(at) => write!(f, "the body ends inside the item at byte {at}"),
            CborError::Invalid(at, what) => write!(f, "{what} at byte {at}"),
            CborError::TooLarge(e) => e.fmt(f),
        }
    }
}

impl From<TooLarge> for CborError {
    fn from(e: TooLarge) -> Self {
        CborError::TooLarge(e)
    }
}

/// Decodes the one item that makes up `body`.
pub(crate) fn decode(body: &[u8], budget: &TreeBudget) -> Result<Value, CborError> {
    let mut r = Reader {
        body,
        at: 0,
        budget,
    };
    let v = r.item(0)?;
    if r.at != body.len() {
        return Err(CborError::Invalid(
            r.at,
            "data after the end of the body's item",
        ));
    }
    Ok(v)
}

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
/// The "break" byte that ends an indefinite-length item.
const BREAK: u8 = 0xff;
/// Additional information 31: an indefinite length.
const INDEFINITE: u8 = 31;
const TAG_EPOCH_TIME: u64 = 1;
const TAG_BIGNUM_POSITIVE: u64 = 2;
const TAG_BIGNUM_NEGATIVE: u64 = 3;
const NODE_BYTES: usize = std::mem::size_of::<Value>();
const MEMBER_BYTES: usize = std::mem::size_of::<(String, Value)>() - NODE_BYTES;

/// An item's head: its major type and its argument (`None`: indefinite length).
struct Head {
    major: u8,
    info: u8,
    arg: Option<u64>,
    at: usize,
}

struct Reader<'a, 'b> {
    body: &'a [u8],
    at: usize,
    budget: &'b TreeBudget,
}

impl Reader<'_, '_> {
    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > DEPTH_MAX {
            return Err(CborError::Invalid(self.at, "request nested too deeply"));
        }
        let head = self.head()?;
        match head.major {
            MAJOR_UNSIGNED => Ok(Value::Int(i128::from(definite(&head)?))),
            MAJOR_NEGATIVE => Ok(Value::Int(-1 - i128::from(definite(&head)?))),
            MAJOR_BYTES => Ok(Value::Bytes(Bytes::from(self.string(&head)?))),
            MAJOR_TEXT => {
                let at = head.at;
                String::from_utf8(self.string(&head)?)
                    .map(Value::Str)
                    .map_err(|_| CborError::Invalid(at, "text that is not UTF-8"))
            }
            MAJOR_ARRAY => self.array(&head, depth),
            MAJOR_MAP => self.map(&head, depth),
            MAJOR_TAG => self.tagged(&head, depth),
            _ => simple(&head),
        }
    }

    /// Reads an item's head and its argument.
    fn head(&mut self) -> Result<Head, CborError> {
        let at = self.at;
        let first = self.take(1, at)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let width = 1usize << (info - 24);
                let bytes = self.take(width, at)?;
                Some(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
            }
            INDEFINITE if matches!(major, MAJOR_BYTES..=MAJOR_MAP) => None,
            INDEFINITE if major == MAJOR_SIMPLE => {
                return Err(CborError::Invalid(at, "a break outside an indefinite item"));
            }
            _ => return Err(CborError::Invalid(at, "a reserved additional information")),
        };
        Ok(Head {
            major,
            info,
            arg,
            at,
        })
    }

    /// The next `n` bytes; `item_at` is where the item being read starts.
    fn take(&mut self, n: usize, item_at: usize) -> Result<&[u8], CborError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.body.len())
            .ok_or(CborError::Truncated(item_at))?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// Whether the next byte is a break (which it then consumes).
    fn at_break(&mut self, item_at: usize) -> Result<bool, CborError> {
        match self.body.get(self.at) {
            None => Err(CborError::Truncated(item_at)),
            Some(&BREAK) => {
                self.at += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// A byte or text string's contents: one definite string, or the chunks of an
    /// indefinite one (each a definite string of the same major type).
    fn string(&mut self, head: &Head) -> Result<Vec<u8>, CborError> {
        if head.arg.is_none() {
            let mut out = Vec::new();
            while !self.at_break(head.at)? {
                let chunk = self.head()?;
                if chunk.major != head.major || chunk.arg.is_none() {
                    return Err(CborError::Invalid(chunk.at, "a chunk of another type"));
                }
                out.extend_from_slice(self.chunk(&chunk)?);
            }
            return Ok(out);
        }
        Ok(self.chunk(head)?.to_vec())
    }

    /// A definite string's bytes, charged before they are copied.
    fn chunk(&mut self, head: &Head) -> Result<&[u8], CborError> {
        let len = usize::try_from(definite(head)?).map_err(|_| CborError::Truncated(head.at))?;
        if len > self.body.len() - self.at {
            return Err(CborError::Truncated(head.at));
        }
        self.budget.charge(len)?;
        self.take(len, head.at)
    }

    fn array(&mut self, head: &Head, depth: usize) -> Result<Value, CborError> {
        let mut out = Vec::new();
        match head.arg {
            Some(n) => {
                // Every item takes at least one byte: a count past the bytes left is a
                // lie, refused before anything is reserved for it.
                let n = self.count(n, 1, head.at)?;
                self.budget.charge(n.saturating_mul(NODE_BYTES))?;
                out.reserve_exact(n);
                for _ in 0..n {
                    out.push(self.item(depth + 1)?);
                }
            }
            None => {
                while !self.at_break(head.at)? {
                    self.budget.charge(NODE_BYTES)?;
                    out.push(self.item(depth + 1)?);
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn map(&mut self, head: &Head, depth: usize) -> Result<Value, CborError> {
        let mut out: Vec<(String, Value)> = Vec::new();
        match head.arg {
            Some(n) => {
                let n = self.count(n, 2, head.at)?;
                self.budget.members(n)?;
                self.budget
                    .charge(n.saturating_mul(NODE_BYTES + MEMBER_BYTES))?;
                out.reserve_exact(n);
                for _ in 0..n {
                    out.push(self.member(depth)?);
                }
            }
            None => {
                while !self.at_break(head.at)? {
                    self.budget.members(out.len() + 1)?;
                    self.budget.charge(NODE_BYTES + MEMBER_BYTES)?;
                    out.push(self.member(depth)?);
                }
            }
        }
        keep_last_of_each_name(&mut out);
        Ok(Value::Map(out))
    }

    fn member(&mut self, depth: usize) -> Result<(String, Value), CborError> {
        let at = self.at;
        match self.item(depth + 1)? {
            Value::Str(name) => Ok((name, self.item(depth + 1)?)),
            _ => Err(CborError::Invalid(at, "a map key that is not text")),
        }
    }

    /// A definite count of items of at least `item_bytes_min` bytes each, checked
    /// against the bytes left.
    fn count(&self, n: u64, item_bytes_min: usize, at: usize) -> Result<usize, CborError> {
        let left = (self.body.len() - self.at) / item_bytes_min;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or(CborError::Truncated(at))
    }

    fn tagged(&mut self, head: &Head, depth: usize) -> Result<Value, CborError> {
        let tag = definite(head)?;
        let inner_at = self.at;
        let inner = self.item(depth + 1)?;
        match (tag, inner) {
            (TAG_EPOCH_TIME, Value::Int(ms)) => u64::try_from(ms)
                .map(Value::Timestamp)
                .map_err(|_| CborError::Invalid(inner_at, "a negative timestamp")),
            (TAG_EPOCH_TIME, Value::Float(ms)) if ms >= 0.0 && ms.is_finite() => {
                Ok(Value::Timestamp(ms as u64))
            }
            (TAG_EPOCH_TIME, _) => Err(CborError::Invalid(
                inner_at,
                "a timestamp tag on a value that is not a number",
            )),
            (TAG_BIGNUM_POSITIVE | TAG_BIGNUM_NEGATIVE, Value::Bytes(b)) => {
                bignum(&b, tag == TAG_BIGNUM_NEGATIVE)
                    .ok_or(CborError::Invalid(inner_at, "an integer too large"))
            }
            (_, inner) => Ok(inner),
        }
    }
}

/// A head's argument, which must be a definite length or value.
fn definite(head: &Head) -> Result<u64, CborError> {
    head.arg
        .ok_or(CborError::Invalid(head.at, "an indefinite length here"))
}

/// A bignum (tags 2 and 3) of up to 16 bytes as an integer.
fn bignum(bytes: &[u8], negative: bool) -> Option<Value> {
    if bytes.len() > 16 {
        return None;
    }
    let n = bytes.iter().fold(0u128, |n, &b| (n << 8) | u128::from(b));
    let n = i128::try_from(n).ok()?;
    Some(Value::Int(if negative { -1 - n } else { n }))
}

/// Major type 7: `false`, `true`, `null`, `undefined` and floats.
fn simple(head: &Head) -> Result<Value, CborError> {
    let arg = definite(head)?;
    match head.info {
        20 => Ok(Value::Bool(false)),
        21 => Ok(Value::Bool(true)),
        22 | 23 => Ok(Value::Null),
        // The argument holds the float's bits, read big-endian like any argument.
        25 => Ok(Value::Float(half_to_f64(arg as u16))),
        26 => Ok(Value::Float(f64::from(f32::from_bits(arg as u32)))),
        27 => Ok(Value::Float(f64::from_bits(arg))),
        _ => Err(CborError::Invalid(head.at, "an unsupported simple value")),
    }
}

/// An IEEE 754 half-precision float, widened.
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1024.0 + mantissa) * 2f64.powi(e - 25),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ParseLimits;
    use proptest::prelude::*;

    fn check(body: &[u8]) -> Result<Value, CborError> {
        decode(
            body,
            &TreeBudget::new(ParseLimits::for_body(body.len(), 500)),
        )
    }

    fn ciborium_bytes(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn every_kind_of_request_value_decodes() {
        use ciborium::Value as C;
        let body = ciborium_bytes(&C::Map(vec![
            (C::Text("I".into()), C::Integer(7.into())),
            (C::Text("N".into()), C::Integer((-300).into())),
            (C::Text("B".into()), C::Bytes(vec![1, 2, 3])),
            (C::Text("T".into()), C::Text("h\u{e9}".into())),
            (C::Text("A".into()), C::Array(vec![C::Bool(true), C::Null])),
            (
                C::Text("S".into()),
                C::Tag(1, Box::new(C::Integer(1_572_297_168_123u64.into()))),
            ),
            (C::Text("F".into()), C::Float(1.5)),
            (C::Text("U".into()), C::Integer(u64::MAX.into())),
        ]));
        let v = check(&body).unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                ("I".into(), Value::Int(7)),
                ("N".into(), Value::Int(-300)),
                ("B".into(), Value::Bytes(Bytes::from_static(&[1, 2, 3]))),
                ("T".into(), Value::Str("h\u{e9}".into())),
                (
                    "A".into(),
                    Value::Array(vec![Value::Bool(true), Value::Null])
                ),
                ("S".into(), Value::Timestamp(1_572_297_168_123)),
                ("F".into(), Value::Float(1.5)),
                ("U".into(), Value::Int(i128::from(u64::MAX))),
            ])
        );
    }

    #[test]
    fn indefinite_items_halves_and_bignums_decode() {
        // {_ "a": [_ 1, 2], "b": (_ h'01', h'02'), "c": (_ "x", "y")} then f16 1.5,
        // bignum 2^64, negative bignum -(2^64)-1.
        let body = [
            0xbf, 0x61, b'a', 0x9f, 0x01, 0x02, 0xff, 0x61, b'b', 0x5f, 0x41, 0x01, 0x41, 0x02,
            0xff, 0x61, b'c', 0x7f, 0x61, b'x', 0x61, b'y', 0xff, 0x61, b'h', 0xf9, 0x3e, 0x00,
            0x61, b'p', 0xc2, 0x49, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x61, b'n', 0xc3, 0x49, 1, 0, 0, 0,
            0, 0, 0, 0, 0, 0xff,
        ];
        let v = check(&body).unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                ("a".into(), Value::Array(vec![Value::Int(1), Value::Int(2)])),
                ("b".into(), Value::Bytes(Bytes::from_static(&[1, 2]))),
                ("c".into(), Value::Str("xy".into())),
                ("h".into(), Value::Float(1.5)),
                ("p".into(), Value::Int(1 << 64)),
                ("n".into(), Value::Int(-(1 << 64) - 1)),
            ])
        );
    }

    #[test]
    fn errors_are_sentences_with_an_offset_not_debug_dumps() {
        for (body, expected) in [
            (
                &b"\xa1\x6dShardIterator\x78\xff"[..],
                "the body ends inside the item at byte 15",
            ),
            (b"\xff", "a break outside an indefinite item at byte 0"),
            (b"\x1c", "a reserved additional information at byte 0"),
            (b"\xa1\x01\x02", "a map key that is not text at byte 1"),
            (b"\x62\xff\xfe", "text that is not UTF-8 at byte 0"),
            (
                b"\x01\x02",
                "data after the end of the body's item at byte 1",
            ),
            (
                b"\xc1\x61a",
                "a timestamp tag on a value that is not a number at byte 1",
            ),
            (b"\x5f\x61a\xff", "a chunk of another type at byte 1"),
        ] {
            let e = check(body).unwrap_err().to_string();
            assert_eq!(e, expected, "{body:?}");
        }
    }

    #[test]
    fn a_count_past_the_bytes_left_is_refused_before_anything_is_reserved() {
        // An array, a map and a byte string that each claim 2^63 entries or bytes.
        for body in [
            &b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff\x00"[..],
            b"\xbb\x7f\xff\xff\xff\xff\xff\xff\xff\x00",
            b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff\x00",
        ] {
            assert!(
                matches!(check(body), Err(CborError::Truncated(0))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_body_of_empty_arrays_stops_at_the_tree_limit() {
        // 15 MiB once cost 1.3 to 1.7 GB; one byte per empty array, 48 bytes of tree.
        let n = 1 << 20;
        let mut body = vec![0x9a];
        body.extend_from_slice(&(n as u32).to_be_bytes());
        body.resize(5 + n, 0x80);
        let limits = ParseLimits::for_body(body.len(), 500);
        let e = check(&body).unwrap_err();
        assert_eq!(e, CborError::TooLarge(TooLarge::Tree));
        // The same with an indefinite array.
        body[0] = 0x9f;
        body.truncate(5 + n - 4);
        body.push(0xff);
        assert_eq!(
            check(&body).unwrap_err(),
            CborError::TooLarge(TooLarge::Tree)
        );
        assert!(limits.tree_bytes_max < 4 * body.len());
    }

    #[test]
    fn maps_past_the_member_limit_are_refused() {
        use ciborium::Value as C;
        let members = |n: usize| {
            C::Map(
                (0..n)
                    .map(|i| (C::Text(format!("k{i}")), C::Null))
                    .collect(),
            )
        };
        assert!(check(&ciborium_bytes(&members(crate::value::MEMBERS_MAX))).is_ok());
        let e = check(&ciborium_bytes(&members(crate::value::MEMBERS_MAX + 1))).unwrap_err();
        assert_eq!(
            e,
            CborError::TooLarge(TooLarge::Members(crate::value::MEMBERS_MAX))
        );
    }

    #[test]
    fn nesting_past_the_depth_limit_is_refused() {
        let ok = [vec![0x81; DEPTH_MAX], vec![0x80]].concat();
        assert!(check(&ok).is_ok());
        let deep = [vec![0x81; DEPTH_MAX + 1], vec![0x80]].concat();
        assert!(matches!(check(&deep), Err(CborError::Invalid(_, _))));
    }

    #[test]
    fn halves_widen_exactly() {
        assert_eq!(half_to_f64(0x3c00), 1.0);
        assert_eq!(half_to_f64(0xc000), -2.0);
        assert_eq!(half_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(half_to_f64(0x7bff), 65504.0);
        assert!(half_to_f64(0x7c00).is_infinite());
        assert!(half_to_f64(0x7e00).is_nan());
    }

    fn arb_cbor() -> impl Strategy<Value = ciborium::Value> {
        use ciborium::Value as C;
        let leaf = prop_oneof![
            any::<i64>().prop_map(|i| C::Integer(i.into())),
            any::<u64>().prop_map(|i| C::Integer(i.into())),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(C::Bytes),
            ".{0,12}".prop_map(C::Text),
            any::<bool>().prop_map(C::Bool),
            Just(C::Null),
            (-1e9f64..1e9).prop_map(C::Float),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(C::Array),
                proptest::collection::vec(("[a-z]{1,6}", inner), 0..8).prop_map(|m| {
                    C::Map(m.into_iter().map(|(k, v)| (C::Text(k), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        /// The decoder reads what ciborium writes as ciborium reads it (ciborium was the
        /// decoder before this one).
        #[test]
        fn agrees_with_ciborium_on_what_ciborium_writes(v in arb_cbor()) {
            let body = ciborium_bytes(&v);
            let ours = check(&body).unwrap();
            let theirs = crate::value::from_ciborium_for_tests(v);
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = check(&body);
        }
    }
}
