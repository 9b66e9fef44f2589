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
fn objects_past_the_member_limit_are_refused() {
    let object = |n: usize| {
        let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
        format!("{{{}}}", members.join(","))
    };
    assert!(from_json(object(MEMBERS_MAX).as_bytes()).is_ok());
    // 100,000 distinct keys once took seconds of CPU per request (a linear scan for
    // each key); now the 257th member ends the parse.
    for n in [MEMBERS_MAX + 1, 100_000] {
        let e = from_json(object(n).as_bytes()).unwrap_err();
        assert_eq!(e.kind, "SerializationException");
        assert!(
            e.message
                .contains(&format!("more than {MEMBERS_MAX} members")),
            "{}",
            e.message
        );
    }
}

#[test]
fn repeated_members_of_a_large_object_keep_first_place_and_last_value() {
    let mut body: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
    body.push("\"k3\":\"three\"".into());
    body.push("\"k0\":\"zero\"".into());
    body.push("\"k3\":\"last\"".into());
    let v = from_json(format!("{{{}}}", body.join(",")).as_bytes()).unwrap();
    let Value::Map(m) = v else { panic!() };
    assert_eq!(m.len(), 40);
    assert_eq!(m[0], ("k0".into(), Value::Str("zero".into())));
    assert_eq!(m[3], ("k3".into(), Value::Str("last".into())));
    assert_eq!(m[39], ("k39".into(), Value::Int(39)));
}

#[test]
fn millions_of_empty_values_stop_at_the_tree_limit() {
    // 5 million empty arrays once cost about 1.5 GB.
    for item in ["[]", "{}", "\"\"", "0"] {
        let body = format!("[{}]", vec![item; 1_000_000].join(","));
        let limits = ParseLimits::for_body(body.len(), 500);
        let e = from_json_limited(body.as_bytes(), limits).unwrap_err();
        assert_eq!(e.kind, "SerializationException", "{item}");
        assert!(e.message.contains("too many values"), "{}", e.message);
    }
}

#[test]
fn put_records_bodies_fit_the_limits_and_their_estimate() {
    let records = |data: &str, n: usize| {
        let one = format!("{{\"Data\":\"{data}\",\"PartitionKey\":\"k\"}}");
        format!(
            "{{\"StreamName\":\"s\",\"Records\":[{}]}}",
            vec![one; n].join(",")
        )
    };
    let big = "A".repeat(13_000);
    for (body, records_max) in [
        (records("", 500), 500),
        (records(&big, 500), 500),
        (records("", 100_000), 100_000),
    ] {
        let limits = ParseLimits::for_body(body.len(), records_max);
        let (v, used) = from_json_limited(body.as_bytes(), limits).unwrap();
        // The charge made while parsing is the estimate of the finished tree, give or
        // take the extra slot each array is charged for its end.
        let estimate = tree_bytes(&v);
        assert!(
            used >= estimate && used <= estimate + 2 * NODE_BYTES,
            "{used} {estimate}"
        );
        let cbor = to_cbor(&v);
        let (back, _) =
            from_cbor_limited(&cbor, ParseLimits::for_body(cbor.len(), records_max)).unwrap();
        assert_eq!(back, v);
    }
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
