//! Snapshots written by earlier format versions keep loading.
//!
//! `fixtures/snapshot_v1.hnsw` was written by the version-1 writer (before the metadata section
//! existed) with `write_v1_fixture` below, run once and committed; it must never be regenerated
//! by a newer build, or the test would stop testing the old format.

use hnsw_batch::{Index, IndexConfig, Metric};

const V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/snapshot_v1.hnsw");

/// The fixture's contents: 64 vectors of dimension 4, ids `1000 + i`.
fn v1_vector(i: u64) -> [f32; 4] {
    let x = i as f32;
    [x, (i % 7) as f32, (i % 3) as f32 * 2.0, 1.0 / (x + 1.0)]
}

#[test]
#[ignore = "writes the committed v1 fixture; run only with the version-1 writer"]
fn write_v1_fixture() {
    let index = Index::new(IndexConfig::new(4, Metric::L2).m(6).ef_construction(32).seed(7)).unwrap();
    for i in 0..64u64 {
        index.insert(1000 + i, &v1_vector(i)).unwrap();
    }
    index.save(V1).unwrap();
}

#[test]
fn version_1_snapshot_loads_without_metadata() {
    let bytes = std::fs::read(V1).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "fixture must stay version 1");
    let index = Index::load(V1).unwrap();
    assert_eq!(index.len(), 64);
    for i in 0..64u64 {
        assert_eq!(index.get(1000 + i).unwrap(), v1_vector(i).to_vec());
        assert_eq!(index.search(&v1_vector(i), 1, 32).unwrap()[0].id, 1000 + i);
    }
    index.check_integrity().unwrap();
}
