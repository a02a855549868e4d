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

mod checkpoint;
mod commit;
mod files;
mod recovery;

use self::files::{log_name, LOCK_NAME};
use super::backend::{Backend, FileBackend};
use super::error::{PersistError, Result};
use super::snapshot::save_to_bytes;
use super::wal::{self, WalRecord};
use crate::batch::{BatchError, BatchMode, BatchOptions, BatchReport};
use crate::config::IndexConfig;
use crate::error::IndexError;
use crate::index::Index;
use crate::progress::Tracker;
use crate::view::IndexView;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

    /// Inserts a batch with the semantics of [`BatchInsertable::insert_batch`](crate::BatchInsertable::insert_batch): the whole batch
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
        self.check_update(id, vector)?;
        self.commit(&mut w, &wal::encode_record(&WalRecord::Update { id, vector: vector.to_vec() }, false))?;
        if let Err(e) = self.index.update(id, vector) {
            return Err(self.poison(&mut w, format!("logged update of id {id} failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// What refuses an update before anything is logged: the vector, an untrained `sq8` index,
    /// an absent id, no node number left. Called with the writer lock held, so the id cannot
    /// go away between this check and the log record.
    pub(super) fn check_update(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.index.validate_vector(vector).map_err(IndexError::from)?;
        self.index.check_trained()?;
        if !self.index.contains(id) {
            return Err(IndexError::NotFound { id }.into());
        }
        if self.index.allocated_nodes() >= u32::MAX as usize - 1 {
            return Err(IndexError::CapacityExceeded { limit: u32::MAX as u64 - 1 }.into());
        }
        Ok(())
    }

    /// Syncs the log now (useful under [`SyncPolicy::IntervalMs`] and [`SyncPolicy::Never`]):
    /// every write acknowledged before the call is durable when it returns `Ok`.
    pub fn sync(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if w.dirty {
            return self.truncate_to_good_prefix(&mut w);
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
