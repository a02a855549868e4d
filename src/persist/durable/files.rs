//! The names of a durable index's files, and the file operations that recovery, commits and
//! checkpoints share.

use crate::persist::backend::Backend;
use crate::persist::error::{PersistError, Result};
use crate::persist::wal;
use std::path::Path;

/// The lock file that keeps a directory open by one [`DurableIndex`] at a time.
pub(super) const LOCK_NAME: &str = "LOCK";

pub(super) fn snapshot_name(generation: u64) -> String {
    format!("snapshot-{generation:020}.hnsw")
}

pub(super) fn log_name(generation: u64) -> String {
    format!("wal-{generation:020}.log")
}

/// What a directory entry is.
pub(super) enum FileKind {
    Snapshot(u64),
    Log(u64),
    Temp,
    Other,
}

pub(super) fn classify(path: &Path) -> FileKind {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return FileKind::Other };
    let number =
        |s: &str| (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten();
    if name.ends_with(".tmp") {
        return FileKind::Temp;
    }
    if let Some(g) = name.strip_prefix("snapshot-").and_then(|s| s.strip_suffix(".hnsw")).and_then(number) {
        return FileKind::Snapshot(g);
    }
    if let Some(g) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")).and_then(number) {
        return FileKind::Log(g);
    }
    FileKind::Other
}

/// Removes a file; one that is already gone is fine.
pub(super) fn remove_file(b: &dyn Backend, path: &Path) -> Result<()> {
    match b.remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PersistError::Io { op: "remove", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

/// Creates `wal-<generation>` with its header, durably (file and directory entry).
pub(super) fn create_log(b: &dyn Backend, dir: &Path, generation: u64) -> Result<()> {
    let path = dir.join(log_name(generation));
    b.write(&path, &wal::encode_header(generation)).map_err(PersistError::io("write", &path))?;
    b.sync(&path).map_err(PersistError::io("sync", &path))?;
    b.sync_dir(dir).map_err(PersistError::io("sync_dir", dir))
}
