//! A batch-built index is as good as a one-at-a-time one: siftsmall in one batch on 1 and 2
//! threads, recall@10 at ef=64 within 0.005 of a sequential build; every vector finds itself.
//! The same for every storage (on 2 threads, at ef=16, where recall is below saturation): the
//! batch build must not lose what the storage keeps.

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};

#[test]
fn batch_recall_matches_sequential() {
    let d = sift();
    let truth: Vec<Vec<u64>> = d.gt.iter().map(|g| g.iter().map(|&x| x as u64).collect()).collect();
    let cfg = IndexConfig::new(128, Metric::L2).m(16).ef_construction(200);
    let seq = Index::new(cfg.clone()).unwrap();
    for (i, v) in d.base.iter().enumerate() {
        seq.insert(i as u64, v).unwrap();
    }
    let r_seq = recall_at(&search_all(&seq, &d.queries, 10, 64), &truth, 10);
    let items: Vec<(u64, &[f32])> =
        d.base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let idx = Index::new(cfg.clone()).unwrap();
        let report = pool.install(|| idx.insert_batch(&items, &BatchOptions::new())).unwrap();
        assert_eq!(report.inserted, 10_000);
        idx.check_integrity().unwrap();
        let r = recall_at(&search_all(&idx, &d.queries, 10, 64), &truth, 10);
        println!("threads {threads}: batch recall@10(ef=64) {r:.4}, sequential {r_seq:.4}");
        assert!(r >= r_seq - 0.005, "batch recall {r} vs sequential {r_seq}");
        let selfhits = d
            .base
            .iter()
            .enumerate()
            .filter(|(i, v)| idx.search(v, 1, 64).unwrap()[0].id == *i as u64)
            .count();
        assert!(selfhits * 1000 >= 10_000 * 999, "only {selfhits} find themselves");
    }
}

#[test]
fn batch_recall_matches_sequential_for_every_storage() {
    let d = sift();
    let truth: Vec<Vec<u64>> = d.gt.iter().map(|g| g.iter().map(|&x| x as u64).collect()).collect();
    let items: Vec<(u64, &[f32])> =
        d.base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    for storage in [Storage::F16, Storage::U8, Storage::Sq8] {
        let cfg = IndexConfig::new(128, Metric::L2).m(16).ef_construction(200).storage(storage);
        let seq = Index::new(cfg.clone()).unwrap();
        if storage == Storage::Sq8 {
            // One-at-a-time inserts need trained codes; the batch trains on its own data, which
            // is the same set.
            seq.train_sq8(&d.base).unwrap();
        }
        for (i, v) in d.base.iter().enumerate() {
            seq.insert(i as u64, v).unwrap();
        }
        let r_seq = recall_at(&search_all(&seq, &d.queries, 10, 16), &truth, 10);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let idx = Index::new(cfg).unwrap();
        let report = pool.install(|| idx.insert_batch(&items, &BatchOptions::new())).unwrap();
        assert_eq!(report.inserted, 10_000);
        idx.check_integrity().unwrap();
        let r = recall_at(&search_all(&idx, &d.queries, 10, 16), &truth, 10);
        println!("{}: batch recall@10(ef=16) {r:.4}, sequential {r_seq:.4}", storage.name());
        assert!(r >= r_seq - 0.005, "{}: batch recall {r} vs sequential {r_seq}", storage.name());
    }
}
