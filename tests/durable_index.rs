//! `DurableIndex` behaviour: survives reopen on the real filesystem, is shared across threads
//! (batches from background threads while others search), reports per-item failures, logs
//! nothing for rejected writes, checks its configuration, checkpoints automatically.

mod durable_common;
use durable_common::*;
use hnsw_batch::persist::{DurableIndex, DurableOptions, FailMode, MemBackend, PersistError, SyncPolicy};
use hnsw_batch::{BatchError, BatchMode, BatchOptions, IndexConfig, IndexError, Metric};
use std::sync::Arc;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn durable_index_is_send_and_sync() {
    assert_send_sync::<DurableIndex>();
}

#[test]
fn real_filesystem_reopen_keeps_every_write() {
    let dir = std::env::temp_dir().join(format!("hnsw-durable-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = IndexConfig::new(8, Metric::Cosine).m(6).ef_construction(24);
    let vec_of = |i: u64| -> Vec<f32> {
        (0..8).map(|j| ((i + 1) as f32 * (j + 1) as f32 * 0.37).sin() + 1.5).collect()
    };
    {
        let db = DurableIndex::open(&dir, cfg.clone(), DurableOptions::new()).unwrap();
        assert!(db.recovery_report().created);
        let items: Vec<(u64, Vec<f32>)> = (0..200).map(|i| (i, vec_of(i))).collect();
        db.insert_batch(&items, &BatchOptions::new()).unwrap();
        db.checkpoint().unwrap();
        db.delete(10).unwrap();
        db.update(11, &vec_of(500)).unwrap();
        db.insert(1000, &vec_of(1000)).unwrap();
    }
    let db = DurableIndex::open(&dir, cfg.clone(), DurableOptions::new()).unwrap();
    let r = db.recovery_report();
    assert!(!r.created);
    assert_eq!((r.snapshot_generation, r.records_replayed, r.items_skipped), (1, 3, 0));
    assert_eq!(db.len(), 200);
    assert!(!db.contains(10) && db.contains(1000));
    let expected_11: Vec<f32> = {
        let v = vec_of(500);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    let got_11 = db.get(11).unwrap();
    assert!(got_11.iter().zip(&expected_11).all(|(a, b)| (a - b).abs() < 1e-6), "{got_11:?}");
    db.check_integrity().unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["LOCK", "snapshot-00000000000000000001.hnsw", "wal-00000000000000000001.log"]);
    // The directory is open: a second open is refused.
    assert!(matches!(
        DurableIndex::open(&dir, cfg.clone(), DurableOptions::new()),
        Err(PersistError::Locked { .. })
    ));
    drop(db);
    // Another configuration for the same directory is refused.
    let other = IndexConfig::new(8, Metric::L2);
    assert!(matches!(
        DurableIndex::open(&dir, other, DurableOptions::new()),
        Err(PersistError::ConfigMismatch { .. })
    ));
    // ... and leaves the directory openable.
    assert_eq!(DurableIndex::open(&dir, cfg, DurableOptions::new()).unwrap().len(), 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_from_background_threads_while_searching() {
    let fs = Arc::new(MemBackend::new());
    let db = Arc::new(open(&fs).unwrap());
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for b in 0..10u64 {
                    let items: Vec<(u64, Vec<f32>)> =
                        (0..25).map(|i| t * 10_000 + b * 100 + i).map(|id| (id, vector(id, 0))).collect();
                    let r =
                        db.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
                    assert_eq!(r.inserted, 25);
                }
            })
        })
        .collect();
    let searcher = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..200u64 {
                let _ = db.search(&vector(i, 0), 5, 16).unwrap();
            }
        })
    };
    let checkpointer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for _ in 0..3 {
                db.checkpoint().unwrap();
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    searcher.join().unwrap();
    checkpointer.join().unwrap();
    assert_eq!(db.len(), 1000);
    let before = state(&db);
    drop(db);
    let (_, after) = recover(&fs);
    assert_eq!(after, before);
}

#[test]
fn best_effort_reports_failures_and_logs_only_what_is_applied() {
    let fs = Arc::new(MemBackend::new());
    let db = open(&fs).unwrap();
    db.insert(1, &vector(1, 0)).unwrap();
    let items = vec![
        (1u64, vector(1, 0)),        // already present
        (2, vector(2, 0)),           // ok
        (3, vec![1.0, 2.0]),         // wrong dimension
        (4, vec![f32::INFINITY; 4]), // invalid
        (2, vector(2, 1)),           // duplicate in the batch
        (5, vector(5, 0)),           // ok
    ];
    let r = db.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    assert_eq!((r.total, r.inserted), (6, 2));
    assert_eq!(r.ids, [2, 5]);
    let failed: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
    assert_eq!(failed, [0, 2, 3, 4]);
    assert!(matches!(r.failures[1].error, BatchError::DimensionMismatch { index: 2, .. }));
    // All-or-nothing: rejected before anything is logged.
    let steps = ops_of(&fs, || {
        let e = db.insert_batch(&items, &BatchOptions::new()).unwrap_err();
        assert!(matches!(e, PersistError::Batch(BatchError::DuplicateId { index: 0, .. })));
        assert!(matches!(
            db.insert(2, &vector(2, 0)),
            Err(PersistError::Index(IndexError::DuplicateId { id: 2 }))
        ));
        assert!(matches!(db.delete(77), Err(PersistError::Index(IndexError::NotFound { id: 77 }))));
        assert!(matches!(
            db.update(77, &vector(77, 0)),
            Err(PersistError::Index(IndexError::NotFound { .. }))
        ));
        assert!(db.update(1, &[1.0]).is_err());
        let r = db.delete_batch(&[404, 405], &BatchOptions::new()).unwrap();
        assert_eq!((r.deleted, r.not_found), (0, 2));
        // A repeated id is a failure naming its first position, not a second absent id: it
        // refuses an all-or-nothing batch, and is listed by a best-effort one.
        let e = db.delete_batch(&[1, 404, 404], &BatchOptions::new()).unwrap_err();
        let dup = BatchError::DuplicateId { index: 2, id: 404, first_index: Some(1) };
        assert!(matches!(&e, PersistError::Batch(b) if *b == dup), "{e}");
        let best_effort = BatchOptions::new().mode(BatchMode::BestEffort);
        let r = db.delete_batch(&[404, 404], &best_effort).unwrap();
        assert_eq!((r.deleted, r.not_found, r.failures.len()), (0, 1, 1));
        assert_eq!(r.failures[0].error, BatchError::DuplicateId { index: 1, id: 404, first_index: Some(0) });
    });
    assert_eq!(steps, 0, "rejected writes touched the log");
    // A cancelled batch is refused before it is logged.
    let cancelled = BatchOptions::new().cancel_when(|| true);
    let e = db.insert_batch(&[(9u64, vector(9, 0))], &cancelled).unwrap_err();
    assert!(
        matches!(&e, PersistError::Batch(BatchError::Cancelled { report }) if report.ids.is_empty() && report.total == 1),
        "{e}"
    );
    let e = db.delete_batch(&[1, 2], &cancelled).unwrap_err();
    assert!(
        matches!(&e, PersistError::Batch(BatchError::Cancelled { report }) if report.ids.is_empty()),
        "{e}"
    );
    drop(db);
    let (_, got) = recover(&fs);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [1, 2, 5]);
}

#[test]
fn capacity_limits_are_checked_before_logging() {
    let fs = Arc::new(MemBackend::new());
    let cfg = cfg().max_elements(5);
    let db = DurableIndex::open_with(fs.clone(), DIR, cfg.clone(), opts()).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..8).map(|i| (i, vector(i, 0))).collect();
    let e = db.insert_batch(&items, &BatchOptions::new()).unwrap_err();
    assert!(matches!(e, PersistError::Batch(BatchError::CapacityExceeded { index: 5, .. })));
    let r = db.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    assert_eq!(r.inserted, 5);
    assert_eq!(r.failures.iter().map(|f| f.index).collect::<Vec<_>>(), [5, 6, 7]);
    assert!(matches!(
        db.insert(100, &vector(100, 0)),
        Err(PersistError::Index(IndexError::CapacityExceeded { .. }))
    ));
    drop(db);
    fs.crash();
    let db = DurableIndex::open_with(fs, DIR, cfg, opts()).unwrap();
    assert_eq!(db.len(), 5);
}

#[test]
fn automatic_checkpoints_bound_the_log() {
    let fs = Arc::new(MemBackend::new());
    let options = DurableOptions::new().checkpoint_log_bytes(Some(2_000));
    let db = DurableIndex::open_with(fs.clone(), DIR, cfg(), options.clone()).unwrap();
    for b in 0..20u64 {
        let items: Vec<(u64, Vec<f32>)> = (0..10).map(|i| b * 10 + i).map(|id| (id, vector(id, 0))).collect();
        db.insert_batch(&items, &BatchOptions::new()).unwrap();
    }
    let s = db.stats();
    assert!(s.checkpoints >= 2, "{s:?}");
    assert!(s.log_bytes < 2_000);
    assert_eq!(s.auto_checkpoint_failures, 0);
    // A failing automatic checkpoint does not fail the (already durable) write.
    let before = db.stats().generation;
    let mut acked = 0;
    for id in 1000..1100u64 {
        if db.stats().auto_checkpoint_failures > 0 {
            break;
        }
        fs.fail_after(2, FailMode::Once); // append, sync, then a checkpoint's first step, if any
        db.insert(id, &vector(id, 0)).unwrap();
        acked += 1;
    }
    let s = db.stats();
    assert_eq!(s.auto_checkpoint_failures, 1, "{s:?}");
    assert!(s.last_checkpoint_error.is_some());
    assert_eq!(s.generation, before);
    fs.clear_faults();
    let len = db.len();
    assert_eq!(len, 200 + acked);
    drop(db);
    let (_, got) = recover(&fs);
    assert_eq!(got.len(), len);
}

#[test]
fn sync_policies() {
    for (policy, syncs) in
        [(SyncPolicy::EveryBatch, true), (SyncPolicy::Never, false), (SyncPolicy::IntervalMs(0), true)]
    {
        let fs = Arc::new(MemBackend::new());
        let db = DurableIndex::open_with(fs.clone(), DIR, cfg(), opts().sync(policy)).unwrap();
        let steps = ops_of(&fs, || db.insert(1, &vector(1, 0)).unwrap());
        assert_eq!(steps, if syncs { 2 } else { 1 }, "{policy:?}");
        assert_eq!(db.stats().unsynced, !syncs);
        // Dropping syncs what is pending.
        drop(db);
        fs.crash();
        let db = open(&fs).unwrap();
        assert!(db.contains(1), "{policy:?}");
    }
}

#[test]
fn damaged_directories_are_reported() {
    // Logs but no snapshot.
    let fs = Arc::new(MemBackend::new());
    fs.set_file(std::path::Path::new("db/wal-00000000000000000000.log"), &[]);
    assert!(matches!(open(&fs), Err(PersistError::Corrupt { .. })));
    // A damaged snapshot with no older one to fall back to.
    let fs = Arc::new(MemBackend::new());
    drop(open(&fs).unwrap());
    let snap = std::path::Path::new("db/snapshot-00000000000000000000.hnsw");
    let mut b = fs.file(snap).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    fs.set_file(snap, &b);
    assert!(matches!(open(&fs), Err(PersistError::ChecksumMismatch { .. })));
    // A damaged newest snapshot with an older one and the logs that bridge them: fall back.
    let fs = Arc::new(MemBackend::new());
    let db = open(&fs).unwrap();
    run(&db, &Op::InsertBatch((0..10).collect())).unwrap();
    let old_snapshot = fs.file(snap).unwrap();
    let old_log = fs.file(std::path::Path::new("db/wal-00000000000000000000.log")).unwrap();
    db.checkpoint().unwrap();
    run(&db, &Op::Delete(3)).unwrap();
    let expected = state(&db);
    drop(db);
    fs.set_file(snap, &old_snapshot);
    fs.set_file(std::path::Path::new("db/wal-00000000000000000000.log"), &old_log);
    let newest = std::path::Path::new("db/snapshot-00000000000000000001.hnsw");
    fs.set_file(newest, b"\x89HNSW\r\n\x1a garbage");
    let db = open(&fs).unwrap();
    assert_eq!(db.recovery_report().snapshots_skipped, 1);
    assert_eq!(state(&db), expected);
    // A damaged record in the middle of an older log is not silently skipped.
    let fs = Arc::new(MemBackend::new());
    let db = open(&fs).unwrap();
    run(&db, &Op::InsertBatch((0..10).collect())).unwrap();
    run(&db, &Op::Insert(50)).unwrap();
    drop(db);
    let log = std::path::Path::new("db/wal-00000000000000000000.log");
    let mut b = fs.file(log).unwrap();
    b[30] ^= 0xFF;
    fs.set_file(log, &b);
    fs.set_file(
        std::path::Path::new("db/wal-00000000000000000001.log"),
        &hnsw_batch::persist::wal::encode_header(1),
    );
    assert!(matches!(open(&fs), Err(PersistError::Corrupt { .. })));
}

#[test]
fn config_must_be_valid() {
    let fs = Arc::new(MemBackend::new());
    let bad = IndexConfig::new(0, Metric::L2);
    assert!(matches!(
        DurableIndex::open_with(fs, DIR, bad, DurableOptions::new()),
        Err(PersistError::Index(IndexError::InvalidParameter { .. }))
    ));
}

#[test]
fn a_directory_is_open_once_at_a_time() {
    let fs = Arc::new(MemBackend::new());
    let db = open(&fs).unwrap();
    assert!(matches!(open(&fs), Err(PersistError::Locked { .. })));
    db.insert(1, &vector(1, 0)).unwrap();
    drop(db);
    let db = open(&fs).unwrap();
    assert!(db.contains(1));
    // A crash releases the lock, like the death of the process holding it.
    std::mem::forget(db);
    fs.crash();
    assert!(open(&fs).unwrap().contains(1));
}
