//! Batches from 4 threads at once plus concurrent searches: no lost or duplicated ids,
//! integrity passes, and searches only ever return fully inserted vectors.

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn parallel_batches_and_searches() {
    let base = Arc::new(clustered(8000, 32, 77));
    let index = Arc::new(Index::new(IndexConfig::new(32, Metric::L2).ef_construction(100)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (index, base, stop) = (index.clone(), base.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Acquire) {
                let q = &base[n * 31 % base.len()];
                for h in index.search(q, 5, 20).unwrap() {
                    assert!(index.get(h.id).is_some(), "search returned unpublished id {}", h.id);
                }
                n += 1;
            }
            n
        })
    };
    // 4 writers, each inserting 4 batches of 500 (ids interleaved across writers), with one
    // writer also re-sending ids another writer owns: those must fail as duplicates.
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (index, base) = (index.clone(), base.clone());
            std::thread::spawn(move || {
                let mut inserted = 0;
                for b in 0..4u64 {
                    let items: Vec<(u64, &[f32])> = (0..500u64)
                        .map(|j| {
                            let id = (b * 500 + j) * 4 + w;
                            (id, base[id as usize].as_slice())
                        })
                        .collect();
                    inserted += index.insert_batch(&items, &BatchOptions::new()).unwrap().inserted;
                }
                inserted
            })
        })
        .collect();
    let total: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let racer = index.insert_batch(&[(3u64, base[3].as_slice())], &BatchOptions::new());
    assert!(racer.is_err(), "duplicate accepted");
    stop.store(true, Ordering::Release);
    assert!(searcher.join().unwrap() > 0);
    assert_eq!(total, 8000);
    assert_eq!(index.len(), 8000);
    let mut ids = index.ids();
    ids.sort_unstable();
    assert_eq!(ids, (0..8000u64).collect::<Vec<_>>());
    index.check_integrity().unwrap();
    let found = (0..8000usize)
        .step_by(7)
        .filter(|&i| index.search(&base[i], 1, 64).unwrap()[0].id == i as u64)
        .count();
    assert!(found * 1000 >= 999 * 8000usize.div_ceil(7), "{found} found themselves");
}
