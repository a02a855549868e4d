//! Reading numpy arrays (or anything `numpy.asarray` takes) as row-major `f32` matrices and
//! `u64` id lists, without a copy when the input is already C-contiguous `float32`.

use numpy::prelude::*;
use numpy::{PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A row-major `rows × cols` matrix of `f32` borrowed from a numpy array.
pub(crate) struct Matrix<'py> {
    arr: PyReadonlyArrayDyn<'py, f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Matrix<'_> {
    /// The matrix as one slice of `rows * cols` values.
    pub fn as_slice(&self) -> PyResult<&[f32]> {
        self.arr.as_slice().map_err(|e| PyValueError::new_err(format!("array is not contiguous: {e}")))
    }
}

/// `obj` as a numpy array: itself if it is one, else `numpy.asarray(obj)`.
fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let np = obj.py().import("numpy")?;
    let a = np.call_method1("asarray", (obj,))?;
    Ok(a.cast_into::<PyUntypedArray>()?)
}

fn dtype_name(a: &Bound<'_, PyUntypedArray>) -> String {
    a.dtype().str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Reads `obj` as vectors: a 2-D array `(n, dim)` or a 1-D array (one vector). Integer and
/// floating dtypes are accepted; C-contiguous `float32` is used in place, anything else is
/// converted once. `what` names the argument in error messages.
pub(crate) fn matrix<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Matrix<'py>> {
    let py = obj.py();
    let a = as_ndarray(obj)?;
    let kind = a.dtype().kind();
    if !matches!(kind, b'f' | b'i' | b'u') {
        return Err(PyValueError::new_err(format!(
            "{what} must hold real numbers (float32 preferred), got dtype {}",
            dtype_name(&a)
        )));
    }
    let (rows, cols) = match a.shape() {
        [d] => (1, *d),
        [n, d] => (*n, *d),
        s => {
            return Err(PyValueError::new_err(format!(
                "{what} must be a 2-D array (n, dim) or a single 1-D vector, got shape {}",
                shape_text(s)
            )))
        }
    };
    let f32_arr = match a.cast::<PyArrayDyn<f32>>() {
        Ok(f) if a.is_c_contiguous() => f.clone(),
        _ => {
            let np = py.import("numpy")?;
            let kw = PyDict::new(py);
            kw.set_item("dtype", np.getattr("float32")?)?;
            np.call_method("ascontiguousarray", (&a,), Some(&kw))?.cast_into::<PyArrayDyn<f32>>()?
        }
    };
    let arr =
        f32_arr.try_readonly().map_err(|e| PyValueError::new_err(format!("{what} cannot be read: {e}")))?;
    Ok(Matrix { arr, rows, cols })
}

/// Reads ids: one non-negative integer, or a 1-D sequence of them. With `expected`, the count
/// must match.
pub(crate) fn ids(obj: &Bound<'_, PyAny>, expected: Option<usize>) -> PyResult<Vec<u64>> {
    if let Ok(id) = obj.extract::<u64>() {
        return check_count(vec![id], expected);
    }
    let bad = |detail: String| {
        PyValueError::new_err(format!("ids must be non-negative integers below 2**64: {detail}"))
    };
    let a = as_ndarray(obj)?;
    let kind = a.dtype().kind();
    if !matches!(kind, b'i' | b'u') {
        return Err(bad(format!("got dtype {}", dtype_name(&a))));
    }
    if a.ndim() > 1 {
        return Err(bad(format!("got shape {}", shape_text(a.shape()))));
    }
    let py = obj.py();
    let np = py.import("numpy")?;
    let flat = np.call_method1("ravel", (&a,))?;
    let out = if kind == b'u' {
        let kw = PyDict::new(py);
        kw.set_item("dtype", np.getattr("uint64")?)?;
        let u =
            np.call_method("ascontiguousarray", (flat,), Some(&kw))?.cast_into::<numpy::PyArray1<u64>>()?;
        u.try_readonly().map_err(|e| bad(e.to_string()))?.as_slice().map_err(|e| bad(e.to_string()))?.to_vec()
    } else {
        let kw = PyDict::new(py);
        kw.set_item("dtype", np.getattr("int64")?)?;
        let i =
            np.call_method("ascontiguousarray", (flat,), Some(&kw))?.cast_into::<numpy::PyArray1<i64>>()?;
        let r = i.try_readonly().map_err(|e| bad(e.to_string()))?;
        let s = r.as_slice().map_err(|e| bad(e.to_string()))?;
        if let Some(p) = s.iter().position(|&v| v < 0) {
            return Err(bad(format!("ids[{p}] = {}", s[p])));
        }
        s.iter().map(|&v| v as u64).collect()
    };
    check_count(out, expected)
}

fn check_count(ids: Vec<u64>, expected: Option<usize>) -> PyResult<Vec<u64>> {
    match expected {
        Some(n) if n != ids.len() => {
            Err(PyValueError::new_err(format!("got {} ids for {n} vectors: pass one id per row", ids.len())))
        }
        _ => Ok(ids),
    }
}

/// Converts a Python integer argument to `usize`, with a `ValueError` naming it when it is
/// negative (pyo3's own conversion would raise `OverflowError`).
pub(crate) fn non_negative(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be non-negative, got {v}")))
}

/// An id to look up: a non-negative integer below `2**64`. Any other integer cannot be present,
/// so it is a `KeyError`; a non-integer is a `TypeError`.
pub(crate) fn lookup_id(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(id) = obj.extract::<u64>() {
        return Ok(id);
    }
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(pyo3::exceptions::PyKeyError::new_err(format!("id {obj} not found")));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "an id is a non-negative integer, got {}",
        obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
    )))
}
