//! Durable ingest of 10 000 vectors (dim 16) into a fresh `DurableIndex` on the real filesystem
//! (`FileBackend`, `SyncPolicy::EveryBatch`, in a temporary directory):
//!
//! - `per_item`: one `DurableIndex::insert` per vector (one append and one sync each);
//! - `batch_1000`: `DurableIndex::insert_batch` in batches of 1 000;
//! - `writer_4_producers`: 4 threads submitting single items to a `BatchWriter` (batches of up
//!   to 1 000, 2 ms delay), each waiting for its completions;
//! - `in_memory_per_item` and `in_memory_batch_1000`: the same inserts into a plain `Index`,
//!   the floors without any I/O (how much of each durable time is graph construction).
//!
//! Syncs are counted by a backend wrapper. After criterion's report, a summary prints the median
//! time of each, items per second, syncs per item, and the per-item / batch speed-up.
#![allow(missing_docs)] // criterion generates undocumented public items.

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use hnsw_batch::persist::{Backend, DurableIndex, DurableOptions, FileBackend};
use hnsw_batch::writer::{BatchWriter, WriterOptions};
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const N: usize = 10_000;
const DIM: usize = 16;
const BATCH: usize = 1_000;
const PRODUCERS: usize = 4;

/// `FileBackend` counting syncs (of files and of directories).
#[derive(Default)]
struct Counting {
    inner: FileBackend,
    syncs: AtomicU64,
}

impl Backend for Counting {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.write(path, data)
    }
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.append(path, data)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn sync(&self, path: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<bool> {
        self.inner.try_lock(path)
    }
    fn unlock(&self, path: &Path) -> io::Result<()> {
        self.inner.unlock(path)
    }
}

fn config() -> IndexConfig {
    IndexConfig::new(DIM, Metric::L2).m(12).ef_construction(64)
}

fn items() -> Vec<(u64, Vec<f32>)> {
    let mut z = 0x1234_5678_u64;
    let mut next = move || {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        (z >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..N as u64).map(|id| (id, (0..DIM).map(|_| next()).collect())).collect()
}

/// A fresh index in a fresh temporary directory; removed again on drop.
struct Fresh {
    dir: PathBuf,
    backend: Arc<Counting>,
    db: Option<DurableIndex>,
}

static RUN: AtomicUsize = AtomicUsize::new(0);

impl Fresh {
    fn new() -> Self {
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hnsw-bench-durable-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = Arc::new(Counting::default());
        let dyn_backend: Arc<dyn Backend> = backend.clone();
        let db = DurableIndex::open_with(dyn_backend, &dir, config(), DurableOptions::new()).unwrap();
        // Count the ingest only, not the creation of the directory.
        backend.syncs.store(0, Ordering::Relaxed);
        Fresh { dir, backend, db: Some(db) }
    }

    fn take(&mut self) -> DurableIndex {
        self.db.take().unwrap()
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        drop(self.db.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Per-variant timings and syncs, for the summary.
#[derive(Default)]
struct Record {
    times: Vec<Duration>,
    syncs_per_item: f64,
}

type Records = Mutex<BTreeMap<&'static str, Record>>;

fn record(records: &Records, name: &'static str, took: Duration, syncs: u64) {
    let mut r = records.lock().unwrap();
    let e = r.entry(name).or_default();
    e.times.push(took);
    e.syncs_per_item = syncs as f64 / N as f64;
}

fn per_item(items: &[(u64, Vec<f32>)], records: &Records) -> Duration {
    let mut f = Fresh::new();
    let db = f.take();
    let start = Instant::now();
    for (id, v) in items {
        db.insert(*id, v).unwrap();
    }
    let took = start.elapsed();
    assert_eq!(db.len(), N);
    record(records, "per_item", took, f.backend.syncs.load(Ordering::Relaxed));
    took
}

fn batched(items: &[(u64, Vec<f32>)], records: &Records) -> Duration {
    let mut f = Fresh::new();
    let db = f.take();
    let start = Instant::now();
    for chunk in items.chunks(BATCH) {
        db.insert_batch(chunk, &BatchOptions::new()).unwrap();
    }
    let took = start.elapsed();
    assert_eq!(db.len(), N);
    record(records, "batch_1000", took, f.backend.syncs.load(Ordering::Relaxed));
    took
}

fn writer(items: &Arc<Vec<(u64, Vec<f32>)>>, records: &Records) -> Duration {
    let mut f = Fresh::new();
    let opts = WriterOptions {
        max_batch: BATCH,
        max_delay: Duration::from_millis(2),
        queue_capacity: 4 * BATCH,
        ..Default::default()
    };
    let w = Arc::new(BatchWriter::start(f.take(), opts).unwrap());
    let start = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (w, items) = (w.clone(), items.clone());
            std::thread::spawn(move || {
                let handles: Vec<_> = items
                    .iter()
                    .skip(p)
                    .step_by(PRODUCERS)
                    .map(|(id, v)| w.submit(*id, v.clone()).unwrap())
                    .collect();
                handles.iter().all(|h| h.wait().is_ok())
            })
        })
        .collect();
    for p in producers {
        assert!(p.join().unwrap());
    }
    let took = start.elapsed();
    w.close();
    assert_eq!(w.sink().len(), N);
    record(records, "writer_4_producers", took, f.backend.syncs.load(Ordering::Relaxed));
    took
}

fn in_memory(items: &[(u64, Vec<f32>)], records: &Records) -> Duration {
    let idx = Index::new(config()).unwrap();
    let start = Instant::now();
    for chunk in items.chunks(BATCH) {
        idx.insert_batch(chunk, &BatchOptions::new()).unwrap();
    }
    let took = start.elapsed();
    record(records, "in_memory_batch_1000", took, 0);
    took
}

fn in_memory_per_item(items: &[(u64, Vec<f32>)], records: &Records) -> Duration {
    let idx = Index::new(config()).unwrap();
    let start = Instant::now();
    for (id, v) in items {
        idx.insert(*id, v).unwrap();
    }
    let took = start.elapsed();
    record(records, "in_memory_per_item", took, 0);
    took
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let items = Arc::new(items());
    let records: Records = Mutex::new(BTreeMap::new());
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("durable_ingest");
        g.sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(N as u64));
        g.bench_function(BenchmarkId::from_parameter("per_item"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| per_item(&items, &records)).sum())
        });
        g.bench_function(BenchmarkId::from_parameter("batch_1000"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| batched(&items, &records)).sum())
        });
        g.bench_function(BenchmarkId::from_parameter("writer_4_producers"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| writer(&items, &records)).sum())
        });
        g.bench_function(BenchmarkId::from_parameter("in_memory_batch_1000"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| in_memory(&items, &records)).sum())
        });
        g.bench_function(BenchmarkId::from_parameter("in_memory_per_item"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| in_memory_per_item(&items, &records)).sum())
        });
        g.finish();
    }
    c.final_summary();

    let r = records.lock().unwrap();
    println!("\ndurable ingest of {N} vectors (dim {DIM}), FileBackend, SyncPolicy::EveryBatch");
    println!("{:<22} {:>10} {:>12} {:>12} {:>6}", "variant", "median", "items/s", "syncs/item", "runs");
    for (name, rec) in r.iter() {
        let m = median(&rec.times);
        println!(
            "{:<22} {:>8.1}ms {:>12.0} {:>12.4} {:>6}",
            name,
            m.as_secs_f64() * 1e3,
            N as f64 / m.as_secs_f64().max(1e-9),
            rec.syncs_per_item,
            rec.times.len()
        );
    }
    if let (Some(p), Some(b)) = (r.get("per_item"), r.get("batch_1000")) {
        let speedup = median(&p.times).as_secs_f64() / median(&b.times).as_secs_f64().max(1e-9);
        println!("batch_1000 vs per_item: {speedup:.1}x faster (target >= 10x)");
    }
    if let (Some(p), Some(w)) = (r.get("per_item"), r.get("writer_4_producers")) {
        let speedup = median(&p.times).as_secs_f64() / median(&w.times).as_secs_f64().max(1e-9);
        println!("writer_4_producers vs per_item: {speedup:.1}x faster");
    }
}
