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
    let BatchError::Cancelled { report } = &e else { panic!("{e:?}") };
    let inserted = report.inserted;
    println!("{e}");
    assert!((1200..=1400).contains(&inserted), "stopped at {inserted}, not within ~1 % of 30 %");
    assert_eq!(e.to_string(), format!("cancelled after committing {inserted} of 4000 items"));
    assert_eq!(idx.len(), inserted);
    assert_eq!(idx.ids().len(), inserted);
    // The report says which items went in: exactly the ids the index holds, in input order.
    let present: Vec<u64> = items.iter().map(|(id, _)| *id).filter(|&id| idx.contains(id)).collect();
    assert_eq!(report.ids, present);
    assert_eq!((report.total, report.failures.len()), (4000, 0));
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
    assert_eq!(e.error.index(), Some(250));
    // Per-chunk atomicity: the two chunks before the bad one are in, the bad chunk is not.
    assert_eq!(e.committed.inserted, 200, "{e}");
    assert_eq!(e.committed.ids, (10_000..10_200).collect::<Vec<u64>>());
    assert_eq!(idx.len(), 2200);
    assert!(idx.contains(10_199) && !idx.contains(10_200));
    assert!(e.to_string().starts_with("after committing 200 items: item 250"), "{e}");
    idx.check_integrity().unwrap();
}

/// Iterator form, cancelled in its third chunk: `committed` counts the whole chunks before it
/// and the part of the third inserted before the cancel, and equals what the index gained.
/// Catches reporting only the current chunk's count (or only the earlier chunks').
#[test]
fn iterator_cancel_reports_everything_committed() {
    let base = clustered(600, 8, 21);
    let idx = Index::new(IndexConfig::new(8, Metric::L2)).unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let p2 = polls.clone();
    // Chunks of 200 poll at start and then every item (step 1): cancel in the third chunk.
    let opts =
        BatchOptions::new().batch_size(200).cancel_when(move || p2.fetch_add(1, Ordering::SeqCst) > 450);
    // One thread, so every step's poll happens (none is skipped by a busy reporter).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let input = base.iter().enumerate().map(|(i, v)| (i as u64, v.clone()));
    let e = pool.install(|| idx.insert_batch_iter(input, &opts)).unwrap_err();
    let BatchError::Cancelled { report } = &e.error else { panic!("{e:?}") };
    assert_eq!(*report, e.committed);
    let committed = e.committed.inserted;
    assert!((400..600).contains(&committed), "{e}");
    assert_eq!(idx.len(), committed);
    let present: Vec<u64> = (0..600).filter(|&id| idx.contains(id)).collect();
    assert_eq!(e.committed.ids, present);
    assert_eq!(e.committed.total, 600);
    idx.check_integrity().unwrap();
}

/// `batch_size` 0 means the whole input in every form: the iterator form then reads all of it
/// into one chunk (its first progress event counts every item). Catches the iterator form's old
/// private default of 65 536 items per chunk. Cancelled at once, so nothing is linked.
#[test]
fn iterator_batch_size_zero_is_the_whole_input() {
    let idx = Index::new(IndexConfig::new(1, Metric::L2)).unwrap();
    let totals = Arc::new(Mutex::new(Vec::new()));
    let t2 = totals.clone();
    let opts =
        BatchOptions::new().on_progress(move |p| t2.lock().unwrap().push(p.total)).cancel_when(|| true);
    assert_eq!(opts.batch_size, 0, "the default batch size");
    let e = idx.insert_batch_iter((0..70_000u64).map(|i| (i, [i as f32])), &opts).unwrap_err();
    assert!(matches!(e.error, BatchError::Cancelled { .. }), "{e}");
    assert_eq!(totals.lock().unwrap().first(), Some(&70_000));
    assert_eq!((e.committed.inserted, e.committed.total, idx.len()), (0, 70_000, 0));
}

/// An all-or-nothing batch split into chunks whose last item's id is taken by another writer
/// after validation (here from the 0 % progress event, which runs between validation and
/// linking) must fail before linking anything. Catches reserving ids per chunk, which inserts
/// the first chunks and then fails on the last.
#[test]
fn chunked_all_or_nothing_sees_concurrent_duplicate_before_linking() {
    let idx = Arc::new(base_index(Metric::L2));
    let batch: Vec<(u64, Vec<f32>)> = (0..8).map(|i| (100 + i, vec![i as f32, 5.0, 5.0, 5.0])).collect();
    let (len0, nodes0) = (idx.len(), idx.allocated_nodes());
    let racer = idx.clone();
    let opts = BatchOptions::new().batch_size(2).on_progress(move |p| {
        if p.done == 0 {
            racer.insert(107, &[9.0, 9.0, 9.0, 9.0]).unwrap();
        }
    });
    let e = idx.insert_batch(&batch, &opts).unwrap_err();
    assert!(matches!(e, BatchError::DuplicateId { index: 7, id: 107, first_index: None }), "{e:?}");
    assert_eq!(idx.len(), len0 + 1, "ids {:?}", idx.ids());
    assert_eq!(idx.allocated_nodes(), nodes0 + 1);
    assert!((100..107).all(|id| !idx.contains(id)));
    idx.check_integrity().unwrap();
    // The reservations were given back: the same items (less the taken id) go in.
    idx.insert_batch(&batch[..7], &BatchOptions::new().batch_size(2)).unwrap();
    assert_eq!(idx.len(), len0 + 8);
}

/// All-or-nothing over capacity with chunks: nothing changes, not even the node slots.
/// Catches claiming capacity per chunk (the first chunks would go in).
#[test]
fn chunked_all_or_nothing_over_capacity_changes_nothing() {
    let idx = base_index(Metric::L2); // 10 of 30
    let batch: Vec<(u64, Vec<f32>)> = (0..25).map(|i| (100 + i, vec![i as f32, 0.0, 1.0, 2.0])).collect();
    let before = (state(&idx), idx.allocated_nodes());
    for size in [1, 3, 20] {
        let e = idx.insert_batch(&batch, &BatchOptions::new().batch_size(size)).unwrap_err();
        assert!(matches!(e, BatchError::CapacityExceeded { index: 20, id: 120, limit: 30 }), "{size}: {e:?}");
        assert_eq!((state(&idx), idx.allocated_nodes()), before, "batch_size {size}");
        let e = idx.insert_batch_flat(
            &batch.iter().map(|b| b.0).collect::<Vec<_>>(),
            &batch.iter().flat_map(|b| b.1.clone()).collect::<Vec<_>>(),
            &BatchOptions::new().batch_size(size),
        );
        assert!(matches!(e, Err(BatchError::CapacityExceeded { index: 20, .. })), "{size}: {e:?}");
        assert_eq!((state(&idx), idx.allocated_nodes()), before, "flat, batch_size {size}");
    }
    // Neither ids nor capacity leaked: exactly the 20 that fit go in.
    idx.insert_batch(&batch[..20], &BatchOptions::new().batch_size(3)).unwrap();
    assert_eq!(idx.len(), 30);
}

/// Failed single inserts give back everything: many capacity and duplicate failures leave the
/// node slots as they were. Catches allocating a node before claiming capacity (or not giving
/// it back on failure).
#[test]
fn failed_inserts_do_not_leak_node_slots() {
    let idx = Index::new(IndexConfig::new(4, Metric::L2).max_elements(5)).unwrap();
    for i in 0..5 {
        idx.insert(i, &[i as f32, 1.0, 2.0, 3.0]).unwrap();
    }
    let before = (idx.allocated_nodes(), idx.slot_stats());
    for i in 0..200u64 {
        let e = idx.insert(100 + i, &[i as f32, 0.0, 0.0, 1.0]).unwrap_err();
        assert!(matches!(e, IndexError::CapacityExceeded { limit: 5 }), "{e:?}");
        let e = idx.insert(i % 5, &[1.0; 4]).unwrap_err();
        assert_eq!(e, IndexError::DuplicateId { id: i % 5 });
        let r = idx
            .insert_batch(&[(100 + i, [1.0f32; 4])], &BatchOptions::new().mode(BatchMode::BestEffort))
            .unwrap();
        assert_eq!((r.inserted, r.failures.len()), (0, 1));
    }
    assert_eq!((idx.allocated_nodes(), idx.slot_stats()), before);
    // Room again after a delete: the freed capacity is usable, the failed ids are free.
    idx.delete(0).unwrap();
    idx.insert(100, &[7.0, 0.0, 0.0, 1.0]).unwrap();
    idx.check_integrity().unwrap();
}

/// What the index must look like after a batch was interrupted by a panic: consistent, every
/// id of the batch either in (and counted) or free to insert again with the capacity it had
/// claimed given back, and later batches (with progress) working normally.
fn check_after_panic(
    what: &str,
    threads: usize,
    idx: &Index,
    items: &[(u64, &[f32])],
    extra: &[(u64, &[f32])],
) {
    idx.check_integrity().unwrap();
    let contained = items.iter().filter(|(id, _)| idx.contains(*id)).count();
    println!("{what}: {contained} of {} inserted before the panic", items.len());
    if threads == 1 {
        // With several workers a descheduled one may report (and panic) only after the others
        // linked everything, so only the single-worker run pins where the batch stopped.
        assert!(contained < items.len(), "{what}: the panic did not stop the batch");
    }
    assert_eq!(idx.len(), contained);
    assert_eq!(idx.ids().len(), contained);
    // `max_elements` is exactly `items + extra`: a leaked claim or a stuck reservation makes one
    // of these inserts fail.
    for (id, v) in items {
        if !idx.contains(*id) {
            idx.insert(*id, v).unwrap_or_else(|e| panic!("id {id} not insertable again: {e}"));
        }
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let opts = BatchOptions::new().batch_size(300).on_progress(move |p| ev.lock().unwrap().push(p.done));
    idx.insert_batch(extra, &opts).unwrap();
    let ev = events.lock().unwrap();
    assert_eq!((ev.first(), ev.last()), (Some(&0), Some(&extra.len())), "{ev:?}");
    assert!(ev.len() > 10, "progress events missing after a panic: {ev:?}");
    assert_eq!(idx.len(), items.len() + extra.len());
    idx.check_integrity().unwrap();
}

fn panic_fixture(seed: u64) -> (Vec<Vec<f32>>, Index) {
    let base = clustered(3000, 8, seed);
    let idx = Index::new(IndexConfig::new(8, Metric::L2).max_elements(3000)).unwrap();
    (base, idx)
}

/// A progress callback that panics at about 50 %, in both modes, chunked or not: the panic
/// reaches the caller and `check_after_panic` holds. Catches a missing release of the
/// unstarted items' ids or claims (reinserting them fails), and linking on after the panic.
#[test]
fn panicking_progress_callback_releases_everything() {
    let configs =
        [(BatchMode::AllOrNothing, 0), (BatchMode::AllOrNothing, 700), (BatchMode::BestEffort, 700)];
    for ((mode, batch_size), threads) in configs.into_iter().flat_map(|c| [(c, 1), (c, 2)]) {
        let (base, idx) = panic_fixture(31);
        let items: Vec<(u64, &[f32])> =
            base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        let (items, extra) = items.split_at(2000);
        let opts = BatchOptions::new().mode(mode).batch_size(batch_size).on_progress(|p| {
            if p.done >= p.total / 2 && p.done < p.total {
                panic!("progress callback fails at {}", p.done);
            }
        });
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| idx.insert_batch(items, &opts))
        }));
        assert!(res.is_err(), "{mode:?}/{batch_size}/{threads}: the panic was swallowed: {res:?}");
        check_after_panic(
            &format!("{mode:?}, batch_size {batch_size}, {threads} threads"),
            threads,
            &idx,
            items,
            extra,
        );
    }
}

/// The same for a cancel check that panics at its 100th poll (about 50 %).
#[test]
fn panicking_cancel_callback_releases_everything() {
    let configs = [(BatchMode::AllOrNothing, 500), (BatchMode::BestEffort, 0)];
    for ((mode, batch_size), threads) in configs.into_iter().flat_map(|c| [(c, 1), (c, 2)]) {
        let (base, idx) = panic_fixture(32);
        let items: Vec<(u64, &[f32])> =
            base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        let (items, extra) = items.split_at(2000);
        let polls = AtomicUsize::new(0);
        let polls = Arc::new(polls);
        let opts = BatchOptions::new().mode(mode).batch_size(batch_size).cancel_when(move || {
            if polls.fetch_add(1, Ordering::SeqCst) == 100 {
                panic!("cancel check fails");
            }
            false
        });
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| idx.insert_batch(items, &opts))
        }));
        assert!(res.is_err(), "{mode:?}/{batch_size}/{threads}: the panic was swallowed: {res:?}");
        check_after_panic(
            &format!("{mode:?}, batch_size {batch_size}, {threads} threads"),
            threads,
            &idx,
            items,
            extra,
        );
    }
}
