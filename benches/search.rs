//! Single-thread search speed per `ef` on siftsmall and (when present) Fashion-MNIST, `f32` and
//! `u8` storage. Recall@10 of each setting is printed beside the timing group name.
#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};
use std::hint::black_box;
use std::time::Duration;

mod data;

fn bench_dataset(c: &mut Criterion, d: &data::Dataset) {
    // Both datasets hold integers 0..=255, which u8 storage keeps losslessly.
    let storages = [Storage::F32, Storage::U8];
    for storage in storages {
        let index =
            Index::new(IndexConfig::new(d.dim, Metric::L2).m(16).ef_construction(200).storage(storage))
                .unwrap();
        let items: Vec<(u64, &[f32])> =
            d.base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        index.insert_batch(&items, &BatchOptions::new()).unwrap();
        let mut g = c.benchmark_group(format!("search/{}/{}", d.name, storage.name()));
        g.throughput(Throughput::Elements(d.queries.len() as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
        for ef in [10, 16, 32, 64, 128] {
            let found: Vec<_> = d.queries.iter().map(|q| index.search(q, 10, ef).unwrap()).collect();
            eprintln!(
                "{} {} ef={ef}: recall@10 {:.4}",
                d.name,
                storage.name(),
                data::recall(&found, &d.gt, 10)
            );
            g.bench_with_input(BenchmarkId::from_parameter(ef), &ef, |b, &ef| {
                b.iter(|| {
                    for q in &d.queries {
                        black_box(index.search(q, 10, ef).unwrap());
                    }
                })
            });
        }
        g.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_dataset(c, &data::siftsmall());
    if let Some(f) = data::fashion_mnist() {
        bench_dataset(c, &f);
    }
}

criterion_group!(search, benches);
criterion_main!(search);
