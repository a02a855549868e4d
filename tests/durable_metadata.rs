//! Metadata, expiry, field indexes and bulk operations by filter on a `DurableIndex`: logged with
//! their vectors, they survive reopen, crashes at every I/O step (before the append, between
//! append and sync, after the sync) and torn appends exactly; refused writes leave both the log
//! and the index unchanged. Uses the crash harness of `durable_common` ([`MemBackend`]).

mod durable_common;
use durable_common::{cfg, open, ops_of, opts, vector, DIR};
use hnsw_batch::items::{Item, MetaPatch};
use hnsw_batch::persist::{CrashMode, DurableIndex, FailMode, MemBackend, PersistError};
use hnsw_batch::{
    BatchError, BatchMode, BatchOptions, DeleteError, DeleteOptions, Expiry, Filter, IndexError,
    InvalidReason, ManualClock, MetaError, MetaValue, Metadata,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The clock of every workload: items expire at [`EXPIRES`], purges run at [`PURGE_AT`].
const NOW: u64 = 1_000;
const EXPIRES: u64 = 5_000;
const PURGE_AT: u64 = 10_000;

/// Everything observable about one item: vector bits, metadata, expiry.
type Entry = (Vec<u32>, Metadata, Option<u64>);
/// Contents of an index, expired items included, and its field indexes.
#[derive(Debug, Clone, PartialEq, Default)]
struct Full {
    items: BTreeMap<u64, Entry>,
    fields: Vec<String>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Reads every item, expired or not: the index's clock is set to 0, before every expiry used
/// here, and left there.
fn full(db: &DurableIndex) -> Full {
    db.set_clock(Arc::new(ManualClock::new(0)));
    let items = db
        .ids()
        .into_iter()
        .map(|id| {
            let v = db.get(id).expect("listed id has a vector");
            let m = db.get_metadata(id).expect("listed id has metadata");
            let e = db.get_expiry(id).expect("listed id has an expiry").at();
            (id, (bits(&v), m, e))
        })
        .collect();
    Full { items, fields: db.field_indexes() }
}

fn meta_of(id: u64) -> Metadata {
    let mut m = Metadata::new();
    m.insert("group".into(), MetaValue::Str(format!("g{}", id % 3)));
    m.insert("n".into(), MetaValue::Int(id as i64));
    m
}

fn expiry_of(id: u64) -> Option<u64> {
    id.is_multiple_of(4).then_some(EXPIRES)
}

fn group(g: u64) -> Filter {
    Filter::eq("group", format!("g{g}").as_str())
}

/// One metadata write.
#[derive(Debug, Clone)]
enum Op {
    /// Best-effort `insert_items`; each batch also carries an item whose metadata breaks the
    /// rules and a NaN vector, both rejected and not logged.
    Items(Vec<u64>),
    /// `insert_with` (metadata and the expiry of `expiry_of`).
    With(u64),
    /// `set_metadata` setting `tag` and removing `n`.
    Patch(u64),
    /// `set_expiry`.
    Expire(u64, Option<u64>),
    /// `update_with` new metadata.
    UpdateWith(u64, u32),
    /// `update_where(group == g)`, setting `seen`.
    UpdateWhere(u64),
    /// `delete_where(group == g)`.
    DeleteWhere(u64),
    /// `purge_expired` with the clock moved to [`PURGE_AT`] (and back).
    Purge,
    CreateField(&'static str),
    DropField(&'static str),
    /// A plain delete, to mix the old record kinds in.
    Delete(u64),
    Checkpoint,
}

fn patch() -> MetaPatch {
    MetaPatch::new().set("tag", "x").remove("n")
}

fn seen() -> MetaPatch {
    MetaPatch::new().set("seen", true)
}

fn new_meta(id: u64, v: u32) -> Metadata {
    let mut m = Metadata::new();
    m.insert("group".into(), MetaValue::Str(format!("g{}", (id + v as u64) % 3)));
    m.insert("v".into(), MetaValue::Int(v.into()));
    m
}

fn run(db: &DurableIndex, clock: &ManualClock, op: &Op) -> Result<(), PersistError> {
    match op {
        Op::Items(ids) => {
            let mut items: Vec<Item<Vec<f32>>> = ids
                .iter()
                .map(|&id| {
                    Item::new(id, vector(id, 0))
                        .metadata(meta_of(id))
                        .expiry(Expiry::from_option(expiry_of(id)))
                })
                .collect();
            let mut bad = Metadata::new();
            bad.insert("$reserved".into(), 1.into());
            items.push(Item::new(2_000_000, vector(7, 0)).metadata(bad));
            items.push(Item::new(1_000_000, vec![f32::NAN; 4]));
            let r = db.insert_items(&items, &BatchOptions::new().mode(BatchMode::BestEffort))?;
            assert_eq!((r.inserted, r.failures.len()), (ids.len(), 2));
            Ok(())
        }
        Op::With(id) => {
            db.insert_with(*id, &vector(*id, 0), Some(meta_of(*id)), Expiry::from_option(expiry_of(*id)))
        }
        Op::Patch(id) => db.set_metadata(*id, &patch()),
        Op::Expire(id, e) => db.set_expiry(*id, Expiry::from_option(*e)),
        Op::UpdateWith(id, v) => db.update_with(*id, &vector(*id, *v), Some(new_meta(*id, *v))),
        Op::UpdateWhere(g) => db.update_where(&group(*g), &seen(), &DeleteOptions::default()).map(|_| ()),
        Op::DeleteWhere(g) => db.delete_where(&group(*g), &DeleteOptions::default()).map(|_| ()),
        Op::Purge => {
            clock.set(PURGE_AT);
            let r = db.purge_expired(&DeleteOptions::default());
            clock.set(NOW);
            r.map(|_| ())
        }
        Op::CreateField(f) => db.create_field_index(f),
        Op::DropField(f) => db.drop_field_index(f).map(|_| ()),
        Op::Delete(id) => db.delete(*id),
        Op::Checkpoint => db.checkpoint(),
    }
}

/// What the index holds after `ops`, by the semantics of each call at [`NOW`].
fn model(ops: &[Op]) -> Full {
    let mut s = Full::default();
    let live = |e: &Entry| e.2.is_none_or(|t| NOW < t);
    let matching = |s: &Full, g: u64| -> Vec<u64> {
        s.items.iter().filter(|(_, e)| live(e) && group(g).matches(&e.1)).map(|(&id, _)| id).collect()
    };
    for op in ops {
        match op {
            Op::Items(ids) => {
                for &id in ids {
                    s.items.insert(id, (bits(&vector(id, 0)), meta_of(id), expiry_of(id)));
                }
            }
            Op::With(id) => {
                s.items.insert(*id, (bits(&vector(*id, 0)), meta_of(*id), expiry_of(*id)));
            }
            Op::Patch(id) => patch().apply(&mut s.items.get_mut(id).unwrap().1),
            Op::Expire(id, e) => s.items.get_mut(id).unwrap().2 = *e,
            Op::UpdateWith(id, v) => {
                let e = s.items.get_mut(id).unwrap();
                e.0 = bits(&vector(*id, *v));
                e.1 = new_meta(*id, *v);
            }
            Op::UpdateWhere(g) => {
                for id in matching(&s, *g) {
                    seen().apply(&mut s.items.get_mut(&id).unwrap().1);
                }
            }
            Op::DeleteWhere(g) => {
                for id in matching(&s, *g) {
                    s.items.remove(&id);
                }
            }
            Op::Purge => s.items.retain(|_, e| e.2.is_none_or(|t| PURGE_AT < t)),
            Op::CreateField(f) => {
                if !s.fields.iter().any(|x| x == f) {
                    s.fields.push(f.to_string());
                    s.fields.sort();
                }
            }
            Op::DropField(f) => s.fields.retain(|x| x != f),
            Op::Delete(id) => {
                s.items.remove(id);
            }
            Op::Checkpoint => {}
        }
    }
    s
}

fn workload() -> Vec<Op> {
    vec![
        Op::Items((0..24).collect()),
        Op::CreateField("group"),
        Op::With(100),
        Op::Patch(1),
        Op::Expire(6, Some(EXPIRES)),
        Op::Expire(12, None),
        Op::UpdateWith(7, 1),
        Op::Checkpoint,
        Op::UpdateWhere(1),
        Op::DeleteWhere(2),
        Op::Items((24..40).collect()),
        Op::Purge,
        Op::CreateField("n"),
        Op::Checkpoint,
        Op::With(44),
        Op::Patch(10),
        Op::DropField("n"),
        Op::Delete(13),
        Op::UpdateWhere(0),
        Op::Expire(10, Some(EXPIRES)),
    ]
}

/// Opens `fs` with the workload clock.
fn open_at(fs: &Arc<MemBackend>) -> Result<(DurableIndex, Arc<ManualClock>), PersistError> {
    let db = open(fs)?;
    let clock = Arc::new(ManualClock::new(NOW));
    db.set_clock(clock.clone());
    Ok((db, clock))
}

fn recover_one(fs: &Arc<MemBackend>, mode: CrashMode) -> Full {
    fs.clear_faults();
    fs.crash_with(mode);
    let db = open(fs).unwrap_or_else(|e| panic!("recovery ({mode:?}) failed: {e}"));
    db.check_integrity().unwrap();
    assert_eq!(db.recovery_report().items_skipped, 0, "replay skipped items");
    full(&db)
}

/// Crashes and reopens (as if unsynced directory changes survived, and as if they were lost;
/// both must agree); returns what was recovered.
fn recover(fs: &Arc<MemBackend>) -> Full {
    let other = Arc::new(fs.fork());
    let kept = recover_one(&other, CrashMode::KeepDirectoryEntries);
    let lost = recover_one(fs, CrashMode::DropUnsynced);
    assert_eq!(kept, lost, "recovery depends on whether directory changes survived the crash");
    lost
}

#[test]
fn model_agrees_with_the_index_and_reopen_restores_it_exactly() {
    let ops = workload();
    let fs = Arc::new(MemBackend::new());
    let (db, clock) = open_at(&fs).unwrap();
    for (i, op) in ops.iter().enumerate() {
        run(&db, &clock, op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        let got = full(&db);
        db.set_clock(clock.clone());
        assert_eq!(got, model(&ops[..=i]), "after {op:?}");
    }
    let expected = model(&ops);
    // The workload touched what it means to: patches, deletes by filter, purges, expiry.
    let one = &expected.items[&1].1;
    assert!(one.contains_key("tag") && !one.contains_key("n") && one["seen"] == true.into());
    assert!(!expected.items.contains_key(&2) && !expected.items.contains_key(&5), "deleted by filter");
    assert!(!expected.items.contains_key(&4) && !expected.items.contains_key(&6), "purged");
    assert!(expected.items.contains_key(&12) && expected.items.contains_key(&44));
    assert_eq!(expected.items[&10].2, Some(EXPIRES));
    assert_eq!(expected.fields, ["group"]);
    drop(db);
    assert_eq!(recover(&fs), expected);
}

/// The index's answers after recovery: filters, counts and field-indexed searches agree with the
/// recovered metadata, and expiry follows the clock of the reopened index.
#[test]
fn recovered_metadata_serves_filters_and_expiry() {
    let ops = workload();
    let fs = Arc::new(MemBackend::new());
    {
        let (db, clock) = open_at(&fs).unwrap();
        for op in &ops {
            run(&db, &clock, op).unwrap();
        }
    }
    let expected = model(&ops);
    let (db, clock) = open_at(&fs).unwrap();
    for g in 0..3 {
        let want: Vec<u64> = expected
            .items
            .iter()
            .filter(|(_, e)| e.2.is_none_or(|t| NOW < t) && group(g).matches(&e.1))
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(db.ids_where(&group(g)).unwrap(), want, "group {g}");
        assert_eq!(db.count(&group(g)).unwrap(), want.len());
        let hits = db.search_where(&vector(0, 0), 100, 100, &group(g)).unwrap();
        let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, want, "search_where group {g}");
    }
    // Past their expiry, the expiring items disappear from reads, and a purge removes them.
    let expiring = expected.items.values().filter(|e| e.2.is_some()).count();
    assert!(expiring > 0);
    clock.set(PURGE_AT);
    assert_eq!(db.len() - db.ids().len(), expiring);
    let dry = db.purge_expired(&DeleteOptions { dry_run: true, ..Default::default() }).unwrap();
    let done = db.purge_expired(&DeleteOptions::default()).unwrap();
    assert_eq!((dry.ids.len(), dry.deleted, dry.dry_run), (expiring, expiring, true));
    assert_eq!((&done.ids, done.deleted, done.dry_run), (&dry.ids, expiring, false));
    drop(db);
    assert_eq!(recover(&fs).items.len(), expected.items.len() - expiring);
}

/// Replay applies what was logged whatever the time at reopen: a patch and an expiry change of an
/// item that has expired since are recovered as they were made.
#[test]
fn replay_does_not_depend_on_the_clock() {
    let fs = Arc::new(MemBackend::new());
    let (db, _clock) = open_at(&fs).unwrap();
    db.insert_with(1, &vector(1, 0), Some(meta_of(1)), Expiry::At(EXPIRES)).unwrap();
    db.insert_with(2, &vector(2, 0), None, Expiry::At(EXPIRES)).unwrap();
    db.set_metadata(1, &patch()).unwrap();
    db.set_expiry(2, Expiry::At(EXPIRES + 1)).unwrap();
    let before = full(&db);
    drop(db);
    // Reopened on the system clock: both have expired long ago.
    let db = open(&fs).unwrap();
    assert!(db.ids().is_empty() && db.get_metadata(1).is_none());
    assert_eq!(db.recovery_report().items_skipped, 0);
    assert!(matches!(db.set_metadata(1, &patch()), Err(PersistError::Index(IndexError::NotFound { id: 1 }))));
    assert_eq!(full(&db), before);
    let mut want = meta_of(1);
    patch().apply(&mut want);
    assert_eq!(before.items[&1].1, want);
    assert_eq!(before.items[&2], (bits(&vector(2, 0)), Metadata::new(), Some(EXPIRES + 1)));
}

#[test]
fn crash_at_every_step_of_a_metadata_workload() {
    let ops = workload();
    let fs = Arc::new(MemBackend::new());
    let total = ops_of(&fs, || {
        let (db, clock) = open_at(&fs).unwrap();
        for op in &ops {
            run(&db, &clock, op).unwrap();
        }
    });
    for k in 0..total {
        let fs = Arc::new(MemBackend::new());
        fs.fail_after(k, FailMode::Forever);
        let mut acked = 0;
        if let Ok((db, clock)) = open_at(&fs) {
            for op in &ops {
                if run(&db, &clock, op).is_err() {
                    break;
                }
                acked += 1;
            }
        }
        let got = recover(&fs);
        let old = model(&ops[..acked]);
        let new = model(&ops[..(acked + 1).min(ops.len())]);
        assert!(got == old || got == new, "crash after {k} of {total} steps, {acked} writes acknowledged");
    }
}

/// Each write is one append and one sync. A fault before the append or between append and sync
/// fails the write without applying it; a retry succeeds; a crash after the failure recovers the
/// state before the write, a crash after the retry the state after it.
#[test]
fn metadata_writes_fail_cleanly_before_and_after_the_sync() {
    let base = [Op::Items((0..24).collect()), Op::Checkpoint, Op::With(50)];
    let writes = [
        Op::Items((24..30).collect()),
        Op::With(60),
        Op::Patch(5),
        Op::Expire(5, Some(EXPIRES)),
        Op::UpdateWith(7, 2),
        Op::UpdateWhere(1),
        Op::DeleteWhere(2),
        Op::Purge,
        Op::CreateField("group"),
    ];
    let before = model(&base);
    for write in &writes {
        let setup = || {
            let fs = Arc::new(MemBackend::new());
            let (db, clock) = open_at(&fs).unwrap();
            for op in &base {
                run(&db, &clock, op).unwrap();
            }
            (fs, db, clock)
        };
        let (fs, db, clock) = setup();
        let steps = ops_of(&fs, || run(&db, &clock, write).unwrap());
        assert_eq!(steps, 2, "{write:?}: one append, one sync");
        let after = model(&[base.to_vec(), vec![write.clone()]].concat());
        assert_ne!(after, before, "{write:?} changes something");
        for k in 0..steps {
            let (fs, db, clock) = setup();
            fs.fail_after(k, FailMode::Once);
            let err = run(&db, &clock, write).unwrap_err();
            assert!(matches!(err, PersistError::Io { .. }), "{err}");
            assert_eq!(full(&db), before, "{write:?}: failed write applied in memory");
            db.set_clock(clock.clone());
            run(&db, &clock, write).unwrap();
            assert_eq!(full(&db), after);
            drop(db);
            assert_eq!(recover(&fs), after, "{write:?} with a fault at step {k}, retried");

            let (fs, db, clock) = setup();
            fs.fail_after(k, FailMode::Once);
            assert!(run(&db, &clock, write).is_err());
            drop(db);
            assert_eq!(recover(&fs), before, "{write:?} with a fault at step {k}, then a crash");
        }
    }
}

/// A torn insert-items group (split over several records by a small `max_record_bytes`) is never
/// applied in part: every prefix of its append recovers to the state before it, the whole
/// append to the state after it.
#[test]
fn torn_insert_items_groups_are_cut_off() {
    let small = || opts().max_record_bytes(300);
    let a = Op::Items((0..6).collect());
    let b = Op::Items((6..30).collect());
    let old = model(std::slice::from_ref(&a));
    let new = model(&[a.clone(), b.clone()]);
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let db = DurableIndex::open_with(fs.clone(), DIR, cfg(), small()).unwrap();
        let clock = ManualClock::new(NOW);
        run(&db, &clock, &a).unwrap();
        (fs, db, clock)
    };
    let group_len = {
        let (_fs, db, clock) = setup();
        let before = db.stats().log_bytes;
        run(&db, &clock, &b).unwrap();
        (db.stats().log_bytes - before) as usize
    };
    assert!(group_len > 3 * 300, "{group_len} bytes: a group of several records");
    for keep in (0..=group_len).step_by(7).chain([group_len - 1, group_len]) {
        let (fs, db, clock) = setup();
        // The append lands, its sync fails: the group is in the file, not durable.
        fs.fail_after(1, FailMode::Forever);
        assert!(run(&db, &clock, &b).is_err());
        fs.clear_faults();
        std::mem::forget(db); // a crash runs no destructor
        fs.crash_with(CrashMode::KeepUnsyncedPrefix(keep));
        let db = DurableIndex::open_with(fs.clone(), DIR, cfg(), small()).unwrap();
        db.check_integrity().unwrap();
        let got = full(&db);
        if keep < group_len {
            assert_eq!(got, old, "torn group of {keep}/{group_len} bytes applied");
        } else {
            assert_eq!(got, new);
        }
    }
}

/// Refused writes touch neither the log nor the index: no backend operation at all.
#[test]
fn bad_input_leaves_the_log_and_the_index_unchanged() {
    let fs = Arc::new(MemBackend::new());
    let (db, clock) = open_at(&fs).unwrap();
    run(&db, &clock, &Op::Items((0..24).collect())).unwrap();
    let before = full(&db);
    db.set_clock(clock.clone());
    let log = db.stats().log_bytes;
    let unchanged =
        |what: &str, f: &dyn Fn() -> Result<(), PersistError>, check: &dyn Fn(&PersistError) -> bool| {
            let mut result = None;
            let steps = ops_of(&fs, || result = Some(f()));
            let err = result.unwrap().expect_err(what);
            assert!(check(&err), "{what}: {err:?}");
            assert_eq!(steps, 0, "{what}: touched the disk");
            assert_eq!(db.stats().log_bytes, log, "{what}: logged");
            assert_eq!(full(&db), before, "{what}: changed the index");
            db.set_clock(clock.clone());
        };
    let mut reserved = Metadata::new();
    reserved.insert("$x".into(), 1.into());
    let mut huge = Metadata::new();
    huge.insert("blob".into(), "x".repeat(100_000).into());
    let bad_meta = |e: &PersistError| matches!(e, PersistError::Index(IndexError::InvalidMetadata(_)));

    unchanged(
        "all-or-nothing batch with one bad map",
        &|| {
            let items = vec![
                Item::new(100, vector(100, 0)).metadata(meta_of(100)),
                Item::new(101, vector(101, 0)).metadata(huge.clone()),
            ];
            db.insert_items(&items, &BatchOptions::new()).map(|_| ())
        },
        &|e| {
            matches!(
                e,
                PersistError::Batch(BatchError::InvalidVector {
                    index: 1,
                    id: 101,
                    reason: InvalidReason::Metadata(MetaError::TooLarge { .. })
                })
            )
        },
    );
    unchanged(
        "insert_with a reserved key",
        &|| db.insert_with(200, &vector(200, 0), Some(reserved.clone()), Expiry::Never),
        &bad_meta,
    );
    unchanged(
        "insert_with a duplicate id",
        &|| db.insert_with(3, &vector(3, 0), Some(meta_of(3)), Expiry::Never),
        &|e| matches!(e, PersistError::Index(IndexError::DuplicateId { id: 3 })),
    );
    unchanged(
        "insert_with a wrong dimension",
        &|| db.insert_with(201, &[1.0], None, Expiry::At(EXPIRES)),
        &|e| matches!(e, PersistError::Index(IndexError::DimensionMismatch { .. })),
    );
    unchanged(
        "patch growing past the limit",
        &|| db.set_metadata(1, &MetaPatch::new().set("blob", "x".repeat(100_000))),
        &bad_meta,
    );
    unchanged("patch of an absent id", &|| db.set_metadata(999, &patch()), &|e| {
        matches!(e, PersistError::Index(IndexError::NotFound { id: 999 }))
    });
    unchanged("expiry of an absent id", &|| db.set_expiry(999, Expiry::Never), &|e| {
        matches!(e, PersistError::Index(IndexError::NotFound { id: 999 }))
    });
    unchanged(
        "update_with a bad map",
        &|| db.update_with(1, &vector(1, 3), Some(reserved.clone())),
        &bad_meta,
    );
    unchanged(
        "update_where growing past the limit",
        &|| {
            db.update_where(
                &group(1),
                &MetaPatch::new().set("blob", "x".repeat(100_000)),
                &DeleteOptions::default(),
            )
            .map(|_| ())
        },
        &bad_meta,
    );
    let n = db.count(&group(1)).unwrap();
    assert!(n > 2);
    for (what, opts, want) in [
        (
            "confirm_count",
            DeleteOptions { confirm_count: Some(n - 1), ..Default::default() },
            DeleteError::CountMismatch { expected: n - 1, found: n },
        ),
        (
            "max_affected",
            DeleteOptions { max_affected: Some(n - 1), ..Default::default() },
            DeleteError::TooMany { limit: n - 1, found: n },
        ),
    ] {
        let refused =
            |e: &PersistError| matches!(e, PersistError::Index(IndexError::Refused(r)) if *r == want);
        unchanged(what, &|| db.delete_where(&group(1), &opts).map(|_| ()), &refused);
        unchanged(what, &|| db.update_where(&group(1), &seen(), &opts).map(|_| ()), &refused);
    }
    unchanged(
        "purge with a wrong confirm_count",
        &|| {
            clock.set(PURGE_AT);
            let r = db.purge_expired(&DeleteOptions { confirm_count: Some(0), ..Default::default() });
            clock.set(NOW);
            r.map(|_| ())
        },
        &|e| {
            matches!(
                e,
                PersistError::Index(IndexError::Refused(DeleteError::CountMismatch { expected: 0, .. }))
            )
        },
    );
    let invalid = Filter::and([Filter::eq("group", "g1"), Filter::or([])]);
    let bad_filter = |e: &PersistError| matches!(e, PersistError::Index(IndexError::InvalidFilter(f)) if f.path == "$and[1].$or");
    unchanged(
        "delete_where an invalid filter",
        &|| db.delete_where(&invalid, &DeleteOptions::default()).map(|_| ()),
        &bad_filter,
    );
    unchanged(
        "update_where an invalid filter",
        &|| db.update_where(&invalid, &seen(), &DeleteOptions::default()).map(|_| ()),
        &bad_filter,
    );
    unchanged("a field index named `$x`", &|| db.create_field_index("$x"), &bad_meta);

    // Dry runs report without logging, and the real runs then do exactly what they reported.
    let dry = DeleteOptions { dry_run: true, ..Default::default() };
    let steps = ops_of(&fs, || {
        let d = db.delete_where(&group(2), &dry).unwrap();
        let u = db.update_where(&group(1), &seen(), &dry).unwrap();
        assert!(d.dry_run && u.dry_run);
        assert_eq!((d.deleted, u.updated), (d.ids.len(), u.ids.len()));
    });
    assert_eq!(steps, 0);
    assert_eq!(full(&db), before);
    db.set_clock(clock.clone());
    let plan_d = db.delete_where(&group(2), &dry).unwrap();
    let plan_u = db.update_where(&group(1), &seen(), &dry).unwrap();
    let guard =
        |n: usize| DeleteOptions { confirm_count: Some(n), max_affected: Some(n), ..Default::default() };
    let d = db.delete_where(&group(2), &guard(plan_d.total)).unwrap();
    let u = db.update_where(&group(1), &seen(), &guard(plan_u.total)).unwrap();
    assert_eq!((&d.ids, d.deleted, d.dry_run), (&plan_d.ids, plan_d.deleted, false));
    assert_eq!((&u.ids, u.updated, u.dry_run), (&plan_u.ids, plan_u.updated, false));
    assert_eq!(db.count(&group(2)).unwrap(), 0);
    assert_eq!(db.count(&Filter::eq("seen", true)).unwrap(), plan_u.updated);
}

/// `set_metadata_batch`: one append and one sync for many patches; absent ids, repeats and maps
/// over the limits are reported and change nothing.
#[test]
fn metadata_batches_are_one_append() {
    let fs = Arc::new(MemBackend::new());
    let (db, clock) = open_at(&fs).unwrap();
    run(&db, &clock, &Op::Items((0..10).collect())).unwrap();
    let items = vec![
        (1, MetaPatch::new().set("a", 1)),
        (2, MetaPatch::new().set("a", 2)),
        (999, MetaPatch::new().set("a", 3)),
        (1, MetaPatch::new().set("a", 4)),
        (3, MetaPatch::new().set("blob", "x".repeat(100_000))),
    ];
    let mut report = None;
    assert_eq!(ops_of(&fs, || report = Some(db.set_metadata_batch(&items).unwrap())), 2);
    let r = report.unwrap();
    assert_eq!((r.total, r.updated, r.not_found), (5, 2, 1));
    let failed: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
    assert_eq!(failed, [3, 4]);
    assert!(matches!(r.failures[0].error, BatchError::DuplicateId { index: 3, id: 1, first_index: Some(0) }));
    let before = full(&db);
    assert_eq!(before.items[&1].1["a"], 1.into());
    assert!(!before.items[&3].1.contains_key("blob"));
    drop(db);
    assert_eq!(recover(&fs), before);
}

/// 60 items, ids 0..60, each with `meta_of`; the even ids expire at [`EXPIRES`].
fn expiring_items(db: &DurableIndex) {
    let items: Vec<Item<Vec<f32>>> = (0..60u64)
        .map(|id| {
            let e = if id.is_multiple_of(2) { Expiry::At(EXPIRES) } else { Expiry::Never };
            Item::new(id, vector(id, 0)).metadata(meta_of(id)).expiry(e)
        })
        .collect();
    db.insert_items(&items, &BatchOptions::new()).unwrap();
}

/// `DeleteOptions::batch_size` splits a bulk operation by filter into batches of one append
/// and one sync each; the report is the same as in one batch, and a dry run still touches
/// nothing.
#[test]
fn bulk_operations_by_filter_commit_one_append_and_sync_per_batch() {
    let expired: Vec<u64> = (0..60).step_by(2).collect();
    for (batch_size, batches) in [(0, 1), (7, 5), (10, 3), (30, 1), (1000, 1)] {
        let fs = Arc::new(MemBackend::new());
        let (db, clock) = open_at(&fs).unwrap();
        expiring_items(&db);
        clock.set(PURGE_AT);
        let opts = DeleteOptions::new().batch_size(batch_size);
        let mut dry = None;
        assert_eq!(ops_of(&fs, || dry = Some(db.purge_expired(&opts.clone().dry_run(true)).unwrap())), 0);
        let dry = dry.unwrap();
        assert_eq!((dry.dry_run, dry.total, dry.deleted, &dry.ids), (true, 30, 30, &expired));
        let log = db.stats().log_bytes;
        let mut done = None;
        let steps = ops_of(&fs, || done = Some(db.purge_expired(&opts).unwrap()));
        assert_eq!(steps, 2 * batches, "batch_size {batch_size}: one append and one sync per batch");
        let done = done.unwrap();
        assert_eq!((done.dry_run, done.total, done.deleted, done.not_found), (false, 30, 30, 0));
        assert_eq!(done.ids, dry.ids, "batch_size {batch_size}");
        assert!(db.stats().log_bytes > log);
        assert_eq!(db.len(), 30);
        // update_where and delete_where batch the same way.
        clock.set(NOW);
        let g1 = db.count(&group(1)).unwrap();
        let mut u = None;
        let steps = ops_of(&fs, || u = Some(db.update_where(&group(1), &seen(), &opts).unwrap()));
        let want = |n: usize| if batch_size == 0 { 1 } else { n.div_ceil(batch_size) as u64 };
        assert_eq!(steps, 2 * want(g1), "update_where, batch_size {batch_size}");
        assert_eq!((u.unwrap().updated, db.count(&Filter::eq("seen", true)).unwrap()), (g1, g1));
        let g2 = db.count(&group(2)).unwrap();
        let steps = ops_of(&fs, || assert_eq!(db.delete_where(&group(2), &opts).unwrap().deleted, g2));
        assert_eq!(steps, 2 * want(g2), "delete_where, batch_size {batch_size}");
        let after = full(&db);
        drop(db);
        assert_eq!(recover(&fs), after, "batch_size {batch_size}: reopened");
    }
}

/// A crash at any I/O step of a purge in batches recovers the batches acknowledged before it:
/// a prefix of the expired ids, whole batches only. A failure after the first batch reports
/// what was committed ([`PersistError::Partial`]); running the purge again finishes it.
#[test]
fn crash_between_purge_batches_recovers_a_prefix_of_batches() {
    let expired: Vec<u64> = (0..60).step_by(2).collect();
    let batch = 7;
    let opts = DeleteOptions::new().batch_size(batch);
    let setup = || {
        let fs = Arc::new(MemBackend::new());
        let (db, clock) = open_at(&fs).unwrap();
        expiring_items(&db);
        clock.set(PURGE_AT);
        (fs, db, clock)
    };
    let before = {
        let (_fs, db, _clock) = setup();
        full(&db)
    };
    let without = |ids: &[u64]| {
        let mut f = before.clone();
        for id in ids {
            f.items.remove(id);
        }
        f
    };
    let steps = {
        let (fs, db, _clock) = setup();
        ops_of(&fs, || {
            db.purge_expired(&opts).unwrap();
        })
    };
    assert_eq!(steps, 2 * expired.len().div_ceil(batch) as u64);
    for k in 0..steps {
        let (fs, db, clock) = setup();
        fs.fail_after(k, FailMode::Forever);
        let err = db.purge_expired(&opts).unwrap_err();
        // Step k is the append (even) or the sync (odd) of batch k / 2.
        let acked = (k / 2) as usize * batch;
        match &err {
            PersistError::Io { .. } => assert_eq!(acked, 0, "step {k}: {err}"),
            PersistError::Partial { committed, error } => {
                assert!(matches!(**error, PersistError::Io { .. }), "step {k}: {error}");
                let c = committed;
                assert_eq!((c.total, c.deleted, c.not_found, c.dry_run), (30, acked, 0, false));
                assert_eq!(committed.ids, expired[..acked], "step {k}");
            }
            other => panic!("step {k}: unexpected error {other}"),
        }
        // In memory, exactly the acknowledged batches were applied.
        assert_eq!(full(&db), without(&expired[..acked]), "step {k}: in memory");
        db.set_clock(clock.clone());
        drop(db);
        let got = recover(&fs);
        assert_eq!(got, without(&expired[..acked]), "step {k} of {steps}: recovered");
        // Running the purge again on the recovered index finishes the job.
        let (db, clock) = open_at(&fs).unwrap();
        clock.set(PURGE_AT);
        let r = db.purge_expired(&opts).unwrap();
        assert_eq!(r.ids, expired[acked..], "step {k}: the rest");
        assert_eq!(full(&db), without(&expired));
    }
}
