//! `Index::to_storage`: a copy under another storage keeps the graph (same fingerprint), ids,
//! metadata, expiry and default beam width; vectors become what the target storage holds;
//! refusals build nothing and leave the source as it was; an `sq8` build searched as `f32`
//! recalls like an `f32` build.

mod common;
use common::*;
use hnsw_batch::expiry::Expiry;
use hnsw_batch::{
    BatchInsertable, BatchOptions, Filter, Index, IndexConfig, IndexError, MetaValue, Metadata, Metric,
    Storage,
};

const DIM: usize = 24;

fn build(storage: Storage, metric: Metric, base: &[Vec<f32>]) -> Index {
    let index = Index::new(IndexConfig::new(DIM, metric).storage(storage).seed(7)).unwrap();
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    index.insert_batch(&items, &BatchOptions::default()).unwrap();
    index
}

/// Whole numbers in `0..=255`, so that every storage (`u8` too) can hold them.
fn bytes_data(n: usize, seed: u64) -> Vec<Vec<f32>> {
    clustered(n, DIM, seed)
        .into_iter()
        .map(|v| v.iter().map(|x| (x * 20.0 + 128.0).clamp(0.0, 255.0).round()).collect())
        .collect()
}

#[test]
fn every_storage_pair_keeps_the_graph_ids_and_vectors() {
    let base = bytes_data(600, 11);
    let all = [Storage::F32, Storage::F16, Storage::U8, Storage::Sq8];
    for from in all {
        let src = build(from, Metric::L2, &base);
        for to in all {
            let dst = src.to_storage(to).unwrap();
            assert_eq!(dst.config().storage, to);
            assert_eq!(dst.graph_fingerprint(), src.graph_fingerprint(), "{from:?} -> {to:?}: graph changed");
            // `ids()` is in no particular order (the id map's slots, which depend on the order
            // the copy published its nodes in).
            let (mut a, mut b) = (dst.ids(), src.ids());
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{from:?} -> {to:?}");
            for (i, v) in base.iter().enumerate() {
                // Whole numbers up to 255: `u8` and `f16` hold them exactly, `sq8` keeps the
                // `f32` original, so each storage gives back the vector inserted.
                assert_eq!(&dst.get(i as u64).unwrap(), v, "{from:?} -> {to:?}: vector of id {i}");
            }
            assert_eq!(to == Storage::Sq8, dst.sq8_params().is_some(), "{from:?} -> {to:?}");
            dst.check_integrity().unwrap();
        }
    }
}

#[test]
fn sq8_built_graph_searched_as_f32_recalls_like_an_f32_build() {
    let base = clustered(3000, DIM, 3);
    let queries = clustered(200, DIM, 4);
    let truth: Vec<Vec<u64>> = queries.iter().map(|q| brute_force(&base, q, 10, Metric::Cosine)).collect();
    let f32_built = build(Storage::F32, Metric::Cosine, &base);
    let via_sq8 = build(Storage::Sq8, Metric::Cosine, &base).to_storage(Storage::F32).unwrap();
    for ef in [16, 32, 64] {
        let a = recall_at(&search_all(&f32_built, &queries, 10, ef), &truth, 10);
        let b = recall_at(&search_all(&via_sq8, &queries, 10, ef), &truth, 10);
        println!("ef {ef}: f32 build {a:.4}, sq8 build as f32 {b:.4}");
        assert!(b >= a - 0.01, "ef {ef}: sq8-built graph recalls {b:.4}, f32-built {a:.4}");
    }
    // Exact distances come back, as from any `f32` index.
    let hit = &via_sq8.search(&base[5], 1, 32).unwrap()[0];
    assert_eq!(hit.id, 5);
    assert!(hit.distance.abs() < 1e-5, "{}", hit.distance);
}

#[test]
fn metadata_expiry_field_indexes_and_default_ef_survive() {
    let base = clustered(300, DIM, 5);
    let src = Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap();
    src.create_field_index("team").unwrap();
    for (i, v) in base.iter().enumerate() {
        let meta: Metadata =
            [("team".to_string(), MetaValue::from(if i % 3 == 0 { "a" } else { "b" }))].into_iter().collect();
        let expiry = if i % 5 == 0 { Expiry::At(u64::MAX - i as u64) } else { Expiry::Never };
        src.insert_with(i as u64, v, Some(meta), expiry).unwrap();
    }
    src.set_ef(77).unwrap();
    let team_a = Filter::eq("team", "a");
    for to in [Storage::F16, Storage::Sq8] {
        let dst = src.to_storage(to).unwrap();
        assert_eq!(dst.ef(), 77);
        assert_eq!(dst.field_indexes(), src.field_indexes());
        assert_eq!(dst.count(&team_a).unwrap(), src.count(&team_a).unwrap());
        for i in 0..base.len() as u64 {
            assert_eq!(dst.get_metadata(i), src.get_metadata(i), "id {i}");
            assert_eq!(dst.get_expiry(i), src.get_expiry(i), "id {i}");
        }
        let hits = dst.search_where(&base[9], 5, 64, &team_a).unwrap();
        assert!(!hits.is_empty() && hits.iter().all(|h| h.id % 3 == 0), "{hits:?}");
    }
}

#[test]
fn unrepresentable_vectors_are_refused_and_the_source_is_unchanged() {
    let mut base = bytes_data(200, 8);
    base[17][3] = 0.5;
    base[40][0] = 1.0e6;
    let src = build(Storage::F32, Metric::L2, &base);
    let before = src.graph_fingerprint();
    let err = src.to_storage(Storage::U8).unwrap_err();
    assert!(matches!(err, IndexError::UnrepresentableValue { component: 3, .. }), "{err}");
    let err = src.to_storage(Storage::F16).unwrap_err();
    assert!(matches!(err, IndexError::UnrepresentableValue { component: 0, .. }), "{err}");
    assert_eq!(src.graph_fingerprint(), before);
    assert_eq!(src.get(17).unwrap()[3], 0.5);
    // What fails one storage suits another.
    let sq8 = src.to_storage(Storage::Sq8).unwrap();
    assert_eq!(sq8.get(40).unwrap()[0], 1.0e6);
}

#[test]
fn tombstones_are_dropped_and_the_copy_keeps_working() {
    let base = clustered(800, DIM, 9);
    let src = build(Storage::Sq8, Metric::Cosine, &base);
    for id in (0..800).step_by(7) {
        src.delete(id).unwrap();
    }
    let dst = src.to_storage(Storage::F32).unwrap();
    assert_eq!(dst.len(), src.len());
    assert_eq!(dst.allocated_nodes(), src.len(), "tombstones were copied");
    dst.check_integrity().unwrap();
    for id in (1..800u64).filter(|id| id % 7 != 0).step_by(13) {
        assert_eq!(dst.search(&base[id as usize], 1, 64).unwrap()[0].id, id);
    }
    // A normal index afterwards: writes, save and load.
    dst.insert(5000, &base[0]).unwrap();
    dst.update(1, &base[2]).unwrap();
    dst.delete(2).unwrap();
    let loaded = hnsw_batch::persist::load_from_bytes(&hnsw_batch::persist::save_to_bytes(&dst)).unwrap();
    assert!(loaded.contains(5000) && !loaded.contains(2));
}

#[test]
fn an_empty_index_converts_and_an_empty_sq8_copy_is_untrained() {
    let src = Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_search(33)).unwrap();
    let dst = src.to_storage(Storage::Sq8).unwrap();
    assert!(dst.is_empty() && dst.sq8_params().is_none());
    assert_eq!((dst.config().m, dst.ef()), (8, 33));
    assert!(matches!(dst.insert(1, &[0.5; DIM]), Err(IndexError::Sq8Untrained)));
    let f16 = src.to_storage(Storage::F16).unwrap();
    f16.insert(1, &[0.5; DIM]).unwrap();
    assert_eq!(f16.search(&[0.5; DIM], 1, 8).unwrap()[0].id, 1);
}

/// A seed from `SEED`, else from the time; printed so a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (replay with SEED={seed})");
    seed
}

/// After a random history of inserts, updates and deletes, an `f32` ↔ `sq8` copy holds the same
/// live ids with bit-identical vectors, so exact searches agree result for result, and its
/// graph passes the integrity check.
#[test]
fn exact_search_agrees_after_random_changes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let pool = clustered(700, DIM, rng.random());
    for (from, to) in [(Storage::F32, Storage::Sq8), (Storage::Sq8, Storage::F32)] {
        let src = build(from, Metric::L2, &pool[..300]);
        for _ in 0..400 {
            let id = rng.random_range(0..400u64);
            let v = &pool[rng.random_range(0..pool.len())];
            match rng.random_range(0..3) {
                0 if !src.contains(id) => src.insert(id, v).unwrap(),
                1 if src.contains(id) => src.update(id, v).unwrap(),
                2 if src.contains(id) => src.delete(id).unwrap(),
                _ => {}
            }
        }
        let dst = src.to_storage(to).unwrap();
        dst.check_integrity().unwrap();
        let (mut a, mut b) = (src.ids(), dst.ids());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "{from:?} -> {to:?}: live ids");
        for &id in &a {
            assert_eq!(dst.get(id), src.get(id), "{from:?} -> {to:?}: vector of id {id}");
        }
        for q in pool.iter().step_by(37) {
            let x = src.search_exact(q, 10, |_| true).unwrap();
            let y = dst.search_exact(q, 10, |_| true).unwrap();
            assert_eq!(x, y, "{from:?} -> {to:?}: exact results");
        }
    }
}
