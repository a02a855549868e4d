//! Every index error variant is reachable, and a failing call leaves the index unchanged.

mod common;
use hnsw_batch::{Index, IndexConfig, IndexError, Metric, Storage};

fn snapshot(index: &Index, probe: &[f32]) -> (usize, Vec<u64>, Vec<Option<Vec<f32>>>) {
    let hits = index.search(probe, 5, 32).unwrap();
    let vecs = (0..20).map(|i| index.get(i)).collect();
    (index.len(), hits.iter().map(|h| h.id).collect(), vecs)
}

fn filled(metric: Metric, storage: Storage) -> Index {
    let idx = Index::new(IndexConfig::new(4, metric).storage(storage).max_elements(20)).unwrap();
    for i in 0..10u64 {
        idx.insert(i, &[i as f32 + 1.0, 2.0, 3.0, (i % 3) as f32]).unwrap();
    }
    idx
}

#[test]
fn insert_errors_leave_index_unchanged() {
    let idx = filled(Metric::L2, Storage::F32);
    let probe = [1.0, 2.0, 3.0, 0.0];
    let before = snapshot(&idx, &probe);
    let cases: Vec<(u64, Vec<f32>, IndexError)> = vec![
        (100, vec![1.0; 3], IndexError::DimensionMismatch { expected: 4, actual: 3 }),
        (100, vec![1.0, f32::NAN, 0.0, 0.0], IndexError::NonFiniteValue { component: 1, value: f32::NAN }),
        (
            100,
            vec![1.0, 0.0, f32::INFINITY, 0.0],
            IndexError::NonFiniteValue { component: 2, value: f32::INFINITY },
        ),
        (3, vec![9.0; 4], IndexError::DuplicateId { id: 3 }),
    ];
    for (id, v, want) in cases {
        let got = idx.insert(id, &v).unwrap_err();
        match (&got, &want) {
            // NaN != NaN: compare the variant and component.
            (
                IndexError::NonFiniteValue { component: a, .. },
                IndexError::NonFiniteValue { component: b, .. },
            ) => {
                assert_eq!(a, b)
            }
            _ => assert_eq!(got, want),
        }
        assert_eq!(snapshot(&idx, &probe), before, "index changed after {got}");
        assert!(idx.check_integrity().is_ok());
    }
}

#[test]
fn zero_vector_under_cosine() {
    let idx = filled(Metric::Cosine, Storage::F32);
    let before = snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]);
    assert_eq!(idx.insert(50, &[0.0; 4]), Err(IndexError::ZeroVector));
    assert_eq!(idx.search(&[0.0; 4], 1, 10).unwrap_err(), IndexError::ZeroVector);
    assert_eq!(snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]), before);
}

#[test]
fn u8_storage_rejects_unrepresentable_values() {
    let idx = filled(Metric::L2, Storage::U8);
    let before = snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]);
    for bad in [[0.5, 1.0, 1.0, 1.0], [256.0, 1.0, 1.0, 1.0], [-1.0, 1.0, 1.0, 1.0]] {
        assert!(matches!(idx.insert(77, &bad), Err(IndexError::UnrepresentableValue { component: 0, .. })));
    }
    assert_eq!(snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]), before);
    // Queries may be any finite values.
    assert!(idx.search(&[0.5, 1.5, 2.5, -3.0], 3, 10).is_ok());
}

#[test]
fn capacity_exceeded_at_max_elements() {
    let idx = filled(Metric::L2, Storage::F32);
    for i in 10..20u64 {
        idx.insert(i, &[i as f32, 0.0, 0.0, 0.0]).unwrap();
    }
    let before = snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]);
    assert_eq!(idx.insert(20, &[1.0; 4]), Err(IndexError::CapacityExceeded { limit: 20 }));
    assert_eq!(snapshot(&idx, &[1.0, 2.0, 3.0, 0.0]), before);
    // Deleting frees room under max_elements.
    idx.delete(0).unwrap();
    idx.insert(20, &[1.0; 4]).unwrap();
    assert_eq!(idx.len(), 20);
}

#[test]
fn invalid_parameters_are_rejected() {
    let bad = [
        IndexConfig::new(0, Metric::L2),
        IndexConfig::new(hnsw_batch::MAX_DIM + 1, Metric::L2),
        IndexConfig::new(8, Metric::L2).m(1),
        IndexConfig::new(8, Metric::L2).m(hnsw_batch::MAX_M + 1),
        IndexConfig::new(8, Metric::L2).m(16).m0(8),
        IndexConfig::new(8, Metric::L2).m(16).ef_construction(8),
        IndexConfig::new(8, Metric::L2).ef_search(0),
        IndexConfig::new(8, Metric::L2).max_elements(0),
        IndexConfig::new(8, Metric::Cosine).storage(Storage::U8),
    ];
    for cfg in bad {
        assert!(
            matches!(Index::new(cfg.clone()), Err(IndexError::InvalidParameter { .. })),
            "{cfg:?} accepted"
        );
    }
    let idx = filled(Metric::L2, Storage::F32);
    assert!(matches!(idx.search(&[0.0; 4], 0, 10), Err(IndexError::InvalidParameter { name: "k", .. })));
    assert!(matches!(idx.search(&[0.0; 4], 10, 5), Err(IndexError::InvalidParameter { name: "ef", .. })));
    assert!(matches!(idx.search(&[0.0; 3], 1, 5), Err(IndexError::DimensionMismatch { .. })));
    assert!(matches!(idx.search(&[f32::NAN; 4], 1, 5), Err(IndexError::NonFiniteValue { .. })));
}

#[test]
fn delete_and_not_found() {
    let idx = filled(Metric::L2, Storage::F32);
    assert_eq!(idx.delete(99), Err(IndexError::NotFound { id: 99 }));
    assert_eq!(idx.len(), 10);
    idx.delete(4).unwrap();
    assert_eq!(idx.delete(4), Err(IndexError::NotFound { id: 4 }));
    assert!(!idx.contains(4));
    assert!(idx.get(4).is_none());
    let hits = idx.search(&[5.0, 2.0, 3.0, 1.0], 9, 32).unwrap();
    assert_eq!(hits.len(), 9);
    assert!(hits.iter().all(|h| h.id != 4));
    idx.check_integrity().unwrap();
    // The id can be used again.
    idx.insert(4, &[5.0, 2.0, 3.0, 1.0]).unwrap();
    assert_eq!(idx.search(&[5.0, 2.0, 3.0, 1.0], 1, 16).unwrap()[0].id, 4);
}

#[test]
fn update_replaces_vector() {
    let idx = filled(Metric::L2, Storage::F32);
    assert_eq!(idx.update(99, &[1.0; 4]), Err(IndexError::NotFound { id: 99 }));
    assert!(matches!(idx.update(2, &[1.0; 3]), Err(IndexError::DimensionMismatch { .. })));
    assert_eq!(idx.get(2), Some(vec![3.0, 2.0, 3.0, 2.0]));
    idx.update(2, &[100.0, 100.0, 100.0, 100.0]).unwrap();
    assert_eq!(idx.get(2), Some(vec![100.0; 4]));
    assert_eq!(idx.len(), 10);
    assert_eq!(idx.search(&[99.0; 4], 1, 16).unwrap()[0].id, 2);
    assert!(idx.search(&[3.0, 2.0, 3.0, 2.0], 10, 32).unwrap().iter().filter(|h| h.id == 2).count() <= 1);
    idx.check_integrity().unwrap();
}

/// One fault reads the same from `insert` and from `insert_batch`: the batch error only adds
/// `item {index} (id {id}): ` in front.
#[test]
fn index_and_batch_errors_share_their_wording() {
    use hnsw_batch::{BatchInsertable, BatchOptions};
    let single_and_batch = |idx: &Index, id: u64, v: Vec<f32>| {
        let single = idx.insert(id, &v).unwrap_err().to_string();
        let items = vec![(1000u64, vec![1.0, 2.0, 3.0, 4.0]), (id, v)];
        let batch = idx.insert_batch(&items, &BatchOptions::new()).unwrap_err().to_string();
        (single, batch)
    };
    let l2 = filled(Metric::L2, Storage::F32);
    let cosine = filled(Metric::Cosine, Storage::F32);
    let u8s = filled(Metric::L2, Storage::U8);
    let f16s = filled(Metric::L2, Storage::F16);
    let full = Index::new(IndexConfig::new(4, Metric::L2).max_elements(1)).unwrap();
    let cases = [
        (&l2, 100, vec![1.0; 3], "dimension mismatch: index has dimension 4, vector has 3"),
        (&l2, 100, vec![1.0, f32::NAN, 0.0, 0.0], "non-finite value NaN at component 1"),
        (&cosine, 100, vec![0.0; 4], "zero vector: cannot be normalised under the cosine metric"),
        (&u8s, 100, vec![1.0, 0.5, 0.0, 0.0], "value 0.5 at component 1 does not fit the u8 storage type"),
        (
            &f16s,
            100,
            vec![1.0, 7e4, 0.0, 0.0],
            "value 70000 at component 1 does not fit the f16 storage type",
        ),
        (&l2, 3, vec![1.0; 4], "duplicate id 3 (already in the index)"),
    ];
    for (idx, id, v, phrase) in cases {
        let (single, batch) = single_and_batch(idx, id, v);
        assert_eq!(single, phrase);
        assert_eq!(batch, format!("item 1 (id {id}): {phrase}"));
    }
    full.insert(1, &[1.0; 4]).unwrap();
    let single = full.insert(2, &[2.0; 4]).unwrap_err().to_string();
    let batch = full.insert_batch(&[(2u64, vec![2.0; 4])], &BatchOptions::new()).unwrap_err().to_string();
    assert_eq!(single, "capacity exceeded: limit is 1 elements");
    assert_eq!(batch, format!("item 0 (id 2): {single}"));
}
