//! Batch insert semantics: the five errors in both modes, all-or-nothing leaves the index as it
//! was, best-effort reports failures by position, the progress sequence, cancellation.

mod common;
use common::*;
use hnsw_batch::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn base_index(metric: Metric) -> Index {
    let idx = Index::new(IndexConfig::new(4, metric).max_elements(30)).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..10).map(|i| (i, vec![i as f32 + 1.0, 1.0, 2.0, 3.0])).collect();
    idx.insert_batch(&items, &BatchOptions::new()).unwrap();
    idx
}

fn state(idx: &Index) -> (usize, Vec<Neighbour>, u64) {
    (idx.len(), idx.search(&[3.0, 1.0, 2.0, 3.0], 5, 20).unwrap(), idx.graph_fingerprint())
}

/// A batch of 6 good items (ids 100..) with one bad item put at position 3.
fn batch_with(bad: (u64, Vec<f32>)) -> Vec<(u64, Vec<f32>)> {
    let mut v: Vec<(u64, Vec<f32>)> = (0..6).map(|i| (100 + i, vec![i as f32, 5.0, 5.0, 5.0])).collect();
    v.insert(3, bad);
    v
}

type Case = (&'static str, Metric, Vec<(u64, Vec<f32>)>);

fn cases() -> Vec<Case> {
    vec![
        ("dimension", Metric::L2, batch_with((200, vec![1.0; 5]))),
        ("nan", Metric::L2, batch_with((200, vec![1.0, f32::NAN, 0.0, 0.0]))),
        ("inf", Metric::L2, batch_with((200, vec![f32::NEG_INFINITY, 0.0, 0.0, 0.0]))),
        ("zero-norm", Metric::Cosine, batch_with((200, vec![0.0; 4]))),
        ("duplicate-in-index", Metric::L2, batch_with((7, vec![1.0; 4]))),
        ("duplicate-in-batch", Metric::L2, batch_with((101, vec![1.0; 4]))),
    ]
}

fn check_error(name: &str, e: &BatchError) {
    assert_eq!(e.index(), Some(3), "{name}: {e}");
    let ok = match name {
        "dimension" => matches!(e, BatchError::DimensionMismatch { id: 200, expected: 4, actual: 5, .. }),
        "nan" => matches!(
            e,
            BatchError::InvalidVector { id: 200, reason: InvalidReason::NonFinite { component: 1, .. }, .. }
        ),
        "inf" => matches!(
            e,
            BatchError::InvalidVector { id: 200, reason: InvalidReason::NonFinite { component: 0, .. }, .. }
        ),
        "zero-norm" => {
            matches!(e, BatchError::InvalidVector { id: 200, reason: InvalidReason::ZeroNorm, .. })
        }
        "duplicate-in-index" => matches!(e, BatchError::DuplicateId { id: 7, first_index: None, .. }),
        "duplicate-in-batch" => matches!(e, BatchError::DuplicateId { id: 101, first_index: Some(1), .. }),
        _ => false,
    };
    assert!(ok, "{name}: unexpected {e:?}");
}

#[test]
fn all_or_nothing_rejects_whole_batch() {
    for (name, metric, batch) in cases() {
        let idx = base_index(metric);
        let before = state(&idx);
        let e = idx.insert_batch(&batch, &BatchOptions::new()).unwrap_err();
        check_error(name, &e);
        assert_eq!(state(&idx), before, "{name}: index changed");
        for (id, _) in &batch {
            if *id >= 100 {
                assert!(!idx.contains(*id), "{name}: {id} inserted");
            }
        }
        idx.check_integrity().unwrap();
    }
}

#[test]
fn best_effort_inserts_the_rest() {
    for (name, metric, batch) in cases() {
        let idx = base_index(metric);
        let r = idx.insert_batch(&batch, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
        assert_eq!(r.total, 7, "{name}");
        assert_eq!(r.failures.len(), 1, "{name}: {:?}", r.failures);
        assert_eq!(r.failures[0].index, 3);
        check_error(name, &r.failures[0].error);
        assert_eq!(r.inserted, 6, "{name}");
        assert_eq!(idx.len(), 16, "{name}");
        for i in 0..6 {
            assert!(idx.contains(100 + i), "{name}: {} missing", 100 + i);
        }
        idx.check_integrity().unwrap();
    }
}

#[test]
fn capacity_exceeded_in_both_modes() {
    let idx = base_index(Metric::L2); // 10 of 30
    let batch: Vec<(u64, Vec<f32>)> = (0..25).map(|i| (100 + i, vec![i as f32, 0.0, 1.0, 2.0])).collect();
    let before = state(&idx);
    let e = idx.insert_batch(&batch, &BatchOptions::new()).unwrap_err();
    assert!(matches!(e, BatchError::CapacityExceeded { index: 20, id: 120, limit: 30 }), "{e:?}");
    assert_eq!(state(&idx), before);
    let r = idx.insert_batch(&batch, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    assert_eq!(r.inserted, 20);
    assert_eq!(r.failures.iter().map(|f| f.index).collect::<Vec<_>>(), (20..25).collect::<Vec<_>>());
    assert!(r.failures.iter().all(|f| matches!(f.error, BatchError::CapacityExceeded { limit: 30, .. })));
    assert_eq!(idx.len(), 30);
    idx.check_integrity().unwrap();
}

#[test]
fn progress_sequence_is_complete_and_monotone() {
    let base = clustered(3000, 16, 3);
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let idx = Index::new(IndexConfig::new(16, Metric::L2)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let opts = BatchOptions::new().on_progress(move |p| ev.lock().unwrap().push(p));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    pool.install(|| idx.insert_batch(&items, &opts)).unwrap();
    let ev = events.lock().unwrap();
    assert_eq!(ev.first().map(|p| p.done), Some(0));
    assert_eq!(ev.iter().filter(|p| p.done == 0).count(), 1, "more than one 0 % event");
    assert_eq!(ev.last().map(|p| p.done), Some(3000));
    assert_eq!(ev.iter().filter(|p| p.done == 3000).count(), 1, "more than one 100 % event");
    assert!(ev.windows(2).all(|w| w[0].done < w[1].done), "not strictly increasing");
    assert!(ev.iter().all(|p| p.total == 3000));
    // At most one event per 1 %, and some in the middle.
    assert!(ev.len() <= 102, "{} events", ev.len());
    assert!(ev.iter().any(|p| (1200..=1800).contains(&p.done)), "no event near 50 %: {:?}", *ev);
}

#[test]
fn cancel_at_30_percent() {
    let base = clustered(4000, 16, 4);
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let idx = Index::new(IndexConfig::new(16, Metric::L2)).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let opts = BatchOptions::new()
        .on_progress(move |p| s2.store(p.done, Ordering::SeqCst))
        .cancel_when(move || seen.load(Ordering::SeqCst) >= 1200);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let e = pool.install(|| idx.insert_batch(&items, &opts)).unwrap_err();
    let BatchError::Cancelled { inserted } = e else { panic!("{e:?}") };
    println!("cancelled after {inserted}");
    assert!((1200..=1400).contains(&inserted), "stopped at {inserted}, not within ~1 % of 30 %");
    assert_eq!(idx.len(), inserted);
    assert_eq!(idx.ids().len(), inserted);
    idx.check_integrity().unwrap();
    // Searchable, and the rest can be inserted afterwards (their ids were released).
    let rest: Vec<(u64, &[f32])> = items.iter().copied().filter(|(id, _)| !idx.contains(*id)).collect();
    assert_eq!(rest.len(), 4000 - inserted);
    idx.insert_batch(&rest, &BatchOptions::new()).unwrap();
    assert_eq!(idx.len(), 4000);
    idx.check_integrity().unwrap();
    assert_eq!(idx.search(&base[5], 1, 32).unwrap()[0].id, 5);
}

#[test]
fn chunked_and_iterator_forms_match() {
    let base = clustered(1000, 8, 8);
    let idx = Index::new(IndexConfig::new(8, Metric::L2)).unwrap();
    let r = idx
        .insert_batch_iter(
            base.iter().enumerate().map(|(i, v)| (i as u64, v.clone())),
            &BatchOptions::new().batch_size(128),
        )
        .unwrap();
    assert_eq!((r.total, r.inserted), (1000, 1000));
    let flat: Vec<f32> = base.iter().flatten().copied().collect();
    let ids: Vec<u64> = (5000..6000).collect();
    idx.insert_batch_flat(&ids, &flat, &BatchOptions::new().batch_size(100)).unwrap();
    assert_eq!(idx.len(), 2000);
    // Iterator form: an error in a later chunk reports its global position.
    let mut bad: Vec<(u64, Vec<f32>)> = (0..300).map(|i| (10_000 + i, vec![1.0 + i as f32; 8])).collect();
    bad[250].1[2] = f32::NAN;
    let e = idx.insert_batch_iter(bad, &BatchOptions::new().batch_size(100)).unwrap_err();
    assert_eq!(e.index(), Some(250));
    idx.check_integrity().unwrap();
}
