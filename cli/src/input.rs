//! Reading vectors and records from files, one row at a time.
//!
//! A [`Source`] streams `.fvecs`, `.bvecs`, `.npy`, JSON Lines or CSV (each optionally gzip'd)
//! and yields good rows and bad rows separately, so a caller can skip bad rows under a budget
//! while a broken file (truncated, unreadable, wrong format) stops it at once.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use hnsw_batch::io::{
    read_npy_ids, CsvOptions, CsvReader, ElementKind, FormatError, IvecsReader, JsonlOptions, JsonlReader,
    NpyReader, VecsReader, VectorColumns,
};
use hnsw_batch::metadata::Metadata;

use crate::error::{io_message, CliError, Result};

/// File formats of vectors and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// TEXMEX `.fvecs`: int32 dimension then float32 components, per vector.
    Fvecs,
    /// TEXMEX `.bvecs`: int32 dimension then uint8 components, per vector.
    Bvecs,
    /// NumPy `.npy`: a 2-D float32, float64 or uint8 array.
    Npy,
    /// JSON Lines: one object per line with an id, a vector and optional metadata.
    Jsonl,
    /// CSV with a header row: an id column, the vector and optional metadata columns.
    Csv,
}

impl InputFormat {
    /// The usual file extension.
    pub fn ext(self) -> &'static str {
        match self {
            InputFormat::Fvecs => "fvecs",
            InputFormat::Bvecs => "bvecs",
            InputFormat::Npy => "npy",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Csv => "csv",
        }
    }

    /// Whether rows carry their own ids (text formats) rather than being numbered.
    pub fn has_ids(self) -> bool {
        matches!(self, InputFormat::Jsonl | InputFormat::Csv)
    }
}

/// Field and column names of JSON Lines and CSV files.
#[derive(Debug, Clone, Args)]
pub struct FieldArgs {
    /// JSONL key / CSV column of the id.
    #[arg(long, default_value = "id", value_name = "NAME", help_heading = "Field mapping (JSONL, CSV)")]
    pub id_field: String,
    /// JSONL key / CSV column of the vector (a JSON array; in CSV numbers joined by --vector-separator).
    #[arg(long, default_value = "vector", value_name = "NAME", help_heading = "Field mapping (JSONL, CSV)")]
    pub vector_field: String,
    /// JSONL key of the metadata object.
    #[arg(
        long,
        default_value = "metadata",
        value_name = "NAME",
        help_heading = "Field mapping (JSONL, CSV)"
    )]
    pub metadata_field: String,
    /// JSONL key / CSV column of the expiry time (unix milliseconds; absent, null or an empty
    /// CSV field: never expires). The CSV column is optional and is not metadata.
    #[arg(
        long,
        default_value = "expires_at",
        value_name = "NAME",
        help_heading = "Field mapping (JSONL, CSV)"
    )]
    pub expires_field: String,
    /// CSV: the vector is spread over one column per component named PREFIX0, PREFIX1, ...
    /// (instead of one --vector-field column).
    #[arg(long, value_name = "PREFIX", help_heading = "Field mapping (JSONL, CSV)")]
    pub vector_prefix: Option<String>,
    /// CSV: separator between the numbers of the vector column.
    #[arg(long, default_value_t = ';', value_name = "CHAR", help_heading = "Field mapping (JSONL, CSV)")]
    pub vector_separator: char,
    /// CSV: the metadata columns (comma-separated); by default every other column.
    #[arg(long, value_delimiter = ',', value_name = "COLS", help_heading = "Field mapping (JSONL, CSV)")]
    pub metadata_columns: Option<Vec<String>>,
    /// CSV: field delimiter.
    #[arg(long, default_value_t = ',', value_name = "CHAR", help_heading = "Field mapping (JSONL, CSV)")]
    pub delimiter: char,
}

/// The flags' defaults (`id`, `vector`, `metadata`, `expires_at`, `;`, `,`), for callers that
/// read files without a command line (`bench`, the MCP server). A test checks that they are
/// what clap gives for no arguments.
impl Default for FieldArgs {
    fn default() -> Self {
        FieldArgs {
            id_field: "id".into(),
            vector_field: "vector".into(),
            metadata_field: "metadata".into(),
            expires_field: "expires_at".into(),
            vector_prefix: None,
            vector_separator: ';',
            metadata_columns: None,
            delimiter: ',',
        }
    }
}

impl FieldArgs {
    /// JSON Lines options from the flags.
    pub fn jsonl(&self, auto_id: bool) -> JsonlOptions {
        JsonlOptions {
            id_field: self.id_field.clone(),
            vector_field: self.vector_field.clone(),
            metadata_field: self.metadata_field.clone(),
            expires_field: self.expires_field.clone(),
            auto_id,
            ..JsonlOptions::default()
        }
    }

    /// CSV options from the flags.
    pub fn csv(&self, auto_id: bool) -> CsvOptions {
        let vector = match &self.vector_prefix {
            Some(p) => VectorColumns::Prefix(p.clone()),
            None => {
                VectorColumns::Single { column: self.vector_field.clone(), separator: self.vector_separator }
            }
        };
        CsvOptions {
            delimiter: self.delimiter,
            id_column: self.id_field.clone(),
            auto_id,
            vector,
            metadata_columns: self.metadata_columns.clone(),
            expires_column: Some(self.expires_field.clone()),
            ..CsvOptions::default()
        }
    }
}

/// Options for reading an input file.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Input format (default: from the extension; a trailing .gz is decompressed).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormat>,
    /// Ids of the vectors of an .fvecs/.bvecs/.npy input, as a 1-D .npy of uint64 or int64
    /// (default: the row number, from 0).
    #[arg(long, value_name = "FILE.npy")]
    pub ids: Option<PathBuf>,
    /// JSONL/CSV: give rows without an id their 0-based row number as id.
    #[arg(long)]
    pub auto_id: bool,
    /// Skip and report up to N bad rows (unparsable, wrong dimension, non-finite, duplicate id,
    /// not representable in the storage type); fail on the (N+1)-th.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: usize,
    #[command(flatten)]
    pub fields: FieldArgs,
}

/// Where a row is in its file: text formats count lines from 1, binary formats records from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// 1-based line number.
    Line(usize),
    /// 0-based record number.
    Record(u64),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Line(l) => write!(f, "line {l}"),
            Loc::Record(r) => write!(f, "record {r}"),
        }
    }
}

/// A good row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Where it is.
    pub loc: Loc,
    /// Its id.
    pub id: u64,
    /// Its vector.
    pub vector: Vec<f32>,
    /// Its metadata (empty for binary formats).
    pub metadata: Metadata,
    /// Its expiry time, unix ms (JSON Lines and CSV).
    pub expires_at: Option<u64>,
}

/// One row of a source: good, or bad with a message that names its line or record.
#[derive(Debug)]
pub enum Item {
    /// A row that parsed.
    Good(Row),
    /// A row that did not; the file can still be read on.
    Bad(String),
}

/// Counts the bytes read through it (for progress on any format, compressed or not).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Inner {
    Vecs(VecsReader<Box<dyn Read>>),
    Npy(NpyReader<Box<dyn Read>>),
    Jsonl(JsonlReader<Box<dyn BufRead>>),
    Csv(CsvReader<Box<dyn BufRead>>),
}

/// A streaming reader of any supported input.
pub struct Source {
    inner: Inner,
    /// The format read.
    pub format: InputFormat,
    /// The file.
    pub path: PathBuf,
    /// Size of the file on disk (compressed size for .gz).
    pub file_len: u64,
    /// Rows announced up front (`.npy` only).
    pub total_rows: Option<u64>,
    bytes: Arc<AtomicU64>,
    lines: Rc<Cell<(usize, bool)>>,
    ids: Option<(PathBuf, Vec<u64>)>,
    row: u64,
    failed: bool,
}

/// The format of `path`: `explicit` if given, else from the extension. Returns whether the file
/// is gzip'd (a `.gz` extension).
pub fn detect_format(path: &Path, explicit: Option<InputFormat>) -> Result<(InputFormat, bool)> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let (stem, gz) = match name.strip_suffix(".gz") {
        Some(s) => (s.to_string(), true),
        None => (name, false),
    };
    if let Some(f) = explicit {
        return Ok((f, gz));
    }
    let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let f = match ext {
        "fvecs" => InputFormat::Fvecs,
        "bvecs" => InputFormat::Bvecs,
        "npy" => InputFormat::Npy,
        "jsonl" | "ndjson" => InputFormat::Jsonl,
        "csv" => InputFormat::Csv,
        _ => {
            return Err(CliError::input(format!(
                "cannot tell the format of `{}` from its extension (expected .fvecs, .bvecs, .npy, .jsonl \
                 or .csv, optionally followed by .gz); name it with --input-format",
                path.display()
            )))
        }
    };
    Ok((f, gz))
}

/// Opens `path` for reading (gunzipping when `gz`), counting the raw bytes read into `count`.
pub fn open_raw(path: &Path, gz: bool, count: Arc<AtomicU64>) -> Result<(Box<dyn BufRead>, u64)> {
    let file = File::open(path).map_err(|e| CliError::input(io_message("open", path, &e)))?;
    let meta = file.metadata().map_err(|e| CliError::input(io_message("read", path, &e)))?;
    if meta.is_dir() {
        return Err(CliError::input(format!("`{}` is a directory, not a file", path.display())));
    }
    let counting = Counting { inner: file, count };
    let reader: Box<dyn BufRead> = if gz {
        Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(counting)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, counting))
    };
    Ok((reader, meta.len()))
}

/// Message of a format error that stops reading `path`.
pub fn fatal(path: &Path, format: InputFormat, e: &FormatError) -> CliError {
    let hint = match e {
        FormatError::BadDimension { record: 0, .. }
        | FormatError::BadHeader { .. }
        | FormatError::Truncated { record: 0, .. } => {
            format!(" (is `{}` really a {} file?)", path.display(), format.ext())
        }
        _ => String::new(),
    };
    match e {
        FormatError::Io { path: Some(_), .. } => CliError::input(format!("{e}")),
        _ => CliError::input(format!("`{}`: {e}{hint}", path.display())),
    }
}

impl Source {
    /// Opens an input file.
    pub fn open(path: &Path, args: &InputArgs) -> Result<Source> {
        Self::open_with(path, args.input_format, args.ids.as_deref(), args.auto_id, &args.fields)
    }

    /// Opens an input file with explicit options.
    pub fn open_with(
        path: &Path,
        format: Option<InputFormat>,
        ids: Option<&Path>,
        auto_id: bool,
        fields: &FieldArgs,
    ) -> Result<Source> {
        let (format, gz) = detect_format(path, format)?;
        let bytes = Arc::new(AtomicU64::new(0));
        let (reader, file_len) = open_raw(path, gz, bytes.clone())?;
        let err = |e: FormatError| fatal(path, format, &e);
        let mut total_rows = None;
        let lines = Rc::new(Cell::new((0, true)));
        let inner = match format {
            InputFormat::Fvecs => Inner::Vecs(VecsReader::new(reader as Box<dyn Read>, ElementKind::F32)),
            InputFormat::Bvecs => Inner::Vecs(VecsReader::new(reader as Box<dyn Read>, ElementKind::U8)),
            InputFormat::Npy => {
                let r = NpyReader::new(reader as Box<dyn Read>).map_err(err)?;
                total_rows = Some(r.rows());
                Inner::Npy(r)
            }
            InputFormat::Jsonl => {
                let counted: Box<dyn BufRead> = Box::new(LineCounter { inner: reader, lines: lines.clone() });
                Inner::Jsonl(JsonlReader::new(counted, fields.jsonl(auto_id)).map_err(err)?)
            }
            InputFormat::Csv => {
                let counted: Box<dyn BufRead> = Box::new(LineCounter { inner: reader, lines: lines.clone() });
                Inner::Csv(CsvReader::new(counted, fields.csv(auto_id)).map_err(|e| match &e {
                    FormatError::MissingColumn { column, .. } => {
                        let hint = if *column == fields.id_field {
                            "name the id column with --id-field NAME, or pass --auto-id to number the rows"
                        } else {
                            "name the vector column with --vector-field NAME, or pass --vector-prefix P \
                             for one column per component (P0, P1, ...)"
                        };
                        CliError::input(format!("`{}`: {e}\n({hint})", path.display()))
                    }
                    _ => err(e),
                })?)
            }
        };
        let ids = match ids {
            None => None,
            Some(p) if format.has_ids() => {
                return Err(CliError::usage(format!(
                    "--ids {} applies to .fvecs/.bvecs/.npy inputs; {} rows carry their own ids",
                    p.display(),
                    format.ext()
                )))
            }
            Some(p) => {
                if !p.exists() {
                    return Err(CliError::input(format!(
                        "cannot open `{}`: no such file or directory",
                        p.display()
                    )));
                }
                let v = read_npy_ids(p).map_err(|e| fatal(p, InputFormat::Npy, &e))?;
                if let Some(n) = total_rows {
                    if n != v.len() as u64 {
                        return Err(CliError::input(format!(
                            "`{}` holds {} ids but `{}` holds {n} vectors",
                            p.display(),
                            v.len(),
                            path.display()
                        )));
                    }
                }
                Some((p.to_path_buf(), v))
            }
        };
        Ok(Source {
            inner,
            format,
            path: path.to_path_buf(),
            file_len,
            total_rows,
            bytes,
            lines,
            ids,
            row: 0,
            failed: false,
        })
    }

    /// Whether the file holds bytes (`.bvecs`, `.npy` of uint8), so `u8` storage keeps it exactly.
    pub fn is_byte_input(&self) -> bool {
        match &self.inner {
            Inner::Vecs(r) => r.element() == ElementKind::U8,
            Inner::Npy(r) => r.element() == ElementKind::U8,
            _ => false,
        }
    }

    /// Bytes of the file consumed so far (compressed bytes for .gz).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Rows (good and bad) returned so far.
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    fn id_for(&self, record: u64) -> Result<u64> {
        match &self.ids {
            None => Ok(record),
            Some((p, ids)) => ids.get(record as usize).copied().ok_or_else(|| {
                CliError::input(format!(
                    "`{}` holds only {} ids but `{}` has more vectors",
                    p.display(),
                    ids.len(),
                    self.path.display()
                ))
            }),
        }
    }

    /// Checks what can only be checked at the end (the id file's length).
    fn finish(&self) -> Result<()> {
        if let Some((p, ids)) = &self.ids {
            if ids.len() as u64 != self.row {
                return Err(CliError::input(format!(
                    "`{}` holds {} ids but `{}` holds {} vectors",
                    p.display(),
                    ids.len(),
                    self.path.display(),
                    self.row
                )));
            }
        }
        Ok(())
    }

    /// The next row; `Err` when the file cannot be read on.
    pub fn next_item(&mut self) -> Option<Result<Item>> {
        if self.failed {
            return None;
        }
        let record = self.row;
        let binary = |r: Option<hnsw_batch::io::Result<Vec<f32>>>, s: &mut Self| -> Option<Result<Item>> {
            match r? {
                Ok(vector) => {
                    s.row += 1;
                    Some(s.id_for(record).map(|id| {
                        Item::Good(Row {
                            loc: Loc::Record(record),
                            id,
                            vector,
                            metadata: Metadata::new(),
                            expires_at: None,
                        })
                    }))
                }
                // Errors that concern only their own record.
                Err(e @ (FormatError::DimensionMismatch { .. } | FormatError::NonFinite { .. })) => {
                    s.row += 1;
                    Some(Ok(Item::Bad(e.to_string())))
                }
                Err(e) => {
                    s.failed = true;
                    Some(Err(fatal(&s.path, s.format, &e)))
                }
            }
        };
        let item = match &mut self.inner {
            Inner::Vecs(r) => {
                let next = r.next();
                binary(next, self)
            }
            Inner::Npy(r) => {
                let next = r.next();
                binary(next, self)
            }
            Inner::Jsonl(r) => {
                let next = r.next();
                self.text(next)
            }
            Inner::Csv(r) => {
                let next = r.next();
                self.text(next)
            }
        };
        match item {
            None => match self.finish() {
                Ok(()) => None,
                Err(e) => {
                    self.failed = true;
                    Some(Err(e))
                }
            },
            Some(Err(e)) => {
                self.failed = true;
                Some(Err(e))
            }
            some => some,
        }
    }

    fn text(
        &mut self,
        next: Option<std::result::Result<hnsw_batch::io::Record, hnsw_batch::io::RowError>>,
    ) -> Option<Result<Item>> {
        match next? {
            Ok(rec) => {
                self.row += 1;
                // The reader has consumed the record through its line end: the line counter
                // now stands on the record's (last) line.
                let (newlines, ended) = self.lines.get();
                let line = if ended { newlines } else { newlines + 1 };
                Some(Ok(Item::Good(Row {
                    loc: Loc::Line(line),
                    id: rec.id,
                    vector: rec.vector,
                    metadata: rec.metadata,
                    expires_at: rec.expires_at,
                })))
            }
            Err(e) if e.is_fatal() => Some(Err(fatal(&self.path, self.format, &e.error))),
            Err(e) => {
                self.row += 1;
                Some(Ok(Item::Bad(e.to_string())))
            }
        }
    }
}

/// Counts the line ends a text reader has consumed, so a good row's line is known.
struct LineCounter {
    inner: Box<dyn BufRead>,
    /// Newlines consumed, and whether the last consumed byte was one.
    lines: Rc<Cell<(usize, bool)>>,
}

impl LineCounter {
    fn count(&self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            let (n, _) = self.lines.get();
            let added = bytes.iter().filter(|&&b| b == b'\n').count();
            self.lines.set((n + added, last == b'\n'));
        }
    }
}

impl Read for LineCounter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count(&buf[..n]);
        Ok(n)
    }
}

impl BufRead for LineCounter {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // The bytes consumed are the head of the buffer the caller just looked at; asking for
        // the buffer again does not read (it is not empty).
        let head = match self.inner.fill_buf() {
            Ok(buf) => buf[..amt.min(buf.len())].to_vec(),
            Err(_) => Vec::new(),
        };
        self.count(&head);
        self.inner.consume(amt);
    }
}

/// Reads the ground truth of `--gt`: one row of neighbour ids per query (`.ivecs`, optionally gzip'd).
pub fn read_gt(path: &Path) -> Result<Vec<Vec<i32>>> {
    let (format_ok, gz) = {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let gz = name.ends_with(".gz");
        (name.trim_end_matches(".gz").ends_with(".ivecs"), gz)
    };
    if !format_ok {
        return Err(CliError::input(format!(
            "ground truth `{}` must be an .ivecs file (one row of neighbour ids per query)",
            path.display()
        )));
    }
    let (reader, _) = open_raw(path, gz, Arc::new(AtomicU64::new(0)))?;
    IvecsReader::new(reader)
        .collect::<hnsw_batch::io::Result<Vec<_>>>()
        .map_err(|e| CliError::input(format!("`{}`: {e}", path.display())))
}

/// Reads a whole vector file (any format) into memory, failing on the first bad row.
pub fn read_all(path: &Path, format: Option<InputFormat>, fields: &FieldArgs) -> Result<(Vec<Row>, bool)> {
    let mut src = Source::open_with(path, format, None, true, fields)?;
    let mut rows = Vec::new();
    while let Some(item) = src.next_item() {
        match item? {
            Item::Good(r) => rows.push(r),
            Item::Bad(msg) => return Err(CliError::input(format!("`{}`: {msg}", path.display()))),
        }
    }
    Ok((rows, src.is_byte_input()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FieldArgs::default()` is what the flags give with no arguments: a changed
    /// `default_value` without the matching change here fails.
    #[test]
    fn field_defaults_match_the_flags() {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            fields: FieldArgs,
        }
        let parsed =
            <Defaults as clap::Parser>::try_parse_from(["defaults"]).expect("no arguments parse").fields;
        assert_eq!(format!("{parsed:?}"), format!("{:?}", FieldArgs::default()));
    }
}
