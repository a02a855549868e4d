//! Times re-embedding: `update_batch` of every id with a new vector, against a fresh build of the
//! new vectors, in turns.
//!
//! Usage: `cargo run --release --example reembed -- DATASET_DIR METRIC [rounds] [threads]`
//! (`DATASET_DIR` holds base.fvecs, query.fvecs and gt.ivecs; METRIC `l2` or `cosine`).
//! A new model is mimicked by an orthogonal map of the whole space (the coordinates permuted and
//! some signs flipped, seeded): every id's vector changes, and the old and new vectors lie far
//! apart while both are in the index, but distances between new vectors (and to the queries,
//! mapped the same way) are those between the old ones, so the ground truth holds as it is.
//! Recall@10 at ef 16 and 64 after the update shows what the update left of the graph; a fresh
//! build of the new vectors is timed and measured beside it.
use hnsw_batch::{io, BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: reembed DATASET_DIR l2|cosine [rounds] [threads]");
        std::process::exit(1);
    }
    let dir = std::path::Path::new(&args[1]);
    let metric = if args[2] == "cosine" { Metric::Cosine } else { Metric::L2 };
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let base = io::read_fvecs(dir.join("base.fvecs")).expect("base.fvecs");
    let queries = io::read_fvecs(dir.join("query.fvecs")).expect("query.fvecs");
    let gt = io::read_ivecs(dir.join("gt.ivecs")).expect("gt.ivecs");
    let (n, dim) = (base.len(), base.dim());
    let rows: Vec<&[f32]> = base.iter().collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    // The map: coordinate k of a new vector is `sign[k] * old[perm[k]]` (an LCG, seeded, keeps
    // the example free of extra dependencies).
    let mut x = 0x5eed_u64;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut perm: Vec<usize> = (0..dim).collect();
    for k in (1..dim).rev() {
        perm.swap(k, next() % (k + 1));
    }
    let sign: Vec<f32> = (0..dim).map(|_| if next() % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let map = |v: &[f32]| -> Vec<f32> { (0..dim).map(|k| sign[k] * v[perm[k]]).collect() };
    let new_rows: Vec<Vec<f32>> = rows.iter().map(|v| map(v)).collect();
    let new_queries: Vec<Vec<f32>> = queries.iter().map(map).collect();
    let first: Vec<(u64, &[f32])> = (0..n).map(|i| (i as u64, rows[i])).collect();
    let moved: Vec<(u64, &[f32])> = (0..n).map(|i| (i as u64, new_rows[i].as_slice())).collect();
    let recall = |index: &Index, ef: usize| {
        let mut hits = 0;
        for (q, truth) in new_queries.iter().zip(&gt) {
            let found = index.search(q, 10, ef).expect("search");
            hits += found.iter().filter(|r| truth[..10].iter().any(|&j| j as u64 == r.id)).count();
        }
        hits as f64 / (new_queries.len() * 10) as f64
    };
    println!("{n} x {dim}, {threads} threads");
    for round in 1..=rounds {
        let index = Index::new(IndexConfig::new(dim, metric)).expect("config");
        pool.install(|| index.insert_batch(&first, &BatchOptions::new().coded_walk(true))).expect("build");
        let t = Instant::now();
        let report = pool.install(|| index.update_batch(&moved, &BatchOptions::new())).expect("update");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.updated, n);
        println!(
            "round {round} update_batch        {secs:6.2} s  recall@10 ef 16 {:.4}  ef 64 {:.4}",
            recall(&index, 16),
            recall(&index, 64)
        );
        drop(index);
        let fresh = Index::new(IndexConfig::new(dim, metric)).expect("config");
        let t = Instant::now();
        pool.install(|| fresh.insert_batch(&moved, &BatchOptions::new().coded_walk(true))).expect("fresh");
        println!(
            "round {round} fresh build (coded) {:6.2} s  recall@10 ef 16 {:.4}  ef 64 {:.4}",
            t.elapsed().as_secs_f64(),
            recall(&fresh, 16),
            recall(&fresh, 64)
        );
    }
}
