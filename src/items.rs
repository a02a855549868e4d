//! Metadata, expiry and field indexes inside the [`Index`] (RFC 0003, "wiring").
//!
//! # Storage and its cost
//!
//! Side data lives in one `HashMap<u32, Side>` keyed by node number, behind one `RwLock`
//! together with the [`FieldIndex`]. Only nodes given metadata or an expiry have an entry, so an
//! index that never uses metadata pays nothing per vector, and its inserts and deletes never
//! touch the lock (an atomic count of entries says whether to). An entry costs the canonical
//! encoding of the map ([`metadata::encode`], 54 B per item in the RFC's sample) in its own
//! allocation, plus 32 B of entry (key, boxed slice, expiry) and a control byte at hashbrown's
//! 7/8 load: about 40–80 B over the encoded bytes, depending on where the table sits in its
//! growth. Field postings come on top (RFC 0003, "Measured").
//!
//! Encoded bytes rather than decoded maps: a decoded `BTreeMap` is one allocation per node plus
//! one per string; a filter evaluated per node pays a decode (≈ 1 µs) instead, which is why
//! filtered fields should be indexed.
//!
//! # Consistency with slot reuse
//!
//! A node number is reused after its vector is deleted, so side data follows node transitions,
//! each made under the id's shard lock (`idmap.rs`) or before publication:
//!
//! - insert: set before the node is published (no reader sees a live node without it);
//! - delete: dropped right after the node is flagged deleted;
//! - update: moved from the old node to the new one inside the id's replace, so a concurrent
//!   patch of the id lands on one of them and is carried over;
//! - patch: applied under the id's (read) lock, so it cannot land on a node being deleted.
//!
//! The field index's universe is exactly the nodes with an entry. A node without one evaluates
//! as the empty map: filters that match the empty map (`ne`, `nin`, `not …`) are completed with
//! the live nodes that have no entry.

use crate::batch::{BatchError, BatchFailure, BatchOptions, BatchReport, InvalidReason};
use crate::batch_ops::{check_guards, filter_report, Change, DeleteOptions};
use crate::error::{IndexError, Result};
use crate::expiry::{Clock, Expiry};
use crate::filter::{FieldIndex, Filter};
use crate::index::{Index, Neighbour};
use crate::metadata::{self, MetaError, MetaLimits, MetaValue, Metadata};
use parking_lot::RwLockReadGuard;
use roaring::RoaringBitmap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Side data of one node: its encoded metadata and its expiry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Side {
    /// [`metadata::encode`] of the map (one byte for an empty map).
    pub(crate) meta: Box<[u8]>,
    /// Unix ms from which the node is expired, if any.
    pub(crate) expires_at: Option<u64>,
}

impl Side {
    pub(crate) fn new(meta: &Metadata, expiry: Expiry) -> Side {
        let mut bytes = Vec::with_capacity(metadata::encoded_len(meta));
        metadata::encode(meta, &mut bytes);
        Side { meta: bytes.into_boxed_slice(), expires_at: expiry.at() }
    }

    fn decoded(&self) -> Metadata {
        decode_stored(&self.meta)
    }

    fn is_expired(&self, now: u64) -> bool {
        Expiry::from_option(self.expires_at).is_expired(now)
    }
}

/// Stored bytes were written by `encode` and checked on load, so they always decode; should
/// that ever fail, the node reads as having no metadata rather than bringing the index down.
fn decode_stored(bytes: &[u8]) -> Metadata {
    metadata::decode(bytes).unwrap_or_default()
}

/// Everything behind the index's metadata lock.
pub(crate) struct MetaState {
    pub(crate) side: HashMap<u32, Side>,
    pub(crate) fields: FieldIndex,
    pub(crate) limits: MetaLimits,
}

impl Default for MetaState {
    fn default() -> Self {
        MetaState {
            side: HashMap::new(),
            fields: FieldIndex::new(Vec::<String>::new()),
            limits: MetaLimits::default(),
        }
    }
}

impl MetaState {
    fn is_expired(&self, n: u32, now: u64) -> bool {
        self.side.get(&n).is_some_and(|s| s.is_expired(now))
    }

    /// Whether node `n`'s metadata (the empty map when it has none) passes `f`.
    fn matches(&self, n: u32, f: &Filter, empty_ok: bool) -> bool {
        match self.side.get(&n) {
            Some(s) => f.matches(&s.decoded()),
            None => empty_ok,
        }
    }
}

/// A read view of expiry for one query: "now" read once, and the lock held only when some node
/// has an expiry at all.
pub(crate) struct ExpiryView<'a> {
    state: Option<(RwLockReadGuard<'a, MetaState>, u64)>,
}

impl ExpiryView<'_> {
    pub(crate) fn is_expired(&self, n: u32) -> bool {
        self.state.as_ref().is_some_and(|(st, now)| st.is_expired(n, *now))
    }
}

/// A change to one item's metadata: keys to set (added or replaced) and keys to remove.
/// Removals apply first, so a key both removed and set ends up set.
///
/// ```
/// use hnsw_batch::items::MetaPatch;
/// use hnsw_batch::Metadata;
/// let mut meta = Metadata::new();
/// meta.insert("lang".into(), "en".into());
/// meta.insert("draft".into(), true.into());
/// MetaPatch::new().set("year", 2001).remove("draft").apply(&mut meta);
/// assert_eq!(meta.len(), 2);
/// assert_eq!(meta["year"], 2001.into());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaPatch {
    /// Keys to set, with their new values.
    pub set: Metadata,
    /// Keys to remove (absent keys are ignored).
    pub remove: Vec<String>,
}

impl MetaPatch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> Self {
        self.set.insert(key.into(), value.into());
        self
    }

    /// Also removes `key`.
    pub fn remove(mut self, key: impl Into<String>) -> Self {
        self.remove.push(key.into());
        self
    }

    /// Applies the patch to `meta`.
    pub fn apply(&self, meta: &mut Metadata) {
        for k in &self.remove {
            meta.remove(k);
        }
        for (k, v) in &self.set {
            meta.insert(k.clone(), v.clone());
        }
    }
}

/// One item of [`Index::insert_items`]: a vector with optional metadata and expiry.
///
/// ```
/// use hnsw_batch::items::Item;
/// use hnsw_batch::{Expiry, Metadata};
/// let mut meta = Metadata::new();
/// meta.insert("lang".into(), "en".into());
/// let item = Item::new(7, vec![0.0, 1.0]).metadata(meta).expiry(Expiry::At(1_000));
/// assert_eq!(item.id, 7);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Item<V> {
    /// The id.
    pub id: u64,
    /// The vector.
    pub vector: V,
    /// Its metadata, if any.
    pub metadata: Option<Metadata>,
    /// When it expires.
    pub expiry: Expiry,
}

impl<V> Item<V> {
    /// An item without metadata that never expires.
    pub fn new(id: u64, vector: V) -> Self {
        Item { id, vector, metadata: None, expiry: Expiry::Never }
    }

    /// Sets the metadata.
    pub fn metadata(mut self, meta: Metadata) -> Self {
        self.metadata = Some(meta);
        self
    }

    /// Sets the expiry.
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }
}

/// How [`Index::search_where_with`] finds the matching neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FilterPlan {
    /// Choose by the filter's size (see [`Index::search_where`]).
    #[default]
    Auto,
    /// Score every matching item: exact, costs one distance per match.
    Exact,
    /// Walk the graph with the filter as the accept predicate.
    Graph,
}

/// What a filtered search did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FilteredSearchStats {
    /// The plan that ran ([`FilterPlan::Exact`] or [`FilterPlan::Graph`]; a graph walk that
    /// found fewer than `k` matches finishes exactly and reports `Exact`).
    pub plan: FilterPlan,
    /// Matching fraction of the live items: exact when the field indexes cover the filter,
    /// otherwise estimated from a sample.
    pub selectivity: f64,
    /// Beam width of the graph walk (0 for an exact scan).
    pub ef: usize,
    /// Distance evaluations between the query and stored vectors.
    pub distance_computations: u64,
}

/// Live nodes sampled to estimate the selectivity of a filter the field indexes do not cover.
const SAMPLE: u32 = 1024;

/// Cost model of a filtered walk: about this many distance computations times `ef / s` at
/// selectivity `s`; an exact scan of the `c = s · live` matches costs `c`, so scanning is
/// cheaper while `c ≤ sqrt(GRAPH_COST_PER_EF · ef · live)`. Measured in
/// `tests/items.rs` (20 000 clustered vectors, dim 16, `m = 16`, `ef = 64`): the walk took
/// 1 300 distances at `s = 0.5` (20 per `ef / s`) and 9 600 at `s = 0.1` (15), against 2 000
/// and 20 000 for the scan; at `s ≤ 0.01` a walk visits the whole graph. The threshold is
/// then 5 400 matches (27 %) at 20 000 items and ~39 000 (3.9 %) at a million.
const GRAPH_COST_PER_EF: f64 = 24.0;

impl Index {
    // ----- side data, crate-internal --------------------------------------------------------

    /// Sets node `node`'s side data (before it is published).
    pub(crate) fn attach_side(&self, node: u32, side: Side) {
        let mut st = self.meta.write();
        self.attach_side_locked(&mut st, node, side);
    }

    /// [`attach_side`](Self::attach_side) with the metadata lock held.
    fn attach_side_locked(&self, st: &mut MetaState, node: u32, side: Side) {
        let meta = side.decoded();
        let expiring = side.expires_at.is_some();
        if let Some(old) = st.side.insert(node, side) {
            // Not expected (side data is dropped when a node is deleted); kept exact anyway.
            st.fields.remove(node, &old.decoded());
            self.forget_counts(&old);
        }
        st.fields.insert(node, &meta);
        self.side_len.fetch_add(1, Ordering::AcqRel);
        if expiring {
            self.expiring.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn forget_counts(&self, side: &Side) {
        self.side_len.fetch_sub(1, Ordering::AcqRel);
        if side.expires_at.is_some() {
            self.expiring.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drops node `n`'s side data (it was deleted).
    pub(crate) fn detach_side(&self, n: u32) {
        if self.side_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut st = self.meta.write();
        if let Some(old) = st.side.remove(&n) {
            st.fields.remove(n, &old.decoded());
            self.forget_counts(&old);
        }
    }

    /// Moves side data from `old` to `new` (an update); `meta`, if given, replaces the
    /// metadata while the expiry is kept.
    pub(crate) fn move_side(&self, old: u32, new: u32, meta: Option<Box<[u8]>>) {
        if meta.is_none() && self.side_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let prev = {
            let mut st = self.meta.write();
            let prev = st.side.remove(&old);
            if let Some(p) = &prev {
                st.fields.remove(old, &p.decoded());
                self.forget_counts(p);
            }
            prev
        };
        let side = match (meta, prev) {
            (Some(meta), p) => Some(Side { meta, expires_at: p.and_then(|p| p.expires_at) }),
            (None, p) => p,
        };
        if let Some(side) = side {
            self.attach_side(new, side);
        }
    }

    /// Whether node `n` has expired (by the index's clock).
    pub(crate) fn is_expired_node(&self, n: u32) -> bool {
        self.expiry_view().is_expired(n)
    }

    /// Expiry as of now for one read operation.
    pub(crate) fn expiry_view(&self) -> ExpiryView<'_> {
        if self.expiring.load(Ordering::Acquire) == 0 {
            return ExpiryView { state: None };
        }
        let now = self.now_ms();
        ExpiryView { state: Some((self.meta.read(), now)) }
    }

    /// Validates and encodes side data for one item.
    pub(crate) fn make_side(
        &self,
        meta: Option<&Metadata>,
        expiry: Expiry,
    ) -> std::result::Result<Option<Side>, MetaError> {
        if meta.is_none() && expiry == Expiry::Never {
            return Ok(None);
        }
        let empty = Metadata::new();
        let meta = meta.unwrap_or(&empty);
        self.meta_limits().check(meta)?;
        Ok(Some(Side::new(meta, expiry)))
    }

    // ----- clock and limits -----------------------------------------------------------------

    /// Sets the clock expiry is read from (default [`SystemClock`](crate::SystemClock)).
    ///
    /// ```
    /// use hnsw_batch::{Expiry, Index, IndexConfig, ManualClock, Metric};
    /// use std::sync::Arc;
    /// let clock = Arc::new(ManualClock::new(1_000));
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// index.set_clock(clock.clone());
    /// index.insert_with(1, &[0.0], None, Expiry::At(2_000))?;
    /// assert!(index.get(1).is_some());
    /// clock.set(2_000);
    /// assert!(index.get(1).is_none() && index.search(&[0.0], 1, 8)?.is_empty());
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write() = clock;
    }

    /// The index clock's time, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.read().now_ms()
    }

    /// Limits checked on metadata given from now on (default [`MetaLimits::default`]); saved
    /// in snapshots. Metadata already stored is not re-checked.
    pub fn set_meta_limits(&self, limits: MetaLimits) {
        self.meta.write().limits = limits;
    }

    /// The limits in force.
    pub fn meta_limits(&self) -> MetaLimits {
        self.meta.read().limits
    }

    // ----- insert, update, read -------------------------------------------------------------

    /// Inserts a vector with optional metadata and an expiry.
    ///
    /// Errors: those of [`insert`](Self::insert), and [`IndexError::InvalidMetadata`] when the
    /// metadata breaks the [limits](Self::set_meta_limits). On error the index is unchanged.
    ///
    /// ```
    /// use hnsw_batch::{Expiry, Index, IndexConfig, Metadata, Metric};
    /// let index = Index::new(IndexConfig::new(2, Metric::L2))?;
    /// let mut meta = Metadata::new();
    /// meta.insert("lang".into(), "en".into());
    /// index.insert_with(1, &[0.0, 1.0], Some(meta.clone()), Expiry::Never)?;
    /// assert_eq!(index.get_metadata(1), Some(meta));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn insert_with(&self, id: u64, vector: &[f32], meta: Option<Metadata>, expiry: Expiry) -> Result<()> {
        let side = self.make_side(meta.as_ref(), expiry)?;
        self.insert_side(id, vector, side)
    }

    /// Inserts items carrying metadata and expiry, in parallel, with the modes, progress and
    /// cancellation of [`insert_batch`](crate::BatchInsertable::insert_batch). Metadata is
    /// checked against the limits with the vectors, before anything changes: a refusal is
    /// [`BatchError::InvalidVector`] with [`InvalidReason::Metadata`] (the whole batch under all-or-nothing, that item under
    /// best-effort).
    ///
    /// ```
    /// use hnsw_batch::items::Item;
    /// use hnsw_batch::{BatchOptions, Index, IndexConfig, Metadata, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// let items: Vec<Item<Vec<f32>>> = (0..10)
    ///     .map(|i| {
    ///         let mut m = Metadata::new();
    ///         m.insert("even".into(), (i % 2 == 0).into());
    ///         Item::new(i, vec![i as f32]).metadata(m)
    ///     })
    ///     .collect();
    /// assert_eq!(index.insert_items(&items, &BatchOptions::new()).unwrap().inserted, 10);
    /// assert_eq!(index.count(&hnsw_batch::Filter::eq("even", true))?, 5);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn insert_items<V: AsRef<[f32]> + Sync>(
        &self,
        items: &[Item<V>],
        opts: &BatchOptions,
    ) -> std::result::Result<BatchReport, BatchError> {
        let (sides, failures) = self.sides_of(items);
        let view: Vec<(u64, &[f32])> = items.iter().map(|it| (it.id, it.vector.as_ref())).collect();
        self.insert_batch_side(&view, opts, failures, &|i| sides[i].clone())
    }

    /// Encoded side data of each item (`None` for plain items and for bad metadata), and a
    /// batch failure for each item whose metadata breaks the limits. Shared by
    /// [`insert_items`](Self::insert_items) and the durable index's, so both report the same.
    pub(crate) fn sides_of<V>(&self, items: &[Item<V>]) -> (Vec<Option<Side>>, Vec<BatchFailure>) {
        let mut failures = Vec::new();
        let mut sides: Vec<Option<Side>> = Vec::with_capacity(items.len());
        for (i, it) in items.iter().enumerate() {
            match self.make_side(it.metadata.as_ref(), it.expiry) {
                Ok(s) => sides.push(s),
                Err(error) => {
                    sides.push(None);
                    failures.push(BatchFailure {
                        index: i,
                        id: it.id,
                        error: BatchError::InvalidVector {
                            index: i,
                            id: it.id,
                            reason: InvalidReason::Metadata(error),
                        },
                    });
                }
            }
        }
        (sides, failures)
    }

    /// Replaces the vector of `id`; `meta`, if given, replaces its metadata, otherwise the
    /// metadata is kept. The expiry is kept either way.
    ///
    /// Errors: those of [`update`](Self::update) and [`IndexError::InvalidMetadata`].
    pub fn update_with(&self, id: u64, vector: &[f32], meta: Option<Metadata>) -> Result<()> {
        match meta {
            None => self.update_side(id, vector, None),
            Some(m) => {
                self.meta_limits().check(&m)?;
                self.update_side(id, vector, Some(Side::new(&m, Expiry::Never).meta))
            }
        }
    }

    /// The metadata of a live, unexpired `id` (an empty map when it has none).
    pub fn get_metadata(&self, id: u64) -> Option<Metadata> {
        self.ids.with_published(&self.store, id, |n| {
            let st = self.meta.read();
            let now = self.now_ms();
            (self.store.is_live(n) && !st.is_expired(n, now))
                .then(|| st.side.get(&n).map(Side::decoded).unwrap_or_default())
        })?
    }

    /// The expiry of a live, unexpired `id`.
    pub fn get_expiry(&self, id: u64) -> Option<Expiry> {
        self.ids.with_published(&self.store, id, |n| {
            let st = self.meta.read();
            let now = self.now_ms();
            (self.store.is_live(n) && !st.is_expired(n, now))
                .then(|| Expiry::from_option(st.side.get(&n).and_then(|s| s.expires_at)))
        })?
    }

    /// Applies `patch` to the metadata of `id`.
    ///
    /// Errors: [`IndexError::NotFound`] (absent or expired), [`IndexError::InvalidMetadata`]
    /// when the patched map breaks the limits (nothing changes).
    ///
    /// ```
    /// use hnsw_batch::items::MetaPatch;
    /// use hnsw_batch::{Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// index.insert(1, &[0.0])?;
    /// index.set_metadata(1, &MetaPatch::new().set("lang", "en"))?;
    /// assert_eq!(index.get_metadata(1).unwrap()["lang"], "en".into());
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn set_metadata(&self, id: u64, patch: &MetaPatch) -> Result<()> {
        self.patch_if(id, patch, |_, _| true)?.ok_or(IndexError::NotFound { id })
    }

    /// Patches `id` if it is live, unexpired and `pred(state, node)`, all under the id's lock.
    /// `Ok(None)`: not patched.
    fn patch_if(
        &self,
        id: u64,
        patch: &MetaPatch,
        pred: impl FnOnce(&MetaState, u32) -> bool,
    ) -> Result<Option<()>> {
        let limits = self.meta_limits();
        let out = self.ids.with_published(&self.store, id, |n| -> Result<Option<()>> {
            let mut st = self.meta.write();
            let now = self.now_ms();
            if !self.store.is_live(n) || st.is_expired(n, now) || !pred(&st, n) {
                return Ok(None);
            }
            let old = st.side.get(&n).map(Side::decoded).unwrap_or_default();
            let mut new = old.clone();
            patch.apply(&mut new);
            limits.check(&new)?;
            self.replace_map_locked(&mut st, n, &old, &new);
            Ok(Some(()))
        });
        out.unwrap_or(Ok(None))
    }

    /// Replaces node `n`'s metadata map `old` by `new`, keeping its expiry (metadata lock held).
    fn replace_map_locked(&self, st: &mut MetaState, n: u32, old: &Metadata, new: &Metadata) {
        let expires_at = st.side.get(&n).and_then(|s| s.expires_at);
        let side = Side::new(new, Expiry::from_option(expires_at));
        match st.side.insert(n, side) {
            Some(_) => st.fields.remove(n, old),
            None => {
                self.side_len.fetch_add(1, Ordering::AcqRel);
            }
        }
        st.fields.insert(n, new);
    }

    /// Applies a logged patch to `id` on replay: whether or not it has expired since it was
    /// logged, and without checking the limits it passed then. Whether `id` was present.
    pub(crate) fn replay_patch(&self, id: u64, patch: &MetaPatch) -> bool {
        self.ids.with_published(&self.store, id, |n| {
            let mut st = self.meta.write();
            if !self.store.is_live(n) {
                return false;
            }
            let old = st.side.get(&n).map(Side::decoded).unwrap_or_default();
            let mut new = old.clone();
            patch.apply(&mut new);
            self.replace_map_locked(&mut st, n, &old, &new);
            true
        }) == Some(true)
    }

    /// Sets the expiry of `id` on replay, whether or not it has expired since the change was
    /// logged. Whether `id` was present.
    pub(crate) fn replay_set_expiry(&self, id: u64, expires_at: Option<u64>) -> bool {
        self.ids.with_published(&self.store, id, |n| {
            let mut st = self.meta.write();
            if !self.store.is_live(n) {
                return false;
            }
            self.set_expiry_locked(&mut st, n, Expiry::from_option(expires_at));
            true
        }) == Some(true)
    }

    /// Sets node `n`'s expiry (metadata lock held).
    fn set_expiry_locked(&self, st: &mut MetaState, n: u32, expiry: Expiry) {
        match st.side.get_mut(&n) {
            Some(s) => {
                match (s.expires_at.is_some(), expiry.at().is_some()) {
                    (false, true) => self.expiring.fetch_add(1, Ordering::AcqRel),
                    (true, false) => self.expiring.fetch_sub(1, Ordering::AcqRel),
                    _ => 0,
                };
                s.expires_at = expiry.at();
            }
            None if expiry == Expiry::Never => {}
            None => self.attach_side_locked(st, n, Side::new(&Metadata::new(), expiry)),
        }
    }

    /// Checks that `patch` leaves the metadata of every present id of `ids` within the limits.
    pub(crate) fn check_patch_limits(&self, ids: &[u64], patch: &MetaPatch) -> Result<()> {
        let st = self.meta.read();
        for &id in ids {
            if let Some(n) = self.ids.get(&self.store, id) {
                let mut m = st.side.get(&n).map(Side::decoded).unwrap_or_default();
                patch.apply(&mut m);
                st.limits.check(&m)?;
            }
        }
        Ok(())
    }

    /// Ids of the live items expired at `now`, sorted.
    pub(crate) fn expired_ids(&self, now: u64) -> Vec<u64> {
        if self.expiring.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let st = self.meta.read();
        let mut ids: Vec<u64> = st
            .side
            .iter()
            .filter(|(&n, s)| s.is_expired(now) && self.store.is_live(n))
            .map(|(&n, _)| self.store.id(n))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Sets the expiry of `id` ([`Expiry::Never`] clears it). Errors: [`IndexError::NotFound`].
    pub fn set_expiry(&self, id: u64, expiry: Expiry) -> Result<()> {
        let done = self.ids.with_published(&self.store, id, |n| {
            let mut st = self.meta.write();
            let now = self.now_ms();
            if !self.store.is_live(n) || st.is_expired(n, now) {
                return false;
            }
            self.set_expiry_locked(&mut st, n, expiry);
            true
        });
        if done == Some(true) {
            Ok(())
        } else {
            Err(IndexError::NotFound { id })
        }
    }

    // ----- field indexes ---------------------------------------------------------------------

    /// Starts indexing `field` (posting bitmaps over the stored values; see
    /// [`FieldIndex`]), built from the metadata stored now and kept up to date by every
    /// insert, delete, update and patch. Filters on indexed fields are sized exactly and
    /// answered without decoding metadata.
    ///
    /// Field indexes are not written to snapshots: the snapshot lists the indexed field names
    /// and [`load`](Self::load) rebuilds the postings from the stored metadata (about 5 µs per
    /// item for five fields, RFC 0003).
    ///
    /// Errors: [`IndexError::InvalidMetadata`] for a name no metadata key can have (empty or
    /// starting with `$`). Creating an existing field index again is a no-op.
    pub fn create_field_index(&self, field: &str) -> Result<()> {
        check_field_name(field)?;
        let mut st = self.meta.write();
        if st.fields.is_indexed(field) {
            return Ok(());
        }
        let decoded: Vec<(u32, Metadata)> = st.side.iter().map(|(&n, s)| (n, s.decoded())).collect();
        st.fields.add_field(field, decoded.iter().map(|(n, m)| (*n, m)));
        Ok(())
    }

    /// Stops indexing `field`; returns whether it was indexed.
    pub fn drop_field_index(&self, field: &str) -> bool {
        self.meta.write().fields.remove_field(field)
    }

    /// The indexed fields, sorted.
    pub fn field_indexes(&self) -> Vec<String> {
        self.meta.read().fields.fields().map(str::to_owned).collect()
    }

    // ----- filtered reads --------------------------------------------------------------------

    /// Live, unexpired nodes matching `f`, sorted.
    fn matching_nodes(&self, st: &MetaState, f: &Filter, now: u64) -> Vec<u32> {
        self.matching_nodes_from(st, f, now, st.fields.matching(f))
    }

    /// [`matching_nodes`](Self::matching_nodes) given what the field indexes answered for `f`.
    fn matching_nodes_from(
        &self,
        st: &MetaState,
        f: &Filter,
        now: u64,
        bitmap: Option<RoaringBitmap>,
    ) -> Vec<u32> {
        let empty_ok = f.matches(&Metadata::new());
        // The expiry test is a hash lookup per node: skipped while nothing can expire.
        let any_expiring = self.expiring.load(Ordering::Acquire) != 0;
        let live = |n: u32| self.store.is_live(n) && !(any_expiring && st.is_expired(n, now));
        let all = 0..self.store.allocated();
        match bitmap {
            Some(bm) => {
                let mut out: Vec<u32> = bm.iter().filter(|&n| live(n)).collect();
                if empty_ok {
                    out.extend(all.filter(|n| !st.side.contains_key(n) && self.store.is_live(*n)));
                    out.sort_unstable();
                }
                out
            }
            None => all.filter(|&n| live(n) && st.matches(n, f, empty_ok)).collect(),
        }
    }

    /// Number of live, unexpired items whose metadata matches `filter`.
    ///
    /// Errors: [`IndexError::InvalidFilter`] when [`Filter::check`] refuses the filter.
    pub fn count(&self, filter: &Filter) -> Result<usize> {
        filter.check()?;
        let st = self.meta.read();
        Ok(self.matching_nodes(&st, filter, self.now_ms()).len())
    }

    /// Ids of the live, unexpired items matching `filter`, sorted.
    pub fn ids_where(&self, filter: &Filter) -> Result<Vec<u64>> {
        filter.check()?;
        let st = self.meta.read();
        let mut ids: Vec<u64> =
            self.matching_nodes(&st, filter, self.now_ms()).into_iter().map(|n| self.store.id(n)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The `k` nearest live, unexpired items whose metadata matches `filter`, nearest first;
    /// `ef` as in [`search`](Self::search) (a number, or `None` for the index's default).
    ///
    /// The plan follows the filter's size `c` among `live` items (exact when the [field
    /// indexes](Self::create_field_index) cover the filter, else estimated from a sample of
    /// 1 024 items): an exact scan of the matches while `c ≤ sqrt(24 · ef · live)` (where it
    /// costs fewer distance computations than a filtered walk; 24 is the measured cost of a
    /// walk per unit of `ef`), otherwise a graph walk in which only matching items enter the
    /// results: it keeps walking until `ef` matches are found, so it visits about `ef / s`
    /// nodes at selectivity `s` without widening the beam. A walk that finds fewer than `k`
    /// matches finishes with the exact scan, so the answer is never short.
    ///
    /// Errors: those of [`search`](Self::search), and [`IndexError::InvalidFilter`].
    ///
    /// ```
    /// use hnsw_batch::{Expiry, Filter, Index, IndexConfig, Metadata, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..100u64 {
    ///     let mut m = Metadata::new();
    ///     m.insert("year".into(), (1950 + i as i64).into());
    ///     index.insert_with(i, &[i as f32], Some(m), Expiry::Never)?;
    /// }
    /// index.create_field_index("year")?;
    /// let hits = index.search_where(&[10.0], 2, 16, &Filter::range("year", 2000..2010))?;
    /// assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [50, 51]);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn search_where(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        self.search_where_with(query, k, ef, filter, FilterPlan::Auto).map(|(r, _)| r)
    }

    /// [`search_where`](Self::search_where) with a chosen plan, also returning what it did.
    pub fn search_where_with(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
        plan: FilterPlan,
    ) -> Result<(Vec<Neighbour>, FilteredSearchStats)> {
        let ef = self.resolve_ef(k, ef.into());
        crate::config::check_search_params(k, ef)?;
        filter.check()?;
        self.validate_query(query)?;
        let q = self.query_form(query);
        // One read lock for the whole query: metadata, postings and expiry stay consistent, and
        // no lock is taken per visited node.
        let st = self.meta.read();
        let now = self.now_ms();
        let live_count = self.len().max(1);
        let empty_ok = filter.matches(&Metadata::new());
        let bitmap: Option<RoaringBitmap> = st.fields.matching(filter);
        // The bitmap's size is the selectivity; the list of live matches is built only if the
        // plan is a scan (listing half a large set cost more than the walk itself).
        let selectivity = match &bitmap {
            Some(bm) => {
                let without_meta = if empty_ok { live_count.saturating_sub(st.side.len()) } else { 0 };
                ((bm.len() as f64 + without_meta as f64) / live_count as f64).min(1.0)
            }
            None => self.sample_selectivity(&st, filter, now, empty_ok),
        };
        let est = selectivity * live_count as f64;
        let threshold = (GRAPH_COST_PER_EF * ef as f64 * live_count as f64).sqrt().max(k as f64);
        let use_exact = match plan {
            FilterPlan::Exact => true,
            FilterPlan::Graph => false,
            _ => est <= threshold,
        };
        let mut stats = FilteredSearchStats { selectivity, ..Default::default() };
        if !use_exact {
            let ef_walk = ef;
            // Cheapest test first: the walk calls this for every node it visits, about `1 / s`
            // of which match; the expiry test is a hash lookup, skipped when nothing expires.
            let any_expiring = self.expiring.load(Ordering::Acquire) != 0;
            let accept = |n: u32| {
                self.store.is_live(n)
                    && match &bitmap {
                        Some(bm) => bm.contains(n) || (empty_ok && !st.side.contains_key(&n)),
                        None => st.matches(n, filter, empty_ok),
                    }
                    && !(any_expiring && st.is_expired(n, now))
            };
            let (hits, s) = self.search_nodes(&q, k, ef_walk, accept);
            stats.plan = FilterPlan::Graph;
            stats.ef = ef_walk;
            stats.distance_computations = s.distance_computations;
            // Short of `k` only because fewer items match: nothing left to find (the bitmap
            // may still count expired items, in which case the scan below settles it).
            let all_found = !empty_ok && bitmap.as_ref().is_some_and(|bm| hits.len() as u64 >= bm.len());
            if hits.len() >= k || all_found {
                return Ok((hits, stats));
            }
        }
        let set = self.matching_nodes_from(&st, filter, now, bitmap);
        stats.plan = FilterPlan::Exact;
        stats.distance_computations += set.len() as u64;
        let hits = self.scan_list(&q, k, &set, |n| self.store.is_live(n));
        Ok((hits, stats))
    }

    /// Matching fraction among up to [`SAMPLE`] live nodes spread evenly over the node space.
    fn sample_selectivity(&self, st: &MetaState, f: &Filter, now: u64, empty_ok: bool) -> f64 {
        let n = self.store.allocated();
        if n == 0 {
            return 0.0;
        }
        let step = (n / SAMPLE).max(1);
        let (mut seen, mut hit) = (0u32, 0u32);
        let mut i = 0;
        while i < n {
            if self.store.is_live(i) && !st.is_expired(i, now) {
                seen += 1;
                hit += u32::from(st.matches(i, f, empty_ok));
            }
            i += step;
        }
        if seen == 0 {
            0.0
        } else {
            hit as f64 / seen as f64
        }
    }

    /// [`search_where`](Self::search_where) for many queries in parallel on the current rayon
    /// pool; results in query order.
    pub fn search_batch_where<V: AsRef<[f32]> + Sync>(
        &self,
        queries: &[V],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
    ) -> Result<Vec<Vec<Neighbour>>> {
        use rayon::prelude::*;
        let ef = self.resolve_ef(k, ef.into());
        crate::config::check_search_params(k, ef)?;
        filter.check()?;
        queries.par_iter().map(|q| self.search_where(q.as_ref(), k, ef, filter)).collect()
    }

    // ----- bulk by filter --------------------------------------------------------------------

    /// Deletes `id` if `still(state, node)` holds when its lock is taken; whether it did.
    fn delete_if(&self, id: u64, still: impl FnOnce(&MetaState, u32) -> bool) -> bool {
        let removed = self.ids.remove_published_if(
            &self.store,
            id,
            |n| {
                let st = self.meta.read();
                self.store.is_live(n) && still(&st, n)
            },
            |n| {
                self.store.mark_deleted(n);
                self.live_sub_one();
                self.detach_side(n);
            },
        );
        match removed {
            Some(n) => {
                self.unclaim(1);
                self.unlink_deleted(n);
                true
            }
            None => false,
        }
    }

    /// Deletes the live, unexpired items whose metadata matches `filter`, under the safety
    /// options of [`delete_where`](Self::delete_where): a dry run reports the ids,
    /// `confirm_count` and `max_affected` refuse (changing nothing) with
    /// [`IndexError::Refused`]. The set is fixed when the call starts, and each item is deleted
    /// only if it still matches when its id's lock is taken, so the call never deletes more
    /// than a dry run on the same state reports, nor an item patched out of the filter meanwhile.
    ///
    /// Returns the [`BatchReport`] of a bulk operation by filter: `total` items matched, `ids`
    /// (ascending) and `deleted` say what was deleted, `not_found` counts the matched items that
    /// changed before their turn; in a dry run `ids` and `deleted` say what would be deleted.
    ///
    /// ```
    /// use hnsw_batch::{DeleteOptions, Expiry, Filter, Index, IndexConfig, Metadata, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..10u64 {
    ///     let mut m = Metadata::new();
    ///     m.insert("spam".into(), (i < 3).into());
    ///     index.insert_with(i, &[i as f32], Some(m), Expiry::Never)?;
    /// }
    /// let spam = Filter::eq("spam", true);
    /// let plan = index.delete_where_filter(&spam, &DeleteOptions::new().dry_run(true))?;
    /// assert_eq!((plan.ids.as_slice(), plan.dry_run, index.len()), (&[0, 1, 2][..], true, 10));
    /// let done = index.delete_where_filter(&spam, &DeleteOptions::new().confirm_count(plan.deleted))?;
    /// assert_eq!((done.deleted, done.ids, index.len()), (3, plan.ids, 7));
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn delete_where_filter(&self, filter: &Filter, opts: &DeleteOptions) -> Result<BatchReport> {
        let start = std::time::Instant::now();
        let mut matched = self.ids_where(filter)?;
        check_guards(matched.len(), opts)?;
        let total = matched.len();
        if !opts.dry_run {
            let empty_ok = filter.matches(&Metadata::new());
            matched.retain(|&id| {
                let now = self.now_ms();
                self.delete_if(id, |st, n| !st.is_expired(n, now) && st.matches(n, filter, empty_ok))
            });
        }
        Ok(filter_report(total, matched, Change::Delete, opts.dry_run, start))
    }

    /// Applies `patch` to the metadata of every live, unexpired item matching `filter`, with the
    /// safety options of [`delete_where_filter`](Self::delete_where_filter). Every patched map
    /// is checked against the limits before anything changes ([`IndexError::InvalidMetadata`]).
    /// Items that stop matching before their turn are skipped (counted in
    /// [`BatchReport::not_found`]); [`BatchReport::ids`] lists the ids patched, ascending.
    ///
    /// ```
    /// use hnsw_batch::items::MetaPatch;
    /// use hnsw_batch::{DeleteOptions, Expiry, Filter, Index, IndexConfig, Metadata, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..4u64 {
    ///     let mut m = Metadata::new();
    ///     m.insert("year".into(), (2000 + i as i64).into());
    ///     index.insert_with(i, &[i as f32], Some(m), Expiry::Never)?;
    /// }
    /// let old = Filter::range("year", 2000..2002);
    /// let r = index.update_where(&old, &MetaPatch::new().set("archived", true), &DeleteOptions::new())?;
    /// assert_eq!((r.total, r.updated, r.ids), (2, 2, vec![0, 1]));
    /// assert_eq!(index.count(&Filter::eq("archived", true))?, 2);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn update_where(
        &self,
        filter: &Filter,
        patch: &MetaPatch,
        opts: &DeleteOptions,
    ) -> Result<BatchReport> {
        let start = std::time::Instant::now();
        let mut matched = self.ids_where(filter)?;
        check_guards(matched.len(), opts)?;
        self.check_patch_limits(&matched, patch)?;
        let total = matched.len();
        if !opts.dry_run {
            let empty_ok = filter.matches(&Metadata::new());
            // A map made invalid by a concurrent patch is skipped, not half-applied.
            matched.retain(|&id| {
                matches!(self.patch_if(id, patch, |st, n| st.matches(n, filter, empty_ok)), Ok(Some(())))
            });
        }
        Ok(filter_report(total, matched, Change::Update, opts.dry_run, start))
    }

    /// Deletes the items whose expiry has passed (by the index's clock), with the safety
    /// options of [`delete_where_filter`](Self::delete_where_filter), and reports them in the
    /// same [`BatchReport`]. Expired items are already invisible to reads; this frees their
    /// slots. An item whose expiry was moved later meanwhile is skipped.
    ///
    /// ```
    /// use hnsw_batch::{DeleteOptions, Expiry, Index, IndexConfig, ManualClock, Metric};
    /// use std::sync::Arc;
    /// let clock = Arc::new(ManualClock::new(0));
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// index.set_clock(clock.clone());
    /// for i in 0..5u64 { index.insert_with(i, &[i as f32], None, Expiry::At(100 * i))?; }
    /// clock.set(250); // ids 0, 1 and 2 have expired
    /// let r = index.purge_expired(&DeleteOptions::new())?;
    /// assert_eq!((r.deleted, r.ids), (3, vec![0, 1, 2]));
    /// assert_eq!(index.len(), 2);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn purge_expired(&self, opts: &DeleteOptions) -> Result<BatchReport> {
        let start = std::time::Instant::now();
        let now = self.now_ms();
        let mut matched = self.expired_ids(now);
        check_guards(matched.len(), opts)?;
        let total = matched.len();
        if !opts.dry_run {
            matched.retain(|&id| self.delete_if(id, |st, n| st.is_expired(n, now)));
        }
        Ok(filter_report(total, matched, Change::Delete, opts.dry_run, start))
    }
}

/// Refuses a field name no metadata key can have (empty, or starting with `$`).
pub(crate) fn check_field_name(field: &str) -> Result<()> {
    let mut probe = Metadata::new();
    probe.insert(field.to_owned(), MetaValue::Bool(true));
    MetaLimits::default().max_key_len(usize::MAX).check(&probe)?;
    Ok(())
}

/// Side data of every node of a snapshot export, in export order.
pub(crate) fn export_side(index: &Index, old_of: &[u32]) -> (MetaLimits, Vec<String>, Vec<Option<Side>>) {
    let st = index.meta.read();
    let sides = old_of.iter().map(|n| st.side.get(n).cloned()).collect();
    (st.limits, st.fields.fields().map(str::to_owned).collect(), sides)
}

/// Installs side data into a freshly loaded index (not shared yet) and builds its field indexes.
pub(crate) fn restore_side(index: &Index, limits: MetaLimits, fields: Vec<String>, sides: Vec<(u32, Side)>) {
    let mut st = index.meta.write();
    st.limits = limits;
    st.fields = FieldIndex::new(fields);
    for (n, side) in sides {
        let meta = side.decoded();
        if side.expires_at.is_some() {
            index.expiring.fetch_add(1, Ordering::AcqRel);
        }
        index.side_len.fetch_add(1, Ordering::AcqRel);
        st.fields.insert(n, &meta);
        st.side.insert(n, side);
    }
}

/// Convenience: refused-by-guard errors become index errors.
impl From<crate::batch_ops::DeleteError> for IndexError {
    fn from(e: crate::batch_ops::DeleteError) -> Self {
        IndexError::Refused(e)
    }
}
