//! `BatchReport` and `ProgressEvent`, the result and progress objects of batch calls.

use crate::errors::batch_error_object;
use hnsw_batch::BatchReport;
use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// Outcome of a batch call (`add_items`) and of the bulk operations by filter (`delete_where`,
/// `update_where`, `purge_expired`).
///
/// `ids` are the ids the call changed (for an operation by filter: ascending; in a dry run, the
/// ids it would change, with `dry_run` set). `failures` lists the rejected items of a best-effort batch, in input order, as
/// `(position, id, error)` tuples where `error` is the exception that item would have raised
/// (a `BatchError` subclass).
#[pyclass(name = "BatchReport", module = "hnsw_batch", frozen)]
pub(crate) struct PyBatchReport {
    /// Items in the input.
    #[pyo3(get)]
    total: usize,
    /// Items inserted.
    #[pyo3(get)]
    inserted: usize,
    /// Items whose vector was replaced.
    #[pyo3(get)]
    updated: usize,
    /// Items deleted.
    #[pyo3(get)]
    deleted: usize,
    /// Ids that were not present (deletes and updates).
    #[pyo3(get)]
    not_found: usize,
    /// Wall-clock time of the call in seconds.
    #[pyo3(get)]
    elapsed: f64,
    /// Whether this is the report of a dry run (nothing was changed).
    #[pyo3(get)]
    dry_run: bool,
    ids: Vec<u64>,
    failures: Py<PyList>,
}

impl PyBatchReport {
    /// Converts a library report, turning each failure into `(position, id, exception)`.
    pub(crate) fn from_report(py: Python<'_>, r: &BatchReport) -> PyResult<Self> {
        let failures = PyList::empty(py);
        for f in &r.failures {
            let err = batch_error_object(py, &f.error)?;
            failures.append(PyTuple::new(
                py,
                [f.index.into_pyobject(py)?.into_any(), f.id.into_pyobject(py)?.into_any(), err],
            )?)?;
        }
        Ok(Self {
            total: r.total,
            inserted: r.inserted,
            updated: r.updated,
            deleted: r.deleted,
            not_found: r.not_found,
            elapsed: r.elapsed.as_secs_f64(),
            dry_run: r.dry_run,
            ids: r.ids.clone(),
            failures: failures.unbind(),
        })
    }
}

#[pymethods]
impl PyBatchReport {
    /// Rejected items as a list of `(position, id, error)` tuples (a new list on each access).
    #[getter]
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let l = self.failures.bind(py);
        PyList::new(py, l.iter())
    }

    /// The ids the call changed (or, in a dry run, would change), as a `uint64` array.
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, &self.ids)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BatchReport(total={}, inserted={}, updated={}, deleted={}, not_found={}, failures={}, dry_run={}, elapsed={:.3}s)",
            self.total,
            self.inserted,
            self.updated,
            self.deleted,
            self.not_found,
            self.failures.bind(py).len(),
            if self.dry_run { "True" } else { "False" },
            self.elapsed
        )
    }
}

/// A progress event of a batch insert: `done` of `total` items handled.
///
/// A callback gets one event with `done == 0` first and one with `done == total` last (unless
/// the batch is cancelled), and events at most every 1 % in between.
#[pyclass(name = "ProgressEvent", module = "hnsw_batch", frozen)]
pub(crate) struct PyProgressEvent {
    /// Items handled so far.
    #[pyo3(get)]
    pub done: usize,
    /// Items in the batch.
    #[pyo3(get)]
    pub total: usize,
}

#[pymethods]
impl PyProgressEvent {
    /// `done / total` in `0.0..=1.0` (1.0 for an empty batch).
    #[getter]
    fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }

    fn __repr__(&self) -> String {
        format!("ProgressEvent(done={}, total={})", self.done, self.total)
    }
}
