//! Reachability repair: every live vector reachable from the entry point on level 0.
//!
//! Local mechanisms keep the graph connected as it changes: pruning never drops a node's last
//! in-link (`Index::add_link`), a new node that every neighbour pruned away gets one
//! (`force_in_link`), and a delete re-homes the neighbours it would orphan (`reuse.rs`). In
//! degenerate data (many exact duplicates, tiny `M`) a node can still end up cut off when every
//! list it could join depends on its own links. The pass here finds such nodes by a walk from the
//! entry point and links each from its nearest reachable node with a free slot (or, when every
//! reachable list is full, in place of an entry that has other in-links, as `force_in_link`).
//!
//! The pass costs `O(nodes · M0)` list reads, plus a graph search per cut-off node (and a scan
//! of the reachable nodes when the search finds none with room), so no single mutation runs it
//! unconditionally: it runs when asked ([`Index::repair`]), in [`Index::compact`], after
//! loading or recovering an index, and every `max(256, live / 8)` removals (`reuse.rs`).

use crate::index::Index;
use crate::scratch::{with_scratch, Cand};

/// Passes over the graph before giving up (each pass fixes every node it finds).
const MAX_PASSES: usize = 4;

impl Index {
    /// Re-links live vectors that a walk from the entry point on level 0 cannot reach, and
    /// returns how many links it added. Walks the whole graph: call it after an unusual
    /// workload (see `check_integrity`); loading and `compact` call it, and so does every
    /// `max(256, live / 8)`-th delete or update, which on data of very low intrinsic dimension
    /// can cut groups of vectors off in between. Safe to call concurrently with anything.
    pub fn repair(&self) -> usize {
        let _g = self.repair_lock.lock();
        let _pin = crate::epoch::pin();
        self.reset_unlinked();
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

    fn repair_pass(&self) -> usize {
        // Under inner product, vectors inside the convex hull are legitimately unreachable
        // (see `IntegrityStats::unreachable`); re-linking them all would cost O(n) each.
        if self.cfg.metric == crate::Metric::InnerProduct {
            return 0;
        }
        let Some((ep, _)) = self.entry_point() else { return 0 };
        let n = self.store.allocated() as usize;
        let mut seen = vec![false; n];
        self.mark_reachable(ep, &mut seen);
        let mut added = 0;
        for u in 0..n as u32 {
            if seen[u as usize] || !self.store.is_live(u) {
                continue;
            }
            let linked = match self.nearest_reachable_with_room(u, &seen) {
                Some(r) => self.link_if_room(r, u),
                // Every reachable list is full (small graphs, many duplicates): replace an entry
                // that has other in-links in the nearest reachable list that has one.
                None => self.force_in_link(u, &self.reachable_by_distance(u, &seen)),
            };
            if linked {
                added += 1;
                self.mark_reachable(u, &mut seen);
            }
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

    fn has_room(&self, x: u32) -> bool {
        self.store.link_count(x, 0) < self.store.cap(0)
    }

    /// The reachable node nearest to `u` whose level-0 list has a free slot (live nodes
    /// preferred): first among a graph search's results, else by a scan of the reachable nodes.
    /// Linking from it adds a path without removing any, so the reachable set only grows.
    fn nearest_reachable_with_room(&self, u: u32, seen: &[bool]) -> Option<u32> {
        let mut q = Vec::new();
        self.decode_into(u, &mut q);
        let q = self.probe(&q);
        let ok = |x: u32| x != u && seen.get(x as usize).copied().unwrap_or(false) && self.store.is_ready(x);
        let ef = self.cfg.ef_construction;
        let from_search = with_scratch(|s| {
            let (ep, top) = self.entry_point()?;
            let cur = self.descend(&q, ep, top, 1, s);
            self.layer_search(&q, &[cur], 0, ef, s, ok);
            let mut found: Vec<Cand> = s.results.drain().collect();
            found.sort_unstable();
            found.iter().find(|c| self.store.is_live(c.n()) && self.has_room(c.n())).map(|c| c.n())
        });
        if from_search.is_some() {
            return from_search;
        }
        let n = self.store.allocated();
        let best = |live_only: bool| {
            (0..n)
                .filter(|&x| ok(x) && self.has_room(x) && (!live_only || self.store.is_live(x)))
                .map(|x| Cand::new(self.dist(&q, x), x))
                .min()
                .map(|c| c.n())
        };
        best(true).or_else(|| best(false))
    }

    /// The reachable live nodes other than `u`, nearest to `u` first (a scan).
    fn reachable_by_distance(&self, u: u32, seen: &[bool]) -> Vec<u32> {
        let mut q = Vec::new();
        self.decode_into(u, &mut q);
        let q = self.probe(&q);
        let mut all: Vec<Cand> = (0..self.store.allocated())
            .filter(|&x| x != u && seen.get(x as usize).copied().unwrap_or(false) && self.store.is_live(x))
            .map(|x| Cand::new(self.dist(&q, x), x))
            .collect();
        all.sort_unstable();
        all.into_iter().map(|c| c.n()).collect()
    }

    /// Appends `u` to `r`'s level-0 list if it has room and does not hold `u` yet.
    fn link_if_room(&self, r: u32, u: u32) -> bool {
        let _g = self.store.lock(r);
        let mut list = Vec::new();
        self.store.read_links(r, 0, &mut list);
        if list.contains(&u) {
            // Appeared since the walk (a concurrent insert): reachable already.
            return true;
        }
        self.store.try_push_link(r, 0, u)
    }
}
