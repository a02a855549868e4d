//! Metadata, filters, patches and expiry between Python values and the library.
//!
//! Metadata is a `dict` of `str` keys to `str`, `int`, `float`, `bool` or a list of `str`; a
//! filter is a `dict` in the JSON query shape of the CLI (`{"lang": "en", "year": {"$gte":
//! 2000}}`) or the same as a JSON string; an expiry time is an `int` of unix milliseconds.
//! Values go through JSON ([`serde_json::Value`]) so that they follow exactly the rules of the
//! JSON Lines reader and the CLI.

use hnsw_batch::items::{Item, MetaPatch};
use hnsw_batch::metadata::{MetaValue, Metadata};
use hnsw_batch::{Clock, DeleteOptions, Expiry, Filter, ManualClock, SystemClock};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};
use std::sync::Arc;

/// Deepest nesting of dicts and lists converted (a filter nests far less; the cap keeps a
/// self-referencing list from recursing without end).
const MAX_DEPTH: usize = 64;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A Python value as JSON: `None`, `bool`, `int` (64 bits), finite `float`, `str`, `list` or
/// `tuple`, `dict` with `str` keys; numpy integer and float scalars too. `what` names the value
/// in error messages.
pub(crate) fn to_json(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    json_at(obj, what, 0)
}

fn json_at(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!("{path}: nested deeper than {MAX_DEPTH} levels")));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.extract::<bool>()?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if obj.is_instance_of::<PyFloat>() {
        return float(obj.extract::<f64>()?, path);
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(i) => Ok(Value::Number(i.into())),
            Err(_) => Err(PyValueError::new_err(format!("{path}: integer {obj} does not fit in 64 bits"))),
        };
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "{path}: keys must be strings, got {}",
                    type_name(&k)
                )));
            };
            let key = key.to_str()?.to_owned();
            let value = json_at(&v, &format!("{path}.{key}"), depth + 1)?;
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for (i, v) in obj.try_iter()?.enumerate() {
            items.push(json_at(&v?, &format!("{path}[{i}]"), depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    // numpy scalars: integers through `__index__`, floats through `__float__`.
    if obj.hasattr("__index__")? {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
    }
    if obj.hasattr("__float__")? {
        if let Ok(f) = obj.extract::<f64>() {
            return float(f, path);
        }
    }
    Err(PyTypeError::new_err(format!(
        "{path}: unsupported type {} (use str, int, float, bool, None, list or dict)",
        type_name(obj)
    )))
}

fn float(f: f64, path: &str) -> PyResult<Value> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| PyValueError::new_err(format!("{path}: {f} is not a finite number")))
}

/// A metadata dict as a map, `None` values left out. Only the shape is checked here (values
/// must be str, int, float, bool or a list of str); the index checks its rules and limits (key
/// names, sizes) when the metadata is stored, so that a best-effort batch reports a row that
/// breaks them as that row's `InvalidVectorError`.
pub(crate) fn metadata(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Metadata> {
    if !obj.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!("{what} must be a dict, got {}", type_name(obj))));
    }
    let Value::Object(map) = to_json(obj, what)? else {
        return Err(PyTypeError::new_err(format!("{what} must be a dict")));
    };
    let mut meta = Metadata::new();
    for (key, v) in map {
        let value = match v {
            Value::Null => continue,
            Value::Bool(b) => MetaValue::Bool(b),
            Value::String(s) => MetaValue::Str(s),
            Value::Number(n) => match n.as_i64() {
                Some(i) => MetaValue::Int(i),
                None => MetaValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => list.push(s),
                        _ => {
                            return Err(PyTypeError::new_err(format!(
                                "{what}.{key}[{i}]: a list value holds strings only"
                            )))
                        }
                    }
                }
                MetaValue::StrList(list)
            }
            Value::Object(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{what}.{key}: a value is a str, int, float, bool or a list of str, not a dict"
                )))
            }
        };
        meta.insert(key, value);
    }
    Ok(meta)
}

/// The metadata of every row of a batch of `n`: `None`, or a sequence of `n` dicts (or `None`s);
/// a single dict for a batch of one row.
pub(crate) fn metadata_rows(
    obj: Option<&Bound<'_, PyAny>>,
    n: usize,
) -> PyResult<Option<Vec<Option<Metadata>>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    if obj.is_instance_of::<PyDict>() {
        if n != 1 {
            return Err(PyTypeError::new_err(format!(
                "metadata must be a list of {n} dicts (one per row), got one dict"
            )));
        }
        return Ok(Some(vec![Some(metadata(obj, "metadata")?)]));
    }
    if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(format!(
            "metadata must be a list of dicts (one per row), got {}",
            type_name(obj)
        )));
    }
    let mut rows = Vec::with_capacity(n);
    for (i, m) in obj.try_iter()?.enumerate() {
        let m = m?;
        rows.push(if m.is_none() { None } else { Some(metadata(&m, &format!("metadata[{i}]"))?) });
    }
    if rows.len() != n {
        return Err(PyValueError::new_err(format!(
            "got {} metadata entries for {n} rows: pass one per row (None for none)",
            rows.len()
        )));
    }
    Ok(Some(rows))
}

/// An expiry time: `None` (never) or a non-negative `int` of unix milliseconds.
pub(crate) fn expiry(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Expiry> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(Expiry::Never) };
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyFloat>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int of unix milliseconds or None, got {}",
            type_name(obj)
        )));
    }
    match obj.extract::<u64>() {
        Ok(ms) => Ok(Expiry::At(ms)),
        Err(_) => Err(PyValueError::new_err(format!(
            "{what} must be an int of unix milliseconds in 0..2**64 or None, got {obj}"
        ))),
    }
}

/// The expiry of every row of a batch of `n`: `None`, one time for all rows, or a sequence of
/// `n` times (or `None`s).
pub(crate) fn expiry_rows(obj: Option<&Bound<'_, PyAny>>, n: usize) -> PyResult<Option<Vec<Expiry>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    if obj.is_instance_of::<PyString>() || !obj.hasattr("__iter__")? {
        let e = expiry(Some(obj), "expires_at")?;
        return Ok(Some(vec![e; n]));
    }
    let mut rows = Vec::with_capacity(n);
    for (i, e) in obj.try_iter()?.enumerate() {
        rows.push(expiry(Some(&e?), &format!("expires_at[{i}]"))?);
    }
    if rows.len() != n {
        return Err(PyValueError::new_err(format!(
            "got {} expiry times for {n} rows: pass one per row (None for never), or one for all",
            rows.len()
        )));
    }
    Ok(Some(rows))
}

/// A filter: a dict in the JSON query shape, or that JSON as a string.
pub(crate) fn filter(obj: &Bound<'_, PyAny>) -> PyResult<Filter> {
    let parsed = if let Ok(s) = obj.cast::<PyString>() {
        Filter::from_json_str(s.to_str()?)
    } else if obj.is_instance_of::<PyDict>() {
        Filter::from_json(&to_json(obj, "filter")?)
    } else {
        return Err(PyTypeError::new_err(format!(
            "a filter is a dict like {{\"lang\": \"en\", \"year\": {{\"$gte\": 2000}}}} (or that JSON as a str), got {}",
            type_name(obj)
        )));
    };
    parsed.map_err(|e| PyValueError::new_err(format!("invalid filter: {e}")))
}

/// A patch from a dict of keys to set; a key set to `None` is removed. The index checks the
/// patched map against its rules and limits.
pub(crate) fn patch(obj: &Bound<'_, PyAny>) -> PyResult<MetaPatch> {
    let set = metadata(obj, "values")?;
    let d = obj.cast::<PyDict>()?;
    let mut remove = Vec::new();
    for (k, v) in d.iter() {
        if v.is_none() {
            remove.push(k.cast::<PyString>()?.to_str()?.to_owned());
        }
    }
    Ok(MetaPatch { set, remove })
}

/// A metadata map as a new dict.
pub(crate) fn to_dict<'py>(py: Python<'py>, meta: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in meta {
        match v {
            MetaValue::Str(s) => d.set_item(k, s)?,
            MetaValue::Int(i) => d.set_item(k, i)?,
            MetaValue::Float(f) => d.set_item(k, f)?,
            MetaValue::Bool(b) => d.set_item(k, b)?,
            MetaValue::StrList(l) => d.set_item(k, PyList::new(py, l)?)?,
            // A kind of value added to the library later: visible as present, without a value.
            _ => d.set_item(k, py.None())?,
        }
    }
    Ok(d)
}

/// The options of the bulk operations by filter.
pub(crate) fn delete_options(
    dry_run: bool,
    confirm_count: Option<usize>,
    max_affected: Option<usize>,
    batch_size: usize,
) -> DeleteOptions {
    DeleteOptions { dry_run, confirm_count, max_affected, batch_size }
}

/// The items of a batch insert with metadata or expiry (borrowing the rows of `flat`), or `None`
/// when neither is given, so the plain insert runs.
pub(crate) fn items<'a>(
    ids: &[u64],
    flat: &'a [f32],
    dim: usize,
    metadata: Option<&Bound<'_, PyAny>>,
    expires_at: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Vec<Item<&'a [f32]>>>> {
    let n = ids.len();
    let metas = metadata_rows(metadata, n)?;
    let expiries = expiry_rows(expires_at, n)?;
    if metas.is_none() && expiries.is_none() {
        return Ok(None);
    }
    let mut metas = metas.map(Vec::into_iter);
    let mut out = Vec::with_capacity(n);
    for (i, (&id, v)) in ids.iter().zip(flat.chunks_exact(dim.max(1))).enumerate() {
        let mut item = Item::new(id, v);
        if let Some(m) = metas.as_mut().and_then(Iterator::next).flatten() {
            item = item.metadata(m);
        }
        if let Some(e) = expiries.as_ref().and_then(|e| e.get(i)) {
            item = item.expiry(*e);
        }
        out.push(item);
    }
    Ok(Some(out))
}

/// The clock of `set_clock`: fixed at `now_ms`, or the system clock.
pub(crate) fn clock(now_ms: Option<u64>) -> Arc<dyn Clock> {
    match now_ms {
        Some(ms) => Arc::new(ManualClock::new(ms)),
        None => Arc::new(SystemClock),
    }
}
