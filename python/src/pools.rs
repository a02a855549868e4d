//! Rayon pools cached per thread count, and the `num_threads` argument.

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use rayon::ThreadPool;
use std::sync::Arc;

/// Largest `num_threads` accepted (anything above is a mistake, not a machine).
const MAX_THREADS: i64 = 1024;

static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());

/// Resolves `num_threads`: `-1` means every core, otherwise `1..=1024` threads.
pub(crate) fn resolve(num_threads: i64) -> PyResult<usize> {
    match num_threads {
        -1 => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        1..=MAX_THREADS => Ok(num_threads as usize),
        _ => Err(PyValueError::new_err(format!(
            "num_threads must be -1 (all cores) or in 1..={MAX_THREADS}, got {num_threads}"
        ))),
    }
}

/// The pool of `threads` threads, built on first use and kept for the life of the process.
pub(crate) fn get(threads: usize) -> PyResult<Arc<ThreadPool>> {
    let mut pools = POOLS.lock();
    if let Some((_, p)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(p.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("hnsw-batch-{threads}-{i}"))
        .build()
        .map_err(|e| PyValueError::new_err(format!("cannot start {threads} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((threads, pool.clone()));
    Ok(pool)
}
