//! Running a batch insert with the GIL released: progress callbacks into Python, Ctrl-C, and
//! exceptions raised by callbacks.
//!
//! CPython runs signal handlers only on the main thread, so a cancel check polled on a rayon
//! worker could never see Ctrl-C. Instead the batch runs on a helper thread while the calling
//! thread waits for it, re-attaching to the interpreter at most every 50 ms to run
//! `check_signals`. A pending exception (KeyboardInterrupt, or one raised by the progress
//! callback) sets the cancel flag that the library polls; the call then raises that exception.

use crate::report::PyProgressEvent;
use hnsw_batch::{BatchMode, BatchOptions};
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;
use rayon::ThreadPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Batches smaller than this run inline: too short to interrupt, not worth a helper thread.
const INLINE_BELOW: usize = 2048;
/// How often the waiting thread checks for signals.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Parses `mode`.
pub(crate) fn parse_mode(mode: &str) -> PyResult<BatchMode> {
    match mode {
        "all_or_nothing" => Ok(BatchMode::AllOrNothing),
        "best_effort" => Ok(BatchMode::BestEffort),
        _ => Err(PyValueError::new_err(format!(
            "mode must be \"all_or_nothing\" or \"best_effort\", got {mode:?}"
        ))),
    }
}

/// The `progress` argument resolved: the callable to call, and whether we made it (a default
/// progress bar, to be closed afterwards).
struct Progress {
    callback: Py<PyAny>,
    owned: bool,
}

fn resolve_progress(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    total: usize,
) -> PyResult<Option<Progress>> {
    let Some(p) = progress else { return Ok(None) };
    if p.is_none() {
        return Ok(None);
    }
    if let Ok(b) = p.cast::<PyBool>() {
        if !b.is_true() {
            return Ok(None);
        }
        let bar = py.import("hnsw_batch._progress")?.getattr("default_bar")?.call1((total,))?;
        return Ok(Some(Progress { callback: bar.unbind(), owned: true }));
    }
    if !p.is_callable() {
        return Err(PyValueError::new_err(
            "progress must be None, True/False or a callable taking a ProgressEvent",
        ));
    }
    Ok(Some(Progress { callback: p.clone().unbind(), owned: false }))
}

/// Runs `work` (a batch call given the options to use) with the GIL released and returns its
/// result, or the exception that interrupted it.
pub(crate) fn run_batch<T, F>(
    py: Python<'_>,
    mode: BatchMode,
    total: usize,
    progress: Option<&Bound<'_, PyAny>>,
    pool: &ThreadPool,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&BatchOptions) -> T + Send,
{
    let progress = resolve_progress(py, progress, total)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let pending: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let mut opts = BatchOptions::new().mode(mode);
    {
        let cancel = cancel.clone();
        opts = opts.cancel_when(move || cancel.load(Ordering::Acquire));
    }
    if let Some(p) = &progress {
        let callback = p.callback.clone_ref(py);
        let (cancel, pending) = (cancel.clone(), pending.clone());
        opts = opts.on_progress(move |ev| {
            if cancel.load(Ordering::Acquire) {
                return; // an exception is pending: no more calls into Python
            }
            Python::attach(|py| {
                let r = Py::new(py, PyProgressEvent { done: ev.done, total: ev.total })
                    .and_then(|e| callback.call1(py, (e,)));
                if let Err(e) = r {
                    pending.lock().get_or_insert(e);
                    cancel.store(true, Ordering::Release);
                }
            });
        });
    }

    let outcome = if total < INLINE_BELOW {
        let opts = &opts;
        Ok(py.detach(move || pool.install(move || work(opts))))
    } else {
        let (opts, cancel, pending) = (&opts, &cancel, &pending);
        py.detach(move || {
            let (tx, rx) = mpsc::channel::<()>();
            std::thread::scope(move |s| {
                let worker = s.spawn(move || {
                    let r = pool.install(move || work(opts));
                    let _ = tx.send(());
                    r
                });
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(SIGNAL_POLL) {
                    if cancel.load(Ordering::Acquire) {
                        continue;
                    }
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        pending.lock().get_or_insert(e);
                        cancel.store(true, Ordering::Release);
                    }
                }
                worker.join().map_err(|_| ())
            })
        })
    };

    if let Some(p) = &progress {
        if p.owned {
            p.callback.bind(py).call_method0("close")?;
        }
    }
    drop(opts);
    if let Some(e) = pending.lock().take() {
        return Err(e);
    }
    outcome.map_err(|()| PyRuntimeError::new_err("hnsw_batch: a batch worker thread panicked"))
}
