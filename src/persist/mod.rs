//! Persistence: snapshots, a write-ahead log, and [`DurableIndex`], an index that survives
//! crashes without losing an acknowledged write.
//!
//! - [`Index::save`](crate::Index::save) / [`Index::load`](crate::Index::load) write and read a
//!   snapshot file (format in `docs/format.md`): checksummed sections, every count checked
//!   against the file size before allocating, saved atomically (temporary file, sync, rename,
//!   directory sync).
//! - [`DurableIndex`] logs every write before applying it (one append and one sync per batch),
//!   checkpoints into snapshots, and recovers on open from the last snapshot plus the log.
//! - All file I/O goes through a [`Backend`]: [`FileBackend`] for the real filesystem,
//!   [`MemBackend`] for tests, with fault injection and simulated crashes.

pub mod backend;
mod codec;
pub mod durable;
mod durable_items;
mod error;
pub mod snapshot;
pub mod wal;

pub use backend::{Backend, CrashMode, FailMode, FileBackend, MemBackend};
pub use durable::{DurableIndex, DurableOptions, DurableStats, RecoveryReport, SyncPolicy};
pub use error::{PersistError, Result, MAX_PLAUSIBLE_VERSION};
pub use snapshot::{load_from_bytes, save_to_bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
pub use wal::{read_records_from_bytes, WalContents, WalEntry, WalRecord, WalStop};
