//! JSON Lines import and export of [`Record`]s (feature `formats`).
//!
//! One JSON object per line, e.g.
//! `{"id": 7, "vector": [0.1, 0.2], "metadata": {"color": "red", "n": 3}}`.
//!
//! * The id is a non-negative integer (or a string of digits). A missing (or
//!   `null`) id is an error unless [`JsonlOptions::auto_id`] is set, in which
//!   case the row's 0-based index (counting non-blank lines) is used.
//! * The vector is an array of numbers, parsed straight to the nearest `f32`.
//! * The metadata field is optional; it must be an object whose values are
//!   strings, booleans, integers (fitting `i64`), other numbers (as `f64`) or
//!   arrays of strings; `null` values are skipped; other arrays and nested objects
//!   are rejected.
//! * The expiry field (`expires_at`) is optional: unix milliseconds, a non-negative
//!   integer; `null` or absent means the record never expires.
//! * Other fields are ignored; blank lines are skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;

use super::error::{FormatError, Result, RowError};
use super::record::{check_for_write, parse_component, parse_expiry, parse_id, DimCheck, Record};
use super::util::{self, float_text, write_err, Line};
use crate::metadata::{MetaValue, Metadata};

/// Field names and limits of [`JsonlReader`] and [`write_jsonl_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlOptions {
    /// Key of the id (default `id`).
    pub id_field: String,
    /// Key of the vector (default `vector`).
    pub vector_field: String,
    /// Key of the metadata object (default `metadata`).
    pub metadata_field: String,
    /// Key of the expiry time, unix milliseconds (default `expires_at`).
    pub expires_field: String,
    /// Use the row index as id when a row has none (default: missing ids are errors).
    pub auto_id: bool,
    /// Required vector dimension; by default the first good row's.
    pub expected_dim: Option<usize>,
    /// Longest accepted line in bytes (default 64 MiB).
    pub max_line_bytes: usize,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        JsonlOptions {
            id_field: "id".into(),
            vector_field: "vector".into(),
            metadata_field: "metadata".into(),
            expires_field: "expires_at".into(),
            auto_id: false,
            expected_dim: None,
            max_line_bytes: 64 << 20,
        }
    }
}

impl JsonlOptions {
    fn validate(&self) -> Result<()> {
        let f = [&self.id_field, &self.vector_field, &self.metadata_field, &self.expires_field];
        if (0..f.len()).any(|i| f[i + 1..].contains(&f[i])) {
            return Err(FormatError::invalid(
                "fields",
                "id, vector, metadata and expiry fields must have distinct names",
            ));
        }
        Ok(())
    }
}

/// Streaming JSON Lines reader yielding one [`Record`] per non-blank line.
///
/// Each item is either a record or a [`RowError`] carrying its line number; a
/// bad line does not stop the iteration, except a fatal error
/// ([`RowError::is_fatal`]), after which the iterator ends.
#[derive(Debug)]
pub struct JsonlReader<R> {
    inner: R,
    opts: JsonlOptions,
    dims: DimCheck,
    line: usize,
    record: u64,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads JSON Lines from `reader`.
    pub fn new(reader: R, options: JsonlOptions) -> Result<Self> {
        options.validate()?;
        Ok(JsonlReader {
            inner: reader,
            dims: DimCheck::new(options.expected_dim),
            opts: options,
            line: 0,
            record: 0,
            path: None,
            buf: Vec::new(),
            done: false,
        })
    }

    fn parse_line(&mut self, text: &str, line: usize, record: u64) -> Result<Record> {
        let o = &self.opts;
        let map: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(|e| FormatError::Parse {
            line,
            column: Some(e.column()),
            field: None,
            reason: json_reason(&e),
        })?;
        let present = |k: &str| map.get(k).map(|r| r.get()).filter(|t| *t != "null");
        let id = match present(&o.id_field) {
            Some(t) => {
                let t = match t.strip_prefix('"') {
                    Some(_) => serde_json::from_str::<String>(t)
                        .map_err(|e| FormatError::parse(line, Some(&o.id_field), json_reason(&e)))?,
                    None => t.to_owned(),
                };
                parse_id(&t, line, &o.id_field)?
            }
            None if o.auto_id => record,
            None => return Err(FormatError::MissingField { line, field: o.id_field.clone() }),
        };
        let metadata = match present(&o.metadata_field) {
            Some(t) => parse_metadata(t, line, &o.metadata_field)?,
            None => Metadata::new(),
        };
        let expires_at = match present(&o.expires_field) {
            Some(t) => Some(parse_expiry(t, line, &o.expires_field)?),
            None => None,
        };
        let raw = present(&o.vector_field)
            .ok_or_else(|| FormatError::MissingField { line, field: o.vector_field.clone() })?;
        let vector = parse_vector(raw, record, line, &o.vector_field)?;
        self.dims.check(record, vector.len())?;
        Ok(Record { id, vector, metadata, expires_at })
    }
}

/// Parses an expiry time: a JSON integer, unix milliseconds.
impl JsonlReader<BufReader<File>> {
    /// Opens a JSON Lines file.
    pub fn open(path: impl AsRef<Path>, options: JsonlOptions) -> Result<Self> {
        let path = path.as_ref();
        let (file, _) = util::open_with_len(path)?;
        let mut r = JsonlReader::new(file, options)?;
        r.path = Some(path.to_path_buf());
        Ok(r)
    }
}

/// What serde_json found wrong, without its position: serde_json counts lines and columns in
/// the text it was given (one line, or one value inside it), which is not the file's position;
/// the error carries the file's line (and, for a whole line, the column) itself.
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(reason) => reason.to_owned(),
        None => text,
    }
}

/// Parses a JSON array of numbers (already known to be valid JSON).
fn parse_vector(raw: &str, record: u64, line: usize, field: &str) -> Result<Vec<f32>> {
    let inner = raw
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| FormatError::parse(line, Some(field), "expected an array of numbers"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    // Valid JSON: a token starting with a digit or '-' is a number; anything else
    // (string, array, object, literal) is rejected before a split could misread it.
    inner
        .split(',')
        .enumerate()
        .map(|(c, tok)| {
            let t = tok.trim();
            if t.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-') {
                parse_component(t, record, c, line, field)
            } else {
                Err(FormatError::parse(line, Some(field), format!("component {c} is not a number")))
            }
        })
        .collect()
}

/// Parses the metadata object (already known to be valid JSON).
fn parse_metadata(raw: &str, line: usize, field: &str) -> Result<Metadata> {
    let err = |reason: String| FormatError::parse(line, Some(field), reason);
    let map: HashMap<String, &RawValue> =
        serde_json::from_str(raw).map_err(|e| err(format!("expected an object: {}", json_reason(&e))))?;
    let mut out = Metadata::new();
    for (key, value) in map {
        let t = value.get();
        let v = match t.as_bytes().first() {
            Some(b'n') => continue,
            Some(b't') => MetaValue::Bool(true),
            Some(b'f') => MetaValue::Bool(false),
            Some(b'"') => MetaValue::Str(
                serde_json::from_str::<String>(t)
                    .map_err(|e| err(format!("key `{key}`: {}", json_reason(&e))))?,
            ),
            Some(b'-' | b'0'..=b'9') if t.contains(['.', 'e', 'E']) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => MetaValue::Float(f),
                _ => return Err(err(format!("key `{key}`: {t} is out of the f64 range"))),
            },
            Some(b'-' | b'0'..=b'9') => MetaValue::Int(
                t.parse::<i64>().map_err(|_| err(format!("key `{key}`: {t} does not fit an i64")))?,
            ),
            Some(b'[') => MetaValue::StrList(serde_json::from_str::<Vec<String>>(t).map_err(|_| {
                err(format!(
                    "key `{key}`: arrays must hold only strings (a list of strings is the only list value)"
                ))
            })?),
            _ => return Err(err(format!("key `{key}`: objects are not supported metadata values"))),
        };
        out.insert(key, v);
    }
    Ok(out)
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Record, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            let line = self.line + 1;
            let status = util::read_line_capped(&mut self.inner, &mut self.buf, self.opts.max_line_bytes);
            let fail = |error| Some(Err(RowError { line, error }));
            match status {
                Err(e) => {
                    self.done = true;
                    return fail(FormatError::io("reading", self.path.as_deref(), e));
                }
                Ok(Line::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(Line::TooLong) => {
                    self.line = line;
                    self.record += 1;
                    let limit = self.opts.max_line_bytes;
                    return fail(FormatError::LineTooLong { line, limit });
                }
                Ok(Line::Read) => self.line = line,
            }
            let text = match util::utf8_line(std::mem::take(&mut self.buf), line) {
                Ok(t) => t,
                Err(e) => {
                    self.record += 1;
                    return fail(e);
                }
            };
            let mut body = util::trim_eol(&text);
            if line == 1 {
                body = body.strip_prefix('\u{feff}').unwrap_or(body);
            }
            if body.trim().is_empty() {
                continue;
            }
            let record = self.record;
            self.record += 1;
            return Some(self.parse_line(body, line, record).map_err(|error| RowError { line, error }));
        }
    }
}

fn json_str(s: &str) -> Result<String> {
    serde_json::to_string(s).map_err(|e| FormatError::invalid("records", e.to_string()))
}

/// Writes `records` as JSON Lines using the field names of `options`; returns
/// the number of records written. Empty metadata and a missing expiry are left out.
///
/// Each record is validated before it is written (same dimension for every
/// vector, finite components and metadata floats); vector components are printed
/// in the shortest form that reads back to the same `f32`.
pub fn write_jsonl_to<'a, W, I>(mut writer: W, records: I, options: &JsonlOptions) -> Result<usize>
where
    W: Write,
    I: IntoIterator<Item = &'a Record>,
{
    options.validate()?;
    let id_key = json_str(&options.id_field)?;
    let vec_key = json_str(&options.vector_field)?;
    let meta_key = json_str(&options.metadata_field)?;
    let expires_key = json_str(&options.expires_field)?;
    let mut dims = DimCheck::new(options.expected_dim);
    let mut out = String::new();
    let mut count = 0usize;
    for r in records {
        check_for_write(count as u64, r, &mut dims)?;
        out.clear();
        let comps: Vec<String> = r.vector.iter().map(f32::to_string).collect();
        out.push_str(&format!("{{{id_key}:{},{vec_key}:[{}]", r.id, comps.join(",")));
        if !r.metadata.is_empty() {
            let mut entries = Vec::with_capacity(r.metadata.len());
            for (k, v) in &r.metadata {
                let value = match v {
                    MetaValue::Str(s) => json_str(s)?,
                    MetaValue::Int(i) => i.to_string(),
                    MetaValue::Float(f) => float_text(*f),
                    MetaValue::Bool(b) => b.to_string(),
                    MetaValue::StrList(list) => {
                        let items = list.iter().map(|s| json_str(s)).collect::<Result<Vec<_>>>()?;
                        format!("[{}]", items.join(","))
                    }
                };
                entries.push(format!("{}:{value}", json_str(k)?));
            }
            out.push_str(&format!(",{meta_key}:{{{}}}", entries.join(",")));
        }
        if let Some(t) = r.expires_at {
            out.push_str(&format!(",{expires_key}:{t}"));
        }
        out.push_str("}\n");
        writer.write_all(out.as_bytes()).map_err(write_err)?;
        count += 1;
    }
    writer.flush().map_err(write_err)?;
    Ok(count)
}

/// Creates (or truncates) `path` and writes `records` to it; see [`write_jsonl_to`].
pub fn write_jsonl<'a, I>(path: impl AsRef<Path>, records: I, options: &JsonlOptions) -> Result<usize>
where
    I: IntoIterator<Item = &'a Record>,
{
    let path = path.as_ref();
    let mut w = util::create(path)?;
    let n = write_jsonl_to(&mut w, records, options).map_err(|e| util::with_path(e, path))?;
    util::finish(w, path)?;
    Ok(n)
}
