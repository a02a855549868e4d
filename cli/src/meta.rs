//! The metadata side file of older builds, and its migration into the index.
//!
//! Builds before metadata lived in the index kept the metadata of JSON Lines and CSV rows beside
//! it: `INDEX.meta.jsonl` next to a snapshot file, `metadata.jsonl` inside a durable index
//! directory, one line per id that had metadata: `{"id": 7, "metadata": {"k": "v"}}`.
//!
//! The index now stores metadata itself (in snapshots and in the log), so the side file is read
//! once, when a command first opens such an index, and folded in: every listed id that is in the
//! index and has no metadata of its own gets the file's map; the index is saved (a snapshot file
//! atomically; a durable directory logs the change); then the side file is removed. Nothing
//! writes side files any more.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use hnsw_batch::items::MetaPatch;
use hnsw_batch::metadata::{from_json, Metadata};
use serde_json::Value;

use crate::error::{io_message, CliError, Result};
use crate::store::{self, Handle};

/// The side file of the index at `index_path` (a snapshot file or a durable directory).
pub fn sidecar_path(index_path: &Path) -> PathBuf {
    if index_path.is_dir() {
        index_path.join("metadata.jsonl")
    } else {
        let mut s = index_path.as_os_str().to_owned();
        s.push(".meta.jsonl");
        PathBuf::from(s)
    }
}

/// Reads the side file at `path`.
fn read_sidecar(path: &Path) -> Result<HashMap<u64, Metadata>> {
    let file = File::open(path).map_err(|e| CliError::index(io_message("open", path, &e)))?;
    let mut out = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CliError::index(io_message("read", path, &e)))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = || CliError::index(format!("`{}` line {}: not a metadata entry", path.display(), i + 1));
        let v: Value = serde_json::from_str(&line).map_err(|_| bad())?;
        let id = v.get("id").and_then(Value::as_u64).ok_or_else(bad)?;
        let m = v.get("metadata").map(from_json).and_then(|m| m.ok()).ok_or_else(bad)?;
        out.insert(id, m);
    }
    Ok(out)
}

/// What [`fold_side_file`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Ids whose metadata came from the side file.
    pub folded: usize,
    /// Entries for ids that are not in the index.
    pub absent: usize,
    /// Entries for ids that already have metadata in the index (the index's is kept).
    pub kept: usize,
    /// Entries the index refused (metadata over its limits).
    pub refused: usize,
}

/// Folds the side file of the index at `path` (if there is one) into `handle`, saves the index
/// (`path` is its snapshot file, or its durable directory) and removes the side file.
///
/// When a snapshot file cannot be written (a read-only file), the metadata is used for this run
/// only and the side file is kept, with a warning: commands that only read still work.
pub fn fold_side_file(handle: &Handle, path: &Path) -> Result<Option<Folded>> {
    let side = sidecar_path(path);
    if !side.is_file() {
        return Ok(None);
    }
    let mut entries: Vec<(u64, Metadata)> = read_sidecar(&side)?.into_iter().collect();
    entries.sort_unstable_by_key(|(id, _)| *id);
    let mut done = Folded::default();
    let mut patches = Vec::new();
    for (id, m) in entries {
        match handle.get_metadata(id) {
            None => done.absent += 1,
            Some(cur) if !cur.is_empty() => done.kept += 1,
            Some(_) => patches.push((id, MetaPatch { set: m, remove: Vec::new() })),
        }
    }
    let refused = handle.set_metadata_batch(&patches)?;
    done.refused = refused;
    done.folded = patches.len() - refused;
    if let Handle::Plain(index) = handle {
        if let Err(e) = store::save(index, path) {
            eprintln!(
                "warning: {e}\nwarning: the metadata of `{}` is used for this run only; the file stays",
                side.display()
            );
            return Ok(Some(done));
        }
    }
    std::fs::remove_file(&side).map_err(|e| CliError::index(io_message("remove", &side, &e)))?;
    let mut note = format!(
        "note: moved the metadata of {} vectors from `{}` into the index (metadata now lives in the \
         index; the side file was removed)",
        done.folded,
        side.display()
    );
    for (n, what) in [
        (done.absent, "for ids not in the index"),
        (done.kept, "for ids that had metadata in the index already"),
        (done.refused, "over the index's metadata limits"),
    ] {
        if n > 0 {
            note.push_str(&format!("; skipped {n} entries {what}"));
        }
    }
    eprintln!("{note}");
    Ok(Some(done))
}
