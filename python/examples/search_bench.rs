//! The Rust side of `bench_overhead.py`: loads a snapshot and times the same one-thread search
//! loop that `Index.knn_query(..., num_threads=1)` runs, over the same queries.
//!
//! `search_bench INDEX QUERIES.fvecs K EF MIN_SECONDS` prints the best queries per second of
//! repeated passes over at least MIN_SECONDS.

use hnsw_batch::Index;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: search_bench INDEX QUERIES.fvecs K EF MIN_SECONDS");
        std::process::exit(2);
    }
    let index = Index::load(&args[1]).unwrap_or_else(|e| panic!("cannot load {}: {e}", args[1]));
    let raw = std::fs::read(&args[2]).unwrap_or_else(|e| panic!("cannot read {}: {e}", args[2]));
    let k: usize = args[3].parse().expect("K");
    let ef: usize = args[4].parse().expect("EF");
    let min_time: f64 = args[5].parse().expect("MIN_SECONDS");
    let dim = i32::from_le_bytes(raw[..4].try_into().expect("fvecs header")) as usize;
    let flat: Vec<f32> = raw
        .chunks_exact(4 + 4 * dim)
        .flat_map(|rec| rec[4..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))))
        .collect();
    let n = flat.len() / dim;
    let ef = ef.max(k);
    let mut ids = vec![u64::MAX; n * k];
    let mut dists = vec![f32::INFINITY; n * k];
    let start = Instant::now();
    let mut best = f64::INFINITY;
    loop {
        let t = Instant::now();
        for ((q, i), d) in flat.chunks_exact(dim).zip(ids.chunks_exact_mut(k)).zip(dists.chunks_exact_mut(k)) {
            let hits = index.search(q, k, ef).expect("search");
            for (j, h) in hits.iter().enumerate() {
                i[j] = h.id;
                d[j] = h.distance;
            }
        }
        black_box((&ids, &dists));
        best = best.min(t.elapsed().as_secs_f64());
        if start.elapsed().as_secs_f64() >= min_time {
            break;
        }
    }
    println!("{:.1}", n as f64 / best);
}
