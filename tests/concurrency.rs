//! Inserts from 4 threads on disjoint ids while 2 threads search: no id lost or duplicated,
//! integrity holds, recall as for a sequential build, searches never see a half-inserted node.

mod common;
use common::*;
use hnsw_batch::{Index, IndexConfig, Metric};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn concurrent_inserts_and_searches() {
    concurrent_inserts_and_searches_with(IndexConfig::new(128, Metric::L2), 4);
}

/// The same with links packed in 3 bytes: searches copy lists whose slots straddle words while
/// inserts rewrite them, so a torn copy would show as a wrong or unfetchable result.
#[test]
fn concurrent_inserts_and_searches_with_3_byte_links() {
    concurrent_inserts_and_searches_with(IndexConfig::new(128, Metric::L2).max_elements(1 << 20), 3);
}

fn concurrent_inserts_and_searches_with(cfg: IndexConfig, link_bytes: usize) {
    let d = sift();
    let index = Arc::new(Index::new(cfg).unwrap());
    assert_eq!(index.link_bytes(), link_bytes);
    let base = Arc::new(d.base);
    let stop = Arc::new(AtomicBool::new(false));
    let mut searchers = Vec::new();
    for t in 0..2 {
        let (index, base, stop) = (index.clone(), base.clone(), stop.clone());
        searchers.push(std::thread::spawn(move || {
            let mut rounds = 0usize;
            while !stop.load(Ordering::Acquire) {
                let q = &base[(rounds * 7919 + t) % base.len()];
                let hits = index.search(q, 10, 32).unwrap();
                // Every result is fully inserted: it can be fetched and its distance is exact.
                for h in &hits {
                    let v = index.get(h.id).expect("result not visible through get");
                    let d = hnsw_batch::distance::scalar::l2_f32(q, &v);
                    assert!((d - h.distance).abs() <= 1e-3 * d.max(1.0), "distance mismatch");
                }
                let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), hits.len(), "duplicate ids in one result");
                rounds += 1;
            }
            rounds
        }));
    }
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (index, base) = (index.clone(), base.clone());
            std::thread::spawn(move || {
                for i in (t..base.len()).step_by(4) {
                    index.insert(i as u64, &base[i]).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    for s in searchers {
        assert!(s.join().unwrap() > 0);
    }
    assert_eq!(index.len(), base.len());
    let mut ids = index.ids();
    ids.sort_unstable();
    assert_eq!(ids, (0..base.len() as u64).collect::<Vec<_>>());
    index.check_integrity().unwrap();
    let truth: Vec<Vec<u64>> = d.gt.iter().map(|g| g.iter().map(|&x| x as u64).collect()).collect();
    let r128 = recall_at(&search_all(&index, &d.queries, 10, 128), &truth, 10);
    let r32 = recall_at(&search_all(&index, &d.queries, 10, 32), &truth, 10);
    println!("concurrent build recall@10: ef=32 {r32:.4}, ef=128 {r128:.4}");
    assert!(r128 >= 0.98 && r32 >= 0.90);
}
