//! Every inserted vector is found as its own nearest neighbour (>= 99.9 % of points).

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};

fn self_hits(index: &Index, base: &[Vec<f32>], ef: usize) -> usize {
    base.iter().enumerate().filter(|(i, v)| index.search(v, 1, ef).unwrap()[0].id == *i as u64).count()
}

#[test]
fn siftsmall_points_find_themselves() {
    let base = sift().base;
    for storage in [Storage::F32, Storage::U8, Storage::F16, Storage::Sq8] {
        let index = Index::new(IndexConfig::new(128, Metric::L2).storage(storage)).unwrap();
        let items: Vec<(u64, &[f32])> =
            base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        index.insert_batch(&items, &BatchOptions::new()).unwrap();
        let hits = self_hits(&index, &base, 64);
        println!("{storage:?}: {hits} of {} find themselves", base.len());
        assert!(hits * 1000 >= base.len() * 999, "{storage:?}: only {hits} of {}", base.len());
    }
}

#[test]
fn cosine_points_find_themselves() {
    let seed = 21;
    println!("seed {seed}");
    let base = clustered(3000, 32, seed);
    let index = Index::new(IndexConfig::new(32, Metric::Cosine).seed(seed)).unwrap();
    for (i, v) in base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    let hits = self_hits(&index, &base, 64);
    assert!(hits * 1000 >= base.len() * 999, "only {hits} of {}", base.len());
}
