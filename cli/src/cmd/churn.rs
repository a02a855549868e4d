//! `bench --churn ROUNDS`: how an index holds up under deletes, updates and inserts.
//!
//! A seeded share of the base set (`--churn-holdout`, default 20 %) is held out; the rest is
//! built with `insert_batch`. Each round then, as batches on `--threads` threads:
//!
//! 1. `delete_batch` of `--churn-fraction` (5 %) of the live ids, chosen at random;
//! 2. `update_batch` of as many other live ids, each given a held-out base vector (so an update
//!    moves its id to a genuinely different vector, the harder case for the graph);
//! 3. `insert_batch` of as many new ids (counting up from the base size) with held-out vectors.
//!
//! Vectors deleted or replaced go back to the held-out pool at the end of the round, so the pool
//! never runs dry and the live set never holds one base vector twice. After each round: recall@k
//! at `--churn-ef` against a brute-force ground truth of the current live set (computed here,
//! independently of the index), single-thread QPS, `memory_bytes()`, `slot_stats()` and each
//! batch's throughput. At the end a fresh index of the final live set is built with the same
//! parameters, and the churned and fresh indexes are timed in turns (best of three alternations)
//! for the churned/fresh ratios. Last, `Index::compact()` is run on the churned index and it is
//! measured once more, to tell whether pending tombstones explain a gap.

use std::collections::HashMap;
use std::time::Instant;

use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, SlotStats};
use rayon::prelude::*;
use serde::Serialize;

use crate::cmd::bench::{load_average, load_dataset, load_warning, machine, qps, write_file, BenchArgs};
use crate::cmd::build::human_bytes;
use crate::error::{CliError, Result};
use crate::params::{pool, thread_count, StorageArg};

/// Queries used when `--queries` is not given: the ground truth is recomputed every round.
const DEFAULT_QUERIES: usize = 200;
/// Alternations of the churned and fresh QPS measurements at the end.
const ALTERNATIONS: usize = 3;

/// Issue 9's targets.
const RECALL_GAP: f64 = 0.01;
const QPS_RATIO: f64 = 0.90;
const MEMORY_RATIO: f64 = 1.10;
const ALLOC_PER_LIVE: f64 = 1.10;
const UPDATE_VS_INSERT: f64 = 0.80;

/// SplitMix64: a tiny seeded generator, so the choice of ids does not depend on a crate version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Removes `count` elements of `v` chosen at random and returns them.
    fn take<T>(&mut self, v: &mut Vec<T>, count: usize) -> Vec<T> {
        (0..count.min(v.len())).map(|_| v.swap_remove(self.below(v.len()))).collect()
    }
}

/// One row of the table: the index after a round (or the fresh build).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// "0" is the initial build, "1".. the rounds, "fresh" and "compacted" the final rows.
    pub label: String,
    /// Live vectors.
    pub live: usize,
    /// `slot_stats().allocated`.
    pub allocated: usize,
    /// `slot_stats().free`.
    pub free: usize,
    /// `slot_stats().pending`.
    pub pending: usize,
    /// allocated / live.
    pub alloc_per_live: f64,
    /// `Index::memory_bytes()`.
    pub memory_bytes: usize,
    /// Live vectors a level-0 walk from the entry point cannot reach (`check_integrity`).
    pub unreachable: usize,
    /// recall@k at the churn ef against the exact top-k of the live set.
    pub recall: f64,
    /// Queries per second, one thread.
    pub qps: f64,
    /// Mean distance computations per query.
    pub dist_comps: f64,
    /// Items per second of this round's delete_batch.
    pub delete_per_s: Option<f64>,
    /// Items per second of this round's update_batch.
    pub update_per_s: Option<f64>,
    /// Items per second of this round's insert_batch (or of the whole build).
    pub insert_per_s: Option<f64>,
    /// Seconds of the three batches (or of the build).
    pub mutate_s: f64,
    /// 1-minute load average after the row was measured.
    pub load: Option<f64>,
}

fn load_now() -> Option<f64> {
    load_average().and_then(|l| l.parse().ok())
}

/// Distance of the metric on vectors prepared as the index prepares them (cosine: normalised).
fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => hnsw_batch::distance::l2_squared(a, b),
        _ => 1.0 - hnsw_batch::distance::dot(a, b),
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Exact top-k ids of every query over the live set (`(id, base row)`), ties by id.
fn ground_truth(
    metric: Metric,
    base: &[Vec<f32>],
    live: &[(u64, usize)],
    queries: &[Vec<f32>],
    k: usize,
) -> Vec<Vec<u64>> {
    queries
        .par_iter()
        .map(|q| {
            let mut d: Vec<(f32, u64)> =
                live.iter().map(|&(id, r)| (distance(metric, q, &base[r]), id)).collect();
            let cmp = |a: &(f32, u64), b: &(f32, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            let k = k.min(d.len());
            if k > 0 && k < d.len() {
                d.select_nth_unstable_by(k - 1, cmp);
            }
            d.truncate(k);
            d.sort_unstable_by(cmp);
            d.into_iter().map(|(_, id)| id).collect()
        })
        .collect()
}

/// recall@k (ids as a set) and mean distance computations, from one untimed pass.
fn measure_recall(
    index: &Index,
    queries: &[Vec<f32>],
    gt: &[Vec<u64>],
    k: usize,
    ef: usize,
) -> Result<(f64, f64)> {
    let mut hits = 0usize;
    let mut comps = 0u64;
    for (q, truth) in queries.iter().zip(gt) {
        let (r, stats) = index
            .search_with_stats(q, k, ef)
            .map_err(|e| CliError::input(format!("a query was rejected: {e}")))?;
        comps += stats.distance_computations;
        let mut ids: Vec<u64> = r.iter().take(k).map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        hits += ids.iter().filter(|id| truth.contains(id)).count();
    }
    let nq = queries.len().max(1);
    Ok((hits as f64 / (k * nq) as f64, comps as f64 / nq as f64))
}

fn qps_of(index: &Index, queries: &[Vec<f32>], k: usize, ef: usize, min_time: f64) -> f64 {
    qps(queries.len(), min_time, || {
        for q in queries {
            std::hint::black_box(index.search(q, k, ef).ok());
        }
    })
}

/// QPS of `a` and `b` measured in turns, best of each.
fn qps_pair(a: &Index, b: &Index, queries: &[Vec<f32>], k: usize, ef: usize, min_time: f64) -> (f64, f64) {
    let (mut qa, mut qb) = (0.0f64, 0.0f64);
    for _ in 0..ALTERNATIONS {
        qa = qa.max(qps_of(a, queries, k, ef, min_time));
        qb = qb.max(qps_of(b, queries, k, ef, min_time));
    }
    (qa, qb)
}

fn row(label: String, index: &Index, recall: f64, qps: f64, dist_comps: f64) -> Row {
    let s: SlotStats = index.slot_stats();
    Row {
        label,
        live: s.live,
        allocated: s.allocated,
        free: s.free,
        pending: s.pending,
        alloc_per_live: s.allocated as f64 / s.live.max(1) as f64,
        memory_bytes: index.memory_bytes(),
        unreachable: unreachable(index),
        recall,
        qps,
        dist_comps,
        delete_per_s: None,
        update_per_s: None,
        insert_per_s: None,
        mutate_s: 0.0,
        load: load_now(),
    }
}

/// Live vectors cut off from the entry point; every other integrity failure counts as none here
/// (the tests own those).
fn unreachable(index: &Index) -> usize {
    match index.check_integrity() {
        Ok(s) => s.unreachable,
        Err(hnsw_batch::IntegrityError::Unreachable { count, .. }) => count,
        Err(_) => 0,
    }
}

fn rate(items: usize, secs: f64) -> f64 {
    items as f64 / secs.max(1e-9)
}

/// "met" or how far off the target a figure is.
fn verdict(met: bool, miss: String) -> String {
    if met {
        "met".into()
    } else {
        format!("MISSED ({miss})")
    }
}

/// Runs `bench --churn ROUNDS`.
pub fn run(args: &BenchArgs, rounds: usize) -> Result<()> {
    if args.churn_ef < args.k {
        return Err(CliError::usage(format!("--churn-ef {} is below -k {}", args.churn_ef, args.k)));
    }
    if !(args.churn_fraction > 0.0 && args.churn_fraction < 0.5) {
        return Err(CliError::usage("--churn-fraction must be above 0 and below 0.5"));
    }
    if !(args.churn_holdout > 0.0 && args.churn_holdout < 1.0) {
        return Err(CliError::usage("--churn-holdout must be above 0 and below 1"));
    }
    let quiet = args.quiet;
    let log = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let load_at_start = load_average();
    let mut ds = load_dataset(args, &log)?;
    if let Some(n) = args.limit {
        if n == 0 {
            return Err(CliError::usage("--limit must be at least 1"));
        }
        ds.base.truncate(n);
    }
    if args.queries.is_none() {
        ds.queries.truncate(DEFAULT_QUERIES);
    }
    let metric = ds.metric;
    if metric == Metric::Cosine {
        // The index normalises cosine vectors; the brute force needs the same vectors.
        ds.base.iter_mut().for_each(|v| normalise(v));
        ds.queries.iter_mut().for_each(|v| normalise(v));
    }
    let n = ds.base.len();
    let dim = ds.base[0].len();
    let k = args.k;
    let ef = args.churn_ef;
    let storage = match (args.storage, metric) {
        (StorageArg::Auto, Metric::Cosine) => hnsw_batch::Storage::F32,
        (s, _) => s.resolve(ds.bytes),
    };
    let cfg = IndexConfig::new(dim, metric)
        .m(args.m)
        .ef_construction(args.ef_construction)
        .seed(args.seed)
        .storage(storage);
    cfg.validate().map_err(|e| CliError::usage(e.to_string()))?;
    let threads = thread_count(args.threads);
    let cpus = thread_count(0);
    let busy =
        load_at_start.as_deref().and_then(|l| l.parse::<f64>().ok()).and_then(|l| load_warning(l, cpus));
    if let Some(w) = &busy {
        eprintln!("{w}");
    }
    let tp = pool(threads)?;

    // --- the split ---
    let mut rng = Rng(args.seed ^ 0xC4_0A5E_u64);
    let mut rows_all: Vec<usize> = (0..n).collect();
    let held = ((n as f64 * args.churn_holdout).round() as usize).clamp(1, n - 1);
    let mut pool_rows = rng.take(&mut rows_all, held);
    let mut live: Vec<u64> = rows_all.iter().map(|&r| r as u64).collect();
    live.sort_unstable();
    let mut row_of: HashMap<u64, usize> = live.iter().map(|&id| (id, id as usize)).collect();
    let mut next_id = n as u64;
    let per_round = ((live.len() as f64 * args.churn_fraction).round() as usize).max(1);
    if per_round * 2 > pool_rows.len() {
        return Err(CliError::usage(format!(
            "the held-out pool ({} vectors) cannot feed {per_round} updates and {per_round} inserts per round: \
             raise --churn-holdout or lower --churn-fraction",
            pool_rows.len()
        )));
    }
    let nq = ds.queries.len();
    log(&format!(
        "{}: {n} base vectors ({} built, {} held out), dim {dim}, {nq} queries, metric {}, {} storage, M {}, \
         ef_construction {}, {rounds} rounds of {per_round} deletes + updates + inserts, ef {ef}",
        ds.name,
        live.len(),
        pool_rows.len(),
        metric.name(),
        storage.name(),
        args.m,
        args.ef_construction
    ));

    let bad = |e: hnsw_batch::BatchError| CliError::input(format!("a batch was rejected: {e}"));
    let live_items = |live: &[u64], row_of: &HashMap<u64, usize>| -> Vec<(u64, usize)> {
        live.iter().map(|&id| (id, row_of[&id])).collect()
    };
    let check_live = |index: &Index, live: &[u64]| -> Result<()> {
        if index.len() != live.len() {
            return Err(CliError::index(format!(
                "the index holds {} live vectors, the benchmark expects {}",
                index.len(),
                live.len()
            )));
        }
        Ok(())
    };

    // --- initial build ---
    log(&format!("building {} vectors with insert_batch on {threads} thread(s)...", live.len()));
    let index = Index::new(cfg.clone()).map_err(|e| CliError::usage(e.to_string()))?;
    let items: Vec<(u64, &[f32])> = live.iter().map(|&id| (id, ds.base[row_of[&id]].as_slice())).collect();
    let t = Instant::now();
    tp.install(|| index.insert_batch(&items, &BatchOptions::new())).map_err(bad)?;
    let build_s = t.elapsed().as_secs_f64();
    drop(items);
    let mut table: Vec<Row> = Vec::new();
    let measure = |label: String, index: &Index, live: &[u64], row_of: &HashMap<u64, usize>| -> Result<Row> {
        check_live(index, live)?;
        let truth = tp.install(|| ground_truth(metric, &ds.base, &live_items(live, row_of), &ds.queries, k));
        let (r, comps) = measure_recall(index, &ds.queries, &truth, k, ef)?;
        let q = qps_of(index, &ds.queries, k, ef, args.min_time);
        Ok(row(label, index, r, q, comps))
    };
    let mut r0 = measure("0 (build)".into(), &index, &live, &row_of)?;
    r0.insert_per_s = Some(rate(live.len(), build_s));
    r0.mutate_s = build_s;
    log(&format!("  {build_s:.2} s; recall@{k} {:.4}, {:.0} QPS", r0.recall, r0.qps));
    table.push(r0);

    // --- rounds ---
    let (mut del_items, mut del_s, mut upd_items, mut upd_s, mut ins_items, mut ins_s) =
        (0, 0.0, 0, 0.0, 0, 0.0);
    for round in 1..=rounds {
        let mut returned: Vec<usize> = Vec::new();
        // Deletes.
        let dels = rng.take(&mut live, per_round);
        let t = Instant::now();
        let rep = tp.install(|| index.delete_batch(&dels, &BatchOptions::new())).map_err(bad)?;
        let d_s = t.elapsed().as_secs_f64();
        if rep.deleted != dels.len() {
            return Err(CliError::index(format!(
                "delete_batch deleted {} of {} ids",
                rep.deleted,
                dels.len()
            )));
        }
        for id in &dels {
            returned.push(row_of.remove(id).expect("live id has a row"));
        }
        // Updates: other live ids get held-out vectors.
        let upd_ids = rng.take(&mut live, per_round);
        live.extend_from_slice(&upd_ids);
        let new_rows = rng.take(&mut pool_rows, upd_ids.len());
        let upd: Vec<(u64, &[f32])> =
            upd_ids.iter().zip(&new_rows).map(|(&id, &r)| (id, ds.base[r].as_slice())).collect();
        let t = Instant::now();
        let rep = tp.install(|| index.update_batch(&upd, &BatchOptions::new())).map_err(bad)?;
        let u_s = t.elapsed().as_secs_f64();
        if rep.updated != upd.len() {
            return Err(CliError::index(format!(
                "update_batch updated {} of {} ids",
                rep.updated,
                upd.len()
            )));
        }
        for (&id, &r) in upd_ids.iter().zip(&new_rows) {
            returned.push(row_of.insert(id, r).expect("live id has a row"));
        }
        // Inserts of new ids.
        let ins_rows = rng.take(&mut pool_rows, per_round);
        let ins: Vec<(u64, &[f32])> =
            ins_rows.iter().enumerate().map(|(i, &r)| (next_id + i as u64, ds.base[r].as_slice())).collect();
        let t = Instant::now();
        let rep = tp.install(|| index.insert_batch(&ins, &BatchOptions::new())).map_err(bad)?;
        let i_s = t.elapsed().as_secs_f64();
        if rep.inserted != ins.len() {
            return Err(CliError::index(format!(
                "insert_batch inserted {} of {} ids",
                rep.inserted,
                ins.len()
            )));
        }
        for (i, &r) in ins_rows.iter().enumerate() {
            let id = next_id + i as u64;
            row_of.insert(id, r);
            live.push(id);
        }
        next_id += ins_rows.len() as u64;
        pool_rows.extend(returned);

        let mut r = measure(round.to_string(), &index, &live, &row_of)?;
        r.delete_per_s = Some(rate(dels.len(), d_s));
        r.update_per_s = Some(rate(upd.len(), u_s));
        r.insert_per_s = Some(rate(ins.len(), i_s));
        r.mutate_s = d_s + u_s + i_s;
        (del_items, del_s) = (del_items + dels.len(), del_s + d_s);
        (upd_items, upd_s) = (upd_items + upd.len(), upd_s + u_s);
        (ins_items, ins_s) = (ins_items + ins.len(), ins_s + i_s);
        log(&format!(
            "round {round}: recall@{k} {:.4}, {:.0} QPS, allocated/live {:.3}, pending {}, delete {:.0}/s, update {:.0}/s, insert {:.0}/s",
            r.recall,
            r.qps,
            r.alloc_per_live,
            r.pending,
            r.delete_per_s.unwrap_or(0.0),
            r.update_per_s.unwrap_or(0.0),
            r.insert_per_s.unwrap_or(0.0)
        ));
        table.push(r);
    }

    // --- fresh build of the final live set ---
    log(&format!("building a fresh index of the final {} live vectors...", live.len()));
    let fresh = Index::new(cfg.clone()).map_err(|e| CliError::usage(e.to_string()))?;
    let items: Vec<(u64, &[f32])> = live.iter().map(|&id| (id, ds.base[row_of[&id]].as_slice())).collect();
    let t = Instant::now();
    tp.install(|| fresh.insert_batch(&items, &BatchOptions::new())).map_err(bad)?;
    let fresh_build_s = t.elapsed().as_secs_f64();
    drop(items);
    check_live(&fresh, &live)?;
    let truth = tp.install(|| ground_truth(metric, &ds.base, &live_items(&live, &row_of), &ds.queries, k));
    let (fresh_recall, fresh_comps) = measure_recall(&fresh, &ds.queries, &truth, k, ef)?;
    let (churned_recall, churned_comps) = measure_recall(&index, &ds.queries, &truth, k, ef)?;
    log("timing the churned and fresh indexes in turns...");
    let (churned_qps, fresh_qps) = qps_pair(&index, &fresh, &ds.queries, k, ef, args.min_time);
    let churned_final = row(format!("{rounds} (again)"), &index, churned_recall, churned_qps, churned_comps);
    let mut fresh_row = row("fresh".into(), &fresh, fresh_recall, fresh_qps, fresh_comps);
    fresh_row.insert_per_s = Some(rate(live.len(), fresh_build_s));
    fresh_row.mutate_s = fresh_build_s;

    // --- compact() on the churned index ---
    log("Index::compact() on the churned index...");
    let t = Instant::now();
    let retired = index.compact();
    let compact_s = t.elapsed().as_secs_f64();
    check_live(&index, &live)?;
    let (c_recall, c_comps) = measure_recall(&index, &ds.queries, &truth, k, ef)?;
    let (c_qps, fresh_qps2) = qps_pair(&index, &fresh, &ds.queries, k, ef, args.min_time);
    let mut compacted = row("compacted".into(), &index, c_recall, c_qps, c_comps);
    compacted.mutate_s = compact_s;
    let load_at_end = load_average();

    // --- report ---
    let mut text = String::new();
    let mut p = |line: String| {
        text.push_str(&line);
        text.push('\n');
    };
    p(format!(
        "# churn {}: n={n} (built {}, held out {}) dim={dim} metric={} storage={} M={} efc={} k={k} ef={ef} queries={nq} \
         rounds={rounds} per round={per_round} deletes + {per_round} updates + {per_round} inserts ({:.1} %) \
         threads={threads} cpus={cpus} seed={} load average at start={} at end={}",
        ds.name,
        n - held,
        held,
        metric.name(),
        storage.name(),
        args.m,
        args.ef_construction,
        args.churn_fraction * 100.0,
        args.seed,
        load_at_start.as_deref().unwrap_or("n/a"),
        load_at_end.as_deref().unwrap_or("n/a"),
    ));
    if let Some(w) = &busy {
        p(format!("# {w}"));
    }
    p(format!("# machine: {}", machine()));
    p(String::new());
    p(format!(
        "{:>10} {:>7} {:>7} {:>6} {:>5} {:>7} {:>7} {:>10} {:>9} {:>8} {:>6} {:>9} {:>9} {:>9} {:>5}",
        "round",
        "live",
        "alloc",
        "a/live",
        "free",
        "pending",
        "unreach",
        "memory",
        format!("recall@{k}"),
        "QPS 1t",
        "dist/q",
        "delete/s",
        "update/s",
        "insert/s",
        "load"
    ));
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let fmt_row = |r: &Row| {
        format!(
            "{:>10} {:>7} {:>7} {:>6.3} {:>5} {:>7} {:>7} {:>10} {:>9.4} {:>8.0} {:>6.0} {:>9} {:>9} {:>9} {:>5}",
            r.label,
            r.live,
            r.allocated,
            r.alloc_per_live,
            r.free,
            r.pending,
            r.unreachable,
            human_bytes(r.memory_bytes as f64),
            r.recall,
            r.qps,
            r.dist_comps,
            opt(r.delete_per_s),
            opt(r.update_per_s),
            opt(r.insert_per_s),
            r.load.map_or("-".to_string(), |l| format!("{l:.2}"))
        )
    };
    for r in &table {
        p(fmt_row(r));
    }
    p(fmt_row(&churned_final));
    p(fmt_row(&fresh_row));
    p(fmt_row(&compacted));
    p(format!(
        "(round 0: the initial build, insert/s = its rate; rows 1..{rounds}: after each round, QPS measured right \
         after it; `{rounds} (again)` and `fresh`: QPS timed in turns, best of {ALTERNATIONS} alternations, ratios \
         below use these; fresh insert/s = its batch build of the final live set, {fresh_build_s:.2} s; `compacted`: \
         the churned index after Index::compact() ({compact_s:.2} s, {retired} tombstones retired), QPS timed in \
         turns with the fresh index again ({fresh_qps2:.0} QPS then))"
    ));
    p(format!(
        "(recall@{k} against the exact top-{k} of the live set, brute force in f32; QPS: one thread, one query at a \
         time, fastest pass over >= {} s; dist/q: mean distance computations per query; a/live: allocated/live \
         slots; pending: deleted nodes still linked, slot_stats().pending; unreach: live vectors a level-0 walk from the \
         entry point cannot reach, from check_integrity; load: 1-minute load average after the row)",
        args.min_time
    ));

    let recall_gap = fresh_recall - churned_recall;
    let qps_ratio = churned_qps / fresh_qps.max(1e-9);
    let mem_ratio = churned_final.memory_bytes as f64 / fresh_row.memory_bytes.max(1) as f64;
    let alloc = churned_final.alloc_per_live;
    let upd_rate = rate(upd_items, upd_s);
    let ins_rate = rate(ins_items, ins_s);
    let del_rate = rate(del_items, del_s);
    let upd_vs_ins = upd_rate / ins_rate.max(1e-9);
    p(String::new());
    p(format!("churned after {rounds} rounds vs fresh build of the same live set (issue 9 targets):"));
    p(format!(
        "  recall@{k} within {RECALL_GAP} of fresh:  churned {churned_recall:.4}, fresh {fresh_recall:.4}, gap {recall_gap:+.4}  {}",
        verdict(recall_gap <= RECALL_GAP, format!("by {:.4}", recall_gap - RECALL_GAP))
    ));
    p(format!(
        "  QPS within 10 % of fresh:     churned {churned_qps:.0}, fresh {fresh_qps:.0}, ratio {qps_ratio:.2}x  {}",
        verdict(qps_ratio >= QPS_RATIO, format!("by {:.0} %", (QPS_RATIO - qps_ratio) * 100.0))
    ));
    p(format!(
        "  memory within 10 % of fresh:  churned {}, fresh {}, ratio {mem_ratio:.3}x  {}",
        human_bytes(churned_final.memory_bytes as f64),
        human_bytes(fresh_row.memory_bytes as f64),
        verdict(mem_ratio <= MEMORY_RATIO, format!("by {:.1} %", (mem_ratio - MEMORY_RATIO) * 100.0))
    ));
    p(format!(
        "  allocated/live <= {ALLOC_PER_LIVE}:         {} / {} = {alloc:.3}  {}",
        churned_final.allocated,
        churned_final.live,
        verdict(alloc <= ALLOC_PER_LIVE, format!("by {:.3}", alloc - ALLOC_PER_LIVE))
    ));
    p(format!(
        "  update_batch >= 0.8x insert_batch throughput: update {upd_rate:.0}/s, insert {ins_rate:.0}/s (all rounds), \
         ratio {upd_vs_ins:.2}x  {}",
        verdict(upd_vs_ins >= UPDATE_VS_INSERT, format!("by {:.2}x", UPDATE_VS_INSERT - upd_vs_ins))
    ));
    p(format!("  (delete_batch: {del_rate:.0}/s over all rounds; it deletes one id after another on the calling thread)"));
    p(format!(
        "  after compact(): recall {c_recall:.4} (gap {:+.4}), QPS ratio {:.2}x, memory ratio {:.3}x, allocated/live {:.3}",
        fresh_recall - c_recall,
        c_qps / fresh_qps2.max(1e-9),
        compacted.memory_bytes as f64 / fresh_row.memory_bytes.max(1) as f64,
        compacted.alloc_per_live
    ));
    print!("{text}");

    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "tool": format!("hnsw-batch-cli {}", env!("CARGO_PKG_VERSION")),
            "mode": "churn",
            "dataset": ds.name,
            "n": n,
            "built": n - held,
            "held_out": held,
            "dim": dim,
            "metric": metric.name(),
            "M": args.m,
            "efc": args.ef_construction,
            "k": k,
            "ef": ef,
            "queries": nq,
            "storage": storage.name(),
            "rounds": rounds,
            "fraction": args.churn_fraction,
            "per_round": per_round,
            "seed": args.seed,
            "threads": threads,
            "machine": machine(),
            "cpus": cpus,
            "load_average_at_start": load_at_start,
            "load_average_at_end": load_at_end,
            "min_time": args.min_time,
            "rows": table,
            "churned_final": churned_final,
            "fresh": fresh_row,
            "compacted": compacted,
            "compact_s": compact_s,
            "compact_retired": retired,
            "fresh_qps_with_compacted": fresh_qps2,
            "throughput": { "delete_per_s": del_rate, "update_per_s": upd_rate, "insert_per_s": ins_rate },
            "ratios": {
                "recall_gap": recall_gap,
                "qps": qps_ratio,
                "memory": mem_ratio,
                "alloc_per_live": alloc,
                "update_vs_insert": upd_vs_ins,
            },
            "targets_met": {
                "recall": recall_gap <= RECALL_GAP,
                "qps": qps_ratio >= QPS_RATIO,
                "memory": mem_ratio <= MEMORY_RATIO,
                "alloc_per_live": alloc <= ALLOC_PER_LIVE,
                "update_vs_insert": upd_vs_ins >= UPDATE_VS_INSERT,
            },
        });
        write_file(path, serde_json::to_string_pretty(&v).unwrap_or_default().as_bytes())?;
        log(&format!("wrote `{}`", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn take_is_seeded_and_removes_what_it_returns() {
        let mut a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        let ta = Rng(7).take(&mut a, 10);
        let tb = Rng(7).take(&mut b, 10);
        assert_eq!(ta, tb);
        assert_eq!(a.len(), 90);
        assert!(ta.iter().all(|x| !a.contains(x)));
    }
}
