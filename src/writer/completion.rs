//! Completion handles: one per submitted item, resolved once by the background thread.

use super::WriteError;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The outcome slot shared by a [`Completion`] and the writer's [`Ticket`].
#[derive(Debug, Default)]
struct Slot {
    outcome: Mutex<Option<Result<(), WriteError>>>,
    done: Condvar,
}

/// A handle on one submitted item that resolves when the item is written or finally fails.
///
/// "Written" means the sink's [`write_batch`](super::BatchSink::write_batch) returned with the
/// item not among its failures: for a durable sink, the item survives a crash from then on.
/// Dropping the handle does not cancel the write.
#[derive(Debug, Clone)]
pub struct Completion {
    id: u64,
    slot: Arc<Slot>,
}

impl Completion {
    /// The id the item was submitted with.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the item is resolved.
    pub fn is_done(&self) -> bool {
        self.slot.outcome.lock().is_some()
    }

    /// The outcome if the item is resolved, without waiting.
    pub fn try_result(&self) -> Option<Result<(), WriteError>> {
        self.slot.outcome.lock().clone()
    }

    /// Waits until the item is written (`Ok`) or finally failed.
    pub fn wait(&self) -> Result<(), WriteError> {
        let mut g = self.slot.outcome.lock();
        loop {
            if let Some(r) = g.as_ref() {
                return r.clone();
            }
            self.slot.done.wait(&mut g);
        }
    }

    /// Like [`Completion::wait`], giving up after `timeout`: `None` if the item is still
    /// pending then (it may still be written later).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<(), WriteError>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut g = self.slot.outcome.lock();
        loop {
            if let Some(r) = g.as_ref() {
                return Some(r.clone());
            }
            match deadline {
                Some(d) => {
                    if self.slot.done.wait_until(&mut g, d).timed_out() {
                        return g.as_ref().cloned();
                    }
                }
                None => self.slot.done.wait(&mut g),
            }
        }
    }
}

/// The writer's side of a [`Completion`]. Resolving it twice keeps the first outcome; dropping
/// it unresolved (only if the background thread dies) resolves it with [`WriteError::Stopped`],
/// so no waiter hangs.
#[derive(Debug)]
pub(crate) struct Ticket {
    slot: Arc<Slot>,
    pub(crate) submitted: Instant,
}

impl Ticket {
    /// A new ticket and the handle that observes it.
    pub(crate) fn new(id: u64) -> (Ticket, Completion) {
        let slot = Arc::new(Slot::default());
        (Ticket { slot: slot.clone(), submitted: Instant::now() }, Completion { id, slot })
    }

    /// Resolves the item.
    pub(crate) fn complete(self, outcome: Result<(), WriteError>) {
        self.resolve(outcome);
    }

    fn resolve(&self, outcome: Result<(), WriteError>) {
        let mut g = self.slot.outcome.lock();
        if g.is_none() {
            *g = Some(outcome);
            drop(g);
            self.slot.done.notify_all();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.resolve(Err(WriteError::Stopped));
    }
}
