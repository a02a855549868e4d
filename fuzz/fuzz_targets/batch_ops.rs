//! Byte stream -> sequence of inserts, batches (both modes), deletes, updates and searches on a
//! small index, checked after every step against a brute-force model and `check_integrity`.
#![no_main]

use hnsw_batch::*;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const DIM: usize = 3;

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
    let idx = Index::new(IndexConfig::new(DIM, Metric::L2).m(4).ef_construction(8).max_elements(48)).unwrap();
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    while let Some(op) = b.u8() {
        match op % 5 {
            0 => {
                let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                let id = (id % 64) as u64;
                let r = idx.insert(id, &v);
                let ok = valid(&v) && !model.contains_key(&id) && model.len() < 48;
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
                    items.push(((id % 64) as u64, v));
                }
                let mode = if best_effort { BatchMode::BestEffort } else { BatchMode::AllOrNothing };
                let before = model.len();
                match idx.insert_batch(&items, &BatchOptions::new().mode(mode)) {
                    Ok(r) => {
                        let failed: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
                        for (i, (id, v)) in items.iter().enumerate() {
                            if !failed.contains(&i) {
                                assert!(valid(v) && model.insert(*id, v.clone()).is_none(), "accepted bad item {i}");
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
                let id = (id % 64) as u64;
                assert_eq!(idx.delete(id).is_ok(), model.remove(&id).is_some());
            }
            3 => {
                let (Some(id), Some(v)) = (b.u8(), b.vector()) else { break };
                let id = (id % 64) as u64;
                let r = idx.update(id, &v);
                let ok = valid(&v) && model.contains_key(&id);
                assert_eq!(r.is_ok(), ok, "update {id}: {r:?}");
                if ok {
                    model.insert(id, v);
                }
            }
            _ => {
                let (Some(k), Some(q)) = (b.u8(), b.vector()) else { break };
                let k = (k % 8) as usize + 1;
                match idx.search(&q, k, 64) {
                    Ok(hits) => {
                        assert!(valid(&q));
                        let mut exact: Vec<f32> = model.values().map(|v| distance::scalar::l2_f32(&q, v)).collect();
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
        if let Err(e) = idx.check_integrity() {
            panic!("integrity: {e}");
        }
    }
    for (id, v) in &model {
        assert_eq!(idx.get(*id).as_ref(), Some(v));
    }
});
