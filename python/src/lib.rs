//! Python bindings of hnsw-batch: the extension module `hnsw_batch._hnsw_batch`.
//!
//! The pure-Python package `hnsw_batch` (python/hnsw_batch) re-exports these classes and holds
//! the exception classes and the text progress bar. Every entry point converts Rust errors into
//! Python exceptions; a panic never crosses into Python (pyo3 turns one into `PanicException`,
//! and worker-thread panics are caught at the join).

mod convert;
mod durable;
mod errors;
mod index;
mod meta;
mod pools;
mod report;
mod run;

use pyo3::prelude::*;

/// The sentinel id that pads `knn_query` rows when fewer than `k` neighbours exist (`2**64 - 1`).
pub(crate) const MISSING_ID: u64 = u64::MAX;

#[pymodule]
fn _hnsw_batch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<index::PyIndex>()?;
    m.add_class::<durable::PyDurableIndex>()?;
    m.add_class::<report::PyBatchReport>()?;
    m.add_class::<report::PyProgressEvent>()?;
    m.add("MISSING_ID", MISSING_ID)?;
    m.add("MAX_DIM", hnsw_batch::MAX_DIM)?;
    m.add("MAX_EF", hnsw_batch::MAX_EF)?;
    m.add("MAX_M", hnsw_batch::MAX_M)?;
    Ok(())
}
