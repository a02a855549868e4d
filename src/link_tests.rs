//! Properties of how a new node is linked (`Index::link`), checked on the store directly.

use crate::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use rand::{Rng, SeedableRng};

/// A new node keeps at most `M` neighbours of its own on level 0, as in hnswlib; only reverse
/// links from later nodes fill a list up to `M0`. (Taking up to `M0` at insert costs up to 7 %
/// more distances per query at equal recall; `docs/benchmarks.md`, session 8.)
#[test]
fn a_new_node_links_to_at_most_m_neighbours_and_later_ones_fill_it_to_m0() {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11u64);
    println!("seed {seed} (replay with SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Random directions in 32 dimensions are nearly orthogonal, so the selection heuristic
    // would keep far more than M = 4 of the ef_construction candidates if allowed to.
    let dim = 32;
    let mut row = || (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
    let cfg = IndexConfig::new(dim, Metric::L2).m(4).m0(12).ef_construction(64).seed(seed);
    let index = Index::new(cfg).unwrap();
    let items: Vec<(u64, Vec<f32>)> = (0..1500u64).map(|i| (i, row())).collect();
    index.insert_batch(&items, &BatchOptions::new()).unwrap();
    let mut list = Vec::new();
    let node_of = |id: u64| index.ids.get(&index.store, id).expect("inserted id is mapped");
    for id in 1500..1600u64 {
        index.insert(id, &row()).unwrap();
        index.store.read_links(node_of(id), 0, &mut list);
        assert!(!list.is_empty() && list.len() <= 4, "seed {seed}: id {id} took {} neighbours", list.len());
    }
    let fullest = (0..1600u64)
        .map(|id| {
            index.store.read_links(node_of(id), 0, &mut list);
            list.len()
        })
        .max()
        .unwrap();
    assert!(fullest > 4, "seed {seed}: reverse links never filled a level-0 list past M ({fullest})");
    assert!(fullest <= 12, "seed {seed}: a level-0 list holds {fullest} > M0 links");
}
