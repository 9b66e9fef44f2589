//! One value model for both wire formats, so every operation is written once.
//!
//! AWS JSON 1.1 and the CBOR variant carry the same members; they differ in how blobs and
//! timestamps are written:
//!
//! | member kind | JSON | CBOR |
//! |---|---|---|
//! | blob (`Data`) | base64 string | byte string (major type 2) |
//! | timestamp | epoch seconds, integer or decimal (written in plain decimal, never E-notation) | tag 1 + integer epoch **milliseconds** (untagged numbers are read as seconds) |
//!
//! Requests are parsed into [`Value`] and read through [`Fields`], whose accessors raise
//! the errors Kinesis raises (`SerializationException` for a wrong type,
//! `ValidationException` for a missing member). Responses are built as [`Value`] and
//! written by [`to_json`] or [`to_cbor`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use crate::errors::ApiError;

/// A request or response value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Absent or null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Str(String),
    /// Raw bytes (a CBOR byte string, or a blob to write: a record's data is shared with
    /// the segment's memory map, not copied, until it is base64-encoded into the reply).
    Bytes(Bytes),
    /// A point in time, ms since the epoch.
    Timestamp(u64),
    /// A list.
    Array(Vec<Value>),
    /// A structure or map, in member order.
    Map(Vec<(String, Value)>),
}

/// The largest nesting accepted in a request.
const DEPTH_MAX: usize = 16;

impl Value {
    /// A map from `(name, value)` pairs, leaving out nulls (absent members are omitted).
    pub fn map<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Map(
            members
                .into_iter()
                .filter(|(_, v)| *v != Value::Null)
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A string value, or null.
    pub fn opt_str(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Null, |s| Value::Str(s.into()))
    }
}

/// Parses a JSON request body, straight into [`Value`]: no intermediate
/// `serde_json::Value` and its per-object maps, which cost a PutRecords of 500 records
/// about a thousand allocations more (allocation was a quarter of the server's time).
/// Members keep their order; a repeated member keeps its last value.
pub fn from_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Map(Vec::new()));
    }
    let malformed =
        |e: serde_json::Error| ApiError::serialization(format!("Malformed JSON body: {e}"));
    let mut de = serde_json::Deserializer::from_slice(body);
    let v = serde::de::DeserializeSeed::deserialize(JsonValue { depth: 0 }, &mut de)
        .map_err(malformed)?;
    de.end().map_err(malformed)?;
    Ok(v)
}

/// Reads one JSON value `depth` levels down.
#[derive(Clone, Copy)]
struct JsonValue {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > DEPTH_MAX {
            return Err(serde::de::Error::custom("Request nested too deeply"));
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(i)))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(u)))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = JsonValue {
            depth: self.depth + 1,
        };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = JsonValue {
            depth: self.depth + 1,
        };
        let mut out: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(inner)?;
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => out.push((key, v)),
            }
        }
        Ok(Value::Map(out))
    }
}

/// Parses a CBOR request body.
pub fn from_cbor(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Map(Vec::new()));
    }
    let v: ciborium::Value = ciborium::from_reader(body)
        .map_err(|e| ApiError::serialization(format!("Malformed CBOR body: {e}")))?;
    cbor_value(v, 0)
}

fn cbor_value(v: ciborium::Value, depth: usize) -> Result<Value, ApiError> {
    use ciborium::Value as C;
    if depth > DEPTH_MAX {
        return Err(ApiError::serialization("Request nested too deeply"));
    }
    Ok(match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => Value::Int(i128::from(i)),
        C::Float(f) => Value::Float(f),
        C::Text(s) => Value::Str(s),
        C::Bytes(b) => Value::Bytes(b.into()),
        C::Tag(1, inner) => match *inner {
            C::Integer(i) => Value::Timestamp(
                u64::try_from(i128::from(i))
                    .map_err(|_| ApiError::serialization("Negative timestamp"))?,
            ),
            C::Float(f) if f >= 0.0 && f.is_finite() => Value::Timestamp(f as u64),
            _ => {
                return Err(ApiError::serialization(
                    "Timestamp tag on a value that is not a number",
                ));
            }
        },
        C::Tag(_, inner) => cbor_value(*inner, depth + 1)?,
        C::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| cbor_value(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        C::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| match k {
                    C::Text(k) => Ok((k, cbor_value(v, depth + 1)?)),
                    _ => Err(ApiError::serialization("Map key is not text")),
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(ApiError::serialization("Unsupported CBOR value")),
    })
}

/// Writes a response as JSON: blobs base64, timestamps as decimal epoch seconds.
pub fn to_json(v: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_json(v, &mut out);
    out.into_bytes()
}

fn write_json(v: &Value, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing into a String cannot fail.
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&plain_decimal(*f)),
        Value::Str(s) => write_json_str(s, out),
        Value::Bytes(b) => {
            out.push('"');
            STANDARD.encode_string(b, out);
            out.push('"');
        }
        Value::Timestamp(ms) => {
            let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal, escaped in place (no temporary strings: responses write one
/// per member name and per sequence number). Every character that needs escaping is
/// ASCII, so the scan is over bytes (a byte of a multi-byte character is never one of
/// them), and a string with none is copied whole.
fn write_json_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    let needs_escape = |b: u8| b == b'"' || b == b'\\' || b < b' ';
    out.push('"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| needs_escape(b)) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        // `i` is the index of an ASCII byte: a character boundary.
        out.push_str(&s[plain..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// A float in plain decimal notation (no exponent), as JSON clients expect.
fn plain_decimal(f: f64) -> String {
    if !f.is_finite() {
        return "0".to_owned();
    }
    let s = format!("{f:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Writes a response as CBOR: blobs as byte strings, timestamps as tag 1 + milliseconds.
pub fn to_cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    if ciborium::into_writer(&cbor_of(v), &mut out).is_err() {
        out.clear();
    }
    out
}

fn cbor_of(v: &Value) -> ciborium::Value {
    use ciborium::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => {
            i64::try_from(*i).map_or_else(|_| C::Float(*i as f64), |i| C::Integer(i.into()))
        }
        Value::Float(f) => C::Float(*f),
        Value::Str(s) => C::Text(s.clone()),
        Value::Bytes(b) => C::Bytes(b.to_vec()),
        Value::Timestamp(ms) => C::Tag(1, Box::new(C::Integer((*ms).into()))),
        Value::Array(a) => C::Array(a.iter().map(cbor_of).collect()),
        Value::Map(m) => C::Map(
            m.iter()
                .map(|(k, v)| (C::Text(k.clone()), cbor_of(v)))
                .collect(),
        ),
    }
}

/// The members of a request structure, with typed accessors.
#[derive(Debug)]
pub struct Fields<'a> {
    members: &'a [(String, Value)],
}

impl<'a> Fields<'a> {
    /// The members of a request body; anything but a structure is a serialization error.
    pub fn of(v: &'a Value) -> Result<Fields<'a>, ApiError> {
        match v {
            Value::Map(m) => Ok(Fields { members: m }),
            Value::Null => Ok(Fields { members: &[] }),
            _ => Err(ApiError::serialization(
                "Start of structure or map expected",
            )),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| **v != Value::Null)
    }

    /// A string member, if present.
    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::serialization(format!(
                "class {name} can not be converted to a String"
            ))),
        }
    }

    /// A required string member.
    pub fn str(&self, name: &str) -> Result<&'a str, ApiError> {
        self.opt_str(name)?.ok_or_else(|| ApiError::missing(name))
    }

    /// An integer member, if present.
    pub fn opt_int(&self, name: &str) -> Result<Option<i128>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(Value::Float(f)) if f.fract() == 0.0 => Ok(Some(*f as i128)),
            Some(_) => Err(ApiError::serialization(format!(
                "class {name} can not be converted to an Integer"
            ))),
        }
    }

    /// A boolean member, if present.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::serialization(format!(
                "class {name} can not be converted to a Boolean"
            ))),
        }
    }

    /// A blob member: base64 text in JSON, bytes in CBOR.
    pub fn opt_blob(&self, name: &str) -> Result<Option<Bytes>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b.clone())),
            // SIMD decoding: the scalar decoder was a sixth of the server's time under
            // Kinesis PutRecords. It is as strict (padding required, no stray bits).
            Some(Value::Str(s)) => base64_simd::STANDARD
                .decode_to_vec(s)
                .map(|v| Some(Bytes::from(v)))
                .map_err(|_| {
                    let reason = STANDARD
                        .decode(s)
                        .err()
                        .map_or_else(|| "invalid base64".to_owned(), |e| e.to_string());
                    ApiError::serialization(format!(
                        "'{}' can not be converted to a Blob: {reason}",
                        truncate(s)
                    ))
                }),
            Some(_) => Err(ApiError::serialization(format!(
                "class {name} can not be converted to a Blob"
            ))),
        }
    }

    /// A timestamp member in ms: epoch seconds (integer or decimal) in JSON, tag 1 + ms in
    /// CBOR.
    pub fn opt_timestamp(&self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Timestamp(ms)) => Ok(Some(*ms)),
            Some(Value::Int(s)) if *s >= 0 => Ok(Some(
                u64::try_from(*s)
                    .unwrap_or(u64::MAX / 1000)
                    .saturating_mul(1000),
            )),
            Some(Value::Float(s)) if *s >= 0.0 && s.is_finite() => {
                Ok(Some((s * 1000.0).round() as u64))
            }
            Some(Value::Str(s)) => s
                .parse::<f64>()
                .ok()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| Some((f * 1000.0).round() as u64))
                .ok_or_else(|| {
                    ApiError::serialization(format!(
                        "'{}' can not be converted to a Timestamp",
                        truncate(s)
                    ))
                }),
            Some(_) => Err(ApiError::serialization(format!(
                "class {name} can not be converted to a Timestamp"
            ))),
        }
    }

    /// A list member, if present.
    pub fn opt_array(&self, name: &str) -> Result<Option<&'a [Value]>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(ApiError::serialization(format!(
                "Start of list expected for {name}"
            ))),
        }
    }

    /// A structure member, if present.
    pub fn opt_struct(&self, name: &str) -> Result<Option<Fields<'a>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Map(_)) => Fields::of(v).map(Some),
            Some(_) => Err(ApiError::serialization(format!(
                "Start of structure or map expected for {name}"
            ))),
        }
    }

    /// A string-to-string map member, if present.
    pub fn opt_string_map(&self, name: &str) -> Result<Option<Vec<(String, String)>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::Str(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ApiError::serialization(format!(
                        "class {name}.{k} can not be converted to a String"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::serialization(format!(
                "Start of map expected for {name}"
            ))),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_parses_every_kind_of_value_in_member_order() {
        let v = from_json(
            br#" {"b": [1, -2, 18446744073709551615, 1.5, true, null, "x\u00e9"], "a": {}} "#,
        )
        .unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                (
                    "b".into(),
                    Value::Array(vec![
                        Value::Int(1),
                        Value::Int(-2),
                        Value::Int(i128::from(u64::MAX)),
                        Value::Float(1.5),
                        Value::Bool(true),
                        Value::Null,
                        Value::Str("x\u{e9}".into()),
                    ])
                ),
                ("a".into(), Value::Map(Vec::new())),
            ])
        );
    }

    proptest! {
        #[test]
        fn json_strings_are_escaped_so_they_read_back_the_same(text in any::<String>()) {
            let mut out = String::new();
            write_json_str(&text, &mut out);
            let back: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back, text);
        }
    }

    proptest! {
        /// The SIMD decoder accepts exactly what the scalar one does, with the same bytes:
        /// valid encodings of any data, and the same strings damaged.
        #[test]
        fn simd_base64_agrees_with_the_scalar_decoder(data in proptest::collection::vec(any::<u8>(), 0..200), junk in "[A-Za-z0-9+/=_ -]{0,3}", at in any::<prop::sample::Index>()) {
            let good = STANDARD.encode(&data);
            let mut bad = good.clone();
            bad.insert_str(at.index(good.len() + 1), &junk);
            for s in [good, bad] {
                let simd = base64_simd::STANDARD.decode_to_vec(&s).ok();
                prop_assert_eq!(simd, STANDARD.decode(&s).ok(), "{:?}", s);
            }
        }
    }

    #[test]
    fn simd_base64_agrees_on_non_canonical_edges() {
        for s in [
            "QR==", "QQ==", "QQ=", "QQ", "Q===", "QUJD\n", "QUJD", "QUI=", "QUJ=", "", "====",
        ] {
            assert_eq!(
                base64_simd::STANDARD.decode_to_vec(s).ok(),
                STANDARD.decode(s).ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_repeated_json_member_keeps_its_last_value() {
        let v = from_json(br#"{"StreamName": "a", "Limit": 1, "StreamName": "b"}"#).unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                ("StreamName".into(), Value::Str("b".into())),
                ("Limit".into(), Value::Int(1)),
            ])
        );
    }

    #[test]
    fn malformed_or_too_deep_json_is_a_serialization_error() {
        let deep = format!("{}{}", "[".repeat(DEPTH_MAX + 2), "]".repeat(DEPTH_MAX + 2));
        let ok = format!("{}{}", "[".repeat(DEPTH_MAX + 1), "]".repeat(DEPTH_MAX + 1));
        assert!(from_json(ok.as_bytes()).is_ok());
        for body in [
            deep.as_bytes(),
            b"{\"a\": 1} x",
            b"{\"a\": }",
            b"{1: 2}",
            b"\"unterminated",
        ] {
            let e = from_json(body).unwrap_err();
            assert_eq!(
                e.kind,
                "SerializationException",
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn timestamps_are_plain_decimal_seconds_in_json_and_tagged_ms_in_cbor() {
        let v = Value::map([
            ("T", Value::Timestamp(1_572_297_168_123)),
            ("F", Value::Float(1.5e9)),
        ]);
        let json = String::from_utf8(to_json(&v)).unwrap();
        assert_eq!(json, r#"{"T":1572297168.123,"F":1500000000}"#);
        let cbor = to_cbor(&v);
        let back = from_cbor(&cbor).unwrap();
        assert_eq!(
            Fields::of(&back).unwrap().opt_timestamp("T").unwrap(),
            Some(1_572_297_168_123)
        );
    }

    #[test]
    fn json_timestamps_accept_integers_and_decimals() {
        let v = from_json(br#"{"A": 1704164645, "B": 1459799926.480}"#).unwrap();
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.opt_timestamp("A").unwrap(), Some(1_704_164_645_000));
        assert_eq!(f.opt_timestamp("B").unwrap(), Some(1_459_799_926_480));
    }

    #[test]
    fn blobs_are_base64_in_json_and_bytes_in_cbor() {
        let v = from_json(br#"{"Data": "aGVsbG8="}"#).unwrap();
        assert_eq!(
            Fields::of(&v).unwrap().opt_blob("Data").unwrap(),
            Some(Bytes::from_static(b"hello"))
        );
        let bad = from_json(br#"{"Data": "***"}"#).unwrap();
        assert_eq!(
            Fields::of(&bad).unwrap().opt_blob("Data").unwrap_err().kind,
            "SerializationException"
        );
        let c = to_cbor(&Value::map([(
            "Data",
            Value::Bytes(Bytes::from_static(b"hi")),
        )]));
        let back = from_cbor(&c).unwrap();
        assert_eq!(
            Fields::of(&back).unwrap().opt_blob("Data").unwrap(),
            Some(Bytes::from_static(b"hi"))
        );
    }

    #[test]
    fn wrong_types_are_serialization_errors_and_missing_members_validation_errors() {
        let v = from_json(br#"{"StreamName": 5}"#).unwrap();
        assert_eq!(
            Fields::of(&v).unwrap().str("StreamName").unwrap_err().kind,
            "SerializationException"
        );
        let v = from_json(b"{}").unwrap();
        assert_eq!(
            Fields::of(&v).unwrap().str("StreamName").unwrap_err().kind,
            "ValidationException"
        );
        assert_eq!(
            from_json(b"{not json").unwrap_err().kind,
            "SerializationException"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = from_json(&body);
            let _ = from_cbor(&body);
        }

        #[test]
        fn floats_never_use_exponents(f in 0f64..1e12) {
            let s = plain_decimal(f);
            prop_assert!(!s.contains('e') && !s.contains('E'), "{}", s);
        }
    }
}
