//! Building an index: one-at-a-time `insert` against `insert_batch` on 1, 2 and all threads, on
//! siftsmall and (when present) the first 20 000 Fashion-MNIST vectors. The `ceiling` group
//! times an embarrassingly parallel job (brute-force k-NN split over the same threads): its
//! 1-to-N speed-up is the most any parallel build can gain on this machine at this moment.
#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Duration;

mod data;

fn thread_counts() -> Vec<usize> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut v = vec![1, 2, all];
    v.sort_unstable();
    v.dedup();
    v
}

fn brute_force(base: &[Vec<f32>], queries: &[Vec<f32>]) -> usize {
    queries
        .par_iter()
        .map(|q| {
            let mut best = (f32::INFINITY, 0usize);
            for (i, v) in base.iter().enumerate() {
                let d = hnsw_batch::distance::l2_squared(q, v);
                if d < best.0 {
                    best = (d, i);
                }
            }
            best.1
        })
        .sum()
}

fn bench_build(c: &mut Criterion, name: &str, base: &[Vec<f32>], queries: &[Vec<f32>]) {
    let dim = base[0].len();
    let cfg = IndexConfig::new(dim, Metric::L2).m(16).ef_construction(200);
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let mut g = c.benchmark_group(format!("build/{name}"));
    g.sample_size(10).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_millis(100));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            let idx = Index::new(cfg.clone()).unwrap();
            for (id, v) in &items {
                idx.insert(*id, v).unwrap();
            }
            black_box(idx.len())
        })
    });
    for t in thread_counts() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        g.bench_with_input(BenchmarkId::new("insert_batch", t), &t, |b, _| {
            b.iter(|| {
                let idx = Index::new(cfg.clone()).unwrap();
                pool.install(|| idx.insert_batch(&items, &BatchOptions::new())).unwrap();
                black_box(idx.len())
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group(format!("ceiling/{name}"));
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(100));
    let qs = &queries[..queries.len().min(200)];
    for t in thread_counts() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
        g.bench_with_input(BenchmarkId::new("brute_force", t), &t, |b, _| {
            b.iter(|| pool.install(|| black_box(brute_force(base, qs))))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let s = data::siftsmall();
    bench_build(c, "siftsmall", &s.base, &s.queries);
    if let Some(f) = data::fashion_mnist() {
        bench_build(c, "fashion-mnist-20k", &f.base[..20_000], &f.queries);
    }
}

criterion_group!(batch_insert, benches);
criterion_main!(batch_insert);
