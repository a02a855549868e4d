//! Per-thread search scratch: a generation-stamped visited set and reusable heaps, so a query
//! allocates nothing once its thread has warmed up.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A node with its distance to the query; ordered by distance, then node number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub(crate) d: f32,
    pub(crate) n: u32,
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.n.cmp(&other.n))
    }
}

/// Visited marks: `stamp[n] == generation` means visited. Clearing is a generation bump; the
/// array is zeroed only when the 16-bit generation wraps, every 65 535 queries.
pub(crate) struct Visited {
    stamp: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn new() -> Self {
        Self { stamp: Vec::new(), generation: 0 }
    }

    /// Starts a new query over nodes `0..n`.
    pub(crate) fn reset(&mut self, n: usize) {
        if self.stamp.len() < n {
            // Grow with headroom so a growing index does not reallocate on every query.
            self.stamp.resize(n + n / 4 + 1024, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `n`; returns whether it was unvisited. Nodes beyond the reset size (allocated by a
    /// concurrent insert during this query) grow the array.
    #[inline(always)]
    pub(crate) fn insert(&mut self, n: u32) -> bool {
        let i = n as usize;
        if i >= self.stamp.len() {
            self.stamp.resize(i + i / 4 + 1024, 0);
        }
        let s = &mut self.stamp[i];
        // No branch: the walk's list read counts the result instead of branching on it.
        let fresh = *s != self.generation;
        *s = self.generation;
        fresh
    }
}

pub(crate) struct Scratch {
    pub(crate) visited: Visited,
    pub(crate) cands: BinaryHeap<Reverse<Cand>>,
    pub(crate) results: BinaryHeap<Cand>,
    pub(crate) ids: Vec<u32>,
    pub(crate) sorted: Vec<Cand>,
    pub(crate) decoded: Vec<f32>,
    pub(crate) decoded2: Vec<f32>,
    pub(crate) seeds: Vec<Cand>,
    pub(crate) bytes: Vec<u8>,
    /// The distances to `ids`, in order (`Index::dists_of`).
    pub(crate) id_dists: Vec<f32>,
    /// Distance evaluations since the counter was last reset.
    pub(crate) dists: u64,
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Self {
            visited: Visited::new(),
            cands: BinaryHeap::new(),
            results: BinaryHeap::new(),
            ids: Vec::new(),
            sorted: Vec::new(),
            decoded: Vec::new(),
            decoded2: Vec::new(),
            seeds: Vec::new(),
            bytes: Vec::new(),
            id_dists: Vec::new(),
            dists: 0,
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's scratch. A nested call on the same thread (a filter predicate
/// that searches again) gets a fresh scratch instead of panicking on the borrow.
///
/// The thread is pinned in the epoch for the whole call: every graph walk and every vector read
/// runs inside one, so no slot it can reach is reused meanwhile (`store.rs`, "Slot reuse").
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let _pin = crate::epoch::pin();
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_marks_once_per_query_and_grows_past_the_reset_size() {
        let mut v = Visited::new();
        for query in 0..3 {
            v.reset(10);
            for n in [3u32, 9, 0, 500] {
                assert!(v.insert(n), "query {query}: {n} is new");
                assert!(!v.insert(n), "query {query}: {n} was marked");
            }
            assert!(v.insert(4), "query {query}: an unmarked node");
        }
        // The generation wraps: marks of the query 65 536 queries ago must not survive.
        v.reset(10);
        assert!(v.insert(5));
        for _ in 0..u16::MAX {
            v.reset(10);
        }
        assert!(v.insert(5), "a mark survived the generation wrapping round");
    }
}
