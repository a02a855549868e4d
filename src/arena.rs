//! Append-only arrays that grow without moving: the storage under every per-node array.
//!
//! Element `i` of an [`Arena`] lives in bucket `b = log2(i / FIRST + 1)`; bucket `b` holds
//! `FIRST << b` elements, so 23 buckets cover the whole `u32` node space and the directory never
//! has to be reallocated. A bucket, once published, is never freed or moved before the arena is
//! dropped, so a reader can keep a reference into it while another thread grows the arena. This is
//! what lets inserts grow the index while searches run, with no stop-the-world copy.
//!
//! Buckets are allocated zeroed. On Linux a bucket of 2 MiB or more is its own anonymous
//! mapping, aligned to 2 MiB and advised `MADV_HUGEPAGE`: its pages are committed only when
//! first written, so the unused tail of the newest bucket costs address space but no resident
//! memory, and where transparent huge pages are enabled (`always` or `madvise`) the walk's
//! random reads of rows miss the TLB far less (see `docs/benchmarks.md`). (The global allocator
//! cannot do this: for 64-byte alignment it zeroes, and so commits, the whole block.) Smaller
//! buckets and other systems use `alloc_zeroed`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// log2 of the first bucket's element count.
const FIRST_BITS: u32 = 10;
/// Enough buckets for every `u32` index: `FIRST * (2^23 - 1) > 2^32`.
const NUM_BUCKETS: usize = 23;
/// Buckets are aligned for 512-bit loads and to cache lines.
const ALIGN: usize = 64;

/// Types whose all-zero bit pattern is a valid, initialised value.
///
/// # Safety
/// Implementors must be valid when every byte is zero, and must not need `Drop`.
pub(crate) unsafe trait ZeroValid: Sized {}
// SAFETY: the atomic integer types have the same representation as their integer, for which zero is valid.
unsafe impl ZeroValid for AtomicU8 {}
// SAFETY: as above.
unsafe impl ZeroValid for AtomicU16 {}
// SAFETY: as above.
unsafe impl ZeroValid for AtomicU32 {}
// SAFETY: as above.
unsafe impl ZeroValid for AtomicU64 {}
// SAFETY: a plain integer; zero is a valid value.
unsafe impl ZeroValid for u8 {}
// SAFETY: a null pointer is the all-zero pattern and a valid `AtomicPtr`.
unsafe impl<T> ZeroValid for AtomicPtr<T> {}

/// Element types that are only ever changed through their own interior mutability (atomics),
/// so shared slices of them may be handed out while other threads write.
///
/// # Safety
/// Implementors must be `Sync` and mutated only through `&self` methods that are data-race free.
pub(crate) unsafe trait AtomicElem: ZeroValid + Sync {}
// SAFETY: atomics are mutated only through their atomic `&self` methods.
unsafe impl AtomicElem for AtomicU8 {}
// SAFETY: as above.
unsafe impl AtomicElem for AtomicU16 {}
// SAFETY: as above.
unsafe impl AtomicElem for AtomicU32 {}
// SAFETY: as above.
unsafe impl AtomicElem for AtomicU64 {}
// SAFETY: as above.
unsafe impl<T> AtomicElem for AtomicPtr<T> {}

/// Bucket index and offset of element `i`.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    let x = i + (1usize << FIRST_BITS);
    let b = (usize::BITS - 1 - x.leading_zeros() - FIRST_BITS) as usize;
    (b, x - (1usize << (b as u32 + FIRST_BITS)))
}

#[inline(always)]
fn bucket_len(b: usize) -> usize {
    1usize << (b as u32 + FIRST_BITS)
}

/// A growable array of `width`-element rows of `T`, zero-initialised, that never moves a row.
pub(crate) struct Arena<T: ZeroValid> {
    width: usize,
    dir: [AtomicPtr<T>; NUM_BUCKETS],
    /// Serialises bucket allocation, so two threads never both allocate the same (possibly
    /// large) bucket. Taken only when a bucket is missing.
    grow: parking_lot::Mutex<()>,
}

// SAFETY: the arena owns its buckets; shared access hands out `&T` (for the atomic types, safe to
// share) or raw pointers whose use is governed by the callers' own `unsafe` contracts.
unsafe impl<T: ZeroValid + Send> Send for Arena<T> {}
// SAFETY: see `Send`; buckets are published with release/acquire on the directory.
unsafe impl<T: ZeroValid + Sync> Sync for Arena<T> {}

impl<T: ZeroValid> Arena<T> {
    /// An empty arena of rows of `width` elements. Allocates nothing.
    pub(crate) fn new(width: usize) -> Self {
        Self {
            width: width.max(1),
            dir: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            grow: parking_lot::Mutex::new(()),
        }
    }

    fn layout(&self, b: usize) -> Option<Layout> {
        let elems = bucket_len(b).checked_mul(self.width)?;
        let bytes = elems.checked_mul(std::mem::size_of::<T>())?;
        Layout::from_size_align(bytes.max(1), ALIGN.max(std::mem::align_of::<T>())).ok()
    }

    /// Makes sure rows `0..=i` are backed by memory. Returns `false` if an allocation failed.
    pub(crate) fn ensure(&self, i: usize) -> bool {
        let (last, _) = locate(i);
        if last >= NUM_BUCKETS {
            return false;
        }
        (0..=last).all(|b| self.ensure_bucket(b))
    }

    fn ensure_bucket(&self, b: usize) -> bool {
        if !self.dir[b].load(Ordering::Acquire).is_null() {
            return true;
        }
        let _g = self.grow.lock();
        if !self.dir[b].load(Ordering::Acquire).is_null() {
            return true;
        }
        let Some(layout) = self.layout(b) else {
            return false;
        };
        let p = alloc_bucket(layout).cast::<T>();
        if p.is_null() {
            return false;
        }
        self.dir[b].store(p, Ordering::Release);
        true
    }

    /// Pointer to the first element of row `i`, or `None` if no thread has
    /// [`ensure`](Self::ensure)d that row yet (no happens-before edge to such a call).
    ///
    /// The pointer stays valid for `width` elements until the arena drops; what may be done
    /// through it is up to the caller's own protocol.
    #[inline(always)]
    pub(crate) fn row_ptr(&self, i: usize) -> Option<NonNull<T>> {
        let (b, off) = locate(i);
        let base = self.dir.get(b)?.load(Ordering::Acquire);
        // `off * width` is inside bucket `b` by construction of `locate`, so for a non-null base
        // the offset pointer stays inside the allocation.
        if base.is_null() {
            return None;
        }
        NonNull::new(base.wrapping_add(off * self.width))
    }
}

impl<T: AtomicElem> Arena<T> {
    /// Row `i` as a shared slice of atomics, or `None` if the row has no memory yet.
    #[inline(always)]
    pub(crate) fn row(&self, i: usize) -> Option<&[T]> {
        let p = self.row_ptr(i)?;
        // SAFETY: the row lies in a live bucket (its directory entry was published with release
        // after `alloc_zeroed`, and we loaded it with acquire) that is neither freed nor moved
        // before `self` drops; `T` is zero-valid, so the row is initialised; `T` is only mutated
        // through its own atomic operations (`AtomicElem`), so shared references never alias a
        // non-atomic write.
        Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), self.width) })
    }
}

impl<T: ZeroValid> Drop for Arena<T> {
    fn drop(&mut self) {
        for b in 0..NUM_BUCKETS {
            let p = *self.dir[b].get_mut();
            if !p.is_null() {
                if let Some(layout) = self.layout(b) {
                    // SAFETY: allocated by `alloc_bucket` with exactly this layout (`layout(b)`
                    // is a pure function of `b` and the width) and not freed since.
                    unsafe { free_bucket(p.cast(), layout) };
                }
            }
        }
    }
}

/// Bytes of buckets mapped directly from the OS (all arenas of the process), which a counting
/// global allocator does not see.
static MAPPED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// See [`crate::mapped_memory_bytes`].
pub(crate) fn mapped_bytes() -> usize {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

/// Buckets at least this large are mapped directly (Linux), aligned to it: the huge page size.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// Zeroed memory for `layout` (non-zero size), or null.
fn alloc_bucket(layout: Layout) -> *mut u8 {
    #[cfg(target_os = "linux")]
    if layout.size() >= HUGE {
        return map_huge(layout.size());
    }
    // SAFETY: the layout has non-zero size (`layout()` asks for at least one byte).
    unsafe { alloc_zeroed(layout) }
}

/// Frees what [`alloc_bucket`] returned.
///
/// # Safety
/// `p` came from `alloc_bucket(layout)` with this very layout and is not used afterwards.
unsafe fn free_bucket(p: *mut u8, layout: Layout) {
    #[cfg(target_os = "linux")]
    if layout.size() >= HUGE {
        // SAFETY: `p` is the start of a mapping of `layout.size().next_multiple_of(HUGE)` bytes
        // made by `map_huge`, which nothing uses any more (caller's contract). An error cannot
        // be acted on during drop; the mapping would only leak.
        unsafe { libc::munmap(p.cast(), layout.size().next_multiple_of(HUGE)) };
        MAPPED_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        return;
    }
    // SAFETY: allocated by `alloc_zeroed` with this layout (caller's contract).
    unsafe { dealloc(p, layout) }
}

/// A fresh anonymous mapping of `size` bytes rounded up to `HUGE`, aligned to `HUGE`, advised
/// for huge pages; null on failure. Anonymous pages read as zero until written.
#[cfg(target_os = "linux")]
fn map_huge(size: usize) -> *mut u8 {
    let Some(len) = size.checked_next_multiple_of(HUGE) else { return std::ptr::null_mut() };
    let Some(span) = len.checked_add(HUGE) else { return std::ptr::null_mut() };
    // SAFETY: a new private anonymous mapping at an address of the kernel's choosing; it
    // aliases nothing.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let base = raw as usize;
    let start = base.next_multiple_of(HUGE);
    let (head, tail) = (start - base, base + span - (start + len));
    // SAFETY: `[base, start)` and `[start + len, base + span)` are page-aligned (mmap returns
    // pages, HUGE is a multiple of the page size) parts of the mapping just made, which nobody
    // else knows; unmapping them leaves `[start, start + len)` mapped. Failures leave slack
    // mapped, which is harmless.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
        // Advice only: without transparent huge pages this fails or does nothing, and the
        // mapping works the same with small pages.
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    MAPPED_BYTES.fetch_add(size, Ordering::Relaxed);
    start as *mut u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buckets_are_zeroed_writable_and_huge_page_aligned() {
        // Bucket 0 (1024 rows of 4 KiB) is 4 MiB: mapped, committed only where written.
        let a: Arena<AtomicU64> = Arena::new(512);
        assert!(a.ensure(3));
        for i in [0usize, 3] {
            let row = a.row(i).unwrap();
            #[cfg(target_os = "linux")]
            if i == 0 {
                assert_eq!(row.as_ptr() as usize % HUGE, 0);
            }
            assert!(row.iter().all(|w| w.load(Ordering::Relaxed) == 0));
            row[row.len() - 1].store(7, Ordering::Relaxed);
            assert_eq!(row[row.len() - 1].load(Ordering::Relaxed), 7);
        }
        // Small buckets take the global allocator's path.
        let small: Arena<AtomicU32> = Arena::new(2);
        assert!(small.ensure(10));
        assert_eq!(small.row(10).unwrap()[1].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn locate_is_dense_and_ordered() {
        let mut prev = (0usize, 0usize);
        for i in 0..100_000usize {
            let (b, off) = locate(i);
            assert!(off < bucket_len(b));
            if i > 0 {
                assert!((b == prev.0 && off == prev.1 + 1) || (b == prev.0 + 1 && off == 0), "i={i}");
            }
            prev = (b, off);
        }
        assert!(locate(u32::MAX as usize).0 < NUM_BUCKETS);
    }

    #[test]
    fn rows_keep_their_address_when_growing() {
        let a: Arena<AtomicU32> = Arena::new(3);
        assert!(a.ensure(0));
        a.row(0).unwrap()[2].store(7, Ordering::Relaxed);
        let p = a.row_ptr(0);
        for i in 0..5000 {
            assert!(a.ensure(i));
            a.row(i).unwrap()[0].store(i as u32, Ordering::Relaxed);
        }
        assert_eq!(p, a.row_ptr(0));
        assert_eq!(a.row(0).unwrap()[2].load(Ordering::Relaxed), 7);
        for i in 0..5000 {
            assert_eq!(a.row(i).unwrap()[0].load(Ordering::Relaxed), i as u32);
        }
    }
}
