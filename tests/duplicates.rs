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

#[test]
fn thousands_of_copies_of_few_vectors() {
    // 4000 items, 101 distinct vectors (the writer developer's report), serial and batched.
    let items: Vec<(u64, Vec<f32>)> =
        (0..4000u64).map(|i| (i, (0..16).map(|j| ((i % 101) * 3 + j) as f32 % 17.0).collect())).collect();
    let serial = Index::new(IndexConfig::new(16, Metric::L2)).unwrap();
    for (id, v) in &items {
        serial.insert(*id, v).unwrap();
    }
    let batched = Index::new(IndexConfig::new(16, Metric::L2)).unwrap();
    batched.insert_batch(&items, &BatchOptions::new()).unwrap();
    // A batch that meets exact duplicates ends with a repair pass; a build by single inserts
    // gets the documented explicit call.
    serial.repair();
    for idx in [&serial, &batched] {
        let stats = idx.check_integrity().unwrap();
        assert_eq!((stats.live, stats.unreachable), (4000, 0));
        let found = items
            .iter()
            .step_by(37)
            .filter(|(_, v)| idx.search(v, 1, 64).unwrap()[0].distance == 0.0)
            .count();
        assert_eq!(found, items.iter().step_by(37).count());
    }
}
