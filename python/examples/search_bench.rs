//! The Rust side of `bench_overhead.py`: loads a snapshot and times the same one-thread search
//! loop that `Index.knn_query(..., num_threads=1)` runs, over the same queries.
//!
//! `search_bench INDEX QUERIES.fvecs K EF MIN_SECONDS` prints the best queries per second of
//! repeated passes over at least MIN_SECONDS, by wall-clock time and by the thread's CPU time
//! (which other load on the machine disturbs far less).

use hnsw_batch::Index;
use std::hint::black_box;
use std::time::Instant;

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

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
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    loop {
        let t = Instant::now();
        let c = thread_cpu_seconds();
        for ((q, i), d) in flat.chunks_exact(dim).zip(ids.chunks_exact_mut(k)).zip(dists.chunks_exact_mut(k))
        {
            let hits = index.search(q, k, ef).expect("search");
            for (j, h) in hits.iter().enumerate() {
                i[j] = h.id;
                d[j] = h.distance;
            }
        }
        black_box((&ids, &dists));
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(thread_cpu_seconds() - c);
        if start.elapsed().as_secs_f64() >= min_time {
            break;
        }
    }
    println!("{:.1} {:.1}", n as f64 / best, n as f64 / best_cpu);
}
