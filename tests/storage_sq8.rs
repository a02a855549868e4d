//! `Storage::Sq8`: 8-bit codes for the walk, exact `f32` re-scoring. Recall close to `f32`,
//! exact returned distances, training rules, saturation, persistence, batch operations and
//! durable recovery.

mod common;
use common::*;
use hnsw_batch::distance::scalar;
use hnsw_batch::persist::{
    load_from_bytes, save_to_bytes, CrashMode, DurableIndex, DurableOptions, MemBackend, PersistError,
};
use hnsw_batch::{
    BatchInsertable, BatchMode, BatchOptions, Index, IndexConfig, IndexError, Item, Metric, Storage,
};
use std::sync::Arc;

const DIM: usize = 64;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = scalar::dot_f32(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn exact_distance(metric: Metric, q: &[f32], v: &[f32]) -> f32 {
    match metric {
        Metric::L2 => scalar::l2_f32(q, v),
        _ => 1.0 - scalar::dot_f32(q, v),
    }
}

fn items(base: &[Vec<f32>], from: u64) -> Vec<(u64, &[f32])> {
    base.iter().enumerate().map(|(i, v)| (from + i as u64, v.as_slice())).collect()
}

/// Trained on all of `base`, then inserted one at a time (the graph the seed gives, as for
/// the `f32` index it is compared with).
fn build_trained(cfg: IndexConfig, base: &[Vec<f32>]) -> Index {
    let index = Index::new(cfg).unwrap();
    if index.config().storage == Storage::Sq8 {
        index.train_sq8(base).unwrap();
    }
    for (i, v) in base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    index
}

#[test]
fn recall_within_0_01_of_f32() {
    let seed = 1717;
    println!("seed {seed}");
    let base = clustered(3000, DIM, seed);
    let queries = clustered(1000, DIM, seed + 1);
    let (k, ef) = (10, 64);
    for metric in [Metric::L2, Metric::Cosine] {
        let truth: Vec<Vec<u64>> = queries.iter().map(|q| brute_force(&base, q, k, metric)).collect();
        let cfg = IndexConfig::new(DIM, metric).m(12).ef_construction(100).seed(seed);
        let mut recall = Vec::new();
        for storage in [Storage::F32, Storage::Sq8] {
            let index = build_trained(cfg.clone().storage(storage), &base);
            index.check_integrity().unwrap();
            recall.push(recall_at(&search_all(&index, &queries, k, ef), &truth, k));
        }
        // The first batch trains too: same recall bound for an index built by one batch.
        let batch = Index::new(cfg.clone().storage(Storage::Sq8)).unwrap();
        batch.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
        batch.check_integrity().unwrap();
        recall.push(recall_at(&search_all(&batch, &queries, k, ef), &truth, k));
        let (f32_recall, sq8_recall, batch_recall) = (recall[0], recall[1], recall[2]);
        println!(
            "{metric:?} ef {ef}: recall@{k} f32 {f32_recall:.4}, sq8 {sq8_recall:.4}, sq8 batch {batch_recall:.4}"
        );
        assert!(f32_recall > 0.98, "{metric:?}: f32 recall {f32_recall} too low for a meaningful comparison");
        assert!(f32_recall - sq8_recall <= 0.01 + 1e-9, "{metric:?}: sq8 {sq8_recall} vs f32 {f32_recall}");
        assert!(
            f32_recall - batch_recall <= 0.01 + 1e-9,
            "{metric:?}: batch {batch_recall} vs f32 {f32_recall}"
        );
    }
}

#[test]
fn returned_distances_are_exact_and_get_returns_the_original() {
    let seed = 77;
    println!("seed {seed}");
    let base: Vec<Vec<f32>> =
        clustered(800, DIM, seed).into_iter().map(|v| v.into_iter().map(|x| x * 37.5).collect()).collect();
    let queries = clustered(40, DIM, seed + 1);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        for rerank in [0, 3] {
            let cfg = IndexConfig::new(DIM, metric)
                .m(8)
                .ef_construction(64)
                .seed(seed)
                .storage(Storage::Sq8)
                .rerank(rerank);
            let index = Index::new(cfg).unwrap();
            index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
            for (i, v) in base.iter().enumerate() {
                let got = index.get(i as u64).unwrap();
                if metric == Metric::Cosine {
                    let want = normalised(v);
                    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6), "{i}");
                } else {
                    assert_eq!(bits(&got), bits(v), "{metric:?}: id {i}");
                }
            }
            for q in &queries {
                let qf = if metric == Metric::Cosine { normalised(q) } else { q.clone() };
                let hits = index.search(q, 10, 64).unwrap();
                assert_eq!(hits.len(), 10);
                for w in hits.windows(2) {
                    assert!(w[0].distance <= w[1].distance, "{metric:?}: not sorted");
                }
                for hit in hits {
                    let want = exact_distance(metric, &qf, &index.get(hit.id).unwrap());
                    let tol = 1e-5 * want.abs().max(1.0);
                    assert!(
                        (hit.distance - want).abs() <= tol,
                        "{metric:?} rerank {rerank}: {} vs exact {want}",
                        hit.distance
                    );
                }
            }
        }
    }
}

#[test]
fn untrained_single_insert_is_a_typed_error_and_train_sq8_enables_it() {
    let cfg = IndexConfig::new(4, Metric::L2).storage(Storage::Sq8);
    let index = Index::new(cfg.clone()).unwrap();
    let before = save_to_bytes(&index);
    let err = index.insert(1, &[1.0, 2.0, 3.0, 4.0]).unwrap_err();
    assert_eq!(err, IndexError::Sq8Untrained);
    assert!(err.to_string().contains("insert a batch first or call train_sq8"), "{err}");
    assert_eq!((index.len(), index.allocated_nodes()), (0, 0));
    assert!(index.sq8_params().is_none() && !index.contains(1));
    assert_eq!(save_to_bytes(&index), before);
    assert!(index.search(&[0.0; 4], 1, 8).unwrap().is_empty());
    // An untrained empty index saves and loads.
    let loaded = load_from_bytes(&before).unwrap();
    assert_eq!(loaded.config().storage, Storage::Sq8);
    assert!(loaded.sq8_params().is_none());
    assert_eq!(loaded.insert(1, &[1.0; 4]), Err(IndexError::Sq8Untrained));

    // Bad training calls change nothing.
    let empty: [Vec<f32>; 0] = [];
    assert!(matches!(index.train_sq8(&empty), Err(IndexError::InvalidParameter { .. })));
    assert!(matches!(index.train_sq8(&[vec![1.0; 3]]), Err(IndexError::DimensionMismatch { .. })));
    assert!(matches!(index.train_sq8(&[vec![f32::NAN; 4]]), Err(IndexError::NonFiniteValue { .. })));
    assert!(index.sq8_params().is_none());
    let f32_index = Index::new(IndexConfig::new(4, Metric::L2)).unwrap();
    assert!(matches!(f32_index.train_sq8(&[vec![1.0; 4]]), Err(IndexError::InvalidParameter { .. })));

    let sample: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32, -(i as f32), 0.5 * i as f32, 1.0]).collect();
    index.train_sq8(&sample).unwrap();
    assert_eq!(index.sq8_params().unwrap().lo(), &[0.0, -49.0, 0.0, 1.0]);
    assert!(matches!(index.train_sq8(&sample), Err(IndexError::InvalidParameter { .. })));
    for (i, v) in sample.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    assert_eq!(index.len(), 50);
    for (i, v) in sample.iter().enumerate() {
        let hit = index.search(v, 1, 16).unwrap()[0];
        assert_eq!((hit.id, hit.distance), (i as u64, 0.0));
    }
    index.check_integrity().unwrap();

    // `rerank` is for sq8 only.
    assert!(matches!(
        Index::new(IndexConfig::new(4, Metric::L2).rerank(5)),
        Err(IndexError::InvalidParameter { name: "rerank", .. })
    ));
}

#[test]
fn first_batch_trains_on_its_valid_items_whatever_the_entry_point() {
    let seed = 21;
    println!("seed {seed}");
    let base = clustered(300, 8, seed);
    let cfg = IndexConfig::new(8, Metric::L2).m(6).ef_construction(32).storage(Storage::Sq8);
    // insert_batch_flat, with a bad item that must not widen the range.
    let flat: Vec<f32> = base.iter().flatten().copied().collect();
    let ids: Vec<u64> = (0..300).collect();
    let a = Index::new(cfg.clone()).unwrap();
    a.insert_batch_flat(&ids, &flat, &BatchOptions::new()).unwrap();
    let b = Index::new(cfg.clone()).unwrap();
    let mut with_bad = items(&base, 0);
    let bad = vec![f32::INFINITY; 8];
    with_bad.push((999, &bad));
    let r = b.insert_batch(&with_bad, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    assert_eq!((r.inserted, r.failures.len()), (300, 1));
    let c = Index::new(cfg.clone()).unwrap();
    let its: Vec<Item<&[f32]>> =
        base.iter().enumerate().map(|(i, v)| Item::new(i as u64, v.as_slice())).collect();
    c.insert_items(&its, &BatchOptions::new()).unwrap();
    let d = Index::new(cfg).unwrap();
    d.train_sq8(&base).unwrap();
    for index in [&a, &b, &c] {
        assert_eq!(index.sq8_params(), d.sq8_params());
        assert_eq!(index.len(), 300);
        // Later single inserts work.
        index.insert(5000, &base[0]).unwrap();
    }
}

#[test]
fn out_of_range_vectors_are_found_at_rank_one() {
    let seed = 31;
    println!("seed {seed}");
    let base = clustered(1000, DIM, seed);
    let far: Vec<Vec<f32>> =
        clustered(50, DIM, seed + 1).into_iter().map(|v| v.into_iter().map(|x| x * 10.0).collect()).collect();
    for metric in [Metric::L2, Metric::InnerProduct] {
        let cfg = IndexConfig::new(DIM, metric).m(8).ef_construction(64).seed(seed).storage(Storage::Sq8);
        let index = Index::new(cfg).unwrap();
        index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
        for (i, v) in far.iter().enumerate() {
            index.insert(10_000 + i as u64, v).unwrap();
        }
        index.check_integrity().unwrap();
        for (i, v) in far.iter().enumerate() {
            let id = 10_000 + i as u64;
            assert_eq!(bits(&index.get(id).unwrap()), bits(v));
            if metric == Metric::L2 {
                let hit = index.search(v, 10, 64).unwrap()[0];
                assert_eq!((hit.id, hit.distance), (id, 0.0), "{metric:?}");
            } else {
                // Under inner product the vector itself is not always its own nearest; the
                // exact scan says which is, and the search must agree at rank 1.
                let want = index.search_exact(v, 1, |_| true).unwrap()[0];
                assert_eq!(index.search(v, 10, 64).unwrap()[0], want, "{metric:?}");
            }
        }
    }
}

#[test]
fn save_load_roundtrip() {
    let seed = 5;
    println!("seed {seed}");
    let base = clustered(1500, DIM, seed);
    let queries = clustered(50, DIM, seed + 1);
    for metric in [Metric::L2, Metric::Cosine] {
        let cfg = IndexConfig::new(DIM, metric)
            .m(8)
            .ef_construction(64)
            .seed(seed)
            .storage(Storage::Sq8)
            .rerank(20);
        let index = build_trained(cfg, &base);
        for id in (0..1500u64).step_by(9) {
            index.delete(id).unwrap();
        }
        index.compact();
        let bytes = save_to_bytes(&index);
        let loaded = load_from_bytes(&bytes).unwrap();
        assert_eq!(loaded.config(), index.config());
        assert_eq!(loaded.sq8_params(), index.sq8_params());
        assert_eq!(loaded.len(), index.len());
        for q in &queries {
            assert_eq!(index.search(q, 10, 64).unwrap(), loaded.search(q, 10, 64).unwrap());
        }
        for id in index.ids() {
            assert_eq!(bits(&index.get(id).unwrap()), bits(&loaded.get(id).unwrap()));
        }
        assert_eq!(save_to_bytes(&loaded), bytes);
        loaded.check_integrity().unwrap();
        loaded.insert(99_999, &queries[0]).unwrap();
        assert_eq!(loaded.search(&queries[0], 1, 64).unwrap()[0].id, 99_999);
    }
}

#[test]
fn damaged_sq8_params_are_rejected() {
    let base = clustered(100, 8, 2);
    let index =
        Index::new(IndexConfig::new(8, Metric::L2).m(4).ef_construction(16).storage(Storage::Sq8)).unwrap();
    index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
    let bytes = save_to_bytes(&index);
    // Every prefix fails cleanly (never a panic).
    for cut in (0..bytes.len()).step_by(7) {
        assert!(load_from_bytes(&bytes[..cut]).is_err(), "{cut}");
    }
}

#[test]
fn batch_insert_update_delete() {
    let seed = 9;
    println!("seed {seed}");
    let base = clustered(2000, DIM, seed);
    let fresh = clustered(300, DIM, seed + 1);
    let index =
        Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64).storage(Storage::Sq8)).unwrap();
    let report = index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
    assert_eq!(report.inserted, 2000);
    let gone: Vec<u64> = (0..2000).step_by(5).collect();
    assert_eq!(index.delete_batch(&gone, &BatchOptions::new()).unwrap().deleted, gone.len());
    let updates: Vec<(u64, Vec<f32>)> =
        (1..2000u64).step_by(5).zip(&fresh).map(|(id, v)| (id, v.clone())).collect();
    assert_eq!(index.update_batch(&updates, &BatchOptions::new()).unwrap().updated, updates.len());
    index.update(2, &fresh[0]).unwrap();
    index.check_integrity().unwrap();
    assert_eq!(index.len(), 2000 - gone.len());
    for id in &gone {
        assert!(!index.contains(*id));
    }
    for (id, v) in &updates {
        assert_eq!(bits(&index.get(*id).unwrap()), bits(v));
        let hits = index.search(v, 2, 64).unwrap();
        assert!(hits[0].distance == 0.0 && (hits[0].id == *id || hits[1].id == *id), "{hits:?}");
    }
    for q in fresh.iter().take(30) {
        assert!(index.search(q, 10, 64).unwrap().iter().all(|h| h.id % 5 != 0));
    }
    index.compact();
    index.check_integrity().unwrap();
}

#[test]
fn memory_counts_the_originals_and_hot_memory_does_not() {
    let base = clustered(500, DIM, 4);
    let build = |storage| {
        let index =
            Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(32).storage(storage)).unwrap();
        index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
        index
    };
    let (f, q) = (build(Storage::F32), build(Storage::Sq8));
    println!(
        "f32 {} / hot {}; sq8 {} / hot {}",
        f.memory_bytes(),
        f.hot_memory_bytes(),
        q.memory_bytes(),
        q.hot_memory_bytes()
    );
    assert_eq!(f.memory_bytes(), f.hot_memory_bytes());
    assert!(q.memory_bytes() > f.memory_bytes());
    assert!(q.hot_memory_bytes() < f.hot_memory_bytes());
    assert_eq!(q.memory_bytes() - q.hot_memory_bytes(), q.allocated_nodes() * DIM * 4);
}

#[test]
fn durable_index_recovers_and_replay_trains_identically() {
    let seed = 3;
    println!("seed {seed}");
    let base = clustered(400, 16, seed);
    let cfg =
        IndexConfig::new(16, Metric::InnerProduct).m(6).ef_construction(32).seed(seed).storage(Storage::Sq8);
    // Small records: the first batch is logged as a group of several records, and replay must
    // train on the whole group, as the live insert did.
    let opts = DurableOptions::new().checkpoint_log_bytes(None).max_record_bytes(4096);
    let fs = Arc::new(MemBackend::new());
    let expect = |db: &DurableIndex| {
        let mut ids = db.ids();
        ids.sort_unstable();
        ids.into_iter().map(|id| (id, bits(&db.get(id).unwrap()))).collect::<Vec<_>>()
    };
    let params = |db: &DurableIndex| load_from_bytes(&db.snapshot_bytes()).unwrap().sq8_params().cloned();
    let (before, trained) = {
        let db = DurableIndex::open_with(fs.clone(), "db", cfg.clone(), opts.clone()).unwrap();
        assert!(matches!(db.insert(1, &base[0]), Err(PersistError::Index(IndexError::Sq8Untrained))));
        let first: Vec<(u64, Vec<f32>)> =
            base[..300].iter().cloned().enumerate().map(|(i, v)| (i as u64, v)).collect();
        db.insert_batch(&first, &BatchOptions::new()).unwrap();
        let more: Vec<(u64, Vec<f32>)> =
            base[300..].iter().cloned().enumerate().map(|(i, v)| (300 + i as u64, v)).collect();
        db.insert_batch(&more, &BatchOptions::new()).unwrap();
        db.insert(1000, &[50.0; 16]).unwrap();
        db.delete(7).unwrap();
        db.update(8, &base[399]).unwrap();
        (expect(&db), params(&db))
    };
    assert!(trained.is_some());
    fs.crash_with(CrashMode::DropUnsynced);
    let db = DurableIndex::open_with(fs.clone(), "db", cfg.clone(), opts.clone()).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.snapshot_generation, r.items_skipped), (0, 0));
    assert!(r.records_replayed > 4, "{r:?}");
    assert_eq!(db.config().storage, Storage::Sq8);
    db.check_integrity().unwrap();
    assert_eq!(expect(&db), before);
    assert_eq!(params(&db), trained);
    assert_eq!(db.len(), 400);
    assert_eq!(db.search(&[50.0; 16], 1, 32).unwrap()[0].id, 1000);
    // Through a checkpoint: the parameters travel in the snapshot.
    db.checkpoint().unwrap();
    drop(db);
    let db = DurableIndex::open_with(fs, "db", cfg, opts).unwrap();
    assert_eq!(expect(&db), before);
    assert_eq!(params(&db), trained);
}

#[test]
fn automatic_rerank_rescores_max_of_2k_and_20_and_an_explicit_one_its_count() {
    let seed = 17;
    println!("seed {seed}");
    let base = clustered(1200, DIM, seed);
    let queries = clustered(20, DIM, seed + 1);
    let cfg = IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64).seed(seed).storage(Storage::Sq8);
    let auto = build_trained(cfg.clone(), &base);
    let fixed = build_trained(cfg.rerank(50), &base);
    for q in &queries {
        // (k, ef, re-scored under auto, under rerank 50): never more than the ef candidates.
        for (k, ef, want_auto, want_fixed) in
            [(1, 100, 20, 50), (10, 100, 20, 50), (30, 100, 60, 50), (5, 12, 12, 12)]
        {
            let (hits, stats) = auto.search_with_stats(q, k, ef).unwrap();
            assert_eq!(stats.exact_rescored, want_auto, "auto k {k} ef {ef}");
            assert_eq!(hits.len(), k);
            let (_, stats) = fixed.search_with_stats(q, k, ef).unwrap();
            assert_eq!(stats.exact_rescored, want_fixed, "rerank 50, k {k} ef {ef}");
        }
        // The same graph (same seed, same order): re-scoring 20 or 50 of 100 returns exact
        // distances, nearest first.
        let a = auto.search(q, 10, 100).unwrap();
        for w in a.windows(2) {
            assert!(w[0].distance <= w[1].distance);
        }
        for n in &a {
            let want = exact_distance(Metric::L2, q, &auto.get(n.id).unwrap());
            assert!((n.distance - want).abs() <= 1e-5 * want.max(1.0), "{} vs exact {want}", n.distance);
        }
    }
    // Other storages re-score nothing.
    let f32_index = Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64)).unwrap();
    f32_index.insert_batch(&items(&base, 0), &BatchOptions::new()).unwrap();
    assert_eq!(f32_index.search_with_stats(&queries[0], 10, 100).unwrap().1.exact_rescored, 0);
}
