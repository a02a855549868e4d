//! Per-thread search scratch: a generation-stamped visited set and reusable heaps, so a query
//! allocates nothing once its thread has warmed up.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A node with its distance to the query; ordered by distance ([`f32::total_cmp`]), then node
/// number.
///
/// Packed in one `u64` whose integer order is that order: the distance's bits, mapped so that
/// unsigned order is `total_cmp` order, above the node number. The heaps then move and compare
/// one word. As a pair of fields, a heap's pop stored the two halves separately and loaded them
/// back as one word at once, a store-forwarding stall on every pop (siftsmall `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cand(u64);

impl Cand {
    #[inline(always)]
    pub(crate) fn new(d: f32, n: u32) -> Self {
        let b = d.to_bits();
        // Negative: every bit flipped (larger magnitude sorts first); else the sign bit set.
        let key = b ^ ((((b as i32) >> 31) as u32) | 0x8000_0000);
        Self((u64::from(key) << 32) | u64::from(n))
    }

    /// The distance, bit for bit as given to [`new`](Self::new).
    #[inline(always)]
    pub(crate) fn d(self) -> f32 {
        let key = (self.0 >> 32) as u32;
        f32::from_bits(key ^ (!(((key as i32) >> 31) as u32) | 0x8000_0000))
    }

    #[inline(always)]
    pub(crate) fn n(self) -> u32 {
        self.0 as u32
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

    /// Floats spanning every class: both zeros, subnormals, normals of both signs, infinities.
    fn floats() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            1e-30,
            -1e-30,
            0.25,
            -0.25,
            1.0,
            -1.0,
            1.0 + f32::EPSILON,
            3.5e7,
            -3.5e7,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        let mut x = 0x1234_5678u32;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            if f.is_finite() {
                v.push(f);
            }
        }
        v
    }

    /// The packed order is the order of (distance by `total_cmp`, node number), and the
    /// distance comes back bit for bit.
    #[test]
    fn cand_order_is_distance_then_node_and_round_trips() {
        let fs = floats();
        let nodes = [0u32, 1, 7, u32::MAX - 1, u32::MAX];
        for &a in &fs {
            for &na in &nodes {
                let ca = Cand::new(a, na);
                assert_eq!(ca.d().to_bits(), a.to_bits(), "{a:e}");
                assert_eq!(ca.n(), na);
                for &b in &fs {
                    for &nb in &[0u32, 7, u32::MAX] {
                        let want = a.total_cmp(&b).then(na.cmp(&nb));
                        assert_eq!(ca.cmp(&Cand::new(b, nb)), want, "({a:e}, {na}) vs ({b:e}, {nb})");
                    }
                }
            }
        }
    }

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
