//! Batch delete and update: counts, not-found handling, dry run and safety limits, and the
//! index staying searchable and consistent.

mod common;
use hnsw_batch::*;

fn filled(n: u64) -> Index {
    let idx = Index::new(IndexConfig::new(4, Metric::L2)).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..n).map(|i| (i, vec![i as f32, (i % 7) as f32, 1.0, 2.0])).collect();
    idx.insert_batch(&items, &BatchOptions::new()).unwrap();
    idx
}

#[test]
fn delete_batch_counts_and_excludes() {
    let idx = filled(200);
    let r = idx.delete_batch(&[1, 2, 3, 3, 999]);
    // The repeated 3 is a failure naming its first position, not an absent id.
    assert_eq!((r.total, r.deleted, r.not_found, r.failures.len()), (5, 3, 1, 1));
    assert_eq!(r.failures[0].index, 3);
    assert_eq!(r.failures[0].error, BatchError::DuplicateId { index: 3, id: 3, first_index: Some(2) });
    assert_eq!(idx.len(), 197);
    let hits = idx.search(&[2.0, 2.0, 1.0, 2.0], 10, 64).unwrap();
    assert!(hits.iter().all(|h| ![1, 2, 3].contains(&h.id)));
    idx.check_integrity().unwrap();
}

#[test]
fn delete_where_respects_limits_and_dry_run() {
    let idx = filled(100);
    let f = |id: u64| id >= 90;
    let dry = idx.delete_where(f, &DeleteOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!(dry.matched, (90..100).collect::<Vec<_>>());
    assert_eq!((dry.deleted, idx.len()), (0, 100));
    assert_eq!(
        idx.delete_where(f, &DeleteOptions { max_affected: Some(9), ..Default::default() }),
        Err(DeleteError::TooMany { limit: 9, found: 10 })
    );
    assert_eq!(
        idx.delete_where(f, &DeleteOptions { confirm_count: Some(11), ..Default::default() }),
        Err(DeleteError::CountMismatch { expected: 11, found: 10 })
    );
    assert_eq!(idx.len(), 100);
    let r = idx
        .delete_where(
            f,
            &DeleteOptions { confirm_count: Some(10), max_affected: Some(10), ..Default::default() },
        )
        .unwrap();
    assert_eq!((r.deleted, idx.len()), (10, 90));
    assert!((90..100).all(|id| !idx.contains(id)));
    idx.check_integrity().unwrap();
}

#[test]
fn update_batch_modes() {
    let idx = filled(50);
    let fp = idx.graph_fingerprint();
    let bad = vec![(1u64, vec![9.0; 4]), (2, vec![f32::NAN; 4]), (77, vec![1.0; 4])];
    let e = idx.update_batch(&bad, BatchMode::AllOrNothing).unwrap_err();
    assert_eq!(e.index(), Some(1));
    assert_eq!(idx.graph_fingerprint(), fp, "all-or-nothing changed the index");
    let r = idx.update_batch(&bad, BatchMode::BestEffort).unwrap();
    assert_eq!((r.updated, r.not_found, r.failures.len()), (1, 1, 1));
    assert_eq!(idx.get(1), Some(vec![9.0; 4]));
    assert_eq!(idx.len(), 50);
    let all: Vec<(u64, Vec<f32>)> = (0..50).map(|i| (i, vec![-(i as f32), 0.0, 0.0, 0.0])).collect();
    let r = idx.update_batch(&all, BatchMode::AllOrNothing).unwrap();
    assert_eq!(r.updated, 50);
    assert_eq!(idx.search(&[-7.0, 0.0, 0.0, 0.0], 1, 32).unwrap()[0].id, 7);
    idx.check_integrity().unwrap();
}
