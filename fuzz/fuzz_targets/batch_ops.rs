//! Byte stream -> sequence of inserts, batches (both modes), deletes, updates, searches,
//! compactions and delete-then-reinsert (slot reuse) on a small index and a small id range, so
//! the same ids churn. Checked after every step against a brute-force model (`len`, `contains`,
//! `get` of every id in range; `search_exact` and `search` against brute force),
//! `check_integrity` (after `repair` when live vectors are exact duplicates, whose links the
//! heuristic may drop), and a bound on allocated slots (deleted slots must be reused).
#![no_main]

use hnsw_batch::*;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const DIM: usize = 3;
/// Ids in play: few enough that inserts, deletes and updates keep meeting the same ids, more
/// than `CAPACITY` so capacity errors happen too.
const IDS: u8 = 24;
const CAPACITY: usize = 20;
/// Slots beyond twice the most vectors ever live: tombstones still linked (pending) and slots
/// in their grace period. Without reuse, churn grows `allocated` past any such bound.
const SLOT_SLACK: usize = 16;

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn vector(&mut self) -> Option<Vec<f32>> {
        let tag = self.u8()?;
        let mut v: Vec<f32> = (0..DIM).map(|_| self.u8().map(|b| b as i8 as f32)).collect::<Option<_>>()?;
        match tag % 16 {
            0 => v[0] = f32::NAN,
            1 => v.push(1.0),
            2 => v[1] = f32::INFINITY,
            _ => {}
        }
        Some(v)
    }
}

fn valid(v: &[f32]) -> bool {
    v.len() == DIM && v.iter().all(|x| x.is_finite())
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let idx =
        Index::new(IndexConfig::new(DIM, Metric::L2).m(4).ef_construction(8).max_elements(CAPACITY)).unwrap();
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut max_live = 0;
    while let Some(op) = b.u8() {
        match op % 8 {
            0 => {
                let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                let id = (id % IDS) as u64;
                let r = idx.insert(id, &v);
                let ok = valid(&v) && !model.contains_key(&id) && model.len() < CAPACITY;
                assert_eq!(r.is_ok(), ok, "insert {id} {v:?}: {r:?}");
                if ok {
                    model.insert(id, v);
                }
            }
            1 => {
                let Some(n) = b.u8() else { break };
                let best_effort = n & 0x80 != 0;
                let mut items = Vec::new();
                for _ in 0..(n % 12) {
                    let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                    items.push(((id % IDS) as u64, v));
                }
                let mode = if best_effort { BatchMode::BestEffort } else { BatchMode::AllOrNothing };
                let before = model.len();
                match idx.insert_batch(&items, &BatchOptions::new().mode(mode)) {
                    Ok(r) => {
                        let failed: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
                        for (i, (id, v)) in items.iter().enumerate() {
                            if !failed.contains(&i) {
                                assert!(
                                    valid(v) && model.insert(*id, v.clone()).is_none(),
                                    "accepted bad item {i}"
                                );
                            }
                        }
                        assert_eq!(model.len(), before + r.inserted);
                    }
                    Err(e) => {
                        assert_eq!(mode, BatchMode::AllOrNothing, "best effort returned {e}");
                        assert!(e.index().is_some());
                    }
                }
            }
            2 => {
                let Some(id) = b.u8() else { break };
                let id = (id % IDS) as u64;
                assert_eq!(idx.delete(id).is_ok(), model.remove(&id).is_some());
            }
            3 => {
                let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                let id = (id % IDS) as u64;
                let r = idx.update(id, &v);
                let ok = valid(&v) && model.contains_key(&id);
                assert_eq!(r.is_ok(), ok, "update {id}: {r:?}");
                if ok {
                    model.insert(id, v);
                }
            }
            5 => {
                idx.compact();
                let st = idx.slot_stats();
                assert_eq!(st.pending, 0, "compact left tombstones: {st:?}");
            }
            6 => {
                // Delete then re-insert the same id: the new node should take a retired slot.
                let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                let id = (id % IDS) as u64;
                assert_eq!(idx.delete(id).is_ok(), model.remove(&id).is_some());
                let r = idx.insert(id, &v);
                let ok = valid(&v) && model.len() < CAPACITY;
                assert_eq!(r.is_ok(), ok, "re-insert {id} {v:?}: {r:?}");
                if ok {
                    model.insert(id, v);
                }
            }
            7 => {
                let (Some(k), Some(q)) = (b.u8(), b.vector()) else { break };
                let k = (k % 8) as usize + 1;
                match idx.search_exact(&q, k, |_| true) {
                    Ok(hits) => {
                        let mut exact: Vec<(f32, u64)> =
                            model.iter().map(|(&id, v)| (distance::scalar::l2_f32(&q, v), id)).collect();
                        exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                        exact.truncate(k);
                        assert_eq!(hits.len(), exact.len());
                        for (h, (d, id)) in hits.iter().zip(&exact) {
                            let tol = 1e-3 * d.max(1.0);
                            assert!((h.distance - d).abs() <= tol, "{hits:?} vs {exact:?}");
                            // Ids must agree except among (near-)ties, which kernels may order
                            // differently from the scalar reference.
                            if *id != h.id {
                                let hd = distance::scalar::l2_f32(&q, &model[&h.id]);
                                assert!((hd - d).abs() <= tol, "{hits:?} vs {exact:?}");
                            }
                        }
                    }
                    Err(_) => assert!(!valid(&q)),
                }
            }
            _ => {
                let (Some(k), Some(q)) = (b.u8(), b.vector()) else { break };
                let k = (k % 8) as usize + 1;
                match idx.search(&q, k, 64) {
                    Ok(hits) => {
                        assert!(valid(&q));
                        let mut exact: Vec<f32> =
                            model.values().map(|v| distance::scalar::l2_f32(&q, v)).collect();
                        exact.sort_by(f32::total_cmp);
                        exact.truncate(k);
                        let got: Vec<f32> = hits.iter().map(|h| h.distance).collect();
                        // Every hit is a live vector at its true distance, sorted, once.
                        let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                        ids.sort_unstable();
                        ids.dedup();
                        assert_eq!(ids.len(), hits.len(), "duplicate ids");
                        assert!(got.windows(2).all(|w| w[0] <= w[1]), "unsorted {got:?}");
                        for h in &hits {
                            let v = model.get(&h.id).expect("hit not in model");
                            let d = distance::scalar::l2_f32(&q, v);
                            assert!((d - h.distance).abs() <= 1e-3 * d.max(1.0));
                        }
                        // With ef covering every node the search is exact.
                        if idx.allocated_nodes() <= 64 {
                            assert_eq!(got.len(), exact.len());
                            for (a, e) in got.iter().zip(&exact) {
                                assert!((a - e).abs() <= 1e-3 * e.max(1.0), "{got:?} vs {exact:?}");
                            }
                        }
                    }
                    Err(_) => assert!(!valid(&q)),
                }
            }
        }
        assert_eq!(idx.len(), model.len());
        for id in 0..IDS as u64 {
            assert_eq!(idx.contains(id), model.contains_key(&id), "contains {id}");
            assert_eq!(idx.get(id).as_ref(), model.get(&id), "get {id}");
        }
        check(&idx, &model);
        max_live = max_live.max(model.len());
        let st = idx.slot_stats();
        assert!(st.allocated <= 2 * max_live + SLOT_SLACK, "slots not reused: {st:?}, max live {max_live}");
    }
    idx.compact();
    check(&idx, &model);
});

/// `check_integrity`. Only reachability may need the whole-graph `repair` (exact duplicates, or
/// delete and update churn on a small graph, can cut a node off; no mutation runs the pass);
/// every other invariant must hold after every operation.
fn check(idx: &Index, _model: &BTreeMap<u64, Vec<f32>>) {
    match idx.check_integrity() {
        Ok(_) => {}
        Err(hnsw_batch::IntegrityError::Unreachable { .. }) => {
            idx.repair();
            if let Err(e) = idx.check_integrity() {
                panic!("integrity after repair: {e}");
            }
        }
        Err(e) => panic!("integrity: {e}"),
    }
}
