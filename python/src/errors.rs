//! Rust errors as Python exceptions. The batch exception classes live in
//! `hnsw_batch/_errors.py`; they carry `.position` and `.id` (and a few more attributes).

use crate::report::PyBatchReport;
use hnsw_batch::{BatchError, DeleteError, IndexError, PersistError};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

/// An instance of `hnsw_batch._errors.<class>(message, position, id)` with `extra` attributes.
fn make<'py>(
    py: Python<'py>,
    class: &str,
    message: String,
    position: Option<usize>,
    id: Option<u64>,
    extra: &[(&str, Py<PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let cls = py.import("hnsw_batch._errors")?.getattr(class)?;
    let obj = cls.call1((message, position, id))?;
    for (name, value) in extra {
        obj.setattr(*name, value)?;
    }
    Ok(obj)
}

fn raise(r: PyResult<Bound<'_, PyAny>>) -> PyErr {
    match r {
        Ok(obj) => PyErr::from_value(obj),
        Err(e) => e,
    }
}

fn int(py: Python<'_>, v: u64) -> Py<PyAny> {
    v.into_pyobject(py).map(|b| b.into_any().unbind()).unwrap_or_else(|_| py.None())
}

/// The exception object of a batch error (also used as the `error` of report failures).
pub(crate) fn batch_error_object<'py>(py: Python<'py>, e: &BatchError) -> PyResult<Bound<'py, PyAny>> {
    let msg = e.to_string();
    match *e {
        BatchError::DimensionMismatch { index, id, expected, actual } => make(
            py,
            "DimensionMismatchError",
            msg,
            Some(index),
            Some(id),
            &[("expected", int(py, expected as u64)), ("actual", int(py, actual as u64))],
        ),
        BatchError::InvalidVector { index, id, ref reason } => {
            let reason = reason.to_string().into_pyobject(py)?.into_any().unbind();
            make(py, "InvalidVectorError", msg, Some(index), Some(id), &[("reason", reason)])
        }
        BatchError::DuplicateId { index, id, first_index } => {
            let first = match first_index {
                Some(i) => int(py, i as u64),
                None => py.None(),
            };
            make(py, "DuplicateIdError", msg, Some(index), Some(id), &[("first_position", first)])
        }
        BatchError::CapacityExceeded { index, id, limit } => {
            make(py, "CapacityExceededError", msg, Some(index), Some(id), &[("limit", int(py, limit))])
        }
        BatchError::Cancelled { ref report } => {
            make(py, "CancelledError", msg, None, None, &[("inserted", int(py, report.inserted as u64))])
        }
        _ => make(py, "BatchError", msg, e.index(), None, &[]),
    }
}

/// A batch error as a Python exception.
pub(crate) fn batch_err(py: Python<'_>, e: &BatchError) -> PyErr {
    raise(batch_error_object(py, e))
}

/// An index error as a Python exception; `position` is the row of the input it concerns.
pub(crate) fn index_err_at(py: Python<'_>, e: &IndexError, position: Option<usize>) -> PyErr {
    let at = |m: String| match position {
        Some(p) => format!("row {p}: {m}"),
        None => m,
    };
    let msg = at(e.to_string());
    match *e {
        IndexError::NotFound { id } => PyKeyError::new_err(format!("id {id} not found")),
        IndexError::DuplicateId { id } => raise(make(py, "DuplicateIdError", msg, position, Some(id), &[])),
        IndexError::DimensionMismatch { expected, actual } => raise(make(
            py,
            "DimensionMismatchError",
            msg,
            position,
            None,
            &[("expected", int(py, expected as u64)), ("actual", int(py, actual as u64))],
        )),
        IndexError::NonFiniteValue { .. }
        | IndexError::ZeroVector
        | IndexError::UnrepresentableValue { .. } => {
            raise(make(py, "InvalidVectorError", msg, position, None, &[]))
        }
        IndexError::CapacityExceeded { limit } => {
            raise(make(py, "CapacityExceededError", msg, position, None, &[("limit", int(py, limit))]))
        }
        IndexError::Refused(ref r) => {
            let msg = format!("{r}; nothing was changed");
            let (found, expected, limit) = match *r {
                DeleteError::CountMismatch { expected, found } => (found, Some(expected), None),
                DeleteError::TooMany { limit, found } => (found, None, Some(limit)),
                _ => return PyValueError::new_err(msg),
            };
            let opt = |v: Option<usize>| v.map_or_else(|| py.None(), |v| int(py, v as u64));
            raise(make(
                py,
                "RefusedError",
                msg,
                None,
                None,
                &[("found", int(py, found as u64)), ("expected", opt(expected)), ("limit", opt(limit))],
            ))
        }
        _ => PyValueError::new_err(msg),
    }
}

/// An index error as a Python exception.
pub(crate) fn index_err(py: Python<'_>, e: &IndexError) -> PyErr {
    index_err_at(py, e, None)
}

/// A persistence error as a Python exception: I/O errors as `OSError` (and its subclasses),
/// damaged or mismatched files as `ValueError`, rejected writes as the batch/index exceptions.
pub(crate) fn persist_err(py: Python<'_>, e: &PersistError) -> PyErr {
    let msg = e.to_string();
    match e {
        PersistError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        PersistError::Locked { .. } => PyOSError::new_err(msg),
        PersistError::Poisoned { .. } => PyRuntimeError::new_err(msg),
        PersistError::Batch(b) => batch_err(py, b),
        PersistError::Index(i) => index_err(py, i),
        PersistError::Partial { committed, error } => {
            // The exception of the failure, saying what the earlier batches committed.
            let err = persist_err(py, error);
            let value = err.value(py);
            let _ = value.setattr("args", (msg,));
            if let Ok(report) = PyBatchReport::from_report(py, committed) {
                let _ = value.setattr("committed", report);
            }
            err
        }
        _ => PyValueError::new_err(msg),
    }
}
