//! The HNSW index: insert, search, delete, get.

use crate::config::{IndexConfig, Storage};
use crate::distance::sq8::{Sq8Params, Sq8Query};
use crate::distance::{
    compact_kernels, kernels, quad_kernels_for, CompactKernels, F32x4Kernel, Kernels, Metric,
};
use crate::epoch;
use crate::error::{IndexError, Result};
use crate::idmap::IdMap;
use crate::links::ListCodec;
use crate::results;
use crate::scratch::{with_scratch, Cand, Scratch};
use crate::store::{f32_prefetch_bytes, NodeStore, Release, MAX_LEVEL};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// The user id of the vector.
    pub id: u64,
    /// Its distance to the query under the index metric (smaller is closer).
    pub distance: f32,
}

/// Work done by one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchStats {
    /// Distance evaluations between the query and stored vectors during the walk (or scan).
    pub distance_computations: u64,
    /// Candidates re-scored with their exact `f32` originals after the walk
    /// ([`Storage::Sq8`]; see [`IndexConfig::rerank`](crate::IndexConfig::rerank)); 0 otherwise.
    pub exact_rescored: u64,
}

const EMPTY: u64 = u64::MAX;

/// Largest finite `f16` magnitude: larger values would be stored as infinity.
const F16_MAX: f32 = 65504.0;

/// Distances at or below this count as exact duplicates (cosine distances of identical
/// directions come out of the float arithmetic near 1e-7, not 0).
const DUPLICATE_DIST: f32 = 1e-6;

/// How many neighbours ahead of the one being scored the walk asks the CPU to load. A visit is
/// bound by memory latency, so several loads must be in flight at once; 4 measured fastest on
/// debian-minilm (sq8 +18-25 % QPS over 1, f32 +5-10 %; 6 was no better, 16 worse: the later
/// prefetches evict or queue behind earlier ones).
const PREFETCH_AHEAD: usize = 4;

/// Under [`Storage::Sq8`] with `rerank` 0 (automatic), a search re-scores exactly the best
/// `max(AUTO_RERANK_PER_K * k, AUTO_RERANK_MIN)` of the walk's candidates (at most `ef`). On
/// debian-minilm (384-d cosine, k = 10) re-scoring 12 of any `ef` from 16 to 128 gave the same
/// recall@10 as re-scoring all of them, and 10 lost 0.005; twice `k` leaves room for data that
/// quantises worse, and the floor covers small `k` on coarse codes (low dimensions, where many
/// candidates tie after quantisation). Far cheaper than re-scoring all `ef`: each is a random
/// read of a full `f32` row.
const AUTO_RERANK_PER_K: usize = 2;
const AUTO_RERANK_MIN: usize = 20;

/// Exact rows (a whole `f32` vector each, 24 lines at 384 dims) prefetched ahead while
/// re-scoring.
const RERANK_PREFETCH_AHEAD: usize = 2;

#[inline]
fn pack(node: u32, level: usize) -> u64 {
    ((level as u64) << 32) | node as u64
}

#[inline]
fn unpack(e: u64) -> (u32, usize) {
    (e as u32, (e >> 32) as usize)
}

/// Which kernel a distance call runs: storage and metric resolved once at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DistKind {
    L2F32,
    DotF32,
    L2U8,
    DotU8,
    L2F16,
    DotF16,
    L2Sq8,
    DotSq8,
}

/// Most rows [`Storage::Sq8`] trains on: a larger first batch trains on a seeded sample.
pub const SQ8_TRAIN_SAMPLE: usize = 100_000;

/// A query-form vector ready for [`Index::dist`]: the `f32` vector, and for [`Storage::Sq8`]
/// its prepared integer form (`None` otherwise, or while the index is untrained, in which case
/// SQ8 distances are computed exactly from the `f32` originals).
pub(crate) struct Probe<'a> {
    pub(crate) v: &'a [f32],
    sq8: Option<Sq8Query>,
    /// A batch's walk codes with this vector prepared for them (`walk_codes.rs`): nodes that
    /// have a code are compared through it, the others exactly.
    walk: Option<(&'a crate::walk_codes::WalkCodes, Sq8Query)>,
}

impl<'a> Probe<'a> {
    /// A probe without a prepared SQ8 form: under [`Storage::Sq8`] its distances are the exact
    /// ones to the `f32` originals; other storages ignore the difference.
    pub(crate) fn exact(v: &'a [f32]) -> Self {
        Probe { v, sq8: None, walk: None }
    }
}

/// An HNSW index over `u64`-keyed vectors.
///
/// All methods take `&self`: the index is `Send + Sync`, and any number of threads may insert,
/// delete and search at once. A vector becomes visible to searches only once it is fully linked.
///
/// ```
/// use hnsw_batch::{Index, IndexConfig, Metric};
/// let index = Index::new(IndexConfig::new(2, Metric::L2))?;
/// index.insert(1, &[0.0, 0.0])?;
/// index.insert(2, &[1.0, 1.0])?;
/// index.insert(3, &[5.0, 5.0])?;
/// let hits = index.search(&[0.9, 0.8], 2, 16)?;
/// assert_eq!(hits[0].id, 2);
/// assert_eq!(hits[1].id, 1);
/// # Ok::<(), hnsw_batch::IndexError>(())
/// ```
pub struct Index {
    pub(crate) cfg: IndexConfig,
    ml: f64,
    kind: DistKind,
    k: Kernels,
    /// Kernels of `f16` and `sq8` storage (the query stays `f32`).
    ck: CompactKernels,
    /// Under `f32` storage, the fused four-vector form of `k`'s distance kernel, where `k`'s
    /// instruction set has one ([`dists_of`](Self::dists_of)).
    quad: Option<F32x4Kernel>,
    /// [`Storage::Sq8`] quantisation parameters, set once (training or load), never changed.
    sq8: OnceLock<Sq8Params>,
    pub(crate) store: NodeStore,
    pub(crate) ids: IdMap,
    /// `pack(node, level)` of the entry point, or `EMPTY`.
    entry: AtomicU64,
    pub(crate) entry_lock: Mutex<()>,
    /// Retired slots and tombstones waiting to be retired (see `reuse.rs`).
    pub(crate) slots: crate::reuse::Slots,
    rng: Mutex<StdRng>,
    /// Published, undeleted vectors.
    live: AtomicUsize,
    /// Live plus reserved by inserts in progress: what `max_elements` bounds.
    claimed: AtomicUsize,
    pub(crate) repair_lock: Mutex<()>,
    /// Set when neighbour selection turned away an exact duplicate of a kept neighbour: groups
    /// of duplicates can then close in on themselves, so the batch ends with a repair pass.
    pub(crate) duplicates_seen: std::sync::atomic::AtomicBool,
    /// Per-node metadata, expiry and field indexes (`items.rs`). Lock order: an id's shard lock
    /// (`idmap.rs`) before this one, never the reverse.
    pub(crate) meta: parking_lot::RwLock<crate::items::MetaState>,
    /// Entries in `meta`'s side map: lets inserts and deletes of plain vectors skip the lock.
    pub(crate) side_len: AtomicUsize,
    /// Side entries with an expiry time: lets searches skip the expiry check when there are none.
    pub(crate) expiring: AtomicUsize,
    /// Where "now" comes from for expiry.
    pub(crate) clock: parking_lot::RwLock<std::sync::Arc<dyn crate::expiry::Clock>>,
    /// The beam width of searches that pass none (`search.rs`), from `cfg.ef_search`.
    pub(crate) default_ef: AtomicUsize,
    /// The codes a large batch walks while it runs (`walk_codes.rs`); `None` otherwise.
    pub(crate) walk: crate::walk_codes::WalkSlot,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("config", &self.cfg).field("len", &self.len()).finish()
    }
}

impl Index {
    /// Creates an empty index after validating `config`.
    pub fn new(config: IndexConfig) -> Result<Self> {
        Self::with_kernels(config, kernels())
    }

    /// Like [`Index::new`] with an explicit kernel set (for benchmarks comparing kernels).
    /// [`Storage::F16`] always runs the fastest [`compact_kernels`](crate::distance::compact_kernels).
    /// Under [`Storage::F32`] the graph walk also uses the four-vector kernels that
    /// [`quad_kernels_for`](crate::distance::quad_kernels_for) gives for `k.isa` (only
    /// `"avx512"` has them): a hand-made set that should be used for every distance needs an
    /// `isa` name of its own.
    pub fn with_kernels(config: IndexConfig, k: Kernels) -> Result<Self> {
        let codec = ListCodec::for_max_elements(config.max_elements);
        Self::with_codec(config, k, codec)
    }

    /// [`with_kernels`](Self::with_kernels) with the slot width given (a snapshot with more
    /// nodes than 3-byte slots can name needs 4-byte ones whatever its `max_elements`).
    pub(crate) fn with_codec(config: IndexConfig, k: Kernels, codec: ListCodec) -> Result<Self> {
        config.validate()?;
        let kind = match (config.storage, config.metric) {
            (Storage::F32, Metric::L2) => DistKind::L2F32,
            (Storage::F32, _) => DistKind::DotF32,
            (Storage::U8, Metric::L2) => DistKind::L2U8,
            (Storage::U8, _) => DistKind::DotU8,
            (Storage::F16, Metric::L2) => DistKind::L2F16,
            (Storage::F16, _) => DistKind::DotF16,
            (Storage::Sq8, Metric::L2) => DistKind::L2Sq8,
            (Storage::Sq8, _) => DistKind::DotSq8,
        };
        let (row, exact) = match config.storage {
            // Codes, then the decoded squared norm.
            Storage::Sq8 => (config.dim + 4, config.dim * 4),
            s => (config.dim * s.element_size(), 0),
        };
        let mut store = NodeStore::new(row, exact, config.m, config.m0, codec);
        if config.storage == Storage::F32 {
            store.set_prefetch_len(f32_prefetch_bytes());
        }
        Ok(Self {
            ml: config.level_multiplier(),
            kind,
            k,
            ck: compact_kernels(),
            quad: quad_kernels_for(k.isa).and_then(|q| match kind {
                DistKind::L2F32 => Some(q.l2_f32_x4),
                DistKind::DotF32 => Some(q.dot_f32_x4),
                _ => None,
            }),
            sq8: OnceLock::new(),
            store,
            ids: IdMap::new(),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            slots: crate::reuse::Slots::default(),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            live: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            repair_lock: Mutex::new(()),
            duplicates_seen: std::sync::atomic::AtomicBool::new(false),
            meta: parking_lot::RwLock::new(crate::items::MetaState::default()),
            side_len: AtomicUsize::new(0),
            expiring: AtomicUsize::new(0),
            clock: parking_lot::RwLock::new(std::sync::Arc::new(crate::expiry::SystemClock)),
            default_ef: AtomicUsize::new(config.ef_search),
            walk: crate::walk_codes::WalkSlot::default(),
            cfg: config,
        })
    }

    /// The index parameters.
    pub fn config(&self) -> &IndexConfig {
        &self.cfg
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.cfg.dim
    }

    /// Number of live (searchable, undeleted) vectors.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether the index holds no live vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is present and searchable (not deleted, not expired).
    pub fn contains(&self, id: u64) -> bool {
        self.ids.get(&self.store, id).is_some_and(|n| self.store.is_live(n) && !self.is_expired_node(n))
    }

    /// The stored vector of `id` (normalised under [`Metric::Cosine`]); `None` when absent or
    /// expired.
    pub fn get(&self, id: u64) -> Option<Vec<f32>> {
        let n = self.ids.get(&self.store, id)?;
        if !self.store.is_live(n) || self.is_expired_node(n) {
            return None;
        }
        let mut out = Vec::with_capacity(self.cfg.dim);
        self.decode_into(n, &mut out);
        Some(out)
    }

    /// Every live, unexpired id, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        let expiry = self.expiry_view();
        self.ids
            .entries(&self.store)
            .into_iter()
            .filter(|&(_, n)| self.store.is_live(n) && !expiry.is_expired(n))
            .map(|(id, _)| id)
            .collect()
    }

    /// Approximate bytes held by the index (vectors, links, per-node fields and the id map).
    ///
    /// Under [`Storage::Sq8`] this includes the exact `f32` originals, which only re-scoring,
    /// [`get`](Self::get) and snapshots read; [`hot_memory_bytes`](Self::hot_memory_bytes) leaves
    /// them out.
    pub fn memory_bytes(&self) -> usize {
        self.store.memory_bytes() + self.ids.heap_bytes()
    }

    /// Bytes per neighbour link: 3 when [`IndexConfig::max_elements`] is set to at most
    /// 8 388 608 (node numbers then fit in 24 bits), 4 otherwise. The narrower links save a
    /// quarter of the links' memory (32 bytes per vector at the default `M0 = 32`), for about
    /// 2–4 % of search speed (each list is decoded and its copy checked; `docs/benchmarks.md`,
    /// session 10); builds take the same time.
    ///
    /// ```
    /// use hnsw_batch::{Index, IndexConfig, Metric};
    /// assert_eq!(Index::new(IndexConfig::new(4, Metric::L2))?.link_bytes(), 4);
    /// let small = Index::new(IndexConfig::new(4, Metric::L2).max_elements(1_000_000))?;
    /// assert_eq!(small.link_bytes(), 3);
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn link_bytes(&self) -> usize {
        self.store.slot_bytes()
    }

    /// [`memory_bytes`](Self::memory_bytes) without the [`Storage::Sq8`] `f32` originals: the
    /// codes, norms and links the graph walk reads, and the per-node fields and id map besides.
    /// Equal to `memory_bytes` for other storages.
    pub fn hot_memory_bytes(&self) -> usize {
        self.memory_bytes() - self.store.exact_memory_bytes()
    }

    // ----- sq8 training ------------------------------------------------------------------------

    /// The [`Storage::Sq8`] quantisation parameters, once trained (`None` for other storages).
    pub fn sq8_params(&self) -> Option<&Sq8Params> {
        self.sq8.get()
    }

    /// Whether a single vector can be stored now: always, except for an untrained
    /// [`Storage::Sq8`] index ([`IndexError::Sq8Untrained`]).
    pub(crate) fn check_trained(&self) -> Result<()> {
        if self.cfg.storage == Storage::Sq8 && self.sq8.get().is_none() {
            return Err(IndexError::Sq8Untrained);
        }
        Ok(())
    }

    /// Trains the [`Storage::Sq8`] quantisation parameters on `rows` (a seeded sample of at most
    /// [`SQ8_TRAIN_SAMPLE`] of them), so that single [`insert`](Self::insert)s work from the
    /// start. Each component's range is its minimum to maximum over the sample (after cosine
    /// normalisation); values outside it are stored saturated and re-scoring with the exact
    /// vectors fixes the final order, so the sample should resemble the data.
    ///
    /// Without this call, the first batch inserted into the empty index trains on itself.
    ///
    /// Errors ([`IndexError::InvalidParameter`] unless said otherwise; the index is unchanged):
    /// the storage is not `sq8`; it is already trained or holds vectors; `rows` is empty; a row
    /// fails the checks of [`insert`](Self::insert) (its own error).
    pub fn train_sq8<V: AsRef<[f32]>>(&self, rows: &[V]) -> Result<()> {
        let bad = |reason: &str| Err(IndexError::InvalidParameter { name: "storage", reason: reason.into() });
        if self.cfg.storage != Storage::Sq8 {
            return bad(&format!("train_sq8 needs sq8 storage, the index has {}", self.cfg.storage.name()));
        }
        if self.sq8.get().is_some() || self.store.allocated() > 0 {
            return bad("sq8 parameters can only be trained once, before any vector is inserted");
        }
        if rows.is_empty() {
            return Err(IndexError::InvalidParameter {
                name: "rows",
                reason: "train_sq8 needs at least one row".into(),
            });
        }
        for r in rows {
            self.validate_vector(r.as_ref()).map_err(IndexError::from)?;
        }
        self.train_sq8_on(rows.len(), |i| rows[i].as_ref());
        Ok(())
    }

    /// Trains on a seeded sample of at most [`SQ8_TRAIN_SAMPLE`] of the `count` valid rows
    /// `row(i)`, unless the index is already trained. Deterministic for a given seed and rows,
    /// which log replay relies on (`persist/durable/recovery.rs`).
    pub(crate) fn train_sq8_on<'a>(&self, count: usize, row: impl Fn(usize) -> &'a [f32]) {
        if self.cfg.storage != Storage::Sq8 || self.sq8.get().is_some() || count == 0 {
            return;
        }
        let picked: Vec<usize> = if count <= SQ8_TRAIN_SAMPLE {
            (0..count).collect()
        } else {
            let mut rng = StdRng::seed_from_u64(self.cfg.seed ^ 0x5138_5452_4149_4e00);
            let mut v = rand::seq::index::sample(&mut rng, count, SQ8_TRAIN_SAMPLE).into_vec();
            v.sort_unstable();
            v
        };
        let forms: Vec<Cow<'_, [f32]>> = picked.iter().map(|&i| self.query_form(row(i))).collect();
        // Rows were validated (finite, right length), so training cannot fail; if it did, the
        // index would stay untrained and compute SQ8 distances exactly (see `Probe`).
        if let Ok(p) = Sq8Params::train(forms.iter().map(|f| &**f), self.cfg.dim) {
            let _ = self.sq8.set(p);
        }
    }

    /// Sets the parameters of a loaded index. `false` if it already has some or they do not fit.
    pub(crate) fn set_sq8_params(&self, p: Sq8Params) -> bool {
        p.dim() == self.cfg.dim && self.cfg.storage == Storage::Sq8 && self.sq8.set(p).is_ok()
    }

    /// Number of node slots ever allocated (live, deleted or in flight).
    pub fn allocated_nodes(&self) -> usize {
        self.store.allocated() as usize
    }

    // ----- validation and encoding -------------------------------------------------------------

    /// Checks a vector against the index: dimension, finiteness, storage range, cosine norm.
    pub(crate) fn validate_vector(&self, v: &[f32]) -> std::result::Result<(), VectorError> {
        if v.len() != self.cfg.dim {
            return Err(VectorError::Dimension { expected: self.cfg.dim, actual: v.len() });
        }
        if let Some((component, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(VectorError::NonFinite { component, value });
        }
        let storage = self.cfg.storage;
        let unrepresentable = match storage {
            Storage::F32 => None,
            Storage::U8 => v.iter().position(|&x| !(0.0..=255.0).contains(&x) || x.fract() != 0.0),
            // Cosine stores the normalised vector, whose components are within [-1, 1].
            Storage::F16 if self.cfg.metric == Metric::Cosine => None,
            Storage::F16 => v.iter().position(|&x| x.abs() > F16_MAX),
            // Out-of-range values saturate; the exact original is kept.
            Storage::Sq8 => None,
        };
        if let Some(component) = unrepresentable {
            return Err(VectorError::Unrepresentable { component, value: v[component], storage });
        }
        if self.cfg.metric == Metric::Cosine && norm(v) == 0.0 {
            return Err(VectorError::ZeroNorm);
        }
        Ok(())
    }

    /// Checks a query: dimension and finiteness (any finite value is fine for `u8` and `f16` storage).
    pub(crate) fn validate_query(&self, q: &[f32]) -> Result<()> {
        if q.len() != self.cfg.dim {
            return Err(IndexError::DimensionMismatch { expected: self.cfg.dim, actual: q.len() });
        }
        if let Some((component, &value)) = q.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(IndexError::NonFiniteValue { component, value });
        }
        if self.cfg.metric == Metric::Cosine && norm(q) == 0.0 {
            return Err(IndexError::ZeroVector);
        }
        Ok(())
    }

    /// The form of a (validated) vector that distances are computed from.
    pub(crate) fn query_form<'a>(&self, v: &'a [f32]) -> Cow<'a, [f32]> {
        if self.cfg.metric == Metric::Cosine {
            let inv = 1.0 / norm(v);
            Cow::Owned(v.iter().map(|x| x * inv).collect())
        } else {
            Cow::Borrowed(v)
        }
    }

    /// Encodes a query-form vector into stored bytes.
    pub(crate) fn encode(&self, q: &[f32], out: &mut Vec<u8>) {
        out.clear();
        match self.cfg.storage {
            Storage::F32 => out.extend_from_slice(bytemuck::cast_slice(q)),
            Storage::U8 => out.extend(q.iter().map(|&x| x as u8)),
            Storage::F16 => {
                let mut bits = [0u16; 64];
                for chunk in q.chunks(bits.len()) {
                    let bits = &mut bits[..chunk.len()];
                    crate::distance::encode_f16(chunk, bits);
                    out.extend(bits.iter().flat_map(|h| h.to_ne_bytes()));
                }
            }
            Storage::Sq8 => {
                // Codes, then the decoded squared norm. Untrained (never reached: every insert
                // path trains or refuses first), zero codes; distances are then exact anyway.
                out.resize(self.cfg.dim + 4, 0);
                let (codes, norm) = out.split_at_mut(self.cfg.dim);
                let mut n = 0.0f32;
                if let Some(p) = self.sq8.get().filter(|_| q.len() == codes.len()) {
                    p.encode(q, codes);
                    n = p.decoded_norm_sq(codes);
                }
                norm.copy_from_slice(&n.to_ne_bytes());
            }
        }
    }

    /// The stored vector of node `n`, decoded to `f32`.
    pub(crate) fn decode_into(&self, n: u32, out: &mut Vec<f32>) {
        out.clear();
        let _pin = epoch::pin();
        match self.cfg.storage {
            // SAFETY: the crate's reader invariant (`store.rs`, "Slot reuse"): node numbers come
            // from published sources, and the thread is pinned (here) while it reads.
            Storage::F32 => out.extend_from_slice(unsafe { self.store.vector_f32(n) }),
            // SAFETY: as above.
            Storage::U8 => out.extend(unsafe { self.store.vector_bytes(n) }.iter().map(|&b| b as f32)),
            Storage::F16 => {
                // SAFETY: as above.
                let bits = unsafe { self.store.vector_f16(n) };
                out.resize(bits.len(), 0.0);
                crate::distance::decode_f16(bits, out);
            }
            // SAFETY: as above.
            Storage::Sq8 => out.extend_from_slice(unsafe { self.store.exact_f32(n) }),
        }
    }

    // ----- distances ---------------------------------------------------------------------------

    /// Distance from a query-form vector to node `n`.
    ///
    /// The crate's reader invariant makes this sound: every node number the graph code holds
    /// comes from a published source (a neighbour slot, the entry point, the id map, or a scan
    /// that saw the node ready), and every path that reads vectors runs pinned in the epoch
    /// (`with_scratch` pins; so do the scans), so the slot cannot be reused and rewritten while
    /// it is read (`store.rs`, "Slot reuse"). Debug builds check the pin.
    ///
    /// Under [`Storage::Sq8`] this is the walk's distance, from the codes, when `q` is prepared
    /// ([`probe`](Self::probe)), and the exact one from the `f32` original otherwise
    /// ([`Probe::exact`]).
    #[inline(always)]
    pub(crate) fn dist(&self, q: &Probe<'_>, n: u32) -> f32 {
        debug_assert!(epoch::is_pinned(), "vector read outside an epoch pin");
        if let Some((codes, wq)) = &q.walk {
            if let Some(d) = codes.dist(wq, n, self.ck.dot_u8i8) {
                return d;
            }
        }
        // SAFETY: see above.
        unsafe {
            match self.kind {
                DistKind::L2F32 => (self.k.l2_f32)(q.v, self.store.vector_f32(n)),
                DistKind::DotF32 => 1.0 - (self.k.dot_f32)(q.v, self.store.vector_f32(n)),
                DistKind::L2U8 => (self.k.l2_u8)(q.v, self.store.vector_bytes(n)),
                DistKind::DotU8 => 1.0 - (self.k.dot_u8)(q.v, self.store.vector_bytes(n)),
                DistKind::L2F16 => (self.ck.l2_f16)(q.v, self.store.vector_f16(n)),
                DistKind::DotF16 => 1.0 - (self.ck.dot_f16)(q.v, self.store.vector_f16(n)),
                DistKind::L2Sq8 | DistKind::DotSq8 => self.dist_sq8(q, n),
            }
        }
    }

    /// [`dist`](Self::dist) under [`Storage::Sq8`].
    ///
    /// # Safety
    /// The reader invariant of [`dist`](Self::dist).
    #[inline(always)]
    unsafe fn dist_sq8(&self, q: &Probe<'_>, n: u32) -> f32 {
        let l2 = self.kind == DistKind::L2Sq8;
        // SAFETY: the caller upholds the reader invariant.
        let row = unsafe { self.store.vector_bytes(n) };
        let dim = self.cfg.dim;
        match (&q.sq8, row.get(..dim), row.get(dim..dim + 4)) {
            (Some(p), Some(codes), Some(norm)) => {
                let norm = f32::from_ne_bytes([norm[0], norm[1], norm[2], norm[3]]);
                if l2 {
                    p.l2_with(self.ck.dot_u8i8, codes, norm)
                } else {
                    1.0 - p.dot_with(self.ck.dot_u8i8, codes)
                }
            }
            _ => {
                // SAFETY: as above.
                let x = unsafe { self.store.exact_f32(n) };
                if l2 {
                    (self.k.l2_f32)(q.v, x)
                } else {
                    1.0 - (self.k.dot_f32)(q.v, x)
                }
            }
        }
    }

    /// Prepares a query-form vector for [`dist`](Self::dist): under a trained
    /// [`Storage::Sq8`], its integer form (once per query); otherwise just the vector.
    #[inline]
    pub(crate) fn probe<'a>(&self, v: &'a [f32]) -> Probe<'a> {
        let sq8 = match self.kind {
            DistKind::L2Sq8 | DistKind::DotSq8 => {
                self.sq8.get().filter(|p| p.dim() == v.len()).map(|p| p.prepare_query(v))
            }
            _ => None,
        };
        Probe { v, sq8, walk: None }
    }

    /// Node `n` as a query: borrowed for `f32` storage (and the `f32` original, prepared, for
    /// `sq8`), decoded into `buf` otherwise. The caller is pinned (see [`dist`](Self::dist)).
    #[inline]
    pub(crate) fn node_query<'a>(&'a self, n: u32, buf: &'a mut Vec<f32>) -> Probe<'a> {
        debug_assert!(epoch::is_pinned(), "vector read outside an epoch pin");
        match self.cfg.storage {
            // SAFETY: the reader invariant, as in `dist`.
            Storage::F32 => Probe::exact(unsafe { self.store.vector_f32(n) }),
            // SAFETY: as above. Node-to-node distances (selection, pruning, repair) are exact,
            // between `f32` originals: preparing each node as an SQ8 query (a pass over its
            // vector and an allocation, for every candidate of every selection) was 60-85 % of
            // an `sq8` build's time, and an exact distance costs less than that preparation.
            Storage::Sq8 => Probe::exact(unsafe { self.store.exact_f32(n) }),
            Storage::U8 | Storage::F16 => {
                self.decode_into(n, buf);
                Probe::exact(buf)
            }
        }
    }

    // ----- levels and capacity -----------------------------------------------------------------

    /// Draws `count` levels from the seeded generator: `floor(-ln(U) * ml)`, capped at `MAX_LEVEL`.
    pub(crate) fn draw_levels(&self, out: &mut Vec<u8>, count: usize) {
        let mut rng = self.rng.lock();
        out.extend((0..count).map(|_| {
            let u: f64 = rng.random();
            let l = (-(1.0 - u).ln() * self.ml).floor();
            (l as usize).min(MAX_LEVEL) as u8
        }));
    }

    /// The `max_elements` bound in force (the `u32` node space when none is configured).
    pub(crate) fn capacity_limit(&self) -> usize {
        self.cfg.max_elements.unwrap_or(u32::MAX as usize - 1)
    }

    /// How many more vectors fit under `max_elements` right now.
    pub(crate) fn capacity_room(&self) -> usize {
        self.capacity_limit().saturating_sub(self.claimed.load(Ordering::Acquire))
    }

    /// Claims room for up to `count` more live vectors; with `exact`, all of them or none.
    /// Returns how many were claimed.
    pub(crate) fn claim_up_to(&self, count: usize, exact: bool) -> usize {
        let limit = self.capacity_limit();
        let mut cur = self.claimed.load(Ordering::Relaxed);
        loop {
            let room = limit.saturating_sub(cur).min(count);
            if room == 0 || (exact && room < count) {
                return 0;
            }
            match self.claimed.compare_exchange_weak(cur, cur + room, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return room,
                Err(a) => cur = a,
            }
        }
    }

    /// Claims room for `count` more live vectors under `max_elements`.
    pub(crate) fn claim(&self, count: usize) -> Result<()> {
        let limit = self.cfg.max_elements.unwrap_or(u32::MAX as usize - 1);
        let mut cur = self.claimed.load(Ordering::Relaxed);
        loop {
            let next = cur.checked_add(count).filter(|&n| n <= limit);
            let Some(next) = next else {
                return Err(IndexError::CapacityExceeded { limit: limit as u64 });
            };
            match self.claimed.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(a) => cur = a,
            }
        }
    }

    pub(crate) fn unclaim(&self, count: usize) {
        self.claimed.fetch_sub(count, Ordering::AcqRel);
    }

    /// A node slot for one vector: a retired slot whose grace period has passed if there is
    /// one, else a fresh one; `CapacityExceeded` when the `u32` node space is used up.
    pub(crate) fn alloc_node(&self) -> Result<u32> {
        match self.pop_free_slot() {
            Some(n) => Ok(n),
            None => self.alloc_nodes(1),
        }
    }

    /// Fresh node slots for `count` vectors, or `CapacityExceeded` when the node space is used
    /// up (`u32` node numbers, or 24-bit ones under a small `max_elements`).
    pub(crate) fn alloc_nodes(&self, count: usize) -> Result<u32> {
        u32::try_from(count)
            .ok()
            .and_then(|c| self.store.alloc(c))
            .ok_or(IndexError::CapacityExceeded { limit: self.store.node_limit() - 1 })
    }

    // ----- insert ------------------------------------------------------------------------------

    /// Inserts one vector under `id`.
    ///
    /// Errors: [`IndexError::DimensionMismatch`], [`IndexError::NonFiniteValue`],
    /// [`IndexError::ZeroVector`] (cosine), [`IndexError::UnrepresentableValue`] (`u8`,
    /// `f16` storage), [`IndexError::DuplicateId`], [`IndexError::CapacityExceeded`]. On error the index is unchanged.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.insert_side(id, vector, None)
    }

    /// [`insert`](Self::insert) with side data (metadata, expiry) already validated and encoded.
    pub(crate) fn insert_side(
        &self,
        id: u64,
        vector: &[f32],
        side: Option<crate::items::Side>,
    ) -> Result<()> {
        self.validate_vector(vector).map_err(IndexError::from)?;
        self.check_trained()?;
        let q = self.query_form(vector);
        if !self.ids.reserve(&self.store, id) {
            return Err(IndexError::DuplicateId { id });
        }
        let node = match self.claim(1).and_then(|_| match self.alloc_node() {
            Ok(n) => Ok(n),
            Err(e) => {
                self.unclaim(1);
                Err(e)
            }
        }) {
            Ok(n) => n,
            Err(e) => {
                self.ids.release(id);
                return Err(e);
            }
        };
        let mut levels = Vec::with_capacity(1);
        self.draw_levels(&mut levels, 1);
        if with_scratch(|s| self.insert_prepared(node, id, &q, levels[0] as usize, s, side)) {
            Ok(())
        } else {
            Err(IndexError::CapacityExceeded { limit: self.allocated_nodes() as u64 })
        }
    }

    /// Writes, links and publishes a node whose id is reserved, capacity claimed and number allocated.
    /// Returns `false` (and gives back the id and the claim) if memory for the node ran out.
    pub(crate) fn insert_prepared(
        &self,
        node: u32,
        id: u64,
        q: &[f32],
        level: usize,
        s: &mut Scratch,
        side: Option<crate::items::Side>,
    ) -> bool {
        if !self.write_and_link(node, id, q, level, s) {
            self.ids.release(id);
            self.unclaim(1);
            self.give_back_unpublished(node);
            return false;
        }
        // Side data before publication, so no reader sees the live node without its metadata.
        if let Some(side) = side {
            self.attach_side(node, side);
        }
        // Map the id before the node can appear in results, so every result is gettable; the
        // flag and the count change under the id's lock, ordered with any delete of the id.
        self.ids.publish(&self.store, id, node, || {
            self.store.mark_ready(node);
            self.live.fetch_add(1, Ordering::AcqRel);
        });
        true
    }

    /// Writes node `node` and links it into the graph; searches route through it but do not
    /// return it until the caller marks it ready. `false` if memory ran out (the node stays an
    /// unlinked hole).
    fn write_and_link(&self, node: u32, id: u64, q: &[f32], level: usize, s: &mut Scratch) -> bool {
        let mut bytes = std::mem::take(&mut s.bytes);
        self.encode(q, &mut bytes);
        let exact: &[u8] = if self.cfg.storage == Storage::Sq8 { bytemuck::cast_slice(q) } else { &[] };
        // SAFETY: `node` came from `alloc_node` to this thread (fresh, or reused after its grace
        // period) and is published only after linking.
        let ok = unsafe { self.store.init_node(node, id, level, &bytes, exact) };
        s.bytes = bytes;
        if ok {
            let walk = self.walk.current();
            let mut p = self.probe(q);
            if let Some(codes) = walk.as_deref() {
                // Before linking: from then on other inserts can walk to this node.
                codes.record_new(node, q);
                p.walk = Some((codes, codes.prepare(q)));
            }
            self.link(node, &p, level, s);
        }
        ok
    }

    /// Replaces the vector stored under `id`. The new vector is linked as a fresh node before the
    /// old one is tombstoned, so searches see one version or the other, never neither.
    ///
    /// Errors: those of [`insert`](Self::insert) about the vector, and [`IndexError::NotFound`].
    /// The id's metadata and expiry are carried over to the new vector.
    pub fn update(&self, id: u64, vector: &[f32]) -> Result<()> {
        self.update_side(id, vector, None)
    }

    /// [`update`](Self::update); `meta` (encoded), if given, replaces the id's metadata.
    pub(crate) fn update_side(&self, id: u64, vector: &[f32], meta: Option<Box<[u8]>>) -> Result<()> {
        self.validate_vector(vector).map_err(IndexError::from)?;
        self.check_trained()?;
        if self.ids.get(&self.store, id).is_none() {
            return Err(IndexError::NotFound { id });
        }
        let q = self.query_form(vector);
        let node = self.alloc_node()?;
        let mut levels = Vec::with_capacity(1);
        self.draw_levels(&mut levels, 1);
        if !with_scratch(|s| self.write_and_link(node, id, &q, levels[0] as usize, s)) {
            self.give_back_unpublished(node);
            return Err(IndexError::CapacityExceeded { limit: self.allocated_nodes() as u64 });
        }
        // New version visible first, old one hidden after, both under the id's lock: a search
        // in between may meet both (results keep the closer, see `finish`), never neither.
        let replaced = self.ids.replace_published(&self.store, id, node, |old| {
            // Under the id's lock, so no metadata patch of the id slips in between.
            self.move_side(old, node, meta);
            self.store.mark_ready(node);
            self.store.mark_deleted(old);
        });
        let Some(old) = replaced else {
            // Deleted while the new version was being linked: the delete wins (an update never
            // resurrects an id), and the linked node becomes a tombstone like any deleted one.
            self.store.mark_ready(node);
            self.store.mark_deleted(node);
            self.unlink_deleted(node);
            return Err(IndexError::NotFound { id });
        };
        self.unlink_deleted(old);
        Ok(())
    }

    /// Finds neighbours for `node` on every level, writes its lists, then adds back-links.
    fn link(&self, node: u32, q: &Probe<'_>, level: usize, s: &mut Scratch) {
        let ep = loop {
            let e = self.entry.load(Ordering::Acquire);
            if e != EMPTY {
                break e;
            }
            let _g = self.entry_lock.lock();
            if self.entry.load(Ordering::Acquire) == EMPTY {
                self.entry.store(pack(node, level), Ordering::Release);
                return;
            }
        };
        let (ep_node, top) = unpack(ep);
        let cur = self.descend(q, ep_node, top, level + 1, s);
        let top_link = level.min(top);
        let mut chosen: Vec<Vec<u32>> = vec![Vec::new(); top_link + 1];
        let mut seeds = std::mem::take(&mut s.seeds);
        seeds.clear();
        seeds.push(cur);
        let ef = self.cfg.ef_construction;
        for l in (0..=top_link).rev() {
            // Tombstones route the search but are not linked to: otherwise they keep
            // attracting links under update churn and live nodes end up reachable only
            // through dead, detached pieces of the graph.
            let live = |n: u32| self.store.is_linkable(n);
            self.layer_search(q, &seeds, l, ef, s, live);
            if s.results.is_empty() {
                // Only tombstones around: link to them rather than to nothing (never to a
                // retired slot, which may be reused).
                self.layer_search(q, &seeds, l, ef, s, |n| self.store.is_ready(n));
            }
            s.sorted.clear();
            s.sorted.extend(s.results.drain());
            s.sorted.sort_unstable();
            // A new node keeps at most `m` neighbours on every level, level 0 included, as
            // hnswlib does; reverse links fill level-0 lists up to `m0`. Taking up to `m0` at
            // once (as FAISS does) raises recall at a given ef but costs more distances for
            // it: on debian-minilm (f32, M 16, three seeds) reaching recall@10 0.95 took 0-4 %
            // more distances per query and 0.99 4-7 % more, and builds took 1.2x as long
            // (docs/benchmarks.md, session 8).
            let copies = s.sorted.iter().take_while(|c| self.is_duplicate(q, c.n(), c.d())).count();
            if copies > 0 {
                // An exact duplicate of the new vector: `select` may never compare the two
                // (it keeps every candidate when there are few), so note it here.
                self.duplicates_seen.store(true, Ordering::Relaxed);
            }
            chosen[l] = self.select(&s.sorted, copies, self.cfg.m, &mut s.decoded);
            seeds.clear();
            seeds.extend_from_slice(&s.sorted);
        }
        s.seeds = seeds;
        {
            let _g = self.store.lock(node);
            for (l, c) in chosen.iter().enumerate() {
                self.store.set_links(node, l, c);
            }
        }
        let mut orphans = Vec::new();
        for (l, c) in chosen.iter().enumerate() {
            for &nb in c {
                orphans.extend(self.add_link(nb, node, l, s));
            }
        }
        if self.store.indeg(node) == 0 {
            self.force_in_link(node, &chosen[0]);
        }
        for x in orphans {
            let mut around = Vec::new();
            self.store.read_links(x, 0, &mut around);
            around.retain(|&y| self.store.is_linkable(y));
            self.force_in_link(x, &around);
        }
        if level > top {
            let _g = self.entry_lock.lock();
            let (_, cur_top) = unpack(self.entry.load(Ordering::Acquire));
            if level > cur_top {
                self.entry.store(pack(node, level), Ordering::Release);
            }
        }
    }

    /// Adds `new` to `nb`'s list on `level`, pruning with the heuristic when the list is full.
    ///
    /// On level 0 a pruned node whose last in-link this was is kept instead of a kept node that
    /// has other in-links: without it, vectors that are never anyone's close neighbour (small
    /// norms under inner product, outliers) end up unreachable. Each drop is decided together
    /// with its in-degree decrement (`try_release0`), so two threads pruning different lists
    /// cannot both drop a node's last two links. Returns a node that lost its last in-link
    /// anyway (every kept node depended on this list too), for the caller to re-home.
    fn add_link(&self, nb: u32, new: u32, level: usize, s: &mut Scratch) -> Option<u32> {
        if !self.store.is_linkable(nb) {
            // Deleted since it was chosen: a link from a tombstone would only route searches
            // into a node that is being unlinked.
            return None;
        }
        let _g = self.store.lock(nb);
        self.store.read_links(nb, level, &mut s.ids);
        if s.ids.contains(&new) || self.store.try_push_link(nb, level, new) {
            return None;
        }
        s.ids.push(new);
        let mut buf = std::mem::take(&mut s.decoded2);
        let nq = self.node_query(nb, &mut buf);
        s.sorted.clear();
        for &x in &s.ids {
            s.sorted.push(Cand::new(self.dist(&nq, x), x));
        }
        s.sorted.sort_unstable();
        let copies = s.sorted.iter().take_while(|c| self.is_duplicate(&nq, c.n(), c.d())).count();
        s.decoded2 = buf;
        let cap = self.store.cap(level);
        let mut keep = self.select(&s.sorted, copies, cap, &mut s.decoded);
        let old = &s.ids[..s.ids.len() - 1];
        // Fixed before any swap below, so a node swapped out as a victim (and uncounted there)
        // is not uncounted a second time as a drop.
        let dropped: Vec<u32> = old.iter().copied().filter(|x| !keep.contains(x)).collect();
        let mut orphan = None;
        for x in dropped {
            if level > 0 {
                self.store.dec_indeg(x, level);
                continue;
            }
            if self.store.try_release0(x) == Release::Done {
                continue;
            }
            // `x` would lose its last in-link: keep it, in place of the farthest kept node
            // that can spare this link, else of `new` (which gets in-links elsewhere).
            if keep.len() < cap {
                keep.push(x);
            } else if let Some(i) = keep
                .iter()
                .rposition(|&v| v != new && old.contains(&v) && self.store.try_release0(v) == Release::Done)
            {
                keep[i] = x;
            } else if let Some(i) = keep.iter().position(|&v| v == new) {
                keep[i] = x;
            } else {
                self.store.dec_indeg(x, 0);
                orphan = Some(x);
            }
        }
        if keep.contains(&new) {
            self.store.inc_indeg(new, level);
        }
        self.store.set_links_counted(nb, level, &keep);
        orphan
    }

    /// Gives `node` one level-0 in-link from the first of `nbrs` that can take it: appended
    /// where there is room, else replacing an entry that has other in-links. `false` if none
    /// could.
    pub(crate) fn force_in_link(&self, node: u32, nbrs: &[u32]) -> bool {
        let mut list = Vec::new();
        for &nb in nbrs {
            if nb == node || !self.store.is_linkable(nb) {
                continue;
            }
            let _g = self.store.lock(nb);
            self.store.read_links(nb, 0, &mut list);
            if list.contains(&node) || self.store.try_push_link(nb, 0, node) {
                return true;
            }
            if let Some(i) =
                (0..list.len()).rev().find(|&i| self.store.try_release0(list[i]) == Release::Done)
            {
                list[i] = node;
                self.store.inc_indeg(node, 0);
                self.store.set_links_counted(nb, 0, &list);
                return true;
            }
        }
        false
    }

    /// Neighbour-selection heuristic (HNSW paper, algorithm 4, without candidate extension):
    /// walk candidates nearest first and keep one only if it is closer to the base than to every
    /// neighbour kept so far, so links spread in different directions. `sorted[..copies]` are
    /// exact duplicates of the base.
    ///
    /// A kept copy of the base blocks only other copies: every other candidate is exactly as far
    /// from it as from the base, so the paper's test (blocked when a kept neighbour is at most
    /// as near) would leave the base linked to its copy alone. Measured on debian-minilm: an
    /// `update_batch` giving every id the vector the next id held (each a copy of a live vector
    /// for a while) left recall@10 0.45 at ef 16 instead of 0.95.
    fn select(&self, sorted: &[Cand], copies: usize, m: usize, buf: &mut Vec<f32>) -> Vec<u32> {
        if sorted.len() <= m {
            return sorted.iter().map(|c| c.n()).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        // `kept[..kept_copies]` are copies of the base (they come first, as in `sorted`).
        let mut kept_copies = 0;
        for (i, c) in sorted.iter().enumerate() {
            if kept.len() >= m {
                break;
            }
            let cq = self.node_query(c.n(), buf);
            let from = if i < copies { 0 } else { kept_copies };
            // Strict, as in the paper: an exact duplicate of a kept neighbour adds no direction.
            let mut blocker = None;
            let mut blocker_node = c.n();
            for &r in &kept[from..] {
                let d = self.dist(&cq, r);
                if d <= c.d() {
                    blocker = Some(d);
                    blocker_node = r;
                    break;
                }
            }
            match blocker {
                None => {
                    kept.push(c.n());
                    if i < copies {
                        kept_copies += 1;
                    }
                }
                Some(d) if self.is_duplicate(&cq, blocker_node, d) => {
                    self.duplicates_seen.store(true, Ordering::Relaxed)
                }
                Some(_) => {}
            }
        }
        kept
    }

    /// Whether node `n`, at walk distance `d` from `q`, is an exact duplicate of it. Under
    /// [`Storage::Sq8`], or on a batch's walk codes, walk distances are approximate, so a small
    /// one is checked exactly.
    fn is_duplicate(&self, q: &Probe<'_>, n: u32, d: f32) -> bool {
        if self.cfg.storage != Storage::Sq8 && q.walk.is_none() {
            return d <= DUPLICATE_DIST;
        }
        self.dist(&Probe::exact(q.v), n) <= DUPLICATE_DIST
    }

    // ----- search ------------------------------------------------------------------------------

    /// Starts loading what [`dist`](Self::dist) will read for node `n`: its code when the probe
    /// walks a batch's codes and `n` has one, else its stored vector.
    #[inline(always)]
    fn prefetch_walk(&self, q: &Probe<'_>, n: u32) {
        match &q.walk {
            Some((codes, _)) if codes.prefetch(n) => {}
            _ => self.store.prefetch_vector(n),
        }
    }

    /// Starts loading the rows of the first [`PREFETCH_AHEAD`] of `ids`, for
    /// [`dists_of`](Self::dists_of).
    #[inline(always)]
    fn prefetch_first(&self, q: &Probe<'_>, ids: &[u32]) {
        for &nb in ids.iter().take(PREFETCH_AHEAD) {
            self.prefetch_walk(q, nb);
        }
    }

    /// The distances from `q` to `ids`, in order, into `out`, with the rows prefetched
    /// [`PREFETCH_AHEAD`] places ahead.
    ///
    /// All of a list's distances are computed before the walk compares any of them. A compare
    /// ("nearer than the worst result?") is a branch that goes either way about as often, and
    /// a mispredict discards the work the CPU had started past it, the next row's loads
    /// included; with no branch between two distances, consecutive rows' loads overlap. On
    /// debian-minilm `f32` (same graph, three rounds in turns against the previous code) this
    /// gave 0–5 % more QPS at ef 16 and 2–6 % at ef 64; `sq8` on debian-minilm and `f32` on
    /// siftsmall and Fashion-MNIST did not change (`docs/benchmarks.md`, session 11).
    ///
    /// The caller has called [`prefetch_first`](Self::prefetch_first) on `ids`.
    ///
    /// Under `f32` storage with a fused [`QuadKernels`](crate::distance::QuadKernels) set, the
    /// distances come four at a time, and the rows of the next four are prefetched as each four
    /// start.
    #[inline(always)]
    fn dists_of(&self, q: &Probe<'_>, ids: &[u32], out: &mut Vec<f32>) {
        out.clear();
        let mut done = 0;
        if let (Some(quad), None) = (self.quad, &q.walk) {
            debug_assert!(epoch::is_pinned(), "vector read outside an epoch pin");
            let (fours, rest) = ids.as_chunks::<4>();
            for (i, four) in fours.iter().enumerate() {
                for &next in ids.iter().skip(i * 4 + PREFETCH_AHEAD).take(4) {
                    self.prefetch_walk(q, next);
                }
                // SAFETY: the reader invariant of `dist`, which holds for every node the walk
                // holds; `quad` is set only under `f32` storage, whose rows are `f32` vectors.
                let r = quad(q.v, four.map(|n| unsafe { self.store.vector_f32(n) }));
                if self.kind == DistKind::DotF32 {
                    out.extend(r.map(|x| 1.0 - x));
                } else {
                    out.extend(r);
                }
            }
            done = ids.len() - rest.len();
        }
        for (j, &nb) in ids.iter().enumerate().skip(done) {
            if let Some(&next) = ids.get(j + PREFETCH_AHEAD) {
                self.prefetch_walk(q, next);
            }
            out.push(self.dist(q, nb));
        }
    }

    /// Greedy descent from the entry point `ep` through levels `top` down to `floor`: the node
    /// nearest `q` found there. Starts a new visited set.
    pub(crate) fn descend(&self, q: &Probe<'_>, ep: u32, top: usize, floor: usize, s: &mut Scratch) -> Cand {
        s.visited.reset(self.store.allocated() as usize);
        s.visited.insert(ep);
        s.dists += 1;
        let mut cur = Cand::new(self.dist(q, ep), ep);
        for l in (floor..=top).rev() {
            cur = self.greedy(q, cur, l, s);
        }
        cur
    }

    /// Greedy walk on one upper level towards the query, as in the HNSW paper, except that a
    /// node whose distance was computed before (on this level or one above) is skipped: it was
    /// no nearer than the walk's position then, and the position only gets nearer, so it can
    /// never be moved to. Consecutive positions share many neighbours, and a node's upper lists
    /// share many with each other, so this saves about a fifth of the descent's distances.
    fn greedy(&self, q: &Probe<'_>, mut cur: Cand, level: usize, s: &mut Scratch) -> Cand {
        loop {
            let visited = &mut s.visited;
            self.store.read_links_filtered(cur.n(), level, &mut s.ids, |nb| visited.insert(nb));
            s.dists += s.ids.len() as u64;
            self.prefetch_first(q, &s.ids);
            self.dists_of(q, &s.ids, &mut s.id_dists);
            let mut moved = false;
            for (&nb, &d) in s.ids.iter().zip(&s.id_dists) {
                if d < cur.d() {
                    cur = Cand::new(d, nb);
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// Beam search on `level` from `seeds` (distances known); `s.results` ends with the `ef`
    /// nearest nodes found that pass `accept` (the others are walked through, not returned).
    pub(crate) fn layer_search(
        &self,
        q: &Probe<'_>,
        seeds: &[Cand],
        level: usize,
        ef: usize,
        s: &mut Scratch,
        accept: impl Fn(u32) -> bool,
    ) {
        self.seed_search(s, seeds, ef, &accept);
        self.search_layer(q, level, ef, s, &accept);
    }

    /// Starts a layer search from `seeds` (distances already known).
    fn seed_search(&self, s: &mut Scratch, seeds: &[Cand], ef: usize, accept: impl Fn(u32) -> bool) {
        s.visited.reset(self.store.allocated() as usize);
        s.cands.clear();
        s.results.clear();
        for &c in seeds {
            if s.visited.insert(c.n()) {
                s.cands.push(Reverse(c));
                if accept(c.n()) {
                    s.results.push(c);
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
    }

    /// Beam search on one level: `s.results` ends with the `ef` nearest accepted nodes found.
    /// Rejected nodes are still walked through, only kept out of the results.
    #[inline]
    fn search_layer(
        &self,
        q: &Probe<'_>,
        level: usize,
        ef: usize,
        s: &mut Scratch,
        accept: impl Fn(u32) -> bool,
    ) {
        let mut worst = if s.results.len() >= ef {
            s.results.peek().map_or(f32::INFINITY, |c| c.d())
        } else {
            f32::INFINITY
        };
        while let Some(Reverse(c)) = s.cands.pop() {
            if c.d() > worst {
                break;
            }
            let visited = &mut s.visited;
            self.store.read_links_filtered(c.n(), level, &mut s.ids, |nb| visited.insert(nb));
            s.dists += s.ids.len() as u64;
            // Start the loads this candidate's distances and the next candidate's list will
            // need while the CPU computes: the walk is bound by memory latency, not arithmetic.
            self.prefetch_first(q, &s.ids);
            if level == 0 {
                if let Some(Reverse(next)) = s.cands.peek() {
                    self.store.prefetch_links0(next.n());
                }
            }
            self.dists_of(q, &s.ids, &mut s.id_dists);
            for (&nb, &d) in s.ids.iter().zip(&s.id_dists) {
                if d < worst || s.results.len() < ef {
                    s.cands.push(Reverse(Cand::new(d, nb)));
                    if accept(nb) {
                        s.results.push(Cand::new(d, nb));
                        if s.results.len() > ef {
                            s.results.pop();
                        }
                        if s.results.len() >= ef {
                            worst = s.results.peek().map_or(f32::INFINITY, |c| c.d());
                        }
                    }
                }
            }
        }
    }

    /// The `k` nearest nodes passing `accept` (which must check liveness) to the query-form
    /// vector `q`: a beam search of width `ef`, or an exact scan when the beam would cover the
    /// index anyway.
    pub(crate) fn search_nodes(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
    ) -> (Vec<Neighbour>, SearchStats) {
        let e = self.entry.load(Ordering::Acquire);
        if e == EMPTY {
            return (Vec::new(), SearchStats::default());
        }
        let nodes = self.store.allocated();
        if nodes as usize <= ef || self.len() <= ef {
            // A beam as wide as the index: an exact scan cannot miss anything, and costs no
            // more than the walk unless tombstones far outnumber live vectors.
            let all = self.scan(q, k, 0..nodes, accept);
            return (all, SearchStats { distance_computations: nodes as u64, exact_rescored: 0 });
        }
        with_scratch(|s| {
            let (ep, top) = unpack(e);
            let p = self.probe(q);
            s.dists = 0;
            let cur = self.descend(&p, ep, top, 1, s);
            self.layer_search(&p, &[cur], 0, ef, s, &accept);
            if s.results.len() < k && cur.n() != ep && self.len() > s.results.len() {
                // The descent ended on a node from which level 0 reaches too few live ones (a
                // tombstone whose neighbours are tombstones too, waiting to be unlinked): walk
                // again from the entry point as well, which is live and from which every live
                // node is reachable (`repair.rs`). Rare, so the common query pays nothing.
                let seeds = [cur, Cand::new(self.dist(&p, ep), ep)];
                s.dists += 1;
                self.layer_search(&p, &seeds, 0, ef, s, &accept);
            }
            let (out, exact_rescored) = self.finish(q, s, k);
            (out, SearchStats { distance_computations: s.dists, exact_rescored })
        })
    }

    /// The `k` best of the walk's results, nearest first. Under [`Storage::Sq8`] the best
    /// `max(k, rerank)` (`max(2k, 20)` when `rerank` is 0) are re-scored with the exact `f32` originals
    /// first, so the order and the distances returned are exact. Also returns how many were
    /// re-scored. The caller is pinned.
    fn finish(&self, q: &[f32], s: &mut Scratch, k: usize) -> (Vec<Neighbour>, u64) {
        s.sorted.clear();
        s.sorted.extend(s.results.drain());
        s.sorted.sort_unstable();
        if self.cfg.storage != Storage::Sq8 {
            return (results::nearest_ids(&s.sorted, k, |n| self.store.id(n)), 0);
        }
        let keep = match self.cfg.rerank {
            0 => k.saturating_mul(AUTO_RERANK_PER_K).max(AUTO_RERANK_MIN),
            r => r.max(k),
        };
        let exact = Probe::exact(q);
        let picked = &s.sorted[..keep.min(s.sorted.len())];
        // Random reads of whole f32 rows: start the next ones while scoring this one.
        for c in picked.iter().take(RERANK_PREFETCH_AHEAD) {
            self.store.prefetch_exact(c.n());
        }
        let mut out: Vec<Neighbour> = picked
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if let Some(next) = picked.get(j + RERANK_PREFETCH_AHEAD) {
                    self.store.prefetch_exact(next.n());
                }
                Neighbour { id: self.store.id(c.n()), distance: self.dist(&exact, c.n()) }
            })
            .collect();
        results::sort_dedup(&mut out, k);
        (out, picked.len() as u64)
    }

    /// Exact top-`k` over the nodes in `nodes` that pass `accept`, which must check liveness
    /// (ties by id).
    pub(crate) fn scan(
        &self,
        q: &[f32],
        k: usize,
        nodes: impl IntoIterator<Item = u32>,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Neighbour> {
        let _pin = epoch::pin();
        // Exact distances (for `sq8`, from the `f32` originals): a scan needs no walk.
        let q = Probe::exact(q);
        let mut best = TopK::new(k);
        for n in nodes {
            if accept(n) {
                best.offer(self.dist(&q, n), n, &self.store);
            }
        }
        best.into_sorted()
    }

    /// [`scan`](Self::scan) of a list of scattered nodes (a filter's matches): the vectors a few
    /// places ahead are prefetched, as in the graph walk, since the rows are not contiguous.
    pub(crate) fn scan_list(
        &self,
        q: &[f32],
        k: usize,
        nodes: &[u32],
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Neighbour> {
        let _pin = epoch::pin();
        let q = Probe::exact(q);
        let mut best = TopK::new(k);
        let exact = self.cfg.storage == Storage::Sq8;
        let prefetch = |n: u32| {
            if exact {
                self.store.prefetch_exact(n);
            } else {
                self.store.prefetch_vector(n);
            }
        };
        for &n in nodes.iter().take(PREFETCH_AHEAD) {
            prefetch(n);
        }
        for (j, &n) in nodes.iter().enumerate() {
            if let Some(&next) = nodes.get(j + PREFETCH_AHEAD) {
                prefetch(next);
            }
            if accept(n) {
                best.offer(self.dist(&q, n), n, &self.store);
            }
        }
        best.into_sorted()
    }

    // ----- delete ------------------------------------------------------------------------------

    /// Removes `id` from results (a tombstone: the node keeps routing searches).
    pub fn delete(&self, id: u64) -> Result<()> {
        self.ids
            .remove_published(&self.store, id, |n| {
                // Hidden first, then its side data dropped: a search in between sees a deleted
                // node, never a live one without its metadata.
                self.store.mark_deleted(n);
                self.detach_side(n);
                self.live.fetch_sub(1, Ordering::AcqRel);
            })
            .ok_or(IndexError::NotFound { id })
            .map(|n| {
                self.unclaim(1);
                self.unlink_deleted(n);
            })
    }

    /// Counts one live vector less (a delete, under the id's lock).
    pub(crate) fn live_sub_one(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Forgets the entry point (the index has no live vector left).
    pub(crate) fn clear_entry(&self) {
        self.entry.store(EMPTY, Ordering::Release);
    }

    pub(crate) fn set_entry(&self, node: u32, level: usize) {
        self.entry.store(pack(node, level), Ordering::Release);
    }

    /// Sets the live count (and the capacity claim) after a restore.
    pub(crate) fn set_counts(&self, live: usize) {
        self.live.store(live, Ordering::Release);
        self.claimed.store(live, Ordering::Release);
    }

    /// Entry point `(node, level)`, if any.
    pub(crate) fn entry_point(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(Ordering::Acquire);
        (e != EMPTY).then(|| unpack(e))
    }
}

/// A vector rejected by validation; converts into [`IndexError`] and into batch errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum VectorError {
    Dimension { expected: usize, actual: usize },
    NonFinite { component: usize, value: f32 },
    Unrepresentable { component: usize, value: f32, storage: Storage },
    ZeroNorm,
}

impl From<VectorError> for IndexError {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::Dimension { expected, actual } => IndexError::DimensionMismatch { expected, actual },
            VectorError::NonFinite { component, value } => IndexError::NonFiniteValue { component, value },
            VectorError::Unrepresentable { component, value, storage } => {
                IndexError::UnrepresentableValue { component, value, storage: storage.name() }
            }
            VectorError::ZeroNorm => IndexError::ZeroVector,
        }
    }
}

fn norm(v: &[f32]) -> f32 {
    crate::distance::scalar::dot_f32(v, v).sqrt()
}

/// The `k` best of a scan so far: a bounded max-heap, so an id is read (a random access) only
/// for a node that may enter it, and nothing is sorted but the `k` kept.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Ranked>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k + 1) }
    }

    #[inline]
    fn offer(&mut self, d: f32, n: u32, store: &crate::store::NodeStore) {
        if self.heap.len() == self.k {
            match self.heap.peek() {
                Some(worst) if d.total_cmp(&worst.0) == std::cmp::Ordering::Greater => return,
                _ => {}
            }
        }
        self.heap.push(Ranked(d, store.id(n)));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> Vec<Neighbour> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Ranked(distance, id)| Neighbour { id, distance })
            .collect()
    }
}

/// A scan result ordered by distance, then id (the order results are returned in).
struct Ranked(f32, u64);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}
