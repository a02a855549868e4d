//! Builds siftsmall and runs the queries many times: a target for profilers (callgrind, perf).
//! Usage: cargo run --release --example profile_search -- [f32|u8] [ef] [reps]
use hnsw_batch::{io, BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let storage = if args.get(1).map(String::as_str) == Some("u8") { Storage::U8 } else { Storage::F32 };
    let ef: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let base = io::read_fvecs("data/siftsmall/base.fvecs").expect("base");
    let queries = io::read_fvecs("data/siftsmall/query.fvecs").expect("queries");
    let index = Index::new(IndexConfig::new(base.dim(), Metric::L2).storage(storage)).unwrap();
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v)).collect();
    index.insert_batch(&items, &BatchOptions::new()).unwrap();
    let mut dists = 0;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        for q in queries.iter() {
            dists += index.search_with_stats(q, 10, ef).unwrap().1.distance_computations;
        }
    }
    let n = (reps * queries.len()) as f64;
    println!(
        "{storage:?} ef={ef}: {:.0} QPS, {:.1} distances/query",
        n / t.elapsed().as_secs_f64(),
        dists as f64 / n
    );
}
