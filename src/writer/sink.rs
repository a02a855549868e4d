//! The [`BatchSink`] trait: where a [`BatchWriter`](super::BatchWriter) writes its batches.

use crate::batch::{BatchError, BatchInsertable, BatchMode, BatchOptions};
use crate::expiry::Expiry;
use crate::index::Index;
use crate::items::Item;
use crate::persist::{DurableIndex, PersistError};
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A shared, type-erased error, cheap to clone into every completion of a batch.
pub type DynError = Arc<dyn Error + Send + Sync + 'static>;

/// Why the sink could not write one item of a batch.
///
/// [`ItemError::is_transient`] decides what the writer does with it: a transient failure is
/// retried (with backoff, in a smaller batch of only the failed items); a permanent one completes
/// the item's [`Completion`](super::Completion) with [`WriteError::Rejected`](super::WriteError)
/// at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ItemError {
    /// The index rejected the item. Permanent, except [`BatchError::Cancelled`], which says
    /// nothing about the item and is retried.
    ///
    /// From a sink, the error's `index` field is the item's position in the batch the writer
    /// handed to it. In the [`WriteError::Rejected`](super::WriteError::Rejected) a producer
    /// gets, `index` is 0 and `first_index` is `None` (see there).
    Batch(BatchError),
    /// A failure that may go away on its own (a busy resource, an interrupted write): retried.
    Transient(DynError),
    /// A failure that retrying cannot fix: never retried.
    Permanent(DynError),
    /// The item carries metadata or an expiry and the sink cannot store them (the default
    /// [`BatchSink::write_items`]): permanent, and nothing of the item is written.
    SideDataUnsupported,
}

impl ItemError {
    /// A transient failure with cause `error`.
    pub fn transient(error: impl Error + Send + Sync + 'static) -> Self {
        ItemError::Transient(Arc::new(error))
    }

    /// A permanent failure with cause `error`.
    pub fn permanent(error: impl Error + Send + Sync + 'static) -> Self {
        ItemError::Permanent(Arc::new(error))
    }

    /// Whether retrying the item may succeed.
    ///
    /// Invalid vectors, dimension mismatches, duplicate ids and a full index are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            ItemError::Batch(e) => match e {
                BatchError::Cancelled { .. } => true,
                BatchError::DimensionMismatch { .. }
                | BatchError::InvalidVector { .. }
                | BatchError::DuplicateId { .. }
                | BatchError::CapacityExceeded { .. } => false,
            },
            ItemError::Transient(_) => true,
            ItemError::Permanent(_) | ItemError::SideDataUnsupported => false,
        }
    }
}

/// The item is known by the caller (its [`ItemFailure::position`], or the producer's own
/// submission), so a batch error shows only what is wrong, not the item's position in a batch.
impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemError::Batch(e) => write!(f, "{}", e.reason()),
            ItemError::Transient(e) => write!(f, "transient failure: {e}"),
            ItemError::Permanent(e) => write!(f, "permanent failure: {e}"),
            ItemError::SideDataUnsupported => {
                f.write_str("the sink does not store metadata or expiry, and the item has some")
            }
        }
    }
}

impl Error for ItemError {}

impl ItemError {
    /// The error as the producer of one submitted item gets it: positions inside the writer's
    /// batch mean nothing to it, so the item is item 0 (of its own one-item submission), and an
    /// id taken by an earlier item of the same batch reads as already in the index (an earlier
    /// submission holds it).
    pub(crate) fn for_single_item(self) -> ItemError {
        match self {
            ItemError::Batch(e) => ItemError::Batch(match e {
                BatchError::DimensionMismatch { id, expected, actual, .. } => {
                    BatchError::DimensionMismatch { index: 0, id, expected, actual }
                }
                BatchError::InvalidVector { id, reason, .. } => {
                    BatchError::InvalidVector { index: 0, id, reason }
                }
                BatchError::DuplicateId { id, .. } => {
                    BatchError::DuplicateId { index: 0, id, first_index: None }
                }
                BatchError::CapacityExceeded { id, limit, .. } => {
                    BatchError::CapacityExceeded { index: 0, id, limit }
                }
                c @ BatchError::Cancelled { .. } => c,
            }),
            other => other,
        }
    }
}

impl From<BatchError> for ItemError {
    fn from(e: BatchError) -> Self {
        ItemError::Batch(e)
    }
}

/// One failed item of a batch written by a [`BatchSink`].
#[derive(Debug, Clone)]
pub struct ItemFailure {
    /// Position of the item in the slice passed to [`BatchSink::write_batch`].
    pub position: usize,
    /// What went wrong.
    pub error: ItemError,
}

/// A destination that writes a batch of `(id, vector)` items (or of [`Item`]s carrying metadata
/// and an expiry) in one operation.
///
/// [`BatchWriter`](super::BatchWriter) calls it from its background thread only, one batch at
/// a time. Implemented for [`Index`] (in memory) and for [`Arc`] of any sink.
///
/// The contract:
/// - `Ok(failures)`: every item not listed in `failures` is written (for a durable sink:
///   durably). A failure whose position is out of range is ignored; when a position is listed
///   twice, the first entry counts.
/// - `Err(e)`: the whole batch failed and no item of it was written. The writer retries the
///   batch while [`BatchSink::is_transient`] says so and retries remain.
///
/// A sink must not block forever: the writer's [`close`](super::BatchWriter::close) waits for
/// the batch in progress.
pub trait BatchSink: Send + Sync + 'static {
    /// The error of a whole-batch failure.
    type Error: Error + Send + Sync + 'static;

    /// Writes `items`, reporting the items that failed.
    fn write_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<Vec<ItemFailure>, Self::Error>;

    /// Writes items carrying metadata or an expiry (submitted with
    /// [`BatchWriter::submit_item`](super::BatchWriter::submit_item)), under the contract of
    /// [`write_batch`](Self::write_batch); the writer calls it for a batch in which some item
    /// has side data, and `write_batch` otherwise.
    ///
    /// The default, for sinks that store vectors only, never drops side data silently: each
    /// item that has some fails with [`ItemError::SideDataUnsupported`], and the others go
    /// through `write_batch`. [`Index`] and [`DurableIndex`] store everything.
    fn write_items(&self, items: &[Item<Vec<f32>>]) -> Result<Vec<ItemFailure>, Self::Error> {
        let mut plain = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        let mut failures = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if it.metadata.is_some() || it.expiry != Expiry::Never {
                failures.push(ItemFailure { position: i, error: ItemError::SideDataUnsupported });
            } else {
                plain.push((it.id, it.vector.clone()));
                positions.push(i);
            }
        }
        if !plain.is_empty() {
            for f in self.write_batch(&plain)? {
                if let Some(&position) = positions.get(f.position) {
                    failures.push(ItemFailure { position, error: f.error });
                }
            }
        }
        failures.sort_by_key(|f| f.position);
        Ok(failures)
    }

    /// Whether a whole-batch failure may go away on retry. Defaults to `true`.
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        true
    }
}

/// The failures of a best-effort batch report, as per-item sink failures.
fn item_failures(report: crate::BatchReport) -> Vec<ItemFailure> {
    report
        .failures
        .into_iter()
        .map(|f| ItemFailure { position: f.index, error: ItemError::Batch(f.error) })
        .collect()
}

/// In-memory writes through [`BatchInsertable::insert_batch`] in [`BatchMode::BestEffort`]: bad
/// items are reported one by one as [`ItemError::Batch`], and the rest are inserted.
impl BatchSink for Index {
    type Error = BatchError;

    fn write_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<Vec<ItemFailure>, BatchError> {
        let report = self.insert_batch(items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
        Ok(item_failures(report))
    }

    /// Through [`Index::insert_items`]: metadata over the limits is a permanent
    /// [`BatchError::InvalidVector`] of its item.
    fn write_items(&self, items: &[Item<Vec<f32>>]) -> Result<Vec<ItemFailure>, BatchError> {
        let report = self.insert_items(items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
        Ok(item_failures(report))
    }

    fn is_transient(&self, error: &BatchError) -> bool {
        ItemError::Batch(error.clone()).is_transient()
    }
}

/// Durable writes through [`DurableIndex::insert_batch`] in [`BatchMode::BestEffort`]: the valid
/// items of a batch are logged with one append and (under
/// [`SyncPolicy::EveryBatch`](crate::persist::SyncPolicy::EveryBatch)) one sync, so an item whose
/// completion resolves `Ok` survives a crash from then on. Bad items are reported one by one as
/// [`ItemError::Batch`] and never logged.
///
/// A whole-batch [`PersistError::Io`] (a failed append or sync, after which nothing of the batch
/// is applied) is transient and retried; a poisoned index, or any other whole-batch error, is
/// permanent.
///
/// A failed item is not acknowledged, which is not the same as absent: if a sync failed after
/// the data reached the disk, a crash and recovery may bring the item back.
impl BatchSink for DurableIndex {
    type Error = PersistError;

    fn write_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<Vec<ItemFailure>, PersistError> {
        let report = self.insert_batch(items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
        Ok(item_failures(report))
    }

    /// Through [`DurableIndex::insert_items`]: each item's metadata and expiry are logged in the
    /// same record as its vector.
    fn write_items(&self, items: &[Item<Vec<f32>>]) -> Result<Vec<ItemFailure>, PersistError> {
        let report = self.insert_items(items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
        Ok(item_failures(report))
    }

    fn is_transient(&self, error: &PersistError) -> bool {
        match error {
            PersistError::Io { .. } => true,
            PersistError::Batch(e) => ItemError::Batch(e.clone()).is_transient(),
            _ => false,
        }
    }
}

/// Shares a sink between the writer and other users (searches, for an [`Index`]).
impl<T: BatchSink + ?Sized> BatchSink for Arc<T> {
    type Error = T::Error;

    fn write_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<Vec<ItemFailure>, Self::Error> {
        (**self).write_batch(items)
    }

    fn write_items(&self, items: &[Item<Vec<f32>>]) -> Result<Vec<ItemFailure>, Self::Error> {
        (**self).write_items(items)
    }

    fn is_transient(&self, error: &Self::Error) -> bool {
        (**self).is_transient(error)
    }
}
