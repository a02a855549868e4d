//! The search entry points of [`Index`]: the default beam width ([`Index::set_ef`]), single
//! queries, plain and filtered, and batches of queries as a list or as a flat matrix. The graph
//! walk itself (`search_nodes`, `layer_search`, `finish`) and the exact scan live in `index.rs`.
//!
//! # The beam width `ef`
//!
//! Every graph search takes `ef` as `impl Into<Option<usize>>`: a number (`64`) is the beam
//! width of that call, and must be at least `k`; `None` takes the index's default,
//! [`Index::ef`], raised to `k` when smaller. The default starts as
//! [`IndexConfig::ef_search`](crate::IndexConfig::ef_search) and is changed with
//! [`Index::set_ef`].

use crate::config::{check_search_params, MAX_EF};
use crate::error::{IndexError, Result};
use crate::index::{Index, Neighbour, SearchStats};
use rayon::prelude::*;
use std::sync::atomic::Ordering;

/// The id of a missing result in [`FlatNeighbours`] (and in the Python package's `knn_query`):
/// a query with fewer than `k` results has its row padded with this id and distance
/// [`f32::INFINITY`].
pub const MISSING_ID: u64 = u64::MAX;

/// The results of [`Index::search_batch_flat`]: `n` queries × `k` results as two flat row-major
/// arrays, the layout numpy and most ANN benchmarks use.
///
/// Row `i` holds query `i`'s results nearest first in `ids[i * k..(i + 1) * k]` and
/// `distances[i * k..(i + 1) * k]`. When a query has fewer than `k` results (the index holds
/// fewer live vectors, or fewer pass a filter), its `found[i]` results come first and the rest
/// of the row is padding: id [`MISSING_ID`] and distance [`f32::INFINITY`]. `found` tells the
/// two apart even for a vector whose id is `u64::MAX`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlatNeighbours {
    /// Results per query (the `k` of the call).
    pub k: usize,
    /// `n × k` ids, row-major.
    pub ids: Vec<u64>,
    /// `n × k` distances, row-major.
    pub distances: Vec<f32>,
    /// Real results (not padding) in each row: `n` counts, each at most `k`.
    pub found: Vec<usize>,
}

impl FlatNeighbours {
    /// Number of queries (rows).
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The real results of query `i` (without padding): its ids and distances, nearest first.
    /// `None` if there is no row `i`.
    pub fn row(&self, i: usize) -> Option<(&[u64], &[f32])> {
        let n = *self.found.get(i)?;
        let start = i * self.k;
        Some((&self.ids[start..start + n], &self.distances[start..start + n]))
    }
}

impl Index {
    /// The default beam width: what a search given `ef = None` uses (raised to `k` when
    /// smaller). Starts as [`IndexConfig::ef_search`](crate::IndexConfig::ef_search).
    pub fn ef(&self) -> usize {
        self.default_ef.load(Ordering::Relaxed)
    }

    /// Sets the default beam width of searches that pass `ef = None`. It is a setting of this
    /// object, not part of the data: snapshots keep
    /// [`IndexConfig::ef_search`](crate::IndexConfig::ef_search), and a loaded or reopened
    /// index starts from that again.
    ///
    /// Errors: [`IndexError::InvalidParameter`] for 0 or more than [`MAX_EF`]; the default is
    /// then unchanged.
    ///
    /// ```
    /// use hnsw_batch::{Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(2, Metric::L2).ef_search(40))?;
    /// for i in 0..100 { index.insert(i, &[i as f32, 0.0])?; }
    /// assert_eq!(index.ef(), 40);
    /// index.set_ef(128)?;
    /// let hits = index.search(&[3.2, 0.0], 5, None)?; // beam width 128
    /// assert_eq!(hits[0].id, 3);
    /// assert!(index.set_ef(0).is_err());
    /// assert_eq!(index.ef(), 128);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn set_ef(&self, ef: usize) -> Result<()> {
        if ef == 0 || ef > MAX_EF {
            return Err(IndexError::InvalidParameter {
                name: "ef",
                reason: format!("must be in 1..={MAX_EF}, got {ef}"),
            });
        }
        self.default_ef.store(ef, Ordering::Relaxed);
        Ok(())
    }

    /// The beam width of a search for `k` results: `ef` as given, or the default raised to `k`.
    pub(crate) fn resolve_ef(&self, k: usize, ef: Option<usize>) -> usize {
        ef.unwrap_or_else(|| self.ef().max(k))
    }

    /// The `k` nearest live vectors to `query`, nearest first (ties by id), with beam width
    /// `ef`: a number, or `None` for the default ([`ef`](Self::ef), raised to `k`).
    ///
    /// Errors: `k == 0` or a given `ef` below `k` or above [`MAX_EF`]
    /// ([`IndexError::InvalidParameter`]), a wrong dimension, a non-finite component, a zero
    /// query under cosine.
    ///
    /// ```
    /// use hnsw_batch::{Index, IndexConfig, Metric};
    /// let index = Index::new(IndexConfig::new(1, Metric::L2))?;
    /// for i in 0..10 { index.insert(i, &[i as f32])?; }
    /// assert_eq!(index.search(&[4.2], 2, 16)?[0].id, 4); // beam width 16
    /// assert_eq!(index.search(&[4.2], 2, None)?[1].id, 5); // the index's default
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn search(&self, query: &[f32], k: usize, ef: impl Into<Option<usize>>) -> Result<Vec<Neighbour>> {
        let ef = self.resolve_ef(k, ef.into());
        self.search_impl(query, k, ef, None::<fn(u64) -> bool>).map(|(r, _)| r)
    }

    /// Like [`search`](Self::search), keeping only ids for which `filter` returns `true`.
    ///
    /// The graph walk passes through filtered-out vectors, so results stay accurate for filters
    /// that keep a sizeable fraction of the index; for very selective filters use
    /// [`search_exact`](Self::search_exact) over the candidate ids.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>> {
        let ef = self.resolve_ef(k, ef.into());
        self.search_impl(query, k, ef, Some(filter)).map(|(r, _)| r)
    }

    /// Like [`search`](Self::search), also returning how much work the query took.
    pub fn search_with_stats(
        &self,
        query: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<(Vec<Neighbour>, SearchStats)> {
        let ef = self.resolve_ef(k, ef.into());
        self.search_impl(query, k, ef, None::<fn(u64) -> bool>)
    }

    /// `filter: None` keeps the id out of the hot path: reading it for every accepted node is a
    /// load from one more array per result candidate.
    fn search_impl(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<impl Fn(u64) -> bool>,
    ) -> Result<(Vec<Neighbour>, SearchStats)> {
        check_search_params(k, ef)?;
        self.validate_query(query)?;
        let q = self.query_form(query);
        let expiry = self.expiry_view();
        let accept = |n: u32| {
            self.store.is_live(n)
                && !expiry.is_expired(n)
                && filter.as_ref().is_none_or(|f| f(self.store.id(n)))
        };
        Ok(self.search_nodes(&q, k, ef, accept))
    }

    /// Exact k-NN by a full scan of the live vectors that pass `filter` (ties by id).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>> {
        check_search_params(k, k)?;
        self.validate_query(query)?;
        let q = self.query_form(query);
        let expiry = self.expiry_view();
        let accept = |n: u32| self.store.is_live(n) && !expiry.is_expired(n) && filter(self.store.id(n));
        Ok(self.scan(&q, k, 0..self.store.allocated(), accept))
    }

    /// Searches many queries in parallel on the current rayon pool (run inside
    /// `ThreadPool::install` to cap the threads). Results are in query order. `ef` as in
    /// [`search`](Self::search); for a flat row-major matrix of queries and flat results, see
    /// [`search_batch_flat`](Self::search_batch_flat).
    ///
    /// Errors: those of [`search`](Self::search), for the first bad query.
    pub fn search_batch<V: AsRef<[f32]> + Sync>(
        &self,
        queries: &[V],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<Vec<Vec<Neighbour>>> {
        let ef = self.resolve_ef(k, ef.into());
        check_search_params(k, ef)?;
        self.first_bad_query(queries.par_iter().map(|q| q.as_ref()))?;
        queries.par_iter().map(|q| self.search(q.as_ref(), k, ef)).collect()
    }

    /// Searches the `n` rows of the row-major matrix `queries` (`n × dim` values) in parallel on
    /// the current rayon pool, returning `n × k` ids and distances as flat arrays (see
    /// [`FlatNeighbours`] for the layout and the padding of short rows). `ef` as in
    /// [`search`](Self::search). Each row's results are those [`search`](Self::search) gives for
    /// that row.
    ///
    /// Errors: [`IndexError::MatrixLength`] when `queries.len()` is not a multiple of the
    /// dimension; those of [`search`](Self::search), for the first bad row;
    /// [`IndexError::InvalidParameter`] (`k`) when the `n × k` results cannot be allocated.
    ///
    /// ```
    /// use hnsw_batch::{Index, IndexConfig, Metric, MISSING_ID};
    /// let index = Index::new(IndexConfig::new(2, Metric::L2))?;
    /// index.insert(7, &[0.0, 0.0])?;
    /// index.insert(8, &[5.0, 5.0])?;
    /// let r = index.search_batch_flat(&[0.1, 0.0, 4.0, 5.0], 3, None)?; // 2 queries, k = 3
    /// assert_eq!(r.ids, [7, 8, MISSING_ID, 8, 7, MISSING_ID]);
    /// assert_eq!(r.found, [2, 2]);
    /// assert_eq!(r.distances[2], f32::INFINITY);
    /// assert_eq!(r.row(1).unwrap().0, [8, 7]);
    /// assert!(index.search_batch_flat(&[0.0; 3], 1, None).is_err()); // 3 values, dimension 2
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn search_batch_flat(
        &self,
        queries: &[f32],
        k: usize,
        ef: impl Into<Option<usize>>,
    ) -> Result<FlatNeighbours> {
        let dim = self.cfg.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(IndexError::MatrixLength { len: queries.len(), dim });
        }
        let ef = self.resolve_ef(k, ef.into());
        check_search_params(k, ef)?;
        self.first_bad_query(queries.par_chunks_exact(dim))?;
        let n = queries.len() / dim;
        let cells = n.checked_mul(k).ok_or_else(|| too_many(n, k))?;
        let mut out = FlatNeighbours {
            k,
            ids: filled(cells, MISSING_ID).ok_or_else(|| too_many(n, k))?,
            distances: filled(cells, f32::INFINITY).ok_or_else(|| too_many(n, k))?,
            found: filled(n, 0).ok_or_else(|| too_many(n, k))?,
        };
        queries
            .par_chunks_exact(dim)
            .zip(out.ids.par_chunks_exact_mut(k))
            .zip(out.distances.par_chunks_exact_mut(k))
            .zip(out.found.par_iter_mut())
            .try_for_each(|(((q, ids), distances), found)| {
                let hits = self.search(q, k, ef)?;
                for (j, h) in hits.iter().enumerate().take(k) {
                    ids[j] = h.id;
                    distances[j] = h.distance;
                }
                *found = hits.len().min(k);
                Ok::<(), IndexError>(())
            })?;
        Ok(out)
    }

    /// The error of the first query (in input order) that [`search`](Self::search) would
    /// refuse, so that a batch reports the same error however its queries are scheduled.
    fn first_bad_query<'q>(&self, queries: impl ParallelIterator<Item = &'q [f32]>) -> Result<()> {
        match queries.find_map_first(|q| self.validate_query(q).err()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A vector of `len` copies of `value`, or `None` if it cannot be allocated.
fn filled<T: Copy>(len: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, value);
    Some(v)
}

/// The error for `n × k` results that do not fit in memory.
fn too_many(n: usize, k: usize) -> IndexError {
    IndexError::InvalidParameter {
        name: "k",
        reason: format!("{n} queries × {k} results cannot be allocated"),
    }
}

#[cfg(test)]
mod tests {
    use crate::scratch::{with_scratch, Cand};
    use crate::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
    use rand::{Rng, SeedableRng};

    /// The descent skips nodes whose distance it already computed. That must never change
    /// where it ends (a skipped node could only be moved to if it were nearer than the walk's
    /// position, and it was not even when the position was farther), and it must save work.
    #[test]
    fn descent_skipping_seen_nodes_ends_where_the_plain_greedy_walk_ends() {
        let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7u64);
        println!("seed {seed} (replay with SEED={seed})");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dim = 12;
        let row = |rng: &mut rand::rngs::StdRng| {
            (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()
        };
        // M 4: many levels, so the descent has work to skip.
        let index = Index::new(IndexConfig::new(dim, Metric::L2).m(4).seed(seed)).unwrap();
        let items: Vec<(u64, Vec<f32>)> = (0..4000u64).map(|i| (i, row(&mut rng))).collect();
        index.insert_batch(&items, &BatchOptions::new()).unwrap();
        let (ep, top) = index.entry_point().unwrap();
        assert!(top >= 3, "seed {seed}: only {top} levels");
        let (mut skipping, mut plain) = (0u64, 0u64);
        let mut ids = Vec::new();
        for _ in 0..300 {
            let q = row(&mut rng);
            let p = index.probe(&q);
            let got = with_scratch(|s| {
                s.dists = 0;
                let c = index.descend(&p, ep, top, 1, s);
                skipping += s.dists;
                c
            });
            let want = with_scratch(|_| {
                let mut cur = Cand::new(index.dist(&p, ep), ep);
                plain += 1;
                for l in (1..=top).rev() {
                    loop {
                        index.store.read_links(cur.n(), l, &mut ids);
                        plain += ids.len() as u64;
                        let before = cur.n();
                        for &nb in &ids {
                            let d = index.dist(&p, nb);
                            if d < cur.d() {
                                cur = Cand::new(d, nb);
                            }
                        }
                        if cur.n() == before {
                            break;
                        }
                    }
                }
                cur
            });
            assert_eq!(got, want, "seed {seed}: query {q:?}");
        }
        assert!(skipping < plain, "seed {seed}: {skipping} distances skipping against {plain}");
    }
}
