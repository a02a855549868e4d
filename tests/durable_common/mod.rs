//! Shared helpers of the durability tests: a small index on an in-memory filesystem, a model of
//! its contents, and a scripted workload.
#![allow(dead_code)]

use hnsw_batch::persist::{CrashMode, DurableIndex, DurableOptions, MemBackend, PersistError};
use hnsw_batch::{BatchMode, BatchOptions, IndexConfig, Metric};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const DIR: &str = "db";

pub fn cfg() -> IndexConfig {
    IndexConfig::new(4, Metric::L2).m(4).ef_construction(16).seed(1)
}

pub fn opts() -> DurableOptions {
    DurableOptions::new().checkpoint_log_bytes(None)
}

pub fn open(fs: &Arc<MemBackend>) -> Result<DurableIndex, PersistError> {
    DurableIndex::open_with(fs.clone(), DIR, cfg(), opts())
}

/// A deterministic vector for `id` (version `v` for updates).
pub fn vector(id: u64, v: u32) -> Vec<f32> {
    let x = id as f32;
    vec![x, (x * 0.37).sin() + v as f32, (x * 0.11).cos(), v as f32 * 0.5]
}

/// Contents: id → vector bits.
pub type State = BTreeMap<u64, Vec<u32>>;

pub fn state(db: &DurableIndex) -> State {
    db.ids().into_iter().map(|id| (id, bits(&db.get(id).expect("listed id has a vector")))).collect()
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One step of a workload.
#[derive(Debug, Clone)]
pub enum Op {
    /// Best-effort batch; the NaN and duplicate items it carries are rejected, not logged.
    InsertBatch(Vec<u64>),
    Insert(u64),
    Delete(u64),
    DeleteBatch(Vec<u64>),
    Update(u64, u32),
    Checkpoint,
}

pub fn run(db: &DurableIndex, op: &Op) -> Result<(), PersistError> {
    match op {
        Op::InsertBatch(ids) => {
            let mut items: Vec<(u64, Vec<f32>)> = ids.iter().map(|&id| (id, vector(id, 0))).collect();
            items.push((ids[0], vector(ids[0], 9))); // duplicate in the batch
            items.push((1_000_000, vec![f32::NAN; 4])); // invalid
            let r = db.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
            assert_eq!(r.inserted, ids.len());
            assert_eq!(r.failures.len(), 2);
            Ok(())
        }
        Op::Insert(id) => db.insert(*id, &vector(*id, 0)),
        Op::Delete(id) => db.delete(*id),
        Op::DeleteBatch(ids) => {
            db.delete_batch(ids, &BatchOptions::new().mode(BatchMode::BestEffort)).map(|_| ())
        }
        Op::Update(id, v) => db.update(*id, &vector(*id, *v)),
        Op::Checkpoint => db.checkpoint(),
    }
}

pub fn model(state: &mut State, op: &Op) {
    match op {
        Op::InsertBatch(ids) => {
            for &id in ids {
                state.insert(id, bits(&vector(id, 0)));
            }
        }
        Op::Insert(id) => {
            state.insert(*id, bits(&vector(*id, 0)));
        }
        Op::Delete(id) => {
            state.remove(id);
        }
        Op::DeleteBatch(ids) => {
            for id in ids {
                state.remove(id);
            }
        }
        Op::Update(id, v) => {
            state.insert(*id, bits(&vector(*id, *v)));
        }
        Op::Checkpoint => {}
    }
}

pub fn model_after(ops: &[Op]) -> State {
    let mut s = State::new();
    for op in ops {
        model(&mut s, op);
    }
    s
}

pub fn workload() -> Vec<Op> {
    vec![
        Op::InsertBatch((0..20).collect()),
        Op::Insert(100),
        Op::Delete(5),
        Op::Update(7, 1),
        Op::Checkpoint,
        Op::InsertBatch((20..40).collect()),
        Op::DeleteBatch(vec![1, 2, 999]),
        Op::Update(21, 2),
        Op::Checkpoint,
        Op::InsertBatch((40..45).collect()),
        Op::Delete(100),
        Op::Insert(5),
    ]
}

/// Backend operations `f` performs.
pub fn ops_of(fs: &MemBackend, f: impl FnOnce()) -> u64 {
    let before = fs.op_count();
    f();
    fs.op_count() - before
}

/// Backend operations of opening `fs` (closing it is not counted).
pub fn open_steps(fs: &Arc<MemBackend>) -> u64 {
    let before = fs.op_count();
    let db = open(fs).unwrap();
    let steps = fs.op_count() - before;
    drop(db);
    steps
}

fn recover_with(fs: &Arc<MemBackend>, mode: CrashMode) -> (DurableIndex, State) {
    fs.clear_faults();
    fs.crash_with(mode);
    let db = open(fs).unwrap_or_else(|e| panic!("recovery ({mode:?}) failed: {e}\ntrace: {:#?}", fs.trace()));
    db.check_integrity().unwrap_or_else(|e| panic!("integrity after recovery ({mode:?}): {e}"));
    assert_eq!(db.recovery_report().items_skipped, 0, "replay skipped items");
    let s = state(&db);
    (db, s)
}

/// Crashes, reopens and checks the structure; returns the recovered contents.
///
/// Recovers twice from the same state: once as if unsynced directory changes survived the
/// crash, once (the returned one) as if they were lost; both must give the same contents.
pub fn recover(fs: &Arc<MemBackend>) -> (DurableIndex, State) {
    let other = Arc::new(fs.fork());
    let (_, kept) = recover_with(&other, CrashMode::KeepDirectoryEntries);
    let (db, lost) = recover_with(fs, CrashMode::DropUnsynced);
    assert_eq!(kept, lost, "recovery depends on whether directory changes survived the crash");
    (db, lost)
}
