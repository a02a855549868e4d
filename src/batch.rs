//! The [`BatchInsertable`] trait: parallel batch insert with typed errors, modes, progress and
//! cancellation. The design is recorded in `rfcs/0001-batch-insert.md`.

use crate::error::phrase;
use crate::error::IndexError;
use crate::index::{Index, VectorError};
use crate::progress::{CancelFn, ProgressFn, Tracker};
use crate::scratch::with_scratch;
use parking_lot::Mutex;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a vector was rejected.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// A component is NaN or infinite.
    NonFinite {
        /// Position of the component.
        component: usize,
        /// Its value.
        value: f32,
    },
    /// Zero norm under the cosine metric.
    ZeroNorm,
    /// The item's metadata breaks a [`MetaLimits`](crate::MetaLimits) limit or value rule
    /// (items given with metadata, [`Index::insert_items`](crate::Index::insert_items)).
    Metadata(crate::metadata::MetaError),
    /// A component the storage type cannot hold (e.g. 0.5 in `u8` storage, 70000.0 in `f16`).
    Unrepresentable {
        /// Position of the component.
        component: usize,
        /// Its value.
        value: f32,
        /// The storage element type ([`Storage::name`](crate::Storage::name)).
        storage: &'static str,
    },
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            InvalidReason::Metadata(ref e) => write!(f, "invalid metadata: {e}"),
            InvalidReason::NonFinite { component, value } => {
                write!(f, "{}", phrase::non_finite(component, value))
            }
            InvalidReason::ZeroNorm => f.write_str(phrase::ZERO_VECTOR),
            InvalidReason::Unrepresentable { component, value, storage } => {
                write!(f, "{}", phrase::unrepresentable(component, value, storage))
            }
        }
    }
}

/// Errors of a batch operation (insert, update, delete). `index` is the item's position in the
/// input.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum BatchError {
    /// An item's vector has the wrong length.
    #[error("item {index} (id {id}): {}", self.reason())]
    DimensionMismatch {
        /// Position of the item in the batch.
        index: usize,
        /// Its id.
        id: u64,
        /// Index dimension.
        expected: usize,
        /// The item's length.
        actual: usize,
    },
    /// An item's vector holds NaN or infinite values, has zero norm under cosine, or cannot be
    /// stored in the configured element type.
    #[error("item {index} (id {id}): {}", self.reason())]
    InvalidVector {
        /// Position of the item in the batch.
        index: usize,
        /// Its id.
        id: u64,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// An item's id appears earlier in the batch or is already in the index.
    #[error("item {index} (id {id}): {}", self.reason())]
    DuplicateId {
        /// Position of the item in the batch.
        index: usize,
        /// The duplicate id.
        id: u64,
        /// Position of the earlier item with this id, or `None` if the index holds it.
        first_index: Option<usize>,
    },
    /// Inserting the item would exceed `max_elements` or the `u32` node space.
    #[error("item {index} (id {id}): {}", self.reason())]
    CapacityExceeded {
        /// Position of the item in the batch.
        index: usize,
        /// Its id.
        id: u64,
        /// The limit.
        limit: u64,
    },
    /// The cancel check returned `true` (or a progress or cancel callback panicked). The
    /// report says what the call committed before it stopped: those items are in the index
    /// (inserted and searchable, updated, or deleted) and [`BatchReport::ids`] lists them; the
    /// others are untouched and can be sent again.
    #[error("{}", self.reason())]
    Cancelled {
        /// What was committed before the batch stopped.
        report: Box<BatchReport>,
    },
}

impl BatchError {
    /// Position of the offending item, if the error concerns one.
    pub fn index(&self) -> Option<usize> {
        match *self {
            BatchError::DimensionMismatch { index, .. }
            | BatchError::InvalidVector { index, .. }
            | BatchError::DuplicateId { index, .. }
            | BatchError::CapacityExceeded { index, .. } => Some(index),
            BatchError::Cancelled { .. } => None,
        }
    }

    /// What is wrong, without the item's position: the same words as the [`IndexError`] of the
    /// same fault.
    ///
    /// [`IndexError`]: crate::IndexError
    pub fn reason(&self) -> impl std::fmt::Display + '_ {
        phrase::Phrase(move |f| match self {
            BatchError::DimensionMismatch { expected, actual, .. } => {
                write!(f, "{}", phrase::dimension(*expected, *actual))
            }
            BatchError::InvalidVector { reason, .. } => write!(f, "{reason}"),
            BatchError::DuplicateId { id, first_index, .. } => {
                write!(f, "{}", phrase::duplicate(*id, *first_index))
            }
            BatchError::CapacityExceeded { limit, .. } => write!(f, "{}", phrase::capacity(*limit)),
            BatchError::Cancelled { report } => {
                write!(f, "cancelled after committing {} of {} items", report.ids.len(), report.total)
            }
        })
    }

    /// The batch error of item `index` for an [`IndexError`] about the item (its vector, id or
    /// metadata, or a full index); `None` for the errors no item can cause in a batch (not
    /// found, untrained storage, bad parameters or filters).
    pub(crate) fn from_index_error(e: IndexError, index: usize, id: u64) -> Option<BatchError> {
        let invalid = |reason| Some(BatchError::InvalidVector { index, id, reason });
        match e {
            IndexError::DimensionMismatch { expected, actual } => {
                Some(BatchError::DimensionMismatch { index, id, expected, actual })
            }
            IndexError::MatrixLength { .. } => None,
            IndexError::NonFiniteValue { component, value } => {
                invalid(InvalidReason::NonFinite { component, value })
            }
            IndexError::ZeroVector => invalid(InvalidReason::ZeroNorm),
            IndexError::UnrepresentableValue { component, value, storage } => {
                invalid(InvalidReason::Unrepresentable { component, value, storage })
            }
            IndexError::InvalidMetadata(m) => invalid(InvalidReason::Metadata(m)),
            IndexError::DuplicateId { .. } => Some(BatchError::DuplicateId { index, id, first_index: None }),
            IndexError::CapacityExceeded { limit } => Some(BatchError::CapacityExceeded { index, id, limit }),
            IndexError::NotFound { .. }
            | IndexError::InvalidFilter(_)
            | IndexError::Refused(_)
            | IndexError::Sq8Untrained
            | IndexError::InvalidParameter { .. } => None,
        }
    }

    /// The batch error of item `index` for a vector rejected by validation.
    pub(crate) fn from_vector_error(e: VectorError, index: usize, id: u64) -> BatchError {
        let invalid = |reason| BatchError::InvalidVector { index, id, reason };
        match e {
            VectorError::Dimension { expected, actual } => {
                BatchError::DimensionMismatch { index, id, expected, actual }
            }
            VectorError::NonFinite { component, value } => {
                invalid(InvalidReason::NonFinite { component, value })
            }
            VectorError::Unrepresentable { component, value, storage } => {
                invalid(InvalidReason::Unrepresentable { component, value, storage: storage.name() })
            }
            VectorError::ZeroNorm => invalid(InvalidReason::ZeroNorm),
        }
    }
}

/// What a batch does when an item is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// Validate the whole batch first; one bad item rejects the batch and changes nothing.
    ///
    /// For the slice and flat inserts, [`Index::update_batch`] and [`Index::delete_batch`]
    /// this holds for the whole call whatever `batch_size`. An insert reserves every id and
    /// claims all the capacity before anything is linked, so a duplicate (also one inserted
    /// concurrently since validation) or a full index is found while the index is unchanged.
    /// The exceptions: [`BatchError::Cancelled`] (what was committed before the cancel stays,
    /// and its report lists it), and the process running out of memory or of `u32` node
    /// numbers while linking, which no check beforehand can see (then the call returns
    /// `CapacityExceeded` for the first item that could not get a node, and the items linked
    /// before it stay). The iterator form is all-or-nothing per chunk only.
    ///
    /// An absent id in an update or delete is not a bad item: it counts in
    /// [`BatchReport::not_found`] in either mode.
    #[default]
    AllOrNothing,
    /// Apply every valid item; report each bad one with its position and error. Every item is
    /// accounted for: `inserted + updated + deleted + not_found + failures.len() == total`
    /// (unless cancelled).
    BestEffort,
}

/// The fewest items a batch needs for [`BatchOptions::coded_walk`] to apply: below it, coding
/// the vectors already in the index costs more than the walks save.
pub const CODED_WALK_MIN_BATCH: usize = 1024;

/// Options of every batch operation: inserts ([`BatchInsertable`]), [`Index::update_batch`],
/// [`Index::delete_batch`] and their [`DurableIndex`](crate::DurableIndex) forms.
///
/// ```
/// use hnsw_batch::{BatchOptions, BatchMode};
/// let opts = BatchOptions::new().mode(BatchMode::BestEffort).batch_size(50_000).on_progress(|p| {
///     eprintln!("{:.0} %", 100.0 * p.fraction());
/// });
/// assert_eq!(opts.mode, BatchMode::BestEffort);
/// ```
#[derive(Clone, Default)]
pub struct BatchOptions {
    /// Failure handling (default [`BatchMode::AllOrNothing`]).
    pub mode: BatchMode,
    /// Items handled per chunk. **0 (the default) means the whole input is one chunk**, in
    /// every batch operation. Chunks bound the per-batch bookkeeping memory of an insert, and
    /// the memory of the iterator form, which buffers one chunk at a time (with 0 it reads its
    /// whole input before inserting anything: give a size to stream a large input).
    ///
    /// It never changes what is atomic in the slice and flat forms: an all-or-nothing call
    /// validates all its items (and an insert reserves their ids and capacity) before the first
    /// chunk, so it fails before anything changes or not at all (see
    /// [`BatchMode::AllOrNothing`]). The iterator form cannot see past its buffer, so there each
    /// chunk is all-or-nothing on its own, and an error reports what earlier chunks committed
    /// ([`IterBatchError`]).
    pub batch_size: usize,
    /// Progress callback: one 0 % event, events at most every 1 %, one final event. Runs on a
    /// worker thread, never under an index lock.
    pub progress: Option<ProgressFn>,
    /// Cancellation check, polled before the first item and then about every 0.5 % of the
    /// batch. When it returns `true` the call stops taking items, finishes those under way and
    /// returns [`BatchError::Cancelled`] with the report of what was committed.
    pub cancel: Option<CancelFn>,
    /// Inserts into an `f32` or `f16` index: gather each item's candidates on temporary 8-bit
    /// codes of the vectors instead of the stored vectors (default `false`). The walk that finds
    /// an insert's candidates is bound by the bytes it reads, and a code is a quarter of an
    /// `f32` row, so a large batch of float embeddings goes in about a third faster, with the
    /// same recall: links are still chosen with exact distances. The cost is memory while the
    /// call runs, `dim + 5` bytes per node (about 23 % of a 384-dimension `f32` index, more than
    /// the under-10 % a batch needs otherwise), freed when it returns. Applies to batches of at
    /// least [`CODED_WALK_MIN_BATCH`] items and one per 64 vectors already in the index (below
    /// that, coding the vectors already there costs more than it saves); ignored for `u8` and
    /// `sq8`, which walk bytes already. See `rfcs/0005-build-under-another-storage.md`.
    pub coded_walk: bool,
}

impl std::fmt::Debug for BatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchOptions")
            .field("mode", &self.mode)
            .field("batch_size", &self.batch_size)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel.is_some())
            .field("coded_walk", &self.coded_walk)
            .finish()
    }
}

impl BatchOptions {
    /// Defaults: all-or-nothing, the whole input as one chunk (`batch_size` 0), no callbacks.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the failure mode.
    pub fn mode(mut self, mode: BatchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the chunk size.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Sets the progress callback.
    pub fn on_progress(mut self, f: impl Fn(crate::BatchProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
    /// Sets the cancellation check.
    pub fn cancel_when(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancel = Some(Arc::new(f));
        self
    }
    /// Sets [`coded_walk`](Self::coded_walk).
    pub fn coded_walk(mut self, on: bool) -> Self {
        self.coded_walk = on;
        self
    }
}

/// One failed item of a best-effort batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFailure {
    /// Position in the input.
    pub index: usize,
    /// The item's id.
    pub id: u64,
    /// What went wrong.
    pub error: BatchError,
}

/// Outcome of a batch operation; the same shape for inserts, updates and deletes by ids, for
/// the bulk operations by filter ([`Index::delete_where`], [`Index::delete_where_filter`],
/// [`Index::update_where`], [`Index::purge_expired`] and their
/// [`DurableIndex`](crate::DurableIndex) forms), and inside [`BatchError::Cancelled`] for what a
/// cancelled call committed.
///
/// For an operation by filter, `total` is the number of items that matched when the call
/// started, `ids` the ids it changed in ascending order, and `not_found` the matched items it
/// skipped because they had changed meanwhile (deleted, or patched out of the filter, by another
/// thread). A dry run ([`DeleteOptions::dry_run`](crate::DeleteOptions::dry_run)) changes
/// nothing and returns the report the real call would return on the same state: `ids` are the
/// matched ids, `deleted` (or `updated`) counts them, and [`dry_run`](Self::dry_run) is set. A
/// real call never changes more items than a dry run reported for the same state.
///
/// ```
/// use hnsw_batch::{DeleteOptions, Index, IndexConfig, Metric};
/// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
/// for i in 0..6 { index.insert(i, &[i as f32])?; }
/// let odd = |id: u64| id % 2 == 1;
/// let plan = index.delete_where(odd, &DeleteOptions::new().dry_run(true)).unwrap();
/// assert!(plan.dry_run && index.len() == 6);
/// assert_eq!((plan.total, plan.deleted, plan.ids.as_slice()), (3, 3, &[1, 3, 5][..]));
/// let done = index.delete_where(odd, &DeleteOptions::new()).unwrap();
/// assert_eq!((done.dry_run, done.ids), (false, plan.ids));
/// # Ok::<(), hnsw_batch::IndexError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchReport {
    /// Items in the input (for an operation by filter: the items that matched).
    pub total: usize,
    /// The ids the call changed (inserted, updated or deleted), in input order (ascending for
    /// an operation by filter): after a cancel, exactly the items that went in. Its length is
    /// `inserted + updated + deleted`. In a dry run, the ids the real call would change.
    pub ids: Vec<u64>,
    /// Items inserted.
    pub inserted: usize,
    /// Items that replaced an existing vector.
    pub updated: usize,
    /// Items deleted.
    pub deleted: usize,
    /// Ids that were not present (deletes and updates).
    pub not_found: usize,
    /// Failed items in input order.
    pub failures: Vec<BatchFailure>,
    /// Wall-clock time of the call.
    pub elapsed: Duration,
    /// Whether this is the report of a dry run: nothing was changed, and `ids` and the counts
    /// say what the call would have changed. Always `false` outside the operations by filter.
    pub dry_run: bool,
}

/// Inserting many vectors in one call, in parallel on the caller's rayon pool.
///
/// # What is atomic
///
/// - [`insert_batch`](Self::insert_batch) and [`insert_batch_flat`](Self::insert_batch_flat) in
///   [`BatchMode::AllOrNothing`]: the whole call, whatever `batch_size`: `Ok` with every item
///   inserted, or `Err` and the index as it was (except for the cases listed on
///   [`BatchMode::AllOrNothing`]: cancellation and running out of memory or node numbers).
/// - In [`BatchMode::BestEffort`] every item is either inserted or reported in
///   [`BatchReport::failures`] with its position: `inserted + failures.len() == total`.
/// - [`insert_batch_iter`](Self::insert_batch_iter): each chunk of `batch_size` items on its
///   own; an error says what was committed before it ([`IterBatchError`]).
/// - Cancellation keeps the items inserted so far (fully linked, searchable) and gives back the
///   ids and capacity of the rest; [`BatchError::Cancelled`] carries the report of what went
///   in. A panicking progress or cancel callback does the same and
///   the panic then propagates to the caller: the index stays consistent, every item of the
///   batch is either inserted or free to insert again.
///
/// The thread count is the current rayon pool's: call inside
/// [`rayon::ThreadPool::install`] to choose it.
///
/// ```
/// use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
/// let index = Index::new(IndexConfig::new(3, Metric::L2))?;
/// let items: Vec<(u64, Vec<f32>)> = (0..100).map(|i| (i, vec![i as f32, 0.0, 1.0])).collect();
/// let report = index.insert_batch(&items, &BatchOptions::new()).unwrap();
/// assert_eq!(report.inserted, 100);
/// let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
/// let more: Vec<(u64, Vec<f32>)> = (100..200).map(|i| (i, vec![i as f32, 1.0, 0.0])).collect();
/// pool.install(|| index.insert_batch(&more, &BatchOptions::new())).unwrap();
/// assert_eq!(index.len(), 200);
/// # Ok::<(), hnsw_batch::IndexError>(())
/// ```
pub trait BatchInsertable {
    /// Inserts `(id, vector)` items given as a slice (vectors are borrowed, never copied).
    /// All-or-nothing applies to the whole call, whatever `opts.batch_size`.
    fn insert_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError>;

    /// Inserts a row-major matrix `flat` (`ids.len()` rows) under `ids`. All-or-nothing applies
    /// to the whole call, whatever `opts.batch_size`.
    fn insert_batch_flat(
        &self,
        ids: &[u64],
        flat: &[f32],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError>;

    /// Inserts from an iterator, buffering `opts.batch_size` items at a time, so inputs larger
    /// than memory work. With `batch_size` 0 (the default) the whole input is one chunk: it is
    /// read to the end before anything is inserted.
    ///
    /// All-or-nothing applies per chunk, since a later chunk is not read yet when an earlier one
    /// is inserted: on error the chunks before the failing one stay inserted, and
    /// [`IterBatchError::committed`] reports what went in before the error. Error
    /// positions are positions in the whole input. Progress events count the items of the
    /// current chunk.
    fn insert_batch_iter<I, V>(&self, items: I, opts: &BatchOptions) -> Result<BatchReport, IterBatchError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]> + Sync;
}

/// The error of [`BatchInsertable::insert_batch_iter`]: the error that stopped the input, and
/// the report of what was inserted before it (those items stay in the index and are
/// searchable).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("after committing {} items: {error}", .committed.inserted)]
pub struct IterBatchError {
    /// What was inserted (and kept) before the error: the earlier chunks, plus the items of
    /// the failing chunk that went in before a cancel (or before node memory ran out; any other
    /// error rejects its chunk whole). `total` counts the items read so far.
    pub committed: Box<BatchReport>,
    /// What stopped the batch; its position is in the whole input.
    pub error: BatchError,
}

/// Largest chunk linked in one go (positions inside a chunk are kept as `u32`).
const MAX_CHUNK: usize = 1 << 30;

/// Items below which a batch into a small index is linked one by one, so the graph is connected
/// before threads start linking against it.
fn serial_seed_len(index: &Index) -> usize {
    (4 * index.cfg.m0).saturating_sub(index.len())
}

/// The chunk length of a batch of `len` items under `batch_size` (0: the whole input).
pub(crate) fn chunk_len(batch_size: usize, len: usize) -> usize {
    if batch_size == 0 { len } else { batch_size }.clamp(1, MAX_CHUNK)
}

/// Why a batch stopped early.
pub(crate) enum Stop {
    /// The cancel check said so (or a callback panicked).
    Cancelled,
    /// An all-or-nothing batch met a bad item.
    Failed(BatchError),
}

impl BatchReport {
    /// Adds the report of a chunk whose first item is at `offset` in the whole input.
    fn absorb(&mut self, chunk: BatchReport, offset: usize) {
        self.inserted += chunk.inserted;
        self.updated += chunk.updated;
        self.deleted += chunk.deleted;
        self.not_found += chunk.not_found;
        self.ids.extend(chunk.ids);
        self.failures.extend(chunk.failures.into_iter().map(|mut f| {
            f.index += offset;
            f.error = shift_index(f.error, offset);
            f
        }));
    }
}

impl BatchInsertable for Index {
    fn insert_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError> {
        self.insert_batch_counted(items, opts, Vec::new(), &|_| None).map_err(|(e, _)| e)
    }

    fn insert_batch_flat(
        &self,
        ids: &[u64],
        flat: &[f32],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError> {
        let dim = self.cfg.dim;
        if flat.len() != ids.len() * dim {
            let actual = if ids.is_empty() { flat.len() } else { flat.len() / ids.len() };
            return Err(BatchError::DimensionMismatch {
                index: 0,
                id: ids.first().copied().unwrap_or(0),
                expected: dim,
                actual,
            });
        }
        let items: Vec<(u64, &[f32])> = ids.iter().copied().zip(flat.chunks_exact(dim)).collect();
        self.insert_batch(&items, opts)
    }

    fn insert_batch_iter<I, V>(&self, items: I, opts: &BatchOptions) -> Result<BatchReport, IterBatchError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]> + Sync,
    {
        let start = Instant::now();
        let mut it = items.into_iter();
        let mut total = BatchReport::default();
        let mut offset = 0usize;
        loop {
            let buf: Vec<(u64, V)> = match opts.batch_size {
                0 => it.by_ref().collect(),
                n => it.by_ref().take(n).collect(),
            };
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            let chunk_opts = BatchOptions { batch_size: 0, ..opts.clone() };
            match self.insert_batch_counted(&buf, &chunk_opts, Vec::new(), &|_| None) {
                Ok(r) => total.absorb(r, offset),
                Err((e, part)) => {
                    total.absorb(*part, offset);
                    total.total = offset + n;
                    total.elapsed = start.elapsed();
                    let error = match e {
                        BatchError::Cancelled { .. } => {
                            BatchError::Cancelled { report: Box::new(total.clone()) }
                        }
                        e => shift_index(e, offset),
                    };
                    return Err(IterBatchError { committed: Box::new(total), error });
                }
            }
            offset += n;
        }
        total.total = offset;
        total.elapsed = start.elapsed();
        Ok(total)
    }
}

fn shift_index(e: BatchError, by: usize) -> BatchError {
    match e {
        BatchError::DimensionMismatch { index, id, expected, actual } => {
            BatchError::DimensionMismatch { index: index + by, id, expected, actual }
        }
        BatchError::InvalidVector { index, id, reason } => {
            BatchError::InvalidVector { index: index + by, id, reason }
        }
        BatchError::DuplicateId { index, id, first_index } => {
            BatchError::DuplicateId { index: index + by, id, first_index: first_index.map(|i| i + by) }
        }
        BatchError::CapacityExceeded { index, id, limit } => {
            BatchError::CapacityExceeded { index: index + by, id, limit }
        }
        c @ BatchError::Cancelled { .. } => c,
    }
}

impl Index {
    /// [`BatchInsertable::insert_batch`] with side data (see `insert_batch_counted`).
    pub(crate) fn insert_batch_side<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
        extra_failures: Vec<BatchFailure>,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Result<BatchReport, BatchError> {
        self.insert_batch_counted(items, opts, extra_failures, side).map_err(|(e, _)| e)
    }

    /// [`BatchInsertable::insert_batch`], also returning on error the report of what went in
    /// anyway (a cancel, or running out of node memory), for the iterator form's `committed`.
    ///
    /// Also carries side data: items in `extra_failures` (metadata refused before the call) are
    /// reported and skipped like invalid vectors, and `side(i)` is attached to item `i` before it
    /// is published.
    fn insert_batch_counted<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
        extra_failures: Vec<BatchFailure>,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Result<BatchReport, (BatchError, Box<BatchReport>)> {
        let start = Instant::now();
        let tracker = Tracker::new(items.len(), opts.progress.as_ref(), opts.cancel.as_ref());
        let mut report = BatchReport { total: items.len(), ..Default::default() };
        let mut failures = self.validate_batch_with(items, extra_failures);
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                report.elapsed = start.elapsed();
                return Err((f.error.clone(), Box::new(report)));
            }
        }
        let untrained = self.check_trained().is_err();
        let valid: Vec<usize> = if untrained || opts.coded_walk {
            let mut bad: Vec<usize> = failures.iter().map(|f| f.index).collect();
            bad.sort_unstable();
            (0..items.len()).filter(|i| bad.binary_search(i).is_err()).collect()
        } else {
            // Not needed: a plain batch keeps its extra memory under 10 % of the index.
            Vec::new()
        };
        // The first batch into an untrained `sq8` index trains it on its valid items.
        if untrained {
            self.train_sq8_on(valid.len(), |j| items[valid[j]].1.as_ref());
        }
        let walk = if opts.coded_walk {
            crate::walk_codes::WalkSession::begin(self, valid.len(), |j| items[valid[j]].1.as_ref())
        } else {
            None
        };
        tracker.start();
        let chunk = chunk_len(opts.batch_size, items.len());
        let result = self.insert_chunks(items, &mut failures, opts.mode, chunk, &tracker, &mut report, side);
        tracker.finish();
        drop(walk);
        failures.sort_by_key(|f| f.index);
        report.failures = failures;
        report.elapsed = start.elapsed();
        match result {
            Ok(()) => {
                if self.duplicates_seen.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    // Exact duplicates can form groups that only link among themselves; this is
                    // the one case where a batch pays for a whole-graph pass (`repair.rs`).
                    self.repair();
                }
                Ok(report)
            }
            Err(Stop::Cancelled) => {
                let report = Box::new(report);
                Err((BatchError::Cancelled { report: report.clone() }, report))
            }
            Err(Stop::Failed(e)) => Err((e, Box::new(report))),
        }
    }

    /// Vector checks of every item, in parallel, in input order.
    pub(crate) fn validate_vectors<V: AsRef<[f32]> + Sync>(&self, items: &[(u64, V)]) -> Vec<BatchFailure> {
        items
            .par_iter()
            .enumerate()
            .filter_map(|(i, (id, v))| {
                self.validate_vector(v.as_ref()).err().map(|e| BatchFailure {
                    index: i,
                    id: *id,
                    error: BatchError::from_vector_error(e, i, *id),
                })
            })
            .collect()
    }

    /// Checks every item without changing anything: vector validity (in parallel), duplicates
    /// inside the batch and against the index. Failures come back in input order.
    /// [`validate_batch`](Self::validate_batch) merged with failures found elsewhere (side
    /// data), one per item in input order: an item's vector error is reported before its
    /// metadata error, as `Index::insert_items` and `DurableIndex::insert_items` both report.
    pub(crate) fn validate_batch_with<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        extra: Vec<BatchFailure>,
    ) -> Vec<BatchFailure> {
        let mut failures = self.validate_batch(items);
        if !extra.is_empty() {
            failures.extend(extra);
            // Stable sort: of two failures of one item the vector's (pushed first) stays first.
            failures.sort_by_key(|f| f.index);
            failures.dedup_by_key(|f| f.index);
        }
        failures
    }

    pub(crate) fn validate_batch<V: AsRef<[f32]> + Sync>(&self, items: &[(u64, V)]) -> Vec<BatchFailure> {
        let mut failures = self.validate_vectors(items);
        // Only valid items claim an id: an item rejected for its vector is never inserted, so a
        // later valid item with the same id is not a duplicate.
        failures.sort_by_key(|f| f.index);
        let invalid: Vec<usize> = failures.iter().map(|f| f.index).collect();
        // Sorting (id, position) pairs finds duplicates in 16 bytes per item, less than a hash
        // map, and the memory is gone before linking starts.
        let mut keyed: Vec<(u64, usize)> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| invalid.binary_search(i).is_err())
            .map(|(i, (id, _))| (*id, i))
            .collect();
        keyed.par_sort_unstable();
        let mut g = 0;
        while g < keyed.len() {
            let (id, first) = keyed[g];
            let mut end = g + 1;
            while end < keyed.len() && keyed[end].0 == id {
                let i = keyed[end].1;
                failures.push(BatchFailure {
                    index: i,
                    id,
                    error: BatchError::DuplicateId { index: i, id, first_index: Some(first) },
                });
                end += 1;
            }
            if self.ids.is_taken(&self.store, id) {
                failures.push(BatchFailure {
                    index: first,
                    id,
                    error: BatchError::DuplicateId { index: first, id, first_index: None },
                });
            }
            g = end;
        }
        failures.sort_by_key(|f| f.index);
        failures.dedup_by_key(|f| f.index);
        failures
    }

    /// Links the items of a batch that passed validation, chunk by chunk; `failures` holds the
    /// validation failures (input order) and gains those found on the way; `report` counts and
    /// lists what went in, also when this stops early.
    // Every argument is per-call state of one batch; a struct for them would only be unpacked
    // again on the next line.
    #[allow(clippy::too_many_arguments)]
    fn insert_chunks<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        failures: &mut Vec<BatchFailure>,
        mode: BatchMode,
        chunk: usize,
        tracker: &Tracker<'_>,
        report: &mut BatchReport,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Result<(), Stop> {
        // All-or-nothing takes every id and all the capacity of the whole call before it links
        // anything: a concurrent insert of one of the ids, or a full index, is then found while
        // nothing has changed, whatever the chunk size. Chunks only bound the linking
        // bookkeeping.
        let mut held = match mode {
            BatchMode::AllOrNothing => Some(self.hold_all(items).map_err(Stop::Failed)?),
            BatchMode::BestEffort => None,
        };
        let bad_positions: Vec<usize> = failures.iter().map(|f| f.index).collect();
        let mut bad = bad_positions.into_iter().peekable();
        for (c, part) in items.chunks(chunk).enumerate() {
            if tracker.is_cancelled() {
                // `held` gives back the reservations of this chunk and the later ones.
                return Err(Stop::Cancelled);
            }
            let base = c * chunk;
            let mut accepted = Vec::with_capacity(part.len());
            for i in base..base + part.len() {
                if bad.peek() == Some(&i) {
                    bad.next();
                } else {
                    accepted.push(i);
                }
            }
            let reserved = match held.as_mut() {
                Some(h) => {
                    // The chunk's guard in `link_reserved` owns these reservations from here.
                    h.hand_over(base + part.len());
                    accepted
                }
                None => self.reserve_chunk(items, accepted, failures),
            };
            let linked = reserved.len();
            let out = self.link_reserved(items, reserved, mode, tracker, side);
            report.inserted += out.inserted.len();
            report.ids.extend(out.inserted.iter().map(|&i| items[i].0));
            if out.cancelled {
                failures.extend(out.lost);
                return Err(Stop::Cancelled);
            }
            if mode == BatchMode::AllOrNothing {
                if let Some(f) = out.lost.iter().min_by_key(|f| f.index) {
                    let e = f.error.clone();
                    failures.extend(out.lost);
                    return Err(Stop::Failed(e));
                }
            }
            failures.extend(out.lost);
            // Items that never reached linking (rejected earlier) count as done now.
            tracker.advance(part.len() - linked);
        }
        Ok(())
    }

    /// Reserves the id of every item and claims capacity for all of them (all-or-nothing), or
    /// changes nothing and returns the error of the first item that cannot go in.
    fn hold_all<'a, V>(&'a self, items: &'a [(u64, V)]) -> Result<Held<'a, V>, BatchError> {
        for (i, (id, _)) in items.iter().enumerate() {
            // Validation saw the id free; another writer may have taken it since.
            if !self.ids.reserve(&self.store, *id) {
                for (id, _) in &items[..i] {
                    self.ids.release(*id);
                }
                return Err(BatchError::DuplicateId { index: i, id: *id, first_index: None });
            }
        }
        if self.claim_up_to(items.len(), true) < items.len() {
            // The first item that does not fit is the one to blame.
            let i = self.capacity_room().min(items.len() - 1);
            for (id, _) in items {
                self.ids.release(*id);
            }
            let limit = self.capacity_limit() as u64;
            return Err(BatchError::CapacityExceeded { index: i, id: items[i].0, limit });
        }
        Ok(Held { index: self, items, from: 0 })
    }

    /// Best-effort: reserves the ids of the `accepted` items (positions into `items`) and claims
    /// capacity for as many as fit; the rest become `failures`. Returns the positions held.
    fn reserve_chunk<V>(
        &self,
        items: &[(u64, V)],
        accepted: Vec<usize>,
        failures: &mut Vec<BatchFailure>,
    ) -> Vec<usize> {
        // Ids: another thread may have taken one since validation.
        let mut reserved = accepted;
        reserved.retain(|&i| {
            let id = items[i].0;
            let ok = self.ids.reserve(&self.store, id);
            if !ok {
                let error = BatchError::DuplicateId { index: i, id, first_index: None };
                failures.push(BatchFailure { index: i, id, error });
            }
            ok
        });
        let room = self.claim_up_to(reserved.len(), false);
        if room < reserved.len() {
            let limit = self.capacity_limit() as u64;
            for &i in &reserved[room..] {
                let id = items[i].0;
                self.ids.release(id);
                failures.push(BatchFailure {
                    index: i,
                    id,
                    error: BatchError::CapacityExceeded { index: i, id, limit },
                });
            }
            reserved.truncate(room);
        }
        reserved
    }

    /// Links the `reserved` items (positions into `items`, ascending; ids reserved and capacity
    /// claimed) in parallel. Returns the positions inserted and the items lost because node
    /// memory or the `u32` node space ran out (reported as `CapacityExceeded`), and whether the
    /// cancel check (or a panicking callback) stopped it. Whatever happens, including a panic in
    /// a callback, the items never started give back their ids and capacity.
    fn link_reserved<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        reserved: Vec<usize>,
        mode: BatchMode,
        tracker: &Tracker<'_>,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Linked {
        let mut levels: Vec<u8> = Vec::with_capacity(reserved.len());
        self.draw_levels(&mut levels, reserved.len());
        // Highest levels first, so the top of the graph exists before the bulk links under it.
        // Chunks are at most `MAX_CHUNK` items, so positions fit in u32.
        let mut order: Vec<u32> = (0..reserved.len() as u32).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(levels[j as usize]));

        let cursor = AtomicUsize::new(0);
        let unstarted = Unstarted { index: self, items, reserved: &reserved, order: &order, cursor: &cursor };
        // Set when an all-or-nothing item is lost: the batch fails, so stop linking more.
        let halt = AtomicBool::new(false);
        let lost = Mutex::new(Vec::new());
        let stop = || tracker.is_cancelled() || halt.load(Ordering::Relaxed);
        let insert_one = |j: u32| {
            let j = j as usize;
            let i = reserved[j];
            let (id, v) = (items[i].0, items[i].1.as_ref());
            let ok = match self.alloc_node() {
                Ok(node) => {
                    let q = self.query_form(v);
                    // On `false` the id, the claim and the node were given back.
                    with_scratch(|s| self.insert_prepared(node, id, &q, levels[j] as usize, s, side(i)))
                        .then_some(())
                        .ok_or(self.allocated_nodes() as u64)
                }
                Err(e) => {
                    // Out of node space: give the item back.
                    self.ids.release(id);
                    self.unclaim(1);
                    Err(match e {
                        IndexError::CapacityExceeded { limit } => limit,
                        _ => self.allocated_nodes() as u64,
                    })
                }
            };
            if let Err(limit) = ok {
                let error = BatchError::CapacityExceeded { index: i, id, limit };
                lost.lock().push(BatchFailure { index: i, id, error });
                if mode == BatchMode::AllOrNothing {
                    halt.store(true, Ordering::Relaxed);
                }
            }
            tracker.advance(1);
        };
        let seed = serial_seed_len(self).min(order.len());
        for &j in &order[..seed] {
            if stop() {
                break;
            }
            cursor.fetch_add(1, Ordering::Relaxed);
            insert_one(j);
        }
        if !stop() {
            // A shared cursor instead of rayon's recursive splitting keeps the global
            // highest-level-first order across threads.
            let threads = rayon::current_num_threads().max(1);
            (0..threads).into_par_iter().with_max_len(1).for_each(|_| loop {
                if stop() {
                    return;
                }
                let k = cursor.fetch_add(1, Ordering::Relaxed);
                if k >= order.len() {
                    return;
                }
                insert_one(order[k]);
            });
        }
        // Every worker has stopped, and finished each item it took: `order[..started]` were
        // attempted (each inserted or lost), the rest never started.
        let started = cursor.load(Ordering::Acquire).min(order.len());
        // Gives back what was never started (cancelled or halted).
        drop(unstarted);
        let lost = lost.into_inner();
        let inserted = if started == order.len() && lost.is_empty() {
            reserved
        } else {
            let mut lost_at: Vec<usize> = lost.iter().map(|f| f.index).collect();
            lost_at.sort_unstable();
            let mut done: Vec<usize> = order[..started]
                .iter()
                .map(|&j| reserved[j as usize])
                .filter(|i| lost_at.binary_search(i).is_err())
                .collect();
            done.sort_unstable();
            done
        };
        Linked { inserted, lost, cancelled: tracker.is_cancelled() }
    }
}

/// What [`Index::link_reserved`] did with one chunk.
struct Linked {
    /// Positions inserted, ascending.
    inserted: Vec<usize>,
    /// Items that could not get a node.
    lost: Vec<BatchFailure>,
    /// The cancel check (or a panicking callback) stopped the chunk.
    cancelled: bool,
}

/// Ids reserved and capacity claimed for `items[from..]`, none of them linked yet. Dropping it
/// (normal end, error, or unwinding from a panicking callback) gives them back, so no id stays
/// reserved and no claim outlives the call.
struct Held<'a, V> {
    index: &'a Index,
    items: &'a [(u64, V)],
    from: usize,
}

impl<V> Held<'_, V> {
    /// Hands `items[..to]` over to a chunk, whose own guard owns them from now on.
    fn hand_over(&mut self, to: usize) {
        self.from = to.min(self.items.len());
    }
}

impl<V> Drop for Held<'_, V> {
    fn drop(&mut self) {
        let rest = &self.items[self.from..];
        for (id, _) in rest {
            self.index.ids.release(*id);
        }
        self.index.unclaim(rest.len());
    }
}

/// The items of one chunk whose linking has not started: `order[cursor..]`. Workers take items
/// by advancing `cursor` and finish each item they take (its failure gives its own
/// reservation back), so at drop, after every worker has stopped, exactly these still hold an
/// id reservation and a capacity claim.
struct Unstarted<'a, V> {
    index: &'a Index,
    items: &'a [(u64, V)],
    reserved: &'a [usize],
    order: &'a [u32],
    cursor: &'a AtomicUsize,
}

impl<V> Drop for Unstarted<'_, V> {
    fn drop(&mut self) {
        let started = self.cursor.load(Ordering::Acquire).min(self.order.len());
        let left = &self.order[started..];
        for &j in left {
            self.index.ids.release(self.items[self.reserved[j as usize]].0);
        }
        self.index.unclaim(left.len());
    }
}
