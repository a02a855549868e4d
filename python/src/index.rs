//! `hnsw_batch.Index`: the in-memory index.

use crate::convert::{self, non_negative, Matrix};
use crate::errors::{batch_err, index_err, index_err_at, persist_err};
use crate::report::PyBatchReport;
use crate::run::{parse_mode, run_batch};
use crate::{meta, pools, MISSING_ID};
use hnsw_batch::{
    BatchInsertable, BatchMode, BatchOptions, Index, IndexConfig, IndexError, Metric, Neighbour, Storage,
};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::{PyKeyError, PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rayon::prelude::*;
use std::path::PathBuf;

/// The `(ids, distances)` pair `knn_query` returns.
pub(crate) type KnnResult<'py> = (Bound<'py, PyArray2<u64>>, Bound<'py, PyArray2<f32>>);

/// Parses `space`.
pub(crate) fn parse_space(space: &str) -> PyResult<Metric> {
    Metric::from_name(space).ok_or_else(|| {
        PyValueError::new_err(format!("space must be \"l2\", \"cosine\" or \"ip\", got {space:?}"))
    })
}

/// Parses `storage`.
pub(crate) fn parse_storage(storage: &str) -> PyResult<Storage> {
    match storage {
        "f32" | "float32" => Ok(Storage::F32),
        "u8" | "uint8" => Ok(Storage::U8),
        "f16" | "float16" => Ok(Storage::F16),
        "sq8" => Ok(Storage::Sq8),
        _ => Err(PyValueError::new_err(format!(
            "storage must be \"f32\", \"u8\", \"f16\" or \"sq8\", got {storage:?}"
        ))),
    }
}

/// Builds and validates an index configuration from the constructor arguments.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_config(
    py: Python<'_>,
    space: &str,
    dim: i64,
    m: i64,
    ef_construction: i64,
    storage: &str,
    seed: u64,
    max_elements: Option<i64>,
) -> PyResult<IndexConfig> {
    let mut cfg = IndexConfig::new(non_negative("dim", dim)?, parse_space(space)?)
        .m(non_negative("M", m)?)
        .ef_construction(non_negative("ef_construction", ef_construction)?)
        .storage(parse_storage(storage)?)
        .seed(seed);
    if let Some(n) = max_elements {
        cfg = cfg.max_elements(non_negative("max_elements", n)?);
    }
    cfg.validate().map_err(|e| index_err(py, &e))?;
    Ok(cfg)
}

/// Checks a matrix's width against the index dimension.
pub(crate) fn check_dim(py: Python<'_>, m: &Matrix<'_>, dim: usize, what: &str) -> PyResult<()> {
    if m.cols == dim {
        return Ok(());
    }
    let e = IndexError::DimensionMismatch { expected: dim, actual: m.cols };
    let err = index_err(py, &e);
    let _ =
        err.value(py).setattr("args", (format!("{what} has dimension {}, the index expects {dim}", m.cols),));
    Err(err)
}

/// Resolves the `ef` of a query: the given one or the default, at least `k`.
pub(crate) fn resolve_k_ef(k: i64, ef: Option<i64>, default_ef: usize) -> PyResult<(usize, usize)> {
    if k < 1 {
        return Err(PyValueError::new_err(format!("k must be at least 1, got {k}")));
    }
    let k = k as usize;
    let ef = match ef {
        None => default_ef,
        Some(e) if e >= 1 => e as usize,
        Some(e) => return Err(PyValueError::new_err(format!("ef must be at least 1, got {e}"))),
    };
    let ef = ef.max(k);
    if ef > hnsw_batch::MAX_EF {
        return Err(PyValueError::new_err(format!(
            "k and ef must be at most {} (k = {k}, ef = {ef})",
            hnsw_batch::MAX_EF
        )));
    }
    Ok((k, ef))
}

/// The `ef` argument of `set_ef` (the library checks its range).
pub(crate) fn ef_arg(ef: i64) -> PyResult<usize> {
    usize::try_from(ef)
        .map_err(|_| PyValueError::new_err(format!("ef must be in 1..={}, got {ef}", hnsw_batch::MAX_EF)))
}

/// A vector of `len` copies of `value`, or `MemoryError`.
fn filled<T: Copy>(len: usize, value: T) -> PyResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| PyMemoryError::new_err(format!("cannot allocate {len} results")))?;
    v.resize(len, value);
    Ok(v)
}

/// Answers every row of `data` with `search`, on one thread (a plain loop) or on a pool.
/// Missing neighbours are padded with id `MISSING_ID` and distance `inf`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn knn<'py, S>(
    py: Python<'py>,
    search: S,
    dim: usize,
    data: &Bound<'py, PyAny>,
    k: i64,
    ef: Option<i64>,
    default_ef: usize,
    num_threads: i64,
) -> PyResult<KnnResult<'py>>
where
    S: Fn(&[f32], usize, usize) -> hnsw_batch::Result<Vec<Neighbour>> + Sync,
{
    let (k, ef) = resolve_k_ef(k, ef, default_ef)?;
    let threads = pools::resolve(num_threads)?;
    let m = convert::matrix(data, "queries")?;
    check_dim(py, &m, dim, "queries")?;
    let n = m.rows;
    let flat = m.as_slice()?;
    let len = n.checked_mul(k).ok_or_else(|| PyValueError::new_err("n * k overflows"))?;
    let mut ids = filled(len, MISSING_ID)?;
    let mut dists = filled(len, f32::INFINITY)?;
    let fill =
        |row: usize, q: &[f32], ids: &mut [u64], dists: &mut [f32]| -> Result<(), (usize, IndexError)> {
            let hits = search(q, k, ef).map_err(|e| (row, e))?;
            for (j, h) in hits.iter().enumerate().take(k) {
                ids[j] = h.id;
                dists[j] = h.distance;
            }
            Ok(())
        };
    let result = if threads == 1 || n <= 1 {
        py.detach(|| {
            for (row, ((q, i), d)) in
                flat.chunks_exact(dim).zip(ids.chunks_exact_mut(k)).zip(dists.chunks_exact_mut(k)).enumerate()
            {
                fill(row, q, i, d)?;
            }
            Ok(())
        })
    } else {
        let pool = pools::get(threads)?;
        py.detach(|| {
            pool.install(|| {
                flat.par_chunks_exact(dim)
                    .zip(ids.par_chunks_exact_mut(k))
                    .zip(dists.par_chunks_exact_mut(k))
                    .enumerate()
                    .try_for_each(|(row, ((q, i), d))| fill(row, q, i, d))
            })
        })
    };
    if let Err((row, e)) = result {
        return Err(index_err_at(py, &e, Some(row)));
    }
    let ids = Array2::from_shape_vec((n, k), ids).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let dists = Array2::from_shape_vec((n, k), dists).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((ids.into_pyarray(py), dists.into_pyarray(py)))
}

/// `vectors` (each of length `dim`) as an `(n, dim)` float32 array.
pub(crate) fn rows_array(
    py: Python<'_>,
    vectors: Vec<Vec<f32>>,
    dim: usize,
) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let n = vectors.len();
    let flat: Vec<f32> = vectors.into_iter().flatten().collect();
    let a = Array2::from_shape_vec((n, dim), flat).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

/// Ids for `n` new rows when none are given: consecutive, after the largest id present.
pub(crate) fn auto_ids(present: Vec<u64>, n: usize) -> PyResult<Vec<u64>> {
    let start = match present.into_iter().max() {
        None => 0,
        Some(m) => {
            m.checked_add(1).ok_or_else(|| PyValueError::new_err("no id left after 2**64 - 1: pass ids"))?
        }
    };
    let end = start
        .checked_add(n as u64)
        .ok_or_else(|| PyValueError::new_err("automatic ids would overflow: pass ids"))?;
    Ok((start..end).collect())
}

/// The first id of `ids` that `contains` says is absent, as a `KeyError`.
pub(crate) fn require_present(ids: &[u64], contains: impl Fn(u64) -> bool) -> PyResult<()> {
    match ids.iter().find(|&&id| !contains(id)) {
        Some(id) => Err(PyKeyError::new_err(format!("id {id} not found"))),
        None => Ok(()),
    }
}

/// An HNSW index held in memory.
///
/// Index(space, dim, M=16, ef_construction=200, storage="f32", seed=0, max_elements=None)
///
/// `space` is "l2" (squared Euclidean), "cosine" (1 - cosine similarity; vectors are normalised)
/// or "ip" (1 - inner product). `storage="u8"` keeps vectors as bytes (every component must be an
/// integer 0..255; not with "cosine"); `storage="f16"` keeps them as half floats (2 bytes per
/// component, rounded; magnitudes above 65504 are rejected except under "cosine");
/// `storage="sq8"` walks the graph on 8-bit codes and re-scores the best candidates with the
/// exact f32 vectors it also keeps (trained on the first batch added). Every method may be called from several threads at once;
/// inserts and searches release the GIL.
#[pyclass(name = "Index", module = "hnsw_batch", frozen)]
pub(crate) struct PyIndex {
    inner: Index,
}

impl PyIndex {
    fn wrap(inner: Index) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl PyIndex {
    #[new]
    #[pyo3(signature = (space, dim, M = 16, ef_construction = 200, storage = "f32", seed = 0, max_elements = None))]
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        space: &str,
        dim: i64,
        M: i64,
        ef_construction: i64,
        storage: &str,
        seed: u64,
        max_elements: Option<i64>,
    ) -> PyResult<Self> {
        let cfg = make_config(py, space, dim, M, ef_construction, storage, seed, max_elements)?;
        Ok(Self::wrap(Index::new(cfg).map_err(|e| index_err(py, &e))?))
    }

    /// Inserts the rows of `data` (shape `(n, dim)`, or one vector of shape `(dim,)`).
    ///
    /// `ids` defaults to consecutive integers after the largest id present (0 for an empty
    /// index). `mode="all_or_nothing"` validates the whole batch first and raises the first
    /// item's error (a `BatchError` subclass) without inserting anything; `"best_effort"` inserts
    /// every valid item and lists the rejected ones in the report's `failures`. `progress=True`
    /// shows a progress bar; a callable receives `ProgressEvent`s. Ctrl-C (or an exception in
    /// the callback) stops the batch: the items inserted so far stay, and the exception is
    /// raised. Returns a `BatchReport`.
    ///
    /// `metadata`: a list of one dict (or None) per row, e.g. `[{"lang": "en", "year": 2001}]`;
    /// keys are str, values str, int, float, bool or a list of str. `expires_at`: unix
    /// milliseconds from which a row is expired (hidden from every read, deleted by
    /// `purge_expired`): one int for every row, or a list of one int (or None) per row. Metadata
    /// over the index's limits is the row's `InvalidVectorError`.
    ///
    /// `coded_walk=True` (f32 and f16 storage, batches of at least 1 024 rows): find each row's
    /// neighbour candidates on temporary 8-bit codes, about a third faster on float embeddings
    /// with the same recall, for `dim + 5` bytes per vector more while the call runs.
    #[pyo3(signature = (data, ids = None, num_threads = -1, mode = "all_or_nothing", progress = None,
                        metadata = None, expires_at = None, coded_walk = false))]
    #[allow(clippy::too_many_arguments)]
    fn add_items(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
        num_threads: i64,
        mode: &str,
        progress: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        expires_at: Option<&Bound<'_, PyAny>>,
        coded_walk: bool,
    ) -> PyResult<PyBatchReport> {
        let mode = parse_mode(mode)?;
        let pool = pools::get(pools::resolve(num_threads)?)?;
        let m = convert::matrix(data, "data")?;
        let dim = self.inner.dim();
        check_dim(py, &m, dim, "data")?;
        let ids = match ids {
            Some(o) if !o.is_none() => convert::ids(o, Some(m.rows))?,
            _ => auto_ids(self.inner.ids(), m.rows)?,
        };
        let flat = m.as_slice()?;
        let index = &self.inner;
        let items = meta::items(&ids, flat, dim, metadata, expires_at)?;
        let r = run_batch(py, mode, m.rows, progress, &pool, |opts| {
            let opts = &opts.clone().coded_walk(coded_walk);
            match &items {
                Some(items) => index.insert_items(items, opts),
                None => index.insert_batch_flat(&ids, flat, opts),
            }
        })?;
        match r {
            Ok(report) => PyBatchReport::from_report(py, &report),
            Err(e) => Err(batch_err(py, &e)),
        }
    }

    /// The `k` nearest neighbours of each row of `data`: a pair `(ids, distances)` of arrays of
    /// shape `(n, k)`, `uint64` and `float32`, nearest first.
    ///
    /// When fewer than `k` vectors exist, a row is padded with id `MISSING_ID` (`2**64 - 1`) and
    /// distance `inf`. `ef` (default: `set_ef`'s value, initially 64) is the beam width, raised
    /// to `k` when smaller.
    ///
    /// `filter` (a dict in the JSON query shape of the CLI, e.g. `{"lang": "en", "year":
    /// {"$gte": 2000}}`) keeps only the vectors whose metadata matches it: the `k` nearest of
    /// those, exact when they are few. An invalid filter is a `ValueError` naming the offending
    /// path.
    #[pyo3(signature = (data, k = 10, ef = None, num_threads = -1, filter = None))]
    fn knn_query<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        k: i64,
        ef: Option<i64>,
        num_threads: i64,
        filter: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<KnnResult<'py>> {
        let index = &self.inner;
        match filter.filter(|f| !f.is_none()) {
            None => {
                knn(py, |q, k, ef| index.search(q, k, ef), index.dim(), data, k, ef, index.ef(), num_threads)
            }
            Some(f) => {
                let f = meta::filter(f)?;
                f.check().map_err(|e| PyValueError::new_err(format!("invalid filter: {e}")))?;
                let search = |q: &[f32], k, ef| index.search_where(q, k, ef, &f);
                knn(py, search, index.dim(), data, k, ef, index.ef(), num_threads)
            }
        }
    }

    /// The metadata of `id` as a dict (empty when it has none); `KeyError` if absent or
    /// expired.
    fn get_metadata<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let id = convert::lookup_id(id)?;
        match self.inner.get_metadata(id) {
            Some(m) => meta::to_dict(py, &m),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// Sets and removes metadata keys of `id`: `values` maps keys to new values, None removing
    /// the key. `KeyError` if absent; `ValueError` (and nothing changed) when the result would
    /// break the index's limits.
    fn update_metadata(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let id = convert::lookup_id(id)?;
        let patch = meta::patch(values)?;
        self.inner.set_metadata(id, &patch).map_err(|e| index_err(py, &e))
    }

    /// The expiry time of `id` in unix milliseconds, or None if it never expires; `KeyError` if
    /// absent or expired.
    fn get_expiry(&self, id: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let id = convert::lookup_id(id)?;
        match self.inner.get_expiry(id) {
            Some(e) => Ok(e.at()),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// Sets the expiry time of `id` (unix milliseconds; None: never). `KeyError` if absent.
    #[pyo3(signature = (id, expires_at))]
    fn set_expiry(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        expires_at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let id = convert::lookup_id(id)?;
        let e = meta::expiry(expires_at, "expires_at")?;
        self.inner.set_expiry(id, e).map_err(|e| index_err(py, &e))
    }

    /// Reads expiry against a fixed time, `now_ms` (unix milliseconds), instead of the system
    /// clock; `None` goes back to the system clock. For tests and replays.
    #[pyo3(signature = (now_ms = None))]
    fn set_clock(&self, now_ms: Option<u64>) {
        self.inner.set_clock(meta::clock(now_ms));
    }

    /// The number of live, unexpired vectors whose metadata matches `filter`.
    fn count(&self, py: Python<'_>, filter: &Bound<'_, PyAny>) -> PyResult<usize> {
        let f = meta::filter(filter)?;
        self.inner.count(&f).map_err(|e| index_err(py, &e))
    }

    /// Deletes the vectors whose metadata matches `filter` and returns a `BatchReport` (`total`
    /// matched, `ids` and `deleted` deleted). `dry_run=True` changes nothing and returns what
    /// the real call would report, with `dry_run` set; `confirm_count` refuses unless exactly
    /// that many match, `max_affected` if more match (`RefusedError`, nothing changed). The call
    /// never deletes more than a dry run on the same state reports.
    #[pyo3(signature = (filter, *, dry_run = false, confirm_count = None, max_affected = None, batch_size = 0))]
    fn delete_where(
        &self,
        py: Python<'_>,
        filter: &Bound<'_, PyAny>,
        dry_run: bool,
        confirm_count: Option<usize>,
        max_affected: Option<usize>,
        batch_size: usize,
    ) -> PyResult<PyBatchReport> {
        let f = meta::filter(filter)?;
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let index = &self.inner;
        let r = py.detach(|| index.delete_where_filter(&f, &opts)).map_err(|e| index_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Sets (None: removes) the metadata keys of `values` on every vector matching `filter`,
    /// with the options of `delete_where`; returns a `BatchReport` (`updated`, `ids`). Every
    /// patched map is checked against the limits before anything changes.
    #[pyo3(signature = (filter, values, *, dry_run = false, confirm_count = None, max_affected = None, batch_size = 0))]
    #[allow(clippy::too_many_arguments)]
    fn update_where(
        &self,
        py: Python<'_>,
        filter: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        dry_run: bool,
        confirm_count: Option<usize>,
        max_affected: Option<usize>,
        batch_size: usize,
    ) -> PyResult<PyBatchReport> {
        let f = meta::filter(filter)?;
        let patch = meta::patch(values)?;
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let index = &self.inner;
        let r = py.detach(|| index.update_where(&f, &patch, &opts)).map_err(|e| index_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Deletes the vectors whose expiry time has passed, with the options of `delete_where`;
    /// returns a `BatchReport`.
    #[pyo3(signature = (*, dry_run = false, confirm_count = None, max_affected = None, batch_size = 0))]
    fn purge_expired(
        &self,
        py: Python<'_>,
        dry_run: bool,
        confirm_count: Option<usize>,
        max_affected: Option<usize>,
        batch_size: usize,
    ) -> PyResult<PyBatchReport> {
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let index = &self.inner;
        let r = py.detach(|| index.purge_expired(&opts)).map_err(|e| index_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Indexes metadata field `field` (posting bitmaps), so filters on it are sized exactly and
    /// answered without decoding metadata.
    fn create_field_index(&self, py: Python<'_>, field: &str) -> PyResult<()> {
        self.inner.create_field_index(field).map_err(|e| index_err(py, &e))
    }

    /// Deletes `ids` (one id or a sequence) and returns how many were deleted. Raises `KeyError`
    /// (deleting nothing) if one is absent, unless `missing_ok=True`.
    #[pyo3(signature = (ids, missing_ok = false))]
    fn delete(&self, py: Python<'_>, ids: &Bound<'_, PyAny>, missing_ok: bool) -> PyResult<usize> {
        let ids = convert::ids(ids, None)?;
        if !missing_ok {
            require_present(&ids, |id| self.inner.contains(id))?;
        }
        let index = &self.inner;
        // Best effort: an id given twice is deleted once (and listed in the report's failures).
        let opts = BatchOptions::new().mode(BatchMode::BestEffort);
        py.detach(|| index.delete_batch(&ids, &opts)).map(|r| r.deleted).map_err(|e| batch_err(py, &e))
    }

    /// Replaces the vectors of `ids` with the rows of `data`. All-or-nothing: raises `KeyError`
    /// for an absent id, or the `BatchError` of a bad row, before changing anything.
    #[pyo3(signature = (data, ids, num_threads = -1))]
    fn update(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        ids: &Bound<'_, PyAny>,
        num_threads: i64,
    ) -> PyResult<()> {
        let pool = pools::get(pools::resolve(num_threads)?)?;
        let m = convert::matrix(data, "data")?;
        let dim = self.inner.dim();
        check_dim(py, &m, dim, "data")?;
        let ids = convert::ids(ids, Some(m.rows))?;
        require_present(&ids, |id| self.inner.contains(id))?;
        let items: Vec<(u64, &[f32])> = ids.iter().copied().zip(m.as_slice()?.chunks_exact(dim)).collect();
        let index = &self.inner;
        py.detach(|| pool.install(|| index.update_batch(&items, &BatchOptions::new())))
            .map(|_| ())
            .map_err(|e| batch_err(py, &e))
    }

    /// The stored vector of `id` (`float32`, shape `(dim,)`; normalised under "cosine").
    /// Raises `KeyError` if absent.
    fn get<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let id = convert::lookup_id(id)?;
        match self.inner.get(id) {
            Some(v) => Ok(PyArray1::from_vec(py, v)),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// The stored vectors of `ids` as an `(n, dim)` `float32` array. Raises `KeyError` if one
    /// is absent.
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ids = convert::ids(ids, None)?;
        let rows = ids
            .iter()
            .map(|&id| self.inner.get(id).ok_or_else(|| PyKeyError::new_err(format!("id {id} not found"))))
            .collect::<PyResult<Vec<_>>>()?;
        rows_array(py, rows, self.inner.dim())
    }

    /// The ids present, as a `uint64` array (in no particular order).
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_vec(py, self.inner.ids())
    }

    /// Sets the default beam width of `knn_query` (not saved with the index).
    fn set_ef(&self, py: Python<'_>, ef: i64) -> PyResult<()> {
        self.inner.set_ef(ef_arg(ef)?).map_err(|e| index_err(py, &e))
    }

    /// Default beam width of `knn_query`.
    #[getter]
    fn get_ef(&self) -> usize {
        self.inner.ef()
    }

    /// Writes a snapshot of the index to `path` (atomically: temporary file, sync, rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let index = &self.inner;
        py.detach(|| index.save(&path)).map_err(|e| persist_err(py, &e))
    }

    /// Reads an index written by `save` (or `DurableIndex.save`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let index = py.detach(|| Index::load(&path)).map_err(|e| persist_err(py, &e))?;
        Ok(Self::wrap(index))
    }

    /// A new index with the same graph, ids, metadata and expiry times, its vectors stored as
    /// `storage` ("f32", "u8", "f16" or "sq8"); this one is unchanged. Build under "sq8" and
    /// convert to "f32" for a faster f32 build with the same recall.
    fn to_storage(&self, py: Python<'_>, storage: &str) -> PyResult<Self> {
        let storage = parse_storage(storage)?;
        let index = &self.inner;
        let converted = py.detach(|| index.to_storage(storage)).map_err(|e| index_err(py, &e))?;
        Ok(Self::wrap(converted))
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Distance: "l2", "cosine" or "ip".
    #[getter]
    fn space(&self) -> &'static str {
        self.inner.config().metric.name()
    }

    /// Links per node on the upper levels.
    #[getter(M)]
    #[allow(non_snake_case)]
    fn get_M(&self) -> usize {
        self.inner.config().m
    }

    /// Beam width used while inserting.
    #[getter]
    fn ef_construction(&self) -> usize {
        self.inner.config().ef_construction
    }

    /// Element type of stored vectors: "f32" or "u8".
    #[getter]
    fn storage(&self) -> &'static str {
        self.inner.config().storage.name()
    }

    /// The cap on live vectors, or None.
    #[getter]
    fn max_elements(&self) -> Option<usize> {
        self.inner.config().max_elements
    }

    /// Approximate heap memory of the index in bytes.
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> bool {
        id.extract::<u64>().is_ok_and(|id| self.inner.contains(id))
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Index(space={:?}, dim={}, M={}, ef_construction={}, storage={:?}, len={})",
            c.metric.name(),
            c.dim,
            c.m,
            c.ef_construction,
            c.storage.name(),
            self.inner.len()
        )
    }
}
