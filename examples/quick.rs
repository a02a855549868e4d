//! Builds an index from a TEXMEX folder and prints recall@10 / QPS per ef (development harness).
//! Usage: cargo run --release --example quick -- DIR [u8] [threads]
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};
use std::time::Instant;

fn read(path: &std::path::Path) -> (usize, Vec<Vec<f32>>) {
    let b = std::fs::read(path).unwrap();
    let bytes_per = if path.extension().unwrap() == "bvecs" { 1 } else { 4 };
    let mut out = Vec::new();
    let mut off = 0;
    let mut dim = 0;
    while off < b.len() {
        dim = i32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let r = &b[off + 4..off + 4 + dim * bytes_per];
        out.push(if bytes_per == 1 {
            r.iter().map(|&x| x as f32).collect()
        } else {
            r.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        });
        off += 4 + dim * bytes_per;
    }
    (dim, out)
}

fn find(dir: &std::path::Path, stem: &str) -> std::path::PathBuf {
    for e in ["fvecs", "bvecs", "ivecs"] {
        let p = dir.join(format!("{stem}.{e}"));
        if p.exists() {
            return p;
        }
    }
    panic!("no {stem}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let storage = if args.get(2).map(|s| s.as_str()) == Some("u8") { Storage::U8 } else { Storage::F32 };
    let (dim, base) = read(&find(dir, "base"));
    let (_, queries) = read(&find(dir, "query"));
    let queries: Vec<Vec<f32>> = queries.into_iter().take(1000).collect();
    let (_, gt) = read(&find(dir, "gt"));
    let gt: Vec<Vec<u64>> = gt.iter().map(|g| g.iter().map(|&x| x.to_bits() as u64).collect()).collect();
    let cfg = IndexConfig::new(dim, Metric::L2).m(16).ef_construction(200).storage(storage);
    let recall = |index: &Index, ef: usize| {
        let mut hit = 0;
        for (q, g) in queries.iter().zip(&gt) {
            hit += index.search(q, 10, ef).unwrap().iter().filter(|n| g[..10].contains(&n.id)).count();
        }
        hit as f64 / (10 * queries.len()) as f64
    };
    let mode = args.get(3).map(|s| s.as_str()).unwrap_or("all");
    if mode == "all" || mode == "batch" {
        let items: Vec<(u64, &[f32])> =
            base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        let t = Instant::now();
        let seq = Index::new(cfg.clone()).unwrap();
        for (i, v) in &items {
            seq.insert(*i, v).unwrap();
        }
        let t_seq = t.elapsed().as_secs_f64();
        let mut times = vec![];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let idx = Index::new(cfg.clone()).unwrap();
            let t = Instant::now();
            pool.install(|| idx.insert_batch(&items, &BatchOptions::new())).unwrap();
            let el = t.elapsed().as_secs_f64();
            times.push(el);
            println!(
                "batch {threads} thr: {el:.2}s speedup vs seq {:.2}x recall@10(ef=64) {:.4}",
                t_seq / el,
                recall(&idx, 64)
            );
        }
        println!("seq: {t_seq:.2}s recall@10(ef=64) {:.4}", recall(&seq, 64));
        if mode == "batch" {
            return;
        }
    }
    let index = Index::new(cfg).unwrap();
    let t = Instant::now();
    for (i, v) in base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    println!(
        "build (one at a time, 1 thread): {:.2}s, n={} storage={:?}",
        t.elapsed().as_secs_f64(),
        base.len(),
        storage
    );
    for ef in [10, 16, 24, 32, 48, 64, 128] {
        let t = Instant::now();
        let res: Vec<_> = queries.iter().map(|q| index.search(q, 10, ef).unwrap()).collect();
        let el = t.elapsed().as_secs_f64();
        let mut hit = 0;
        for (r, g) in res.iter().zip(&gt) {
            hit += r.iter().filter(|n| g[..10].contains(&n.id)).count();
        }
        println!(
            "ef={ef:4} recall@10={:.4} qps={:.0}",
            hit as f64 / (10 * res.len()) as f64,
            res.len() as f64 / el
        );
    }
}
