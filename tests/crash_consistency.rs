//! A crash at any I/O step recovers to the old or the new state, never a mix, and never loses an
//! acknowledged write: saves, log appends, checkpoints, whole workloads, torn appends, and
//! crashes during recovery itself. Crashes are simulated by [`MemBackend`]: from the chosen
//! operation on, every operation fails (the process is as good as dead), then only the durable
//! state survives.

mod durable_common;
use durable_common::*;
use hnsw_batch::persist::{load_from_bytes, save_to_bytes, CrashMode, FailMode, MemBackend, SyncPolicy};
use hnsw_batch::{BatchOptions, Index};
use std::path::Path;
use std::sync::Arc;

#[test]
fn crash_at_every_step_of_a_snapshot_save() {
    let small = |n: u64| {
        let index = Index::new(cfg()).unwrap();
        for id in 0..n {
            index.insert(id, &vector(id, 0)).unwrap();
        }
        index
    };
    let (old, new) = (small(10), small(25));
    let (old_bytes, new_bytes) = (save_to_bytes(&old), save_to_bytes(&new));
    let path = Path::new("snaps/index.hnsw");
    let setup = || {
        let fs = MemBackend::new();
        old.save_with(&fs, path).unwrap();
        fs
    };
    let fs = setup();
    let steps = ops_of(&fs, || new.save_with(&fs, path).unwrap());
    assert_eq!(steps, 4, "write, sync, rename, sync_dir");
    for k in 0..=steps {
        let fs = setup();
        fs.fail_after(k, FailMode::Forever);
        let result = new.save_with(&fs, path);
        assert_eq!(result.is_ok(), k == steps);
        fs.clear_faults();
        fs.crash();
        let bytes = fs.file(path).expect("snapshot vanished");
        assert!(bytes == old_bytes || bytes == new_bytes, "crash after {k} steps: a mix");
        if k == steps {
            assert_eq!(bytes, new_bytes, "acknowledged save lost");
        }
        load_from_bytes(&bytes).unwrap().check_integrity().unwrap();
    }
}

#[test]
fn crash_at_every_step_of_a_batch_append() {
    let a = Op::InsertBatch((0..15).collect());
    let b = Op::InsertBatch((15..40).collect());
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = open(&fs).unwrap();
        run(&db, &a).unwrap();
        (fs, db)
    };
    let (fs, db) = setup();
    let steps = ops_of(&fs, || run(&db, &b).unwrap());
    assert_eq!(steps, 2, "one append and one sync per batch");
    let old = model_after(std::slice::from_ref(&a));
    let new = model_after(&[a.clone(), b.clone()]);
    for k in 0..=steps {
        let (fs, db) = setup();
        fs.fail_after(k, FailMode::Forever);
        let acked = run(&db, &b).is_ok();
        drop(db);
        let (db, got) = recover(&fs);
        assert!(got == old || got == new, "crash after {k} steps: a mix");
        if acked {
            assert_eq!(got, new, "acknowledged batch lost");
        }
        // The recovered index keeps working.
        db.insert(500, &vector(500, 0)).unwrap();
        drop(db);
        let (_, again) = recover(&fs);
        assert!(again.contains_key(&500));
    }
}

#[test]
fn crash_at_every_step_of_a_checkpoint() {
    let before = [Op::InsertBatch((0..20).collect()), Op::Delete(3), Op::Checkpoint, Op::Update(4, 1)];
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = open(&fs).unwrap();
        for op in &before {
            run(&db, op).unwrap();
        }
        (fs, db)
    };
    let expected = model_after(&before);
    let (fs, db) = setup();
    let steps = ops_of(&fs, || db.checkpoint().unwrap());
    assert!(steps >= 8, "{steps} steps");
    for k in 0..=steps {
        let (fs, db) = setup();
        fs.fail_after(k, FailMode::Forever);
        let done = db.checkpoint().is_ok();
        assert_eq!(done, k == steps);
        drop(db);
        let (db, got) = recover(&fs);
        assert_eq!(got, expected, "crash after {k} steps of a checkpoint");
        let gen = db.recovery_report().snapshot_generation;
        assert!(gen == 1 || gen == 2, "generation {gen}");
        if done {
            assert_eq!(gen, 2);
        }
        // Old generations are cleaned up once the new one is in force.
        let files = fs.paths();
        assert!(files.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")), "{files:?}");
        assert_eq!(files.len(), 2, "one snapshot and one log: {files:?}");
    }
}

#[test]
fn crash_at_every_step_of_a_mixed_workload() {
    let ops = workload();
    let fs = Arc::new(MemBackend::new());
    let total = ops_of(&fs, || {
        let db = open(&fs).unwrap();
        for op in &ops {
            run(&db, op).unwrap();
        }
    });
    for k in 0..total {
        let fs = Arc::new(MemBackend::new());
        fs.fail_after(k, FailMode::Forever);
        let mut acked = 0;
        if let Ok(db) = open(&fs) {
            for op in &ops {
                if run(&db, op).is_err() {
                    break;
                }
                acked += 1;
            }
        }
        let (_, got) = recover(&fs);
        let old = model_after(&ops[..acked]);
        let new = model_after(&ops[..(acked + 1).min(ops.len())]);
        assert!(got == old || got == new, "crash after {k} of {total} steps, {acked} writes acknowledged");
    }
}

#[test]
fn torn_appends_are_cut_off() {
    for policy in [SyncPolicy::EveryBatch, SyncPolicy::Never] {
        let a = Op::InsertBatch((0..10).collect());
        let b = Op::InsertBatch((10..30).collect());
        let old = model_after(std::slice::from_ref(&a));
        let new = model_after(&[a.clone(), b.clone()]);
        let record_len = {
            let fs = Arc::new(MemBackend::new());
            let db = open(&fs).unwrap();
            run(&db, &a).unwrap();
            let before = db.stats().log_bytes;
            run(&db, &b).unwrap();
            (db.stats().log_bytes - before) as usize
        };
        for keep in 0..=record_len {
            let fs = Arc::new(MemBackend::new());
            let db =
                hnsw_batch::DurableIndex::open_with(fs.clone(), DIR, cfg(), opts().sync(policy)).unwrap();
            run(&db, &a).unwrap();
            db.sync().unwrap();
            if policy == SyncPolicy::EveryBatch {
                // The append lands, its sync fails: the record is in the file, not durable.
                fs.fail_after(1, FailMode::Forever);
                assert!(run(&db, &b).is_err());
            } else {
                run(&db, &b).unwrap();
            }
            fs.clear_faults();
            std::mem::forget(db); // a crash runs no destructor
            fs.crash_with(CrashMode::KeepUnsyncedPrefix(keep));
            let db = open(&fs).unwrap();
            db.check_integrity().unwrap();
            let got = state(&db);
            if keep < record_len {
                assert_eq!(got, old, "{policy:?}: torn record of {keep}/{record_len} bytes applied");
                assert_eq!(db.recovery_report().truncated_bytes, keep as u64);
            } else {
                assert_eq!(got, new);
            }
            // The next append goes after the cut, and survives.
            db.insert(77, &vector(77, 0)).unwrap();
            drop(db);
            let (_, again) = recover(&fs);
            assert!(again.contains_key(&77));
        }
    }
}

#[test]
fn crash_during_recovery() {
    // A directory whose log ends in a torn record.
    let a = Op::InsertBatch((0..10).collect());
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = open(&fs).unwrap();
        run(&db, &a).unwrap();
        db.checkpoint().unwrap();
        run(&db, &Op::Update(3, 4)).unwrap();
        fs.fail_after(1, FailMode::Forever);
        assert!(run(&db, &Op::InsertBatch((10..20).collect())).is_err());
        fs.clear_faults();
        std::mem::forget(db);
        fs.crash_with(CrashMode::KeepUnsyncedPrefix(30));
        fs
    };
    let expected = model_after(&[a.clone(), Op::Update(3, 4)]);
    let fs = setup();
    let steps = open_steps(&fs);
    for k in 0..steps {
        let fs = setup();
        fs.fail_after(k, FailMode::Forever);
        assert!(open(&fs).is_err(), "open survived a fault at step {k}");
        let (_, got) = recover(&fs);
        assert_eq!(got, expected, "crash at step {k} of recovery");
    }
}

#[test]
fn unsynced_writes_under_relaxed_policies_become_durable_on_sync() {
    for policy in [SyncPolicy::Never, SyncPolicy::IntervalMs(3_600_000)] {
        let fs = Arc::new(MemBackend::new());
        let db = hnsw_batch::DurableIndex::open_with(fs.clone(), DIR, cfg(), opts().sync(policy)).unwrap();
        let items: Vec<(u64, Vec<f32>)> = (0..10).map(|id| (id, vector(id, 0))).collect();
        // The first write under IntervalMs finds the last sync (at open) recent: no sync.
        let steps = ops_of(&fs, || drop(db.insert_batch(&items, &BatchOptions::new()).unwrap()));
        assert_eq!(steps, 1, "{policy:?}: append only");
        assert!(db.stats().unsynced);
        db.sync().unwrap();
        assert!(!db.stats().unsynced);
        db.insert(10, &vector(10, 0)).unwrap();
        std::mem::forget(db);
        let (_, got) = recover(&fs);
        assert_eq!(got.len(), 10, "{policy:?}: synced writes kept, the unsynced one lost");
    }
}
