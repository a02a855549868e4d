//! [`DurableIndex`]: an index whose writes go through a write-ahead log, with snapshots and
//! crash recovery.
//!
//! # Files
//! A durable index owns a directory holding `snapshot-<G>.hnsw` files (the snapshot format) and
//! `wal-<G>.log` files (the log format), `G` being a 20-digit generation number. The state is
//! the newest loadable snapshot `S` plus every log of generation `>= S`, replayed in order.
//! Temporary files end in `.tmp`. A lock on the file `LOCK` keeps the directory open by one
//! `DurableIndex` at a time ([`PersistError::Locked`] otherwise).
//!
//! # Protocol
//! - A write is validated against the current state, then logged (one append and, under
//!   [`SyncPolicy::EveryBatch`], one sync for the whole batch), then applied in memory. Only
//!   what will be applied is logged, so replaying the log rebuilds the same contents. Writers are
//!   serialised; searches run concurrently with them.
//! - A failed append or sync is undone (the log is truncated back to its last good length) before
//!   anything else is appended, so a torn or failed record is never followed by a good one.
//! - [`checkpoint`](DurableIndex::checkpoint) syncs the log, writes `snapshot-<G+1>` (temporary
//!   file, sync, rename, directory sync), starts `wal-<G+1>`, and only then removes the files of
//!   older generations. From the rename on, nothing is appended to `wal-<G>` again, so whether or
//!   not the rename survives a crash, the recovered state contains every acknowledged write.
//! - Recovery ([`open`](DurableIndex::open)) syncs the directory, loads the newest snapshot
//!   (falling back to an older one only when the logs needed to replay from it are all there),
//!   replays the committed records of each log and truncates a torn tail of the last one.
//! - A log written in an older format version is replayed but never appended to: the first
//!   write after opening such a directory checkpoints first, so every log holds only the record
//!   kinds its header's version allows.
//! - Metadata, expiry and field indexes are logged too (see `durable_items`): a vector and its
//!   metadata in one record, and bulk operations by filter as the ids they matched.

use super::backend::{Backend, FileBackend};
use super::error::{PersistError, Result};
use super::snapshot::{load_from_bytes, save_to_bytes, temp_path, write_atomic};
use super::wal::{self, WalRecord, WAL_HEADER_LEN};
use crate::batch::{BatchError, BatchInsertable, BatchMode, BatchOptions, BatchReport};
use crate::config::IndexConfig;
use crate::error::IndexError;
use crate::index::Index;
use crate::progress::Tracker;
use crate::view::IndexView;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the log is synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Every write syncs the log before it returns: an acknowledged write survives any crash.
    #[default]
    EveryBatch,
    /// A write syncs the log if the last sync is at least this many milliseconds old; writes in
    /// between are acknowledged before they are durable. [`DurableIndex::sync`] forces a sync.
    IntervalMs(u64),
    /// The log is synced only by [`DurableIndex::sync`], checkpoints and drop.
    Never,
}

/// Options of a [`DurableIndex`].
///
/// ```
/// use hnsw_batch::persist::{DurableOptions, SyncPolicy};
/// let opts = DurableOptions::new().sync(SyncPolicy::IntervalMs(10)).checkpoint_log_bytes(None);
/// assert_eq!(opts.sync, SyncPolicy::IntervalMs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableOptions {
    /// When the log is synced.
    pub sync: SyncPolicy,
    /// Checkpoint automatically after a write once the log exceeds this many bytes (`None`:
    /// only explicit [`DurableIndex::checkpoint`] calls). A failed automatic checkpoint does not
    /// fail the write, which is already durable; it is counted in [`DurableStats`].
    pub checkpoint_log_bytes: Option<u64>,
    /// Largest log record payload; a batch larger than this is logged as a group of records
    /// (applied whole or not at all on recovery). Capped at [`wal::MAX_RECORD_LEN`].
    pub max_record_bytes: usize,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::EveryBatch,
            checkpoint_log_bytes: Some(256 << 20),
            max_record_bytes: 16 << 20,
        }
    }
}

impl DurableOptions {
    /// Defaults: sync every batch, checkpoint after 256 MiB of log, 16 MiB records.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the sync policy.
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }
    /// Sets the automatic checkpoint threshold.
    pub fn checkpoint_log_bytes(mut self, bytes: Option<u64>) -> Self {
        self.checkpoint_log_bytes = bytes;
        self
    }
    /// Sets the largest record payload.
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }
}

/// What [`DurableIndex::open`] did to recover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Whether the directory held no index and a new one was created.
    pub created: bool,
    /// Generation of the snapshot loaded.
    pub snapshot_generation: u64,
    /// Newer snapshots that could not be loaded and were passed over.
    pub snapshots_skipped: usize,
    /// Log files replayed.
    pub logs_replayed: usize,
    /// Records replayed.
    pub records_replayed: usize,
    /// Logged items that could not be applied on replay (0 unless files were tampered with).
    pub items_skipped: usize,
    /// Bytes of torn or uncommitted log tail cut off.
    pub truncated_bytes: u64,
}

/// Counters of a [`DurableIndex`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DurableStats {
    /// Current generation (of the newest snapshot written and of the log in use).
    pub generation: u64,
    /// Bytes in the current log.
    pub log_bytes: u64,
    /// Whether acknowledged writes are waiting for a sync.
    pub unsynced: bool,
    /// Checkpoints completed since open.
    pub checkpoints: u64,
    /// Automatic checkpoints that failed.
    pub auto_checkpoint_failures: u64,
    /// The last checkpoint error, if the last checkpoint failed.
    pub last_checkpoint_error: Option<String>,
    /// Why writes are refused, if the index is poisoned.
    pub poisoned: Option<String>,
}

pub(super) struct Writer {
    generation: u64,
    /// Whether `wal-<generation>` exists with a durable header.
    log_exists: bool,
    /// Format version of `wal-<generation>`: an older one is not appended to (the next write
    /// checkpoints first, starting a log of the current version).
    log_version: u32,
    /// Length of the log's known-good prefix (header and whole records).
    good_len: u64,
    /// Bytes past `good_len` may be in the file (a failed append or sync).
    dirty: bool,
    /// Records in the good prefix not yet synced.
    unsynced: bool,
    last_sync: Instant,
    pub(super) stats: DurableStats,
}

/// An [`Index`] made durable by a write-ahead log and snapshots (see the [module
/// documentation](self) for the protocol).
///
/// Writes ([`insert`](Self::insert), [`insert_batch`](Self::insert_batch),
/// [`delete`](Self::delete), [`delete_batch`](Self::delete_batch), [`update`](Self::update), and
/// those of metadata, expiry and field indexes: [`insert_items`](Self::insert_items),
/// [`set_metadata`](Self::set_metadata), [`delete_where`](Self::delete_where),
/// [`update_where`](Self::update_where), [`purge_expired`](Self::purge_expired), …) are
/// serialised and logged; reads (search, get, …) run concurrently with them and never touch the
/// disk. The type is `Send + Sync`: share it in an `Arc` between producer threads.
///
/// The wrapped index is not handed out: a write through it would bypass the log. Its reads are
/// lent as an [`IndexView`] ([`view`](Self::view)), to which a `DurableIndex` dereferences:
/// `durable.search(…)`, `durable.len()`, `durable.get(id)` are the view's methods.
///
/// ```
/// use hnsw_batch::persist::{DurableIndex, DurableOptions};
/// use hnsw_batch::{BatchOptions, IndexConfig, Metric};
/// let dir = std::env::temp_dir().join(format!("hnsw-doc-durable-{}", std::process::id()));
/// let cfg = IndexConfig::new(2, Metric::L2);
/// {
///     let db = DurableIndex::open(&dir, cfg.clone(), DurableOptions::new())?;
///     let items: Vec<(u64, Vec<f32>)> = (0..10).map(|i| (i, vec![i as f32, 0.0])).collect();
///     db.insert_batch(&items, &BatchOptions::new())?; // durable when it returns
///     db.delete(3)?;
///     db.checkpoint()?; // snapshot + fresh log
///     db.update(4, &[4.5, 0.0])?;
/// }
/// let db = DurableIndex::open(&dir, cfg, DurableOptions::new())?; // recovers
/// assert_eq!(db.len(), 9);
/// assert_eq!(db.search(&[4.4, 0.0], 1, 16)?[0].id, 4);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DurableIndex {
    dir: PathBuf,
    backend: Arc<dyn Backend>,
    options: DurableOptions,
    pub(super) index: Index,
    pub(super) writer: Mutex<Writer>,
    recovery: RecoveryReport,
}

impl std::fmt::Debug for DurableIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableIndex")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("index", &self.index)
            .finish()
    }
}

/// The lock file that keeps a directory open by one [`DurableIndex`] at a time.
const LOCK_NAME: &str = "LOCK";

fn snapshot_name(generation: u64) -> String {
    format!("snapshot-{generation:020}.hnsw")
}

fn log_name(generation: u64) -> String {
    format!("wal-{generation:020}.log")
}

/// What a directory entry is.
enum FileKind {
    Snapshot(u64),
    Log(u64),
    Temp,
    Other,
}

fn classify(path: &Path) -> FileKind {
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

impl DurableIndex {
    /// Opens (recovering) or creates the durable index in `dir` on the real filesystem.
    ///
    /// A new index gets `config`. An existing one keeps the parameters it was created with;
    /// `config` must then agree on dimension, metric and storage
    /// ([`PersistError::ConfigMismatch`] otherwise). A directory is open by one `DurableIndex` at
    /// a time ([`PersistError::Locked`] otherwise); dropping it releases the directory.
    pub fn open(dir: impl AsRef<Path>, config: IndexConfig, options: DurableOptions) -> Result<Self> {
        Self::open_with(Arc::new(FileBackend::new()), dir, config, options)
    }

    /// Like [`open`](Self::open), through `backend`.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        dir: impl AsRef<Path>,
        config: IndexConfig,
        options: DurableOptions,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let b = backend.as_ref();
        if !b.exists(&dir).map_err(PersistError::io("exists", &dir))? {
            b.create_dir_all(&dir).map_err(PersistError::io("create_dir_all", &dir))?;
            if let Some(parent) = dir.parent() {
                b.sync_dir(parent).map_err(PersistError::io("sync_dir", parent))?;
            }
        }
        let lock = dir.join(LOCK_NAME);
        if !b.try_lock(&lock).map_err(PersistError::io("lock", &lock))? {
            return Err(PersistError::Locked { path: lock });
        }
        let opened = Self::open_locked(backend.clone(), dir, config, options);
        if opened.is_err() {
            // Nothing to do about a failure to unlock: the error being returned matters more.
            let _ = backend.unlock(&lock);
        }
        opened
    }

    /// Recovery, with the directory locked.
    fn open_locked(
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

    /// Replays one log into `index`; returns its committed length after repair and its format
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

    // ----- writes ------------------------------------------------------------------------------

    fn log_path(&self, generation: u64) -> PathBuf {
        self.dir.join(log_name(generation))
    }

    /// Cuts the log back to its good prefix and syncs it.
    fn repair(&self, w: &mut Writer) -> Result<()> {
        let path = self.log_path(w.generation);
        let b = self.backend.as_ref();
        b.truncate(&path, w.good_len).map_err(PersistError::io("truncate", &path))?;
        b.sync(&path).map_err(PersistError::io("sync", &path))?;
        w.dirty = false;
        w.unsynced = false;
        w.last_sync = Instant::now();
        Ok(())
    }

    /// Makes the log ready for an append: created, and free of any failed tail.
    fn prepare_log(&self, w: &mut Writer) -> Result<()> {
        if let Some(reason) = &w.stats.poisoned {
            return Err(PersistError::Poisoned { reason: reason.clone() });
        }
        if !w.log_exists {
            create_log(self.backend.as_ref(), &self.dir, w.generation)?;
            w.log_exists = true;
            w.log_version = wal::WAL_VERSION;
            w.good_len = WAL_HEADER_LEN as u64;
            w.dirty = false;
            w.unsynced = false;
        }
        if w.dirty {
            self.repair(w)?;
        }
        if w.log_version < wal::WAL_VERSION {
            // An older build may read that log: start one of the current version instead.
            self.checkpoint_locked(w)?;
        }
        Ok(())
    }

    /// Appends framed records and syncs them as the policy says. On error nothing of them
    /// stays in the log (or the log is marked for repair before the next append).
    pub(super) fn commit(&self, w: &mut Writer, records: &[u8]) -> Result<()> {
        self.prepare_log(w)?;
        let path = self.log_path(w.generation);
        let b = self.backend.as_ref();
        w.dirty = true;
        if let Err(e) = b.append(&path, records) {
            let _ = self.repair(w);
            return Err(PersistError::Io { op: "append", path, source: e });
        }
        let sync_now = match self.options.sync {
            SyncPolicy::EveryBatch => true,
            SyncPolicy::IntervalMs(ms) => w.last_sync.elapsed() >= Duration::from_millis(ms),
            SyncPolicy::Never => false,
        };
        if sync_now {
            if let Err(e) = b.sync(&path) {
                let _ = self.repair(w);
                return Err(PersistError::Io { op: "sync", path, source: e });
            }
            w.unsynced = false;
            w.last_sync = Instant::now();
        } else {
            w.unsynced = true;
        }
        w.good_len += records.len() as u64;
        w.dirty = false;
        w.stats.log_bytes = w.good_len;
        Ok(())
    }

    pub(super) fn poison(&self, w: &mut Writer, reason: String) -> PersistError {
        w.stats.poisoned = Some(reason.clone());
        PersistError::Poisoned { reason }
    }

    pub(super) fn after_write(&self, w: &mut Writer) {
        if let Some(limit) = self.options.checkpoint_log_bytes {
            if w.good_len >= limit {
                if let Err(e) = self.checkpoint_locked(w) {
                    w.stats.auto_checkpoint_failures += 1;
                    w.stats.last_checkpoint_error = Some(e.to_string());
                }
            }
        }
    }

    /// How many more vectors fit: `max_elements` and the node space.
    pub(super) fn room(&self) -> (usize, u64) {
        let nodes = (u32::MAX as usize - 1).saturating_sub(self.index.allocated_nodes());
        let cap = self.index.capacity_room();
        if nodes < cap {
            (nodes, u32::MAX as u64 - 1)
        } else {
            (cap, self.index.capacity_limit() as u64)
        }
    }

    /// Inserts one vector; it is durable (under [`SyncPolicy::EveryBatch`]) when this returns.
    ///
    /// Errors: [`PersistError::Index`] with the errors of [`Index::insert`] (nothing is logged),
    /// [`PersistError::Io`] (nothing is applied), [`PersistError::Poisoned`].
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_with(id, vector, None, crate::Expiry::Never)
    }

    pub(super) fn max_record(&self) -> usize {
        self.options.max_record_bytes.clamp(1, wal::MAX_RECORD_LEN)
    }

    /// Inserts a batch with the semantics of [`BatchInsertable::insert_batch`]: the whole batch
    /// is validated first; in [`BatchMode::AllOrNothing`] one bad item rejects the batch
    /// ([`PersistError::Batch`], nothing logged), in [`BatchMode::BestEffort`] the valid items
    /// are inserted and each bad one is reported in [`BatchReport::failures`] with its position.
    /// The items that are inserted are logged with one append and one sync, before they are
    /// applied; the batch is durable (under [`SyncPolicy::EveryBatch`]) when this returns.
    ///
    /// The progress callback sees the items being applied (the valid ones). Cancellation is
    /// checked once, before anything is logged: a logged batch is always applied whole.
    pub fn insert_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport> {
        let view: Vec<(u64, &[f32])> = items.iter().map(|(id, v)| (*id, v.as_ref())).collect();
        self.insert_logged(&view, opts, Vec::new(), None)
    }

    /// Deletes `id`; durable when this returns. [`IndexError::NotFound`] if it is absent.
    pub fn delete(&self, id: u64) -> Result<()> {
        let mut w = self.writer.lock();
        if !self.index.contains(id) {
            return Err(IndexError::NotFound { id }.into());
        }
        self.commit(&mut w, &wal::encode_record(&WalRecord::Delete { ids: vec![id] }, false))?;
        if let Err(e) = self.index.delete(id) {
            return Err(self.poison(&mut w, format!("logged delete of id {id} failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Deletes every present id of `ids` with one log record, with the options and report of
    /// [`Index::delete_batch`]: absent ids count in [`BatchReport::not_found`]; a repeated id
    /// is [`BatchError::DuplicateId`], which under [`BatchMode::AllOrNothing`] (the default)
    /// refuses the batch ([`PersistError::Batch`], nothing logged) and under
    /// [`BatchMode::BestEffort`] is reported in `failures`.
    ///
    /// Cancellation is checked once, before anything is logged: a logged batch is always
    /// applied whole. Progress has a 0 % and a final event.
    pub fn delete_batch(&self, ids: &[u64], opts: &BatchOptions) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        let (distinct, failures) = crate::batch_ops::split_repeats(ids);
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone().into());
            }
        }
        let tracker = Tracker::new(ids.len(), opts.progress.as_ref(), opts.cancel.as_ref());
        tracker.start();
        if tracker.is_cancelled() {
            tracker.finish();
            let report = BatchReport { total: ids.len(), ..Default::default() };
            return Err(BatchError::Cancelled { report: Box::new(report) }.into());
        }
        let present: Vec<u64> = distinct.iter().copied().filter(|&id| self.index.contains(id)).collect();
        if !present.is_empty() {
            self.commit(&mut w, &wal::encode_record(&WalRecord::Delete { ids: present.clone() }, false))?;
            for &id in &present {
                if let Err(e) = self.index.delete(id) {
                    return Err(
                        self.poison(&mut w, format!("logged delete of id {id} failed in memory: {e}"))
                    );
                }
            }
            self.after_write(&mut w);
        }
        tracker.advance(ids.len());
        tracker.finish();
        Ok(BatchReport {
            total: ids.len(),
            deleted: present.len(),
            not_found: distinct.len() - present.len(),
            ids: present,
            failures,
            elapsed: start.elapsed(),
            ..Default::default()
        })
    }

    /// Replaces the vector of `id`; durable when this returns.
    ///
    /// Errors: those of [`Index::update`] (nothing logged), I/O, [`PersistError::Poisoned`].
    pub fn update(&self, id: u64, vector: &[f32]) -> Result<()> {
        let mut w = self.writer.lock();
        self.index.validate_vector(vector).map_err(IndexError::from)?;
        self.index.check_trained()?;
        if !self.index.contains(id) {
            return Err(IndexError::NotFound { id }.into());
        }
        if self.index.allocated_nodes() >= u32::MAX as usize - 1 {
            return Err(IndexError::CapacityExceeded { limit: u32::MAX as u64 - 1 }.into());
        }
        self.commit(&mut w, &wal::encode_record(&WalRecord::Update { id, vector: vector.to_vec() }, false))?;
        if let Err(e) = self.index.update(id, vector) {
            return Err(self.poison(&mut w, format!("logged update of id {id} failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Syncs the log now (useful under [`SyncPolicy::IntervalMs`] and [`SyncPolicy::Never`]):
    /// every write acknowledged before the call is durable when it returns `Ok`.
    pub fn sync(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if w.dirty {
            return self.repair(&mut w);
        }
        if w.log_exists && w.unsynced {
            let path = self.log_path(w.generation);
            self.backend.sync(&path).map_err(PersistError::io("sync", &path))?;
            w.unsynced = false;
            w.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Writes a snapshot of the current state and starts a new, empty log; then removes the
    /// files of older generations. Writes wait while it runs; searches do not.
    ///
    /// A crash or an error at any point leaves a directory that recovers to the current state
    /// (every acknowledged write included). After an error the index keeps working; the next
    /// checkpoint retries.
    pub fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if let Some(reason) = &w.stats.poisoned {
            return Err(PersistError::Poisoned { reason: reason.clone() });
        }
        self.checkpoint_locked(&mut w)
    }

    fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        let r = self.checkpoint_steps(w);
        match &r {
            Ok(()) => {
                w.stats.checkpoints += 1;
                w.stats.last_checkpoint_error = None;
            }
            Err(e) => w.stats.last_checkpoint_error = Some(e.to_string()),
        }
        r
    }

    fn checkpoint_steps(&self, w: &mut Writer) -> Result<()> {
        let b = self.backend.as_ref();
        // The current log must be complete on disk: if the new snapshot were lost, recovery
        // falls back to the old snapshot and this log.
        if w.log_exists {
            if w.dirty {
                self.repair(w)?;
            } else if w.unsynced {
                let path = self.log_path(w.generation);
                b.sync(&path).map_err(PersistError::io("sync", &path))?;
                w.unsynced = false;
                w.last_sync = Instant::now();
            }
        }
        let next = w.generation + 1;
        let path = self.dir.join(snapshot_name(next));
        let tmp = temp_path(&path)?;
        b.write(&tmp, &save_to_bytes(&self.index)).map_err(PersistError::io("write", &tmp))?;
        b.sync(&tmp).map_err(PersistError::io("sync", &tmp))?;
        b.rename(&tmp, &path).map_err(PersistError::io("rename", &tmp))?;
        // From here the new snapshot may survive a crash: the old log must never grow again.
        w.generation = next;
        w.log_exists = false;
        w.good_len = 0;
        w.dirty = false;
        w.unsynced = false;
        w.stats.generation = next;
        w.stats.log_bytes = 0;
        b.sync_dir(&self.dir).map_err(PersistError::io("sync_dir", &self.dir))?;
        create_log(b, &self.dir, next)?;
        w.log_exists = true;
        w.log_version = wal::WAL_VERSION;
        w.good_len = WAL_HEADER_LEN as u64;
        w.stats.log_bytes = w.good_len;
        // The new snapshot is durable: older generations are obsolete.
        let mut removed = false;
        for p in b.list(&self.dir).map_err(PersistError::io("list", &self.dir))? {
            let old = match classify(&p) {
                FileKind::Snapshot(g) | FileKind::Log(g) => g < next,
                FileKind::Temp | FileKind::Other => false,
            };
            if old {
                remove_file(b, &p)?;
                removed = true;
            }
        }
        if removed {
            b.sync_dir(&self.dir).map_err(PersistError::io("sync_dir", &self.dir))?;
        }
        Ok(())
    }

    // ----- reads -------------------------------------------------------------------------------

    /// The directory holding the index files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery did when this index was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Current counters.
    pub fn stats(&self) -> DurableStats {
        let w = self.writer.lock();
        let mut s = w.stats.clone();
        s.unsynced = w.unsynced;
        s
    }

    /// The index's reads (search, get, metadata, checks, …): see [`IndexView`]. A
    /// `DurableIndex` also dereferences to it, so `durable.search(…)` calls
    /// [`IndexView::search`]. The index itself is not handed out: a write through it would
    /// bypass the log.
    pub fn view(&self) -> &IndexView {
        self.index.view()
    }

    /// Sets the default beam width of searches that pass none (see [`Index::set_ef`]). Not
    /// logged: a reopened index starts from [`IndexConfig::ef_search`] again.
    pub fn set_ef(&self, ef: usize) -> crate::Result<()> {
        self.index.set_ef(ef)
    }

    /// A snapshot of the current state in the snapshot format (see [`super::save_to_bytes`]),
    /// taken while writes wait.
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let _w = self.writer.lock();
        save_to_bytes(&self.index)
    }
}

impl std::ops::Deref for DurableIndex {
    type Target = IndexView;

    fn deref(&self) -> &IndexView {
        self.index.view()
    }
}

impl Drop for DurableIndex {
    fn drop(&mut self) {
        let w = self.writer.get_mut();
        if w.log_exists && w.unsynced && !w.dirty {
            // Best effort: an error here has nowhere to go, and the writes were acknowledged
            // under a policy that did not promise durability.
            let _ = self.backend.sync(&self.dir.join(log_name(w.generation)));
        }
        let _ = self.backend.unlock(&self.dir.join(LOCK_NAME));
    }
}

/// Removes a file; one that is already gone is fine.
fn remove_file(b: &dyn Backend, path: &Path) -> Result<()> {
    match b.remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PersistError::Io { op: "remove", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

/// Creates `wal-<generation>` with its header, durably (file and directory entry).
fn create_log(b: &dyn Backend, dir: &Path, generation: u64) -> Result<()> {
    let path = dir.join(log_name(generation));
    b.write(&path, &wal::encode_header(generation)).map_err(PersistError::io("write", &path))?;
    b.sync(&path).map_err(PersistError::io("sync", &path))?;
    b.sync_dir(dir).map_err(PersistError::io("sync_dir", dir))
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
        | WalRecord::FieldIndex { .. } => super::durable_items::apply_record(index, record),
    }
}
