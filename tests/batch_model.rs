//! Property test: random batches (random sizes, duplicates, bad vectors, both modes) against a
//! brute-force model of the index contents.

use hnsw_batch::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Item {
    Good(u64, [i8; 4]),
    Nan(u64),
    WrongDim(u64),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        8 => (0u64..60, any::<[i8; 4]>()).prop_map(|(id, v)| Item::Good(id, v)),
        1 => (0u64..60).prop_map(Item::Nan),
        1 => (0u64..60).prop_map(Item::WrongDim),
    ]
}

fn to_pair(it: &Item) -> (u64, Vec<f32>) {
    match it {
        Item::Good(id, v) => (*id, v.iter().map(|&x| x as f32).collect()),
        Item::Nan(id) => (*id, vec![f32::NAN, 0.0, 0.0, 0.0]),
        Item::WrongDim(id) => (*id, vec![0.0; 3]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn batches_match_model(batches in prop::collection::vec((prop::collection::vec(item(), 0..40), any::<bool>()), 1..6)) {
        let idx = Index::new(IndexConfig::new(4, Metric::L2).m(4).ef_construction(16)).unwrap();
        let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
        for (items, best_effort) in &batches {
            let pairs: Vec<(u64, Vec<f32>)> = items.iter().map(to_pair).collect();
            // Model: which items are valid, in order.
            let mut seen = std::collections::HashSet::new();
            let mut expect_fail = Vec::new();
            for (i, (id, v)) in pairs.iter().enumerate() {
                let bad = v.len() != 4 || v.iter().any(|x| !x.is_finite()) || model.contains_key(id) || !seen.insert(*id);
                if bad { expect_fail.push(i); }
            }
            let mode = if *best_effort { BatchMode::BestEffort } else { BatchMode::AllOrNothing };
            let res = idx.insert_batch(&pairs, &BatchOptions::new().mode(mode));
            match (mode, res) {
                (BatchMode::AllOrNothing, Err(e)) => {
                    prop_assert_eq!(e.index(), expect_fail.first().copied());
                }
                (BatchMode::AllOrNothing, Ok(r)) => {
                    prop_assert!(expect_fail.is_empty());
                    prop_assert_eq!(r.inserted, pairs.len());
                    for (id, v) in &pairs { model.insert(*id, v.clone()); }
                }
                (BatchMode::BestEffort, Ok(r)) => {
                    let got: Vec<usize> = r.failures.iter().map(|f| f.index).collect();
                    prop_assert_eq!(&got, &expect_fail);
                    for (i, (id, v)) in pairs.iter().enumerate() {
                        if !expect_fail.contains(&i) { model.insert(*id, v.clone()); }
                    }
                }
                (BatchMode::BestEffort, Err(e)) => prop_assert!(false, "best effort failed: {e}"),
            }
            prop_assert_eq!(idx.len(), model.len());
            for (id, v) in &model {
                let got = idx.get(*id);
                prop_assert_eq!(got.as_ref(), Some(v));
            }
            prop_assert!(idx.check_integrity().is_ok());
            // With ef >= len the search is exhaustive on these tiny graphs: compare to brute force
            // by distance (ids may tie).
            if !model.is_empty() {
                let q = [1.0f32, -2.0, 3.0, 0.5];
                let k = model.len().min(5);
                let hits = idx.search(&q, k, 64).unwrap();
                let mut exact: Vec<f32> = model.values().map(|v| distance::scalar::l2_f32(&q, v)).collect();
                exact.sort_by(f32::total_cmp);
                let got: Vec<f32> = hits.iter().map(|h| h.distance).collect();
                prop_assert_eq!(got.len(), k);
                for (a, b) in got.iter().zip(&exact) { prop_assert!((a - b).abs() <= 1e-3 * b.max(1.0)); }
            }
        }
    }
}
