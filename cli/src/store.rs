//! Saving and loading indexes: snapshot files ([`Index::save`] / [`Index::load`]) and durable
//! index directories ([`DurableIndex`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use hnsw_batch::items::{Item, MetaPatch};
use hnsw_batch::persist::{
    DurableIndex, DurableOptions, PersistError, RecoveryReport, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use hnsw_batch::{
    BatchOptions, BatchReport, DeleteOptions, Filter, Index, IndexConfig, IndexError, IndexView,
};

use crate::error::{io_message, CliError, Result};
use crate::meta::fold_side_file;

fn persist_error(action: &str, path: &Path, e: PersistError) -> CliError {
    match e {
        PersistError::Io { source, path: p, .. } => CliError::index(io_message(action, &p, &source)),
        PersistError::ConfigMismatch { reason } => {
            CliError::usage(format!("cannot {action} `{}`: {reason}", path.display()))
        }
        other => CliError::index(format!("cannot {action} `{}`: {other}", path.display())),
    }
}

/// An index in memory, plain or durable.
// One per process: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Handle {
    /// A plain index (from a snapshot file, or being built for one).
    Plain(Index),
    /// A durable index directory.
    Durable(DurableIndex),
}

/// Every read (searches, vectors, ids, metadata, counters) is the index's [`IndexView`]'s,
/// whichever kind of index the handle holds.
impl std::ops::Deref for Handle {
    type Target = IndexView;

    fn deref(&self) -> &IndexView {
        match self {
            Handle::Plain(i) => i.view(),
            Handle::Durable(d) => d.view(),
        }
    }
}

impl Handle {
    /// Batch insert of items with their metadata on the current rayon pool (logged first for a
    /// durable index).
    pub fn insert_items(&self, items: &[Item<Vec<f32>>], opts: &BatchOptions) -> Result<BatchReport> {
        match self {
            Handle::Plain(i) => {
                i.insert_items(items, opts).map_err(|e| CliError::index(format!("batch insert failed: {e}")))
            }
            Handle::Durable(d) => d
                .insert_items(items, opts)
                .map_err(|e| persist_error("insert into the durable index", d.dir(), e)),
        }
    }

    /// Applies each patch (to ids known to be present); returns how many the index refused.
    pub fn set_metadata_batch(&self, patches: &[(u64, MetaPatch)]) -> Result<usize> {
        match self {
            Handle::Plain(i) => Ok(patches.iter().filter(|(id, p)| i.set_metadata(*id, p).is_err()).count()),
            Handle::Durable(d) => {
                if patches.is_empty() {
                    return Ok(0);
                }
                let r = d
                    .set_metadata_batch(patches)
                    .map_err(|e| persist_error("write the metadata into", d.dir(), e))?;
                Ok(r.failures.len() + r.not_found)
            }
        }
    }

    /// Deletes the items matching `filter` (see [`Index::delete_where_filter`]).
    pub fn delete_where(&self, filter: &Filter, opts: &DeleteOptions) -> Result<BatchReport> {
        match self {
            Handle::Plain(i) => i.delete_where_filter(filter, opts).map_err(refused),
            Handle::Durable(d) => d.delete_where(filter, opts).map_err(|e| write_error(d, e)),
        }
    }

    /// Patches the metadata of the items matching `filter` (see [`Index::update_where`]).
    pub fn update_where(
        &self,
        filter: &Filter,
        patch: &MetaPatch,
        opts: &DeleteOptions,
    ) -> Result<BatchReport> {
        match self {
            Handle::Plain(i) => i.update_where(filter, patch, opts).map_err(refused),
            Handle::Durable(d) => d.update_where(filter, patch, opts).map_err(|e| write_error(d, e)),
        }
    }

    /// Deletes the expired items (see [`Index::purge_expired`]).
    pub fn purge_expired(&self, opts: &DeleteOptions) -> Result<BatchReport> {
        match self {
            Handle::Plain(i) => i.purge_expired(opts).map_err(refused),
            Handle::Durable(d) => d.purge_expired(opts).map_err(|e| write_error(d, e)),
        }
    }

    /// Sets the clock expiry is read from.
    pub fn set_clock(&self, clock: std::sync::Arc<dyn hnsw_batch::Clock>) {
        match self {
            Handle::Plain(i) => i.set_clock(clock),
            Handle::Durable(d) => d.set_clock(clock),
        }
    }

    /// Makes a change durable: saves a snapshot file at `path`; a durable index logged it already.
    pub fn save_changes(&self, path: &Path) -> Result<()> {
        match self {
            Handle::Plain(i) => save(i, path),
            Handle::Durable(_) => Ok(()),
        }
    }
}

/// An index refusing a write (a guard, metadata over its limits): nothing was changed.
fn refused(e: IndexError) -> CliError {
    CliError::index(format!("{e}; nothing was changed"))
}

fn write_error(db: &DurableIndex, e: PersistError) -> CliError {
    match e {
        PersistError::Index(e) => refused(e),
        other => persist_error("write to", db.dir(), other),
    }
}

/// Saves `index` as a snapshot file (atomically: a temporary file renamed into place).
pub fn save(index: &Index, path: &Path) -> Result<()> {
    index.save(path).map_err(|e| persist_error("save the index to", path, e))
}

/// Checks that a snapshot can be written to `path` (its directory exists and takes a new file),
/// so that a build fails at once rather than after all the work of building.
pub fn check_output(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let cannot = |why: String| CliError::index(format!("cannot write `{}`: {why}", path.display()));
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(cannot(format!("`{}` is not a directory", parent.display()))),
        Err(_) => return Err(cannot(format!("directory `{}` does not exist", parent.display()))),
    }
    // Permission bits do not tell (root, ACLs, read-only mounts): creating a file does.
    let probe = parent.join(format!(".hnsw-batch-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(cannot(io_message("create a file in", parent, &e))),
    }
}

/// Opens (creating, or recovering and appending to) the durable index in `dir`.
pub fn open_durable(dir: &Path, config: IndexConfig) -> Result<DurableIndex> {
    if dir.is_file() {
        return Err(CliError::usage(format!(
            "--durable {}: is a file (use -o FILE for a snapshot file)",
            dir.display()
        )));
    }
    DurableIndex::open(dir, config, DurableOptions::new()).map_err(|e| persist_error("open", dir, e))
}

/// Writes a snapshot of a durable index and starts a fresh log, so it opens fast.
pub fn checkpoint(db: &DurableIndex) -> Result<()> {
    db.checkpoint().map_err(|e| persist_error("checkpoint", db.dir(), e))
}

/// The snapshots `snapshot-<generation>.hnsw` of a durable directory, newest first.
fn dir_snapshots(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::index(io_message("list", dir, &e)))?;
    let mut snaps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".hnsw"))
        })
        .collect();
    snaps.sort();
    snaps.reverse();
    Ok(snaps)
}

/// What [`load`] found.
pub struct Loaded {
    /// The index.
    pub handle: Handle,
    /// For a durable directory: what opening it recovered.
    pub recovery: Option<RecoveryReport>,
}

/// Loads a snapshot file, or opens (recovering) a durable index directory.
pub fn load(path: &Path) -> Result<Loaded> {
    if path.is_dir() {
        // `DurableIndex::open` needs the parameters, which the directory's snapshots hold.
        let snaps = dir_snapshots(path)?;
        if snaps.is_empty() {
            return Err(CliError::index(format!(
                "`{}` is a directory but not a durable hnsw-batch index",
                path.display()
            )));
        }
        let mut config = None;
        let mut last_err = None;
        for s in &snaps {
            match Index::load(s) {
                Ok(ix) => {
                    config = Some(ix.config().clone());
                    break;
                }
                Err(e) => last_err = Some(persist_error("load", s, e)),
            }
        }
        let Some(config) = config else {
            return Err(last_err.unwrap_or_else(|| CliError::index("no loadable snapshot")));
        };
        let db = DurableIndex::open(path, config, DurableOptions::new())
            .map_err(|e| persist_error("open", path, e))?;
        let recovery = Some(db.recovery_report().clone());
        let handle = Handle::Durable(db);
        fold_side_file(&handle, path)?;
        return Ok(Loaded { handle, recovery });
    }
    if !path.exists() {
        return Err(CliError::index(format!(
            "cannot open index `{}`: no such file or directory",
            path.display()
        )));
    }
    let ix = Index::load(path).map_err(|e| persist_error("load the index from", path, e))?;
    let handle = Handle::Plain(ix);
    fold_side_file(&handle, path)?;
    Ok(Loaded { handle, recovery: None })
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

/// The newest snapshot of a durable directory (for its format version).
pub fn newest_snapshot(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(dir_snapshots(dir)?.into_iter().next())
}

/// The snapshot format version this build writes.
pub fn current_version() -> u32 {
    SNAPSHOT_VERSION
}
