//! Deleting for real: unlinking a tombstone from its in-neighbours, retiring its slot, and
//! handing the slot to a later insert.
//!
//! A delete first hides the node (the id map forgets it, the node is flagged `DELETED`), then,
//! on the deleting thread and at a cost bounded by the degree bound:
//!
//! 1. **Unlink.** The nodes that may link to `d` are found without computing a distance: `d`'s
//!    own neighbours (links are mostly two-way), visited until `d`'s exact in-degree counters
//!    reach zero. In each list that names `d`, `d` is replaced by its neighbour nearest to the
//!    list's owner that the list does not hold yet (the repair FreshDiskANN and hnswlib's
//!    replace-deleted do), so paths through `d` survive. Cost: at most `M0 + 1` list reads per
//!    level and `REPLACE_CANDIDATES` distances per list that named `d`.
//! 2. **Retire** when the exact in-degree counters show that no list names `d` any more: `d`'s
//!    own lists are cleared (a neighbour left without in-links gets one from a live node), `d` is
//!    flagged `FREE`, and its number goes to the free list after an epoch grace period, once
//!    every reader that might still hold it has finished.
//! 3. Otherwise `d` waits in a **pending** queue. Each later mutation sweeps the lists of the
//!    next `SWEEP_PER_MUTATION` nodes (round robin over the node space) for links to any
//!    tombstone and replaces them, then retires the pending nodes whose counters reached zero:
//!    every tombstone is unlinked within one sweep of the node space. [`Index::compact`]
//!    settles all of them with one pass over the graph.
//! 4. Every `max(REPAIR_AFTER_MIN, live / REPAIR_SHARE)` removals the removing thread runs the
//!    whole-graph **reachability repair** (`repair.rs`): step 1 keeps in-degrees above zero,
//!    which does not prove reachability (see `note_unlinked`).
//!
//! An insert takes a free slot before it allocates a new one. See `store.rs` ("Slot reuse") for
//! why a reader can never see a slot being rewritten.

use crate::epoch;
use crate::index::Index;
use crate::scratch::{with_scratch, Cand, Scratch};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

/// Pending tombstones whose in-degree counters are checked per mutation (retired when zero).
const PENDING_PER_MUTATION: usize = 4;
/// Nodes whose lists the sweep checks per mutation while tombstones are pending: every pending
/// tombstone is unlinked within `allocated / SWEEP_PER_MUTATION` mutations, at a bounded cost
/// each (`SWEEP_PER_MUTATION · M0` flag loads, and a replacement only where a list names a
/// tombstone). No distance is computed unless a tombstone is found.
const SWEEP_PER_MUTATION: u32 = 128;

/// Candidates scored when a list's link to a tombstone `d` is replaced: the first ones of `d`'s
/// own list, which holds its nearest neighbours first, so they are also near the list's owner
/// (which linked to `d`). Scoring all `M0` of them costs `M0` distances per in-link for a
/// measured recall gain below the noise of the churn benchmark.
const REPLACE_CANDIDATES: usize = 8;

/// Deletes (and updates, which delete the old version) between two automatic reachability
/// repairs: at least this many, and at least `live / REPAIR_SHARE` (see `note_unlinked`).
const REPAIR_AFTER_MIN: usize = 256;
/// The share of the live vectors whose removal triggers an automatic repair: the walk reads
/// every level-0 list once, so it costs about `REPAIR_SHARE` list reads per removal.
const REPAIR_SHARE: usize = 8;

/// Slots waiting to be reused.
#[derive(Default)]
pub(crate) struct Slots {
    /// Retired slots whose grace period has passed.
    free: Mutex<Vec<u32>>,
    /// Retired slots in their grace period, with their retirement tag (nearly in tag order).
    limbo: Mutex<VecDeque<(u32, u64)>>,
    /// Tombstones that some list may still name.
    pending: Mutex<VecDeque<u32>>,
    /// Next node the incremental sweep looks at.
    sweep: std::sync::atomic::AtomicU32,
    /// Nodes unlinked since the last reachability repair.
    unlinked: std::sync::atomic::AtomicUsize,
}

impl Slots {
    /// Slots ready for reuse.
    pub(crate) fn free_len(&self) -> usize {
        self.free.lock().len()
    }

    /// Queues a tombstone to be unlinked by later mutations or `compact`.
    pub(crate) fn push_pending(&self, n: u32) {
        self.pending.lock().push_back(n);
    }

    /// Tombstones not yet retired.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }
}

/// How the index's node slots are used (see [`Index::slot_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotStats {
    /// Slots ever allocated: what the node arrays are sized for.
    pub allocated: usize,
    /// Live vectors.
    pub live: usize,
    /// Retired slots ready for reuse.
    pub free: usize,
    /// Deleted vectors still linked from some list, waiting to be unlinked (by the sweep that
    /// later deletes and updates advance, or all at once by [`Index::compact`]).
    pub pending: usize,
    /// Retired slots waiting for readers that may still hold them to finish.
    pub retiring: usize,
}

impl Index {
    /// How node slots are used right now: `allocated / live` is the space overhead of churn.
    pub fn slot_stats(&self) -> SlotStats {
        SlotStats {
            allocated: self.store.allocated() as usize,
            live: self.len(),
            free: self.slots.free_len(),
            pending: self.slots.pending_len(),
            retiring: self.slots.limbo.lock().len(),
        }
    }

    /// Returns a slot that was handed out but never published (its insert failed before
    /// linking), so no reader knows it and it needs no grace period.
    pub(crate) fn give_back_unpublished(&self, n: u32) {
        self.store.mark_unpublished_free(n);
        self.slots.free.lock().push(n);
    }

    /// A retired slot whose grace period has passed, cleared for a new node, if any.
    pub(crate) fn pop_free_slot(&self) -> Option<u32> {
        if self.slots.free_len() == 0 && !self.slots.limbo.lock().is_empty() {
            let oldest = epoch::oldest_pinned();
            let mut limbo = self.slots.limbo.lock();
            let mut free = self.slots.free.lock();
            while let Some(&(n, tag)) = limbo.front() {
                if tag >= oldest {
                    break;
                }
                free.push(n);
                limbo.pop_front();
            }
        }
        loop {
            let n = self.slots.free.lock().pop()?;
            if self.store.is_reusable(n) && self.store.indeg(n) == 0 && self.store.indeg_upper(n) == 0 {
                // Lists may have regained out-links from inserts that chose `n` as a neighbour
                // before it was deleted; uncount them so the targets' counters stay exact.
                let _g = self.store.lock(n);
                for l in 0..=self.store.level(n) {
                    self.store.set_links(n, l, &[]);
                }
                return Some(n);
            }
            // Linked again by an insert that chose it before it was deleted: a tombstone again,
            // to be unlinked later.
            self.store.unmark_free(n);
            self.slots.pending.lock().push_back(n);
        }
    }

    /// Unlinks the freshly deleted node `d` and retires it if nothing links to it any more;
    /// otherwise queues it. Also retries one pending tombstone.
    pub(crate) fn unlink_deleted(&self, d: u32) {
        with_scratch(|s| {
            self.unlink_local(d, s);
            if !self.try_retire(d) {
                self.queue_if_tombstone(d);
            }
        });
        if self.is_empty() && self.slots.pending_len() > 0 {
            // Nothing live is left to route through: the tombstones only name each other, and
            // no search could find them again. Settle them all now; the pass is over an index
            // with nothing live in it.
            self.compact();
        } else {
            self.retry_pending(PENDING_PER_MUTATION);
        }
        self.note_unlinked();
    }

    /// Counts one unlinked node and runs the reachability repair once enough have been.
    ///
    /// Unlinking re-homes a deleted node's neighbours by in-degree, and an in-degree above zero
    /// does not prove reachability: a few nodes linking only to each other keep theirs. On
    /// ordinary embeddings this was never seen (churn benchmarks report no unreachable node),
    /// but on data of very low intrinsic dimension (points along a line, where each node keeps
    /// two or three links), or when many vectors move far away together, runs of deletes can
    /// cut groups off. Proving reachability per delete costs more than the delete (measured:
    /// 14x slower deletes, and the extra links lowered recall), so the whole-graph pass runs
    /// every `max(REPAIR_AFTER_MIN, live / REPAIR_SHARE)` removals instead: amortised, about
    /// `REPAIR_SHARE` list reads per removal; the removal that crosses the mark pays the walk.
    fn note_unlinked(&self) {
        let done = self.slots.unlinked.fetch_add(1, Ordering::Relaxed) + 1;
        let due = REPAIR_AFTER_MIN.max(self.len() / REPAIR_SHARE);
        if done >= due
            && self.slots.unlinked.compare_exchange(done, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.repair();
        }
    }

    /// The removal count restarts: the graph was just made whole (`repair`).
    pub(crate) fn reset_unlinked(&self) {
        self.slots.unlinked.store(0, Ordering::Relaxed);
    }

    /// Sweeps the next few nodes' lists for links to any tombstone, then retires up to `count`
    /// pending tombstones that no list names any more (their in-degree counters are zero).
    ///
    /// No graph search: the sweep reaches every in-neighbour of every tombstone within one pass
    /// over the node space, wherever it lies, at a cost of a flag load per list entry.
    pub(crate) fn retry_pending(&self, count: usize) {
        if self.slots.pending_len() == 0 {
            return;
        }
        self.sweep_step();
        for _ in 0..count {
            let Some(d) = self.slots.pending.lock().pop_front() else { return };
            if !self.is_tombstone(d) {
                // Retired meanwhile by `compact`: not ours to touch any more.
                continue;
            }
            if !self.try_retire(d) {
                self.queue_if_tombstone(d);
            }
        }
    }

    /// Replaces links to tombstones in the lists of the next `SWEEP_PER_MUTATION` nodes (round
    /// robin over the node space), so every pending tombstone loses its last in-link within one
    /// sweep of the graph however its in-neighbours are placed.
    fn sweep_step(&self) {
        let n = self.store.allocated();
        if n == 0 {
            return;
        }
        let start = self.slots.sweep.fetch_add(SWEEP_PER_MUTATION, Ordering::Relaxed) % n;
        with_scratch(|s| {
            let mut list = Vec::new();
            let mut nd = Vec::new();
            for i in 0..SWEEP_PER_MUTATION.min(n) {
                let p = (start + i) % n;
                if self.store.is_free(p) {
                    continue;
                }
                for l in 0..=self.store.level(p) {
                    self.store.read_links(p, l, &mut list);
                    for &t in &list {
                        if self.is_tombstone(t) {
                            self.store.read_links(t, l, &mut nd);
                            self.replace_link(p, l, t, &nd, s);
                        }
                    }
                }
            }
        });
    }

    /// Ready and deleted: a tombstone some list may name (not retired, not live).
    fn is_tombstone(&self, d: u32) -> bool {
        self.store.is_ready(d) && self.store.is_deleted(d)
    }

    /// Queues `d` for a later retry unless another thread retired it meanwhile.
    fn queue_if_tombstone(&self, d: u32) {
        if self.is_tombstone(d) {
            self.slots.pending.lock().push_back(d);
        }
    }

    /// Replaces `d` in the lists of its neighbours that name it.
    fn unlink_local(&self, d: u32, s: &mut Scratch) {
        self.move_entry_off(d);
        let mut nd = Vec::new();
        let mut named = Vec::new();
        for l in (0..=self.store.level(d)).rev() {
            // Only `d`'s own neighbours are visited (links are mostly two-way): reading their
            // neighbours too (the second ring, ~M0² lists at random places in memory) doubled
            // the cost of a delete and found few more in-links, which the sweep finds anyway.
            // The exact in-degree counters say when every list naming `d` has been replaced.
            let linked = |store: &crate::store::NodeStore| {
                if l == 0 {
                    store.indeg(d) != 0
                } else {
                    store.indeg_upper(d) != 0
                }
            };
            self.store.read_links(d, l, &mut nd);
            named.clear();
            for &p in &nd {
                if !linked(&self.store) {
                    break;
                }
                if p != d && self.replace_link(p, l, d, &nd, s) {
                    named.push(p);
                }
            }
            if l == 0 {
                self.keep_children_reachable(&named, &nd, s);
            }
        }
    }

    /// After `d` left the lists of `parents` (its level-0 in-neighbours), gives each of its
    /// level-0 neighbours `children` an in-link from a parent if none links to it yet (the
    /// edge union FreshDiskANN applies on delete, restricted to what reachability needs): paths
    /// that ran through `d` keep running. At most `|children| · |parents|` distances.
    fn keep_children_reachable(&self, parents: &[u32], children: &[u32], s: &mut Scratch) {
        if parents.is_empty() {
            return;
        }
        // What the parents link to now, read once: a child in it is covered.
        let mut covered = Vec::new();
        let mut list = Vec::new();
        for &p in parents {
            self.store.read_links(p, 0, &mut list);
            covered.extend_from_slice(&list);
        }
        covered.sort_unstable();
        let mut order: Vec<Cand> = Vec::with_capacity(parents.len());
        for &x in children {
            if !self.store.is_linkable(x) || covered.binary_search(&x).is_ok() {
                continue;
            }
            let mut buf = std::mem::take(&mut s.decoded2);
            let xq = self.node_query(x, &mut buf);
            order.clear();
            order.extend(parents.iter().filter(|&&p| p != x).map(|&p| Cand::new(self.dist(&xq, p), p)));
            s.decoded2 = buf;
            order.sort_unstable();
            let nearest: Vec<u32> = order.iter().map(|c| c.n()).collect();
            self.force_in_link(x, &nearest);
        }
    }

    /// In `p`'s list on `level`, replaces `d` by the node of `nd` nearest to `p` that the list
    /// does not hold (or just drops `d` when there is none).
    /// Returns whether the list named `d`.
    fn replace_link(&self, p: u32, level: usize, d: u32, nd: &[u32], s: &mut Scratch) -> bool {
        if self.store.is_free(p) {
            return false;
        }
        let _g = self.store.lock(p);
        self.store.read_links(p, level, &mut s.ids);
        let Some(pos) = s.ids.iter().position(|&x| x == d) else { return false };
        let mut buf = std::mem::take(&mut s.decoded2);
        let pq = self.node_query(p, &mut buf);
        let best = nd
            .iter()
            .copied()
            .filter(|&r| r != p && r != d && self.store.is_live(r) && !s.ids.contains(&r))
            .take(REPLACE_CANDIDATES)
            .map(|r| Cand::new(self.dist(&pq, r), r))
            .min();
        s.decoded2 = buf;
        match best {
            Some(c) => s.ids[pos] = c.n(),
            None => {
                s.ids.remove(pos);
            }
        }
        self.store.set_links(p, level, &s.ids);
        true
    }

    /// Retires `d` if no list names it: clears its own lists (re-homing neighbours that would
    /// be left without an in-link), flags it `FREE` and frees its slot after a grace period.
    fn try_retire(&self, d: u32) -> bool {
        if self.store.indeg(d) != 0 || self.store.indeg_upper(d) != 0 {
            return false;
        }
        {
            // The entry check and the claim under one lock: another thread moving the entry
            // point (off a node it deletes) picks only nodes live under this lock, so it can
            // never land on `d` between the check and the claim.
            let _g = self.entry_lock.lock();
            if !self.move_entry_off_locked(d) {
                return false;
            }
            // Claim the retirement: `compact` and a pending retry may race for one tombstone.
            if !self.store.try_mark_free(d) {
                return false;
            }
            // An insert that chose `d` before it was deleted may have linked it between the
            // check above and the claim, without seeing `FREE` (see `NodeStore::inc_indeg`):
            // then `d` is still linked, and goes back to being a tombstone.
            if self.store.indeg_total_seqcst(d) != 0 {
                self.store.unmark_free(d);
                return false;
            }
        }
        let mut out = Vec::new();
        let mut orphans = Vec::new();
        for l in (0..=self.store.level(d)).rev() {
            let _g = self.store.lock(d);
            self.store.read_links(d, l, &mut out);
            self.store.set_links(d, l, &[]);
            if l == 0 {
                orphans.extend(
                    out.iter().copied().filter(|&x| self.store.indeg(x) == 0 && !self.store.is_free(x)),
                );
            }
        }
        let mut around = Vec::new();
        for x in orphans {
            self.store.read_links(x, 0, &mut around);
            around.retain(|&y| self.store.is_linkable(y) || self.store.is_live(y));
            // When no live neighbour can take it, `repair` (on request, after recovery and in
            // `compact`) links it; `check_integrity` reports it until then.
            self.force_in_link(x, &around);
        }
        // Tagged after `FREE` and the cleared lists are visible: a reader that pins later
        // cannot reach `d`, one pinned earlier may still hold it (`epoch.rs`).
        let tag = epoch::retire_tag();
        self.slots.limbo.lock().push_back((d, tag));
        true
    }

    /// Moves the entry point off `d` if it is there; `false` if no other node could take it.
    fn move_entry_off(&self, d: u32) -> bool {
        let Some((ep, _)) = self.entry_point() else { return true };
        if ep != d {
            return true;
        }
        let _g = self.entry_lock.lock();
        self.move_entry_off_locked(d)
    }

    /// [`move_entry_off`](Self::move_entry_off); the caller holds `entry_lock`, under which the
    /// entry only moves to a node that is live at that moment.
    fn move_entry_off_locked(&self, d: u32) -> bool {
        match self.entry_point() {
            Some((ep, _)) if ep == d => {}
            _ => return true,
        }
        // The live neighbour of `d` on the highest level it has one; otherwise any live node.
        let mut nd = Vec::new();
        for l in (0..=self.store.level(d)).rev() {
            self.store.read_links(d, l, &mut nd);
            if let Some(x) =
                nd.iter().copied().filter(|&x| self.store.is_live(x)).max_by_key(|&x| self.store.level(x))
            {
                self.set_entry(x, self.store.level(x));
                return true;
            }
        }
        match self.ids.any_node() {
            Some(x) if self.store.is_live(x) => {
                self.set_entry(x, self.store.level(x));
                true
            }
            _ if self.is_empty() => {
                self.clear_entry();
                true
            }
            _ => false,
        }
    }

    /// Removes every tombstone from the graph at once and makes all their slots reusable: one
    /// pass over every neighbour list (`O(nodes · M0)` list reads, plus at most `M0` distances
    /// per list that names a tombstone), then the reachability repair. Returns how many
    /// tombstones were retired.
    ///
    /// Deletes already unlink and retire their node locally; `compact` settles the few that
    /// local unlinking could not (see the crate's architecture notes). Safe to call
    /// concurrently with anything; tombstones created meanwhile may be left for later.
    pub fn compact(&self) -> usize {
        // Every tombstone is visited below, queued or not.
        self.slots.pending.lock().clear();
        let n = self.store.allocated();
        let mut retired = 0;
        with_scratch(|s| {
            let mut list = Vec::new();
            let mut nd = Vec::new();
            for p in 0..n {
                if !self.store.is_ready(p) {
                    continue;
                }
                for l in 0..=self.store.level(p) {
                    self.store.read_links(p, l, &mut list);
                    for &t in &list {
                        if self.store.is_deleted(t) && self.store.is_ready(t) {
                            self.store.read_links(t, l, &mut nd);
                            self.replace_link(p, l, t, &nd, s);
                        }
                    }
                }
            }
        });
        for d in 0..n {
            if self.store.is_ready(d) && self.store.is_deleted(d) {
                if self.try_retire(d) {
                    retired += 1;
                } else {
                    self.queue_if_tombstone(d);
                }
            }
        }
        self.repair();
        retired
    }
}
