//! Single-threaded inserts with the same seed build the identical graph.

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};

fn build(seed: u64, base: &[Vec<f32>]) -> Index {
    let idx = Index::new(IndexConfig::new(base[0].len(), Metric::L2).seed(seed)).unwrap();
    for (i, v) in base.iter().enumerate() {
        idx.insert(i as u64, v).unwrap();
    }
    idx
}

#[test]
fn same_seed_same_graph() {
    let base = clustered(2000, 24, 5);
    let a = build(42, &base);
    let b = build(42, &base);
    assert_eq!(a.graph_fingerprint(), b.graph_fingerprint());
    let c = build(43, &base);
    assert_ne!(a.graph_fingerprint(), c.graph_fingerprint(), "seed has no effect");
    let q = &base[17];
    assert_eq!(a.search(q, 10, 50).unwrap(), b.search(q, 10, 50).unwrap());
}

#[test]
fn single_thread_batch_is_deterministic() {
    let base = clustered(2000, 24, 6);
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let build = || {
        let idx = Index::new(IndexConfig::new(24, Metric::L2).seed(9)).unwrap();
        pool.install(|| idx.insert_batch(&items, &BatchOptions::new())).unwrap();
        idx.graph_fingerprint()
    };
    assert_eq!(build(), build());
}
