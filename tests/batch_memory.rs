//! Peak extra memory of a batch insert stays under 10 % of the finished index. A counting global
//! allocator tracks live heap bytes: "extra" is the peak during the batch minus what is still
//! allocated after it (the index itself), with the input allocated before the measurement.

mod common;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn measure(storage: Storage, threads: usize) -> (usize, usize) {
    let base = common::sift().base;
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    // Warm the pool threads' scratch so it is not charged to the batch (it is reused by every
    // later batch and search on those threads).
    let warm = Index::new(IndexConfig::new(128, Metric::L2).storage(storage)).unwrap();
    pool.install(|| warm.insert_batch(&items[..2000], &BatchOptions::new())).unwrap();
    drop(warm);
    let before = LIVE.load(Ordering::SeqCst);
    let index = Index::new(IndexConfig::new(128, Metric::L2).storage(storage)).unwrap();
    PEAK.store(before, Ordering::SeqCst);
    pool.install(|| index.insert_batch(&items, &BatchOptions::new())).unwrap();
    let after = LIVE.load(Ordering::SeqCst);
    let peak = PEAK.load(Ordering::SeqCst);
    (after - before, peak - after)
}

#[test]
fn batch_extra_memory_under_ten_percent() {
    for (storage, threads) in
        [(Storage::F32, 1), (Storage::F32, 2), (Storage::U8, 2), (Storage::F16, 2), (Storage::Sq8, 2)]
    {
        let (index_bytes, extra) = measure(storage, threads);
        let pct = 100.0 * extra as f64 / index_bytes as f64;
        println!("{storage:?} {threads} threads: index {index_bytes} B, peak extra {extra} B ({pct:.2} %)");
        assert!(extra * 10 < index_bytes, "{storage:?}: extra {extra} B is {pct:.1} % of {index_bytes} B");
    }
}
