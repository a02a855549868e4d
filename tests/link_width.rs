//! Links packed in 3 bytes (an index whose `max_elements` is at most 8 388 608) change how lists
//! are stored, never what they hold: a sequential build, deletes with slot reuse, and a save and
//! load give exactly the graph and the results of 4-byte links. (Node numbers here stay below
//! 2^16; `src/links.rs`'s unit tests cover slots with all 24 bits set.)

mod common;
use common::*;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Neighbour, Storage};

fn config(storage: Storage, narrow: bool) -> IndexConfig {
    let cfg = IndexConfig::new(24, Metric::L2).m(6).ef_construction(40).seed(9).storage(storage);
    if narrow {
        cfg.max_elements(8_388_608)
    } else {
        cfg.max_elements(8_388_609)
    }
}

/// Builds, deletes a third, inserts new ids into the freed slots, all on one thread so both
/// widths take the same steps.
fn churned(storage: Storage, narrow: bool, base: &[Vec<f32>]) -> Index {
    let index = Index::new(config(storage, narrow)).unwrap();
    assert_eq!(index.link_bytes(), if narrow { 3 } else { 4 });
    let (first, rest) = base.split_at(base.len() * 3 / 4);
    let items: Vec<(u64, Vec<f32>)> = first.iter().cloned().enumerate().map(|(i, v)| (i as u64, v)).collect();
    // One thread: the batch splits the same way for both widths.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| index.insert_batch(&items, &BatchOptions::new()))
        .unwrap();
    for id in (0..first.len() as u64).step_by(3) {
        index.delete(id).unwrap();
    }
    for (i, v) in rest.iter().enumerate() {
        index.insert(100_000 + i as u64, v).unwrap();
    }
    index.check_integrity().unwrap();
    index
}

fn results(index: &Index, queries: &[Vec<f32>]) -> Vec<Vec<Neighbour>> {
    search_all(index, queries, 10, 24)
}

#[test]
fn three_byte_links_give_the_same_graph_as_four_byte_links() {
    let base = clustered(3000, 24, 41);
    let queries = clustered(60, 24, 42);
    for storage in [Storage::F32, Storage::F16] {
        let wide = churned(storage, false, &base);
        let narrow = churned(storage, true, &base);
        assert_eq!(wide.len(), narrow.len());
        assert_eq!(results(&wide, &queries), results(&narrow, &queries), "{storage:?}");
        let (w, n) = (wide.check_integrity().unwrap(), narrow.check_integrity().unwrap());
        assert_eq!(w.links_level0, n.links_level0, "{storage:?}");
        // M0 = 12: a level-0 list of 1 + 9 words instead of 1 + 12, 12 bytes per node.
        let nodes = narrow.allocated_nodes();
        assert_eq!(nodes, wide.allocated_nodes());
        assert!(
            narrow.memory_bytes() + 12 * nodes <= wide.memory_bytes(),
            "{storage:?}: {} bytes with 3-byte links, {} with 4-byte ones, {nodes} nodes",
            narrow.memory_bytes(),
            wide.memory_bytes()
        );

        let path =
            std::env::temp_dir().join(format!("hnsw-link-width-{}-{storage:?}.hnsw", std::process::id()));
        narrow.save(&path).unwrap();
        let loaded = Index::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(loaded.link_bytes(), 3);
        assert_eq!(results(&loaded, &queries), results(&narrow, &queries), "{storage:?} after load");
    }
}
