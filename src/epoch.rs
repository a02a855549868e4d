//! Grace periods for slot reuse: a minimal epoch scheme.
//!
//! Every thread that reads node data pins itself: it publishes the global epoch it saw in its
//! own slot, and clears the slot when it unpins (pins nest; only the outermost counts). A slot
//! retired at epoch `e` (see [`retire_tag`]) may be rewritten once no thread is pinned at an
//! epoch `<= e`: a thread pinned later read the global epoch after the retirement advanced it,
//! so (all of this is `SeqCst`) it also sees the retired node's `FREE` flag and zero in-degree,
//! and can no longer reach it (`store.rs`, "Slot reuse").
//!
//! Unlike a collector that runs deferred closures when some thread happens to advance the
//! epoch, the check here is made by the thread that wants a slot ([`oldest_pinned`]), so reuse
//! never waits for unrelated threads to collect garbage.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The global epoch; starts at 1 because 0 in a slot means "not pinned".
static GLOBAL: AtomicU64 = AtomicU64::new(1);
/// The slot of every live thread that ever pinned.
static REGISTRY: Mutex<Vec<Arc<AtomicU64>>> = Mutex::new(Vec::new());
/// Pins taken by threads whose thread-local state is gone (pins from a thread-local
/// destructor): while any exists, nothing is reclaimed.
static ANONYMOUS: AtomicUsize = AtomicUsize::new(0);

struct Local {
    slot: Arc<AtomicU64>,
    depth: Cell<u32>,
}

impl Local {
    fn new() -> Self {
        let slot = Arc::new(AtomicU64::new(0));
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&slot));
        Self { slot, depth: Cell::new(0) }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.slot.store(0, Ordering::SeqCst);
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
}

/// This thread's pin; unpins when dropped. Not `Send`: it describes the thread that took it.
pub(crate) struct Pin {
    anonymous: bool,
    _thread_bound: PhantomData<*const ()>,
}

/// Pins the calling thread (nested pins are cheap and change nothing).
#[inline]
pub(crate) fn pin() -> Pin {
    let registered = LOCAL.try_with(|l| {
        let d = l.depth.get();
        if d == 0 {
            l.slot.store(GLOBAL.load(Ordering::SeqCst), Ordering::SeqCst);
        }
        l.depth.set(d + 1);
    });
    if registered.is_err() {
        ANONYMOUS.fetch_add(1, Ordering::SeqCst);
    }
    Pin { anonymous: registered.is_err(), _thread_bound: PhantomData }
}

impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        if self.anonymous {
            ANONYMOUS.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let _ = LOCAL.try_with(|l| {
            let d = l.depth.get() - 1;
            l.depth.set(d);
            if d == 0 {
                l.slot.store(0, Ordering::Release);
            }
        });
    }
}

/// Whether the calling thread holds a pin (for debug assertions).
pub(crate) fn is_pinned() -> bool {
    LOCAL.try_with(|l| l.depth.get() > 0).unwrap_or(true)
}

/// Advances the epoch and returns the tag of something retired just before this call: it may
/// be reused once [`oldest_pinned`] is greater than the tag.
pub(crate) fn retire_tag() -> u64 {
    GLOBAL.fetch_add(1, Ordering::SeqCst)
}

/// The oldest epoch any thread is pinned at (`u64::MAX` when none is pinned; 0 while a pin of
/// unknown epoch exists).
pub(crate) fn oldest_pinned() -> u64 {
    if ANONYMOUS.load(Ordering::SeqCst) > 0 {
        return 0;
    }
    let r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.iter().map(|s| s.load(Ordering::SeqCst)).filter(|&e| e != 0).min().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_free_once_every_older_pin_is_gone() {
        let before = pin();
        let tag = retire_tag();
        assert!(oldest_pinned() <= tag, "a pin older than the retirement must hold it");
        let other = std::thread::spawn(move || {
            let _late = pin();
            // This thread pinned after the retirement: it does not hold it.
            GLOBAL.load(Ordering::SeqCst) > tag
        });
        assert!(other.join().unwrap());
        drop(before);
        // Other tests in this binary may hold pins of their own, but none older than `tag`
        // can remain once ours is gone, unless taken before it: re-check from a clean thread.
        assert!(!is_pinned());
        let nested = pin();
        let inner = pin();
        drop(inner);
        assert!(is_pinned(), "an inner unpin must not unpin the outer pin");
        drop(nested);
        assert!(!is_pinned());
    }
}
