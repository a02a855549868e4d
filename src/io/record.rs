//! [`Record`]: one vector with its id and metadata, as read from text formats,
//! and helpers shared by the text readers.

use super::error::{FormatError, Result, RowError};
use super::MAX_DIM;
use crate::metadata::Metadata;

/// One vector with its id, metadata and expiry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The external id.
    pub id: u64,
    /// The components.
    pub vector: Vec<f32>,
    /// Per-vector metadata.
    pub metadata: Metadata,
    /// When it expires, in unix milliseconds (`None`: never). JSON Lines carry it in the
    /// `expires_field` of `JsonlOptions`, CSV in the
    /// [`expires_column`](super::CsvOptions::expires_column).
    pub expires_at: Option<u64>,
}

/// Drains `rows`, keeping good records and row errors, and fails with
/// [`FormatError::TooManyErrors`] as soon as more than `max_errors` rows failed.
///
/// A fatal row error ([`RowError::is_fatal`], an I/O failure) is returned at once
/// as its [`FormatError`]; it is not counted as a bad row.
pub fn collect_with_max_errors<T, I>(
    rows: I,
    max_errors: usize,
) -> Result<(Vec<T>, Vec<RowError>), FormatError>
where
    I: IntoIterator<Item = Result<T, RowError>>,
{
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        match row {
            Ok(r) => good.push(r),
            Err(e) if e.is_fatal() => return Err(e.error),
            Err(e) => {
                bad.push(e);
                if bad.len() > max_errors {
                    return Err(FormatError::TooManyErrors { max_errors, errors: bad });
                }
            }
        }
    }
    Ok((good, bad))
}

/// Parses an expiry time in unix milliseconds (a non-negative integer) read from `field` on
/// `line`.
pub(crate) fn parse_expiry(raw: &str, line: usize, field: &str) -> Result<u64> {
    let t = raw.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FormatError::parse(
            line,
            Some(field),
            format!("`{t}` is not a time in unix milliseconds (a non-negative integer)"),
        ));
    }
    t.parse().map_err(|_| FormatError::parse(line, Some(field), format!("`{t}` does not fit a u64")))
}

/// Tracks the dimension of a text stream's vectors: fixed up front, or set by
/// the first good row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DimCheck {
    dim: Option<usize>,
}

impl DimCheck {
    pub(crate) fn new(expected: Option<usize>) -> Self {
        DimCheck { dim: expected }
    }

    /// Checks a fully parsed, finite vector; the first good row fixes the dimension.
    pub(crate) fn check(&mut self, record: u64, len: usize) -> Result<()> {
        if len == 0 || len > MAX_DIM {
            return Err(FormatError::bad_dim(record, len));
        }
        match self.dim {
            Some(expected) if expected != len => {
                Err(FormatError::DimensionMismatch { record, expected, got: len })
            }
            Some(_) => Ok(()),
            None => {
                self.dim = Some(len);
                Ok(())
            }
        }
    }
}

/// Parses one vector component written as decimal text, directly to the nearest
/// `f32` (no detour through `f64`, so printed `f32` values read back exactly).
pub(crate) fn parse_component(
    text: &str,
    record: u64,
    component: usize,
    line: usize,
    field: &str,
) -> Result<f32> {
    let t = text.trim();
    let value: f32 = t.parse().map_err(|_| {
        FormatError::parse(line, Some(field), format!("component {component}: `{t}` is not a number"))
    })?;
    if !value.is_finite() {
        return Err(FormatError::NonFinite { record, component, value });
    }
    Ok(value)
}

/// Parses an id written as decimal text.
pub(crate) fn parse_id(text: &str, line: usize, field: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FormatError::parse(line, Some(field), format!("id `{t}` is not a non-negative integer")));
    }
    digits.parse().map_err(|_| FormatError::parse(line, Some(field), format!("id `{t}` does not fit a u64")))
}

/// Validates a record before it is written: dimension (via `dims`), finite
/// components and finite metadata floats (text formats cannot store NaN or
/// infinities).
pub(crate) fn check_for_write(record: u64, r: &Record, dims: &mut DimCheck) -> Result<()> {
    for (component, &value) in r.vector.iter().enumerate() {
        if !value.is_finite() {
            return Err(FormatError::NonFinite { record, component, value });
        }
    }
    dims.check(record, r.vector.len())?;
    for (key, value) in &r.metadata {
        if let crate::metadata::MetaValue::Float(v) = value {
            if !v.is_finite() {
                return Err(FormatError::invalid(
                    "metadata",
                    format!("record {record}: key `{key}` holds {v}, which text formats cannot store"),
                ));
            }
        }
    }
    Ok(())
}
