//! Errors of the persistence layer.

use crate::batch::BatchError;
use crate::error::IndexError;
use std::path::PathBuf;
use thiserror::Error;

/// Errors of snapshots, the write-ahead log and [`DurableIndex`](super::DurableIndex).
///
/// Reading a damaged or hostile file gives one of these errors, never a panic.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PersistError {
    /// An I/O operation failed.
    #[error("I/O error during {op} of `{}`: {source}", path.display())]
    Io {
        /// The operation (`read`, `write`, `append`, `sync`, `rename`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the expected magic bytes: it is not a file of this kind.
    #[error("not a hnsw-batch {kind} (bad magic bytes)")]
    BadMagic {
        /// What file was expected (`snapshot` or `log`).
        kind: &'static str,
    },
    /// The file was written by a format version this build cannot read: a newer one, or an
    /// older one no longer read. A version field that no build can have written (0, or a value
    /// beyond [`MAX_PLAUSIBLE_VERSION`]) is reported as [`PersistError::Corrupt`] instead.
    #[error("{}", VersionPhrase(*found, *supported))]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The file ends inside a section.
    #[error("truncated file: section `{section}` needs {needed} bytes, {available} left")]
    Truncated {
        /// The section being read.
        section: &'static str,
        /// Bytes the section needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A section's checksum does not match its contents.
    #[error("checksum mismatch in section `{section}` (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// The section.
        section: &'static str,
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The file's checksums are right but its contents are inconsistent.
    #[error("corrupt data: {reason}")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// The durable index directory is open already, in this process or another.
    #[error("`{}` is already open (its lock is held)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A durable index on disk was built with parameters that differ from the ones given.
    #[error("configuration mismatch: {reason}")]
    ConfigMismatch {
        /// Which parameter differs.
        reason: String,
    },
    /// A write was logged but could not be applied in memory (out of memory): the in-memory
    /// index no longer matches the log, so further writes are refused. Reopen to recover.
    #[error("durable index poisoned: {reason}; reopen it to recover")]
    Poisoned {
        /// What failed.
        reason: String,
    },
    /// A batch was rejected (nothing was logged or applied).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// An index operation was rejected (nothing was logged or applied).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A bulk operation by filter written in several batches
    /// ([`DeleteOptions::batch_size`](crate::DeleteOptions::batch_size)) failed after some of
    /// its batches were committed: those are logged (durable) and applied, and `committed`
    /// reports them; the rest is untouched. The operations are idempotent, so running the same
    /// call again finishes the job.
    #[error("after committing {} of {} items in earlier batches: {error}", .committed.ids.len(), .committed.total)]
    Partial {
        /// What the batches before the failure changed: `total` matched, `ids` and the count
        /// (`deleted` or `updated`) committed.
        committed: Box<crate::batch::BatchReport>,
        /// What stopped the call.
        #[source]
        error: Box<PersistError>,
    },
}

/// The largest version field read as a real format version. Versions count up from 1 by one
/// per format change, so every version ever written has its upper three bytes zero; a value
/// beyond this one is damage to the header (a flipped bit in those bytes), not a newer format.
pub const MAX_PLAUSIBLE_VERSION: u32 = 255;

/// Accepts `found` if it is `supported`; otherwise says whether the file is from another
/// version or its header is damaged. `kind` names the file (`snapshot`, `log`).
pub(crate) fn check_version(kind: &str, found: u32, supported: u32) -> Result<()> {
    if found == supported {
        Ok(())
    } else if (1..=MAX_PLAUSIBLE_VERSION).contains(&found) {
        Err(PersistError::UnsupportedVersion { found, supported })
    } else {
        Err(PersistError::corrupt(format!(
            "{kind} header: version field {found} ({found:#010x}) is no format version \
             (this build reads version {supported})"
        )))
    }
}

struct VersionPhrase(u32, u32);
impl std::fmt::Display for VersionPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let VersionPhrase(found, supported) = *self;
        if found > supported {
            write!(
                f,
                "written by a newer version of hnsw-batch (format {found}, this build reads up to {supported})"
            )
        } else {
            write!(f, "unsupported old format version {found} (this build reads version {supported})")
        }
    }
}

impl PersistError {
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| PersistError::Io { op, path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        PersistError::Corrupt { reason: reason.into() }
    }
}

/// Result alias for the persistence layer.
pub type Result<T, E = PersistError> = std::result::Result<T, E>;
