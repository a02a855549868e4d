//! Batch delete and update: by ids, or by a predicate with a dry run and safety limits.

use crate::batch::{BatchError, BatchFailure, BatchMode, BatchReport};
use crate::index::Index;
use rayon::prelude::*;
use std::collections::HashSet;
use std::time::Instant;
use thiserror::Error;

/// Options of [`Index::delete_where`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Report what would be deleted without deleting it.
    pub dry_run: bool,
    /// Refuse unless exactly this many vectors match (guards against a filter broader than meant).
    pub confirm_count: Option<usize>,
    /// Refuse if more than this many vectors match.
    pub max_affected: Option<usize>,
}

/// Why [`Index::delete_where`] refused to delete.
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

/// Outcome of [`Index::delete_where`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FilterDeleteReport {
    /// Ids that matched, sorted. With `dry_run`, what a real run would delete now.
    pub matched: Vec<u64>,
    /// Ids actually deleted (0 in a dry run; never more than `matched`).
    pub deleted: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
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

impl Index {
    /// Deletes every id in `ids` that is present. Absent ids count as `not_found`; an id given
    /// again is reported in `failures` as [`BatchError::DuplicateId`] (naming its first
    /// position), as in `update_batch`: `deleted + not_found + failures.len() == total`.
    ///
    /// ```
    /// use hnsw_batch::{BatchError, Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..5 { index.insert(i, &[i as f32])?; }
    /// let r = index.delete_batch(&[1, 2, 2, 99]);
    /// assert_eq!((r.deleted, r.not_found, r.failures.len()), (2, 1, 1));
    /// assert!(matches!(r.failures[0].error, BatchError::DuplicateId { index: 2, id: 2, first_index: Some(1) }));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn delete_batch(&self, ids: &[u64]) -> BatchReport {
        let start = Instant::now();
        let (distinct, failures) = split_repeats(ids);
        let mut report = BatchReport { total: ids.len(), failures, ..Default::default() };
        for id in distinct {
            if self.delete(id).is_ok() {
                report.deleted += 1;
            } else {
                report.not_found += 1;
            }
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Deletes the live vectors whose id passes `filter`, after checking the safety limits.
    /// The set is fixed when the call starts: vectors inserted meanwhile are not deleted, so the
    /// call never removes more than it reports.
    ///
    /// ```
    /// use hnsw_batch::{DeleteError, DeleteOptions, Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..10 { index.insert(i, &[i as f32])?; }
    /// let even = |id: u64| id % 2 == 0;
    /// let plan = index.delete_where(even, &DeleteOptions { dry_run: true, ..Default::default() }).unwrap();
    /// assert_eq!((plan.matched.len(), plan.deleted, index.len()), (5, 0, 10));
    /// let guarded = DeleteOptions { confirm_count: Some(4), ..Default::default() };
    /// assert_eq!(index.delete_where(even, &guarded), Err(DeleteError::CountMismatch { expected: 4, found: 5 }));
    /// let done = index.delete_where(even, &DeleteOptions { confirm_count: Some(5), ..Default::default() }).unwrap();
    /// assert_eq!((done.deleted, index.len()), (5, 5));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn delete_where(
        &self,
        filter: impl Fn(u64) -> bool,
        opts: &DeleteOptions,
    ) -> Result<FilterDeleteReport, DeleteError> {
        let mut matched: Vec<u64> = self.ids().into_iter().filter(|&id| filter(id)).collect();
        matched.sort_unstable();
        check_guards(matched.len(), opts)?;
        let mut deleted = 0;
        if !opts.dry_run {
            // An id deleted by another thread meanwhile is simply not counted.
            deleted = matched.iter().filter(|&&id| self.delete(id).is_ok()).count();
        }
        Ok(FilterDeleteReport { matched, deleted, dry_run: opts.dry_run })
    }

    /// Replaces the vectors of present ids, in parallel on the current rayon pool. Absent ids
    /// count as `not_found` and are skipped. All-or-nothing validates every vector (and rejects
    /// an id given twice) before changing anything; best-effort reports bad items and updates
    /// the rest.
    pub fn update_batch<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[(u64, V)],
        mode: BatchMode,
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
        failures.sort_by_key(|f| f.index);
        failures.dedup_by_key(|f| f.index);
        if mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone());
            }
        }
        let bad: HashSet<usize> = failures.iter().map(|f| f.index).collect();
        let outcomes: Vec<bool> = items
            .par_iter()
            .enumerate()
            .filter(|(i, _)| !bad.contains(i))
            .map(|(_, (id, v))| self.update(*id, v.as_ref()).is_ok())
            .collect();
        let updated = outcomes.iter().filter(|&&ok| ok).count();
        Ok(BatchReport {
            total: items.len(),
            updated,
            not_found: outcomes.len() - updated,
            failures,
            elapsed: start.elapsed(),
            ..Default::default()
        })
    }
}
