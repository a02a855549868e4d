//! Saving and loading indexes (snapshot files and durable directories).

use std::io::Read;
use std::path::Path;

use hnsw_batch::persist::{PersistError, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
use hnsw_batch::Index;

use crate::error::{io_message, CliError, Result};

fn persist_error(action: &str, path: &Path, e: PersistError) -> CliError {
    match e {
        PersistError::Io { source, .. } => CliError::index(io_message(action, path, &source)),
        other => CliError::index(format!("cannot {action} `{}`: {other}", path.display())),
    }
}

/// Saves `index` as a snapshot file (atomically: a temporary file renamed into place).
pub fn save(index: &Index, path: &Path) -> Result<()> {
    index.save(path).map_err(|e| persist_error("save the index to", path, e))
}

/// Creates a durable index directory holding `index`.
pub fn save_durable(_index: &Index, dir: &Path) -> Result<()> {
    // TODO(persist): `DurableIndex` is still being written on branch `persist`.
    Err(CliError::index(format!(
        "cannot create durable index `{}`: durable indexes are not available in this build yet",
        dir.display()
    )))
}

/// Loads a snapshot file.
pub fn load(path: &Path) -> Result<Index> {
    if path.is_dir() {
        return Err(CliError::index(format!(
            "`{}` is a directory; durable index directories are not readable in this build yet",
            path.display()
        )));
    }
    if !path.exists() {
        return Err(CliError::index(format!("cannot open index `{}`: no such file", path.display())));
    }
    Index::load(path).map_err(|e| persist_error("load the index from", path, e))
}

/// The snapshot format version of the file at `path`, read from its header.
pub fn format_version(path: &Path) -> Result<u32> {
    let mut head = [0u8; 12];
    let mut f = std::fs::File::open(path).map_err(|e| CliError::index(io_message("open", path, &e)))?;
    f.read_exact(&mut head).map_err(|_| {
        CliError::index(format!("`{}` is not a hnsw-batch index (file too short)", path.display()))
    })?;
    if head[..8] != SNAPSHOT_MAGIC {
        return Err(CliError::index(format!(
            "`{}` is not a hnsw-batch index (bad magic bytes)",
            path.display()
        )));
    }
    Ok(u32::from_le_bytes([head[8], head[9], head[10], head[11]]))
}

/// The snapshot format version this build writes.
pub fn current_version() -> u32 {
    SNAPSHOT_VERSION
}
