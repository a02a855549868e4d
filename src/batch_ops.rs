//! Batch delete and update: by ids, or by a predicate with a dry run and safety limits.

use crate::batch::{chunk_len, BatchError, BatchFailure, BatchMode, BatchOptions, BatchReport};
use crate::index::Index;
use crate::progress::Tracker;
use rayon::prelude::*;
use std::time::Instant;
use thiserror::Error;

/// Options of the bulk operations by filter: [`Index::delete_where`],
/// [`Index::delete_where_filter`], [`Index::update_where`], [`Index::purge_expired`] and their
/// [`DurableIndex`](crate::DurableIndex) forms.
///
/// ```
/// use hnsw_batch::DeleteOptions;
/// let opts = DeleteOptions::new().confirm_count(120).max_affected(1_000).batch_size(50);
/// assert_eq!((opts.dry_run, opts.confirm_count, opts.batch_size), (false, Some(120), 50));
/// assert!(DeleteOptions::new().dry_run(true).dry_run);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Report what would change without changing it: the call returns the
    /// [`BatchReport`] of the real call on the same state, with
    /// [`BatchReport::dry_run`] set.
    pub dry_run: bool,
    /// Refuse unless exactly this many vectors match (guards against a filter broader than meant).
    pub confirm_count: Option<usize>,
    /// Refuse if more than this many vectors match.
    pub max_affected: Option<usize>,
    /// Items changed per batch; **0 (the default) means all in one batch**. On a
    /// [`DurableIndex`](crate::DurableIndex) each batch is one group of log records, written
    /// with one append and one sync, then applied: a large purge or delete is then several
    /// bounded records rather than one huge one, and a crash in the middle recovers the batches
    /// acknowledged before it (a prefix of the matched ids, in ascending order). On an
    /// [`Index`] every item is changed on its own anyway, and the size changes nothing.
    pub batch_size: usize,
}

impl DeleteOptions {
    /// Defaults: a real run, no limits, one batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets [`dry_run`](Self::dry_run).
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
    /// Sets [`confirm_count`](Self::confirm_count).
    pub fn confirm_count(mut self, n: usize) -> Self {
        self.confirm_count = Some(n);
        self
    }
    /// Sets [`max_affected`](Self::max_affected).
    pub fn max_affected(mut self, n: usize) -> Self {
        self.max_affected = Some(n);
        self
    }
    /// Sets [`batch_size`](Self::batch_size).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
}

/// Why a bulk operation by filter refused to run (changing nothing).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// `confirm_count` was set and the filter matched a different number.
    #[error("filter matched {found} vectors, confirm_count expected {expected}")]
    CountMismatch {
        /// The confirmed count.
        expected: usize,
        /// What matched.
        found: usize,
    },
    /// More vectors matched than `max_affected` allows.
    #[error("filter matched {found} vectors, more than max_affected = {limit}")]
    TooMany {
        /// The limit.
        limit: usize,
        /// What matched.
        found: usize,
    },
}

/// What a bulk operation by filter changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Delete,
    Update,
}

/// The report of a bulk operation by filter that matched `matched` items and changed `changed`
/// of them (in a dry run: would change them all).
pub(crate) fn filter_report(
    matched: usize,
    changed: Vec<u64>,
    change: Change,
    dry_run: bool,
    start: Instant,
) -> BatchReport {
    let n = changed.len();
    let mut r = BatchReport {
        total: matched,
        not_found: matched.saturating_sub(n),
        ids: changed,
        dry_run,
        ..Default::default()
    };
    match change {
        Change::Delete => r.deleted = n,
        Change::Update => r.updated = n,
    }
    r.elapsed = start.elapsed();
    r
}

/// The safety checks of [`DeleteOptions`] for `found` matching items.
pub(crate) fn check_guards(found: usize, opts: &DeleteOptions) -> Result<(), DeleteError> {
    if let Some(expected) = opts.confirm_count {
        if expected != found {
            return Err(DeleteError::CountMismatch { expected, found });
        }
    }
    if let Some(limit) = opts.max_affected {
        if found > limit {
            return Err(DeleteError::TooMany { limit, found });
        }
    }
    Ok(())
}

/// The ids of `ids` in order with repeats left out, and a `DuplicateId` failure for each repeat.
pub(crate) fn split_repeats(ids: &[u64]) -> (Vec<u64>, Vec<BatchFailure>) {
    let mut first = std::collections::HashMap::with_capacity(ids.len());
    let mut distinct = Vec::with_capacity(ids.len());
    let mut failures = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        match first.get(&id) {
            Some(&j) => failures.push(BatchFailure {
                index: i,
                id,
                error: BatchError::DuplicateId { index: i, id, first_index: Some(j) },
            }),
            None => {
                first.insert(id, i);
                distinct.push(id);
            }
        }
    }
    (distinct, failures)
}

/// What happened to one item of an update batch.
enum Outcome {
    Updated,
    NotFound,
    Failed(BatchError),
}

impl Index {
    /// Deletes every id in `ids` that is present, one after another on the calling thread.
    ///
    /// Absent ids count as [`BatchReport::not_found`] in either mode. An id given again is a bad
    /// item, [`BatchError::DuplicateId`] naming its first position: under
    /// [`BatchMode::AllOrNothing`] (the default) the call returns it and deletes nothing; under
    /// [`BatchMode::BestEffort`] it is reported in `failures` and the rest are deleted, so that
    /// `deleted + not_found + failures.len() == total`. [`BatchReport::ids`] lists the ids
    /// deleted. The progress callback counts ids; a cancel stops before the next id and returns
    /// [`BatchError::Cancelled`] with the report of those deleted so far. `batch_size` changes
    /// nothing here.
    ///
    /// ```
    /// use hnsw_batch::{BatchError, BatchMode, BatchOptions, Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..5 { index.insert(i, &[i as f32])?; }
    /// let e = index.delete_batch(&[1, 2, 2, 99], &BatchOptions::new()).unwrap_err();
    /// assert!(matches!(e, BatchError::DuplicateId { index: 2, id: 2, first_index: Some(1) }));
    /// assert_eq!(index.len(), 5, "all-or-nothing deleted nothing");
    /// let r = index.delete_batch(&[1, 2, 2, 99], &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    /// assert_eq!((r.deleted, r.not_found, r.failures.len()), (2, 1, 1));
    /// assert_eq!(r.ids, [1, 2]);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn delete_batch(&self, ids: &[u64], opts: &BatchOptions) -> Result<BatchReport, BatchError> {
        let start = Instant::now();
        let (distinct, failures) = split_repeats(ids);
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone());
            }
        }
        let tracker = Tracker::new(ids.len(), opts.progress.as_ref(), opts.cancel.as_ref());
        tracker.start();
        tracker.advance(failures.len());
        let mut report = BatchReport { total: ids.len(), failures, ..Default::default() };
        for id in distinct {
            if tracker.is_cancelled() {
                break;
            }
            if self.delete(id).is_ok() {
                report.deleted += 1;
                report.ids.push(id);
            } else {
                report.not_found += 1;
            }
            tracker.advance(1);
        }
        tracker.finish();
        report.elapsed = start.elapsed();
        if tracker.is_cancelled() {
            return Err(BatchError::Cancelled { report: Box::new(report) });
        }
        Ok(report)
    }

    /// Deletes the live vectors whose id passes `filter`, after checking the safety limits.
    /// The set is fixed when the call starts: vectors inserted meanwhile are not deleted, so the
    /// call never removes more than a dry run on the same state reports. Returns the
    /// [`BatchReport`] of a bulk operation by filter (see there): `total` matched, `ids`
    /// deleted (ascending), `not_found` matched but deleted by another thread first.
    ///
    /// ```
    /// use hnsw_batch::{DeleteError, DeleteOptions, Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..10 { index.insert(i, &[i as f32])?; }
    /// let even = |id: u64| id % 2 == 0;
    /// let plan = index.delete_where(even, &DeleteOptions::new().dry_run(true)).unwrap();
    /// assert_eq!((plan.ids.len(), plan.deleted, plan.dry_run, index.len()), (5, 5, true, 10));
    /// let guarded = DeleteOptions::new().confirm_count(4);
    /// assert_eq!(index.delete_where(even, &guarded), Err(DeleteError::CountMismatch { expected: 4, found: 5 }));
    /// let done = index.delete_where(even, &DeleteOptions::new().confirm_count(plan.deleted)).unwrap();
    /// assert_eq!((done.deleted, done.ids, index.len()), (5, plan.ids, 5));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn delete_where(
        &self,
        filter: impl Fn(u64) -> bool,
        opts: &DeleteOptions,
    ) -> Result<BatchReport, DeleteError> {
        let start = Instant::now();
        let mut matched: Vec<u64> = self.ids().into_iter().filter(|&id| filter(id)).collect();
        matched.sort_unstable();
        check_guards(matched.len(), opts)?;
        let total = matched.len();
        if !opts.dry_run {
            // An id deleted by another thread meanwhile is simply not counted.
            matched.retain(|&id| self.delete(id).is_ok());
        }
        Ok(filter_report(total, matched, Change::Delete, opts.dry_run, start))
    }

    /// Replaces the vectors of present ids, in parallel on the current rayon pool (chunk by
    /// chunk when `opts.batch_size` is set).
    ///
    /// Absent ids count as [`BatchReport::not_found`] in either mode and are skipped. A bad
    /// vector or an id given again is a bad item: under [`BatchMode::AllOrNothing`] (the
    /// default) every item is checked before anything changes and the first bad one is
    /// returned; under [`BatchMode::BestEffort`] bad items are reported in `failures` and the
    /// rest are updated. [`BatchReport::ids`] lists the ids updated, in input order. The
    /// progress callback counts items; a cancel stops taking items, and returns
    /// [`BatchError::Cancelled`] with the report of those updated so far.
    ///
    /// Searches keep running and see each id's old or new vector throughout. Replacing most of
    /// an index at once (a new embedding model) leaves a graph as good as a fresh build but
    /// takes about twice as long, as each old version is unlinked and its neighbours re-homed
    /// (debian-minilm, 62 681 × 384, 2 threads: 14 s, against 7 s for a fresh build of the new
    /// vectors with [`BatchOptions::coded_walk`]; `examples/reembed.rs`); when nothing needs to
    /// search meanwhile, building a new index is faster.
    ///
    /// ```
    /// use hnsw_batch::{BatchMode, BatchOptions, Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..5 { index.insert(i, &[i as f32])?; }
    /// let items = [(1u64, vec![10.0]), (7, vec![0.5]), (2, vec![f32::NAN])];
    /// assert!(index.update_batch(&items, &BatchOptions::new()).is_err());
    /// let r = index.update_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    /// assert_eq!((r.updated, r.not_found, r.failures.len(), r.ids), (1, 1, 1, vec![1]));
    /// assert_eq!(index.get(1), Some(vec![10.0]));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn update_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        opts: &BatchOptions,
    ) -> Result<BatchReport, BatchError> {
        let start = Instant::now();
        let mut failures = self.validate_vectors(items);
        let mut first = std::collections::HashMap::with_capacity(items.len());
        for (i, (id, _)) in items.iter().enumerate() {
            if let Some(&j) = first.get(id) {
                failures.push(BatchFailure {
                    index: i,
                    id: *id,
                    error: BatchError::DuplicateId { index: i, id: *id, first_index: Some(j) },
                });
            } else {
                first.insert(*id, i);
            }
        }
        drop(first);
        failures.sort_by_key(|f| f.index);
        failures.dedup_by_key(|f| f.index);
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone());
            }
        }
        let bad: Vec<usize> = failures.iter().map(|f| f.index).collect();
        let tracker = Tracker::new(items.len(), opts.progress.as_ref(), opts.cancel.as_ref());
        tracker.start();
        let mut report = BatchReport { total: items.len(), ..Default::default() };
        let chunk = chunk_len(opts.batch_size, items.len());
        let mut stop = None;
        for (c, part) in items.chunks(chunk).enumerate() {
            if tracker.is_cancelled() {
                break;
            }
            let base = c * chunk;
            let outcomes: Vec<(usize, Outcome)> = part
                .par_iter()
                .enumerate()
                .filter_map(|(j, (id, v))| {
                    let i = base + j;
                    if bad.binary_search(&i).is_ok() {
                        tracker.advance(1);
                        return None;
                    }
                    if tracker.is_cancelled() {
                        return None;
                    }
                    let out = match self.update(*id, v.as_ref()) {
                        Ok(()) => Outcome::Updated,
                        Err(e) => match BatchError::from_index_error(e, i, *id) {
                            Some(e) => Outcome::Failed(e),
                            // Absent (an untrained sq8 index holds no vector yet either): the
                            // only other errors an update of a checked vector can return.
                            None => Outcome::NotFound,
                        },
                    };
                    tracker.advance(1);
                    Some((i, out))
                })
                .collect();
            for (i, out) in outcomes {
                match out {
                    Outcome::Updated => {
                        report.updated += 1;
                        report.ids.push(items[i].0);
                    }
                    Outcome::NotFound => report.not_found += 1,
                    Outcome::Failed(error) => {
                        if opts.mode == BatchMode::AllOrNothing && stop.is_none() {
                            stop = Some(error.clone());
                        }
                        failures.push(BatchFailure { index: i, id: items[i].0, error });
                    }
                }
            }
            if stop.is_some() {
                break;
            }
        }
        tracker.finish();
        failures.sort_by_key(|f| f.index);
        report.failures = failures;
        report.elapsed = start.elapsed();
        if let Some(e) = stop {
            return Err(e);
        }
        if tracker.is_cancelled() {
            return Err(BatchError::Cancelled { report: Box::new(report) });
        }
        Ok(report)
    }
}
