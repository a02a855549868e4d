//! Property test: random sequences of every write and read operation (insert, both modes of
//! `insert_batch`, delete, both modes of `delete_batch`, update, both modes of `update_batch`, search,
//! `search_exact`) against a brute-force model of the index contents, checked after every step.
//!
//! Ids come from a small range, so operations keep colliding on the same ids (insert over a live
//! id, update of a deleted one, an id twice in one batch, re-insert after delete). Vectors have
//! small integer components, so squared L2 distances are exact and "nearest first, ties by id"
//! is checked exactly; under cosine, distances are compared with a tolerance.
//!
//! Cases default to 1024 per test (a few seconds); `PROPTEST_CASES` overrides.

use hnsw_batch::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};

/// Ids are drawn from `0..ID_RANGE`: small, so operations collide.
const ID_RANGE: u64 = 10;
const DIM: usize = 4;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1024)
}

/// A vector as given to the index: usually valid, sometimes NaN or of the wrong length.
fn vector() -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        12 => prop::array::uniform4(-3i8..=3).prop_map(|v| v.iter().map(|&x| x as f32).collect()),
        1 => Just(vec![f32::NAN, 0.0, 1.0, 0.0]),
        1 => prop_oneof![Just(3usize), Just(5usize)].prop_map(|n| vec![1.0; n]),
    ]
}

fn id() -> impl Strategy<Value = u64> {
    0..ID_RANGE
}

fn mode() -> impl Strategy<Value = BatchMode> {
    prop_oneof![Just(BatchMode::AllOrNothing), Just(BatchMode::BestEffort)]
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, Vec<f32>),
    /// Items, mode, `batch_size` (0 = one chunk).
    InsertBatch(Vec<(u64, Vec<f32>)>, BatchMode, usize),
    Delete(u64),
    DeleteBatch(Vec<u64>, BatchMode),
    Update(u64, Vec<f32>),
    UpdateBatch(Vec<(u64, Vec<f32>)>, BatchMode),
    /// Query, k.
    Search([i8; 4], usize),
    SearchExact([i8; 4], usize),
}

fn op() -> impl Strategy<Value = Op> {
    let items = || prop::collection::vec((id(), vector()), 0..8);
    let query = || prop::array::uniform4(-4i8..=4);
    prop_oneof![
        4 => (id(), vector()).prop_map(|(i, v)| Op::Insert(i, v)),
        3 => (items(), mode(), prop_oneof![Just(0usize), 1..4usize])
            .prop_map(|(it, m, b)| Op::InsertBatch(it, m, b)),
        3 => id().prop_map(Op::Delete),
        1 => (prop::collection::vec(id(), 0..5), mode()).prop_map(|(ids, m)| Op::DeleteBatch(ids, m)),
        3 => (id(), vector()).prop_map(|(i, v)| Op::Update(i, v)),
        2 => (items(), mode()).prop_map(|(it, m)| Op::UpdateBatch(it, m)),
        2 => (query(), 1..6usize).prop_map(|(q, k)| Op::Search(q, k)),
        2 => (query(), 1..6usize).prop_map(|(q, k)| Op::SearchExact(q, k)),
    ]
}

struct Model {
    metric: Metric,
    /// `max_elements` of the index, if any.
    max: Option<usize>,
    /// Live ids and the vectors as given (not normalised).
    live: BTreeMap<u64, Vec<f32>>,
}

impl Model {
    /// How many more vectors fit under `max_elements`.
    fn room(&self) -> usize {
        self.max.map_or(usize::MAX, |m| m.saturating_sub(self.live.len()))
    }

    fn valid(&self, v: &[f32]) -> bool {
        v.len() == DIM
            && v.iter().all(|x| x.is_finite())
            && (self.metric != Metric::Cosine || v.iter().any(|&x| x != 0.0))
    }

    /// The vector the index should return from `get` (normalised under cosine).
    fn stored(&self, v: &[f32]) -> Vec<f64> {
        let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        if self.metric == Metric::Cosine {
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / n).collect()
        } else {
            v
        }
    }

    fn distance(&self, q: &[f32], v: &[f32]) -> f64 {
        let (q, v) = (self.stored(q), self.stored(v));
        match self.metric {
            Metric::L2 => q.iter().zip(&v).map(|(a, b)| (a - b) * (a - b)).sum(),
            _ => 1.0 - q.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>(),
        }
    }

    /// Every live id by (distance, id).
    fn ranked(&self, q: &[f32]) -> Vec<(u64, f64)> {
        let mut all: Vec<(u64, f64)> = self.live.iter().map(|(&id, v)| (id, self.distance(q, v))).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all
    }

    /// Tolerance on distances: exact for L2 on integer vectors, rounding for cosine.
    fn tol(&self) -> f64 {
        if self.metric == Metric::L2 {
            0.0
        } else {
            1e-5
        }
    }

    /// Exact top-k: under L2 the ids must equal brute force (ties by id); under cosine each
    /// rank's distance must match and each id's reported distance must be its true one.
    fn check_exact(&self, q: &[f32], k: usize, hits: &[Neighbour], what: &str) -> Result<(), TestCaseError> {
        let truth = self.ranked(q);
        let want: Vec<(u64, f64)> = truth.into_iter().take(k).collect();
        prop_assert_eq!(hits.len(), want.len(), "{}: {:?} vs brute force {:?}", what, hits, want);
        if self.metric == Metric::L2 {
            let got: Vec<(u64, f64)> = hits.iter().map(|h| (h.id, h.distance as f64)).collect();
            prop_assert_eq!(&got, &want, "{}: not the brute-force top {} (ties by id)", what, k);
        } else {
            for (h, w) in hits.iter().zip(&want) {
                prop_assert!((h.distance as f64 - w.1).abs() <= self.tol(), "{}: {:?} vs {:?}", what, h, w);
            }
        }
        self.check_hits(q, hits, what)
    }

    /// Any search: live ids only, each once, true distances, nearest first with ties by id.
    fn check_hits(&self, q: &[f32], hits: &[Neighbour], what: &str) -> Result<(), TestCaseError> {
        let mut seen = HashSet::new();
        for h in hits {
            let v = self.live.get(&h.id);
            prop_assert!(v.is_some(), "{}: result {} is not live ({:?})", what, h.id, hits);
            prop_assert!(seen.insert(h.id), "{}: id {} twice in {:?}", what, h.id, hits);
            let d = self.distance(q, v.unwrap());
            prop_assert!(
                (h.distance as f64 - d).abs() <= self.tol(),
                "{}: {:?}, true distance {}",
                what,
                h,
                d
            );
        }
        for w in hits.windows(2) {
            let ordered =
                w[0].distance < w[1].distance || (w[0].distance == w[1].distance && w[0].id < w[1].id);
            prop_assert!(ordered, "{}: {:?} before {:?}", what, w[0], w[1]);
        }
        Ok(())
    }

    /// Everything observable about the contents, after every operation.
    fn check_index(&self, index: &Index, step: usize) -> Result<(), TestCaseError> {
        prop_assert_eq!(index.len(), self.live.len(), "step {}: len", step);
        for id in 0..ID_RANGE {
            let want = self.live.get(&id);
            prop_assert_eq!(index.contains(id), want.is_some(), "step {}: contains({})", step, id);
            let got = index.get(id);
            prop_assert_eq!(got.is_some(), want.is_some(), "step {}: get({}) = {:?}", step, id, got);
            if let (Some(got), Some(want)) = (got, want) {
                let want = self.stored(want);
                let close = got.iter().zip(&want).all(|(&g, w)| (g as f64 - w).abs() <= 1e-6);
                prop_assert!(
                    got.len() == DIM && close,
                    "step {}: get({}) = {:?}, want {:?}",
                    step,
                    id,
                    got,
                    want
                );
            }
        }
        let mut ids = index.ids();
        ids.sort_unstable();
        prop_assert_eq!(ids, self.live.keys().copied().collect::<Vec<_>>(), "step {}: ids()", step);
        match index.check_integrity() {
            Ok(_) => {}
            // Reachability under delete and update churn is restored by the whole-graph repair,
            // which no mutation runs (docs/architecture.md, "Reachability"); every other
            // invariant (id map, links, exact in-degrees) must hold after every step.
            Err(hnsw_batch::IntegrityError::Unreachable { .. }) => {
                index.repair();
                if let Err(e) = index.check_integrity() {
                    return Err(TestCaseError::fail(format!("step {step}: after repair: {e}")));
                }
            }
            Err(e) => return Err(TestCaseError::fail(format!("step {step}: check_integrity: {e}"))),
        }
        let q = [1.0f32, -2.0, 3.0, 0.5];
        let k = ID_RANGE as usize;
        let what = format!("step {step}: search_exact all");
        self.check_exact(&q, k, &index.search_exact(&q, k, |_| true).unwrap(), &what)?;
        // ef >= len: the exact scan, so exactly the brute force answer too.
        let what = format!("step {step}: search with ef >= len");
        self.check_exact(&q, k, &index.search(&q, k, 64).unwrap(), &what)
    }
}

fn is_vector_error(e: &IndexError) -> bool {
    matches!(
        e,
        IndexError::DimensionMismatch { .. } | IndexError::NonFiniteValue { .. } | IndexError::ZeroVector
    )
}

/// Runs `ops` on a fresh index and the model, checking after every step. With `chunked_aon`
/// false, all-or-nothing batches ignore their generated `batch_size` (one chunk).
fn run(metric: Metric, max: Option<usize>, chunked_aon: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut cfg = IndexConfig::new(DIM, metric).m(4).ef_construction(16);
    if let Some(m) = max {
        cfg = cfg.max_elements(m);
    }
    let index = Index::new(cfg).unwrap();
    let mut model = Model { metric, max, live: BTreeMap::new() };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Insert(id, v) => {
                let res = index.insert(*id, v);
                if !model.valid(v) {
                    prop_assert!(res.as_ref().is_err_and(is_vector_error), "step {}: {:?}", step, res);
                } else if model.live.contains_key(id) {
                    prop_assert_eq!(res, Err(IndexError::DuplicateId { id: *id }), "step {}", step);
                } else if model.room() == 0 {
                    let res = res.map_err(|e| matches!(e, IndexError::CapacityExceeded { .. }));
                    prop_assert_eq!(res, Err(true), "step {}: insert into a full index", step);
                } else {
                    prop_assert_eq!(res, Ok(()), "step {}", step);
                    model.live.insert(*id, v.clone());
                }
            }
            Op::InsertBatch(items, mode, batch_size) => {
                // Invalid items claim no id; a valid item is a duplicate if its id is live or
                // was claimed by an earlier valid item of the batch.
                let mut claimed = HashSet::new();
                let invalid: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, (id, v))| {
                        !model.valid(v) || model.live.contains_key(id) || !claimed.insert(*id)
                    })
                    .map(|(i, _)| i)
                    .collect();
                // The accepted items that fit under max_elements, in input order; the rest fail.
                let accepted: Vec<usize> = (0..items.len()).filter(|i| !invalid.contains(i)).collect();
                let room = model.room().min(accepted.len());
                let (fit, over) = accepted.split_at(room);
                let batch_size =
                    if *mode == BatchMode::AllOrNothing && !chunked_aon { 0 } else { *batch_size };
                let opts = BatchOptions::new().mode(*mode).batch_size(batch_size);
                let res = index.insert_batch(items, &opts);
                match (mode, res) {
                    (BatchMode::AllOrNothing, Err(e)) => {
                        // The first invalid item, else the first that does not fit; nothing changes.
                        let want = invalid.first().or(over.first()).copied();
                        prop_assert_eq!(e.index(), want, "step {}: {}", step, e);
                        if invalid.is_empty() {
                            let capacity = matches!(e, BatchError::CapacityExceeded { .. });
                            prop_assert!(capacity, "step {}: {}", step, e);
                        }
                    }
                    (BatchMode::AllOrNothing, Ok(r)) => {
                        prop_assert!(
                            invalid.is_empty() && over.is_empty(),
                            "step {}: accepted, expected failures {:?}, over capacity {:?}",
                            step,
                            invalid,
                            over
                        );
                        prop_assert_eq!((r.total, r.inserted), (items.len(), items.len()), "step {}", step);
                        let all: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
                        prop_assert_eq!(&r.ids, &all, "step {}: ids inserted", step);
                        model.live.extend(items.iter().cloned());
                    }
                    (BatchMode::BestEffort, Ok(r)) => {
                        let mut want: Vec<usize> = invalid.iter().chain(over).copied().collect();
                        want.sort_unstable();
                        let got: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
                        prop_assert_eq!(&got, &want, "step {}: failures", step);
                        for f in &r.failures {
                            let capacity = matches!(f.error, BatchError::CapacityExceeded { .. });
                            prop_assert_eq!(capacity, over.contains(&f.index), "step {}: {:?}", step, f);
                        }
                        prop_assert_eq!(r.total, items.len(), "step {}", step);
                        prop_assert_eq!(r.inserted, fit.len(), "step {}: {:?}", step, r);
                        prop_assert_eq!(r.inserted + r.failures.len(), r.total, "step {}: {:?}", step, r);
                        let fit_ids: Vec<u64> = fit.iter().map(|&i| items[i].0).collect();
                        prop_assert_eq!(&r.ids, &fit_ids, "step {}: ids inserted", step);
                        for &i in fit {
                            model.live.insert(items[i].0, items[i].1.clone());
                        }
                    }
                    (BatchMode::BestEffort, Err(e)) => {
                        prop_assert!(false, "step {}: best effort failed: {}", step, e)
                    }
                }
            }
            Op::Delete(id) => {
                let res = index.delete(*id);
                if model.live.remove(id).is_some() {
                    prop_assert_eq!(res, Ok(()), "step {}", step);
                } else {
                    prop_assert_eq!(res, Err(IndexError::NotFound { id: *id }), "step {}", step);
                }
            }
            Op::DeleteBatch(ids, mode) => {
                let res = index.delete_batch(ids, &BatchOptions::new().mode(*mode));
                let mut seen = HashSet::new();
                let first_repeat = ids.iter().position(|id| !seen.insert(*id));
                if let (BatchMode::AllOrNothing, Some(i)) = (mode, first_repeat) {
                    // A repeated id refuses the whole batch: nothing is deleted.
                    let e = res.expect_err("all-or-nothing accepted a repeated id");
                    prop_assert_eq!(e.index(), Some(i), "step {}: {}", step, e);
                    continue;
                }
                let r = res.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                let mut seen = HashSet::new();
                let deleted: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|id| seen.insert(*id) && model.live.remove(id).is_some())
                    .collect();
                prop_assert_eq!(
                    (r.total, r.deleted, r.not_found, r.failures.len()),
                    (ids.len(), deleted.len(), seen.len() - deleted.len(), ids.len() - seen.len()),
                    "step {}",
                    step
                );
                prop_assert_eq!(&r.ids, &deleted, "step {}: ids deleted", step);
            }
            Op::Update(id, v) => {
                let res = index.update(*id, v);
                if !model.valid(v) {
                    prop_assert!(res.as_ref().is_err_and(is_vector_error), "step {}: {:?}", step, res);
                } else if !model.live.contains_key(id) {
                    prop_assert_eq!(res, Err(IndexError::NotFound { id: *id }), "step {}", step);
                } else {
                    prop_assert_eq!(res, Ok(()), "step {}", step);
                    model.live.insert(*id, v.clone());
                }
            }
            Op::UpdateBatch(items, mode) => {
                // Bad: an invalid vector, or an id given earlier in the batch.
                let mut given = HashSet::new();
                let bad: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, (id, v))| !given.insert(*id) || !model.valid(v))
                    .map(|(i, _)| i)
                    .collect();
                let res = index.update_batch(items, &BatchOptions::new().mode(*mode));
                match (mode, res) {
                    (BatchMode::AllOrNothing, Err(e)) => {
                        prop_assert_eq!(e.index(), bad.first().copied(), "step {}: {}", step, e);
                    }
                    (_, Ok(r)) => {
                        prop_assert!(
                            *mode == BatchMode::BestEffort || bad.is_empty(),
                            "step {}: accepted",
                            step
                        );
                        let got: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
                        prop_assert_eq!(&got, &bad, "step {}: failures", step);
                        let mut updated = Vec::new();
                        for (i, (id, v)) in items.iter().enumerate() {
                            if !bad.contains(&i) && model.live.contains_key(id) {
                                model.live.insert(*id, v.clone());
                                updated.push(*id);
                            }
                        }
                        let not_found = items.len() - bad.len() - updated.len();
                        prop_assert_eq!(
                            (r.total, r.updated, r.not_found),
                            (items.len(), updated.len(), not_found),
                            "step {}",
                            step
                        );
                        prop_assert_eq!(&r.ids, &updated, "step {}: ids updated", step);
                    }
                    (m, Err(e)) => prop_assert!(false, "step {}: {:?} failed: {}", step, m, e),
                }
            }
            Op::Search(q, k) => {
                let q: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                if model.metric == Metric::Cosine && q.iter().all(|&x| x == 0.0) {
                    prop_assert_eq!(index.search(&q, *k, *k), Err(IndexError::ZeroVector));
                    continue;
                }
                // ef = k: the graph walk whenever more than k vectors are live.
                let hits = index.search(&q, *k, *k).unwrap();
                prop_assert!(hits.len() <= *k);
                model.check_hits(&q, &hits, &format!("step {step}: search k {k} ef {k}"))?;
                let hits = index.search(&q, *k, 64).unwrap();
                model.check_exact(&q, *k, &hits, &format!("step {step}: search k {k} ef 64"))?;
            }
            Op::SearchExact(q, k) => {
                let q: Vec<f32> = q.iter().map(|&x| x as f32).collect();
                if model.metric == Metric::Cosine && q.iter().all(|&x| x == 0.0) {
                    prop_assert_eq!(index.search_exact(&q, *k, |_| true), Err(IndexError::ZeroVector));
                    continue;
                }
                let hits = index.search_exact(&q, *k, |_| true).unwrap();
                model.check_exact(&q, *k, &hits, &format!("step {step}: search_exact k {k}"))?;
                let even = index.search_exact(&q, *k, |id| id % 2 == 0).unwrap();
                prop_assert!(even.iter().all(|h| h.id % 2 == 0), "step {}: filter ignored: {:?}", step, even);
                model.check_hits(&q, &even, &format!("step {step}: search_exact even ids"))?;
            }
        }
        model.check_index(&index, step)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn operations_match_model_l2(ops in prop::collection::vec(op(), 1..120)) {
        run(Metric::L2, None, true, &ops)?;
    }

    #[test]
    fn operations_match_model_cosine(ops in prop::collection::vec(op(), 1..120)) {
        run(Metric::Cosine, None, true, &ops)?;
    }

    /// With `max_elements` below the id range, inserts keep hitting the limit. All-or-nothing
    /// batches run as one chunk here; chunked ones are the next test.
    #[test]
    fn operations_match_model_with_max_elements(ops in prop::collection::vec(op(), 1..120)) {
        run(Metric::L2, Some(6), false, &ops)?;
    }

    /// As above, all-or-nothing batches also split into chunks (`batch_size` 1..4).
    #[test]
    fn operations_match_model_with_max_elements_chunked(ops in prop::collection::vec(op(), 1..120)) {
        run(Metric::L2, Some(6), true, &ops)?;
    }
}

/// Minimal reproduction of the bug the chunked test above found (issue 9): an all-or-nothing
/// batch that does not fit under `max_elements` must change nothing, whatever its `batch_size`.
#[test]
fn chunked_all_or_nothing_batch_over_capacity_changes_nothing() {
    let index = Index::new(IndexConfig::new(DIM, Metric::L2).max_elements(6)).unwrap();
    index.insert(1, &[0.0; DIM]).unwrap();
    index.insert(4, &[0.0; DIM]).unwrap();
    let items: Vec<(u64, Vec<f32>)> =
        [0u64, 8, 5, 2, 3].iter().map(|&id| (id, vec![id as f32; DIM])).collect();
    let opts = BatchOptions::new().mode(BatchMode::AllOrNothing).batch_size(1);
    let err = index.insert_batch(&items, &opts).unwrap_err();
    assert!(matches!(err, BatchError::CapacityExceeded { index: 4, .. }), "{err}");
    assert_eq!(index.len(), 2, "a rejected all-or-nothing batch changed the index: ids {:?}", index.ids());
}

/// One batch into an index prefilled up to near `max_elements`, checked against the contract of
/// its mode: best effort accounts for every item exactly once (`inserted + failures == total`,
/// failures sorted by position, one per position, each naming its own position); all-or-nothing
/// is `Ok` with every item in, or `Err` with the index unchanged (length, ids, graph).
fn check_batch_contract(
    max: usize,
    prefill: &[(u64, Vec<f32>)],
    items: &[(u64, Vec<f32>)],
    mode: BatchMode,
    batch_size: usize,
) -> Result<(), TestCaseError> {
    let index =
        Index::new(IndexConfig::new(DIM, Metric::L2).m(4).ef_construction(16).max_elements(max)).unwrap();
    for (id, v) in prefill {
        // Prefill failures (duplicates, bad vectors, full) are fine: only the state matters.
        let _ = index.insert(*id, v);
    }
    let mut ids_before = index.ids();
    ids_before.sort_unstable();
    let before = (index.len(), ids_before, index.graph_fingerprint(), index.allocated_nodes());
    let res = index.insert_batch(items, &BatchOptions::new().mode(mode).batch_size(batch_size));
    let mut ids_after = index.ids();
    ids_after.sort_unstable();
    match (mode, res) {
        (BatchMode::BestEffort, Ok(r)) => {
            prop_assert_eq!(r.total, items.len());
            prop_assert_eq!(r.inserted + r.failures.len(), r.total, "{:?}", r);
            for w in r.failures.windows(2) {
                prop_assert!(w[0].index < w[1].index, "failures not sorted / repeated: {:?}", r.failures);
            }
            for f in &r.failures {
                prop_assert!(f.index < items.len(), "{:?}", f);
                prop_assert_eq!(f.error.index(), Some(f.index), "{:?}", f);
                prop_assert_eq!(f.id, items[f.index].0, "{:?}", f);
            }
            prop_assert_eq!(index.len(), before.0 + r.inserted);
            prop_assert!(index.len() <= max);
            for (i, (id, _)) in items.iter().enumerate() {
                if r.failures.binary_search_by_key(&i, |f| f.index).is_err() {
                    prop_assert!(index.contains(*id), "item {} (id {}) neither inserted nor failed", i, id);
                }
            }
        }
        (BatchMode::BestEffort, Err(e)) => prop_assert!(false, "best effort failed: {}", e),
        (BatchMode::AllOrNothing, Ok(r)) => {
            prop_assert_eq!((r.total, r.inserted), (items.len(), items.len()));
            prop_assert!(r.failures.is_empty());
            prop_assert_eq!(index.len(), before.0 + items.len());
            prop_assert!(items.iter().all(|(id, _)| index.contains(*id)));
        }
        (BatchMode::AllOrNothing, Err(e)) => {
            prop_assert!(e.index().is_some_and(|i| i < items.len()), "{:?}", e);
            let after = (index.len(), ids_after, index.graph_fingerprint(), index.allocated_nodes());
            prop_assert_eq!(after, before, "rejected batch ({}) changed the index", e);
        }
    }
    if let Err(e) = index.check_integrity() {
        return Err(TestCaseError::fail(format!("check_integrity: {e}")));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random batches (duplicates in the batch and against the index, NaN and wrong-length
    /// vectors) into an index near its `max_elements`, both modes, random `batch_size`.
    /// Catches a best-effort item dropped without a failure (or reported twice), and an
    /// all-or-nothing batch that links some chunks before failing. Proptest prints the failing
    /// input (the reproduction) and keeps it in `batch_model.proptest-regressions`.
    #[test]
    fn batch_contract_holds(
        max in 1..16usize,
        prefill in prop::collection::vec((0..2 * ID_RANGE, vector()), 0..12),
        items in prop::collection::vec((0..2 * ID_RANGE, vector()), 0..24),
        mode in mode(),
        batch_size in prop_oneof![Just(0usize), 1..6usize],
    ) {
        check_batch_contract(max, &prefill, &items, mode, batch_size)?;
    }
}

/// Found by `batch_contract_holds` while level 0 took up to `m0` neighbours at insert: with few
/// candidates the selection heuristic keeps them all without comparing them, so a batch of exact
/// duplicates went unnoticed, the batch skipped its repair pass, and 8 of 10 vectors were cut
/// off. Duplicates are now noticed from the candidate distances themselves.
#[test]
fn a_batch_of_exact_duplicates_into_a_small_index_leaves_every_vector_reachable() {
    let index =
        Index::new(IndexConfig::new(DIM, Metric::L2).m(4).ef_construction(16).max_elements(11)).unwrap();
    let z = vec![0.0f32; DIM];
    for (id, v) in [
        (8, z.clone()),
        (3, z.clone()),
        (4, z.clone()),
        (0, vec![0., 0., -1., 0.]),
        (1, vec![0., 3., -1., 0.]),
        (5, z.clone()),
    ] {
        index.insert(id, &v).unwrap();
    }
    let items: Vec<(u64, Vec<f32>)> = vec![
        (3, z.clone()),
        (0, z.clone()),
        (6, z.clone()),
        (7, z.clone()),
        (9, z.clone()),
        (2, vec![0., 3., -1., 0.]),
    ];
    let report =
        index.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort).batch_size(5)).unwrap();
    assert_eq!((report.inserted, report.failures.len()), (4, 2));
    index.check_integrity().unwrap();
}
