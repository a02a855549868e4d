//! An I/O error at any step of a save, a log append, a checkpoint or a recovery surfaces as an
//! error, leaves the previous durable state intact, and once the fault clears everything works
//! again. Faults are injected by [`MemBackend`] (a failing write or append leaves half its bytes
//! behind, as a short write can).

mod durable_common;
use durable_common::*;
use hnsw_batch::persist::{save_to_bytes, FailMode, MemBackend, PersistError};
use hnsw_batch::Index;
use std::path::Path;
use std::sync::Arc;

#[test]
fn save_fails_cleanly_at_every_step() {
    let make = |n: u64| {
        let index = Index::new(cfg()).unwrap();
        for id in 0..n {
            index.insert(id, &vector(id, 0)).unwrap();
        }
        index
    };
    let (old, new) = (make(10), make(20));
    let path = Path::new("s/index.hnsw");
    let fs = MemBackend::new();
    old.save_with(&fs, path).unwrap();
    let steps = ops_of(&fs, || new.save_with(&fs, path).unwrap());
    for k in 0..steps {
        let fs = MemBackend::new();
        old.save_with(&fs, path).unwrap();
        fs.fail_after(k, FailMode::Once);
        let err = new.save_with(&fs, path).unwrap_err();
        assert!(matches!(err, PersistError::Io { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("index.hnsw") || msg.contains("sync_dir of `s`"), "error names the file: {msg}");
        // Readable now (old, or new if only the directory sync failed) and old after a crash.
        assert!(Index::load_with(&fs, path).is_ok());
        fs.crash();
        assert_eq!(fs.file(path).unwrap(), save_to_bytes(&old), "fault at step {k}");
        // The fault is gone: saving works.
        new.save_with(&fs, path).unwrap();
        fs.crash();
        assert_eq!(Index::load_with(&fs, path).unwrap().len(), 20);
    }
}

/// Every write kind: the failed write is not applied, not recovered, and works when retried.
#[test]
fn writes_fail_cleanly_at_every_step() {
    let base = [Op::InsertBatch((0..20).collect()), Op::Checkpoint, Op::Insert(50)];
    let writes = [
        Op::InsertBatch((20..30).collect()),
        Op::Insert(60),
        Op::Delete(4),
        Op::DeleteBatch(vec![5, 6, 999]),
        Op::Update(7, 3),
    ];
    let before = model_after(&base);
    for write in &writes {
        let setup = || {
            let fs = Arc::new(MemBackend::new());
            let db = open(&fs).unwrap();
            for op in &base {
                run(&db, op).unwrap();
            }
            (fs, db)
        };
        let (fs, db) = setup();
        let steps = ops_of(&fs, || run(&db, write).unwrap());
        assert_eq!(steps, 2, "{write:?}: one append, one sync");
        let after = model_after(&[base.to_vec(), vec![write.clone()]].concat());
        for k in 0..steps {
            let (fs, db) = setup();
            fs.fail_after(k, FailMode::Once);
            let err = run(&db, write).unwrap_err();
            assert!(matches!(err, PersistError::Io { .. }), "{err}");
            assert_eq!(state(&db), before, "{write:?}: failed write applied in memory");
            // Retry once the fault is gone.
            run(&db, write).unwrap();
            assert_eq!(state(&db), after);
            drop(db);
            let (_, got) = recover(&fs);
            assert_eq!(got, after, "{write:?} with a fault at step {k}");
        }
        // Without the retry, a crash recovers the state before the write.
        for k in 0..steps {
            let (fs, db) = setup();
            fs.fail_after(k, FailMode::Once);
            assert!(run(&db, write).is_err());
            drop(db);
            let (_, got) = recover(&fs);
            assert_eq!(got, before, "{write:?} with a fault at step {k}, then a crash");
        }
    }
}

#[test]
fn writes_recover_after_a_persistent_fault() {
    let fs = Arc::new(MemBackend::new());
    let db = open(&fs).unwrap();
    run(&db, &Op::InsertBatch((0..10).collect())).unwrap();
    for k in 0..2 {
        fs.fail_after(k, FailMode::Forever);
        for _ in 0..3 {
            assert!(run(&db, &Op::InsertBatch((10..20).collect())).is_err());
            assert!(db.checkpoint().is_err());
            assert!(db.sync().is_err());
        }
        fs.clear_faults();
        // The half-written tail of the failed append is cut before the next append.
        run(&db, &Op::Insert(100 + k)).unwrap();
    }
    run(&db, &Op::InsertBatch((10..20).collect())).unwrap();
    let expected = db.ids().len();
    drop(db);
    let (_, got) = recover(&fs);
    assert_eq!(got.len(), expected);
    assert_eq!(got.len(), 22);
}

#[test]
fn checkpoint_fails_cleanly_at_every_step() {
    let base = [Op::InsertBatch((0..20).collect()), Op::Checkpoint, Op::Delete(2), Op::Update(3, 1)];
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = open(&fs).unwrap();
        for op in &base {
            run(&db, op).unwrap();
        }
        (fs, db)
    };
    let (fs, db) = setup();
    let steps = ops_of(&fs, || db.checkpoint().unwrap());
    let more = Op::InsertBatch((20..25).collect());
    let expected = model_after(&[base.to_vec(), vec![more.clone()]].concat());
    for k in 0..steps {
        let (fs, db) = setup();
        fs.fail_after(k, FailMode::Once);
        let err = db.checkpoint().unwrap_err();
        assert!(matches!(err, PersistError::Io { .. }), "{err}");
        assert!(db.stats().last_checkpoint_error.is_some());
        // Writes after the failed checkpoint are acknowledged and must survive a crash,
        // whichever generation they went to.
        run(&db, &more).unwrap();
        drop(db);
        let (db, got) = recover(&fs);
        assert_eq!(got, expected, "checkpoint fault at step {k}");
        // And checkpoints work again.
        db.checkpoint().unwrap();
        drop(db);
        let (_, got) = recover(&fs);
        assert_eq!(got, expected);
        assert_eq!(fs.paths().len(), 2, "{:?}", fs.paths());
    }
}

#[test]
fn open_fails_cleanly_at_every_step() {
    let ops = workload();
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = open(&fs).unwrap();
        for op in &ops {
            run(&db, op).unwrap();
        }
        drop(db);
        fs
    };
    let expected = model_after(&ops);
    let fs = setup();
    let steps = open_steps(&fs);
    for k in 0..steps {
        let fs = setup();
        fs.fail_after(k, FailMode::Once);
        assert!(open(&fs).is_err(), "open survived a fault at step {k}");
        let db = open(&fs).unwrap();
        assert_eq!(state(&db), expected, "reopen after a fault at step {k}");
        drop(db);
        let (_, got) = recover(&fs);
        assert_eq!(got, expected);
    }
    // Opening a fresh directory fails cleanly at every step too.
    let fs = Arc::new(MemBackend::new());
    let steps = open_steps(&fs);
    for k in 0..steps {
        let fs = Arc::new(MemBackend::new());
        fs.fail_after(k, FailMode::Once);
        assert!(open(&fs).is_err());
        let db = open(&fs).unwrap();
        db.insert(1, &vector(1, 0)).unwrap();
        drop(db);
        let (_, got) = recover(&fs);
        assert_eq!(got.len(), 1);
    }
}
