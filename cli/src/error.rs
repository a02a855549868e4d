//! Errors of the command-line tool and the exit codes they map to.

use std::fmt;

/// Exit codes, documented in `--help` and in `cli/README.md`.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Bad command line: unknown flag, missing argument, parameter out of range.
    pub const USAGE: i32 = 1;
    /// Bad input data: file not found or unreadable, unknown or malformed format,
    /// dimension mismatch, too many bad rows.
    pub const INPUT: i32 = 2;
    /// Index or output error: the index file cannot be read, written or is corrupt, an output
    /// file cannot be written, the index rejects an operation.
    pub const INDEX: i32 = 3;
}

/// The text appended to `--help`: the exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  usage error (unknown flag, missing or out-of-range argument)
  2  input error (file not found, unknown or malformed format, dimension mismatch,
     more bad rows than --max-errors)
  3  index or output error (index file missing, corrupt or of another format version,
     output not writable, an export output that exists without --force)";

/// What went wrong, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Exit code 1.
    Usage,
    /// Exit code 2.
    Input,
    /// Exit code 3.
    Index,
}

/// An error with a message for the user.
#[derive(Debug)]
pub struct CliError {
    /// Its class.
    pub kind: Kind,
    /// The message, without the leading `error: `.
    pub msg: String,
}

impl CliError {
    /// A usage error (exit code 1).
    pub fn usage(msg: impl Into<String>) -> Self {
        CliError { kind: Kind::Usage, msg: msg.into() }
    }
    /// An input error (exit code 2).
    pub fn input(msg: impl Into<String>) -> Self {
        CliError { kind: Kind::Input, msg: msg.into() }
    }
    /// An index or output error (exit code 3).
    pub fn index(msg: impl Into<String>) -> Self {
        CliError { kind: Kind::Index, msg: msg.into() }
    }
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Usage => code::USAGE,
            Kind::Input => code::INPUT,
            Kind::Index => code::INDEX,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CliError {}

/// Result alias of the tool.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Describes an I/O error on `path` in words a user can act on.
pub fn io_message(op: &str, path: &std::path::Path, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("cannot {op} `{}`: {what}", path.display())
}
