//! Per-node storage: vectors, level-0 links, upper-level links, ids, flags, locks and in-degrees.
//!
//! Every per-node array is an [`Arena`], so growth never moves a node's data.
//!
//! # Publication protocol
//! A node's vector, id and level are written by the thread that allocated (or re-allocated) its
//! number, before anything else can learn that number. Other threads learn it only through
//! release stores that happen after those writes (a neighbour slot, the entry point, the id map,
//! the `READY` flag) and read it with acquire loads, so they see the finished writes.
//!
//! # Slot reuse
//! A deleted node's number is handed out again only once (a) no neighbour list names it (its
//! in-degree counters, kept exact by [`NodeStore::set_links`] and the other list writers, are
//! zero), (b) it is neither the entry point nor mapped by an id, (c) it was flagged `FREE`
//! (neither ready nor live, so scans skip it), and (d) a full epoch grace period has passed since
//! then, so every reader that could still hold the number has finished. Rewriting its vector then
//! races with no reader. See `docs/architecture.md`.
//!
//! Neighbour lists are a header and packed slots of atomic words, laid out and read by
//! [`ListCodec`] (`links.rs`). Writers hold the node's lock (one node at a time, never two);
//! readers take no lock and retry until they copy a list that was whole at one instant.

use crate::arena::Arena;
use crate::links::{ListCodec, NARROW_NODES};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Highest level a node can get; the level shares its byte with the flags.
pub(crate) const MAX_LEVEL: usize = 31;
const LEVEL_MASK: u8 = 0x1F;
/// Retired: waiting for its grace period or in the free list. Not ready, not live.
const FREE: u8 = 0x20;
const READY: u8 = 0x40;
const DELETED: u8 = 0x80;

/// The lock bit of a node's lock-and-in-degree word.
const LOCKED: u16 = 0x8000;
/// The level-0 in-degree in the other 15 bits sticks once it reaches this value: it then only
/// says "at least this many", which keeps every decision taken on it safe (a stuck node is never
/// reused and never counted as down to its last in-link). HNSW lists hold at most `M0` links,
/// so a node needs 32 767 nodes choosing it to get here; see `docs/architecture.md`.
pub(crate) const INDEG_STUCK: u32 = 0x7FFF;
const INDEG_MASK: u16 = INDEG_STUCK as u16;

/// Words before the lists in an upper-level block: the block's level count, the in-degree on
/// levels above 0.
const BLOCK_HEADER: usize = 2;

/// The list every missing row reads as: no neighbours.
static EMPTY_LIST: [AtomicU32; 1] = [AtomicU32::new(0)];

/// Guard of a node's spin lock; unlocks on drop.
pub(crate) struct NodeGuard<'a>(&'a AtomicU16);

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        // An RMW, not a store: other threads change the in-degree bits while the lock is held.
        self.0.fetch_and(!LOCKED, Ordering::Release);
    }
}

/// Pools of upper-level blocks by level count. Blocks are never freed before the store drops:
/// a reader that still holds a block of a re-allocated node reads valid atomics of the right
/// length, so [`NodeStore::links`] is sound without any reader protocol.
struct BlockPool {
    free: parking_lot::Mutex<Vec<Vec<usize>>>,
}

pub(crate) struct NodeStore {
    vec_bytes: usize,
    /// Bytes of a row [`prefetch_vector`](Self::prefetch_vector) hints.
    prefetch_len: usize,
    /// Bytes of each exact `f32` original (`Storage::Sq8`), 0 when there are none.
    exact_bytes: usize,
    m: usize,
    m0: usize,
    /// Slot width of every list.
    codec: ListCodec,
    /// Words of each list in an upper-level block.
    up_words: usize,
    /// One past the highest node number the slots can hold.
    node_limit: u64,
    /// Level-0 rows: the level-0 list (`codec.words(m0)`) then the vector (codes) the walk reads, as
    /// hnswlib lays them out: expanding a candidate reads the list next to the vector whose
    /// distance was computed when the candidate was found, so it is usually still cached, and
    /// one visit touches one region of memory instead of two.
    level0: Arena<AtomicU32>,
    /// Words of the list at the start of each `level0` row.
    list_words: usize,
    /// Exact `f32` originals (`Storage::Sq8` only; width 0 and never grown otherwise), apart from
    /// `level0` so the graph walk's rows stay small.
    exact: Arena<u8>,
    ids: Arena<AtomicU64>,
    meta: Arena<AtomicU8>,
    /// One word per node: its spin lock (`LOCKED`) and its level-0 in-degree (the other 15
    /// bits, sticky at `INDEG_STUCK`). Pruning never drops a node's last in-link, so no node is
    /// orphaned; zero (with the upper in-degree) is also what lets a deleted slot be reused.
    /// Sharing the word saves a byte per node; sharing the flags byte instead would put lock
    /// traffic on the cache lines every search reads.
    lock_indeg: Arena<AtomicU16>,
    /// Upper-level block of each node, or null: `[levels, indeg_up, levels × up_words]`.
    upper: Arena<AtomicPtr<AtomicU32>>,
    pool: BlockPool,
    /// Node numbers handed out so far.
    allocated: AtomicU32,
}

/// Why an in-degree could not be lowered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Lowered by one.
    Done,
    /// The link is the node's last one on level 0; nothing changed.
    Last,
}

impl NodeStore {
    /// `vec_bytes`: the row the walk reads; `exact_bytes`: the `f32` original kept beside it
    /// (0: none); `codec`: the slot width.
    pub(crate) fn new(vec_bytes: usize, exact_bytes: usize, m: usize, m0: usize, codec: ListCodec) -> Self {
        let list_words = codec.words(m0);
        Self {
            vec_bytes,
            prefetch_len: vec_bytes.min(PREFETCH_ROW_BYTES),
            exact_bytes,
            m,
            m0,
            codec,
            up_words: codec.words(m),
            // u32::MAX is never a node: the id map marks its empty slots with it.
            node_limit: if codec == ListCodec::NARROW { NARROW_NODES } else { u32::MAX as u64 },
            level0: Arena::new(row_words(list_words, vec_bytes)),
            list_words,
            exact: Arena::new(exact_bytes.max(1)),
            ids: Arena::new(1),
            meta: Arena::new(1),
            lock_indeg: Arena::new(1),
            upper: Arena::new(1),
            pool: BlockPool { free: parking_lot::Mutex::new(vec![Vec::new(); MAX_LEVEL + 1]) },
            allocated: AtomicU32::new(0),
        }
    }

    /// Number of node numbers handed out (ready or not).
    #[inline]
    pub(crate) fn allocated(&self) -> u32 {
        self.allocated.load(Ordering::Acquire)
    }

    /// Hands out `count` consecutive fresh node numbers with backing memory, or `None` when the
    /// node space ([`node_limit`](Self::node_limit)) or memory is exhausted (then nothing is
    /// handed out).
    pub(crate) fn alloc(&self, count: u32) -> Option<u32> {
        let mut cur = self.allocated.load(Ordering::Relaxed);
        loop {
            let end = cur.checked_add(count).filter(|&e| (e as u64) < self.node_limit)?;
            if end > cur && !self.ensure_rows(end as usize - 1) {
                return None;
            }
            match self.allocated.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(cur),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Node numbers are below this (exclusive bound on [`allocated`](Self::allocated)).
    pub(crate) fn node_limit(&self) -> u64 {
        self.node_limit
    }

    /// Bytes per neighbour slot: 3 or 4.
    pub(crate) fn slot_bytes(&self) -> usize {
        self.codec.slot_bytes()
    }

    fn ensure_rows(&self, last: usize) -> bool {
        self.level0.ensure(last)
            && (self.exact_bytes == 0 || self.exact.ensure(last))
            && self.ids.ensure(last)
            && self.meta.ensure(last)
            && self.lock_indeg.ensure(last)
            && self.upper.ensure(last)
    }

    /// Writes node `n`: vector, id, level, empty lists. Returns `false` (changing nothing
    /// visible) if memory for its upper-level block ran out.
    ///
    /// # Safety
    /// `n` was handed out by [`alloc`](Self::alloc) to the calling thread, or taken from the
    /// free list after its grace period (module docs, "Slot reuse"); no other thread reads
    /// its vector until the caller publishes `n`.
    ///
    /// `exact` is the node's `f32` original as bytes (`exact_bytes` long; empty when the store
    /// keeps none).
    pub(crate) unsafe fn init_node(
        &self,
        n: u32,
        id: u64,
        level: usize,
        vector: &[u8],
        exact: &[u8],
    ) -> bool {
        if vector.len() != self.vec_bytes || exact.len() != self.exact_bytes || level > MAX_LEVEL {
            return false;
        }
        let (Some(dst), Some(up)) = (self.vector_ptr(n), self.upper.row(n as usize)) else {
            return false;
        };
        let exact_dst = if self.exact_bytes == 0 {
            None
        } else {
            match self.exact.row_ptr(n as usize) {
                Some(p) => Some(p),
                None => return false,
            }
        };
        let old = up[0].load(Ordering::Acquire);
        let old_levels = block_levels(old);
        let block = if old_levels == level {
            old
        } else if level == 0 {
            std::ptr::null_mut()
        } else {
            match self.take_block(level) {
                Some(b) => b,
                None => return false,
            }
        };
        if !block.is_null() {
            // SAFETY: `block` is a live pool block of `level` levels (header included).
            let words = unsafe { std::slice::from_raw_parts(block, block_len(level, self.up_words)) };
            words[1].store(0, Ordering::Relaxed);
            for l in 0..level {
                let at = BLOCK_HEADER + l * self.up_words;
                self.codec.write(&words[at..at + self.up_words], &[]);
            }
        }
        // SAFETY: row `n` is allocated and its vector part `vec_bytes` long (only the list part
        // is accessed as atomics, and by other threads only after publication); the caller
        // guarantees that no other thread reads or writes the vector until `n` is published, and `vector` cannot overlap it
        // because the row is not handed out to anyone else.
        unsafe { std::ptr::copy_nonoverlapping(vector.as_ptr(), dst.as_ptr(), self.vec_bytes) };
        if let Some(p) = exact_dst {
            // SAFETY: as above, for row `n` of the exact arena, `exact_bytes` long.
            unsafe { std::ptr::copy_nonoverlapping(exact.as_ptr(), p.as_ptr(), self.exact_bytes) };
        }
        if let Some(r) = self.ids.row(n as usize) {
            r[0].store(id, Ordering::Relaxed);
        }
        if let Some(r) = self.list0(n) {
            self.codec.write(r, &[]);
        }
        if let Some(r) = self.lock_indeg.row(n as usize) {
            // Only the count: nobody can hold the lock of a number being handed out, but the
            // lock bit is not this function's to clear.
            r[0].fetch_and(LOCKED, Ordering::Relaxed);
        }
        up[0].store(block, Ordering::Release);
        if block != old && !old.is_null() {
            self.pool.free.lock()[old_levels].push(old as usize);
        }
        if let Some(r) = self.meta.row(n as usize) {
            r[0].store(level as u8, Ordering::Release);
        }
        true
    }

    /// A zeroed block of `levels` levels with its header set, from the pool or the allocator.
    fn take_block(&self, levels: usize) -> Option<*mut AtomicU32> {
        if let Some(b) = self.pool.free.lock()[levels].pop() {
            return Some(b as *mut AtomicU32);
        }
        let layout = Layout::array::<AtomicU32>(block_len(levels, self.up_words)).ok()?;
        // SAFETY: the layout has non-zero size (the header alone is two words).
        let p = unsafe { alloc_zeroed(layout) }.cast::<AtomicU32>();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` points to `block_len` zeroed (valid) atomics that nobody else knows yet.
        unsafe { (*p).store(levels as u32, Ordering::Relaxed) };
        Some(p)
    }

    /// The stored bytes of node `n`.
    ///
    /// # Safety
    /// `n` must be published (learned through a neighbour slot, the entry point or the id map,
    /// or seen `READY`, with acquire) and the caller must be pinned in the current epoch
    /// (`epoch::pin`) from before it learned `n` until it drops the slice, so `n`
    /// cannot be re-allocated and rewritten meanwhile (module docs, "Slot reuse").
    #[inline(always)]
    pub(crate) unsafe fn vector_bytes(&self, n: u32) -> &[u8] {
        match self.vector_ptr(n) {
            // SAFETY: the row is allocated and its vector part `vec_bytes` long, its bucket lives
            // as long as `self`, and by the caller's contract nobody writes it while the slice
            // lives (list writers touch only the words before it).
            Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), self.vec_bytes) },
            None => &[],
        }
    }

    /// The stored vector of node `n` when storage is `f32`.
    ///
    /// # Safety
    /// As for [`vector_bytes`](Self::vector_bytes).
    #[inline(always)]
    pub(crate) unsafe fn vector_f32(&self, n: u32) -> &[f32] {
        // SAFETY: the caller upholds `vector_bytes`'s contract.
        let b = unsafe { self.vector_bytes(n) };
        debug_assert!(b.as_ptr().align_offset(4) == 0 && b.len().is_multiple_of(4));
        // SAFETY: only called for f32 storage, where the vector is `4 * dim` bytes at a whole
        // number of words into a row of words, so the pointer is 4-aligned and the length a
        // multiple of 4; every bit pattern is a valid f32. (`bytemuck::cast_slice`
        // re-checks this on every call: 2 % of search instructions under callgrind.)
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
    }

    /// The exact `f32` original of node `n` (`Storage::Sq8`); empty when the store keeps none.
    ///
    /// # Safety
    /// As for [`vector_bytes`](Self::vector_bytes).
    #[inline(always)]
    pub(crate) unsafe fn exact_f32(&self, n: u32) -> &[f32] {
        if self.exact_bytes == 0 {
            return &[];
        }
        let Some(p) = self.exact.row_ptr(n as usize) else { return &[] };
        debug_assert!(p.as_ptr().align_offset(4) == 0);
        // SAFETY: the row is allocated and `exact_bytes = 4 * dim` long, starting at a multiple
        // of that from a 64-byte aligned bucket, so it is 4-aligned; its bucket lives as long as
        // `self`; by the caller's contract nobody writes it while the slice lives; every bit
        // pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<f32>(), self.exact_bytes / 4) }
    }

    /// The stored vector of node `n` when storage is `f16`, as IEEE half-precision bits.
    ///
    /// # Safety
    /// As for [`vector_bytes`](Self::vector_bytes).
    #[inline(always)]
    pub(crate) unsafe fn vector_f16(&self, n: u32) -> &[u16] {
        // SAFETY: the caller upholds `vector_bytes`'s contract.
        let b = unsafe { self.vector_bytes(n) };
        if b.is_empty() {
            // An absent row: the empty `&[u8]` need not be 2-aligned.
            return &[];
        }
        debug_assert!(b.as_ptr().align_offset(2) == 0 && b.len().is_multiple_of(2));
        // SAFETY: only called for f16 storage, where the vector is `2 * dim` bytes at a whole
        // number of words into a row of words, so the pointer is 2-aligned and the length a
        // multiple of 2; every bit pattern is a valid u16.
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u16>(), b.len() / 2) }
    }

    /// Hints at most `bytes` of a row ahead of its distance instead of the default
    /// [`PREFETCH_ROW_BYTES`] (measured per storage and CPU: [`f32_prefetch_bytes`]).
    pub(crate) fn set_prefetch_len(&mut self, bytes: usize) {
        self.prefetch_len = self.vec_bytes.min(bytes);
    }

    /// Hints the CPU to start loading node `n`'s vector (its first `prefetch_len` bytes).
    #[inline(always)]
    pub(crate) fn prefetch_vector(&self, n: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.vector_ptr(n) {
            prefetch_lines(p.as_ptr(), self.prefetch_len);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n;
    }

    /// Hints the CPU to start loading node `n`'s whole exact `f32` original (`Storage::Sq8`).
    #[inline(always)]
    pub(crate) fn prefetch_exact(&self, n: u32) {
        #[cfg(target_arch = "x86_64")]
        if self.exact_bytes != 0 {
            if let Some(p) = self.exact.row_ptr(n as usize) {
                prefetch_lines(p.as_ptr() as *const u8, self.exact_bytes);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n;
    }

    /// Hints the CPU to start loading node `n`'s level-0 list.
    #[inline(always)]
    pub(crate) fn prefetch_links0(&self, n: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.level0.row_ptr(n as usize) {
            prefetch_lines(p.as_ptr() as *const u8, self.list_words * 4);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n;
    }

    #[inline(always)]
    pub(crate) fn id(&self, n: u32) -> u64 {
        self.ids.row(n as usize).map_or(0, |r| r[0].load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn meta(&self, n: u32) -> u8 {
        self.meta.row(n as usize).map_or(0, |r| r[0].load(Ordering::Acquire))
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

    /// Fully linked (live or a tombstone); not retired.
    #[inline(always)]
    pub(crate) fn is_ready(&self, n: u32) -> bool {
        self.meta(n) & READY != 0
    }

    #[inline(always)]
    pub(crate) fn is_deleted(&self, n: u32) -> bool {
        self.meta(n) & DELETED != 0
    }

    /// Retired: flagged for reuse (in its grace period or in the free list).
    #[inline(always)]
    pub(crate) fn is_free(&self, n: u32) -> bool {
        self.meta(n) & FREE != 0
    }

    /// Retired, and no link to it was added since: its slot may be reused once its grace
    /// period has passed and its in-degrees are zero.
    #[inline(always)]
    pub(crate) fn is_reusable(&self, n: u32) -> bool {
        self.meta(n) & (FREE | DELETED | READY) == FREE
    }

    /// Neither deleted nor retired: a node new links may point to (live, or still being
    /// inserted by another thread).
    #[inline(always)]
    pub(crate) fn is_linkable(&self, n: u32) -> bool {
        self.meta(n) & (FREE | DELETED) == 0
    }

    pub(crate) fn mark_ready(&self, n: u32) {
        if let Some(r) = self.meta.row(n as usize) {
            r[0].fetch_or(READY, Ordering::Release);
        }
    }

    pub(crate) fn mark_deleted(&self, n: u32) {
        if let Some(r) = self.meta.row(n as usize) {
            r[0].fetch_or(DELETED, Ordering::Release);
        }
    }

    /// Flags a tombstone (ready and deleted) as retired, so scans and integrity checks skip it
    /// from now on. One atomic step: of several threads retiring the same tombstone, exactly
    /// one gets `true`, so a slot can never enter the free list twice.
    pub(crate) fn try_mark_free(&self, n: u32) -> bool {
        let Some(r) = self.meta.row(n as usize) else { return false };
        let cur = r[0].load(Ordering::Acquire);
        if cur & (READY | DELETED | FREE) != READY | DELETED {
            return false;
        }
        // `SeqCst`: see `inc_indeg`.
        r[0].compare_exchange(cur, (cur & LEVEL_MASK) | FREE, Ordering::SeqCst, Ordering::Acquire).is_ok()
    }

    /// Flags a slot that was never published as retired (its insert failed before linking).
    pub(crate) fn mark_unpublished_free(&self, n: u32) {
        if let Some(r) = self.meta.row(n as usize) {
            let level = r[0].load(Ordering::Relaxed) & LEVEL_MASK;
            r[0].store(level | FREE, Ordering::Release);
        }
    }

    /// Takes a retired node back as an ordinary tombstone (it turned out to be still linked).
    pub(crate) fn unmark_free(&self, n: u32) {
        if let Some(r) = self.meta.row(n as usize) {
            let level = r[0].load(Ordering::Relaxed) & LEVEL_MASK;
            r[0].store(level | READY | DELETED, Ordering::Release);
        }
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

    /// The words of node `n`'s list on `level` ([`ListCodec`] layout); an empty list when `n`
    /// has no such level.
    #[inline(always)]
    fn links(&self, n: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            return self.list0(n).unwrap_or(&EMPTY_LIST);
        }
        let block = self.block(n);
        if level > block_levels(block) {
            return &EMPTY_LIST;
        }
        let w = self.up_words;
        // SAFETY: a non-null block holds `block_levels(block)` levels after its header (its
        // header never changes), `level` is at most that, and blocks are freed only when the
        // store drops, so the row `[header + (level - 1) * w, header + level * w)` is valid
        // atomics for the life of `&self`.
        unsafe { std::slice::from_raw_parts(block.add(BLOCK_HEADER + (level - 1) * w), w) }
    }

    /// Node `n`'s level-0 list: the first `list_words` of its row.
    #[inline(always)]
    fn list0(&self, n: u32) -> Option<&[AtomicU32]> {
        let p = self.level0.row_ptr(n as usize)?;
        // SAFETY: the row lies in a live bucket (published with release after `alloc_zeroed`,
        // read with acquire by `row_ptr`) that is neither freed nor moved before `self` drops,
        // and is `list_words + vector words` long; the list words are zero-valid atomics only
        // ever changed through atomic operations (the vector words after them are written
        // plainly, but are not part of this slice).
        Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), self.list_words) })
    }

    /// Start of node `n`'s vector: the bytes after its level-0 list in its row.
    #[inline(always)]
    fn vector_ptr(&self, n: u32) -> Option<std::ptr::NonNull<u8>> {
        let p = self.level0.row_ptr(n as usize)?;
        // In bounds: the row is `list_words + vec_bytes.div_ceil(4)` words long.
        std::ptr::NonNull::new(p.as_ptr().wrapping_add(self.list_words).cast::<u8>())
    }

    #[inline(always)]
    fn block(&self, n: u32) -> *mut AtomicU32 {
        self.upper.row(n as usize).map_or(std::ptr::null_mut(), |r| r[0].load(Ordering::Acquire))
    }

    /// Reads a neighbour list into `out` (cleared first): a list it held at one instant.
    #[inline(always)]
    pub(crate) fn read_links(&self, n: u32, level: usize, out: &mut Vec<u32>) {
        self.codec.read(self.links(n, level), out);
    }

    /// The graph walk's read: the neighbours for which `keep` returns `true` (see
    /// [`ListCodec::read_filtered`] for what a list being rewritten may yield).
    #[inline(always)]
    pub(crate) fn read_links_filtered(
        &self,
        n: u32,
        level: usize,
        out: &mut Vec<u32>,
        keep: impl FnMut(u32) -> bool,
    ) {
        self.codec.read_filtered(self.links(n, level), out, keep);
    }

    /// The length of a neighbour list: exact under `n`'s lock, a hint otherwise.
    #[inline]
    pub(crate) fn link_count(&self, n: u32, level: usize) -> usize {
        self.codec.count(self.links(n, level))
    }

    /// Overwrites a neighbour list without touching in-degrees; the caller holds `n`'s lock and
    /// has already counted the difference.
    fn write_slots(&self, n: u32, level: usize, nbrs: &[u32]) {
        debug_assert!(nbrs.len() <= self.cap(level));
        self.codec.write(self.links(n, level), &nbrs[..nbrs.len().min(self.cap(level))]);
    }

    /// Overwrites a neighbour list, counting every added and removed link in the targets'
    /// in-degrees, so the counters stay exact whatever the lists become. The caller holds `n`'s
    /// lock.
    pub(crate) fn set_links(&self, n: u32, level: usize, nbrs: &[u32]) {
        let mut old = Vec::new();
        self.read_links(n, level, &mut old);
        for &t in &old {
            if !nbrs.contains(&t) {
                self.dec_indeg(t, level);
            }
        }
        for &t in nbrs {
            if !old.contains(&t) {
                self.inc_indeg(t, level);
            }
        }
        self.write_slots(n, level, nbrs);
    }

    /// Writes a list whose changes the caller already counted (the pruning path, which decides
    /// each removal atomically with [`try_release0`](Self::try_release0)).
    pub(crate) fn set_links_counted(&self, n: u32, level: usize, nbrs: &[u32]) {
        self.write_slots(n, level, nbrs);
    }

    /// Appends to a neighbour list if there is room (counting the link); the caller holds `n`'s
    /// lock.
    pub(crate) fn try_push_link(&self, n: u32, level: usize, v: u32) -> bool {
        let l = self.links(n, level);
        let cap = if l.len() > 1 { self.cap(level) } else { 0 };
        if self.codec.count(l) >= cap {
            return false;
        }
        self.inc_indeg(v, level);
        self.codec.push(l, cap, v)
    }

    /// Node `n`'s lock-and-in-degree word.
    #[inline]
    fn word0(&self, n: u32) -> Option<&AtomicU16> {
        self.lock_indeg.row(n as usize).map(|r| &r[0])
    }

    /// The upper-level in-degree of `n` (all levels above 0 together), if `n` has upper levels.
    #[inline]
    fn indeg_up_cell(&self, n: u32) -> Option<&AtomicU32> {
        let block = self.block(n);
        if block.is_null() {
            return None;
        }
        // SAFETY: word 1 of a live block is its upper in-degree (blocks live as long as `self`).
        Some(unsafe { &*block.add(1) })
    }

    /// Counts a new link to `n` on `level`.
    #[inline]
    pub(crate) fn inc_indeg(&self, n: u32, level: usize) {
        // `SeqCst` pairs with the retirement claim (`try_mark_free`, then the counters re-read
        // in `Index::try_retire`): of an increment racing a claim, either this thread sees
        // `FREE` below or the claimer sees the count, never neither (a store-load pair, which
        // acquire/release alone would let both miss). A stuck count is left as it is: it is
        // non-zero already, which is all the claimer needs to see.
        if level == 0 {
            if let Some(w) = self.word0(n) {
                let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                    (v & INDEG_MASK != INDEG_MASK).then(|| v + 1)
                });
            }
        } else if let Some(c) = self.indeg_up_cell(n) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        // A link to a retired node can only come from an insert that chose it before it was
        // deleted; searches may follow that link from now on, so the slot must not be reused
        // even if the link goes away again. `DELETED` on a `FREE` node records it.
        if let Some(r) = self.meta.row(n as usize) {
            if r[0].load(Ordering::SeqCst) & FREE != 0 {
                r[0].fetch_or(DELETED, Ordering::AcqRel);
            }
        }
    }

    /// Uncounts a link to `n` on `level`. Saturates at zero instead of wrapping (an exact
    /// count never needs it; a wrapped count would make the slot look linked for ever); a stuck
    /// level-0 count stays stuck.
    #[inline]
    pub(crate) fn dec_indeg(&self, n: u32, level: usize) {
        if level == 0 {
            if let Some(w) = self.word0(n) {
                let r = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match v & INDEG_MASK {
                    0 | INDEG_MASK => None,
                    _ => Some(v - 1),
                });
                debug_assert!(
                    r.is_ok() || r.is_err_and(|v| v & INDEG_MASK != 0),
                    "in-degree of node {n} on level 0 went below zero"
                );
            }
        } else if let Some(c) = self.indeg_up_cell(n) {
            let r = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            debug_assert!(r.is_ok(), "in-degree of node {n} above level 0 went below zero");
        }
    }

    /// Uncounts a level-0 link to `n` unless it is `n`'s last: the check and the decrement are
    /// one atomic step, so two pruners cannot both drop a node's last two links. A stuck count
    /// is not lowered, and the link may go (the node has, or had, 32 767 in-links).
    #[inline]
    pub(crate) fn try_release0(&self, n: u32) -> Release {
        let Some(w) = self.word0(n) else { return Release::Done };
        let r = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let c = v & INDEG_MASK;
            (c > 1 && c != INDEG_MASK).then(|| v - 1)
        });
        match r {
            Ok(_) => Release::Done,
            Err(v) if v & INDEG_MASK == INDEG_MASK => Release::Done,
            Err(_) => Release::Last,
        }
    }

    /// In-degree of `n` on all levels, read in the `SeqCst` order that pairs with
    /// `inc_indeg` (see there): read after a successful `try_mark_free`.
    pub(crate) fn indeg_total_seqcst(&self, n: u32) -> u32 {
        let l0 = self.word0(n).map_or(0, |w| u32::from(w.load(Ordering::SeqCst) & INDEG_MASK));
        l0.saturating_add(self.indeg_up_cell(n).map_or(0, |c| c.load(Ordering::SeqCst)))
    }

    /// Level-0 in-degree of `n` ([`INDEG_STUCK`] means at least that many, or once that many).
    #[inline]
    pub(crate) fn indeg(&self, n: u32) -> u32 {
        self.word0(n).map_or(0, |w| u32::from(w.load(Ordering::Acquire) & INDEG_MASK))
    }

    /// In-degree of `n` on every level above 0 together.
    #[inline]
    pub(crate) fn indeg_upper(&self, n: u32) -> u32 {
        self.indeg_up_cell(n).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Takes node `n`'s lock, spinning then yielding. Never hold two.
    #[inline]
    pub(crate) fn lock(&self, n: u32) -> NodeGuard<'_> {
        static NO_LOCK: AtomicU16 = AtomicU16::new(0);
        // A node without memory cannot be written by anyone; lock a dummy so callers need no
        // special case (they find its lists empty).
        let w = self.word0(n).unwrap_or(&NO_LOCK);
        let mut spins = 0u32;
        // `fetch_or` takes the lock in one RMW whatever the in-degree bits hold; while someone
        // else holds it, wait with plain loads so the line is not written on every spin.
        while w.fetch_or(LOCKED, Ordering::Acquire) & LOCKED != 0 {
            while w.load(Ordering::Relaxed) & LOCKED != 0 {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        NodeGuard(w)
    }

    /// Approximate resident bytes of the node data (vectors, links, per-node fields, blocks).
    pub(crate) fn memory_bytes(&self) -> usize {
        let n = self.allocated() as usize;
        let mut upper = 0;
        for node in 0..n as u32 {
            let levels = block_levels(self.block(node));
            if levels > 0 {
                // The allocator's header on top of the block.
                upper += block_len(levels, self.up_words) * 4 + 16;
            }
        }
        let pooled: usize = self
            .pool
            .free
            .lock()
            .iter()
            .enumerate()
            .map(|(levels, v)| v.len() * (block_len(levels, self.up_words) * 4 + 16))
            .sum();
        // Per node: the row, the original, the id (8), flags (1), lock and in-degree (2) and
        // the upper-block pointer (8).
        n * (row_words(self.list_words, self.vec_bytes) * 4 + self.exact_bytes + 8 + 1 + 2 + 8)
            + upper
            + pooled
    }

    /// Bytes of the exact `f32` originals (`Storage::Sq8`), part of [`memory_bytes`](Self::memory_bytes)
    /// that the graph walk never reads.
    pub(crate) fn exact_memory_bytes(&self) -> usize {
        self.allocated() as usize * self.exact_bytes
    }
}

/// The id map keeps only node numbers and reads each one's id here (see `idmap.rs` for why
/// that read is ordered and stable: a mapped node's id was written before its publication and is
/// rewritten only after it has left the map).
impl crate::idmap::NodeIds for NodeStore {
    #[inline(always)]
    fn node_id(&self, n: u32) -> u64 {
        self.id(n)
    }

    #[inline(always)]
    fn prefetch_id(&self, n: u32) {
        if let Some(r) = self.ids.row(n as usize) {
            prefetch_bytes(r.as_ptr().cast::<u8>(), 8);
        }
    }
}

/// Level count of an upper-level block (0 for none).
#[inline(always)]
fn block_levels(block: *mut AtomicU32) -> usize {
    if block.is_null() {
        0
    } else {
        // SAFETY: a non-null block pointer always points to a live block (blocks are freed only
        // when the store drops), whose first word is its level count, set before publication.
        unsafe { (*block).load(Ordering::Relaxed) as usize }
    }
}

fn block_len(levels: usize, list_words: usize) -> usize {
    BLOCK_HEADER + levels * list_words
}

impl Drop for NodeStore {
    fn drop(&mut self) {
        let n = *self.allocated.get_mut() as usize;
        let mut blocks: Vec<usize> =
            (0..n as u32).map(|x| self.block(x) as usize).filter(|&b| b != 0).collect();
        for v in self.pool.free.get_mut().iter_mut() {
            blocks.append(v);
        }
        for b in blocks {
            let p = b as *mut AtomicU32;
            let levels = block_levels(p);
            if let Ok(layout) = Layout::array::<AtomicU32>(block_len(levels, self.up_words)) {
                // SAFETY: every block was allocated in `take_block` with exactly this layout
                // (its level count never changes), is owned by one node or the pool (never
                // both), and is freed only here.
                unsafe { dealloc(p.cast(), layout) };
            }
        }
    }
}

/// Bytes of a row hinted ahead of its distance: the hardware prefetcher streams the rest.
/// Measured on debian-minilm (384 dims) on an Intel Xeon with AVX-512 (sessions 7–11): 4, 8
/// and 12 lines of the 24 of an `f32` row ran alike within the noise, the whole row 5–10 % slower
/// (the hints stall once the line-fill buffers are full), 1 line slightly slower, and 256 bytes
/// with the four-row kernel 4–5 % slower than 512 (also on siftsmall; Fashion-MNIST 0.93–0.98x).
const PREFETCH_ROW_BYTES: usize = 512;

/// Bytes of an `f32` row hinted ahead of its distance on an AMD CPU. On an AMD EPYC with AVX-512
/// (session 12, six rounds in turns, same graphs), against 512: 128 gave debian-minilm +3 % / +4 %
/// QPS at ef 16 / 64 and Fashion-MNIST +3 % / +9 % at ef 12 / 32; 64 gave +4 % / +7 % and
/// +5 % / +9 %; siftsmall, whose rows are 512 bytes and cached, did not change. The Intel machine
/// ran fewer lines slower ([`PREFETCH_ROW_BYTES`]), so the width follows the vendor. `sq8` codes
/// keep 512 on both: debian-minilm's (384 bytes) ran 0.92–0.95x with 128 on the EPYC.
const PREFETCH_F32_BYTES_AMD: usize = 128;

/// Bytes of an `f32` row to hint ahead of its distance on this CPU: see [`PREFETCH_ROW_BYTES`]
/// and [`PREFETCH_F32_BYTES_AMD`].
pub(crate) fn f32_prefetch_bytes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // Leaf 0 names the vendor in ebx, edx, ecx: "Auth", "enti", "cAMD".
        let r = std::arch::x86_64::__cpuid(0);
        if [r.ebx, r.edx, r.ecx] == [*b"Auth", *b"enti", *b"cAMD"].map(u32::from_le_bytes) {
            return PREFETCH_F32_BYTES_AMD;
        }
    }
    PREFETCH_ROW_BYTES
}

/// Hints the cache lines of `[p, p + len)` (a no-op off x86-64): for buffers outside the store
/// that the walk reads, such as a batch's walk codes.
#[inline(always)]
pub(crate) fn prefetch_bytes(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    prefetch_lines(p, len);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Hints the cache lines of `[p, p + len)`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines(p: *const u8, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let skew = p as usize & 63;
    let start = p.wrapping_sub(skew);
    let mut off = 0;
    while off < len + skew {
        // SAFETY: a prefetch never faults and has no architectural effect; the address is
        // computed without dereferencing (and lies in an allocated row anyway).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(off) as *const i8) };
        off += 64;
    }
}

/// Words in a `level0` row: the list, then the vector rounded up to whole words. Rows are not
/// padded to cache lines: aligning the vector to 64 bytes (hnswlib does not either) measured no
/// faster on debian-minilm f32 and costs up to 60 bytes per vector.
fn row_words(list_words: usize, vec_bytes: usize) -> usize {
    list_words + vec_bytes.div_ceil(4)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
