//! Index parameters and their validation.

use crate::distance::Metric;
use crate::error::{IndexError, Result};

/// Largest supported dimension.
pub const MAX_DIM: usize = 1 << 16;
/// Largest supported `M` (links per node on upper levels).
pub const MAX_M: usize = 256;
/// Largest supported `ef` (construction or search).
pub const MAX_EF: usize = 1 << 16;

/// How vectors are stored inside the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Storage {
    /// 32-bit floats (default): any finite vector.
    #[default]
    F32,
    /// One byte per component: only integer values in `0..=255` are accepted (SIFT, image
    /// pixels), which are then stored losslessly in a quarter of the memory and searched faster.
    /// Not available with [`Metric::Cosine`], whose normalised vectors are not integers.
    U8,
    /// IEEE 754 half precision: 2 bytes per component, half the memory of [`Storage::F32`].
    /// Values are rounded to the nearest `f16` (about 3 significant decimal digits), so
    /// [`Index::get`](crate::Index::get) returns the rounded vector and distances are those of
    /// the rounded vectors (the query stays `f32`). Any finite vector whose stored components fit
    /// `[-65504, 65504]` is accepted; a larger magnitude is rejected as unrepresentable rather
    /// than stored as infinity. Under [`Metric::Cosine`] vectors are normalised before encoding,
    /// so every finite, non-zero vector fits. On clustered 64-dimensional data
    /// (`tests/storage_f16.rs`) recall@10 stays within 0.002 of `f32` storage.
    F16,
    /// 8-bit scalar quantisation with exact re-scoring: each vector is kept twice, as `dim`
    /// one-byte codes plus the decoded squared norm (4 bytes), which the graph walk reads, and as
    /// its exact `f32` original in a separate arena, which re-scores the walk's best candidates
    /// (see [`IndexConfig::rerank`]) and is what [`Index::get`](crate::Index::get), export and
    /// snapshots return. Distances returned by searches are therefore exact `f32` distances.
    ///
    /// Codes are per-component affine (`lo_i + scale_i · c_i`, see
    /// [`distance::sq8`](crate::distance::sq8)); the parameters are trained on the first batch
    /// inserted into the empty index (all of it, or a seeded sample of 100 000 rows), or
    /// explicitly with [`Index::train_sq8`](crate::Index::train_sq8). A single
    /// [`Index::insert`](crate::Index::insert) into an untrained index fails with
    /// [`IndexError::Sq8Untrained`]. Values outside the trained range are accepted and saturate
    /// to its ends; re-scoring with the originals fixes the final order.
    ///
    /// Memory: the "hot" part the walk touches (codes, `‖x‖²` and links) is about a quarter of
    /// the vector bytes of [`Storage::F32`], but the total
    /// ([`Index::memory_bytes`](crate::Index::memory_bytes)) is larger than `f32` storage,
    /// since the originals are kept too. Any metric.
    Sq8,
}

impl Storage {
    /// Bytes per component of the vector rows the graph walk reads (for [`Storage::Sq8`] the
    /// codes, which come with 4 more bytes per row and a separate `f32` original).
    pub fn element_size(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::U8 | Storage::Sq8 => 1,
            Storage::F16 => 2,
        }
    }

    /// Stable name (`f32`, `u8`, `f16`, `sq8`).
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::U8 => "u8",
            Storage::F16 => "f16",
            Storage::Sq8 => "sq8",
        }
    }

    /// Parses [`Storage::name`] (also accepts `float32`, `uint8`, `float16`).
    pub fn from_name(s: &str) -> Option<Storage> {
        match s {
            "f32" | "float32" => Some(Storage::F32),
            "u8" | "uint8" => Some(Storage::U8),
            "f16" | "float16" => Some(Storage::F16),
            "sq8" => Some(Storage::Sq8),
            _ => None,
        }
    }
}

/// Parameters of an [`Index`](crate::Index), built with a fluent API and checked by
/// [`IndexConfig::validate`] (which [`Index::new`](crate::Index::new) calls).
///
/// ```
/// use hnsw_batch::{IndexConfig, Metric};
/// let cfg = IndexConfig::new(128, Metric::L2).m(16).ef_construction(200).seed(7);
/// assert!(cfg.validate().is_ok());
/// assert!(IndexConfig::new(0, Metric::L2).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IndexConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Distance.
    pub metric: Metric,
    /// Links per node on levels above 0 (`M` in the HNSW paper).
    pub m: usize,
    /// Links per node on level 0 (`M0`, default `2 * M`).
    pub m0: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Default beam width for [`Index::search`](crate::Index::search) callers that pass none.
    pub ef_search: usize,
    /// Seed of the level generator: single-threaded inserts with the same seed build the same graph.
    pub seed: u64,
    /// Optional upper bound on the number of live vectors.
    pub max_elements: Option<usize>,
    /// Element type of stored vectors.
    pub storage: Storage,
    /// [`Storage::Sq8`] only: how many of the walk's best candidates are re-scored with the
    /// exact `f32` vectors. A search re-scores `max(k, rerank)` candidates (at most `ef`); 0 (the
    /// default) means `max(2k, 20)`, which on 384-d sentence embeddings gave the same recall as
    /// re-scoring all `ef` candidates (see `docs/benchmarks.md`). Raise it, up to `ef`, for data that
    /// quantises badly. Must be 0 for other storages, whose walk distances are already final.
    pub rerank: usize,
}

impl IndexConfig {
    /// Defaults: `M = 16`, `M0 = 32`, `ef_construction = 200`, `ef_search = 64`, seed 0, `f32` storage.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self {
            dim,
            metric,
            m: 16,
            m0: 32,
            ef_construction: 200,
            ef_search: 64,
            seed: 0,
            max_elements: None,
            storage: Storage::F32,
            rerank: 0,
        }
    }

    /// Sets `M`, and `M0 = 2 * M` (call [`m0`](Self::m0) afterwards to override).
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self.m0 = m.saturating_mul(2);
        self
    }

    /// Sets `M0`, the level-0 degree bound.
    pub fn m0(mut self, m0: usize) -> Self {
        self.m0 = m0;
        self
    }

    /// Sets the construction beam width.
    pub fn ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }

    /// Sets the default search beam width.
    pub fn ef_search(mut self, ef: usize) -> Self {
        self.ef_search = ef;
        self
    }

    /// Sets the level generator's seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Caps the number of live vectors: inserts beyond it fail with
    /// [`IndexError::CapacityExceeded`](crate::IndexError::CapacityExceeded).
    ///
    /// A cap of at most 8 388 608 also stores every link in 3 bytes instead of 4
    /// ([`Index::link_bytes`](crate::Index::link_bytes)): 32 bytes less per vector at the
    /// default `M` = 16. Node numbers then stay below 2^24, twice the cap, which leaves room for
    /// deleted vectors waiting for their slots to be reused; should churn ever outrun that, the
    /// insert fails with `CapacityExceeded` too and the index is unchanged.
    pub fn max_elements(mut self, n: usize) -> Self {
        self.max_elements = Some(n);
        self
    }

    /// Sets the storage element type.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Sets [`rerank`](Self::rerank) ([`Storage::Sq8`] only; 0 = automatic, `max(2k, 20)`).
    pub fn rerank(mut self, n: usize) -> Self {
        self.rerank = n;
        self
    }

    /// Checks every parameter, returning [`IndexError::InvalidParameter`] for the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(IndexError::InvalidParameter { name, reason });
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad("dim", format!("must be in 1..={MAX_DIM}, got {}", self.dim));
        }
        if self.m < 2 || self.m > MAX_M {
            return bad("m", format!("must be in 2..={MAX_M}, got {}", self.m));
        }
        if self.m0 < self.m || self.m0 > 4 * MAX_M {
            return bad("m0", format!("must be in m..={} (m = {}), got {}", 4 * MAX_M, self.m, self.m0));
        }
        if self.ef_construction < self.m || self.ef_construction > MAX_EF {
            return bad(
                "ef_construction",
                format!("must be in m..={MAX_EF} (m = {}), got {}", self.m, self.ef_construction),
            );
        }
        if self.ef_search == 0 || self.ef_search > MAX_EF {
            return bad("ef_search", format!("must be in 1..={MAX_EF}, got {}", self.ef_search));
        }
        if self.max_elements == Some(0) {
            return bad("max_elements", "must be at least 1".into());
        }
        if self.storage == Storage::U8 && self.metric == Metric::Cosine {
            return bad("storage", "u8 storage cannot hold normalised cosine vectors".into());
        }
        if self.rerank != 0 && self.storage != Storage::Sq8 {
            return bad(
                "rerank",
                format!("applies to sq8 storage only, got {} with {}", self.rerank, self.storage.name()),
            );
        }
        if self.rerank > MAX_EF {
            return bad("rerank", format!("must be in 0..={MAX_EF}, got {}", self.rerank));
        }
        Ok(())
    }

    /// Level multiplier `1 / ln(M)` of the HNSW paper.
    pub fn level_multiplier(&self) -> f64 {
        1.0 / (self.m as f64).ln()
    }
}

/// Checks search arguments: `k >= 1`, `ef >= k`, `ef <= MAX_EF`.
pub(crate) fn check_search_params(k: usize, ef: usize) -> Result<()> {
    if k == 0 {
        return Err(IndexError::InvalidParameter { name: "k", reason: "must be at least 1".into() });
    }
    if ef < k || ef > MAX_EF {
        return Err(IndexError::InvalidParameter {
            name: "ef",
            reason: format!("must be in k..={MAX_EF} (k = {k}), got {ef}"),
        });
    }
    Ok(())
}
