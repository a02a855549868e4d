//! CSV export of [`Record`]s, readable back by [`CsvReader`](crate::io::CsvReader)
//! with the same [`CsvOptions`].

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use super::csv::{CsvOptions, VectorColumns};
use super::error::{FormatError, Result};
use super::record::{check_for_write, DimCheck, Record};
use super::util::{self, float_text, write_err};
use crate::metadata::MetaValue;

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn header_field(s: &str, delim: char) -> String {
    if s.is_empty() || s.contains([delim, '"', '\r', '\n']) || s.starts_with('\u{feff}') {
        quote(s)
    } else {
        s.to_owned()
    }
}

/// Writes `records` as CSV: a header row, then one row per record; returns the
/// number of records written.
///
/// Columns: the id column, the vector column(s) laid out as `options.vector`
/// says, the expiry column ([`CsvOptions::expires_column`], empty for records
/// that never expire), then the metadata columns: `options.metadata_columns`, or else every
/// key present in any record, sorted (keys outside an explicit list are not
/// written). Strings are always quoted, so they read back as strings; numbers
/// are printed so that they read back exactly; an absent key gives an empty field.
///
/// The expiry column is written when `expires_column` is set and some record has
/// an expiry, or, when `metadata_columns` is given, whenever `expires_column` is
/// set: an explicit column list fixes the header whatever the records, so that a
/// file can be written in chunks. A metadata column named like the expiry column
/// is refused (it would read back as the expiry).
///
/// All records are validated before anything is written: the same dimension for
/// every vector, finite components and finite metadata floats, no list values.
pub fn write_csv_to<W: Write>(mut writer: W, records: &[Record], options: &CsvOptions) -> Result<usize> {
    options.validate()?;
    let delim = options.delimiter;
    let mut dims = DimCheck::new(options.expected_dim);
    for (i, r) in records.iter().enumerate() {
        check_for_write(i as u64, r, &mut dims)?;
        if let Some((key, _)) = r.metadata.iter().find(|(_, v)| matches!(v, MetaValue::StrList(_))) {
            return Err(list_in_csv(r.id, key));
        }
    }
    let dim = records.first().map_or(options.expected_dim.unwrap_or(0), |r| r.vector.len());
    let vector_cols: Vec<String> = match &options.vector {
        VectorColumns::Single { column, .. } => vec![column.clone()],
        VectorColumns::Prefix(p) => (0..dim).map(|i| format!("{p}{i}")).collect(),
        VectorColumns::List(list) if list.len() == dim || records.is_empty() => list.clone(),
        VectorColumns::List(list) => {
            return Err(FormatError::invalid(
                "vector",
                format!("{} column names for vectors of dimension {dim}", list.len()),
            ))
        }
    };
    let meta_cols: Vec<String> = match &options.metadata_columns {
        Some(list) => list.clone(),
        None => {
            let keys: BTreeSet<&String> = records.iter().flat_map(|r| r.metadata.keys()).collect();
            keys.into_iter().cloned().collect()
        }
    };
    let expires_col = match &options.expires_column {
        Some(c) if options.metadata_columns.is_some() || records.iter().any(|r| r.expires_at.is_some()) => {
            Some(c.as_str())
        }
        _ => None,
    };
    if let Some(c) = &options.expires_column {
        if meta_cols.contains(c) {
            return Err(FormatError::invalid(
                "metadata",
                format!("metadata key `{c}` has the name of the expiry column; name that column otherwise"),
            ));
        }
    }
    let mut names: Vec<&str> = vec![options.id_column.as_str()];
    names.extend(vector_cols.iter().map(String::as_str));
    names.extend(expires_col);
    names.extend(meta_cols.iter().map(String::as_str));
    for (i, n) in names.iter().enumerate() {
        if names.iter().take(i).any(|m| m == n) {
            return Err(FormatError::invalid(
                "columns",
                format!("column name `{n}` would appear twice in the header"),
            ));
        }
    }
    let sep = delim.to_string();
    let header: Vec<String> = names.iter().map(|n| header_field(n, delim)).collect();
    let mut out = header.join(&sep);
    out.push('\n');
    writer.write_all(out.as_bytes()).map_err(write_err)?;
    for r in records {
        out.clear();
        let mut fields: Vec<String> = Vec::with_capacity(names.len());
        fields.push(r.id.to_string());
        match &options.vector {
            VectorColumns::Single { separator, .. } => {
                let parts: Vec<String> = r.vector.iter().map(f32::to_string).collect();
                fields.push(header_field(&parts.join(&separator.to_string()), delim));
            }
            _ => fields.extend(r.vector.iter().map(f32::to_string)),
        }
        if expires_col.is_some() {
            fields.push(r.expires_at.map(|t| t.to_string()).unwrap_or_default());
        }
        for key in &meta_cols {
            fields.push(match r.metadata.get(key) {
                None => String::new(),
                Some(MetaValue::Str(s)) => quote(s),
                Some(MetaValue::Int(i)) => i.to_string(),
                Some(MetaValue::Float(f)) => float_text(*f),
                Some(MetaValue::Bool(b)) => b.to_string(),
                // A CSV cell holds one scalar; writing a list in some ad hoc syntax would read
                // back as a different (string) value.
                Some(MetaValue::StrList(_)) => return Err(list_in_csv(r.id, key)),
            });
        }
        out.push_str(&fields.join(&sep));
        out.push('\n');
        writer.write_all(out.as_bytes()).map_err(write_err)?;
    }
    writer.flush().map_err(write_err)?;
    Ok(records.len())
}

/// A CSV cell holds one scalar; a list written in some ad hoc syntax would read back as a
/// different (string) value, so lists are refused before anything is written.
fn list_in_csv(id: u64, key: &str) -> FormatError {
    FormatError::invalid(
        "metadata",
        format!("record {id}: key `{key}` holds a list, which CSV cannot hold; use JSON Lines"),
    )
}

/// Creates (or truncates) `path` and writes `records` to it; see [`write_csv_to`].
pub fn write_csv(path: impl AsRef<Path>, records: &[Record], options: &CsvOptions) -> Result<usize> {
    let path = path.as_ref();
    let mut w = util::create(path)?;
    let n = write_csv_to(&mut w, records, options).map_err(|e| util::with_path(e, path))?;
    util::finish(w, path)?;
    Ok(n)
}
