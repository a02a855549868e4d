//! The [`BatchInsertable`] trait: parallel batch insert with typed errors, modes, progress and
//! cancellation. The design is recorded in `rfcs/0001-batch-insert.md`.

use crate::error::phrase;
use crate::index::{Index, VectorError};
use crate::progress::{CancelFn, ProgressFn, Tracker};
use crate::scratch::with_scratch;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// A component the storage type cannot hold (e.g. 0.5 in `u8` storage).
    Unrepresentable {
        /// Position of the component.
        component: usize,
        /// Its value.
        value: f32,
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
            // Only `u8` storage can refuse a finite value.
            InvalidReason::Unrepresentable { component, value } => {
                write!(f, "{}", phrase::unrepresentable(component, value, crate::Storage::U8.name()))
            }
        }
    }
}

/// Errors of a batch insert. `index` is the item's position in the input.
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
    /// The cancel check returned `true`; `inserted` items were inserted and are searchable.
    #[error("{}", self.reason())]
    Cancelled {
        /// Items inserted before the batch stopped.
        inserted: usize,
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
            BatchError::Cancelled { inserted } => write!(f, "cancelled after inserting {inserted} items"),
        })
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
            VectorError::Unrepresentable { component, value } => {
                invalid(InvalidReason::Unrepresentable { component, value })
            }
            VectorError::ZeroNorm => invalid(InvalidReason::ZeroNorm),
        }
    }
}

/// What a batch does when an item is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchMode {
    /// Validate the whole batch first; one bad item rejects the batch and changes nothing.
    #[default]
    AllOrNothing,
    /// Insert every valid item; report each bad one with its position and error.
    BestEffort,
}

/// Options of a batch insert.
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
    /// Failure handling.
    pub mode: BatchMode,
    /// Items handled per chunk (0 = the whole batch at once). Bounds the per-batch bookkeeping
    /// memory, and the memory of the iterator form, which buffers one chunk at a time.
    pub batch_size: usize,
    /// Progress callback: one 0 % event, events at most every 1 %, one final event.
    pub progress: Option<ProgressFn>,
    /// Cancellation check, polled about every 0.5 % of the batch.
    pub cancel: Option<CancelFn>,
}

impl std::fmt::Debug for BatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchOptions")
            .field("mode", &self.mode)
            .field("batch_size", &self.batch_size)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

impl BatchOptions {
    /// Defaults: all-or-nothing, whole batch at once, no callbacks.
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

/// Outcome of a batch operation; the same shape for inserts, updates and deletes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchReport {
    /// Items in the input.
    pub total: usize,
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
}

/// Inserting many vectors in one call, in parallel on the caller's rayon pool.
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
    fn insert_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError>;

    /// Inserts a row-major matrix `flat` (`ids.len()` rows) under `ids`.
    fn insert_batch_flat(
        &self,
        ids: &[u64],
        flat: &[f32],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError>;

    /// Inserts from an iterator, buffering `opts.batch_size` items (default 65 536) at a time,
    /// so inputs larger than memory work. All-or-nothing applies per chunk.
    fn insert_batch_iter<I, V>(&self, items: I, opts: &BatchOptions) -> Result<BatchReport, BatchError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]> + Sync;
}

/// Largest chunk linked in one go (positions inside a chunk are kept as `u32`).
const MAX_CHUNK: usize = 1 << 30;

/// Items below which a batch into a small index is linked one by one, so the graph is connected
/// before threads start linking against it.
fn serial_seed_len(index: &Index) -> usize {
    (4 * index.cfg.m0).saturating_sub(index.len())
}

impl BatchInsertable for Index {
    fn insert_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError> {
        self.insert_batch_side(items, opts, Vec::new(), &|_| None)
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

    fn insert_batch_iter<I, V>(&self, items: I, opts: &BatchOptions) -> Result<BatchReport, BatchError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]> + Sync,
    {
        let start = Instant::now();
        let chunk = if opts.batch_size == 0 { 65_536 } else { opts.batch_size };
        let mut it = items.into_iter();
        let mut total = BatchReport::default();
        let mut offset = 0usize;
        loop {
            let buf: Vec<(u64, V)> = it.by_ref().take(chunk).collect();
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            let chunk_opts = BatchOptions { batch_size: 0, ..opts.clone() };
            match self.insert_batch(&buf, &chunk_opts) {
                Ok(r) => {
                    total.inserted += r.inserted;
                    total.failures.extend(r.failures.into_iter().map(|mut f| {
                        f.index += offset;
                        f.error = shift_index(f.error, offset);
                        f
                    }));
                }
                Err(BatchError::Cancelled { inserted }) => {
                    return Err(BatchError::Cancelled { inserted: total.inserted + inserted })
                }
                Err(e) => return Err(shift_index(e, offset)),
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
    /// The body of [`BatchInsertable::insert_batch`], also carrying side data: items in
    /// `extra_failures` (metadata refused before the call) are reported and skipped like
    /// invalid vectors, and `side(i)` is attached to item `i` before it is published.
    pub(crate) fn insert_batch_side<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
        extra_failures: Vec<BatchFailure>,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Result<BatchReport, BatchError> {
        let start = Instant::now();
        let tracker = Tracker::new(items.len(), opts.progress.as_ref(), opts.cancel.as_ref());
        let mut report = BatchReport { total: items.len(), ..Default::default() };
        let mut failures = self.validate_batch(items);
        if !extra_failures.is_empty() {
            failures.extend(extra_failures);
            failures.sort_by_key(|f| f.index);
            failures.dedup_by_key(|f| f.index);
        }
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone());
            }
        }
        tracker.start();
        let chunk = if opts.batch_size == 0 { items.len() } else { opts.batch_size }.clamp(1, MAX_CHUNK);
        let bad_positions: Vec<usize> = failures.iter().map(|f| f.index).collect();
        let mut bad = bad_positions.into_iter().peekable();
        let mut result = Ok(());
        for (c, part) in items.chunks(chunk).enumerate() {
            let base = c * chunk;
            let mut accepted = Vec::with_capacity(part.len());
            for i in base..base + part.len() {
                if bad.peek() == Some(&i) {
                    bad.next();
                } else {
                    accepted.push(i);
                }
            }
            match self.insert_accepted(items, &accepted, opts.mode, &tracker, side) {
                Ok((n, mut f)) => {
                    report.inserted += n;
                    tracker.advance(part.len() - accepted.len());
                    failures.append(&mut f);
                }
                Err(e) => {
                    if let BatchError::Cancelled { inserted } = e {
                        report.inserted += inserted;
                    }
                    result = Err(e);
                    break;
                }
            }
        }
        tracker.finish();
        match result {
            Err(BatchError::Cancelled { .. }) => Err(BatchError::Cancelled { inserted: report.inserted }),
            Err(e) => Err(e),
            Ok(()) => {
                if self.duplicates_seen.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    // Exact duplicates can form groups that only link among themselves; this is
                    // the one case where a batch pays for a whole-graph pass (`repair.rs`).
                    self.repair();
                }
                failures.sort_by_key(|f| f.index);
                report.failures = failures;
                report.elapsed = start.elapsed();
                Ok(report)
            }
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
            if self.ids.is_taken(id) {
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

    /// Reserves ids and capacity for the `accepted` items (positions into `items`), then links
    /// them in parallel. Returns how many were inserted and the failures found while reserving.
    fn insert_accepted<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        accepted: &[usize],
        mode: BatchMode,
        tracker: &Tracker<'_>,
        side: &(dyn Fn(usize) -> Option<crate::items::Side> + Sync),
    ) -> Result<(usize, Vec<BatchFailure>), BatchError> {
        let mut failures = Vec::new();
        // Ids: another thread may have taken one since validation.
        let mut reserved: Vec<usize> = Vec::with_capacity(accepted.len());
        for &i in accepted {
            let id = items[i].0;
            if self.ids.reserve(id) {
                reserved.push(i);
            } else {
                let error = BatchError::DuplicateId { index: i, id, first_index: None };
                if mode == BatchMode::AllOrNothing {
                    self.release_ids(items, &reserved);
                    return Err(error);
                }
                failures.push(BatchFailure { index: i, id, error });
            }
        }
        // Capacity: all-or-nothing claims everything or nothing; best-effort takes what fits.
        let room = self.claim_up_to(reserved.len(), mode == BatchMode::AllOrNothing);
        if room < reserved.len() {
            let limit = self.capacity_limit() as u64;
            if mode == BatchMode::AllOrNothing {
                // The first item that does not fit is the one to blame.
                let i = reserved[self.capacity_room().min(reserved.len() - 1)];
                self.release_ids(items, &reserved);
                return Err(BatchError::CapacityExceeded { index: i, id: items[i].0, limit });
            }
            for &i in &reserved[room..] {
                let id = items[i].0;
                failures.push(BatchFailure {
                    index: i,
                    id,
                    error: BatchError::CapacityExceeded { index: i, id, limit },
                });
            }
            self.release_ids(items, &reserved[room..]);
            reserved.truncate(room);
        }
        tracker.advance(failures.len());
        if reserved.is_empty() {
            return Ok((0, failures));
        }
        let mut levels: Vec<u8> = Vec::with_capacity(reserved.len());
        self.draw_levels(&mut levels, reserved.len());
        // Highest levels first, so the top of the graph exists before the bulk links under it.
        // Chunks are at most `MAX_CHUNK` items, so positions fit in u32.
        let mut order: Vec<u32> = (0..reserved.len() as u32).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(levels[j as usize]));

        let inserted = AtomicUsize::new(0);
        let cursor = AtomicUsize::new(0);
        let insert_one = |j: u32| {
            let j = j as usize;
            let i = reserved[j];
            let (id, v) = (&items[i].0, items[i].1.as_ref());
            let ok = match self.alloc_node() {
                Ok(node) => {
                    let q = self.query_form(v);
                    with_scratch(|s| self.insert_prepared(node, *id, &q, levels[j] as usize, s, side(i)))
                }
                Err(_) => {
                    // Out of node space: give the item back (it is counted, not inserted).
                    self.release_ids(items, &[i]);
                    self.unclaim(1);
                    false
                }
            };
            if ok {
                inserted.fetch_add(1, Ordering::Relaxed);
            }
            tracker.advance(1);
        };
        let seed = serial_seed_len(self).min(order.len());
        for &j in &order[..seed] {
            if tracker.is_cancelled() {
                break;
            }
            cursor.fetch_add(1, Ordering::Relaxed);
            insert_one(j);
        }
        if !tracker.is_cancelled() {
            // A shared cursor instead of rayon's recursive splitting keeps the global
            // highest-level-first order across threads.
            let threads = rayon::current_num_threads().max(1);
            (0..threads).into_par_iter().with_max_len(1).for_each(|_| loop {
                if tracker.is_cancelled() {
                    return;
                }
                let k = cursor.fetch_add(1, Ordering::Relaxed);
                if k >= order.len() {
                    return;
                }
                insert_one(order[k]);
            });
        }
        let n = inserted.load(Ordering::Acquire);
        let started = cursor.load(Ordering::Acquire).min(order.len());
        if started < order.len() {
            // Cancelled: give back what was never started.
            let left: Vec<usize> = order[started..].iter().map(|&j| reserved[j as usize]).collect();
            self.release_ids(items, &left);
            self.unclaim(left.len());
        }
        if tracker.is_cancelled() {
            return Err(BatchError::Cancelled { inserted: n });
        }
        Ok((n, failures))
    }

    /// Undoes the id reservations of items never inserted.
    fn release_ids<V>(&self, items: &[(u64, V)], which: &[usize]) {
        for &i in which {
            self.ids.release(items[i].0);
        }
    }
}
