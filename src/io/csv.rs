//! CSV import of [`Record`]s (RFC 4180 quoting, header row required).
//!
//! * The header row names the columns; names must be unique.
//! * Fields may be quoted with `"`; inside quotes the delimiter, line breaks and
//!   doubled quotes (`""` for one `"`) are literal. A quote inside an unquoted
//!   field, or anything but a delimiter after a closing quote, is an error.
//! * Blank lines are skipped; `\n` and `\r\n` line ends are accepted, and a
//!   UTF-8 byte-order mark before the header is ignored.
//! * The vector is either one column of numbers joined by a separator (default
//!   `vector`, separated by `;`; an enclosing `[...]` is allowed) or one column
//!   per component (`v0, v1, ...` by prefix, or an explicit list).
//! * An expiry column (default `expires_at`, [`CsvOptions::expires_column`]), when
//!   the header has one, holds each row's expiry time in unix milliseconds (a
//!   non-negative integer; an empty field: never expires). It is not metadata.
//! * All other columns (or the ones listed) are metadata. A **quoted** field is
//!   always a string; an unquoted one is typed by parsing: `true`/`false`
//!   (any case) → bool, integer → int, finite number → float, anything else →
//!   string. An empty unquoted field means "no value" and the key is left out.
//!
//! Writing: [`write_csv`](crate::io::write_csv).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::error::{FormatError, Result, RowError};
use super::record::{parse_component, parse_expiry, parse_id, DimCheck, Record};
use super::util::{self, Line};
use crate::metadata::MetaValue;

/// Where the vector of a CSV row is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorColumns {
    /// One column holding all components joined by `separator`. A whitespace
    /// separator matches any run of whitespace.
    Single {
        /// Name of the column.
        column: String,
        /// Separator between components.
        separator: char,
    },
    /// One column per component, named `prefix` followed by the 0-based
    /// component index (`v0`, `v1`, ...).
    Prefix(String),
    /// One column per component, in this order.
    List(Vec<String>),
}

impl Default for VectorColumns {
    fn default() -> Self {
        VectorColumns::Single { column: "vector".into(), separator: ';' }
    }
}

/// Options of [`CsvReader`] and of the CSV writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field delimiter (default `,`): an ASCII character other than `"`, `\r` and `\n`.
    pub delimiter: char,
    /// Name of the id column (default `id`).
    pub id_column: String,
    /// When set, a row without id (no id column, or an empty id field) gets its
    /// 0-based data-row index as id; otherwise a missing id is an error.
    pub auto_id: bool,
    /// Where the vector is stored.
    pub vector: VectorColumns,
    /// Metadata columns to read (or write); `None` means all other columns
    /// (or, when writing, every key present in the records).
    pub metadata_columns: Option<Vec<String>>,
    /// Name of the expiry column (default `expires_at`): read when the header has
    /// such a column (an unsigned integer of unix milliseconds, or empty for
    /// none; anything else is a bad row naming the line and the column), and
    /// written when some record has an expiry. `None`: no expiry column, and a
    /// column of that name is ordinary metadata.
    pub expires_column: Option<String>,
    /// Required vector dimension; by default the first good row's.
    pub expected_dim: Option<usize>,
    /// Longest accepted record in bytes (default 64 MiB).
    pub max_record_bytes: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            id_column: "id".into(),
            auto_id: false,
            vector: VectorColumns::default(),
            metadata_columns: None,
            expires_column: Some("expires_at".into()),
            expected_dim: None,
            max_record_bytes: 64 << 20,
        }
    }
}

impl CsvOptions {
    /// Checks the option values that do not depend on the data.
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.delimiter.is_ascii() || matches!(self.delimiter, '"' | '\r' | '\n') {
            return Err(FormatError::invalid(
                "delimiter",
                format!("{:?} cannot be a delimiter", self.delimiter),
            ));
        }
        if let VectorColumns::Single { separator, column } = &self.vector {
            if *column == self.id_column {
                return Err(FormatError::invalid(
                    "vector",
                    format!("column `{column}` cannot hold both the id and the vector"),
                ));
            }
            if matches!(separator, '"' | '\r' | '\n' | '.' | '-' | '+' | 'e' | 'E' | '[' | ']')
                || separator.is_ascii_alphanumeric()
            {
                return Err(FormatError::invalid(
                    "separator",
                    format!("{separator:?} cannot separate numbers"),
                ));
            }
        }
        Ok(())
    }
}

/// One parsed CSV field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The field's text: borrowed from the record unless a doubled quote had to be undone.
    pub text: Cow<'a, str>,
    pub quoted: bool,
}

/// Splits one record (without its line end) into fields.
///
/// Unquoted fields, nearly all of a numeric file, are slices of `text` found by a byte search
/// (the delimiter and `"` are ASCII, so every match is a character boundary): no copy and no
/// allocation per field, which is what made a 385-column row slow to split character by
/// character. Columns in errors are 1-based characters, as before.
pub(crate) fn split_fields(text: &str, delim: char, line: usize) -> Result<Vec<Field<'_>>> {
    let err = |col: usize, reason: &str| FormatError::Parse {
        line,
        column: Some(col),
        field: None,
        reason: reason.into(),
    };
    // Validated to be ASCII.
    let d = u8::try_from(delim).unwrap_or(b',');
    let bytes = text.as_bytes();
    if !bytes.contains(&b'"') {
        // No quote, so no error and no escape. Many short fields (a column per component): one
        // pass over the bytes, since `str::split` pays `memchr`'s start-up per field. A few long
        // ones (a joined vector): `str::split`, whose `memchr` then outruns a byte loop. Rows of
        // a file share a layout, so the first 64 bytes tell which this is.
        fn borrowed(f: &str) -> Field<'_> {
            Field { text: Cow::Borrowed(f), quoted: false }
        }
        let short_fields = bytes.iter().take(64).filter(|&&b| b == d).count() >= 2;
        if !short_fields {
            return Ok(text.split(delim).map(borrowed).collect());
        }
        let mut fields = Vec::new();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if b == d {
                fields.push(borrowed(text.get(start..i).unwrap_or_default()));
                start = i + 1;
            }
        }
        fields.push(borrowed(text.get(start..).unwrap_or_default()));
        return Ok(fields);
    }
    let ascii = text.is_ascii();
    let width = |s: &str| if ascii { s.len() } else { s.chars().count() };
    let mut fields = Vec::new();
    let mut rest = text;
    let mut col = 1usize;
    loop {
        if let Some(body) = rest.strip_prefix('"') {
            let start = col;
            col += 1;
            let mut owned: Option<String> = None;
            let mut chars = body.char_indices().peekable();
            let end = loop {
                match chars.next() {
                    None => return Err(err(start, "unterminated quoted field")),
                    Some((i, '"')) if matches!(chars.peek(), Some((_, '"'))) => {
                        chars.next();
                        col += 2;
                        // The first doubled quote: from here the text differs from the input.
                        let s = owned.get_or_insert_with(|| body.get(..i).unwrap_or_default().to_owned());
                        s.push('"');
                    }
                    Some((i, '"')) => {
                        col += 1;
                        break i;
                    }
                    Some((_, c)) => {
                        col += 1;
                        if let Some(s) = owned.as_mut() {
                            s.push(c);
                        }
                    }
                }
            };
            let text = match owned {
                Some(s) => Cow::Owned(s),
                None => Cow::Borrowed(body.get(..end).unwrap_or_default()),
            };
            fields.push(Field { text, quoted: true });
            let after = body.get(end + 1..).unwrap_or_default();
            match after.as_bytes().first() {
                None => return Ok(fields),
                Some(&b) if b == d => {
                    col += 1;
                    rest = after.get(1..).unwrap_or_default();
                }
                Some(_) => return Err(err(col, "unexpected character after closing quote")),
            }
        } else {
            let bytes = rest.as_bytes();
            match bytes.iter().position(|&b| b == d || b == b'"') {
                None => {
                    fields.push(Field { text: Cow::Borrowed(rest), quoted: false });
                    return Ok(fields);
                }
                Some(i) => {
                    let field = rest.get(..i).unwrap_or_default();
                    if bytes.get(i) == Some(&b'"') {
                        return Err(err(col + width(field), "quote inside an unquoted field"));
                    }
                    col += width(field) + 1;
                    fields.push(Field { text: Cow::Borrowed(field), quoted: false });
                    rest = rest.get(i + 1..).unwrap_or_default();
                }
            }
        }
    }
}

/// Types an unquoted metadata field; `None` for an empty one.
pub(crate) fn infer_value(f: &Field) -> Option<MetaValue> {
    let t: &str = &f.text;
    if f.quoted {
        return Some(MetaValue::Str(t.to_owned()));
    }
    if t.is_empty() {
        return None;
    }
    if t.eq_ignore_ascii_case("true") {
        return Some(MetaValue::Bool(true));
    }
    if t.eq_ignore_ascii_case("false") {
        return Some(MetaValue::Bool(false));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(MetaValue::Int(i));
    }
    let looks_numeric = t.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match t.parse::<f64>() {
        Ok(v) if looks_numeric && v.is_finite() => Some(MetaValue::Float(v)),
        _ => Some(MetaValue::Str(t.to_owned())),
    }
}

/// Tracks whether a record continues on the next line (a quoted field is open),
/// following the same rules as [`split_fields`]: a quote opens a quoted field
/// only at the start of a field.
struct QuoteScan {
    delim: u8,
    in_quotes: bool,
    field_start: bool,
    just_closed: bool,
}

impl QuoteScan {
    fn new(delim: char) -> Self {
        QuoteScan {
            // Validated to be ASCII.
            delim: u8::try_from(delim).unwrap_or(b','),
            in_quotes: false,
            field_start: true,
            just_closed: false,
        }
    }

    /// Feeds one physical line; returns whether a quoted field is still open.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        // The common line holds no quote at all: only its last byte matters then.
        if !self.in_quotes && !bytes.contains(&b'"') {
            if let Some(&last) = bytes.last() {
                self.field_start = last == self.delim;
                self.just_closed = false;
            }
            return false;
        }
        for &b in bytes {
            if self.in_quotes {
                if b == b'"' {
                    self.in_quotes = false;
                    self.just_closed = true;
                }
                continue;
            }
            if b == b'"' && (self.field_start || self.just_closed) {
                // Opens a field, or is the second half of a doubled quote.
                self.in_quotes = true;
            }
            self.field_start = b == self.delim;
            self.just_closed = false;
        }
        self.in_quotes
    }
}

#[derive(Debug)]
enum Layout {
    Single { idx: usize, name: String, sep: char },
    Columns(Vec<(usize, String)>),
}

/// Streaming CSV reader yielding one [`Record`] per data row.
///
/// Each item is either a record or a [`RowError`] carrying the line where the
/// row starts; a bad row does not stop the iteration, except a fatal one
/// ([`RowError::is_fatal`]), after which the iterator ends.
#[derive(Debug)]
pub struct CsvReader<R> {
    inner: R,
    delim: char,
    max_bytes: usize,
    auto_id: bool,
    id: Option<(usize, String)>,
    layout: Layout,
    meta: Vec<(usize, String)>,
    expires: Option<(usize, String)>,
    columns: usize,
    line: usize,
    record: u64,
    dims: DimCheck,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    done: bool,
}

impl CsvReader<BufReader<File>> {
    /// Opens a CSV file and reads its header.
    pub fn open(path: impl AsRef<Path>, options: CsvOptions) -> Result<Self> {
        let path = path.as_ref();
        let (file, _) = util::open_with_len(path)?;
        let mut r = CsvReader::new(file, options).map_err(|e| util::with_path(e, path))?;
        r.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: BufRead> CsvReader<R> {
    /// Reads the header row from `reader` and resolves the columns named by `options`.
    pub fn new(reader: R, options: CsvOptions) -> Result<Self> {
        options.validate()?;
        let mut r = CsvReader {
            inner: reader,
            delim: options.delimiter,
            max_bytes: options.max_record_bytes,
            auto_id: options.auto_id,
            id: None,
            layout: Layout::Columns(Vec::new()),
            meta: Vec::new(),
            expires: None,
            columns: 0,
            line: 0,
            record: 0,
            dims: DimCheck::new(options.expected_dim),
            path: None,
            buf: Vec::new(),
            done: false,
        };
        let (line, header) = match r.next_record() {
            None => return Err(FormatError::parse(1, None, "missing CSV header row (empty input)")),
            Some((_, Err(e))) => return Err(e),
            Some((line, Ok(h))) => (line, h),
        };
        let names: Vec<String> =
            split_fields(&header, r.delim, line)?.into_iter().map(|f| f.text.into_owned()).collect();
        r.resolve(&names, &options, line)?;
        r.columns = names.len();
        Ok(r)
    }

    fn resolve(&mut self, names: &[String], o: &CsvOptions, line: usize) -> Result<()> {
        for (i, n) in names.iter().enumerate() {
            if names.iter().take(i).any(|m| m == n) {
                return Err(FormatError::parse(line, Some(n), "duplicate column name"));
            }
        }
        let find = |name: &str| names.iter().position(|n| n == name);
        let missing =
            |name: &str| FormatError::MissingColumn { column: name.to_owned(), found: names.to_vec() };
        self.id = match find(&o.id_column) {
            Some(i) => Some((i, o.id_column.clone())),
            None if o.auto_id => None,
            None => return Err(missing(&o.id_column)),
        };
        let mut used: Vec<usize> = self.id.iter().map(|(i, _)| *i).collect();
        self.layout = match &o.vector {
            VectorColumns::Single { column, separator } => {
                let idx = find(column).ok_or_else(|| missing(column))?;
                used.push(idx);
                Layout::Single { idx, name: column.clone(), sep: *separator }
            }
            VectorColumns::List(list) => {
                let cols = list
                    .iter()
                    .map(|c| find(c).map(|i| (i, c.clone())).ok_or_else(|| missing(c)))
                    .collect::<Result<Vec<_>>>()?;
                used.extend(cols.iter().map(|(i, _)| *i));
                Layout::Columns(cols)
            }
            VectorColumns::Prefix(prefix) => {
                let cols = prefix_columns(names, prefix)?;
                used.extend(cols.iter().map(|(i, _)| *i));
                Layout::Columns(cols)
            }
        };
        self.expires = o.expires_column.as_ref().and_then(|c| find(c).map(|i| (i, c.clone())));
        if let Some((i, c)) = &self.expires {
            if used.contains(i) {
                return Err(FormatError::invalid(
                    "expires_column",
                    format!("column `{c}` already holds the id or the vector"),
                ));
            }
            used.push(*i);
        }
        if let Layout::Columns(cols) = &self.layout {
            if let Some(expected) = o.expected_dim {
                if cols.len() != expected {
                    return Err(FormatError::DimensionMismatch { record: 0, expected, got: cols.len() });
                }
            }
        }
        self.meta = match &o.metadata_columns {
            None => names
                .iter()
                .enumerate()
                .filter(|(i, _)| !used.contains(i))
                .map(|(i, n)| (i, n.clone()))
                .collect(),
            Some(list) => list
                .iter()
                .map(|c| match find(c) {
                    Some(i) if used.contains(&i) => Err(FormatError::invalid(
                        "metadata_columns",
                        format!("column `{c}` already holds the id, the vector or the expiry time"),
                    )),
                    Some(i) => Ok((i, c.clone())),
                    None => Err(missing(c)),
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(())
    }

    /// Reads the next non-blank record: the line it starts on and its text, without the line
    /// end (nor, on line 1, a byte-order mark). The caller hands the text's buffer back to
    /// `self.buf` when done with it, so every row reuses one allocation.
    fn next_record(&mut self) -> Option<(usize, Result<String>)> {
        loop {
            self.buf.clear();
            let start = self.line + 1;
            let mut scan = QuoteScan::new(self.delim);
            loop {
                let seen = self.buf.len();
                let room = self.max_bytes.saturating_sub(seen);
                match util::read_line_capped(&mut self.inner, &mut self.buf, room) {
                    Err(e) => {
                        self.done = true;
                        let e = FormatError::io("reading", self.path.as_deref(), e);
                        return Some((start, Err(e)));
                    }
                    Ok(Line::Eof) if seen == 0 => return None,
                    Ok(Line::Eof) => break,
                    Ok(Line::TooLong) => {
                        self.line += 1;
                        let limit = self.max_bytes;
                        return Some((start, Err(FormatError::LineTooLong { line: start, limit })));
                    }
                    Ok(Line::Read) => {
                        self.line += 1;
                        if !scan.feed(self.buf.get(seen..).unwrap_or_default()) {
                            break;
                        }
                    }
                }
            }
            let mut text = match util::utf8_line(std::mem::take(&mut self.buf), start) {
                Ok(t) => t,
                Err(e) => return Some((start, Err(e))),
            };
            text.truncate(util::trim_eol(&text).len());
            if start == 1 && text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            if text.is_empty() {
                self.buf = text.into_bytes();
                continue;
            }
            return Some((start, Ok(text)));
        }
    }

    fn parse_row(&mut self, line: usize, fields: Vec<Field<'_>>, record: u64) -> Result<Record> {
        if fields.len() != self.columns {
            return Err(FormatError::parse(
                line,
                None,
                format!("expected {} fields, found {}", self.columns, fields.len()),
            ));
        }
        let text = |i: usize| fields.get(i).map_or("", |f| &*f.text);
        let id = match &self.id {
            Some((i, name)) if !text(*i).trim().is_empty() => parse_id(text(*i), line, name)?,
            Some((_, name)) if !self.auto_id => {
                return Err(FormatError::MissingField { line, field: name.clone() })
            }
            _ => record,
        };
        let mut metadata = crate::metadata::Metadata::new();
        for (i, name) in &self.meta {
            if let Some(v) = fields.get(*i).and_then(infer_value) {
                metadata.insert(name.clone(), v);
            }
        }
        let vector = match &self.layout {
            Layout::Single { idx, name, sep } => {
                let t = text(*idx).trim();
                let t = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(t);
                if t.trim().is_empty() {
                    return Err(FormatError::MissingField { line, field: name.clone() });
                }
                let parts: Vec<&str> = if sep.is_whitespace() {
                    t.split_whitespace().collect()
                } else {
                    t.split(*sep).collect()
                };
                parts
                    .iter()
                    .enumerate()
                    .map(|(c, p)| parse_component(p, record, c, line, name))
                    .collect::<Result<Vec<f32>>>()?
            }
            Layout::Columns(cols) => cols
                .iter()
                .enumerate()
                .map(|(c, (i, name))| parse_component(text(*i), record, c, line, name))
                .collect::<Result<Vec<f32>>>()?,
        };
        let expires_at = match &self.expires {
            Some((i, name)) if !text(*i).trim().is_empty() => Some(parse_expiry(text(*i), line, name)?),
            _ => None,
        };
        self.dims.check(record, vector.len())?;
        Ok(Record { id, vector, metadata, expires_at })
    }
}

/// Finds the columns `prefix0, prefix1, ...`; they must be numbered 0..n without gaps.
fn prefix_columns(names: &[String], prefix: &str) -> Result<Vec<(usize, String)>> {
    let mut found: Vec<(usize, usize)> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let Some(digits) = n.strip_prefix(prefix) else {
            continue;
        };
        let canonical = digits == "0" || (!digits.starts_with('0') && !digits.is_empty());
        if canonical && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(k) = digits.parse::<usize>() {
                found.push((k, i));
            }
        }
    }
    found.sort_unstable();
    for (expected, (k, _)) in found.iter().enumerate() {
        if *k != expected {
            return Err(FormatError::MissingColumn {
                column: format!("{prefix}{expected}"),
                found: names.to_vec(),
            });
        }
    }
    if found.is_empty() {
        return Err(FormatError::MissingColumn { column: format!("{prefix}0"), found: names.to_vec() });
    }
    Ok(found.into_iter().map(|(_, i)| (i, names.get(i).cloned().unwrap_or_default())).collect())
}

impl<R: BufRead> Iterator for CsvReader<R> {
    type Item = Result<Record, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (line, text) = match self.next_record() {
            None => {
                self.done = true;
                return None;
            }
            Some(x) => x,
        };
        let record = self.record;
        self.record += 1;
        let result = text.and_then(|t| {
            let parsed = split_fields(&t, self.delim, line).and_then(|f| self.parse_row(line, f, record));
            self.buf = t.into_bytes();
            parsed
        });
        Some(result.map_err(|error| RowError { line, error }))
    }
}
