//! Progress reporting and cancellation for batch operations.
//!
//! Workers only bump an atomic counter; the user's callback runs on whichever worker crosses the
//! next reporting step, outside every index lock, and at most one callback runs at a time.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A progress event of a batch operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProgress {
    /// Items processed so far (inserted, failed or skipped).
    pub done: usize,
    /// Items in the whole batch.
    pub total: usize,
}

impl BatchProgress {
    /// Fraction done in `0.0..=1.0` (1.0 for an empty batch).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(BatchProgress) + Send + Sync>;
/// A cancellation check: returns `true` to stop.
pub type CancelFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// Throttled progress and cancellation state shared by the workers of one batch.
pub(crate) struct Tracker<'a> {
    progress: Option<&'a ProgressFn>,
    cancel: Option<&'a CancelFn>,
    total: usize,
    done: AtomicUsize,
    /// `done` value at which the next event (or cancel poll) is due.
    next_due: AtomicUsize,
    step: usize,
    last_reported: AtomicUsize,
    busy: AtomicBool,
    cancelled: AtomicBool,
}

impl<'a> Tracker<'a> {
    /// Events at most every 1 % of `total`; the cancel check is polled every 0.5 %.
    pub(crate) fn new(total: usize, progress: Option<&'a ProgressFn>, cancel: Option<&'a CancelFn>) -> Self {
        let step = (total / 200).max(1);
        Self {
            progress,
            cancel,
            total,
            done: AtomicUsize::new(0),
            next_due: AtomicUsize::new(step),
            step,
            last_reported: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        }
    }

    /// The single 0 % event; also polls cancellation once before any work.
    pub(crate) fn start(&self) {
        if let Some(p) = self.progress {
            p(BatchProgress { done: 0, total: self.total });
        }
        if self.cancel.is_some_and(|c| c()) {
            self.cancelled.store(true, Ordering::Release);
        }
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Counts `n` finished items; on crossing a step, polls cancel and maybe reports.
    #[inline]
    pub(crate) fn advance(&self, n: usize) {
        let done = self.done.fetch_add(n, Ordering::AcqRel) + n;
        if done >= self.next_due.load(Ordering::Relaxed) {
            self.slow_path();
        }
    }

    #[cold]
    fn slow_path(&self) {
        // One worker at a time; the others carry on and the next crossing reports for them.
        if self.busy.swap(true, Ordering::Acquire) {
            return;
        }
        // Frees `busy` however the callbacks end; if one panics, also stops the other workers
        // (as a cancel would) while the panic unwinds to the caller.
        let _busy = Busy(self);
        if self.is_cancelled() {
            // Stopping already (cancelled, or another callback panicked): no more calls into
            // user code until the final event.
            return;
        }
        let done = self.done.load(Ordering::Acquire);
        self.next_due.store(done + self.step, Ordering::Relaxed);
        if self.cancel.is_some_and(|c| c()) {
            self.cancelled.store(true, Ordering::Release);
        }
        if let Some(p) = self.progress {
            let last = self.last_reported.load(Ordering::Relaxed);
            // At most one event per 1 % and never the 100 % event, which `finish` sends.
            if done < self.total && done >= last + 2 * self.step {
                self.last_reported.store(done, Ordering::Relaxed);
                p(BatchProgress { done, total: self.total });
            }
        }
    }

    /// Items counted so far.
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Acquire)
    }

    /// The single final event (`done == total` unless cancelled).
    pub(crate) fn finish(&self) {
        if let Some(p) = self.progress {
            let done = if self.is_cancelled() { self.done() } else { self.total };
            p(BatchProgress { done, total: self.total });
        }
    }
}

/// Holds a tracker's `busy` flag while the user's callbacks run.
struct Busy<'t, 'a>(&'t Tracker<'a>);

impl Drop for Busy<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A callback panicked: no worker should take another item; the batch's guards give
            // back what was never started while the panic propagates.
            self.0.cancelled.store(true, Ordering::Release);
        }
        self.0.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// A progress callback that panics once must not leave `busy` set (which would silence
    /// every later event and cancel poll), and must stop the batch's other workers. Catches
    /// clearing `busy` only on a normal return.
    #[test]
    fn panicking_callback_frees_busy_and_stops_workers() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let p: ProgressFn = Arc::new(move |_| {
            if c.fetch_add(1, Ordering::SeqCst) == 1 {
                panic!("callback fails");
            }
        });
        let t = Tracker::new(1000, Some(&p), None);
        t.start();
        let r = catch_unwind(AssertUnwindSafe(|| (0..1000).for_each(|_| t.advance(1))));
        assert!(r.is_err(), "the panic did not propagate");
        assert!(t.is_cancelled(), "a panicking callback did not stop the workers");
        assert!(!t.busy.load(Ordering::Acquire), "busy flag stuck after the panic");
        // A stopped batch reports nothing more until its final event, which still comes.
        let before = calls.load(Ordering::SeqCst);
        (0..100).for_each(|_| t.advance(1));
        assert_eq!(calls.load(Ordering::SeqCst), before, "events after the batch stopped");
        t.finish();
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "no final event");
    }
}
