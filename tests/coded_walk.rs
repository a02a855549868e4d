//! `BatchOptions::coded_walk`: a batch that gathers candidates on temporary 8-bit codes builds a
//! graph that recalls like one built on the stored vectors, stores the exact vectors, and stays
//! sound when other threads write the same ids (and reuse slots) while it runs.

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

const DIM: usize = 32;

fn batch(index: &Index, base: &[Vec<f32>], from: u64, coded: bool) {
    let items: Vec<(u64, &[f32])> =
        base.iter().enumerate().map(|(i, v)| (from + i as u64, v.as_slice())).collect();
    index.insert_batch(&items, &BatchOptions::new().coded_walk(coded)).unwrap();
}

#[test]
fn coded_batches_recall_like_exact_ones_for_f32_and_f16() {
    let base = clustered(4000, DIM, 21);
    let queries = clustered(200, DIM, 22);
    for metric in [Metric::L2, Metric::Cosine] {
        let truth: Vec<Vec<u64>> = queries.iter().map(|q| brute_force(&base, q, 10, metric)).collect();
        for storage in [Storage::F32, Storage::F16] {
            let mut recall = [0.0; 2];
            for (r, coded) in recall.iter_mut().zip([false, true]) {
                let index = Index::new(IndexConfig::new(DIM, metric).storage(storage).seed(3)).unwrap();
                // Two batches: the second walks codes of nodes the first inserted.
                batch(&index, &base[..2500], 0, coded);
                batch(&index, &base[2500..], 2500, coded);
                index.check_integrity().unwrap();
                *r = recall_at(&search_all(&index, &queries, 10, 32), &truth, 10);
                if storage == Storage::F32 && coded {
                    let (got, want) = (index.get(3000).unwrap(), query_form(metric, &base[3000]));
                    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6), "stored {got:?}");
                }
            }
            println!(
                "{metric:?} {storage:?}: recall@10 at ef 32 exact walk {:.4}, coded {:.4}",
                recall[0], recall[1]
            );
            assert!(recall[1] >= recall[0] - 0.01, "{metric:?} {storage:?}: {recall:?}");
        }
    }
}

/// The vector an `f32` index stores for `v`.
fn query_form(metric: Metric, v: &[f32]) -> Vec<f32> {
    if metric != Metric::Cosine {
        return v.to_vec();
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// While a coded batch inserts ids 1000..5000, one thread updates those same ids as soon as
/// they appear, another deletes and re-inserts ids 0..1000 (so freed slots are reused under the
/// batch, the stale-code path), and a third searches. Every write lands as its thread last made
/// it, the graph is sound and searchable afterwards.
#[test]
fn coded_batch_races_same_id_updates_slot_reuse_and_searches() {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(31u64);
    println!("seed {seed} (replay with SEED={seed})");
    let data = clustered(10_000, DIM, seed);
    let (old, new, updates, reinserts) = (&data[..1000], &data[1000..5000], &data[5000..9000], &data[9000..]);
    let index = Index::new(IndexConfig::new(DIM, Metric::L2).seed(seed)).unwrap();
    batch(&index, old, 0, false);
    let done = AtomicBool::new(false);
    let updated = Mutex::new(HashSet::new());
    let reinserted = Mutex::new(HashSet::new());
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let items: Vec<(u64, &[f32])> =
                new.iter().enumerate().map(|(i, v)| (1000 + i as u64, v.as_slice())).collect();
            index.insert_batch(&items, &BatchOptions::new().coded_walk(true)).unwrap();
            done.store(true, Ordering::Release);
        });
        sc.spawn(|| {
            let mut left: Vec<u64> = (1000..5000).collect();
            while !left.is_empty() {
                let finished = done.load(Ordering::Acquire);
                left.retain(|&id| {
                    if index.update(id, &updates[(id - 1000) as usize]).is_ok() {
                        updated.lock().unwrap().insert(id);
                        false
                    } else {
                        true
                    }
                });
                assert!(!finished || left.is_empty(), "ids the batch inserted could not be updated");
            }
        });
        sc.spawn(|| {
            let mut round = 0;
            while !done.load(Ordering::Acquire) || round == 0 {
                for id in (round % 7..1000u64).step_by(7) {
                    index.delete(id).unwrap();
                    index.insert(id, &reinserts[id as usize]).unwrap();
                    reinserted.lock().unwrap().insert(id);
                }
                round += 1;
            }
        });
        sc.spawn(|| {
            let mut i = 0;
            while !done.load(Ordering::Acquire) {
                let hits = index.search(&data[i % data.len()], 5, 32).unwrap();
                assert!(!hits.is_empty());
                i += 1;
            }
        });
    });
    index.repair();
    index.check_integrity().unwrap();
    assert_eq!(index.len(), 5000);
    let (updated, reinserted) = (updated.into_inner().unwrap(), reinserted.into_inner().unwrap());
    assert_eq!(updated.len(), 4000);
    for id in 0..5000u64 {
        let want = if id >= 1000 {
            &updates[(id - 1000) as usize]
        } else if reinserted.contains(&id) {
            &reinserts[id as usize]
        } else {
            &old[id as usize]
        };
        assert_eq!(&index.get(id).unwrap(), want, "id {id}");
    }
    // Searchable: most stored vectors find themselves first (duplicates in the data aside).
    let found = (0..5000u64)
        .step_by(10)
        .filter(|&id| index.search(&index.get(id).unwrap(), 1, 64).unwrap()[0].id == id)
        .count();
    assert!(found >= 480, "{found} of 500 stored vectors found themselves");
}
