//! Filters over [`Metadata`]: an AST with a Rust builder, a JSON parser in the query shape
//! document-store users know, and [`FieldIndex`] bitmaps that answer a filter without looking at
//! every vector.
//!
//! ```
//! use hnsw_batch::filter::Filter;
//! use hnsw_batch::metadata::{MetaValue, Metadata};
//!
//! let built = Filter::and([
//!     Filter::eq("lang", "en"),
//!     Filter::range("year", 2000..2010),
//!     Filter::in_("tag", ["news", "sport"]),
//! ]);
//! let parsed: Filter = r#"{"$and": [{"lang": "en"}, {"year": {"$gte": 2000, "$lt": 2010}},
//!                                    {"tag": {"$in": ["news", "sport"]}}]}"#.parse()?;
//! assert_eq!(built, parsed);
//!
//! let mut meta = Metadata::new();
//! meta.insert("lang".into(), "en".into());
//! meta.insert("year".into(), MetaValue::Float(2003.5));
//! meta.insert("tag".into(), MetaValue::from(vec!["sport", "local"]));
//! assert!(built.matches(&meta));
//! # Ok::<(), hnsw_batch::filter::FilterError>(())
//! ```
//!
//! # Semantics
//!
//! | filter | matches a vector whose field … | missing field |
//! | --- | --- | --- |
//! | `eq(k, v)` | equals `v`; a list when any element equals `v` | no |
//! | `ne(k, v)` | does not match `eq(k, v)` | **yes** (as MongoDB's `$ne`) |
//! | `in_(k, [..])` | matches `eq` for some value | no |
//! | `nin(k, [..])` | matches `eq` for none | **yes** |
//! | `gt`/`gte`/`lt`/`lte`/`range` | is a number within the bounds | no |
//! | `exists(k)` | is present, whatever its value | no |
//! | `and`/`or`/`not` | all / any / not | – |
//!
//! - Integers and floats compare by value, exactly: `eq("n", 3)` matches `3.0`, and
//!   `gt("n", 2.5)` matches `3`; no `i64` is rounded through `f64`.
//! - A value of another type never matches `eq`, `in_` or a range (`eq("year", "2001")` does not
//!   match the integer 2001) and is never an error when evaluating; `ne`/`nin`/`not` match it.
//! - Ranges are numeric only: a string, boolean or list field never matches a range.
//! - `and([])` matches everything and `or([])` nothing; the JSON parser refuses both, and
//!   [`Filter::check`] reports them.
//! - A NaN in a filter matches nothing ([`Filter::check`] reports it).

mod field_index;
mod parse;

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Bound, RangeBounds};

pub use field_index::FieldIndex;
pub use parse::{FilterError, FilterErrorKind};

use crate::metadata::{MetaValue, Metadata};

/// Deepest nesting of `$and`/`$or`/`$not` the parser accepts and [`Filter::check`] allows.
///
/// Evaluation recurses once per level, so the limit also bounds the stack a filter can use. A
/// filter built in Rust is code, not input: it is held to the limit by [`Filter::check`], but
/// one nested many thousands deep would exhaust the stack on its own (dropping it does too).
pub const MAX_DEPTH: usize = 32;

/// A number in a filter: integers stay integers so that comparisons with `i64` metadata are
/// exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// Compares two numbers by value, exactly (no `i64` is rounded to `f64`); `None` when
    /// either is NaN.
    ///
    /// ```
    /// use hnsw_batch::filter::Number;
    /// use std::cmp::Ordering;
    ///
    /// // 2^53 + 1 is not an f64; a cast would call these equal.
    /// let big = (1i64 << 53) + 1;
    /// assert_eq!(Number::Int(big).cmp_value(Number::Float((1u64 << 53) as f64)), Some(Ordering::Greater));
    /// assert_eq!(Number::Int(3).cmp_value(Number::Float(3.0)), Some(Ordering::Equal));
    /// ```
    pub fn cmp_value(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (Number::Float(a), Number::Float(b)) => a.partial_cmp(&b),
            (Number::Int(a), Number::Float(b)) => cmp_int_float(a, b),
            (Number::Float(a), Number::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }

    fn is_nan(self) -> bool {
        matches!(self, Number::Float(f) if f.is_nan())
    }

    /// The number of a metadata value, if it is one.
    fn of(value: &MetaValue) -> Option<Number> {
        match value {
            MetaValue::Int(i) => Some(Number::Int(*i)),
            MetaValue::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
}

/// `i` compared with `f`, exactly.
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^63 is exactly representable; every i64 is below it and at or above -2^63.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    // Here `f.trunc()` is in [-2^63, 2^63), so the cast is exact.
    let t = f.trunc();
    let ti = t as i64;
    Some(match i.cmp(&ti) {
        Ordering::Equal if f > t => Ordering::Less,
        Ordering::Equal if f < t => Ordering::Greater,
        other => other,
    })
}

macro_rules! number_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Number {
            fn from(v: $t) -> Self {
                Number::$v(v.into())
            }
        }
    )*};
}
number_from!(i64 => Int, i32 => Int, u32 => Int, f64 => Float, f32 => Float);

/// A value in an equality or membership filter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FilterValue {
    /// A string: matches a string field equal to it, or a list holding it.
    Str(String),
    /// An integer: matches a number field of the same value.
    Int(i64),
    /// A float: matches a number field of the same value.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for FilterValue {
    fn from(s: &str) -> Self {
        FilterValue::Str(s.to_owned())
    }
}
impl From<String> for FilterValue {
    fn from(s: String) -> Self {
        FilterValue::Str(s)
    }
}
impl From<&String> for FilterValue {
    fn from(s: &String) -> Self {
        FilterValue::Str(s.clone())
    }
}
impl From<bool> for FilterValue {
    fn from(b: bool) -> Self {
        FilterValue::Bool(b)
    }
}
impl From<Number> for FilterValue {
    fn from(n: Number) -> Self {
        match n {
            Number::Int(i) => FilterValue::Int(i),
            Number::Float(f) => FilterValue::Float(f),
        }
    }
}
macro_rules! filter_value_from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for FilterValue {
            fn from(v: $t) -> Self {
                Number::from(v).into()
            }
        }
    )*};
}
filter_value_from_number!(i64, i32, u32, f64, f32);

impl FilterValue {
    /// Whether a metadata value matches this value under `eq` (see the module's semantics).
    fn matches(&self, value: &MetaValue) -> bool {
        match (self, value) {
            (FilterValue::Str(a), MetaValue::Str(b)) => a == b,
            (FilterValue::Str(a), MetaValue::StrList(list)) => list.iter().any(|b| a == b),
            (FilterValue::Bool(a), MetaValue::Bool(b)) => a == b,
            (FilterValue::Int(_) | FilterValue::Float(_), _) => match (self.number(), Number::of(value)) {
                (Some(a), Some(b)) => a.cmp_value(b) == Some(Ordering::Equal),
                _ => false,
            },
            _ => false,
        }
    }

    fn number(&self) -> Option<Number> {
        match self {
            FilterValue::Int(i) => Some(Number::Int(*i)),
            FilterValue::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
}

/// A filter over one vector's [`Metadata`]; see the [module docs](self) for the semantics.
///
/// Build one with the associated functions ([`Filter::eq`], [`Filter::range`],
/// [`Filter::and`], …), parse one from JSON ([`Filter::from_json`], [`str::parse`]), evaluate it
/// with [`Filter::matches`]. `Display` writes the JSON form, which parses back to an equal
/// filter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Filter {
    /// The field equals the value (a list: holds it).
    Eq {
        /// Field name.
        key: String,
        /// Value.
        value: FilterValue,
    },
    /// Not [`Filter::Eq`]; matches when the field is missing.
    Ne {
        /// Field name.
        key: String,
        /// Value.
        value: FilterValue,
    },
    /// The field equals one of the values.
    In {
        /// Field name.
        key: String,
        /// Values.
        values: Vec<FilterValue>,
    },
    /// Not [`Filter::In`]; matches when the field is missing.
    Nin {
        /// Field name.
        key: String,
        /// Values.
        values: Vec<FilterValue>,
    },
    /// The field is a number within the bounds.
    Range {
        /// Field name.
        key: String,
        /// Lower bound.
        lower: Bound<Number>,
        /// Upper bound.
        upper: Bound<Number>,
    },
    /// The field is present.
    Exists {
        /// Field name.
        key: String,
    },
    /// Every filter matches (none: always true).
    And(Vec<Filter>),
    /// Some filter matches (none: always false).
    Or(Vec<Filter>),
    /// The filter does not match.
    Not(Box<Filter>),
}

impl Filter {
    /// `key == value`; a list field matches when any element equals `value`.
    pub fn eq(key: impl Into<String>, value: impl Into<FilterValue>) -> Filter {
        Filter::Eq { key: key.into(), value: value.into() }
    }

    /// `key != value`, also matching vectors without the field (as MongoDB's `$ne`).
    pub fn ne(key: impl Into<String>, value: impl Into<FilterValue>) -> Filter {
        Filter::Ne { key: key.into(), value: value.into() }
    }

    /// `key` equals one of `values`.
    pub fn in_<V: Into<FilterValue>>(key: impl Into<String>, values: impl IntoIterator<Item = V>) -> Filter {
        Filter::In { key: key.into(), values: values.into_iter().map(Into::into).collect() }
    }

    /// `key` equals none of `values` (or is missing).
    pub fn nin<V: Into<FilterValue>>(key: impl Into<String>, values: impl IntoIterator<Item = V>) -> Filter {
        Filter::Nin { key: key.into(), values: values.into_iter().map(Into::into).collect() }
    }

    /// `key > n`.
    pub fn gt(key: impl Into<String>, n: impl Into<Number>) -> Filter {
        Filter::range_bounds(key, Bound::Excluded(n.into()), Bound::Unbounded)
    }

    /// `key >= n`.
    pub fn gte(key: impl Into<String>, n: impl Into<Number>) -> Filter {
        Filter::range_bounds(key, Bound::Included(n.into()), Bound::Unbounded)
    }

    /// `key < n`.
    pub fn lt(key: impl Into<String>, n: impl Into<Number>) -> Filter {
        Filter::range_bounds(key, Bound::Unbounded, Bound::Excluded(n.into()))
    }

    /// `key <= n`.
    pub fn lte(key: impl Into<String>, n: impl Into<Number>) -> Filter {
        Filter::range_bounds(key, Bound::Unbounded, Bound::Included(n.into()))
    }

    /// `key` within a Rust range: `Filter::range("year", 2000..2010)`, `("t", 0.5..=1.0)`.
    pub fn range<N: Into<Number> + Clone>(key: impl Into<String>, range: impl RangeBounds<N>) -> Filter {
        let conv = |b: Bound<&N>| match b {
            Bound::Included(n) => Bound::Included(n.clone().into()),
            Bound::Excluded(n) => Bound::Excluded(n.clone().into()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Filter::range_bounds(key, conv(range.start_bound()), conv(range.end_bound()))
    }

    /// `key` within explicit bounds.
    pub fn range_bounds(key: impl Into<String>, lower: Bound<Number>, upper: Bound<Number>) -> Filter {
        Filter::Range { key: key.into(), lower, upper }
    }

    /// `key` is present, whatever its value.
    pub fn exists(key: impl Into<String>) -> Filter {
        Filter::Exists { key: key.into() }
    }

    /// All of `filters`.
    pub fn and(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(filters.into_iter().collect())
    }

    /// Any of `filters`.
    pub fn or(filters: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::Or(filters.into_iter().collect())
    }

    /// Not `filter`; `!filter` does the same.
    #[allow(clippy::should_implement_trait)] // it is implemented too; this reads better in builders
    pub fn not(filter: Filter) -> Filter {
        Filter::Not(Box::new(filter))
    }

    /// Whether `meta` matches. Never fails: a value of another type simply does not match.
    pub fn matches(&self, meta: &Metadata) -> bool {
        match self {
            Filter::Eq { key, value } => meta.get(key).is_some_and(|v| value.matches(v)),
            Filter::Ne { key, value } => !meta.get(key).is_some_and(|v| value.matches(v)),
            Filter::In { key, values } => meta.get(key).is_some_and(|v| values.iter().any(|x| x.matches(v))),
            Filter::Nin { key, values } => {
                !meta.get(key).is_some_and(|v| values.iter().any(|x| x.matches(v)))
            }
            Filter::Range { key, lower, upper } => {
                meta.get(key).and_then(Number::of).is_some_and(|n| in_bounds(n, lower, upper))
            }
            Filter::Exists { key } => meta.contains_key(key),
            Filter::And(fs) => fs.iter().all(|f| f.matches(meta)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(meta)),
            Filter::Not(f) => !f.matches(meta),
        }
    }

    /// Nesting depth in `and`/`or`/`not` levels (a leaf is 0).
    pub fn depth(&self) -> usize {
        match self {
            Filter::And(fs) | Filter::Or(fs) => 1 + fs.iter().map(Filter::depth).max().unwrap_or(0),
            Filter::Not(f) => 1 + f.depth(),
            _ => 0,
        }
    }

    /// Reports what the JSON parser would have refused in a filter built in Rust: nesting deeper
    /// than [`MAX_DEPTH`], an empty `and`/`or`, an empty field name or one starting with `$`, a
    /// NaN or infinite number. The index runs it before using a filter, so a filter built in
    /// code is held to the same rules as one sent as JSON.
    ///
    /// ```
    /// use hnsw_batch::filter::{Filter, FilterErrorKind};
    ///
    /// let f = Filter::and([Filter::eq("a", 1), Filter::or([])]);
    /// let err = f.check().unwrap_err();
    /// assert_eq!(err.path, "$and[1].$or");
    /// assert!(matches!(err.kind, FilterErrorKind::Empty { .. }));
    /// ```
    pub fn check(&self) -> Result<(), FilterError> {
        if self.depth() > MAX_DEPTH {
            return Err(FilterError::new(String::new(), FilterErrorKind::TooDeep { limit: MAX_DEPTH }));
        }
        self.check_at("")
    }

    fn check_at(&self, path: &str) -> Result<(), FilterError> {
        let field = |key: &str| -> Result<String, FilterError> {
            let at = parse::join(path, key);
            if key.is_empty() || key.starts_with('$') {
                return Err(FilterError::new(at, FilterErrorKind::BadFieldName { key: key.to_owned() }));
            }
            Ok(at)
        };
        let number = |at: &str, n: Number| match n {
            Number::Float(f) if !f.is_finite() => {
                Err(FilterError::new(at.to_owned(), FilterErrorKind::NonFinite { value: f }))
            }
            _ => Ok(()),
        };
        let value = |at: &str, v: &FilterValue| match v.number() {
            Some(n) => number(at, n),
            None => Ok(()),
        };
        match self {
            Filter::Eq { key, value: v } | Filter::Ne { key, value: v } => value(&field(key)?, v),
            Filter::In { key, values } | Filter::Nin { key, values } => {
                let at = field(key)?;
                values.iter().try_for_each(|v| value(&at, v))
            }
            Filter::Range { key, lower, upper } => {
                let at = field(key)?;
                for b in [lower, upper] {
                    if let Bound::Included(n) | Bound::Excluded(n) = b {
                        number(&at, *n)?;
                    }
                }
                Ok(())
            }
            Filter::Exists { key } => field(key).map(|_| ()),
            Filter::And(fs) | Filter::Or(fs) => {
                let op = if matches!(self, Filter::And(_)) { "$and" } else { "$or" };
                let at = parse::join(path, op);
                if fs.is_empty() {
                    return Err(FilterError::new(at, FilterErrorKind::Empty { op }));
                }
                fs.iter().enumerate().try_for_each(|(i, f)| f.check_at(&format!("{at}[{i}]")))
            }
            Filter::Not(f) => f.check_at(&parse::join(path, "$not")),
        }
    }
}

impl std::ops::Not for Filter {
    type Output = Filter;

    fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }
}

/// Whether `n` lies within the bounds; false when any of them is NaN.
fn in_bounds(n: Number, lower: &Bound<Number>, upper: &Bound<Number>) -> bool {
    let above = match lower {
        Bound::Included(b) => matches!(n.cmp_value(*b), Some(Ordering::Greater | Ordering::Equal)),
        Bound::Excluded(b) => n.cmp_value(*b) == Some(Ordering::Greater),
        Bound::Unbounded => !n.is_nan(),
    };
    let below = match upper {
        Bound::Included(b) => matches!(n.cmp_value(*b), Some(Ordering::Less | Ordering::Equal)),
        Bound::Excluded(b) => n.cmp_value(*b) == Some(Ordering::Less),
        Bound::Unbounded => !n.is_nan(),
    };
    above && below
}

/// Writes `s` as a JSON string literal.
fn write_json_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Number {
    /// JSON number syntax; a float keeps a `.0` or exponent so it parses back as a float, and a
    /// NaN or infinity (which [`Filter::check`] refuses) is written `null`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            // `{:?}` is the shortest text that reads back to the same f64, and always has a
            // `.` or an exponent (`3.0`, `1e300`), both valid JSON.
            Number::Float(x) if x.is_finite() => write!(f, "{x:?}"),
            Number::Float(_) => f.write_str("null"),
        }
    }
}

impl fmt::Display for FilterValue {
    /// The JSON literal of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterValue::Str(s) => write_json_str(f, s),
            FilterValue::Int(i) => Number::Int(*i).fmt(f),
            FilterValue::Float(x) => Number::Float(*x).fmt(f),
            FilterValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for Filter {
    /// The filter as JSON in the parser's grammar; parsing it gives an equal filter.
    ///
    /// ```
    /// use hnsw_batch::filter::Filter;
    ///
    /// let f = Filter::and([Filter::ne("lang", "en"), Filter::range("year", 2000..2010)]);
    /// assert_eq!(f.to_string(), r#"{"$and":[{"lang":{"$ne":"en"}},{"year":{"$gte":2000,"$lt":2010}}]}"#);
    /// assert_eq!(f.to_string().parse::<Filter>().unwrap(), f);
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = |f: &mut fmt::Formatter<'_>, key: &str| {
            f.write_str("{")?;
            write_json_str(f, key)?;
            f.write_str(":")
        };
        let list = |f: &mut fmt::Formatter<'_>, values: &[FilterValue]| {
            f.write_str("[")?;
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str("]")
        };
        match self {
            Filter::Eq { key, value } => {
                field(f, key)?;
                write!(f, "{value}}}")
            }
            Filter::Ne { key, value } => {
                field(f, key)?;
                write!(f, "{{\"$ne\":{value}}}}}")
            }
            Filter::In { key, values } | Filter::Nin { key, values } => {
                field(f, key)?;
                f.write_str(if matches!(self, Filter::In { .. }) { "{\"$in\":" } else { "{\"$nin\":" })?;
                list(f, values)?;
                f.write_str("}}")
            }
            Filter::Range { key, lower, upper } => {
                field(f, key)?;
                f.write_str("{")?;
                match lower {
                    Bound::Included(n) => write!(f, "\"$gte\":{n}")?,
                    Bound::Excluded(n) => write!(f, "\"$gt\":{n}")?,
                    // Every number is >= -f64::MAX (and every i64 is), so this stands for "no
                    // bound" in a grammar that has no empty condition.
                    Bound::Unbounded if matches!(upper, Bound::Unbounded) => {
                        write!(f, "\"$gte\":{:?}", f64::MIN)?
                    }
                    Bound::Unbounded => {}
                }
                if !matches!(lower, Bound::Unbounded) && !matches!(upper, Bound::Unbounded) {
                    f.write_str(",")?;
                }
                match upper {
                    Bound::Included(n) => write!(f, "\"$lte\":{n}")?,
                    Bound::Excluded(n) => write!(f, "\"$lt\":{n}")?,
                    Bound::Unbounded => {}
                }
                f.write_str("}}")
            }
            Filter::Exists { key } => {
                field(f, key)?;
                f.write_str("{\"$exists\":true}}")
            }
            Filter::And(fs) | Filter::Or(fs) => {
                f.write_str(if matches!(self, Filter::And(_)) { "{\"$and\":[" } else { "{\"$or\":[" })?;
                for (i, sub) in fs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{sub}")?;
                }
                f.write_str("]}")
            }
            Filter::Not(sub) => write!(f, "{{\"$not\":{sub}}}"),
        }
    }
}
