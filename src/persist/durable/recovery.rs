//! Recovery on open, with the directory locked: the newest usable snapshot, the logs after it
//! replayed, a torn tail cut off, and the files of older generations removed.

use super::files::{classify, create_log, log_name, remove_file, snapshot_name, FileKind};
use super::{DurableIndex, DurableOptions, DurableStats, RecoveryReport, Writer};
use crate::batch::{BatchInsertable, BatchMode, BatchOptions};
use crate::config::IndexConfig;
use crate::index::Index;
use crate::persist::backend::Backend;
use crate::persist::error::{PersistError, Result};
use crate::persist::snapshot::{load_from_bytes, save_to_bytes, write_atomic};
use crate::persist::wal::{self, WalRecord, WAL_HEADER_LEN};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

impl DurableIndex {
    /// Recovery, with the directory locked.
    pub(super) fn open_locked(
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        config: IndexConfig,
        options: DurableOptions,
    ) -> Result<Self> {
        let b = backend.as_ref();
        let mut snapshots = Vec::new();
        let mut logs = Vec::new();
        let mut temps = Vec::new();
        for p in b.list(&dir).map_err(PersistError::io("list", &dir))? {
            match classify(&p) {
                FileKind::Snapshot(g) => snapshots.push(g),
                FileKind::Log(g) => logs.push(g),
                FileKind::Temp => temps.push(p),
                FileKind::Other => {}
            }
        }
        snapshots.sort_unstable();
        logs.sort_unstable();
        // What is visible now may not be durable yet (a rename whose directory sync failed
        // before a restart): make it durable before deciding, and before removing anything.
        b.sync_dir(&dir).map_err(PersistError::io("sync_dir", &dir))?;

        let mut report = RecoveryReport::default();
        let (index, snapshot_gen) = if snapshots.is_empty() {
            if !logs.is_empty() {
                return Err(PersistError::corrupt(format!(
                    "{} has log files but no snapshot",
                    dir.display()
                )));
            }
            let index = Index::new(config)?;
            write_atomic(b, &dir.join(snapshot_name(0)), &save_to_bytes(&index))?;
            report.created = true;
            (index, 0)
        } else {
            let (index, g, skipped) = Self::load_newest(b, &dir, &snapshots, &logs)?;
            report.snapshots_skipped = skipped;
            let have = index.config();
            if have.dim != config.dim || have.metric != config.metric || have.storage != config.storage {
                return Err(PersistError::ConfigMismatch {
                    reason: format!(
                        "index in {} has dim {}, metric {}, storage {}; asked for dim {}, metric {}, storage {}",
                        dir.display(),
                        have.dim,
                        have.metric.name(),
                        have.storage.name(),
                        config.dim,
                        config.metric.name(),
                        config.storage.name()
                    ),
                });
            }
            (index, g)
        };
        report.snapshot_generation = snapshot_gen;

        let mut this = DurableIndex {
            dir,
            backend,
            options,
            index,
            writer: Mutex::new(Writer {
                generation: snapshot_gen,
                log_exists: false,
                log_version: wal::WAL_VERSION,
                good_len: 0,
                dirty: false,
                unsynced: false,
                last_sync: Instant::now(),
                stats: DurableStats::default(),
            }),
            recovery: RecoveryReport::default(),
        };
        let replay: Vec<u64> = logs.iter().copied().filter(|&g| g >= snapshot_gen).collect();
        {
            let w = this.writer.get_mut();
            for (i, &g) in replay.iter().enumerate() {
                let last = i + 1 == replay.len();
                let (good, version) =
                    Self::replay_log(&this.backend, &this.dir, &this.index, g, last, &mut report)?;
                if last {
                    w.generation = g;
                    w.log_exists = true;
                    w.log_version = version;
                    w.good_len = good;
                }
            }
            if !w.log_exists {
                create_log(this.backend.as_ref(), &this.dir, w.generation)?;
                w.log_exists = true;
                w.good_len = WAL_HEADER_LEN as u64;
            }
            w.stats.generation = w.generation;
            w.stats.log_bytes = w.good_len;
        }
        // Replay inserts one record at a time and the snapshot may predate a pending repair:
        // restore the reachability guarantee before serving.
        this.index.repair();
        // Files of older generations and interrupted saves are no longer needed.
        let b = this.backend.as_ref();
        let mut removed = false;
        for p in temps {
            remove_file(b, &p)?;
            removed = true;
        }
        for g in snapshots.iter().filter(|&&g| g < snapshot_gen) {
            let p = this.dir.join(snapshot_name(*g));
            remove_file(b, &p)?;
            removed = true;
        }
        for g in logs.iter().filter(|&&g| g < snapshot_gen) {
            let p = this.dir.join(log_name(*g));
            remove_file(b, &p)?;
            removed = true;
        }
        if removed {
            b.sync_dir(&this.dir).map_err(PersistError::io("sync_dir", &this.dir))?;
        }
        this.recovery = report;
        Ok(this)
    }

    /// Loads the newest snapshot that loads and whose logs are all present.
    fn load_newest(
        b: &dyn Backend,
        dir: &Path,
        snapshots: &[u64],
        logs: &[u64],
    ) -> Result<(Index, u64, usize)> {
        let top = snapshots.last().copied().unwrap_or(0);
        let mut first_err = None;
        for (skipped, &g) in snapshots.iter().rev().enumerate() {
            let after: Vec<u64> = logs.iter().copied().filter(|&l| l >= g).collect();
            let contiguous = after.iter().enumerate().all(|(i, &l)| l == g + i as u64);
            let reaches = g == top || after.last().is_some_and(|&l| l + 1 >= top);
            if !contiguous || !reaches {
                first_err.get_or_insert_with(|| {
                    PersistError::corrupt(format!(
                        "logs needed after snapshot {g} are missing in {}",
                        dir.display()
                    ))
                });
                continue;
            }
            let path = dir.join(snapshot_name(g));
            let loaded = b
                .read(&path)
                .map_err(PersistError::io("read", &path))
                .and_then(|bytes| load_from_bytes(&bytes));
            match loaded {
                Ok(index) => return Ok((index, g, skipped)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| PersistError::corrupt("no usable snapshot")))
    }

    /// Replays one log into `index`; returns its committed length (after cutting off a torn tail) and its format
    /// version.
    fn replay_log(
        backend: &Arc<dyn Backend>,
        dir: &Path,
        index: &Index,
        g: u64,
        last: bool,
        report: &mut RecoveryReport,
    ) -> Result<(u64, u32)> {
        let b = backend.as_ref();
        let path = dir.join(log_name(g));
        let bytes = b.read(&path).map_err(PersistError::io("read", &path))?;
        let header = wal::encode_header(g);
        if bytes.len() < WAL_HEADER_LEN && last && header.starts_with(&bytes) {
            // Created but its header never (fully) reached the disk: nothing was logged in it.
            b.write(&path, &header).map_err(PersistError::io("write", &path))?;
            b.sync(&path).map_err(PersistError::io("sync", &path))?;
            report.truncated_bytes += bytes.len() as u64;
            report.logs_replayed += 1;
            return Ok((WAL_HEADER_LEN as u64, wal::WAL_VERSION));
        }
        let contents = wal::read_records_from_bytes(&bytes)?;
        if contents.generation != g {
            return Err(PersistError::corrupt(format!(
                "{} holds generation {}",
                path.display(),
                contents.generation
            )));
        }
        train_from_first_group(index, contents.committed());
        for e in contents.committed() {
            report.records_replayed += 1;
            report.items_skipped += apply_record(index, &e.record);
        }
        report.logs_replayed += 1;
        let committed = contents.committed_len;
        if committed < bytes.len() as u64 {
            if !last {
                return Err(PersistError::corrupt(format!(
                    "{} is damaged at byte {committed} but is not the newest log",
                    path.display()
                )));
            }
            b.truncate(&path, committed).map_err(PersistError::io("truncate", &path))?;
            b.sync(&path).map_err(PersistError::io("sync", &path))?;
            report.truncated_bytes += bytes.len() as u64 - committed;
        }
        Ok((committed, contents.version))
    }
}

/// Trains an untrained `Storage::Sq8` index as the logged writes trained it: the first batch
/// inserted into it trained on all its (valid) items, and a logged batch is the group of insert
/// records starting at the first one (split by `max_record_bytes`, joined by `continued`), so
/// replay trains on that whole group before applying its first record. Nothing for other
/// storages or a trained index.
fn train_from_first_group<'a>(index: &Index, entries: impl Iterator<Item = &'a wal::WalEntry>) {
    if index.check_trained().is_ok() {
        return;
    }
    let mut rows: Vec<&[f32]> = Vec::new();
    let mut started = false;
    for e in entries {
        match &e.record {
            WalRecord::Insert { dim, vectors, .. } | WalRecord::InsertItems { dim, vectors, .. }
                if *dim == index.dim() && *dim > 0 =>
            {
                started = true;
                rows.extend(vectors.chunks_exact(*dim).filter(|v| index.validate_vector(v).is_ok()));
            }
            // Deletes and updates before the first insert change nothing in an empty index.
            _ if !started => continue,
            _ => {}
        }
        if started && !e.continued {
            break;
        }
    }
    index.train_sq8_on(rows.len(), |i| rows[i]);
}

/// Applies a replayed record; returns how many of its items could not be applied.
fn apply_record(index: &Index, record: &WalRecord) -> usize {
    match record {
        WalRecord::Insert { ids, dim, vectors } => {
            if *dim != index.dim() || *dim == 0 {
                return ids.len();
            }
            let items: Vec<(u64, &[f32])> = ids.iter().copied().zip(vectors.chunks_exact(*dim)).collect();
            let opts = BatchOptions::new().mode(BatchMode::BestEffort);
            match index.insert_batch(&items, &opts) {
                Ok(r) => ids.len() - r.inserted,
                Err(_) => ids.len(),
            }
        }
        WalRecord::Delete { ids } => ids.iter().filter(|&&id| index.delete(id).is_err()).count(),
        WalRecord::Update { id, vector } => usize::from(index.update(*id, vector).is_err()),
        WalRecord::InsertItems { .. }
        | WalRecord::UpdateWithMetadata { .. }
        | WalRecord::PatchMetadata { .. }
        | WalRecord::SetExpiry { .. }
        | WalRecord::FieldIndex { .. } => crate::persist::durable_items::apply_record(index, record),
    }
}
