//! Filters: the JSON grammar and its errors, the documented semantics, and `FieldIndex`
//! agreeing with per-node evaluation.

use std::collections::BTreeMap;
use std::ops::Bound;

use hnsw_batch::filter::{FieldIndex, Filter, FilterErrorKind, FilterValue, Number, MAX_DEPTH};
use hnsw_batch::metadata::{MetaValue, Metadata};
use proptest::prelude::*;
use serde_json::json;

fn meta(pairs: &[(&str, MetaValue)]) -> Metadata {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn parse(text: &str) -> Filter {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// (path, kind, Display) of the error for `text`.
fn parse_err(text: &str) -> (String, FilterErrorKind, String) {
    let e = text.parse::<Filter>().expect_err(text);
    (e.path.clone(), e.kind.clone(), e.to_string())
}

// ---- grammar: valid -------------------------------------------------------------------------

#[test]
fn parses_every_operator() {
    assert_eq!(parse(r#"{"lang": "en"}"#), Filter::eq("lang", "en"));
    assert_eq!(parse(r#"{"lang": {"$eq": "en"}}"#), Filter::eq("lang", "en"));
    assert_eq!(parse(r#"{"lang": {"$ne": "en"}}"#), Filter::ne("lang", "en"));
    assert_eq!(parse(r#"{"tag": {"$in": ["a", "b"]}}"#), Filter::in_("tag", ["a", "b"]));
    assert_eq!(
        parse(r#"{"tag": {"$nin": ["a", 1, true]}}"#),
        Filter::nin("tag", [FilterValue::from("a"), 1.into(), true.into()])
    );
    assert_eq!(parse(r#"{"year": {"$gte": 2000, "$lt": 2010}}"#), Filter::range("year", 2000..2010));
    assert_eq!(parse(r#"{"year": {"$gt": 1.5}}"#), Filter::gt("year", 1.5));
    assert_eq!(parse(r#"{"year": {"$lte": 7}}"#), Filter::lte("year", 7));
    assert_eq!(parse(r#"{"tag": {"$exists": true}}"#), Filter::exists("tag"));
    assert_eq!(parse(r#"{"tag": {"$exists": false}}"#), Filter::not(Filter::exists("tag")));
    assert_eq!(
        parse(r#"{"$and": [{"a": 1}, {"b": true}]}"#),
        Filter::and([Filter::eq("a", 1), Filter::eq("b", true)])
    );
    assert_eq!(parse(r#"{"$or": [{"a": 1}]}"#), Filter::or([Filter::eq("a", 1)]));
    assert_eq!(parse(r#"{"$not": {"a": 1}}"#), Filter::not(Filter::eq("a", 1)));
    assert_eq!(parse(r#"{"a": {"$not": {"$gt": 5}}}"#), Filter::not(Filter::gt("a", 5)));
    // Several keys mean "and"; several operators on a field too.
    assert_eq!(parse(r#"{"a": 1, "b": "x"}"#), Filter::and([Filter::eq("a", 1), Filter::eq("b", "x")]));
    assert_eq!(
        parse(r#"{"a": {"$gte": 1, "$ne": 3, "$lt": 9}}"#),
        Filter::and([Filter::range("a", 1..9), Filter::ne("a", 3)])
    );
    // Two bounds on one side stay separate ranges.
    assert_eq!(
        parse(r#"{"a": {"$gt": 1, "$gte": 2}}"#),
        Filter::and([Filter::gt("a", 1), Filter::gte("a", 2)])
    );
    // Numbers: integers stay integers, anything with a fraction or exponent is a float.
    assert_eq!(parse(r#"{"a": 2.0}"#), Filter::eq("a", 2.0));
    assert_eq!(parse(r#"{"a": 1e3}"#), Filter::eq("a", 1000.0));
    assert_eq!(parse(r#"{"a": -9223372036854775808}"#), Filter::eq("a", i64::MIN));
    assert!(matches!(
        parse(r#"{"a": 18446744073709551615}"#),
        Filter::Eq { value: FilterValue::Float(_), .. }
    ));
    assert_eq!(Filter::from_json(&json!({"a": {"$in": []}})).unwrap(), Filter::in_("a", Vec::<i64>::new()));
}

// ---- grammar: malformed, with paths ---------------------------------------------------------

#[test]
fn wrong_types_name_the_path() {
    let (path, kind, text) = parse_err(r#"{"$and": [{"lang": "en"}, {"year": {"$gte": "2000"}}]}"#);
    assert_eq!(path, "$and[1].year.$gte");
    assert_eq!(kind, FilterErrorKind::WrongType { expected: "a number", found: "string" });
    assert_eq!(text, "$and[1].year.$gte: expected a number, found string");

    let cases = [
        (r#"[1]"#, "", "an object", "array"),
        (r#"{"$and": {"a": 1}}"#, "$and", "an array", "object"),
        (r#"{"$or": [{"a": 1}, 3]}"#, "$or[1]", "an object", "number"),
        (r#"{"a": {"$in": "x"}}"#, "a.$in", "an array", "string"),
        (r#"{"a": {"$in": [1, [2]]}}"#, "a.$in[1]", "a string, number or boolean", "array"),
        (r#"{"a": {"$exists": 1}}"#, "a.$exists", "a boolean", "number"),
        (r#"{"a": {"$lt": true}}"#, "a.$lt", "a number", "boolean"),
        (r#"{"a": [1, 2]}"#, "a", "a string, number or boolean", "array"),
        (r#"{"a": {"$eq": {"$eq": 1}}}"#, "a.$eq", "a string, number or boolean", "object"),
        (r#"{"a": {"$not": 1}}"#, "a.$not", "an object of operators", "number"),
        (r#"{"$not": [1]}"#, "$not", "an object", "array"),
    ];
    for (text, want_path, expected, found) in cases {
        let (path, kind, _) = parse_err(text);
        assert_eq!(path, want_path, "{text}");
        assert_eq!(kind, FilterErrorKind::WrongType { expected, found }, "{text}");
    }
}

#[test]
fn unknown_operators_empty_conditions_and_nesting_are_errors() {
    let (path, kind, text) = parse_err(r#"{"$nor": [{"a": 1}]}"#);
    assert_eq!((path.as_str(), kind), ("$nor", FilterErrorKind::UnknownOperator { op: "$nor".into() }));
    assert_eq!(text, "$nor: unknown operator `$nor`");
    let (path, kind, _) = parse_err(r#"{"$or": [{"a": {"$regex": "x"}}]}"#);
    assert_eq!(
        (path.as_str(), kind),
        ("$or[0].a.$regex", FilterErrorKind::UnknownOperator { op: "$regex".into() })
    );
    // `$and` inside a field condition is not a field operator.
    let (path, _, _) = parse_err(r#"{"a": {"$and": [{"$gt": 1}]}}"#);
    assert_eq!(path, "a.$and");

    assert_eq!(parse_err(r#"{"$and": []}"#).1, FilterErrorKind::Empty { op: "$and" });
    assert_eq!(parse_err(r#"{"$or": []}"#).1, FilterErrorKind::Empty { op: "$or" });
    let (path, kind, text) = parse_err("{}");
    assert_eq!((path.as_str(), kind), ("", FilterErrorKind::Empty { op: "filter" }));
    assert_eq!(text, "filter: `filter` needs at least one condition");
    assert_eq!(parse_err(r#"{"a": {}}"#).1, FilterErrorKind::Empty { op: "condition" });
    assert_eq!(parse_err(r#"{"a": {"b": 1}}"#).1, FilterErrorKind::NestedDocument);
    assert_eq!(parse_err(r#"{"a": {"$gt": 1, "b": 1}}"#).1, FilterErrorKind::NestedDocument);
    assert_eq!(parse_err(r#"{"a": null}"#).1, FilterErrorKind::Null);
    assert_eq!(parse_err(r#"{"a": {"$in": [null]}}"#).0, "a.$in[0]");
    assert!(matches!(parse_err(r#"{"": 1}"#).1, FilterErrorKind::BadFieldName { .. }));
    assert!(matches!(parse_err(r#"{"a": 1"#).1, FilterErrorKind::Syntax { line: 1, .. }));
    // A huge field name is cut in the path, so the error stays small.
    let long = "k".repeat(10_000);
    let e = Filter::from_json(&json!({ long.clone(): {"$bogus": 1} })).unwrap_err();
    assert_eq!(e.path, format!("{}….$bogus", "k".repeat(64)));
}

fn nested_not(levels: usize) -> String {
    let mut s = r#"{"a": 1}"#.to_owned();
    for _ in 0..levels {
        s = format!(r#"{{"$not": {s}}}"#);
    }
    s
}

#[test]
fn nesting_is_limited() {
    let f = parse(&nested_not(MAX_DEPTH));
    assert_eq!(f.depth(), MAX_DEPTH);
    f.check().unwrap();
    let (path, kind, _) = parse_err(&nested_not(MAX_DEPTH + 1));
    assert_eq!(kind, FilterErrorKind::TooDeep { limit: MAX_DEPTH });
    assert_eq!(path.matches("$not").count(), MAX_DEPTH + 1);
    // Far deeper than serde_json's own limit: a syntax error, not a stack overflow.
    assert!(matches!(parse_err(&nested_not(10_000)).1, FilterErrorKind::Syntax { .. }));
    // Built in Rust: `check` applies the same limit.
    let mut deep = Filter::eq("a", 1);
    for _ in 0..=MAX_DEPTH {
        deep = !deep;
    }
    assert_eq!(deep.check().unwrap_err().kind, FilterErrorKind::TooDeep { limit: MAX_DEPTH });
}

#[test]
fn check_reports_what_the_parser_refuses() {
    assert_eq!(Filter::gt("a", f64::NAN).check().unwrap_err().path, "a");
    assert!(matches!(Filter::eq("$a", 1).check().unwrap_err().kind, FilterErrorKind::BadFieldName { .. }));
    assert_eq!(Filter::or([Filter::not(Filter::and([]))]).check().unwrap_err().path, "$or[0].$not.$and");
    Filter::and([Filter::eq("a", 1), Filter::in_("b", ["x"])]).check().unwrap();
}

#[test]
fn display_is_the_json_form() {
    let f = Filter::and([
        Filter::eq("quote\"d\\\n", "tab\there"),
        Filter::nin("n", [FilterValue::from(1), 2.5.into(), false.into()]),
        Filter::not(Filter::exists("x")),
        Filter::or([Filter::lte("y", -3), Filter::gt("z", 1e300)]),
    ]);
    let text = f.to_string();
    assert_eq!(
        text,
        r#"{"$and":[{"quote\"d\\\n":"tab\there"},{"n":{"$nin":[1,2.5,false]}},{"$not":{"x":{"$exists":true}}},{"$or":[{"y":{"$lte":-3}},{"z":{"$gt":1e300}}]}]}"#
    );
    assert_eq!(parse(&text), f);
    // A range open at both ends has no empty-condition form; it is written as >= -f64::MAX,
    // which every number satisfies.
    let open = Filter::range_bounds("a", Bound::Unbounded, Bound::Unbounded);
    let back = parse(&open.to_string());
    for v in [MetaValue::Int(i64::MIN), MetaValue::Float(f64::MIN), MetaValue::Float(1.0)] {
        assert!(open.matches(&meta(&[("a", v.clone())])) && back.matches(&meta(&[("a", v)])));
    }
}

// ---- semantics ------------------------------------------------------------------------------

#[test]
fn ne_and_nin_match_a_missing_field() {
    let none = Metadata::new();
    assert!(Filter::ne("lang", "en").matches(&none));
    assert!(Filter::nin("lang", ["en", "fr"]).matches(&none));
    assert!(!Filter::eq("lang", "en").matches(&none));
    assert!(!Filter::in_("lang", ["en"]).matches(&none));
    assert!(!Filter::gt("year", 0).matches(&none));
    assert!(Filter::not(Filter::gt("year", 0)).matches(&none));
    let en = meta(&[("lang", "en".into())]);
    assert!(!Filter::ne("lang", "en").matches(&en));
    assert!(Filter::ne("lang", "fr").matches(&en));
}

#[test]
fn list_fields_match_when_any_element_matches() {
    let m = meta(&[("tags", vec!["news", "sport"].into())]);
    assert!(Filter::eq("tags", "sport").matches(&m));
    assert!(Filter::in_("tags", ["art", "news"]).matches(&m));
    assert!(!Filter::eq("tags", "art").matches(&m));
    // `ne` is "no element equals" (not "some element differs").
    assert!(!Filter::ne("tags", "news").matches(&m));
    assert!(Filter::nin("tags", ["art"]).matches(&m));
    assert!(!Filter::nin("tags", ["art", "sport"]).matches(&m));
    assert!(!Filter::gt("tags", 0).matches(&m), "lists are not numbers");
    assert!(!Filter::eq("tags", "").matches(&meta(&[("tags", MetaValue::StrList(vec![]))])));
}

#[test]
fn integers_and_floats_compare_by_value() {
    let int3 = meta(&[("n", 3.into())]);
    let float3 = meta(&[("n", 3.0.into())]);
    assert!(Filter::eq("n", 3.0).matches(&int3));
    assert!(Filter::eq("n", 3).matches(&float3));
    assert!(Filter::in_("n", [FilterValue::from(2.5), 3.0.into()]).matches(&int3));
    assert!(Filter::gt("n", 2.5).matches(&int3));
    assert!(!Filter::gt("n", 3.0).matches(&int3));
    assert!(Filter::gte("n", 3.0).matches(&int3));
    assert!(Filter::lt("n", 3.5).matches(&int3));
    assert!(Filter::range("n", 2.9..=3.0).matches(&int3));
    // Exact beyond 2^53, where a cast to f64 would call different values equal.
    let big = (1i64 << 53) + 1;
    let m = meta(&[("n", big.into())]);
    assert!(!Filter::eq("n", (1u64 << 53) as f64).matches(&m));
    assert!(Filter::gt("n", (1u64 << 53) as f64).matches(&m));
    assert!(Filter::eq("n", big).matches(&m));
    let max = meta(&[("n", i64::MAX.into())]);
    assert!(Filter::lt("n", 9_223_372_036_854_775_808.0).matches(&max), "2^63 as f64 exceeds i64::MAX");
    assert_eq!(Number::Int(-1).cmp_value(Number::Float(-0.5)), Some(std::cmp::Ordering::Less));
    assert_eq!(Number::Int(-1).cmp_value(Number::Float(-1.5)), Some(std::cmp::Ordering::Greater));
}

#[test]
fn type_mismatches_never_match_and_never_fail() {
    let m = meta(&[("year", 2001.into()), ("lang", "en".into()), ("ok", true.into())]);
    assert!(!Filter::eq("year", "2001").matches(&m));
    assert!(!Filter::eq("lang", 1).matches(&m));
    assert!(!Filter::eq("ok", 1).matches(&m));
    assert!(!Filter::gt("lang", 0).matches(&m), "ranges are numeric only");
    assert!(!Filter::gte("ok", 0).matches(&m));
    assert!(Filter::ne("year", "2001").matches(&m), "ne is not eq");
    assert!(!Filter::eq("x", f64::NAN).matches(&meta(&[("x", f64::NAN.into())])));
    assert!(!Filter::range("x", f64::NAN..1.0).matches(&meta(&[("x", 0.5.into())])));
}

#[test]
fn empty_and_or_are_true_and_false() {
    let m = Metadata::new();
    assert!(Filter::and([]).matches(&m));
    assert!(!Filter::or([]).matches(&m));
}

// ---- field index ----------------------------------------------------------------------------

#[test]
fn field_index_answers_none_for_unindexed_fields_and_counts() {
    let mut idx = FieldIndex::new(["lang", "year"]);
    let metas = [
        meta(&[("lang", "en".into()), ("year", 1999.into())]),
        meta(&[("lang", "fr".into()), ("year", 2003.5.into())]),
        meta(&[("year", 2005.into()), ("colour", "red".into())]),
    ];
    for (i, m) in metas.iter().enumerate() {
        idx.insert(i as u32 * 100_000, m);
    }
    assert!(idx.matching(&Filter::eq("colour", "red")).is_none());
    assert!(idx.matching(&Filter::and([Filter::eq("lang", "en"), Filter::eq("colour", "red")])).is_none());
    assert!(idx.estimate(&Filter::eq("colour", "red")).is_none());
    let ne = idx.matching(&Filter::ne("lang", "en")).unwrap();
    assert_eq!(ne.iter().collect::<Vec<_>>(), [100_000, 200_000], "ne matches the node without `lang`");
    assert_eq!(idx.estimate(&Filter::range("year", 2000..2010)), Some(2.0 / 3.0));
    // An inverted range is empty (`BTreeMap::range` would panic on it; the index checks first).
    let inverted = Filter::range_bounds("year", Bound::Included(2010.into()), Bound::Excluded(2000.into()));
    assert_eq!(idx.estimate(&inverted), Some(0.0));
    assert!(idx.matching(&inverted).unwrap().is_empty());
    assert_eq!(idx.matching(&Filter::range("year", 5..5)).unwrap().len(), 0);
    assert_eq!(idx.matching(&Filter::range("year", 1999..=1999)).unwrap().len(), 1);
    idx.add_field("colour", metas.iter().enumerate().map(|(i, m)| (i as u32 * 100_000, m)));
    assert_eq!(idx.matching(&Filter::eq("colour", "red")).unwrap().len(), 1);
    assert!(idx.heap_bytes() > 0);
    for (i, m) in metas.iter().enumerate() {
        idx.remove(i as u32 * 100_000, m);
    }
    assert!(idx.is_empty());
    assert_eq!(idx.matching(&Filter::exists("lang")).unwrap().len(), 0);
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const STRS: [&str; 3] = ["x", "y", "z"];
const FLOATS: [f64; 6] = [-1.5, -0.0, 0.0, 2.0, 2.5, 3.0];

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&KEYS[..])
}

fn meta_value() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        prop::sample::select(&STRS[..]).prop_map(MetaValue::from),
        (-3i64..4).prop_map(MetaValue::Int),
        prop::sample::select(&FLOATS[..]).prop_map(MetaValue::Float),
        any::<bool>().prop_map(MetaValue::Bool),
        prop::collection::vec(prop::sample::select(&STRS[..]), 0..3).prop_map(MetaValue::from),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map(key().prop_map(str::to_owned), meta_value(), 0..4)
}

fn filter_value() -> impl Strategy<Value = FilterValue> {
    prop_oneof![
        prop::sample::select(&STRS[..]).prop_map(FilterValue::from),
        (-3i64..4).prop_map(FilterValue::Int),
        prop::sample::select(&FLOATS[..]).prop_map(FilterValue::Float),
        any::<bool>().prop_map(FilterValue::Bool),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![(-3i64..4).prop_map(Number::Int), prop::sample::select(&FLOATS[..]).prop_map(Number::Float)]
}

fn bound() -> impl Strategy<Value = Bound<Number>> {
    prop_oneof![
        number().prop_map(Bound::Included),
        number().prop_map(Bound::Excluded),
        Just(Bound::Unbounded)
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        (key(), filter_value()).prop_map(|(k, v)| Filter::eq(k, v)),
        (key(), filter_value()).prop_map(|(k, v)| Filter::ne(k, v)),
        (key(), prop::collection::vec(filter_value(), 0..3)).prop_map(|(k, v)| Filter::in_(k, v)),
        (key(), prop::collection::vec(filter_value(), 0..3)).prop_map(|(k, v)| Filter::nin(k, v)),
        (key(), bound(), bound()).prop_map(|(k, lo, hi)| Filter::range_bounds(k, lo, hi)),
        key().prop_map(Filter::exists),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(Filter::not),
        ]
    })
}

/// Node numbers spread over several roaring containers (each covers 65 536 numbers).
fn node(i: usize) -> u32 {
    i as u32 * 40_009
}

fn brute(filter: &Filter, nodes: &BTreeMap<u32, Metadata>) -> Vec<u32> {
    nodes.iter().filter(|(_, m)| filter.matches(m)).map(|(n, _)| *n).collect()
}

fn assert_index_agrees(idx: &FieldIndex, nodes: &BTreeMap<u32, Metadata>, filters: &[Filter]) {
    for f in filters {
        let want = brute(f, nodes);
        let got: Vec<u32> = idx.matching(f).expect("every field is indexed").iter().collect();
        assert_eq!(got, want, "filter {f}");
        let est = idx.estimate(f).unwrap();
        assert!((0.0..=1.0).contains(&est), "estimate {est} for {f}");
        if f.depth() == 0 && !nodes.is_empty() {
            let exact = want.len() as f64 / nodes.len() as f64;
            assert!((est - exact).abs() < 1e-9, "leaf estimate {est} vs {exact} for {f}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn field_index_matches_brute_force(
        metas in prop::collection::vec(metadata(), 0..40),
        filters in prop::collection::vec(filter(), 1..8),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        replacements in prop::collection::vec(metadata(), 0..10),
    ) {
        let mut idx = FieldIndex::new(KEYS);
        let mut nodes = BTreeMap::new();
        for (i, m) in metas.iter().enumerate() {
            idx.insert(node(i), m);
            nodes.insert(node(i), m.clone());
        }
        assert_index_agrees(&idx, &nodes, &filters);
        // Remove some nodes, and give some of them new metadata (an update).
        if !metas.is_empty() {
            for (j, at) in removals.iter().enumerate() {
                let n = node(at.index(metas.len()));
                if let Some(old) = nodes.remove(&n) {
                    idx.remove(n, &old);
                }
                if let Some(new) = replacements.get(j) {
                    idx.insert(n, new);
                    nodes.insert(n, new.clone());
                }
            }
        }
        prop_assert_eq!(idx.len(), nodes.len() as u64);
        assert_index_agrees(&idx, &nodes, &filters);
        // Removing everything leaves no stale postings.
        for (n, m) in &nodes {
            idx.remove(*n, m);
        }
        prop_assert!(idx.is_empty());
        for f in &filters {
            prop_assert!(idx.matching(f).unwrap().is_empty(), "stale postings for {}", f);
        }
    }

    #[test]
    fn display_parses_back_to_an_equivalent_filter(f in filter(), metas in prop::collection::vec(metadata(), 0..16)) {
        let text = f.to_string();
        match f.check() {
            Ok(()) => {
                let back: Filter = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
                for m in &metas {
                    prop_assert_eq!(back.matches(m), f.matches(m), "{}", text);
                }
                // The same filter, except a range open at both ends (see `display_is_the_json_form`).
                if !text.contains("-1.7976931348623157e308") {
                    prop_assert_eq!(back, f);
                }
            }
            // Only empty and/or are invalid here; the parser refuses what `check` refuses.
            Err(e) => {
                let empty = matches!(e.kind, FilterErrorKind::Empty { .. });
                prop_assert!(empty, "unexpected check error {}", e);
                prop_assert!(text.parse::<Filter>().is_err());
            }
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_json(v in arbitrary_json()) {
        if let Ok(f) = Filter::from_json(&v) {
            prop_assert!(f.check().is_ok(), "parsed but check fails: {}", f);
            prop_assert!(f.depth() <= MAX_DEPTH);
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "[{}\\[\\]\":,$a-z0-9 .-]{0,64}") {
        let _ = s.parse::<Filter>();
    }
}

/// JSON values biased towards the grammar's shapes: operator names, field names, small arrays.
fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let names = prop::sample::select(vec![
        "$and", "$or", "$not", "$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$x",
        "a", "b", "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// Figures for the RFC: `cargo test --release --test filter -- --ignored --nocapture figures`.
#[test]
#[ignore = "measurement, not a check"]
fn figures() {
    use std::time::Instant;
    let n = 200_000u32;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    let langs = ["en", "fr", "de", "es", "it"];
    let tags: Vec<String> = (0..20).map(|i| format!("tag{i}")).collect();
    let metas: Vec<Metadata> = (0..n)
        .map(|_| {
            let k = next(4) as usize;
            let t: Vec<String> = (0..k).map(|_| tags[next(20) as usize].clone()).collect();
            meta(&[
                ("lang", langs[next(5) as usize].into()),
                ("year", (1950 + next(75) as i64).into()),
                ("score", (next(1_000_000) as f64 / 1e6).into()),
                ("tags", t.into()),
                ("flag", (next(2) == 1).into()),
            ])
        })
        .collect();
    let mut bytes = Vec::new();
    let t = Instant::now();
    for m in &metas {
        hnsw_batch::metadata::encode(m, &mut bytes);
    }
    let enc = t.elapsed();
    let json: usize = metas.iter().map(|m| hnsw_batch::metadata::to_json(m).to_string().len()).sum();
    println!(
        "encode: {:.1} B/item (compact JSON {:.1} B/item), {:.0} ns/item",
        bytes.len() as f64 / n as f64,
        json as f64 / n as f64,
        enc.as_nanos() as f64 / n as f64
    );
    let one: Vec<Vec<u8>> = metas[..10_000]
        .iter()
        .map(|m| {
            let mut b = Vec::new();
            hnsw_batch::metadata::encode(m, &mut b);
            b
        })
        .collect();
    let t = Instant::now();
    for b in &one {
        std::hint::black_box(hnsw_batch::metadata::decode(b).unwrap());
    }
    println!("decode: {:.0} ns/item", t.elapsed().as_nanos() as f64 / one.len() as f64);

    let t = Instant::now();
    let mut idx = FieldIndex::new(["lang", "year", "score", "tags", "flag"]);
    for (i, m) in metas.iter().enumerate() {
        idx.insert(i as u32, m);
    }
    let build = t.elapsed();
    println!(
        "field index: {n} nodes, 5 fields: build {:.0} ms ({:.0} ns/node), heap_bytes {:.1} MB ({:.0} B/node)",
        build.as_secs_f64() * 1e3,
        build.as_nanos() as f64 / n as f64,
        idx.heap_bytes() as f64 / 1e6,
        idx.heap_bytes() as f64 / n as f64
    );
    for field in ["lang", "year", "score", "tags", "flag"] {
        let mut one = FieldIndex::new([field]);
        for (i, m) in metas.iter().enumerate() {
            one.insert(i as u32, m);
        }
        let mut base = FieldIndex::new(Vec::<String>::new());
        for i in 0..n {
            base.insert(i, &Metadata::new());
        }
        let universe = base.heap_bytes();
        println!("  {field:6} alone: {:.1} MB", (one.heap_bytes() - universe) as f64 / 1e6);
    }
    let filters = [
        ("lang = en", Filter::eq("lang", "en")),
        ("year in [2000,2010)", Filter::range("year", 2000..2010)),
        ("score < 0.001", Filter::lt("score", 0.001)),
        ("tags has tag3 and flag", Filter::and([Filter::eq("tags", "tag3"), Filter::eq("flag", true)])),
        (
            "not lang in [en,fr] or year >= 2020",
            Filter::or([Filter::nin("lang", ["en", "fr"]), Filter::gte("year", 2020)]),
        ),
    ];
    for (name, f) in &filters {
        let t = Instant::now();
        let bm = idx.matching(f).unwrap();
        let idx_time = t.elapsed();
        let t = Instant::now();
        let est = idx.estimate(f).unwrap();
        let est_time = t.elapsed();
        let t = Instant::now();
        let count = metas.iter().filter(|m| f.matches(m)).count();
        let brute_time = t.elapsed();
        assert_eq!(bm.len(), count as u64);
        println!(
            "{name:40} matches {:6} ({:.4}) est {:.4}  matching {:7.3} ms  estimate {:7.3} ms  per-node eval {:7.3} ms",
            count,
            count as f64 / n as f64,
            est,
            idx_time.as_secs_f64() * 1e3,
            est_time.as_secs_f64() * 1e3,
            brute_time.as_secs_f64() * 1e3
        );
    }
}
