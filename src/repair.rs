//! Reachability repair: every live vector stays reachable from the entry point on level 0.
//!
//! Pruning keeps a node's last in-link (the orphan guard in `index.rs`), but in degenerate
//! data (many duplicates, small `M`, heavy update churn) a group of nodes can still end up
//! linked only among themselves. A breadth-first walk from the entry point finds such nodes;
//! each gets an in-link from its nearest reachable node. The walk costs `O(nodes · M0)`, so it
//! runs once every `max(1, len / 32)` mutations (amortised `O(M0)` per insert, update or
//! delete) and at the end of every batch operation.

use crate::index::Index;
use crate::scratch::{with_scratch, Cand};
use std::sync::atomic::Ordering;

/// Passes over the graph before giving up (each pass fixes every node it finds).
const MAX_PASSES: usize = 4;

impl Index {
    /// Re-links live vectors that a walk from the entry point on level 0 cannot reach, and
    /// returns how many links it added. Runs automatically; call it directly after an unusual
    /// workload if you want the guarantee at once. Safe to call concurrently with anything.
    pub fn repair(&self) -> usize {
        let _g = self.repair_lock.lock();
        self.repair_locked()
    }

    /// The repair itself; the caller holds `repair_lock`.
    fn repair_locked(&self) -> usize {
        self.mutations.store(0, Ordering::Relaxed);
        let mut fixed = 0;
        for _ in 0..MAX_PASSES {
            let added = self.repair_pass();
            fixed += added;
            if added == 0 {
                break;
            }
        }
        fixed
    }

    /// Counts `n` mutations and repairs when enough have accumulated since the last repair.
    pub(crate) fn note_mutations(&self, n: usize) {
        let total = self.mutations.fetch_add(n, Ordering::Relaxed) + n;
        if total >= (self.len() / 32).max(1) {
            // A caller that finds a repair already running skips: that one covers it.
            if let Some(_g) = self.repair_lock.try_lock() {
                self.repair_locked();
            }
        }
    }

    fn repair_pass(&self) -> usize {
        let Some((ep, _)) = self.entry_point() else { return 0 };
        let n = self.store.allocated() as usize;
        let mut seen = vec![false; n];
        self.mark_reachable(ep, &mut seen);
        let mut added = 0;
        for u in 0..n as u32 {
            if seen[u as usize] || !self.store.is_live(u) {
                continue;
            }
            let Some(r) = self.nearest_reachable(u, &seen) else { continue };
            self.force_link(r, u);
            added += 1;
            self.mark_reachable(u, &mut seen);
        }
        added
    }

    fn mark_reachable(&self, from: u32, seen: &mut [bool]) {
        let mut stack = vec![from];
        let mut links = Vec::new();
        seen[from as usize] = true;
        while let Some(x) = stack.pop() {
            if !self.store.is_ready(x) && x != from {
                continue;
            }
            self.store.read_links(x, 0, &mut links);
            for &t in &links {
                if let Some(s) = seen.get_mut(t as usize) {
                    if !*s {
                        *s = true;
                        stack.push(t);
                    }
                }
            }
        }
    }

    /// The reachable node nearest to `u` (live if any is found), by a graph search.
    fn nearest_reachable(&self, u: u32, seen: &[bool]) -> Option<u32> {
        let mut buf = Vec::new();
        self.decode_into(u, &mut buf);
        let ok = |x: u32, live_only: bool| {
            x != u && seen.get(x as usize).copied().unwrap_or(false) && (!live_only || self.store.is_live(x))
        };
        let ef = self.cfg.ef_construction;
        with_scratch(|s| {
            for live_only in [true, false] {
                let (ep, top) = self.entry_point()?;
                let mut cur = Cand { d: self.dist(&buf, ep), n: ep };
                for l in (1..=top).rev() {
                    cur = self.greedy_pub(&buf, cur, l, s);
                }
                self.search_from(&buf, cur, ef, s, |x| ok(x, live_only));
                if let Some(best) = s.results.drain().min() {
                    return Some(best.n);
                }
            }
            None
        })
    }

    /// Puts `u` in `r`'s level-0 list: appended if there is room, else replacing the entry with
    /// the most other in-links.
    fn force_link(&self, r: u32, u: u32) {
        let _g = self.store.lock(r);
        let mut list = Vec::new();
        self.store.read_links(r, 0, &mut list);
        // The link may have appeared since the walk read this list (concurrent inserts).
        if list.contains(&u) {
            return;
        }
        if self.store.try_push_link(r, 0, u) {
            self.store.inc_indeg(u);
            return;
        }
        if let Some(i) = (0..list.len()).max_by_key(|&i| self.store.indeg(list[i])) {
            self.store.dec_indeg(list[i]);
            list[i] = u;
            self.store.inc_indeg(u);
            self.store.write_links(r, 0, &list);
        }
    }
}
