//! [`IndexView`]: the read-only face of an [`Index`], which a wrapper can lend without exposing
//! the index's writes.
//!
//! A [`DurableIndex`](crate::DurableIndex) must not hand out its `&Index`: every mutator of the
//! index takes `&self`, so a write through it would bypass the log. It hands out `&IndexView`
//! instead (and dereferences to it), so every read is written once, here, rather than forwarded
//! by each wrapper.

use crate::config::IndexConfig;
use crate::distance::sq8::Sq8Params;
use crate::error::Result;
use crate::expiry::Expiry;
use crate::filter::Filter;
use crate::index::{Index, Neighbour, SearchStats};
use crate::integrity::{IntegrityError, IntegrityStats};
use crate::items::{FilterPlan, FilteredSearchStats};
use crate::metadata::{MetaLimits, Metadata};
use crate::reuse::SlotStats;
use crate::search::FlatNeighbours;

/// The reads of an [`Index`] and nothing else: searches, vectors, ids, metadata, counters and
/// checks. Every method does what the [`Index`] method of the same name does.
///
/// Borrowed as `&IndexView` from [`Index::view`] or
/// [`DurableIndex::view`](crate::DurableIndex::view); a
/// [`DurableIndex`](crate::DurableIndex) also dereferences to it, so `durable.search(…)` works.
/// It has no way back to the `&Index` (whose writes would bypass a durable index's log), and
/// costs nothing: it is the index itself, seen through a narrower type.
///
/// ```
/// use hnsw_batch::{Index, IndexConfig, IndexView, Metric};
/// fn nearest(view: &IndexView, q: &[f32]) -> Option<u64> {
///     view.search(q, 1, None).ok()?.first().map(|n| n.id)
/// }
/// let index = Index::new(IndexConfig::new(2, Metric::L2))?;
/// index.insert(1, &[0.0, 0.0])?;
/// index.insert(2, &[3.0, 3.0])?;
/// assert_eq!(nearest(index.view(), &[2.5, 3.0]), Some(2));
/// # Ok::<(), hnsw_batch::IndexError>(())
/// ```
#[repr(transparent)]
pub struct IndexView {
    index: Index,
}

impl std::fmt::Debug for IndexView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IndexView").field(&self.index).finish()
    }
}

impl Index {
    /// This index as an [`IndexView`]: its reads only, to lend to code that must not write.
    pub fn view(&self) -> &IndexView {
        let p: *const Index = self;
        // SAFETY: `IndexView` is `repr(transparent)` over its only field, an `Index`, so the two
        // types have the same layout and a pointer to one is a valid pointer to the other. The
        // reference keeps `self`'s lifetime and is shared, so nothing can move or write the
        // `IndexView` through it; no `IndexView` is ever built by value, so none is dropped.
        unsafe { &*(p as *const IndexView) }
    }
}

impl IndexView {
    /// See [`Index::config`].
    pub fn config(&self) -> &IndexConfig {
        self.index.config()
    }

    /// See [`Index::dim`].
    pub fn dim(&self) -> usize {
        self.index.dim()
    }

    /// See [`Index::len`].
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// See [`Index::is_empty`].
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// See [`Index::contains`].
    pub fn contains(&self, id: u64) -> bool {
        self.index.contains(id)
    }

    /// See [`Index::get`].
    pub fn get(&self, id: u64) -> Option<Vec<f32>> {
        self.index.get(id)
    }

    /// See [`Index::ids`].
    pub fn ids(&self) -> Vec<u64> {
        self.index.ids()
    }

    /// See [`Index::ef`].
    pub fn ef(&self) -> usize {
        self.index.ef()
    }

    /// See [`Index::search`].
    pub fn search(&self, query: &[f32], k: usize, ef: impl Into<Option<usize>>) -> Result<Vec<Neighbour>> {
        self.index.search(query, k, ef)
    }

    /// See [`Index::search_filtered`].
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>> {
        self.index.search_filtered(query, k, ef, filter)
    }

    /// See [`Index::search_with_stats`].
    pub fn search_with_stats(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<(Vec<Neighbour>, SearchStats)> {
        self.index.search_with_stats(query, k, ef)
    }

    /// See [`Index::search_exact`].
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>> {
        self.index.search_exact(query, k, filter)
    }

    /// See [`Index::search_batch`].
    pub fn search_batch<V: AsRef<[f32]> + Sync>(
        &self,
        queries: &[V],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.index.search_batch(queries, k, ef)
    }

    /// See [`Index::search_batch_flat`].
    pub fn search_batch_flat(
        &self,
        queries: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<FlatNeighbours> {
        self.index.search_batch_flat(queries, k, ef)
    }

    /// See [`Index::search_where`].
    pub fn search_where(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
    ) -> Result<Vec<Neighbour>> {
        self.index.search_where(query, k, ef, filter)
    }

    /// See [`Index::search_where_with`].
    pub fn search_where_with(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
        plan: FilterPlan,
    ) -> Result<(Vec<Neighbour>, FilteredSearchStats)> {
        self.index.search_where_with(query, k, ef, filter, plan)
    }

    /// See [`Index::search_batch_where`].
    pub fn search_batch_where<V: AsRef<[f32]> + Sync>(
        &self,
        queries: &[V],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: &Filter,
    ) -> Result<Vec<Vec<Neighbour>>> {
        self.index.search_batch_where(queries, k, ef, filter)
    }

    /// See [`Index::count`].
    pub fn count(&self, filter: &Filter) -> Result<usize> {
        self.index.count(filter)
    }

    /// See [`Index::ids_where`].
    pub fn ids_where(&self, filter: &Filter) -> Result<Vec<u64>> {
        self.index.ids_where(filter)
    }

    /// See [`Index::get_metadata`].
    pub fn get_metadata(&self, id: u64) -> Option<Metadata> {
        self.index.get_metadata(id)
    }

    /// See [`Index::get_expiry`].
    pub fn get_expiry(&self, id: u64) -> Option<Expiry> {
        self.index.get_expiry(id)
    }

    /// See [`Index::field_indexes`].
    pub fn field_indexes(&self) -> Vec<String> {
        self.index.field_indexes()
    }

    /// See [`Index::meta_limits`].
    pub fn meta_limits(&self) -> MetaLimits {
        self.index.meta_limits()
    }

    /// See [`Index::now_ms`].
    pub fn now_ms(&self) -> u64 {
        self.index.now_ms()
    }

    /// See [`Index::check_integrity`].
    pub fn check_integrity(&self) -> std::result::Result<IntegrityStats, IntegrityError> {
        self.index.check_integrity()
    }

    /// See [`Index::graph_fingerprint`].
    pub fn graph_fingerprint(&self) -> u64 {
        self.index.graph_fingerprint()
    }

    /// See [`Index::memory_bytes`].
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// See [`Index::hot_memory_bytes`].
    pub fn hot_memory_bytes(&self) -> usize {
        self.index.hot_memory_bytes()
    }

    /// See [`Index::link_bytes`].
    pub fn link_bytes(&self) -> usize {
        self.index.link_bytes()
    }

    /// See [`Index::slot_stats`].
    pub fn slot_stats(&self) -> SlotStats {
        self.index.slot_stats()
    }

    /// See [`Index::allocated_nodes`].
    pub fn allocated_nodes(&self) -> usize {
        self.index.allocated_nodes()
    }

    /// See [`Index::sq8_params`].
    pub fn sq8_params(&self) -> Option<&Sq8Params> {
        self.index.sq8_params()
    }
}
