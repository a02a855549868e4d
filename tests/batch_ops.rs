//! Batch delete and update: counts, not-found handling, dry run and safety limits, and the
//! index staying searchable and consistent.

mod common;
use hnsw_batch::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn filled(n: u64) -> Index {
    let idx = Index::new(IndexConfig::new(4, Metric::L2)).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..n).map(|i| (i, vec![i as f32, (i % 7) as f32, 1.0, 2.0])).collect();
    idx.insert_batch(&items, &BatchOptions::new()).unwrap();
    idx
}

fn best_effort() -> BatchOptions {
    BatchOptions::new().mode(BatchMode::BestEffort)
}

#[test]
fn delete_batch_counts_and_excludes() {
    let idx = filled(200);
    // All-or-nothing (the default): the repeated 3 refuses the batch before anything goes.
    let e = idx.delete_batch(&[1, 2, 3, 3, 999], &BatchOptions::new()).unwrap_err();
    assert_eq!(e, BatchError::DuplicateId { index: 3, id: 3, first_index: Some(2) });
    assert_eq!(idx.len(), 200);
    assert!(idx.contains(1) && idx.contains(2) && idx.contains(3));
    let r = idx.delete_batch(&[1, 2, 3, 3, 999], &best_effort()).unwrap();
    // The repeated 3 is a failure naming its first position, not an absent id.
    assert_eq!((r.total, r.deleted, r.not_found, r.failures.len()), (5, 3, 1, 1));
    assert_eq!(r.ids, [1, 2, 3]);
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
    assert_eq!(dry.ids, (90..100).collect::<Vec<_>>());
    assert_eq!((dry.total, dry.deleted, dry.not_found, dry.dry_run, idx.len()), (10, 10, 0, true, 100));
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
    assert_eq!((r.deleted, r.dry_run, idx.len()), (10, false, 90));
    assert_eq!(r.ids, dry.ids, "the real run deletes what the dry run reported");
    assert!((90..100).all(|id| !idx.contains(id)));
    idx.check_integrity().unwrap();
}

#[test]
fn update_batch_modes() {
    let idx = filled(50);
    let fp = idx.graph_fingerprint();
    let bad = vec![(1u64, vec![9.0; 4]), (2, vec![f32::NAN; 4]), (77, vec![1.0; 4])];
    let e = idx.update_batch(&bad, &BatchOptions::new()).unwrap_err();
    assert_eq!(e.index(), Some(1));
    assert_eq!(idx.graph_fingerprint(), fp, "all-or-nothing changed the index");
    let r = idx.update_batch(&bad, &best_effort()).unwrap();
    assert_eq!((r.updated, r.not_found, r.failures.len()), (1, 1, 1));
    assert_eq!(r.ids, [1]);
    assert_eq!(idx.get(1), Some(vec![9.0; 4]));
    assert_eq!(idx.len(), 50);
    let all: Vec<(u64, Vec<f32>)> = (0..50).map(|i| (i, vec![-(i as f32), 0.0, 0.0, 0.0])).collect();
    let r = idx.update_batch(&all, &BatchOptions::new()).unwrap();
    assert_eq!(r.updated, 50);
    assert_eq!(r.ids, (0..50).collect::<Vec<u64>>());
    assert_eq!(idx.search(&[-7.0, 0.0, 0.0, 0.0], 1, 32).unwrap()[0].id, 7);
    idx.check_integrity().unwrap();
}

/// Update and delete batches take the same progress callback as inserts: one 0 % event, one
/// final event at the total, increasing in between. Catches an update or delete that ignores
/// `on_progress` (no events) or reports a final event short of the total.
#[test]
fn update_and_delete_batches_report_progress() {
    let idx = filled(400);
    let record = || {
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = events.clone();
        (events, BatchOptions::new().on_progress(move |p| e.lock().unwrap().push(p.done)))
    };
    let (events, opts) = record();
    let items: Vec<(u64, Vec<f32>)> = (0..300).map(|i| (i, vec![1.0, i as f32, 0.0, 0.0])).collect();
    assert_eq!(idx.update_batch(&items, &opts).unwrap().updated, 300);
    let ev = events.lock().unwrap().clone();
    assert_eq!((ev.first(), ev.last()), (Some(&0), Some(&300)), "{ev:?}");
    assert!(ev.windows(2).all(|w| w[0] < w[1]) && ev.len() > 2, "{ev:?}");
    let (events, opts) = record();
    let ids: Vec<u64> = (0..300).collect();
    assert_eq!(idx.delete_batch(&ids, &opts).unwrap().deleted, 300);
    let ev = events.lock().unwrap().clone();
    assert_eq!((ev.first(), ev.last()), (Some(&0), Some(&300)), "{ev:?}");
    assert!(ev.windows(2).all(|w| w[0] < w[1]) && ev.len() > 2, "{ev:?}");
}

/// A delete batch cancelled from its progress callback stops part-way, and the cancel's report
/// lists exactly the ids that are gone. Catches a report that counts but does not list, or
/// lists ids it did not delete, and a cancel that is ignored (everything deleted).
#[test]
fn cancelled_delete_batch_reports_exactly_what_went() {
    let idx = filled(1000);
    let ids: Vec<u64> = (0..1000).collect();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let opts = BatchOptions::new()
        .on_progress(move |p| s2.store(p.done, Ordering::SeqCst))
        .cancel_when(move || seen.load(Ordering::SeqCst) >= 300);
    let e = idx.delete_batch(&ids, &opts).unwrap_err();
    let BatchError::Cancelled { report } = e else { panic!("{e:?}") };
    assert!((300..400).contains(&report.deleted), "stopped after {}", report.deleted);
    assert_eq!(report.ids.len(), report.deleted);
    let gone: Vec<u64> = ids.iter().copied().filter(|&id| !idx.contains(id)).collect();
    assert_eq!(report.ids, gone);
    assert_eq!(idx.len(), 1000 - report.deleted);
    idx.check_integrity().unwrap();
}

/// An update batch cancelled from its progress callback: the report's ids are exactly the items
/// whose vector changed, and every other item keeps its old vector. Catches listing items that
/// were never started, or updating items after the cancel.
#[test]
fn cancelled_update_batch_reports_exactly_what_changed() {
    let idx = Index::new(IndexConfig::new(8, Metric::L2)).unwrap();
    let old = common::clustered(2000, 8, 1);
    let fresh = common::clustered(2000, 8, 2);
    let items: Vec<(u64, Vec<f32>)> = old.into_iter().enumerate().map(|(i, v)| (i as u64, v)).collect();
    idx.insert_batch(&items, &BatchOptions::new()).unwrap();
    let new = |i: u64| fresh[i as usize].clone();
    let items: Vec<(u64, Vec<f32>)> = (0..2000).map(|i| (i, new(i))).collect();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let opts = BatchOptions::new()
        .on_progress(move |p| s2.store(p.done, Ordering::SeqCst))
        .cancel_when(move || seen.load(Ordering::SeqCst) >= 600);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let e = pool.install(|| idx.update_batch(&items, &opts)).unwrap_err();
    let BatchError::Cancelled { report } = e else { panic!("{e:?}") };
    assert!((600..1000).contains(&report.updated), "stopped after {}", report.updated);
    assert_eq!(report.ids.len(), report.updated);
    let changed: Vec<u64> = (0..2000).filter(|&i| idx.get(i) == Some(new(i))).collect();
    assert_eq!(report.ids, changed);
    assert_eq!(idx.len(), 2000);
    idx.check_integrity().unwrap();
}

/// `batch_size` splits an update batch into chunks without changing what it does.
#[test]
fn chunked_update_batch_updates_everything() {
    let idx = filled(300);
    let items: Vec<(u64, Vec<f32>)> = (0..300).map(|i| (i, vec![0.0, 0.0, i as f32, 1.0])).collect();
    let r = idx.update_batch(&items, &BatchOptions::new().batch_size(64)).unwrap();
    assert_eq!((r.updated, r.ids.len()), (300, 300));
    assert!((0..300).all(|i| idx.get(i) == Some(vec![0.0, 0.0, i as f32, 1.0])));
}
