//! Every live vector stays reachable from the entry point, even under heavy update and delete
//! churn on degenerate data (few distinct values, small M): the cases fuzzing found.

use hnsw_batch::*;
use rand::{Rng, SeedableRng};

#[test]
fn churn_keeps_every_live_vector_reachable() {
    for seed in 0..20u64 {
        println!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let idx = Index::new(IndexConfig::new(3, Metric::L2).m(4).ef_construction(8).seed(seed)).unwrap();
        let mut live = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let id = rng.random_range(0..12u64);
            let v: Vec<f32> = (0..3).map(|_| rng.random_range(-2..3) as f32).collect();
            match rng.random_range(0..4) {
                0 | 1 => {
                    if idx.update(id, &v).is_err() {
                        idx.insert(id, &v).unwrap();
                    }
                    live.insert(id);
                }
                2 => {
                    if idx.delete(id).is_ok() {
                        live.remove(&id);
                    }
                }
                _ => {
                    let _ = idx.insert(id, &v);
                    live.insert(id);
                }
            }
            let stats = idx.check_integrity().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(stats.live, live.len());
            for &id in &live {
                let v = idx.get(id).unwrap();
                let hits = idx.search(&v, 12, 64).unwrap();
                assert!(hits.iter().any(|h| h.id == id), "seed {seed}: {id} not found");
            }
        }
    }
}

#[test]
fn repair_reports_nothing_on_a_healthy_graph() {
    let idx = Index::new(IndexConfig::new(8, Metric::L2)).unwrap();
    for i in 0..500u64 {
        idx.insert(
            i,
            &[(i % 17) as f32, (i % 5) as f32, i as f32 / 50.0, 1.0, 0.0, 2.0, 3.0, (i % 3) as f32],
        )
        .unwrap();
    }
    idx.repair();
    assert_eq!(idx.repair(), 0);
    idx.check_integrity().unwrap();
}
