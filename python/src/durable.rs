//! `hnsw_batch.DurableIndex`: an index in a directory that logs every write before applying it.

use crate::convert::{self, Matrix};
use crate::errors::{index_err, index_err_at, persist_err};
use crate::index::{auto_ids, check_dim, ef_arg, knn, make_config, require_present, rows_array, KnnResult};
use crate::report::PyBatchReport;
use crate::run::{parse_mode, run_batch};
use crate::{meta, pools};
use hnsw_batch::persist::{DurableIndex, DurableOptions, SyncPolicy};
use hnsw_batch::{BatchMode, BatchOptions, IndexError, Metric, Storage};
use numpy::{PyArray1, PyArray2};
use parking_lot::Mutex;
use pyo3::exceptions::{PyKeyError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;

/// Parses `sync`.
fn parse_sync(sync: &str, interval_ms: Option<u64>) -> PyResult<SyncPolicy> {
    match (sync, interval_ms) {
        ("every_batch", None) => Ok(SyncPolicy::EveryBatch),
        ("interval", Some(ms)) => Ok(SyncPolicy::IntervalMs(ms)),
        ("never", None) => Ok(SyncPolicy::Never),
        ("interval", None) => Err(PyValueError::new_err("sync=\"interval\" needs sync_interval_ms")),
        _ => Err(PyValueError::new_err(format!(
            "sync must be \"every_batch\", \"interval\" (with sync_interval_ms) or \"never\", got {sync:?}"
        ))),
    }
}

/// The checks `Index::update` makes, applied to every row before a durable update changes
/// anything (the durable index updates one row at a time).
fn prevalidate(py: Python<'_>, m: &Matrix<'_>, metric: Metric, storage: Storage) -> PyResult<()> {
    let dim = m.cols;
    for (row, v) in m.as_slice()?.chunks_exact(dim.max(1)).enumerate() {
        let e = if let Some((component, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            Some(IndexError::NonFiniteValue { component, value })
        } else if storage == Storage::U8 {
            v.iter().enumerate().find(|(_, &x)| !(0.0..=255.0).contains(&x) || x.fract() != 0.0).map(
                |(component, &value)| IndexError::UnrepresentableValue { component, value, storage: "u8" },
            )
        } else if storage == Storage::F16 && metric != Metric::Cosine {
            // Cosine stores normalised vectors, which always fit.
            v.iter().enumerate().find(|(_, &x)| x.abs() > 65504.0).map(|(component, &value)| {
                IndexError::UnrepresentableValue { component, value, storage: "f16" }
            })
        } else if metric == Metric::Cosine && v.iter().all(|&x| x == 0.0) {
            Some(IndexError::ZeroVector)
        } else {
            None
        };
        if let Some(e) = e {
            return Err(index_err_at(py, &e, Some(row)));
        }
    }
    Ok(())
}

/// A durable HNSW index stored in directory `path`: every write is logged (and synced, under
/// the default `sync="every_batch"`) before it is applied, and reopening the directory
/// recovers every acknowledged write.
///
/// DurableIndex(path, space, dim, M=16, ef_construction=200, storage="f32", seed=0,
///              max_elements=None, sync="every_batch", sync_interval_ms=None,
///              checkpoint_log_bytes=256 MiB)
///
/// Opening an existing directory keeps the parameters it was created with; `space`, `dim` and
/// `storage` must match them. A directory is open by one `DurableIndex` at a time: `close()`
/// (or leaving a `with` block, or dropping the object) releases it.
#[pyclass(name = "DurableIndex", module = "hnsw_batch", frozen)]
pub(crate) struct PyDurableIndex {
    inner: Mutex<Option<Arc<DurableIndex>>>,
    path: PathBuf,
}

impl PyDurableIndex {
    /// The open index, or `ValueError` once closed. The lock is held only for the clone.
    fn get_inner(&self) -> PyResult<Arc<DurableIndex>> {
        self.inner.lock().clone().ok_or_else(|| PyValueError::new_err("the DurableIndex is closed"))
    }
}

#[pymethods]
impl PyDurableIndex {
    #[new]
    #[pyo3(signature = (path, space, dim, M = 16, ef_construction = 200, storage = "f32", seed = 0,
                        max_elements = None, sync = "every_batch", sync_interval_ms = None,
                        checkpoint_log_bytes = Some(256 << 20)))]
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        space: &str,
        dim: i64,
        M: i64,
        ef_construction: i64,
        storage: &str,
        seed: u64,
        max_elements: Option<i64>,
        sync: &str,
        sync_interval_ms: Option<u64>,
        checkpoint_log_bytes: Option<u64>,
    ) -> PyResult<Self> {
        let cfg = make_config(py, space, dim, M, ef_construction, storage, seed, max_elements)?;
        let opts = DurableOptions::new()
            .sync(parse_sync(sync, sync_interval_ms)?)
            .checkpoint_log_bytes(checkpoint_log_bytes);
        let d = py.detach(|| DurableIndex::open(&path, cfg, opts)).map_err(|e| persist_err(py, &e))?;
        Ok(Self { inner: Mutex::new(Some(Arc::new(d))), path })
    }

    /// Inserts the rows of `data` like `Index.add_items`; the batch is logged with one append
    /// and one sync before it is applied. Cancellation (Ctrl-C, an exception in the progress
    /// callback) takes effect only before the batch is logged: once logged, it is applied whole
    /// and the exception is raised afterwards.
    ///
    /// `metadata` and `expires_at` as in `Index.add_items`: they are logged in the same records
    /// as the vectors.
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
        let d = self.get_inner()?;
        let mode = parse_mode(mode)?;
        let pool = pools::get(pools::resolve(num_threads)?)?;
        let m = convert::matrix(data, "data")?;
        let dim = d.dim();
        check_dim(py, &m, dim, "data")?;
        let ids = match ids {
            Some(o) if !o.is_none() => convert::ids(o, Some(m.rows))?,
            _ => auto_ids(d.ids(), m.rows)?,
        };
        let flat = m.as_slice()?;
        let with_side = meta::items(&ids, flat, dim, metadata, expires_at)?;
        let items: Vec<(u64, &[f32])> = ids.iter().copied().zip(flat.chunks_exact(dim)).collect();
        let di = &*d;
        let r = run_batch(py, mode, m.rows, progress, &pool, |opts| match &with_side {
            Some(side) => di.insert_items(side, &opts.clone().coded_walk(coded_walk)),
            None => di.insert_batch(&items, &opts.clone().coded_walk(coded_walk)),
        })?;
        match r {
            Ok(report) => PyBatchReport::from_report(py, &report),
            Err(e) => Err(persist_err(py, &e)),
        }
    }

    /// Like `Index.knn_query` (`filter` included).
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
        let d = self.get_inner()?;
        let di = &*d;
        match filter.filter(|f| !f.is_none()) {
            None => knn(py, |q, k, ef| di.search(q, k, ef), di.dim(), data, k, ef, di.ef(), num_threads),
            Some(f) => {
                let f = meta::filter(f)?;
                f.check().map_err(|e| PyValueError::new_err(format!("invalid filter: {e}")))?;
                let search = |q: &[f32], k, ef| di.search_where(q, k, ef, &f);
                knn(py, search, di.dim(), data, k, ef, di.ef(), num_threads)
            }
        }
    }

    /// Like `Index.get_metadata`.
    fn get_metadata<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let id = convert::lookup_id(id)?;
        match self.get_inner()?.get_metadata(id) {
            Some(m) => meta::to_dict(py, &m),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// Like `Index.update_metadata`; logged.
    fn update_metadata(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let d = self.get_inner()?;
        let id = convert::lookup_id(id)?;
        let patch = meta::patch(values)?;
        py.detach(|| d.set_metadata(id, &patch)).map_err(|e| persist_err(py, &e))
    }

    /// Like `Index.get_expiry`.
    fn get_expiry(&self, id: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
        let id = convert::lookup_id(id)?;
        match self.get_inner()?.get_expiry(id) {
            Some(e) => Ok(e.at()),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// Like `Index.set_expiry`; logged.
    #[pyo3(signature = (id, expires_at))]
    fn set_expiry(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        expires_at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let d = self.get_inner()?;
        let id = convert::lookup_id(id)?;
        let e = meta::expiry(expires_at, "expires_at")?;
        py.detach(|| d.set_expiry(id, e)).map_err(|e| persist_err(py, &e))
    }

    /// Like `Index.set_clock` (not saved: a reopened index reads the system clock).
    #[pyo3(signature = (now_ms = None))]
    fn set_clock(&self, now_ms: Option<u64>) -> PyResult<()> {
        self.get_inner()?.set_clock(meta::clock(now_ms));
        Ok(())
    }

    /// Like `Index.count`.
    fn count(&self, py: Python<'_>, filter: &Bound<'_, PyAny>) -> PyResult<usize> {
        let f = meta::filter(filter)?;
        self.get_inner()?.count(&f).map_err(|e| index_err(py, &e))
    }

    /// Like `Index.delete_where`; the matched ids are logged as deletes, `batch_size` of them per
    /// log append and sync (0: all in one), so a crash keeps whole batches. An I/O error after
    /// the first batch has an attribute `committed`, the `BatchReport` of the batches done.
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
        let d = self.get_inner()?;
        let f = meta::filter(filter)?;
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let r = py.detach(|| d.delete_where(&f, &opts)).map_err(|e| persist_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Like `Index.update_where`; logged in batches as `delete_where`.
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
        let d = self.get_inner()?;
        let f = meta::filter(filter)?;
        let patch = meta::patch(values)?;
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let r = py.detach(|| d.update_where(&f, &patch, &opts)).map_err(|e| persist_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Like `Index.purge_expired`; logged in batches as `delete_where`.
    #[pyo3(signature = (*, dry_run = false, confirm_count = None, max_affected = None, batch_size = 0))]
    fn purge_expired(
        &self,
        py: Python<'_>,
        dry_run: bool,
        confirm_count: Option<usize>,
        max_affected: Option<usize>,
        batch_size: usize,
    ) -> PyResult<PyBatchReport> {
        let d = self.get_inner()?;
        let opts = meta::delete_options(dry_run, confirm_count, max_affected, batch_size);
        let r = py.detach(|| d.purge_expired(&opts)).map_err(|e| persist_err(py, &e))?;
        PyBatchReport::from_report(py, &r)
    }

    /// Like `Index.create_field_index`; logged.
    fn create_field_index(&self, py: Python<'_>, field: &str) -> PyResult<()> {
        let d = self.get_inner()?;
        py.detach(|| d.create_field_index(field)).map_err(|e| persist_err(py, &e))
    }

    /// Deletes `ids` with one log record and returns how many were deleted. Raises `KeyError`
    /// (deleting nothing) if one is absent, unless `missing_ok=True`.
    #[pyo3(signature = (ids, missing_ok = false))]
    fn delete(&self, py: Python<'_>, ids: &Bound<'_, PyAny>, missing_ok: bool) -> PyResult<usize> {
        let d = self.get_inner()?;
        let ids = convert::ids(ids, None)?;
        if !missing_ok {
            require_present(&ids, |id| d.contains(id))?;
        }
        let di = &*d;
        // Best effort: an id given twice is deleted once (and listed in the report's failures).
        let opts = BatchOptions::new().mode(BatchMode::BestEffort);
        py.detach(|| di.delete_batch(&ids, &opts)).map(|r| r.deleted).map_err(|e| persist_err(py, &e))
    }

    /// Replaces the vectors of `ids`. Every row is checked (and every id looked up) before the
    /// first change; the rows are then logged and applied one at a time.
    fn update(&self, py: Python<'_>, data: &Bound<'_, PyAny>, ids: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = self.get_inner()?;
        let m = convert::matrix(data, "data")?;
        let dim = d.dim();
        check_dim(py, &m, dim, "data")?;
        let ids = convert::ids(ids, Some(m.rows))?;
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(id) = ids.iter().find(|&&id| !seen.insert(id)) {
            return Err(PyValueError::new_err(format!("id {id} is given twice")));
        }
        prevalidate(py, &m, d.config().metric, d.config().storage)?;
        require_present(&ids, |id| d.contains(id))?;
        let flat = m.as_slice()?;
        let di = &*d;
        let r = py.detach(|| {
            for (row, (id, v)) in ids.iter().zip(flat.chunks_exact(dim)).enumerate() {
                di.update(*id, v).map_err(|e| (row, e))?;
            }
            Ok(())
        });
        r.map_err(|(_row, e)| persist_err(py, &e))
    }

    /// The stored vector of `id`; `KeyError` if absent.
    fn get<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let id = convert::lookup_id(id)?;
        match self.get_inner()?.get(id) {
            Some(v) => Ok(PyArray1::from_vec(py, v)),
            None => Err(PyKeyError::new_err(format!("id {id} not found"))),
        }
    }

    /// The stored vectors of `ids` as an `(n, dim)` array; `KeyError` if one is absent.
    fn get_items<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let d = self.get_inner()?;
        let ids = convert::ids(ids, None)?;
        let rows = ids
            .iter()
            .map(|&id| d.get(id).ok_or_else(|| PyKeyError::new_err(format!("id {id} not found"))))
            .collect::<PyResult<Vec<_>>>()?;
        rows_array(py, rows, d.dim())
    }

    /// The ids present, as a `uint64` array.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        Ok(PyArray1::from_vec(py, self.get_inner()?.ids()))
    }

    /// Writes a snapshot of the current state and starts a new, empty log.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        let d = self.get_inner()?;
        py.detach(|| d.checkpoint()).map_err(|e| persist_err(py, &e))
    }

    /// Syncs the log (for `sync="interval"` or `"never"`): every write acknowledged before the
    /// call is durable when it returns.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let d = self.get_inner()?;
        py.detach(|| d.sync()).map_err(|e| persist_err(py, &e))
    }

    /// Writes a standalone snapshot file that `Index.load` reads.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let d = self.get_inner()?;
        py.detach(|| -> std::io::Result<()> {
            let bytes = d.snapshot_bytes();
            let mut tmp = path.clone().into_os_string();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)
        })
        .map_err(|e| PyOSError::new_err(format!("cannot write `{}`: {e}", path.display())))
    }

    /// Closes the index and releases its directory (once calls running in other threads end).
    /// Further calls raise `ValueError`.
    fn close(&self, py: Python<'_>) {
        let d = self.inner.lock().take();
        py.detach(move || drop(d));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// What opening the directory found and replayed, as a dict.
    fn recovery_report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.get_inner()?;
        let r = d.recovery_report();
        let out = PyDict::new(py);
        out.set_item("created", r.created)?;
        out.set_item("snapshot_generation", r.snapshot_generation)?;
        out.set_item("snapshots_skipped", r.snapshots_skipped)?;
        out.set_item("logs_replayed", r.logs_replayed)?;
        out.set_item("records_replayed", r.records_replayed)?;
        out.set_item("items_skipped", r.items_skipped)?;
        out.set_item("truncated_bytes", r.truncated_bytes)?;
        Ok(out)
    }

    /// Sets the default beam width of `knn_query`.
    fn set_ef(&self, py: Python<'_>, ef: i64) -> PyResult<()> {
        self.get_inner()?.set_ef(ef_arg(ef)?).map_err(|e| index_err(py, &e))
    }

    /// Default beam width of `knn_query`.
    #[getter]
    fn get_ef(&self) -> PyResult<usize> {
        Ok(self.get_inner()?.ef())
    }

    /// The directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> PyResult<usize> {
        Ok(self.get_inner()?.dim())
    }

    /// Distance: "l2", "cosine" or "ip".
    #[getter]
    fn space(&self) -> PyResult<&'static str> {
        Ok(self.get_inner()?.config().metric.name())
    }

    /// Links per node on the upper levels.
    #[getter(M)]
    #[allow(non_snake_case)]
    fn get_M(&self) -> PyResult<usize> {
        Ok(self.get_inner()?.config().m)
    }

    /// Beam width used while inserting.
    #[getter]
    fn ef_construction(&self) -> PyResult<usize> {
        Ok(self.get_inner()?.config().ef_construction)
    }

    /// Element type of stored vectors: "f32" or "u8".
    #[getter]
    fn storage(&self) -> PyResult<&'static str> {
        Ok(self.get_inner()?.config().storage.name())
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.get_inner()?.len())
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let d = self.get_inner()?;
        Ok(id.extract::<u64>().is_ok_and(|id| d.contains(id)))
    }

    fn __repr__(&self) -> String {
        match self.inner.lock().as_ref() {
            Some(d) => format!(
                "DurableIndex({:?}, space={:?}, dim={}, len={})",
                self.path.display().to_string(),
                d.config().metric.name(),
                d.dim(),
                d.len()
            ),
            None => format!("DurableIndex({:?}, closed)", self.path.display().to_string()),
        }
    }
}
