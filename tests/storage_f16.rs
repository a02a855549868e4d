//! `Storage::F16`: recall close to `f32`, values rounded to half precision, out-of-range values
//! rejected, persistence, batch operations and durable recovery.

mod common;
use common::*;
use hnsw_batch::distance::{decode_f16, encode_f16, scalar};
use hnsw_batch::persist::{
    load_from_bytes, save_to_bytes, CrashMode, DurableIndex, DurableOptions, MemBackend,
};
use hnsw_batch::{
    BatchError, BatchInsertable, BatchOptions, Index, IndexConfig, IndexError, InvalidReason, Metric, Storage,
};
use std::sync::Arc;

const DIM: usize = 64;

/// What `f16` storage keeps of `v`: each component rounded to the nearest half float.
fn rounded(v: &[f32]) -> Vec<f32> {
    let mut bits = vec![0u16; v.len()];
    encode_f16(v, &mut bits);
    let mut out = vec![0.0; v.len()];
    decode_f16(&bits, &mut out);
    out
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = scalar::dot_f32(v, v).sqrt();
    v.iter().map(|x| x / n).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn build_one_by_one(cfg: IndexConfig, base: &[Vec<f32>]) -> Index {
    let index = Index::new(cfg).unwrap();
    for (i, v) in base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    index
}

/// Truth is computed on the exact `f32` data, so `f16` rounding reorders near-ties at the k-th
/// neighbour: on this data cosine loses about 0.001 even where `f32` recall is 1 (seen at
/// ef 128), L2 under 0.0005.
#[test]
fn recall_within_0_002_of_f32() {
    let seed = 1313;
    println!("seed {seed}");
    let base = clustered(3000, DIM, seed);
    let queries = clustered(1000, DIM, seed + 1);
    let (k, ef) = (10, 64);
    for metric in [Metric::L2, Metric::Cosine] {
        let truth: Vec<Vec<u64>> = queries.iter().map(|q| brute_force(&base, q, k, metric)).collect();
        let cfg = IndexConfig::new(DIM, metric).m(12).ef_construction(100).seed(seed);
        let mut recall = Vec::new();
        for storage in [Storage::F32, Storage::F16] {
            // One at a time, so each graph is the one the seed gives.
            let index = build_one_by_one(cfg.clone().storage(storage), &base);
            index.check_integrity().unwrap();
            recall.push(recall_at(&search_all(&index, &queries, k, ef), &truth, k));
        }
        let (f32_recall, f16_recall) = (recall[0], recall[1]);
        println!("{metric:?} ef {ef}: recall@{k} f32 {f32_recall:.4}, f16 {f16_recall:.4}");
        assert!(f32_recall > 0.98, "{metric:?}: f32 recall {f32_recall} too low for a meaningful comparison");
        assert!(
            (f32_recall - f16_recall).abs() <= 0.002 + 1e-9,
            "{metric:?}: f16 recall {f16_recall} vs f32 {f32_recall}"
        );
    }
}

#[test]
fn stored_values_are_half_rounded_and_distances_match_the_reference() {
    let seed = 77;
    println!("seed {seed}");
    // Scaled so that components span several binary orders of magnitude, some below 1.
    let base: Vec<Vec<f32>> =
        clustered(800, DIM, seed).into_iter().map(|v| v.into_iter().map(|x| x * 37.5).collect()).collect();
    let queries = clustered(40, DIM, seed + 1);
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let cfg = IndexConfig::new(DIM, metric).m(8).ef_construction(64).seed(seed).storage(Storage::F16);
        let index = build_one_by_one(cfg, &base);
        let stored = |v: &[f32]| if metric == Metric::Cosine { rounded(&normalised(v)) } else { rounded(v) };
        for (i, v) in base.iter().enumerate() {
            let got = index.get(i as u64).unwrap();
            if metric == Metric::Cosine {
                // The index normalises with its own arithmetic: allow one f16 step of difference.
                let want = stored(v);
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1e-2)), "{i}");
            } else {
                assert_eq!(bits(&got), bits(&stored(v)), "{metric:?}: id {i}");
            }
        }
        for q in &queries {
            let q = if metric == Metric::Cosine { normalised(q) } else { q.clone() };
            for hit in index.search(&q, 10, 64).unwrap() {
                let v = index.get(hit.id).unwrap();
                let want = match metric {
                    Metric::L2 => scalar::l2_f32(&q, &v),
                    _ => 1.0 - scalar::dot_f32(&q, &v),
                };
                let tol = 1e-4 * want.abs().max(1.0);
                assert!(
                    (hit.distance - want).abs() <= tol,
                    "{metric:?}: {} vs reference {want}",
                    hit.distance
                );
            }
        }
    }
}

#[test]
fn out_of_range_values_are_rejected_and_leave_the_index_unchanged() {
    let index = Index::new(IndexConfig::new(4, Metric::L2).storage(Storage::F16)).unwrap();
    for i in 0..10u64 {
        index.insert(i, &[i as f32, 1.0, 2.0, 3.0]).unwrap();
    }
    let ids_before = {
        let mut ids = index.ids();
        ids.sort_unstable();
        ids
    };
    let get_before: Vec<_> = (0..10).map(|i| index.get(i)).collect();
    let bad = [1.0, 2.0, 70000.0, 3.0];
    let err = index.insert(100, &bad).unwrap_err();
    assert_eq!(err, IndexError::UnrepresentableValue { component: 2, value: 70000.0, storage: "f16" });
    assert_eq!(err.to_string(), "value 70000 at component 2 does not fit the f16 storage type");
    assert!(matches!(
        index.insert(101, &[-70000.0, 0.0, 0.0, 0.0]),
        Err(IndexError::UnrepresentableValue { component: 0, storage: "f16", .. })
    ));
    assert!(matches!(index.update(3, &bad), Err(IndexError::UnrepresentableValue { component: 2, .. })));
    let items = vec![(200u64, vec![1.0; 4]), (201, bad.to_vec())];
    match index.insert_batch(&items, &BatchOptions::new()) {
        Err(BatchError::InvalidVector { index: 1, id: 201, reason }) => {
            assert_eq!(
                reason,
                InvalidReason::Unrepresentable { component: 2, value: 70000.0, storage: "f16" }
            );
            assert_eq!(reason.to_string(), "value 70000 at component 2 does not fit the f16 storage type");
        }
        other => panic!("expected an invalid vector, got {other:?}"),
    }
    assert!(index.update_batch(&[(4u64, bad.to_vec())], &BatchOptions::new()).is_err());
    assert_eq!(index.len(), 10);
    let mut ids = index.ids();
    ids.sort_unstable();
    assert_eq!(ids, ids_before);
    assert_eq!((0..10).map(|i| index.get(i)).collect::<Vec<_>>(), get_before);
    index.check_integrity().unwrap();

    // The largest finite half float is accepted and stored exactly.
    index.insert(300, &[65504.0, -65504.0, 0.0, 1.0]).unwrap();
    assert_eq!(index.get(300).unwrap(), vec![65504.0, -65504.0, 0.0, 1.0]);
    // Under cosine the stored vector is normalised, so a large magnitude fits.
    let cosine = Index::new(IndexConfig::new(4, Metric::Cosine).storage(Storage::F16)).unwrap();
    cosine.insert(1, &bad).unwrap();
    let got = cosine.get(1).unwrap();
    assert!(got.iter().all(|x| x.is_finite()) && (got[2] - 1.0).abs() < 1e-3, "{got:?}");
}

#[test]
fn save_load_roundtrip() {
    let seed = 5;
    println!("seed {seed}");
    let base = clustered(1500, DIM, seed);
    let queries = clustered(50, DIM, seed + 1);
    for metric in [Metric::L2, Metric::Cosine] {
        let cfg = IndexConfig::new(DIM, metric).m(8).ef_construction(64).seed(seed).storage(Storage::F16);
        let index = build_one_by_one(cfg, &base);
        for id in (0..1500u64).step_by(9) {
            index.delete(id).unwrap();
        }
        index.compact();
        let bytes = save_to_bytes(&index);
        let loaded = load_from_bytes(&bytes).unwrap();
        assert_eq!(loaded.config().storage, Storage::F16);
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
fn batch_insert_update_delete() {
    let seed = 9;
    println!("seed {seed}");
    let base = clustered(2000, DIM, seed);
    let fresh = clustered(300, DIM, seed + 1);
    let index =
        Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64).storage(Storage::F16)).unwrap();
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let report = index.insert_batch(&items, &BatchOptions::new()).unwrap();
    assert_eq!(report.inserted, 2000);
    let gone: Vec<u64> = (0..2000).step_by(5).collect();
    assert_eq!(index.delete_batch(&gone, &BatchOptions::new()).unwrap().deleted, gone.len());
    let updates: Vec<(u64, Vec<f32>)> =
        (1..2000u64).step_by(5).zip(&fresh).map(|(id, v)| (id, v.clone())).collect();
    assert_eq!(index.update_batch(&updates, &BatchOptions::new()).unwrap().updated, updates.len());
    index.check_integrity().unwrap();
    assert_eq!(index.len(), 2000 - gone.len());
    for id in &gone {
        assert!(!index.contains(*id));
    }
    for (id, v) in &updates {
        assert_eq!(bits(&index.get(*id).unwrap()), bits(&rounded(v)));
        assert_eq!(index.search(v, 1, 64).unwrap()[0].id, *id);
    }
    for q in fresh.iter().take(30) {
        assert!(index.search(q, 10, 64).unwrap().iter().all(|h| h.id % 5 != 0));
    }
}

#[test]
fn durable_index_recovers() {
    let seed = 3;
    println!("seed {seed}");
    let base = clustered(400, 16, seed);
    let cfg =
        IndexConfig::new(16, Metric::InnerProduct).m(6).ef_construction(32).seed(seed).storage(Storage::F16);
    let opts = DurableOptions::new().checkpoint_log_bytes(None);
    let fs = Arc::new(MemBackend::new());
    let expect = |db: &DurableIndex| {
        let mut ids = db.ids();
        ids.sort_unstable();
        ids.into_iter().map(|id| (id, bits(&db.get(id).unwrap()))).collect::<Vec<_>>()
    };
    let before = {
        let db = DurableIndex::open_with(fs.clone(), "db", cfg.clone(), opts.clone()).unwrap();
        let items: Vec<(u64, Vec<f32>)> =
            base[..300].iter().cloned().enumerate().map(|(i, v)| (i as u64, v)).collect();
        db.insert_batch(&items, &BatchOptions::new()).unwrap();
        db.checkpoint().unwrap();
        // Logged after the snapshot: replayed on reopen.
        let more: Vec<(u64, Vec<f32>)> =
            base[300..].iter().cloned().enumerate().map(|(i, v)| (300 + i as u64, v)).collect();
        db.insert_batch(&more, &BatchOptions::new()).unwrap();
        db.delete(7).unwrap();
        db.update(8, &base[399]).unwrap();
        assert!(matches!(
            db.insert(1000, &[70000.0; 16]),
            Err(hnsw_batch::PersistError::Index(IndexError::UnrepresentableValue { storage: "f16", .. }))
        ));
        assert_eq!(bits(&db.get(8).unwrap()), bits(&rounded(&base[399])));
        expect(&db)
    };
    fs.crash_with(CrashMode::DropUnsynced);
    let db = DurableIndex::open_with(fs.clone(), "db", cfg, opts).unwrap();
    let r = db.recovery_report();
    assert_eq!((r.snapshot_generation, r.records_replayed, r.items_skipped), (1, 3, 0));
    assert_eq!(db.config().storage, Storage::F16);
    db.check_integrity().unwrap();
    assert_eq!(expect(&db), before);
    assert_eq!(db.len(), 399);
}
