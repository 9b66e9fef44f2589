//! CBOR (RFC 8949) request bodies, decoded into [`Value`] under the request's bounds.
//!
//! The wire format (heads, arguments, floats of 16 to 64 bits, chunked strings) is read
//! by `ciborium-ll`'s pull decoder; this module builds the tree and bounds it. ciborium's
//! own `Value` (and its serde `Deserializer`, which takes no seed to carry a budget)
//! built a whole tree first: a 15 MiB array of one-byte empty arrays became two trees of
//! 15 million nodes (1.3 to 1.7 GB, about ten seconds of CPU). Here every count is
//! checked against the bytes left before anything is allocated (a definite-length array
//! of `n` items needs at least `n` bytes), every node is charged to the request's
//! [`TreeBudget`] before it is built, maps obey the member limit, nesting the depth
//! limit, and errors are plain sentences that name the byte offset.
//!
//! A hand-written decoder parsed a 500 x 1 KiB PutRecords in about 0.7 of this one's time
//! (`kinesis_cbor_parse`, docs/BENCHMARKS.md); the crate was kept for the wire format,
//! the bounds are the same.
//!
//! What a Kinesis request can hold is all that is read: integers (with the bignum tags
//! 2 and 3 up to 128 bits), byte and text strings (definite or chunked), arrays and maps
//! (definite or indefinite), tag 1 over a number (a timestamp in milliseconds; other tags
//! are read through), `false`, `true`, `null`, `undefined` and floats. Map keys must be
//! text. One item fills the whole body.

use std::cell::Cell;
use std::fmt;

use bytes::Bytes;
use ciborium_ll::{Decoder, Header, simple, tag};

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
    let src = Src {
        body,
        at: Cell::new(0),
    };
    let mut r = Reader {
        de: Decoder::from(&src),
        src: &src,
        budget,
    };
    let v = r.item(0)?;
    let end = src.at.get();
    if end != body.len() {
        return Err(CborError::Invalid(
            end,
            "data after the end of the body's item",
        ));
    }
    Ok(v)
}

/// The tag of an epoch time (here milliseconds, as Kinesis sends them).
const TAG_EPOCH_TIME: u64 = 1;
const NODE_BYTES: usize = std::mem::size_of::<Value>();
const MEMBER_BYTES: usize = std::mem::size_of::<(String, Value)>() - NODE_BYTES;
/// The byte that ends an indefinite-length item.
const BREAK: u8 = 0xff;
/// The copy buffer for the chunks of an indefinite-length string.
const SCRATCH_BYTES: usize = 4096;

/// The body with a read position the decoder and the string reader share: a definite
/// string is copied once, straight from the body (a read through the decoder would zero
/// a buffer first and then copy into it).
struct Src<'a> {
    body: &'a [u8],
    at: Cell<usize>,
}

impl Src<'_> {
    /// The next `n` bytes, if there are that many.
    fn take(&self, n: usize) -> Option<&[u8]> {
        let at = self.at.get();
        let end = at.checked_add(n).filter(|&end| end <= self.body.len())?;
        self.at.set(end);
        Some(&self.body[at..end])
    }
}

impl ciborium_io::Read for &Src<'_> {
    type Error = ();

    fn read_exact(&mut self, data: &mut [u8]) -> Result<(), ()> {
        data.copy_from_slice(self.take(data.len()).ok_or(())?);
        Ok(())
    }
}

struct Reader<'a, 'b> {
    de: Decoder<&'a Src<'a>>,
    src: &'a Src<'a>,
    budget: &'b TreeBudget,
}

/// Turns the low-level decoder's errors into ours; `at` is where the item started (the
/// decoder's own offsets do not count the strings read around it).
fn wire<E>(at: usize) -> impl Fn(ciborium_ll::Error<E>) -> CborError {
    move |e| match e {
        ciborium_ll::Error::Io(_) => CborError::Truncated(at),
        ciborium_ll::Error::Syntax(_) => CborError::Invalid(at, "not well-formed CBOR"),
    }
}

impl Reader<'_, '_> {
    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let at = self.src.at.get();
        if depth > DEPTH_MAX {
            return Err(CborError::Invalid(at, "request nested too deeply"));
        }
        match self.de.pull().map_err(wire(at))? {
            Header::Positive(n) => Ok(Value::Int(i128::from(n))),
            Header::Negative(n) => Ok(Value::Int(-1 - i128::from(n))),
            Header::Bytes(len) => Ok(Value::Bytes(Bytes::from(self.bytes(len, at)?))),
            Header::Text(len) => self.text(len, at).map(Value::Str),
            Header::Array(len) => self.array(len, at, depth),
            Header::Map(len) => self.map(len, at, depth),
            Header::Tag(t) => self.tagged(t, depth),
            Header::Float(f) => Ok(Value::Float(f)),
            Header::Simple(simple::FALSE) => Ok(Value::Bool(false)),
            Header::Simple(simple::TRUE) => Ok(Value::Bool(true)),
            Header::Simple(simple::NULL | simple::UNDEFINED) => Ok(Value::Null),
            Header::Simple(_) => Err(CborError::Invalid(at, "an unsupported simple value")),
            Header::Break => Err(CborError::Invalid(at, "a break outside an indefinite item")),
        }
    }

    /// The bytes not read yet.
    fn left(&self) -> usize {
        self.src.body.len() - self.src.at.get()
    }

    /// A definite string's `len` bytes, checked against the bytes left and charged
    /// before they are allocated.
    fn definite(&mut self, len: usize, at: usize) -> Result<Vec<u8>, CborError> {
        if len > self.left() {
            return Err(CborError::Truncated(at));
        }
        self.budget.charge(len)?;
        // Right after a pull the decoder holds nothing back: the string is next.
        self.src
            .take(len)
            .map(<[u8]>::to_vec)
            .ok_or(CborError::Truncated(at))
    }

    fn bytes(&mut self, len: Option<usize>, at: usize) -> Result<Vec<u8>, CborError> {
        if let Some(len) = len {
            return self.definite(len, at);
        }
        let (budget, mut out, mut scratch) = (self.budget, Vec::new(), [0; SCRATCH_BYTES]);
        let mut chunks = self.de.bytes(None);
        while let Some(mut chunk) = chunks.pull().map_err(wire(at))? {
            while let Some(part) = chunk.pull(&mut scratch).map_err(wire(at))? {
                budget.charge(part.len())?;
                out.extend_from_slice(part);
            }
        }
        Ok(out)
    }

    fn text(&mut self, len: Option<usize>, at: usize) -> Result<String, CborError> {
        let not_utf8 = CborError::Invalid(at, "text that is not UTF-8");
        if let Some(len) = len {
            return String::from_utf8(self.definite(len, at)?).map_err(|_| not_utf8);
        }
        let (budget, mut out, mut scratch) = (self.budget, String::new(), [0; SCRATCH_BYTES]);
        let mut chunks = self.de.text(None);
        while let Some(mut chunk) = chunks.pull().map_err(wire(at))? {
            while let Some(part) = chunk.pull(&mut scratch).map_err(wire(at))? {
                budget.charge(part.len())?;
                out.push_str(part);
            }
        }
        Ok(out)
    }

    /// Whether the next item is a break (which it then consumes). Read from the body,
    /// not pulled and pushed back: the decoder never holds a head between items, so
    /// strings can be read around it.
    fn at_break(&mut self, at: usize) -> Result<bool, CborError> {
        match self.src.body.get(self.src.at.get()) {
            None => Err(CborError::Truncated(at)),
            Some(&BREAK) => {
                self.src.at.set(self.src.at.get() + 1);
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn array(&mut self, len: Option<usize>, at: usize, depth: usize) -> Result<Value, CborError> {
        let mut out = Vec::new();
        match len {
            Some(n) => {
                // Every item takes at least one byte: a count past the bytes left is a
                // lie, refused before anything is reserved for it.
                let n = self.count(n, 1, at)?;
                self.budget.charge(n.saturating_mul(NODE_BYTES))?;
                out.reserve_exact(n);
                for _ in 0..n {
                    out.push(self.item(depth + 1)?);
                }
            }
            None => {
                while !self.at_break(at)? {
                    self.budget.charge(NODE_BYTES)?;
                    out.push(self.item(depth + 1)?);
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn map(&mut self, len: Option<usize>, at: usize, depth: usize) -> Result<Value, CborError> {
        let mut out: Vec<(String, Value)> = Vec::new();
        match len {
            Some(n) => {
                let n = self.count(n, 2, at)?;
                self.budget.members(n)?;
                self.budget
                    .charge(n.saturating_mul(NODE_BYTES + MEMBER_BYTES))?;
                out.reserve_exact(n);
                for _ in 0..n {
                    out.push(self.member(depth)?);
                }
            }
            None => {
                while !self.at_break(at)? {
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
        let at = self.src.at.get();
        match self.item(depth + 1)? {
            Value::Str(name) => Ok((name, self.item(depth + 1)?)),
            _ => Err(CborError::Invalid(at, "a map key that is not text")),
        }
    }

    /// A definite count of items of at least `item_bytes_min` bytes each, checked
    /// against the bytes left.
    fn count(&self, n: usize, item_bytes_min: usize, at: usize) -> Result<usize, CborError> {
        if n > self.left() / item_bytes_min {
            return Err(CborError::Truncated(at));
        }
        Ok(n)
    }

    fn tagged(&mut self, t: u64, depth: usize) -> Result<Value, CborError> {
        let inner_at = self.src.at.get();
        let inner = self.item(depth + 1)?;
        match (t, inner) {
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
            (tag::BIGPOS | tag::BIGNEG, Value::Bytes(b)) => bignum(&b, t == tag::BIGNEG)
                .ok_or(CborError::Invalid(inner_at, "an integer too large")),
            (_, inner) => Ok(inner),
        }
    }
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
            (b"\x1c", "not well-formed CBOR at byte 0"),
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
            (b"\x5f\x61a\xff", "not well-formed CBOR at byte 0"),
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
