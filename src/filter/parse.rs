//! The JSON filter grammar, in the shape document-store users know.
//!
//! ```text
//! filter    := { clause, … }                      (at least one; several mean "and")
//! clause    := "$and": [filter, …]  |  "$or": [filter, …]     (at least one)
//!            | "$not": filter
//!            | field: scalar                      (equality)
//!            | field: { op, … }                   (at least one; several mean "and")
//! op        := "$eq"|"$ne": scalar  |  "$in"|"$nin": [scalar, …]
//!            | "$gt"|"$gte"|"$lt"|"$lte": number  |  "$exists": bool  |  "$not": { op, … }
//! scalar    := string | number | bool
//! ```
//!
//! `$gt`/`$gte` and `$lt`/`$lte` on one field fuse into one [`Filter::Range`]. Field names may
//! not be empty or start with `$`. Every error names the path to the offending value, e.g.
//! `$and[1].year.$gte: expected a number, found string`.

use std::ops::Bound;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::{Filter, FilterValue, Number, MAX_DEPTH};
use crate::metadata::json_type;

/// A filter the parser (or [`Filter::check`]) refused, with the path to the offending value.
///
/// The path joins object keys with `.` and array positions as `[i]`; it is empty for the whole
/// filter, which `Display` writes as `filter`.
///
/// ```
/// use hnsw_batch::filter::{Filter, FilterErrorKind};
///
/// let err = r#"{"$and": [{"lang": "en"}, {"year": {"$gte": "2000"}}]}"#.parse::<Filter>().unwrap_err();
/// assert_eq!(err.path, "$and[1].year.$gte");
/// assert_eq!(err.to_string(), "$and[1].year.$gte: expected a number, found string");
/// assert!(matches!(err.kind, FilterErrorKind::WrongType { expected: "a number", found: "string" }));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {kind}", if .path.is_empty() { "filter" } else { .path.as_str() })]
#[non_exhaustive]
pub struct FilterError {
    /// Where: keys joined by `.`, array positions as `[i]`; empty for the whole filter.
    pub path: String,
    /// What.
    pub kind: FilterErrorKind,
}

impl FilterError {
    pub(crate) fn new(path: String, kind: FilterErrorKind) -> Self {
        FilterError { path, kind }
    }
}

/// What was wrong, inside a [`FilterError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterErrorKind {
    /// The text is not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// A value of the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the grammar wants there (`a number`, `an array`, …).
        expected: &'static str,
        /// The JSON type found (`string`, `object`, …).
        found: &'static str,
    },
    /// A `$`-name that is not an operator, or one not allowed where it stands.
    #[error("unknown operator `{op}`")]
    UnknownOperator {
        /// The name as written.
        op: String,
    },
    /// An empty `$and`/`$or`, or an empty object where conditions are needed.
    #[error("`{op}` needs at least one condition")]
    Empty {
        /// `$and`, `$or`, `filter` (an empty top-level object) or `condition` (`{"k": {}}`).
        op: &'static str,
    },
    /// An object of plain keys as a field's value: nested documents are not supported.
    #[error(
        "nested documents are not supported; compare the field with an operator such as $eq, $in or $gt"
    )]
    NestedDocument,
    /// `null` as a value: metadata has no nulls.
    #[error("null matches nothing; use {{\"$exists\": false}} for a missing field")]
    Null,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("filter nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// An empty field name, or one starting with `$` (in a filter built in Rust).
    #[error("invalid field name `{key}`: names must be non-empty and not start with `$`")]
    BadFieldName {
        /// The name.
        key: String,
    },
    /// A NaN or infinite number (in a filter built in Rust; JSON cannot write one).
    #[error("{value} is not a finite number")]
    NonFinite {
        /// The number.
        value: f64,
    },
}

/// Keys longer than this are cut (with `…`) in error paths, so an error about a huge key stays
/// small.
const PATH_KEY_MAX: usize = 64;

/// `path` extended by an object key.
pub(crate) fn join(path: &str, key: &str) -> String {
    let mut end = key.len().min(PATH_KEY_MAX);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < key.len() { "…" } else { "" };
    let key = &key[..end];
    if path.is_empty() {
        format!("{key}{cut}")
    } else {
        format!("{path}.{key}{cut}")
    }
}

fn wrong(path: String, expected: &'static str, v: &Value) -> FilterError {
    FilterError::new(path, FilterErrorKind::WrongType { expected, found: json_type(v) })
}

impl Filter {
    /// Parses a filter from a JSON value; see the grammar below and the
    /// [semantics](crate::filter#semantics).
    ///
    /// ```text
    /// {"lang": "en"}   {"year": {"$gte": 2000, "$lt": 2010}}   {"tag": {"$in": ["a", "b"]}}
    /// {"lang": {"$ne": "en"}}   {"tag": {"$exists": true}}   {"$or": [{..}, {..}]}   {"$not": {..}}
    /// ```
    ///
    /// Also `$eq`, `$gt`, `$lte`, `$nin`, and `$not` inside a field's condition; several keys in
    /// one object mean "and". Nesting is limited to [`MAX_DEPTH`] levels.
    ///
    /// ```
    /// use hnsw_batch::filter::Filter;
    ///
    /// let json = serde_json::json!({"lang": "en", "year": {"$gte": 2000, "$lt": 2010}});
    /// let f = Filter::from_json(&json)?;
    /// assert_eq!(f, Filter::and([Filter::eq("lang", "en"), Filter::range("year", 2000..2010)]));
    /// # Ok::<(), hnsw_batch::filter::FilterError>(())
    /// ```
    pub fn from_json(value: &Value) -> Result<Filter, FilterError> {
        parse_doc(value, "", 0)
    }

    /// Parses a filter from JSON text; a syntax error is [`FilterErrorKind::Syntax`].
    pub fn from_json_str(text: &str) -> Result<Filter, FilterError> {
        // serde_json refuses nesting deeper than 128 on its own, so this cannot overflow the
        // stack before `parse_doc` applies the tighter MAX_DEPTH.
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let kind = FilterErrorKind::Syntax { line: e.line(), column: e.column(), message: e.to_string() };
            FilterError::new(String::new(), kind)
        })?;
        Filter::from_json(&value)
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    /// Same as [`Filter::from_json_str`].
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::from_json_str(s)
    }
}

/// One clause, or the "and" of several.
fn conjunction(mut clauses: Vec<Filter>) -> Filter {
    if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        Filter::And(clauses)
    }
}

/// `depth` is the number of `$and`/`$or`/`$not` levels above `v`.
fn parse_doc(v: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
    let Value::Object(map) = v else {
        return Err(wrong(path.to_owned(), "an object", v));
    };
    if map.is_empty() {
        return Err(FilterError::new(path.to_owned(), FilterErrorKind::Empty { op: "filter" }));
    }
    let mut clauses = Vec::with_capacity(map.len());
    for (key, value) in map {
        let at = join(path, key);
        let clause = match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(wrong(at, "an array", value));
                };
                let op = if key == "$and" { "$and" } else { "$or" };
                if items.is_empty() {
                    return Err(FilterError::new(at, FilterErrorKind::Empty { op }));
                }
                let inner = deeper(depth, &at)?;
                let subs = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_doc(item, &format!("{at}[{i}]"), inner))
                    .collect::<Result<Vec<_>, _>>()?;
                if op == "$and" {
                    Filter::And(subs)
                } else {
                    Filter::Or(subs)
                }
            }
            "$not" => Filter::not(parse_doc(value, &at, deeper(depth, &at)?)?),
            k if k.starts_with('$') => {
                return Err(FilterError::new(at, FilterErrorKind::UnknownOperator { op: key.clone() }))
            }
            "" => return Err(FilterError::new(at, FilterErrorKind::BadFieldName { key: String::new() })),
            _ => parse_field(key, value, &at, depth)?,
        };
        clauses.push(clause);
    }
    Ok(conjunction(clauses))
}

/// The depth one level further down, or an error past [`MAX_DEPTH`].
fn deeper(depth: usize, at: &str) -> Result<usize, FilterError> {
    if depth >= MAX_DEPTH {
        return Err(FilterError::new(at.to_owned(), FilterErrorKind::TooDeep { limit: MAX_DEPTH }));
    }
    Ok(depth + 1)
}

/// The condition on one field: a scalar (equality) or an object of operators.
fn parse_field(key: &str, v: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
    match v {
        Value::Object(ops) => parse_ops(key, ops, path, depth),
        Value::Null => Err(FilterError::new(path.to_owned(), FilterErrorKind::Null)),
        _ => Ok(Filter::Eq { key: key.to_owned(), value: scalar(v, path)? }),
    }
}

fn parse_ops(key: &str, ops: &Map<String, Value>, path: &str, depth: usize) -> Result<Filter, FilterError> {
    if ops.is_empty() {
        return Err(FilterError::new(path.to_owned(), FilterErrorKind::Empty { op: "condition" }));
    }
    if ops.keys().any(|k| !k.starts_with('$')) {
        return Err(FilterError::new(path.to_owned(), FilterErrorKind::NestedDocument));
    }
    let key_s = || key.to_owned();
    let mut clauses = Vec::new();
    // Range bounds gather here and become one Range clause; a second bound on the same side
    // (`$gt` with `$gte`) gets a Range clause of its own.
    let (mut lower, mut upper) = (Bound::Unbounded, Bound::Unbounded);
    for (op, value) in ops {
        let at = join(path, op);
        match op.as_str() {
            "$eq" => clauses.push(Filter::Eq { key: key_s(), value: scalar(value, &at)? }),
            "$ne" => clauses.push(Filter::Ne { key: key_s(), value: scalar(value, &at)? }),
            "$in" | "$nin" => {
                let Value::Array(items) = value else {
                    return Err(wrong(at, "an array", value));
                };
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| scalar(item, &format!("{at}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                clauses.push(if op == "$in" {
                    Filter::In { key: key_s(), values }
                } else {
                    Filter::Nin { key: key_s(), values }
                });
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let n = number(value, &at)?;
                let (slot, bound) = match op.as_str() {
                    "$gt" => (&mut lower, Bound::Excluded(n)),
                    "$gte" => (&mut lower, Bound::Included(n)),
                    "$lt" => (&mut upper, Bound::Excluded(n)),
                    _ => (&mut upper, Bound::Included(n)),
                };
                if matches!(slot, Bound::Unbounded) {
                    *slot = bound;
                } else if op.starts_with("$g") {
                    clauses.push(Filter::range_bounds(key, bound, Bound::Unbounded));
                } else {
                    clauses.push(Filter::range_bounds(key, Bound::Unbounded, bound));
                }
            }
            "$exists" => match value {
                Value::Bool(true) => clauses.push(Filter::exists(key)),
                Value::Bool(false) => clauses.push(Filter::not(Filter::exists(key))),
                other => return Err(wrong(at, "a boolean", other)),
            },
            "$not" => {
                let inner = deeper(depth, &at)?;
                match value {
                    Value::Object(sub) => clauses.push(Filter::not(parse_ops(key, sub, &at, inner)?)),
                    other => return Err(wrong(at, "an object of operators", other)),
                }
            }
            _ => return Err(FilterError::new(at, FilterErrorKind::UnknownOperator { op: op.clone() })),
        }
    }
    if !matches!((&lower, &upper), (Bound::Unbounded, Bound::Unbounded)) {
        // The fused range goes first so `{"$gte": a, "$lt": b}` reads back as one Range.
        clauses.insert(0, Filter::Range { key: key_s(), lower, upper });
    }
    Ok(conjunction(clauses))
}

fn scalar(v: &Value, path: &str) -> Result<FilterValue, FilterError> {
    match v {
        Value::String(s) => Ok(FilterValue::Str(s.clone())),
        Value::Bool(b) => Ok(FilterValue::Bool(*b)),
        Value::Number(_) => number(v, path).map(FilterValue::from),
        Value::Null => Err(FilterError::new(path.to_owned(), FilterErrorKind::Null)),
        _ => Err(wrong(path.to_owned(), "a string, number or boolean", v)),
    }
}

fn number(v: &Value, path: &str) -> Result<Number, FilterError> {
    let Value::Number(n) = v else {
        return Err(wrong(path.to_owned(), "a number", v));
    };
    if let Some(i) = n.as_i64() {
        return Ok(Number::Int(i));
    }
    // An integer above i64::MAX becomes the nearest f64 (as in JavaScript); every i64 is below
    // it either way.
    match n.as_f64() {
        Some(f) => Ok(Number::Float(f)),
        None => Err(wrong(path.to_owned(), "a number", v)),
    }
}
