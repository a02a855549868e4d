//! Per-node storage: vectors, level-0 links, upper-level links, ids, flags and locks.
//!
//! Every array is an [`Arena`], so growth never moves a node's data.
//!
//! # Publication protocol
//! A node's vector, id, level and upper-link block are written exactly once, by the thread that
//! allocated the node number, before anything else can learn that number. Other threads learn it
//! only through release stores that happen after those writes (a neighbour slot, the entry point,
//! the `READY` flag) and read it with acquire loads, so they see the finished writes. Code that
//! scans node numbers directly (integrity checks, snapshots) must first check [`NodeStore::is_ready`].
//!
//! Neighbour lists are `[count, slot_1, …, slot_cap]` of atomics. Writers hold the node's lock
//! (one node at a time, never two) and store slots before the count; readers take no lock and may
//! see a mix of an old and a new list, which is harmless for a greedy search: every slot always
//! holds some valid, published node.

use crate::arena::{Arena, ZeroValid};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Highest level a node can get; the level shares its byte with the flags.
pub(crate) const MAX_LEVEL: usize = 31;
const LEVEL_MASK: u8 = 0x3F;
const READY: u8 = 0x40;
const DELETED: u8 = 0x80;

// SAFETY: a null pointer is the all-zero pattern and a valid `AtomicPtr`.
unsafe impl<T> ZeroValid for AtomicPtr<T> {}

/// Guard of a node's spin lock; unlocks on drop.
pub(crate) struct NodeGuard<'a>(&'a AtomicU8);

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

pub(crate) struct NodeStore {
    vec_bytes: usize,
    m: usize,
    m0: usize,
    vectors: Arena<u8>,
    links0: Arena<AtomicU32>,
    ids: Arena<AtomicU64>,
    meta: Arena<AtomicU8>,
    locks: Arena<AtomicU8>,
    /// Level-0 in-degree: pruning never drops a node's last in-link, so no node is orphaned.
    indeg: Arena<AtomicU32>,
    /// 0: no upper levels; `k + 1`: the node's block is `upper_blocks[k]`.
    upper_ref: Arena<AtomicU32>,
    upper_blocks: Arena<AtomicPtr<AtomicU32>>,
    upper_count: AtomicU32,
    /// Node numbers handed out so far.
    allocated: AtomicU32,
}

impl NodeStore {
    pub(crate) fn new(dim: usize, element_size: usize, m: usize, m0: usize) -> Self {
        let vec_bytes = dim * element_size;
        Self {
            vec_bytes,
            m,
            m0,
            vectors: Arena::new(vec_bytes),
            links0: Arena::new(m0 + 1),
            ids: Arena::new(1),
            meta: Arena::new(1),
            locks: Arena::new(1),
            indeg: Arena::new(1),
            upper_ref: Arena::new(1),
            upper_blocks: Arena::new(1),
            upper_count: AtomicU32::new(0),
            allocated: AtomicU32::new(0),
        }
    }

    /// Number of node numbers handed out (ready or not).
    #[inline]
    pub(crate) fn allocated(&self) -> u32 {
        self.allocated.load(Ordering::Acquire)
    }

    /// Hands out `count` consecutive node numbers with backing memory, or `None` when the `u32`
    /// node space or memory is exhausted (then nothing is handed out).
    pub(crate) fn alloc(&self, count: u32) -> Option<u32> {
        let mut cur = self.allocated.load(Ordering::Relaxed);
        loop {
            // u32::MAX is reserved as the "reserved id" marker of the id map.
            let end = cur.checked_add(count).filter(|&e| e < u32::MAX)?;
            if end > cur && !self.ensure_rows(end as usize - 1) {
                return None;
            }
            match self.allocated.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(cur),
                Err(actual) => cur = actual,
            }
        }
    }

    fn ensure_rows(&self, last: usize) -> bool {
        self.vectors.ensure(last)
            && self.links0.ensure(last)
            && self.ids.ensure(last)
            && self.meta.ensure(last)
            && self.locks.ensure(last)
            && self.indeg.ensure(last)
            && self.upper_ref.ensure(last)
    }

    /// Writes a freshly allocated node. Must be called exactly once per node, by the thread that
    /// allocated it, before the node number is shared.
    pub(crate) fn init_node(&self, n: u32, id: u64, level: usize, vector: &[u8]) -> bool {
        debug_assert_eq!(vector.len(), self.vec_bytes);
        debug_assert!(level <= MAX_LEVEL);
        let dst = self.vectors.row_ptr(n as usize);
        // SAFETY: row `n` is allocated (alloc ensured it) and `vec_bytes` long; no other thread
        // reads or writes it until `n` is published (module protocol), and `vector` cannot
        // overlap it because the row has never been handed out.
        unsafe { std::ptr::copy_nonoverlapping(vector.as_ptr(), dst.as_ptr(), self.vec_bytes) };
        self.ids.row(n as usize)[0].store(id, Ordering::Relaxed);
        if level > 0 {
            let block: Box<[AtomicU32]> = (0..level * (self.m + 1)).map(|_| AtomicU32::new(0)).collect();
            let k = self.upper_count.fetch_add(1, Ordering::Relaxed);
            if k == u32::MAX || !self.upper_blocks.ensure(k as usize) {
                return false;
            }
            let raw = Box::into_raw(block) as *mut AtomicU32;
            self.upper_blocks.row(k as usize)[0].store(raw, Ordering::Release);
            self.upper_ref.row(n as usize)[0].store(k + 1, Ordering::Release);
        }
        self.meta.row(n as usize)[0].store(level as u8, Ordering::Release);
        true
    }

    /// The stored bytes of node `n` (see the module's publication protocol).
    #[inline(always)]
    pub(crate) fn vector_bytes(&self, n: u32) -> &[u8] {
        let p = self.vectors.row_ptr(n as usize);
        // SAFETY: `n` was published after `init_node` wrote its row (module protocol), the row is
        // never written again, and its bucket lives as long as `self`.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), self.vec_bytes) }
    }

    /// The stored vector of node `n` when storage is `f32`.
    #[inline(always)]
    pub(crate) fn vector_f32(&self, n: u32) -> &[f32] {
        let b = self.vector_bytes(n);
        debug_assert!(b.as_ptr().align_offset(4) == 0 && b.len().is_multiple_of(4));
        // SAFETY: only called for f32 storage, where rows are `4 * dim` bytes and start at
        // multiples of that from a 64-byte aligned bucket, so the pointer is 4-aligned and the
        // length a multiple of 4; every bit pattern is a valid f32. (`bytemuck::cast_slice`
        // re-checks this on every call: 2 % of search instructions under callgrind.)
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
    }

    /// Hints the CPU to start loading node `n`'s vector.
    #[inline(always)]
    pub(crate) fn prefetch_vector(&self, n: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.vectors.row_ptr(n as usize).as_ptr() as *const i8;
            let lines = self.vec_bytes.div_ceil(64).min(8);
            for i in 0..lines {
                // SAFETY: prefetch never faults and reads nothing architecturally; the address
                // is inside the (allocated) row anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(i * 64)) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n;
    }

    #[inline(always)]
    pub(crate) fn id(&self, n: u32) -> u64 {
        self.ids.row(n as usize)[0].load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn meta(&self, n: u32) -> u8 {
        self.meta.row(n as usize)[0].load(Ordering::Acquire)
    }

    #[inline(always)]
    pub(crate) fn level(&self, n: u32) -> usize {
        (self.meta(n) & LEVEL_MASK) as usize
    }

    /// Fully linked and not deleted: may appear in results.
    #[inline(always)]
    pub(crate) fn is_live(&self, n: u32) -> bool {
        self.meta(n) & (READY | DELETED) == READY
    }

    #[inline(always)]
    pub(crate) fn is_ready(&self, n: u32) -> bool {
        self.meta(n) & READY != 0
    }

    #[inline(always)]
    pub(crate) fn is_deleted(&self, n: u32) -> bool {
        self.meta(n) & DELETED != 0
    }

    pub(crate) fn mark_ready(&self, n: u32) {
        self.meta.row(n as usize)[0].fetch_or(READY, Ordering::Release);
    }

    pub(crate) fn mark_deleted(&self, n: u32) {
        self.meta.row(n as usize)[0].fetch_or(DELETED, Ordering::Release);
    }

    /// Capacity of node lists on `level`.
    #[inline(always)]
    pub(crate) fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// `[count, slots…]` of node `n` on `level` (which must be `<= level(n)`).
    #[inline(always)]
    pub(crate) fn links(&self, n: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            return self.links0.row(n as usize);
        }
        let k = self.upper_ref.row(n as usize)[0].load(Ordering::Acquire);
        debug_assert!(k > 0 && level <= self.level(n));
        let block = self.upper_blocks.row(k as usize - 1)[0].load(Ordering::Acquire);
        let w = self.m + 1;
        // SAFETY: the block was leaked from a `Box<[AtomicU32]>` of `level(n) * (m + 1)` elements
        // in `init_node`, published before `n`, and is freed only when the store drops;
        // `level <= level(n)`, so the row `[(level - 1) * w, level * w)` is inside it.
        unsafe { std::slice::from_raw_parts(block.add((level - 1) * w), w) }
    }

    /// Reads a neighbour list into `out` (cleared first).
    #[inline(always)]
    pub(crate) fn read_links(&self, n: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        let l = self.links(n, level);
        let cnt = (l[0].load(Ordering::Acquire) as usize).min(l.len() - 1);
        out.extend(l[1..=cnt].iter().map(|s| s.load(Ordering::Acquire)));
    }

    /// Overwrites a neighbour list; the caller holds `n`'s lock.
    pub(crate) fn write_links(&self, n: u32, level: usize, nbrs: &[u32]) {
        let l = self.links(n, level);
        debug_assert!(nbrs.len() < l.len());
        for (slot, &v) in l[1..].iter().zip(nbrs) {
            slot.store(v, Ordering::Release);
        }
        l[0].store(nbrs.len() as u32, Ordering::Release);
    }

    /// Appends to a neighbour list if there is room; the caller holds `n`'s lock.
    pub(crate) fn try_push_link(&self, n: u32, level: usize, v: u32) -> bool {
        let l = self.links(n, level);
        let cnt = l[0].load(Ordering::Relaxed) as usize;
        if cnt + 1 >= l.len() {
            return false;
        }
        l[cnt + 1].store(v, Ordering::Release);
        l[0].store(cnt as u32 + 1, Ordering::Release);
        true
    }

    /// Counts a new level-0 link to `n`.
    #[inline]
    pub(crate) fn inc_indeg(&self, n: u32) {
        self.indeg.row(n as usize)[0].fetch_add(1, Ordering::Relaxed);
    }

    /// Uncounts a level-0 link to `n`; returns the in-degree left.
    #[inline]
    pub(crate) fn dec_indeg(&self, n: u32) -> u32 {
        self.indeg.row(n as usize)[0].fetch_sub(1, Ordering::Relaxed).saturating_sub(1)
    }

    /// Level-0 in-degree of `n`.
    #[inline]
    pub(crate) fn indeg(&self, n: u32) -> u32 {
        self.indeg.row(n as usize)[0].load(Ordering::Relaxed)
    }

    /// Takes node `n`'s lock, spinning then yielding. Never hold two.
    #[inline]
    pub(crate) fn lock(&self, n: u32) -> NodeGuard<'_> {
        let l = &self.locks.row(n as usize)[0];
        let mut spins = 0u32;
        while l.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        NodeGuard(l)
    }

    /// Approximate resident bytes of `n` nodes' data (vectors, links, per-node fields, upper blocks).
    pub(crate) fn memory_bytes(&self) -> usize {
        let n = self.allocated() as usize;
        let uc = self.upper_count.load(Ordering::Relaxed) as usize;
        let mut upper = 0;
        for k in 0..uc {
            let p = self.upper_blocks.row(k)[0].load(Ordering::Acquire);
            if !p.is_null() {
                // Blocks hold level * (m + 1) u32; the level is not stored with the block, so
                // count the common case of one level plus the allocator's header.
                upper += (self.m + 1) * 4 + 16;
            }
        }
        n * (self.vec_bytes + (self.m0 + 1) * 4 + 8 + 1 + 1 + 4 + 4) + uc * 8 + upper
    }
}

impl Drop for NodeStore {
    fn drop(&mut self) {
        let uc = *self.upper_count.get_mut() as usize;
        let n = *self.allocated.get_mut() as usize;
        // Rebuild each block's length from its owner's level to free it with the right layout.
        let mut lens = vec![0usize; uc];
        for node in 0..n {
            let k = self.upper_ref.row(node)[0].load(Ordering::Relaxed) as usize;
            if k > 0 && k <= uc {
                lens[k - 1] = self.level(node as u32) * (self.m + 1);
            }
        }
        for (k, &len) in lens.iter().enumerate() {
            let p = self.upper_blocks.row(k)[0].load(Ordering::Relaxed);
            if !p.is_null() && len > 0 {
                let slice = std::ptr::slice_from_raw_parts_mut(p, len);
                // SAFETY: `p` came from `Box::into_raw` of a boxed slice of exactly `len`
                // elements (its owner's level times m + 1) and is freed only here.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}
