//! Per-vector metadata: a small typed key/value map that [filters](crate::filter) are evaluated
//! against.
//!
//! - **Values** ([`MetaValue`]): a string, an `i64`, a finite `f64`, a boolean, or a list of
//!   strings (tags). Nothing nests deeper than that list: filters stay a flat `key op value`
//!   language and every value has one binary and one JSON form.
//! - **Map** ([`Metadata`]): keys in sorted order, so equal maps encode to equal bytes.
//! - **Limits** ([`MetaLimits`]): bytes per item, key length and list length, checked where
//!   metadata enters the index; every refusal is a typed [`MetaError`] naming the limit.
//! - **Binary form** ([`encode`], [`decode`]): compact and canonical, for snapshots and the log.
//! - **JSON** ([`from_json`], [`to_json`]): the shape JSON Lines files and filter users know.
//!
//! ```
//! use hnsw_batch::metadata::{self, MetaLimits, MetaValue, Metadata};
//!
//! let mut meta = Metadata::new();
//! meta.insert("lang".into(), "en".into());
//! meta.insert("year".into(), 2001.into());
//! meta.insert("tags".into(), MetaValue::from(vec!["news", "sport"]));
//! MetaLimits::default().check(&meta)?;
//!
//! let mut bytes = Vec::new();
//! metadata::encode(&meta, &mut bytes);
//! assert_eq!(metadata::decode(&bytes)?, meta);
//! # Ok::<(), hnsw_batch::metadata::MetaError>(())
//! ```

mod codec;
mod json;

use std::collections::BTreeMap;

pub use codec::{decode, encode, encoded_len, DecodeErrorKind};
pub(crate) use json::json_type;
pub use json::{from_json, to_json};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MetaValue {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// A floating-point number; [`MetaLimits::check`] refuses NaN and infinities.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list of strings (tags). Filters `eq` and `in` match it when any element matches.
    StrList(Vec<String>),
}

impl MetaValue {
    /// The value's type in words, for error messages: `string`, `integer`, `number`,
    /// `boolean` or `list of strings`.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::Str(_) => "string",
            MetaValue::Int(_) => "integer",
            MetaValue::Float(_) => "number",
            MetaValue::Bool(_) => "boolean",
            MetaValue::StrList(_) => "list of strings",
        }
    }
}

/// Metadata of one vector: keys in sorted order, so equal maps serialise identically.
pub type Metadata = BTreeMap<String, MetaValue>;

impl From<&str> for MetaValue {
    fn from(s: &str) -> Self {
        MetaValue::Str(s.to_owned())
    }
}
impl From<String> for MetaValue {
    fn from(s: String) -> Self {
        MetaValue::Str(s)
    }
}
impl From<i64> for MetaValue {
    fn from(v: i64) -> Self {
        MetaValue::Int(v)
    }
}
// An integer literal defaults to `i32`, so `meta.insert(k, 2001.into())` needs this one.
impl From<i32> for MetaValue {
    fn from(v: i32) -> Self {
        MetaValue::Int(v.into())
    }
}
impl From<u32> for MetaValue {
    fn from(v: u32) -> Self {
        MetaValue::Int(v.into())
    }
}
impl From<f64> for MetaValue {
    fn from(v: f64) -> Self {
        MetaValue::Float(v)
    }
}
impl From<bool> for MetaValue {
    fn from(v: bool) -> Self {
        MetaValue::Bool(v)
    }
}
impl From<Vec<String>> for MetaValue {
    fn from(v: Vec<String>) -> Self {
        MetaValue::StrList(v)
    }
}
impl From<Vec<&str>> for MetaValue {
    fn from(v: Vec<&str>) -> Self {
        MetaValue::StrList(v.into_iter().map(str::to_owned).collect())
    }
}

/// Default [`MetaLimits::max_bytes`]: 64 KiB of encoded metadata per vector.
pub const DEFAULT_MAX_BYTES: usize = 64 << 10;
/// Default [`MetaLimits::max_key_len`]: 256 bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 256;
/// Default [`MetaLimits::max_list_len`]: 1024 strings.
pub const DEFAULT_MAX_LIST_LEN: usize = 1024;

/// Size limits on one vector's metadata, checked where metadata enters the index.
///
/// The limits keep one item's metadata from dominating a snapshot, a log record or a field
/// index; they are not needed for safety ([`decode`] is bounded by its input either way).
///
/// ```
/// use hnsw_batch::metadata::{MetaError, MetaLimits, Metadata};
///
/// let limits = MetaLimits::default().max_key_len(4);
/// let mut meta = Metadata::new();
/// meta.insert("colour".into(), "red".into());
/// assert!(matches!(limits.check(&meta), Err(MetaError::KeyTooLong { len: 6, limit: 4, .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetaLimits {
    /// Most bytes of the [`encode`]d map (default [`DEFAULT_MAX_BYTES`]).
    pub max_bytes: usize,
    /// Longest key in bytes (default [`DEFAULT_MAX_KEY_LEN`]).
    pub max_key_len: usize,
    /// Most strings in one list value (default [`DEFAULT_MAX_LIST_LEN`]).
    pub max_list_len: usize,
}

impl Default for MetaLimits {
    fn default() -> Self {
        MetaLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_list_len: DEFAULT_MAX_LIST_LEN,
        }
    }
}

/// Keys longer than this are cut to this many bytes (at a character boundary) inside errors, so
/// an error about a huge key stays small.
const KEY_PREVIEW: usize = 64;

fn preview(key: &str) -> String {
    let mut end = key.len().min(KEY_PREVIEW);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_owned()
}

impl MetaLimits {
    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`max_key_len`](Self::max_key_len).
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.max_key_len = len;
        self
    }

    /// Sets [`max_list_len`](Self::max_list_len).
    pub fn max_list_len(mut self, len: usize) -> Self {
        self.max_list_len = len;
        self
    }

    /// Checks `meta` against these limits and the value rules: keys are non-empty and do not
    /// start with `$` (filters reserve it for operators), floats are finite.
    ///
    /// Errors are checked key by key in key order, the total size last.
    pub fn check(&self, meta: &Metadata) -> Result<(), MetaError> {
        for (key, value) in meta {
            if key.is_empty() {
                return Err(MetaError::EmptyKey);
            }
            if key.starts_with('$') {
                return Err(MetaError::ReservedKey { key: preview(key) });
            }
            if key.len() > self.max_key_len {
                return Err(MetaError::KeyTooLong {
                    key_prefix: preview(key),
                    len: key.len(),
                    limit: self.max_key_len,
                });
            }
            match value {
                MetaValue::Float(f) if !f.is_finite() => {
                    return Err(MetaError::NonFinite { key: key.clone(), value: *f })
                }
                MetaValue::StrList(list) if list.len() > self.max_list_len => {
                    return Err(MetaError::ListTooLong {
                        key: key.clone(),
                        len: list.len(),
                        limit: self.max_list_len,
                    })
                }
                _ => {}
            }
        }
        let bytes = encoded_len(meta);
        if bytes > self.max_bytes {
            return Err(MetaError::TooLarge { bytes, limit: self.max_bytes });
        }
        Ok(())
    }
}

/// Checks `meta` against [`MetaLimits::default`]; see [`MetaLimits::check`].
pub fn validate(meta: &Metadata) -> Result<(), MetaError> {
    MetaLimits::default().check(meta)
}

/// Why metadata was refused: a limit, a value rule, a JSON shape, or corrupt bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A key is the empty string.
    #[error("metadata key is empty")]
    EmptyKey,
    /// A key starts with `$`, which filters reserve for operators (`$and`, `$gte`, …).
    #[error("metadata key `{key}` starts with `$`, which filters reserve for operators")]
    ReservedKey {
        /// The key (its first 64 bytes at most).
        key: String,
    },
    /// A key is longer than [`MetaLimits::max_key_len`].
    #[error("metadata key `{key_prefix}…` of {len} bytes exceeds max_key_len {limit}")]
    KeyTooLong {
        /// The key's first 64 bytes at most.
        key_prefix: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A list holds more strings than [`MetaLimits::max_list_len`].
    #[error("metadata `{key}`: list of {len} strings exceeds max_list_len {limit}")]
    ListTooLong {
        /// The key.
        key: String,
        /// Strings in the list.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The encoded map is larger than [`MetaLimits::max_bytes`].
    #[error("metadata of {bytes} encoded bytes exceeds max_bytes {limit}")]
    TooLarge {
        /// Its encoded size ([`encoded_len`]).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A float is NaN or infinite.
    #[error("metadata `{key}`: {value} is not a finite number")]
    NonFinite {
        /// The key.
        key: String,
        /// The value.
        value: f64,
    },
    /// A JSON value has no metadata form: an object, or an array holding anything but strings.
    #[error("metadata `{key}`: {found} is not a metadata value (strings, integers, finite numbers, booleans and lists of strings are)")]
    Unsupported {
        /// The key.
        key: String,
        /// What was found, in words (`object`, `array of numbers`, …).
        found: &'static str,
    },
    /// A JSON integer does not fit an `i64` (and would lose precision as an `f64`).
    #[error("metadata `{key}`: {value} does not fit an i64")]
    IntOutOfRange {
        /// The key.
        key: String,
        /// The number as written.
        value: String,
    },
    /// The JSON value given as metadata is not an object.
    #[error("metadata must be a JSON object, found {found}")]
    NotAnObject {
        /// What was found (`array`, `string`, …).
        found: &'static str,
    },
    /// [`decode`] met bytes that no [`encode`] call writes.
    #[error("metadata bytes are corrupt at offset {offset}: {kind}")]
    Corrupt {
        /// Offset of the first byte that could not be read.
        offset: usize,
        /// What was wrong there.
        kind: DecodeErrorKind,
    },
}
