//! Metadata values, limits, the canonical binary form and JSON conversion.

use hnsw_batch::metadata::{
    self, decode, encode, encoded_len, from_json, to_json, DecodeErrorKind, MetaError, MetaLimits, MetaValue,
    Metadata,
};
use proptest::prelude::*;
use serde_json::json;

fn meta(pairs: &[(&str, MetaValue)]) -> Metadata {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn bytes_of(m: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    encode(m, &mut out);
    out
}

fn sample() -> Metadata {
    meta(&[
        ("lang", "en".into()),
        ("year", 2001.into()),
        ("score", 0.25.into()),
        ("draft", false.into()),
        ("ok", true.into()),
        ("tags", vec!["news", "sport", ""].into()),
        ("neg", MetaValue::Int(i64::MIN)),
        ("é", "ünïcödé".into()),
    ])
}

#[test]
fn limits_refuse_and_name_the_limit() {
    let limits = MetaLimits::default();
    let long_key = "k".repeat(257);
    let err = limits.check(&meta(&[(&long_key, 1.into())])).unwrap_err();
    assert!(matches!(err, MetaError::KeyTooLong { len: 257, limit: 256, .. }), "{err:?}");
    assert!(err.to_string().contains("max_key_len 256"), "{err}");
    limits.check(&meta(&[(&"k".repeat(256), 1.into())])).unwrap();

    let list: Vec<String> = (0..1025).map(|i| i.to_string()).collect();
    let err = limits.check(&meta(&[("tags", list.into())])).unwrap_err();
    assert!(matches!(err, MetaError::ListTooLong { len: 1025, limit: 1024, .. }), "{err:?}");
    assert!(err.to_string().contains("max_list_len 1024"), "{err}");

    let err = limits.check(&meta(&[("blob", "x".repeat(64 << 10).into())])).unwrap_err();
    assert!(matches!(err, MetaError::TooLarge { limit: 65536, .. }), "{err:?}");
    assert!(err.to_string().contains("max_bytes 65536"), "{err}");
    // Exactly at the limit passes: the limit is on the encoded size.
    let fits = meta(&[("b", "x".repeat(65536 - 1 - 2 - 1 - 3).into())]);
    assert_eq!(encoded_len(&fits), 65536);
    limits.check(&fits).unwrap();

    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = limits.check(&meta(&[("x", bad.into())])).unwrap_err();
        assert!(matches!(err, MetaError::NonFinite { .. }), "{err:?}");
    }
    assert_eq!(limits.check(&meta(&[("", 1.into())])), Err(MetaError::EmptyKey));
    assert!(matches!(limits.check(&meta(&[("$and", 1.into())])), Err(MetaError::ReservedKey { .. })));

    let tight = MetaLimits::default().max_bytes(8).max_list_len(1).max_key_len(2);
    assert!(matches!(
        tight.check(&meta(&[("t", vec!["a", "b"].into())])),
        Err(MetaError::ListTooLong { .. })
    ));
    assert!(matches!(tight.check(&meta(&[("t", "long string".into())])), Err(MetaError::TooLarge { .. })));
}

#[test]
fn key_preview_in_errors_is_bounded_and_cut_at_a_char_boundary() {
    let key = "é".repeat(1000);
    let Err(MetaError::KeyTooLong { key_prefix, len, .. }) =
        MetaLimits::default().check(&meta(&[(&key, 1.into())]))
    else {
        panic!("expected KeyTooLong")
    };
    assert_eq!(len, 2000);
    assert!(key_prefix.len() <= 64 && key.starts_with(&key_prefix));
}

#[test]
fn encode_decode_round_trip_and_size() {
    let m = sample();
    let bytes = bytes_of(&m);
    assert_eq!(bytes.len(), encoded_len(&m));
    assert_eq!(decode(&bytes).unwrap(), m);
    assert_eq!(bytes_of(&Metadata::new()), [0]);
}

#[test]
fn negative_zero_is_written_as_positive_zero() {
    let m = meta(&[("z", MetaValue::Float(-0.0))]);
    let bytes = bytes_of(&m);
    let back = decode(&bytes).unwrap();
    let MetaValue::Float(z) = back["z"] else { panic!() };
    assert!(z == 0.0 && z.is_sign_positive());
    // The -0.0 bit pattern itself is refused: one value, one encoding.
    let mut neg = bytes.clone();
    let last = neg.len() - 1;
    neg[last] = 0x80;
    assert!(matches!(decode(&neg), Err(MetaError::Corrupt { kind: DecodeErrorKind::NegativeZero, .. })));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = bytes_of(&sample());
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes decoded");
    }
}

#[test]
fn every_corruption_is_an_error_or_another_canonical_map() {
    // Flipping a byte inside a string can give another valid map; what must never happen is a
    // panic, or a success whose canonical bytes differ from the input.
    let bytes = bytes_of(&sample());
    let mut errors = 0;
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            match decode(&bad) {
                Ok(m) => assert_eq!(bytes_of(&m), bad, "byte {i} ^ {flip:#x} decoded non-canonically"),
                Err(_) => errors += 1,
            }
        }
    }
    assert!(errors > bytes.len(), "most corruptions should be caught ({errors})");
    // Appended bytes too.
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        decode(&long),
        Err(MetaError::Corrupt { kind: DecodeErrorKind::TrailingBytes { left: 1 }, .. })
    ));
}

#[test]
fn structural_corruptions_are_named() {
    // Unsorted keys: "b" then "a".
    let bad = [2, 1, b'b', 3, 1, b'a', 3];
    assert!(matches!(
        decode(&bad),
        Err(MetaError::Corrupt { offset: 4, kind: DecodeErrorKind::KeysNotSorted })
    ));
    // Duplicate keys.
    let dup = [2, 1, b'a', 3, 1, b'a', 3];
    assert!(matches!(decode(&dup), Err(MetaError::Corrupt { kind: DecodeErrorKind::KeysNotSorted, .. })));
    // Unknown tag.
    assert!(matches!(
        decode(&[1, 1, b'a', 9]),
        Err(MetaError::Corrupt { offset: 3, kind: DecodeErrorKind::UnknownTag(9) })
    ));
    // Invalid UTF-8 in a key.
    assert!(matches!(
        decode(&[1, 1, 0xff, 3]),
        Err(MetaError::Corrupt { offset: 2, kind: DecodeErrorKind::InvalidUtf8 })
    ));
    // A huge count on tiny input is refused before allocating.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert!(matches!(
        decode(&huge),
        Err(MetaError::Corrupt { offset: 0, kind: DecodeErrorKind::LengthExceedsInput { .. } })
    ));
    // NaN.
    let mut nan = vec![1, 1, b'f', 2];
    nan.extend_from_slice(&f64::NAN.to_le_bytes());
    assert!(matches!(
        decode(&nan),
        Err(MetaError::Corrupt { offset: 4, kind: DecodeErrorKind::NonFiniteFloat })
    ));
    assert!(decode(&[]).is_err());
}

#[test]
fn json_conversion() {
    let j = json!({"lang": "en", "year": 2001, "score": 2.0, "ok": true, "tags": ["a", "b"], "gone": null});
    let m = from_json(&j).unwrap();
    assert_eq!(m["year"], MetaValue::Int(2001));
    assert_eq!(m["score"], MetaValue::Float(2.0), "a number with a fraction is a float");
    assert_eq!(m["tags"], MetaValue::from(vec!["a", "b"]));
    assert!(!m.contains_key("gone"), "nulls are skipped");
    assert_eq!(from_json(&to_json(&m)).unwrap(), m);

    let err = from_json(&json!({"n": {"x": 1}})).unwrap_err();
    assert_eq!(err, MetaError::Unsupported { key: "n".into(), found: "object" });
    let err = from_json(&json!({"n": [1, 2]})).unwrap_err();
    assert_eq!(err, MetaError::Unsupported { key: "n".into(), found: "array of numbers" });
    let err = from_json(&json!({"n": [["a"]]})).unwrap_err();
    assert_eq!(err, MetaError::Unsupported { key: "n".into(), found: "array of arrays" });
    let err = from_json(&json!({"n": 18446744073709551615u64})).unwrap_err();
    assert!(matches!(err, MetaError::IntOutOfRange { .. }), "{err:?}");
    assert_eq!(from_json(&json!([1])).unwrap_err(), MetaError::NotAnObject { found: "array" });
    assert!(matches!(from_json(&json!({"$x": 1})), Err(MetaError::ReservedKey { .. })));
    let limits = MetaLimits::default().max_list_len(1);
    assert!(matches!(
        limits.from_json(&json!({"t": ["a", "b"]})),
        Err(MetaError::ListTooLong { len: 2, .. })
    ));
}

#[test]
fn validate_uses_the_default_limits() {
    metadata::validate(&sample()).unwrap();
}

fn value() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        ".{0,12}".prop_map(MetaValue::Str),
        any::<i64>().prop_map(MetaValue::Int),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(MetaValue::Float),
        any::<bool>().prop_map(MetaValue::Bool),
        prop::collection::vec(".{0,6}", 0..5).prop_map(MetaValue::StrList),
    ]
}

fn metadata_strategy() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map(".{0,10}", value(), 0..8)
}

proptest! {
    #[test]
    fn round_trip_any_metadata(m in metadata_strategy()) {
        let bytes = bytes_of(&m);
        prop_assert_eq!(bytes.len(), encoded_len(&m));
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn decode_never_panics_and_success_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(m) = decode(&bytes) {
            prop_assert_eq!(bytes_of(&m), bytes);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(m in metadata_strategy(), at in any::<prop::sample::Index>(), with in any::<u8>()) {
        let mut bytes = bytes_of(&m);
        let i = at.index(bytes.len());
        bytes[i] = with;
        if let Ok(back) = decode(&bytes) {
            prop_assert_eq!(bytes_of(&back), bytes);
        }
    }
}

#[cfg(feature = "formats")]
#[test]
fn jsonl_carries_lists_of_strings_and_csv_refuses_them() {
    use hnsw_batch::io::{write_csv_to, write_jsonl_to, CsvOptions, JsonlOptions, JsonlReader, Record};

    let record = Record {
        id: 7,
        vector: vec![1.0, 2.0],
        metadata: meta(&[("tags", vec!["a", "b\"c"].into())]),
        expires_at: None,
    };
    let mut out = Vec::new();
    write_jsonl_to(&mut out, [&record], &JsonlOptions::default()).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains(r#""tags":["a","b\"c"]"#), "{text}");
    let back: Vec<Record> =
        JsonlReader::new(&out[..], JsonlOptions::default()).unwrap().map(Result::unwrap).collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0], record);

    let bad = br#"{"id": 1, "vector": [1.0], "metadata": {"t": [1, 2]}}"#;
    let rows: Vec<_> = JsonlReader::new(&bad[..], JsonlOptions::default()).unwrap().collect();
    assert!(rows[0].as_ref().unwrap_err().to_string().contains("only strings"), "{:?}", rows[0]);

    let mut csv = Vec::new();
    let err = write_csv_to(&mut csv, &[record], &CsvOptions::default()).unwrap_err();
    assert!(err.to_string().contains("CSV cannot hold"), "{err}");
    assert!(csv.is_empty(), "nothing is written before the refusal");
}
