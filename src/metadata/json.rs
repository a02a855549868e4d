//! JSON form of [`Metadata`]: one object, values strings, numbers, booleans or arrays of strings.

use serde_json::{Map, Number, Value};

use super::{MetaError, MetaLimits, MetaValue, Metadata};

/// The JSON type of `v` in words, for error messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl MetaLimits {
    /// Reads metadata from a JSON object and checks it against these limits.
    ///
    /// Strings, booleans and arrays of strings map to their [`MetaValue`]; a number written
    /// without a fraction or exponent that fits an `i64` is an integer, any other number a float
    /// (`2.0` is a float); `null` values are skipped, as in JSON Lines files; objects and arrays
    /// of anything but strings are [`MetaError::Unsupported`].
    pub fn from_json(&self, value: &Value) -> Result<Metadata, MetaError> {
        let Value::Object(map) = value else {
            return Err(MetaError::NotAnObject { found: json_type(value) });
        };
        let mut meta = Metadata::new();
        for (key, v) in map {
            let value = match v {
                Value::Null => continue,
                Value::Bool(b) => MetaValue::Bool(*b),
                Value::String(s) => MetaValue::Str(s.clone()),
                Value::Number(n) => number(key, n)?,
                Value::Array(items) => {
                    // Refuse an over-long list before copying it.
                    if items.len() > self.max_list_len {
                        let limit = self.max_list_len;
                        return Err(MetaError::ListTooLong { key: key.clone(), len: items.len(), limit });
                    }
                    let mut list = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::String(s) => list.push(s.clone()),
                            other => {
                                let found = match other {
                                    Value::Array(_) => "array of arrays",
                                    Value::Object(_) => "array of objects",
                                    Value::Number(_) => "array of numbers",
                                    Value::Bool(_) => "array of booleans",
                                    _ => "array with nulls",
                                };
                                return Err(MetaError::Unsupported { key: key.clone(), found });
                            }
                        }
                    }
                    MetaValue::StrList(list)
                }
                Value::Object(_) => return Err(MetaError::Unsupported { key: key.clone(), found: "object" }),
            };
            meta.insert(key.clone(), value);
        }
        self.check(&meta)?;
        Ok(meta)
    }
}

fn number(key: &str, n: &Number) -> Result<MetaValue, MetaError> {
    if let Some(i) = n.as_i64() {
        return Ok(MetaValue::Int(i));
    }
    if n.is_u64() {
        // An integer above i64::MAX: as an f64 it would silently change value.
        return Err(MetaError::IntOutOfRange { key: key.to_owned(), value: n.to_string() });
    }
    match n.as_f64() {
        Some(f) => Ok(MetaValue::Float(f)),
        None => Err(MetaError::Unsupported { key: key.to_owned(), found: "number" }),
    }
}

/// Reads metadata from a JSON object with [`MetaLimits::default`]; see [`MetaLimits::from_json`].
///
/// ```
/// use hnsw_batch::metadata::{from_json, to_json, MetaValue};
///
/// let json = serde_json::json!({"lang": "en", "year": 2001, "score": 0.5, "tags": ["a", "b"]});
/// let meta = from_json(&json)?;
/// assert_eq!(meta["year"], MetaValue::Int(2001));
/// assert_eq!(to_json(&meta), json);
/// # Ok::<(), hnsw_batch::metadata::MetaError>(())
/// ```
pub fn from_json(value: &Value) -> Result<Metadata, MetaError> {
    MetaLimits::default().from_json(value)
}

/// The JSON object of `meta`. A NaN or infinity (which [`MetaLimits::check`] refuses) has no
/// JSON form and becomes `null`.
pub fn to_json(meta: &Metadata) -> Value {
    let mut map = Map::new();
    for (key, value) in meta {
        let v = match value {
            MetaValue::Str(s) => Value::String(s.clone()),
            MetaValue::Int(i) => Value::Number((*i).into()),
            MetaValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            MetaValue::Bool(b) => Value::Bool(*b),
            MetaValue::StrList(list) => Value::Array(list.iter().cloned().map(Value::String).collect()),
        };
        map.insert(key.clone(), v);
    }
    Value::Object(map)
}
