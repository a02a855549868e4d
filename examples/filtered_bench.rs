//! Filtered-search benchmark of issue 10 ("Metadata, filters and expiry").
//!
//! Usage:
//!
//! ```sh
//! cargo run --release --example filtered_bench -- DIR [--queries N] [--efs 16,32,64,128] \
//!     [--passes 3] [--seed 10] [--no-memory]
//! ```
//!
//! `DIR` holds `base.fvecs` and `query.fvecs`; the metric is cosine. Each base vector gets, from
//! a seeded RNG (the seed is printed), a keyword field `cat` whose values select about 50 %
//! (`a`), 10 % (`b`), 1 % (`c`) and 0.1 % (`d`) of the set, the remaining 38.9 % spread over
//! 100 filler values, and a numeric field `year` (uniform integers 1990..=2029) for the range
//! filter `year ∈ [2000, 2004)` (about 10 %). The index (`M = 16`, `ef_construction = 200`,
//! `f32` storage) is built with the metadata by one `insert_items` batch, then `cat` and `year`
//! get field indexes.
//!
//! For each filter it measures, against exact filtered ground truth (brute force over the
//! matching subset in `f32`, cosine), recall@10 and single-thread QPS by CPU time (one query at a time, the
//! fastest of `--passes` passes) of:
//!
//! - ours: `search_where` (the library's planner) for each ef; also, for filters matching at
//!   least 5 %, the same with `FilterPlan::Graph` forced, to show what the filtered walk alone
//!   does;
//! - naive 1, post-filter: unfiltered `search` with `k' = k, 2k, 4k, …` (and `ef = max(ef, k')`)
//!   until `k` results pass the filter or `k'` reaches the live count; the filter check is a
//!   precomputed `Vec<bool>` by id, the cheapest a caller can have. The ef sweep stops at the
//!   first ef that reaches recall 0.95;
//! - naive 2, subset scan: score every match and keep the top 10 (`search_where_with` with
//!   `FilterPlan::Exact`: the matching nodes from the field index, then one distance each);
//!   for reference also the same scan over the caller's own normalised `f32` copy of the base
//!   (precomputed id list, no index involved), which is not in the ratio.
//!
//! It also times `Index::count` per filter: sizing the filter materialises the live matches,
//! which `search_where` does before choosing its plan.
//!
//! A result counts as a hit when its id is in the ground truth's top 10 or its exact distance is
//! within 1e-6 of the tenth (ties). The summary table gives, per filter, the smallest ef at
//! which ours reaches recall 0.95, the best naive strategy, and the ratio of QPS.
//!
//! Metadata bytes per item are measured with a counting global allocator: two twin indexes of
//! the same vectors (`ef_construction = 32`, built only for this) through the same
//! `insert_items` path, one without and one with the metadata; the difference of live heap
//! bytes, over the item count, is the side data (encoded maps and their hash-map entries).
//! The field indexes are measured on the real index as the heap growth of `create_field_index`.
//! `Index::memory_bytes` counts neither, so it is printed for reference only. `--no-memory`
//! skips the twins.
//!
//! The load average (`/proc/loadavg`) is printed at the start and the end.
use hnsw_batch::items::Item;
use hnsw_batch::{io, BatchOptions, Filter, FilterPlan, Index, IndexConfig, MetaValue, Metadata, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_seconds;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts live bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const K: usize = 10;
const TARGET: f64 = 0.95;
/// Filters matching less than this fraction skip the forced-walk rows (the walk then visits
/// most of the graph: slow, and not what the planner runs).
const FORCED_MIN: f64 = 0.05;
/// A timing pass longer than this is not repeated (slow naive settings at 0.1 %).
const LONG_PASS_S: f64 = 20.0;

struct Args {
    dir: String,
    queries: usize,
    efs: Vec<usize>,
    passes: usize,
    seed: u64,
    memory: bool,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        dir: String::new(),
        queries: 1000,
        efs: vec![16, 32, 64, 128],
        passes: 3,
        seed: 10,
        memory: true,
    };
    let usage =
        "usage: filtered_bench DIR [--queries N] [--efs 16,32,64,128] [--passes 3] [--seed S] [--no-memory]";
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{usage}"));
        match arg.as_str() {
            "--queries" => a.queries = value().parse().expect("--queries"),
            "--efs" => a.efs = value().split(',').map(|s| s.parse().expect("--efs")).collect(),
            "--passes" => a.passes = value().parse().expect("--passes"),
            "--seed" => a.seed = value().parse().expect("--seed"),
            "--no-memory" => a.memory = false,
            _ if a.dir.is_empty() && !arg.starts_with("--") => a.dir = arg,
            _ => panic!("{usage}"),
        }
    }
    if a.dir.is_empty() {
        eprintln!("{usage}");
        std::process::exit(1);
    }
    a
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unavailable".into(), |s| s.trim().to_owned())
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let inv = 1.0 / dot(v, v).sqrt();
    v.iter().map(|x| x * inv).collect()
}

/// Dot product with eight accumulators (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One filter of the benchmark: its name, the filter, and which ids match.
struct Case {
    name: String,
    filter: Filter,
    ok: Vec<bool>,
    ids: Vec<u32>,
    /// Whether the issue asks for 2x the best naive strategy here (the 10 % filters).
    want_2x: bool,
}

/// Exact filtered top-`K` of one query: ids and the `K`-th distance.
struct Truth {
    ids: Vec<u64>,
    kth: f32,
}

struct Data {
    base: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

impl Data {
    fn dist(&self, q: usize, id: u64) -> f32 {
        1.0 - dot(&self.queries[q], &self.base[id as usize])
    }
}

fn ground_truth(data: &Data, ids: &[u32]) -> Vec<Truth> {
    (0..data.queries.len())
        .into_par_iter()
        .map(|q| {
            let mut all: Vec<(f32, u64)> = ids.iter().map(|&i| (data.dist(q, i as u64), i as u64)).collect();
            let k = K.min(all.len());
            if k < all.len() {
                all.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                all.truncate(k);
            }
            all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            Truth { ids: all.iter().map(|p| p.1).collect(), kth: all.last().map_or(f32::INFINITY, |p| p.0) }
        })
        .collect()
}

/// Mean recall@K of `found` (ids per query), ties with the K-th distance counted as hits.
fn recall(data: &Data, truth: &[Truth], found: &[Vec<u64>]) -> f64 {
    let mut hits = 0usize;
    let mut want = 0usize;
    for (q, (t, f)) in truth.iter().zip(found).enumerate() {
        want += t.ids.len();
        hits += f
            .iter()
            .take(t.ids.len())
            .filter(|&&id| t.ids.contains(&id) || data.dist(q, id) <= t.kth + 1e-6)
            .count();
    }
    if want == 0 {
        1.0
    } else {
        hits as f64 / want as f64
    }
}

/// Runs `pass` (over all queries, single thread) up to `passes` times; returns the first pass's
/// output and the best QPS. Time is the thread's CPU time where the OS reports it (time on a
/// core: a busy machine's waits for a core do not count against either side), else wall time.
fn timed<T>(passes: usize, n: usize, mut pass: impl FnMut() -> T) -> (T, f64) {
    let now = || cpu_seconds().unwrap_or_else(|| START.with(|s| s.elapsed().as_secs_f64()));
    let t = now();
    let first = pass();
    let mut best = now() - t;
    for _ in 1..passes {
        if best > LONG_PASS_S {
            break;
        }
        let t = now();
        std::hint::black_box(pass());
        best = best.min(now() - t);
    }
    (first, n as f64 / best.max(1e-9))
}

thread_local! {
    static START: Instant = Instant::now();
}

/// Naive 1: unfiltered search with a growing `k'` until `K` results pass. Returns the ids and
/// the final `k'`.
fn post_filter(index: &Index, q: &[f32], ef: usize, ok: &[bool]) -> (Vec<u64>, usize) {
    let live = index.len();
    let mut kk = K.min(live);
    loop {
        let hits = index.search(q, kk, ef.max(kk)).expect("search");
        let kept: Vec<u64> = hits.iter().filter(|h| ok[h.id as usize]).take(K).map(|h| h.id).collect();
        if kept.len() >= K || kk >= live {
            return (kept, kk);
        }
        kk = (kk * 2).min(live);
    }
}

fn config(dim: usize, ef_construction: usize) -> IndexConfig {
    IndexConfig::new(dim, Metric::Cosine).m(16).ef_construction(ef_construction)
}

fn build(dim: usize, ef_construction: usize, items: &[Item<&[f32]>]) -> Index {
    let index = Index::new(config(dim, ef_construction)).expect("config");
    let report = index.insert_items(items, &BatchOptions::new()).expect("insert_items");
    assert_eq!(report.inserted, items.len());
    index
}

/// Heap growth of `f()`'s result while it is alive.
fn heap_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::SeqCst);
    let out = f();
    (out, LIVE.load(Ordering::SeqCst).saturating_sub(before))
}

#[derive(Default)]
struct Summary {
    name: String,
    matches: usize,
    ours: Option<(usize, f64, f64, &'static str)>,
    ours_best_recall: f64,
    post: Option<(usize, f64, f64)>,
    scan_qps: f64,
    own_scan_qps: f64,
    want_2x: bool,
}

fn main() {
    let args = parse_args();
    println!("load average at start: {}", loadavg());
    println!("seed: {}", args.seed);
    let base_set = io::read_fvecs(format!("{}/base.fvecs", args.dir)).expect("base.fvecs");
    let query_set = io::read_fvecs(format!("{}/query.fvecs", args.dir)).expect("query.fvecs");
    let dim = base_set.dim();
    let raw_queries: Vec<Vec<f32>> = query_set.iter().take(args.queries).map(<[f32]>::to_vec).collect();
    let n = base_set.len();
    let nq = raw_queries.len();
    println!("dataset: {} ({n} x {dim}, {nq} queries), cosine, storage f32, k = {K}", args.dir);
    let data = Data {
        base: base_set.iter().map(normalised).collect(),
        queries: raw_queries.iter().map(|q| normalised(q)).collect(),
    };

    // Metadata: `cat` (a 50 %, b 10 %, c 1 %, d 0.1 %, 100 fillers for the rest), `year`.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut cats: Vec<String> = Vec::with_capacity(n);
    let mut years: Vec<i64> = Vec::with_capacity(n);
    for _ in 0..n {
        let u: f64 = rng.random();
        let cat = match u {
            u if u < 0.5 => "a".to_owned(),
            u if u < 0.6 => "b".to_owned(),
            u if u < 0.61 => "c".to_owned(),
            u if u < 0.611 => "d".to_owned(),
            _ => format!("f{:02}", rng.random_range(0..100)),
        };
        cats.push(cat);
        years.push(rng.random_range(1990..2030));
    }
    let metas: Vec<Metadata> = cats
        .iter()
        .zip(&years)
        .map(|(c, &y)| {
            let mut m = Metadata::new();
            m.insert("cat".into(), MetaValue::from(c.as_str()));
            m.insert("year".into(), MetaValue::from(y));
            m
        })
        .collect();
    let encoded: usize = metas.iter().map(hnsw_batch::metadata::encoded_len).sum();
    println!("encoded metadata: {:.1} B per item", encoded as f64 / n as f64);
    let plain: Vec<Item<&[f32]>> = base_set.iter().enumerate().map(|(i, v)| Item::new(i as u64, v)).collect();
    let with_meta: Vec<Item<&[f32]>> =
        base_set.iter().enumerate().map(|(i, v)| Item::new(i as u64, v).metadata(metas[i].clone())).collect();

    if args.memory {
        // Warm the pool's threads (their scratch stays allocated) so no twin is charged for it.
        drop(build(dim, 32, &plain[..2000.min(n)]));
        let (a, bytes_a) = heap_of(|| build(dim, 32, &plain));
        let mem_a = a.memory_bytes();
        drop(a);
        let (b, bytes_b) = heap_of(|| build(dim, 32, &with_meta));
        let mem_b = b.memory_bytes();
        drop(b);
        println!(
            "memory: twin without metadata {bytes_a} B heap (memory_bytes {mem_a}), with metadata {bytes_b} B \
             heap (memory_bytes {mem_b}): side data {:.1} B per item",
            (bytes_b as f64 - bytes_a as f64) / n as f64
        );
    }

    let t = Instant::now();
    let index = build(dim, 200, &with_meta);
    println!(
        "build (M 16, ef_construction 200, insert_items with metadata): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(with_meta);
    drop(plain);
    let ((), field_bytes) = heap_of(|| {
        index.create_field_index("cat").expect("field index");
        index.create_field_index("year").expect("field index");
    });
    println!(
        "field indexes cat + year: {field_bytes} B heap = {:.1} B per item",
        field_bytes as f64 / n as f64
    );

    let mut cases: Vec<Case> = Vec::new();
    for (value, want_2x) in [("a", false), ("b", true), ("c", false), ("d", false)] {
        let ok: Vec<bool> = cats.iter().map(|c| c == value).collect();
        cases.push(Case {
            name: format!("cat = {value}"),
            filter: Filter::eq("cat", value),
            ok,
            ids: vec![],
            want_2x,
        });
    }
    let ok: Vec<bool> = years.iter().map(|y| (2000..2004).contains(y)).collect();
    cases.push(Case {
        name: "year in [2000, 2004)".into(),
        filter: Filter::range("year", 2000..2004),
        ok,
        ids: vec![],
        want_2x: true,
    });
    for c in &mut cases {
        c.ids = (0..n as u32).filter(|&i| c.ok[i as usize]).collect();
        assert_eq!(index.count(&c.filter).expect("count"), c.ids.len(), "{}", c.name);
    }

    let mut summaries = Vec::new();
    for c in &cases {
        let m = c.ids.len();
        println!("\n## {} : {m} matches ({:.2} %)", c.name, 100.0 * m as f64 / n as f64);
        let t = Instant::now();
        let truth = ground_truth(&data, &c.ids);
        println!("ground truth: {:.1} s", t.elapsed().as_secs_f64());
        let mut s = Summary { name: c.name.clone(), matches: m, want_2x: c.want_2x, ..Default::default() };

        // Sizing the filter: `count` materialises the live matches, as `search_where` does
        // before it chooses a plan (whether it then walks or scans).
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(index.count(&c.filter).expect("count"));
        }
        println!("count(): {:.1} us per call", t.elapsed().as_secs_f64() * 1e6 / reps as f64);

        let mut plans = vec![("ours (auto)", FilterPlan::Auto)];
        if m as f64 >= FORCED_MIN * n as f64 {
            plans.push(("ours (graph forced)", FilterPlan::Graph));
        }
        for (label, plan) in plans {
            for &ef in &args.efs {
                let ((found, dists, graph), qps) = timed(args.passes, nq, || {
                    let (mut found, mut dists, mut graph) = (Vec::with_capacity(nq), 0u64, 0usize);
                    for q in &raw_queries {
                        let (hits, st) =
                            index.search_where_with(q, K, ef, &c.filter, plan).expect("search_where");
                        dists += st.distance_computations;
                        graph += usize::from(st.plan == FilterPlan::Graph);
                        found.push(hits.iter().map(|h| h.id).collect::<Vec<u64>>());
                    }
                    (found, dists, graph)
                });
                let r = recall(&data, &truth, &found);
                println!(
                    "{label:20} ef={ef:4} recall@10={r:.4} qps={qps:8.0} dist/q={:8.0} graph-walk share={:.2}",
                    dists as f64 / nq as f64,
                    graph as f64 / nq as f64
                );
                if plan == FilterPlan::Auto {
                    s.ours_best_recall = s.ours_best_recall.max(r);
                    if r >= TARGET && s.ours.is_none() {
                        let how = if graph * 2 >= nq { "walk" } else { "scan" };
                        s.ours = Some((ef, r, qps, how));
                    }
                }
            }
        }

        for &ef in &args.efs {
            let ((found, kk), qps) = timed(args.passes, nq, || {
                let (mut found, mut kk) = (Vec::with_capacity(nq), 0usize);
                for q in &raw_queries {
                    let (ids, k) = post_filter(&index, q, ef, &c.ok);
                    kk += k;
                    found.push(ids);
                }
                (found, kk)
            });
            let r = recall(&data, &truth, &found);
            println!(
                "{:20} ef={ef:4} recall@10={r:.4} qps={qps:8.0} mean final k'={:.0}",
                "post-filter",
                kk as f64 / nq as f64
            );
            if r >= TARGET {
                s.post = Some((ef, r, qps));
                break;
            }
        }

        let (found, qps) = timed(args.passes, nq, || {
            raw_queries
                .iter()
                .map(|q| {
                    let (hits, _) =
                        index.search_where_with(q, K, K, &c.filter, FilterPlan::Exact).expect("scan");
                    hits.iter().map(|h| h.id).collect::<Vec<u64>>()
                })
                .collect::<Vec<_>>()
        });
        let r = recall(&data, &truth, &found);
        println!("{:20}          recall@10={r:.4} qps={qps:8.0}", "subset scan");
        s.scan_qps = qps;

        let (_, qps) = timed(args.passes, nq, || {
            (0..nq)
                .map(|q| {
                    let mut all: Vec<(f32, u32)> =
                        c.ids.iter().map(|&i| (data.dist(q, i as u64), i)).collect();
                    if all.len() > K {
                        all.select_nth_unstable_by(K - 1, |a, b| a.0.total_cmp(&b.0));
                        all.truncate(K);
                    }
                    all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                    all
                })
                .collect::<Vec<_>>()
        });
        println!("{:20}          recall@10=1 (exact)  qps={qps:8.0}", "scan, own f32 copy");
        s.own_scan_qps = qps;
        summaries.push(s);
    }

    println!("\n| filter | matches | ours: ef | recall@10 | QPS | plan | post-filter: ef | recall@10 | QPS | subset scan QPS | ours / best naive | target | met | scan, own f32 copy QPS |");
    println!(
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"
    );
    for s in &summaries {
        let post =
            s.post.map_or("– | – | –".to_owned(), |(ef, r, q)| format!("{ef} | {r:.3} | {q:.0}"));
        let post_qps = s.post.map_or(0.0, |p| p.2);
        let naive = post_qps.max(s.scan_qps);
        let target = if s.want_2x { 2.0 } else { 1.0 };
        let (ours, ratio, met) = match s.ours {
            Some((ef, r, q, how)) => {
                let ratio = q / naive;
                (
                    format!("{ef} | {r:.3} | {q:.0} | {how}"),
                    format!("{ratio:.2}"),
                    if ratio >= target { "yes" } else { "no" },
                )
            }
            None => (format!("– | {:.3} (best) | – | –", s.ours_best_recall), "–".into(), "no"),
        };
        println!(
            "| {} | {} ({:.2} %) | {ours} | {post} | {:.0} | {ratio} | ≥ {target}x | {met} | {:.0} |",
            s.name,
            s.matches,
            100.0 * s.matches as f64 / n as f64,
            s.scan_qps,
            s.own_scan_qps
        );
    }
    println!("\nload average at end: {}", loadavg());
}
