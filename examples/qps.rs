//! Times single-thread searches of a saved index: the same graph for every build of the search
//! code, so two builds can be compared in turns (A/B) without rebuilding the index.
//!
//! Usage: `cargo run --release --example qps -- INDEX QUERIES.fvecs GT.ivecs [ef,ef,..] [passes]`
//! Prints, per ef: recall@10, the fastest pass's QPS, distances per query, ns per distance, and
//! the QPS by CPU time (time on a core; fairer than wall time on a busy machine).
//! Build the index once with `hnsw-batch build` (or `bench`'s output), then run two binaries
//! alternately.
use hnsw_batch::{io, Index};
use std::time::Instant;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: qps INDEX QUERIES.fvecs GT.ivecs [ef,ef,..] [passes]");
        std::process::exit(1);
    }
    let index = Index::load(&args[1]).expect("index");
    let queries = io::read_fvecs(&args[2]).expect("queries");
    let gt = io::read_ivecs(&args[3]).expect("ground truth");
    let efs: Vec<usize> = args
        .get(4)
        .map_or("16,24,32,64".into(), |s| s.clone())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    // Whether the index's rows sit on transparent huge pages (see src/arena.rs): it changes
    // the walk's TLB misses, so figures from machines with and without them differ.
    if let Ok(s) = std::fs::read_to_string("/proc/self/smaps_rollup") {
        if let Some(l) = s.lines().find(|l| l.starts_with("AnonHugePages")) {
            println!("{}", l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let passes: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(5);
    let k = 10;
    for ef in efs {
        let mut best = f64::INFINITY;
        let mut best_cpu = f64::INFINITY;
        let mut hits = 0usize;
        let mut dists = 0u64;
        for pass in 0..passes {
            let t = Instant::now();
            let c = cpu_seconds();
            for (i, q) in queries.iter().enumerate() {
                let (found, stats) = index.search_with_stats(q, k, ef).expect("search");
                if pass == 0 {
                    dists += stats.distance_computations;
                    let truth = &gt[i][..k];
                    hits += found.iter().filter(|n| truth.contains(&(n.id as i32))).count();
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
            if let (Some(end), Some(start)) = (cpu_seconds(), c) {
                best_cpu = best_cpu.min(end - start);
            }
        }
        let n = queries.len() as f64;
        println!(
            "ef={ef:4} recall@10={:.4} qps={:8.0} dist/q={:7.1} ns/dist={:5.1} cpu_qps={:8.0}",
            hits as f64 / (n * k as f64),
            n / best,
            dists as f64 / n,
            best * 1e9 / dists as f64,
            n / best_cpu
        );
    }
}
