//! Many exactly duplicate vectors (a persistence developer's report): every live vector stays
//! reachable and finds a neighbour with its own direction.

use hnsw_batch::*;

#[test]
fn duplicate_directions_stay_reachable() {
    for metric in [Metric::Cosine, Metric::L2] {
        let idx = Index::new(IndexConfig::new(8, metric).m(6).ef_construction(24)).unwrap();
        let items: Vec<(u64, Vec<f32>)> =
            (0..200u64).map(|i| (i, (0..8).map(|j| ((i * 7 + j) % 13) as f32 + 1.0).collect())).collect();
        idx.insert_batch(&items, &BatchOptions::new()).unwrap();
        let stats = idx.check_integrity().unwrap();
        assert_eq!((stats.live, stats.unreachable), (200, 0), "{metric:?}");
        for (id, v) in &items {
            let hits = idx.search(v, 1, 32).unwrap();
            assert!(hits[0].distance <= 1e-5, "{metric:?}: {id} found nothing at distance 0");
        }
    }
}
