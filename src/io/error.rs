//! Errors of the file-format layer.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors returned by the readers and writers of [`crate::io`].
///
/// Binary formats (`.fvecs`, `.bvecs`, `.ivecs`, `.npy`) report a 0-based `record`
/// number and, where it helps, the byte `offset` into the stream. Text formats
/// (JSON Lines, CSV) report a 1-based `line` number; their per-row errors are
/// wrapped in a [`RowError`] so a caller can skip bad rows.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// An operating-system I/O error.
    #[error("I/O error while {op}{}: {source}", PathSuffix(path.as_deref()))]
    Io {
        /// What was being done, e.g. `"opening"` or `"reading"`.
        op: &'static str,
        /// The file concerned, when known.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file header is malformed.
    #[error("bad header at byte {offset}: {reason}")]
    BadHeader {
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The stream ends inside a record.
    #[error("truncated record {record} at byte {offset}: needed {needed} more bytes, {available} available")]
    Truncated {
        /// 0-based index of the incomplete record.
        record: u64,
        /// Byte offset where the missing bytes start.
        offset: u64,
        /// Bytes the record still needed at `offset`.
        needed: u64,
        /// Bytes that were actually available.
        available: u64,
    },
    /// Bytes follow the last record announced by a header.
    #[error("{len} unexpected bytes after the data, starting at byte {offset}")]
    TrailingData {
        /// Byte offset of the first unexpected byte.
        offset: u64,
        /// How many unexpected bytes there are.
        len: u64,
    },
    /// A record's dimension differs from the one of the first record (or the expected one).
    #[error("dimension mismatch in record {record}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// 0-based index of the offending record.
        record: u64,
        /// The dimension required.
        expected: usize,
        /// The dimension found.
        got: usize,
    },
    /// A dimension is zero, negative or larger than [`crate::io::MAX_DIM`].
    ///
    /// Values that do not fit an `i64` are saturated to `i64::MAX`.
    #[error("invalid dimension {dim} in record {record} (must be 1..={max})", max = crate::io::MAX_DIM)]
    BadDimension {
        /// 0-based index of the offending record.
        record: u64,
        /// The dimension read.
        dim: i64,
    },
    /// A vector component is NaN or infinite (after conversion to `f32`).
    #[error("non-finite value {value} in record {record}, component {component}")]
    NonFinite {
        /// 0-based index of the offending record.
        record: u64,
        /// 0-based position of the component.
        component: usize,
        /// The offending value.
        value: f32,
    },
    /// A value cannot be written in the target format (e.g. 0.5 or 300 in `.bvecs`).
    #[error("value {value} in record {record}, component {component} is not representable as {target}")]
    ValueOutOfRange {
        /// 0-based index of the offending record.
        record: u64,
        /// 0-based position of the component.
        component: usize,
        /// The offending value.
        value: f64,
        /// The target representation, e.g. `"u8"`.
        target: &'static str,
    },
    /// A text row could not be parsed.
    #[error("line {line}{}{}: {reason}", ColumnSuffix(*column), FieldSuffix(field.as_deref()))]
    Parse {
        /// 1-based line number.
        line: usize,
        /// 1-based character column inside the line, when known.
        column: Option<usize>,
        /// The field or column name concerned, when known.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A required field is absent from a text row.
    #[error("line {line}: missing field `{field}`")]
    MissingField {
        /// 1-based line number.
        line: usize,
        /// Name of the missing field.
        field: String,
    },
    /// A required column is absent from a CSV header.
    #[error("missing column `{column}` in the CSV header (its columns: {})", ColumnList(found))]
    MissingColumn {
        /// Name of the missing column.
        column: String,
        /// The columns the header holds, in order.
        found: Vec<String>,
    },
    /// A text line is longer than the configured limit.
    #[error("line {line} is longer than {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The `.npy` dtype is not supported.
    #[error("unsupported npy dtype `{descr}` (supported: {supported})")]
    UnsupportedDtype {
        /// The `descr` value of the header.
        descr: String,
        /// The supported dtypes, for the message.
        supported: &'static str,
    },
    /// The `.npy` array is stored in Fortran (column-major) order.
    #[error("npy arrays in fortran order are not supported")]
    FortranOrder,
    /// The `.npy` array does not have the required number of dimensions.
    #[error("unsupported npy shape {shape:?}: expected a {expected_ndim}-D array")]
    UnsupportedShape {
        /// The shape of the header.
        shape: Vec<u64>,
        /// The number of dimensions required.
        expected_ndim: usize,
    },
    /// A negative id was read where ids must be non-negative.
    #[error("negative id {value} in record {record}")]
    NegativeId {
        /// 0-based index of the offending record.
        record: u64,
        /// The offending value.
        value: i64,
    },
    /// The file extension does not name a supported vector format.
    #[error("cannot tell the vector format of `{}` from its extension (expected .fvecs, .bvecs or .npy)", path.display())]
    UnknownFormat {
        /// The path.
        path: PathBuf,
    },
    /// An argument or option passed by the caller is invalid.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// Name of the argument.
        name: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// More rows failed than the caller allowed.
    #[error("too many bad rows: more than {max_errors} failed (first: {})", FirstError(errors))]
    TooManyErrors {
        /// The allowed number of failed rows.
        max_errors: usize,
        /// The row errors seen, `max_errors + 1` of them.
        errors: Vec<RowError>,
    },
}

/// A per-row error of a streaming text reader: the 1-based line where the row
/// starts and what is wrong with it.
///
/// Its message gives one position: an error that names its own line is shown as it is, any
/// other after `line N: `.
#[derive(Debug, Error)]
#[error("{}{error}", LinePrefix(*line, error))]
pub struct RowError {
    /// 1-based line where the row starts.
    pub line: usize,
    /// What is wrong.
    #[source]
    pub error: FormatError,
}

impl RowError {
    /// Whether the reader cannot go on after this error (an I/O failure).
    ///
    /// Readers end their iteration after a fatal error; all other row errors
    /// only affect their own row.
    pub fn is_fatal(&self) -> bool {
        matches!(self.error, FormatError::Io { .. })
    }
}

/// Result alias of the format layer.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

impl FormatError {
    pub(crate) fn io(op: &'static str, path: Option<&Path>, source: std::io::Error) -> Self {
        FormatError::Io { op, path: path.map(Path::to_path_buf), source }
    }

    pub(crate) fn parse(line: usize, field: Option<&str>, reason: impl Into<String>) -> Self {
        FormatError::Parse { line, column: None, field: field.map(str::to_owned), reason: reason.into() }
    }

    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        FormatError::InvalidArgument { name, reason: reason.into() }
    }

    pub(crate) fn bad_dim(record: u64, dim: impl TryInto<i64>) -> Self {
        FormatError::BadDimension { record, dim: dim.try_into().unwrap_or(i64::MAX) }
    }
}

struct PathSuffix<'a>(Option<&'a Path>);
impl fmt::Display for PathSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, " `{}`", p.display()),
            None => Ok(()),
        }
    }
}

struct ColumnSuffix(Option<usize>);
impl fmt::Display for ColumnSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, ", column {c}"),
            None => Ok(()),
        }
    }
}

struct FieldSuffix<'a>(Option<&'a str>);
impl fmt::Display for FieldSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, ", field `{name}`"),
            None => Ok(()),
        }
    }
}

/// `line N: `, unless the error names that line itself.
struct LinePrefix<'a>(usize, &'a FormatError);
impl fmt::Display for LinePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let own = match self.1 {
            FormatError::Parse { line, .. }
            | FormatError::MissingField { line, .. }
            | FormatError::LineTooLong { line, .. } => Some(*line),
            _ => None,
        };
        if own == Some(self.0) {
            Ok(())
        } else {
            write!(f, "line {}: ", self.0)
        }
    }
}

struct ColumnList<'a>(&'a [String]);
impl fmt::Display for ColumnList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{c}`")?;
        }
        Ok(())
    }
}

struct FirstError<'a>(&'a [RowError]);
impl fmt::Display for FirstError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.first() {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("none recorded"),
        }
    }
}
