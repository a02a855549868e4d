//! Metadata, expiry, field indexes and bulk operations by filter on a [`DurableIndex`]: the
//! [`Index`] methods of [`crate::items`], with every change logged before it is applied.
//!
//! # What is logged
//! Log format version 2 (`docs/format.md`) adds record kinds for what these methods change:
//!
//! | method | record(s) |
//! |---|---|
//! | [`insert_with`](DurableIndex::insert_with), [`insert_items`](DurableIndex::insert_items) | insert-items: vectors with their metadata and expiry, in one group (one append, one sync) |
//! | [`update_with`](DurableIndex::update_with) | update-with-metadata |
//! | [`set_metadata`](DurableIndex::set_metadata), [`set_metadata_batch`](DurableIndex::set_metadata_batch) | metadata patch(es) |
//! | [`update_where`](DurableIndex::update_where) | the patch with the ids it matched, one group of records per batch |
//! | [`delete_where`](DurableIndex::delete_where), [`purge_expired`](DurableIndex::purge_expired) | deletes of the ids they matched, one group of records per batch |
//! | [`set_expiry`](DurableIndex::set_expiry) | an expiry change |
//! | [`create_field_index`](DurableIndex::create_field_index), [`drop_field_index`](DurableIndex::drop_field_index) | a field index change |
//!
//! A filter or an expiry is decided once, when the write runs: the log holds its outcome (the
//! ids), never the filter or the time. Replay applies patches and expiry changes whether or not
//! the item has expired since, and does not check limits again, so recovery rebuilds exactly
//! the state that was acknowledged, whatever the clock says when the directory is opened.
//!
//! The bulk operations by filter take [`DeleteOptions::batch_size`]: each batch of matched ids
//! (ascending) is its own group of records, appended and synced before it is applied, so a
//! crash in the middle of a large purge recovers the batches acknowledged before it: a prefix
//! of the matched ids, never a part of a batch.
//!
//! As for every write of a `DurableIndex`, input is checked against the current state before
//! anything is logged: a refused write (bad metadata, a filter that does not parse, a
//! `confirm_count` or `max_affected` refusal, a dry run) leaves both the log and the index
//! unchanged.

use super::durable::{DurableIndex, Writer};
use super::error::{PersistError, Result};
use super::wal::{self, ItemRef, WalRecord};
use crate::batch::chunk_len;
use crate::batch::{BatchError, BatchFailure, BatchMode, BatchOptions, BatchReport, InvalidReason};
use crate::batch_ops::{check_guards, filter_report, split_repeats, Change, DeleteOptions};
use crate::error::IndexError;
use crate::expiry::{Clock, Expiry};
use crate::filter::Filter;
use crate::index::Index;
use crate::items::{Item, MetaPatch, Side};
use crate::metadata::Metadata;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

impl DurableIndex {
    // ----- inserts -----------------------------------------------------------------------------

    /// Inserts a vector with optional metadata and an expiry, in one log record; durable (under
    /// [`SyncPolicy::EveryBatch`](super::SyncPolicy::EveryBatch)) when this returns.
    ///
    /// Errors: those of [`Index::insert_with`] (nothing is logged), I/O (nothing is applied),
    /// [`PersistError::Poisoned`].
    ///
    /// ```
    /// use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
    /// use hnsw_batch::{Expiry, IndexConfig, Metadata, Metric};
    /// use std::sync::Arc;
    /// let fs = Arc::new(MemBackend::new());
    /// let cfg = IndexConfig::new(2, Metric::L2);
    /// let mut meta = Metadata::new();
    /// meta.insert("lang".into(), "en".into());
    /// {
    ///     let db = DurableIndex::open_with(fs.clone(), "db", cfg.clone(), DurableOptions::new())?;
    ///     db.insert_with(1, &[0.0, 1.0], Some(meta.clone()), Expiry::Never)?;
    /// }
    /// let db = DurableIndex::open_with(fs, "db", cfg, DurableOptions::new())?; // replays the log
    /// assert_eq!(db.get_metadata(1), Some(meta));
    /// # Ok::<(), hnsw_batch::PersistError>(())
    /// ```
    pub fn insert_with(&self, id: u64, vector: &[f32], meta: Option<Metadata>, expiry: Expiry) -> Result<()> {
        let mut w = self.writer.lock();
        let side = self.index.make_side(meta.as_ref(), expiry).map_err(IndexError::from)?;
        self.index.validate_vector(vector).map_err(IndexError::from)?;
        self.index.check_trained()?;
        if self.index.ids.is_taken(&self.index.store, id) {
            return Err(IndexError::DuplicateId { id }.into());
        }
        let (room, limit) = self.room();
        if room == 0 {
            return Err(IndexError::CapacityExceeded { limit }.into());
        }
        let mut rec = Vec::new();
        match &side {
            Some(s) => {
                let item: ItemRef<'_> = (id, vector, Some(&s.meta[..]), s.expires_at);
                wal::encode_insert_items_group(&mut rec, &[item], self.index.dim(), self.max_record());
            }
            // A plain insert record: such logs stay readable as they were before metadata.
            None => wal::encode_insert_group(&mut rec, &[(id, vector)], self.index.dim(), self.max_record()),
        }
        self.commit(&mut w, &rec)?;
        if let Err(e) = self.index.insert_side(id, vector, side) {
            return Err(self.poison(&mut w, format!("logged insert of id {id} failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Inserts items carrying metadata and expiry with the semantics of
    /// [`Index::insert_items`] and the logging of [`insert_batch`](Self::insert_batch): the
    /// whole batch (vectors, ids and metadata limits) is validated first; the items that will
    /// be inserted are logged with their metadata and expiry in one group of records (one
    /// append, one sync), then applied.
    ///
    /// Errors: [`PersistError::Batch`] under [`BatchMode::AllOrNothing`] (nothing logged; a
    /// metadata refusal is [`BatchError::InvalidVector`] with [`InvalidReason::Metadata`]),
    /// I/O, [`PersistError::Poisoned`].
    pub fn insert_items<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[Item<V>],
        opts: &BatchOptions,
    ) -> Result<BatchReport> {
        let (sides, failures) = self.index.sides_of(items);
        let view: Vec<(u64, &[f32])> = items.iter().map(|it| (it.id, it.vector.as_ref())).collect();
        self.insert_logged(&view, opts, failures, Some(&sides))
    }

    /// The batch insert behind [`insert_batch`](Self::insert_batch) and
    /// [`insert_items`](Self::insert_items): validate, log what will be inserted (plain insert
    /// records when no item carries side data, so such logs stay as compact as before), apply.
    pub(super) fn insert_logged(
        &self,
        items: &[(u64, &[f32])],
        opts: &BatchOptions,
        extra_failures: Vec<BatchFailure>,
        sides: Option<&[Option<Side>]>,
    ) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        if let Some(reason) = &w.stats.poisoned {
            return Err(PersistError::Poisoned { reason: reason.clone() });
        }
        if opts.cancel.as_ref().is_some_and(|c| c()) {
            let report = BatchReport { total: items.len(), ..Default::default() };
            return Err(BatchError::Cancelled { report: Box::new(report) }.into());
        }
        let mut failures = self.index.validate_batch_with(items, extra_failures);
        if opts.mode == BatchMode::AllOrNothing {
            if let Some(f) = failures.first() {
                return Err(f.error.clone().into());
            }
        }
        let bad: HashSet<usize> = failures.iter().map(|f| f.index).collect();
        let mut accepted: Vec<usize> = (0..items.len()).filter(|i| !bad.contains(i)).collect();
        let (room, limit) = self.room();
        if accepted.len() > room {
            if opts.mode == BatchMode::AllOrNothing {
                let i = accepted[room];
                return Err(BatchError::CapacityExceeded { index: i, id: items[i].0, limit }.into());
            }
            for &i in &accepted[room..] {
                let id = items[i].0;
                failures.push(BatchFailure {
                    index: i,
                    id,
                    error: BatchError::CapacityExceeded { index: i, id, limit },
                });
            }
            accepted.truncate(room);
            failures.sort_by_key(|f| f.index);
        }
        let side_of = |i: usize| sides.and_then(|s| s.get(i)).and_then(Option::as_ref);
        let sub: Vec<(u64, &[f32])> = accepted.iter().map(|&i| items[i]).collect();
        if !sub.is_empty() {
            let dim = self.index.dim();
            let mut rec = Vec::with_capacity(wal::insert_payload_len(sub.len(), dim) + 64);
            if accepted.iter().any(|&i| side_of(i).is_some()) {
                let refs: Vec<ItemRef<'_>> = accepted
                    .iter()
                    .map(|&i| match side_of(i) {
                        Some(s) => (items[i].0, items[i].1, Some(&s.meta[..]), s.expires_at),
                        None => (items[i].0, items[i].1, None, None),
                    })
                    .collect();
                wal::encode_insert_items_group(&mut rec, &refs, dim, self.max_record());
            } else {
                wal::encode_insert_group(&mut rec, &sub, dim, self.max_record());
            }
            self.commit(&mut w, &rec)?;
            let apply = BatchOptions {
                mode: BatchMode::BestEffort,
                batch_size: opts.batch_size,
                progress: opts.progress.clone(),
                cancel: None,
                coded_walk: opts.coded_walk,
            };
            let side = |j: usize| accepted.get(j).and_then(|&i| side_of(i)).cloned();
            match self.index.insert_batch_side(&sub, &apply, Vec::new(), &side) {
                Ok(r) if r.inserted == sub.len() => {}
                Ok(r) => {
                    let reason =
                        format!("logged batch applied {} of {} items in memory", r.inserted, sub.len());
                    return Err(self.poison(&mut w, reason));
                }
                Err(e) => return Err(self.poison(&mut w, format!("logged batch failed in memory: {e}"))),
            }
            self.after_write(&mut w);
        }
        Ok(BatchReport {
            total: items.len(),
            inserted: sub.len(),
            ids: sub.iter().map(|&(id, _)| id).collect(),
            failures,
            elapsed: start.elapsed(),
            ..Default::default()
        })
    }

    // ----- changes of present items ------------------------------------------------------------

    /// Replaces the vector of `id`; `meta`, if given, replaces its metadata (otherwise the
    /// metadata is kept). The expiry is kept either way. Durable when this returns.
    ///
    /// Errors: those of [`update`](Self::update) and [`IndexError::InvalidMetadata`] (nothing
    /// logged).
    pub fn update_with(&self, id: u64, vector: &[f32], meta: Option<Metadata>) -> Result<()> {
        let Some(meta) = meta else { return self.update(id, vector) };
        let mut w = self.writer.lock();
        self.index.meta_limits().check(&meta).map_err(IndexError::from)?;
        self.check_update(id, vector)?;
        let bytes = Side::new(&meta, Expiry::Never).meta;
        let record = WalRecord::UpdateWithMetadata { id, vector: vector.to_vec(), metadata: meta };
        self.commit(&mut w, &wal::encode_record(&record, false))?;
        if let Err(e) = self.index.update_side(id, vector, Some(bytes)) {
            return Err(self.poison(&mut w, format!("logged update of id {id} failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Applies `patch` to the metadata of `id`; durable when this returns.
    ///
    /// Errors: [`IndexError::NotFound`] (absent or expired), [`IndexError::InvalidMetadata`]
    /// when the patched map breaks the limits (nothing logged), I/O, [`PersistError::Poisoned`].
    pub fn set_metadata(&self, id: u64, patch: &MetaPatch) -> Result<()> {
        let mut w = self.writer.lock();
        let Some(mut meta) = self.index.get_metadata(id) else {
            return Err(IndexError::NotFound { id }.into());
        };
        patch.apply(&mut meta);
        self.index.meta_limits().check(&meta).map_err(IndexError::from)?;
        let record = WalRecord::PatchMetadata { ids: vec![id], patch: patch.clone() };
        self.commit(&mut w, &wal::encode_record(&record, false))?;
        if !self.index.replay_patch(id, patch) {
            return Err(self.poison(&mut w, format!("logged metadata patch of id {id} found no item")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Applies a patch to each of many ids with one append and one sync (useful to bring in
    /// metadata kept elsewhere). Absent or expired ids count in [`BatchReport::not_found`]; an
    /// id given again, or whose patched metadata would break the limits, is reported in
    /// `failures` ([`BatchError::DuplicateId`], [`BatchError::InvalidVector`] with
    /// [`InvalidReason::Metadata`]) and left unchanged; the others are patched
    /// ([`BatchReport::updated`]).
    ///
    /// Errors: I/O (nothing applied), [`PersistError::Poisoned`].
    pub fn set_metadata_batch(&self, items: &[(u64, MetaPatch)]) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        let ids: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
        let (_, mut failures) = split_repeats(&ids);
        let repeated: HashSet<usize> = failures.iter().map(|f| f.index).collect();
        let limits = self.index.meta_limits();
        let mut todo = Vec::new();
        let mut not_found = 0;
        for (i, (id, patch)) in items.iter().enumerate() {
            if repeated.contains(&i) {
                continue;
            }
            let Some(mut meta) = self.index.get_metadata(*id) else {
                not_found += 1;
                continue;
            };
            patch.apply(&mut meta);
            match limits.check(&meta) {
                Ok(()) => todo.push(i),
                Err(e) => failures.push(BatchFailure {
                    index: i,
                    id: *id,
                    error: BatchError::InvalidVector {
                        index: i,
                        id: *id,
                        reason: InvalidReason::Metadata(e),
                    },
                }),
            }
        }
        failures.sort_by_key(|f| f.index);
        if !todo.is_empty() {
            let mut rec = Vec::new();
            for (k, &i) in todo.iter().enumerate() {
                let (id, patch) = &items[i];
                let record = WalRecord::PatchMetadata { ids: vec![*id], patch: patch.clone() };
                rec.extend(wal::encode_record(&record, k + 1 < todo.len()));
            }
            self.commit(&mut w, &rec)?;
            for &i in &todo {
                let (id, patch) = &items[i];
                if !self.index.replay_patch(*id, patch) {
                    return Err(
                        self.poison(&mut w, format!("logged metadata patch of id {id} found no item"))
                    );
                }
            }
            self.after_write(&mut w);
        }
        Ok(BatchReport {
            total: items.len(),
            updated: todo.len(),
            not_found,
            failures,
            elapsed: start.elapsed(),
            ..Default::default()
        })
    }

    /// Sets the expiry of `id` ([`Expiry::Never`] clears it); durable when this returns.
    ///
    /// Errors: [`IndexError::NotFound`] (absent or already expired), I/O,
    /// [`PersistError::Poisoned`].
    pub fn set_expiry(&self, id: u64, expiry: Expiry) -> Result<()> {
        let mut w = self.writer.lock();
        if !self.index.contains(id) {
            return Err(IndexError::NotFound { id }.into());
        }
        let record = WalRecord::SetExpiry { ids: vec![id], expires_at: expiry.at() };
        self.commit(&mut w, &wal::encode_record(&record, false))?;
        if !self.index.replay_set_expiry(id, expiry.at()) {
            return Err(self.poison(&mut w, format!("logged expiry of id {id} found no item")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    // ----- bulk by filter ----------------------------------------------------------------------

    /// Deletes the live, unexpired items whose metadata matches `filter`, with the safety
    /// options of [`Index::delete_where_filter`]: a dry run reports the ids it would delete and
    /// logs nothing; `confirm_count` and `max_affected` refuse ([`IndexError::Refused`]) with
    /// nothing logged. Otherwise the matched ids are logged as deletes and deleted, in batches
    /// of [`DeleteOptions::batch_size`] ids in ascending order (by default one batch), each
    /// batch one group of records written with one append and one sync, then applied. Writes
    /// are serialised and the writer is held for the whole call, so the call deletes exactly
    /// what a dry run on the same state reports.
    ///
    /// Returns the [`BatchReport`] of a bulk operation by filter (`total` matched, `ids` and
    /// `deleted` what was deleted; with `dry_run`, what would be). An I/O failure in the first
    /// batch changes nothing ([`PersistError::Io`]); in a later one, the earlier batches stay
    /// committed and the error is [`PersistError::Partial`] with their report.
    ///
    /// Unlike [`Index::delete_where`], which takes a predicate on ids, this takes a metadata
    /// [`Filter`]: a closure could not be logged.
    ///
    /// ```
    /// use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
    /// use hnsw_batch::{DeleteOptions, Expiry, Filter, IndexConfig, Metadata, Metric};
    /// use std::sync::Arc;
    /// let db = DurableIndex::open_with(Arc::new(MemBackend::new()), "db", IndexConfig::new(1, Metric::L2), DurableOptions::new())?;
    /// for i in 0..10u64 {
    ///     let mut m = Metadata::new();
    ///     m.insert("spam".into(), (i < 3).into());
    ///     db.insert_with(i, &[i as f32], Some(m), Expiry::Never)?;
    /// }
    /// let spam = Filter::from_json_str(r#"{"spam": true}"#)?;
    /// let plan = db.delete_where(&spam, &DeleteOptions::new().dry_run(true))?;
    /// assert_eq!((plan.dry_run, plan.ids.as_slice()), (true, &[0, 1, 2][..]));
    /// let done = db.delete_where(&spam, &DeleteOptions::new().confirm_count(plan.deleted).batch_size(2))?;
    /// assert_eq!((done.deleted, done.ids), (3, plan.ids));
    /// assert_eq!(db.len(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete_where(&self, filter: &Filter, opts: &DeleteOptions) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        let matched = self.index.ids_where(filter)?;
        self.change_matched(&mut w, matched, opts, start, Bulk::Delete, "delete_where")
    }

    /// Deletes the items whose expiry has passed by the index's clock, with the safety options
    /// and the batches of [`delete_where`](Self::delete_where), and reports them in the same
    /// [`BatchReport`]. The expired ids are logged as deletes, so recovery removes the same
    /// items whatever the time when it runs.
    ///
    /// ```
    /// use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
    /// use hnsw_batch::{DeleteOptions, Expiry, IndexConfig, ManualClock, Metric};
    /// use std::sync::Arc;
    /// let db = DurableIndex::open_with(Arc::new(MemBackend::new()), "db", IndexConfig::new(1, Metric::L2), DurableOptions::new())?;
    /// let clock = Arc::new(ManualClock::new(0));
    /// db.set_clock(clock.clone());
    /// for i in 0..100u64 { db.insert_with(i, &[i as f32], None, Expiry::At(1_000))?; }
    /// clock.set(1_000);
    /// let r = db.purge_expired(&DeleteOptions::new().batch_size(30))?; // 4 appends, 4 syncs
    /// assert_eq!((r.total, r.deleted, db.len()), (100, 100, 0));
    /// # Ok::<(), hnsw_batch::PersistError>(())
    /// ```
    pub fn purge_expired(&self, opts: &DeleteOptions) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        let matched = self.index.expired_ids(self.index.now_ms());
        self.change_matched(&mut w, matched, opts, start, Bulk::Delete, "purge_expired")
    }

    /// Applies `patch` to the metadata of every live, unexpired item matching `filter`, with the
    /// safety options and the batches of [`delete_where`](Self::delete_where). Every patched
    /// map is checked against the limits before anything is logged
    /// ([`IndexError::InvalidMetadata`]); then each batch of matched ids is logged with the
    /// patch (one append, one sync) and applied.
    pub fn update_where(
        &self,
        filter: &Filter,
        patch: &MetaPatch,
        opts: &DeleteOptions,
    ) -> Result<BatchReport> {
        let start = Instant::now();
        let mut w = self.writer.lock();
        let matched = self.index.ids_where(filter)?;
        check_guards(matched.len(), opts).map_err(IndexError::from)?;
        self.index.check_patch_limits(&matched, patch)?;
        self.change_matched(&mut w, matched, opts, start, Bulk::Update(patch), "update_where")
    }

    /// Checks the guards, then logs and applies `change` to `matched` batch by batch.
    fn change_matched(
        &self,
        w: &mut Writer,
        matched: Vec<u64>,
        opts: &DeleteOptions,
        start: Instant,
        change: Bulk<'_>,
        what: &str,
    ) -> Result<BatchReport> {
        check_guards(matched.len(), opts).map_err(IndexError::from)?;
        let kind = match change {
            Bulk::Delete => Change::Delete,
            Bulk::Update(_) => Change::Update,
        };
        let total = matched.len();
        if opts.dry_run || matched.is_empty() {
            return Ok(filter_report(total, matched, kind, opts.dry_run, start));
        }
        let chunk = chunk_len(opts.batch_size, total);
        let mut done = 0;
        for part in matched.chunks(chunk) {
            let mut rec = Vec::new();
            match change {
                Bulk::Delete => {
                    wal::encode_ids_group(&mut rec, part, self.max_record(), |ids| WalRecord::Delete { ids })
                }
                Bulk::Update(patch) => wal::encode_ids_group(&mut rec, part, self.max_record(), |ids| {
                    WalRecord::PatchMetadata { ids, patch: patch.clone() }
                }),
            }
            if let Err(e) = self.commit(w, &rec) {
                if done == 0 {
                    return Err(e);
                }
                let mut ids = matched;
                ids.truncate(done);
                let mut committed = filter_report(total, ids, kind, false, start);
                // The rest was not looked at, not found absent.
                committed.not_found = 0;
                return Err(PersistError::Partial { committed: Box::new(committed), error: Box::new(e) });
            }
            for &id in part {
                let applied = match change {
                    Bulk::Delete => self.index.delete(id).map_err(|e| e.to_string()),
                    Bulk::Update(patch) => {
                        if self.index.replay_patch(id, patch) {
                            Ok(())
                        } else {
                            Err("no item".to_owned())
                        }
                    }
                };
                if let Err(e) = applied {
                    return Err(self.poison(w, format!("logged {what} of id {id} failed in memory: {e}")));
                }
            }
            done += part.len();
            self.after_write(w);
        }
        Ok(filter_report(total, matched, kind, false, start))
    }

    // ----- field indexes -----------------------------------------------------------------------

    /// Starts indexing `field` (see [`Index::create_field_index`]); the change is logged, so the
    /// field index is there again after a reopen. Creating an existing one logs nothing.
    ///
    /// Errors: [`IndexError::InvalidMetadata`] for a name no metadata key can have, I/O,
    /// [`PersistError::Poisoned`].
    pub fn create_field_index(&self, field: &str) -> Result<()> {
        let mut w = self.writer.lock();
        crate::items::check_field_name(field)?;
        if self.index.field_indexes().iter().any(|f| f == field) {
            return Ok(());
        }
        let record = WalRecord::FieldIndex { field: field.to_owned(), create: true };
        self.commit(&mut w, &wal::encode_record(&record, false))?;
        if let Err(e) = self.index.create_field_index(field) {
            return Err(self.poison(&mut w, format!("logged field index `{field}` failed in memory: {e}")));
        }
        self.after_write(&mut w);
        Ok(())
    }

    /// Stops indexing `field` (logged); whether it was indexed.
    pub fn drop_field_index(&self, field: &str) -> Result<bool> {
        let mut w = self.writer.lock();
        if !self.index.field_indexes().iter().any(|f| f == field) {
            return Ok(false);
        }
        let record = WalRecord::FieldIndex { field: field.to_owned(), create: false };
        self.commit(&mut w, &wal::encode_record(&record, false))?;
        self.index.drop_field_index(field);
        self.after_write(&mut w);
        Ok(true)
    }

    // Reads (metadata, expiry, field indexes, `count`, filtered searches) are `IndexView`'s,
    // which `DurableIndex` dereferences to.

    /// Sets the clock expiry is read from (see [`Index::set_clock`]). The clock is not part of
    /// the durable state: a reopened index reads the system clock until told otherwise.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        self.index.set_clock(clock);
    }
}

/// What [`DurableIndex::change_matched`] logs and applies to each matched id.
#[derive(Clone, Copy)]
enum Bulk<'a> {
    Delete,
    Update(&'a MetaPatch),
}

/// Applies a replayed record of a version-2 kind; returns how many of its items could not be
/// applied. Changes apply whether or not items have expired since they were logged.
pub(super) fn apply_record(index: &Index, record: &WalRecord) -> usize {
    match record {
        WalRecord::InsertItems { ids, dim, vectors, metadata, expires_at } => {
            if *dim != index.dim()
                || *dim == 0
                || metadata.len() != ids.len()
                || expires_at.len() != ids.len()
            {
                return ids.len();
            }
            let items: Vec<(u64, &[f32])> = ids.iter().copied().zip(vectors.chunks_exact(*dim)).collect();
            let sides: Vec<Option<Side>> = metadata
                .iter()
                .zip(expires_at)
                .map(|(m, e)| match (m, e) {
                    (None, None) => None,
                    (m, e) => {
                        Some(Side::new(m.as_ref().unwrap_or(&Metadata::new()), Expiry::from_option(*e)))
                    }
                })
                .collect();
            let opts = BatchOptions::new().mode(BatchMode::BestEffort);
            match index.insert_batch_side(&items, &opts, Vec::new(), &|i| sides.get(i).cloned().flatten()) {
                Ok(r) => ids.len() - r.inserted,
                Err(_) => ids.len(),
            }
        }
        WalRecord::UpdateWithMetadata { id, vector, metadata } => {
            let bytes = Side::new(metadata, Expiry::Never).meta;
            usize::from(index.update_side(*id, vector, Some(bytes)).is_err())
        }
        WalRecord::PatchMetadata { ids, patch } => {
            ids.iter().filter(|&&id| !index.replay_patch(id, patch)).count()
        }
        WalRecord::SetExpiry { ids, expires_at } => {
            ids.iter().filter(|&&id| !index.replay_set_expiry(id, *expires_at)).count()
        }
        WalRecord::FieldIndex { field, create: true } => {
            usize::from(index.create_field_index(field).is_err())
        }
        WalRecord::FieldIndex { field, create: false } => {
            index.drop_field_index(field);
            0
        }
        // The version-1 kinds are applied by `durable::recovery::apply_record`.
        WalRecord::Insert { ids, .. } | WalRecord::Delete { ids } => ids.len(),
        WalRecord::Update { .. } => 1,
    }
}
