//! `bench`: the ann-benchmarks procedure on a dataset folder.
//!
//! Builds the index one vector at a time (`insert` in a loop, one thread) and with
//! `insert_batch` for a sweep of thread counts, then sweeps `ef` and measures recall@k and
//! queries per second on one thread and on all threads. Writes a table, optionally JSON (a
//! superset of the format of `bench_peers.py --json`) and a recall/QPS plot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Neighbour};
use serde::{Deserialize, Serialize};

use crate::cmd::build::human_bytes;
use crate::cmd::search::recall;
use crate::error::{io_message, CliError, Result};
use crate::input::{read_all, read_gt, FieldArgs};
use crate::params::{pool, thread_count, MetricArg, StorageArg};
use crate::plot::{write_plot, Series};

/// The `ef` values of ann-benchmarks' HNSW runs.
pub const DEFAULT_EFS: [usize; 12] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// Recall targets reported.
const TARGETS: [f64; 3] = [0.90, 0.95, 0.99];
/// Name of our series in JSON files.
const NAME: &str = "hnsw-batch";

/// Arguments of `bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Folder with base.{fvecs,bvecs}[.gz], query.{fvecs,bvecs}[.gz], gt.ivecs[.gz] and meta.json.
    pub dataset: PathBuf,
    /// ef values to sweep (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_EFS.to_vec())]
    pub ef: Vec<usize>,
    /// Use only the first N queries.
    #[arg(long, value_name = "N")]
    pub queries: Option<usize>,
    /// Neighbours per query (recall@k).
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Links per node on the upper levels (level 0 gets 2*M).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// Beam width while inserting.
    #[arg(long, default_value_t = 200, value_name = "EF")]
    pub ef_construction: usize,
    /// Distance (default: the "metric" of meta.json).
    #[arg(long, value_enum)]
    pub metric: Option<MetricArg>,
    /// Element type of stored vectors; auto = u8 when every base value is an integer 0..=255
    /// (.bvecs, or .fvecs such as SIFT), which u8 storage holds exactly.
    #[arg(long, value_enum, default_value = "auto")]
    pub storage: StorageArg,
    /// sq8 storage: candidates of the walk re-scored with the exact vectors (0 = max(2k, 20); at most ef).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rerank: usize,
    /// Threads for "all threads" figures (0 = every core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Thread counts of the batch-build sweep (default: 1, 2 and all).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub build_threads: Option<Vec<usize>>,
    /// f32 and f16 storage: batch builds gather candidates on the stored vectors instead of
    /// on temporary 8-bit codes (as `build --exact-walk`).
    #[arg(long)]
    pub exact_walk: bool,
    /// Skip the one-at-a-time build (the slowest part on big sets).
    #[arg(long)]
    pub skip_sequential: bool,
    /// Time each build N times and keep the fastest (default: 3 for up to 20 000 base vectors,
    /// else 1).
    #[arg(long, value_name = "N")]
    pub build_runs: Option<usize>,
    /// Least time spent per QPS measurement, in seconds: the query set is run again and again
    /// and the fastest pass counts.
    #[arg(long, default_value_t = 0.2, value_name = "SECS")]
    pub min_time: f64,
    /// Seed of the level generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a recall/QPS plot to FILE.png and FILE.svg.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Overlay another run: a JSON file of `bench --json` or of `bench_peers.py --json` (repeatable).
    #[arg(long, value_name = "FILE")]
    pub compare: Vec<PathBuf>,
    /// No progress messages.
    #[arg(short, long)]
    pub quiet: bool,
    /// Churn benchmark instead of the ef sweep: build from the base set, then ROUNDS rounds of
    /// delete_batch / update_batch / insert_batch of --churn-fraction of the live ids each, with
    /// recall, QPS, memory and slot use after every round, and a fresh build of the final live
    /// set to compare with (see `cmd/churn.rs`).
    #[arg(long, value_name = "ROUNDS")]
    pub churn: Option<usize>,
    /// Beam width of the churn benchmark's searches (recall@k and QPS).
    #[arg(long, default_value_t = 64, value_name = "EF", requires = "churn")]
    pub churn_ef: usize,
    /// Fraction of the live ids deleted, updated and inserted per churn round (each).
    #[arg(long, default_value_t = 0.05, value_name = "F", requires = "churn")]
    pub churn_fraction: f64,
    /// Fraction of the base vectors held out of the initial build: inserts and updates draw
    /// their vectors from it, and vectors deleted or replaced go back to it.
    #[arg(long, default_value_t = 0.2, value_name = "F", requires = "churn")]
    pub churn_holdout: f64,
    /// Use only the first N base vectors (churn only: it computes its own ground truth).
    #[arg(long, value_name = "N", requires = "churn")]
    pub limit: Option<usize>,
}

/// One ef of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Beam width.
    pub ef: usize,
    /// recall@k.
    pub recall: f64,
    /// Queries per second, one thread.
    pub qps: f64,
    /// Queries per second, all threads (ours only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps_threads: Option<f64>,
    /// Mean distance computations per query (ours only, from `Index::search_with_stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dist_comps: Option<f64>,
}

/// One batch build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildTime {
    /// Threads.
    pub threads: usize,
    /// Seconds.
    pub seconds: f64,
    /// One-at-a-time seconds / these seconds.
    pub speedup_vs_one_at_a_time: Option<f64>,
    /// Batch on one thread seconds / these seconds.
    pub speedup_vs_1thread: Option<f64>,
}

/// Where a series first reaches a recall target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// Beam width.
    pub ef: usize,
    /// recall@k reached.
    pub recall: f64,
    /// Queries per second, one thread.
    pub qps: f64,
}

/// A series of results of one library, as in `bench_peers.py --json`.
#[derive(Debug, Clone, Default)]
pub struct LibResult {
    /// Name.
    pub name: String,
    /// Batch build on one thread.
    pub build_1thread: Option<f64>,
    /// Build on all threads of that run.
    pub build_threads: Option<f64>,
    /// One-at-a-time build.
    pub build_one_at_a_time: Option<f64>,
    /// Threads of `build_threads`.
    pub threads: Option<u64>,
    /// The ef sweep.
    pub sweep: Vec<SweepPoint>,
}

/// The smallest ef of `sweep` (in ef order) reaching `target`.
pub fn first_hit(sweep: &[SweepPoint], target: f64) -> Option<Hit> {
    let mut s: Vec<&SweepPoint> = sweep.iter().collect();
    s.sort_by_key(|p| p.ef);
    s.into_iter().find(|p| p.recall >= target).map(|p| Hit { ef: p.ef, recall: p.recall, qps: p.qps })
}

/// Peak resident set size (VmHWM of /proc/self/status), when the system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The 1-minute load average, where the system reports it: other work skews timings.
pub(crate) fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next().map(str::to_string)
}

/// The warning for a run on a busy machine: with a 1-minute load average above half the cores,
/// other work takes cores from the builds and queries, and every timing (build speed-ups
/// included) comes out low and uneven.
pub fn load_warning(load: f64, cores: usize) -> Option<String> {
    (load > cores as f64 / 2.0).then(|| {
        format!(
            "WARNING: load average {load:.2} on {cores} cores: other work is running, so timings \
             (QPS, build speed-ups) are low and noisy; rerun on an idle machine to compare"
        )
    })
}

pub(crate) fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// `base`, `query` or `gt` in `dir`, with one of `exts`, optionally gzip'd.
fn find_file(dir: &Path, stem: &str, exts: &[&str]) -> Result<PathBuf> {
    for ext in exts {
        for gz in ["", ".gz"] {
            let p = dir.join(format!("{stem}.{ext}{gz}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let names: Vec<String> = exts.iter().map(|e| format!("{stem}.{e}[.gz]")).collect();
    Err(CliError::input(format!("`{}` has no {}", dir.display(), names.join(" or "))))
}

pub(crate) struct Dataset {
    pub(crate) name: String,
    pub(crate) metric: Metric,
    pub(crate) base: Vec<Vec<f32>>,
    pub(crate) queries: Vec<Vec<f32>>,
    pub(crate) gt: Vec<Vec<i32>>,
    pub(crate) bytes: bool,
}

pub(crate) fn load_dataset(args: &BenchArgs, log: &dyn Fn(&str)) -> Result<Dataset> {
    let dir = &args.dataset;
    if !dir.is_dir() {
        return Err(CliError::input(format!("dataset folder `{}` does not exist", dir.display())));
    }
    let meta_path = dir.join("meta.json");
    let meta: Option<serde_json::Value> = match std::fs::read_to_string(&meta_path) {
        Ok(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| CliError::input(format!("`{}` is not valid JSON: {e}", meta_path.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.metric.is_some() => None,
        Err(e) => {
            return Err(CliError::input(format!(
                "{} (it names the dataset's metric; or pass --metric)",
                io_message("read", &meta_path, &e)
            )))
        }
    };
    let metric = match (args.metric, &meta) {
        (Some(m), _) => m.into(),
        (None, Some(m)) => {
            let name = m.get("metric").and_then(|v| v.as_str()).ok_or_else(|| {
                CliError::input(format!(
                    "`{}` has no \"metric\" field (or pass --metric)",
                    meta_path.display()
                ))
            })?;
            Metric::from_name(name).ok_or_else(|| {
                CliError::input(format!(
                    "`{}`: unknown metric `{name}` (expected l2, cosine or ip)",
                    meta_path.display()
                ))
            })?
        }
        (None, None) => unreachable!("meta.json is only optional with --metric"),
    };
    let name = meta
        .as_ref()
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let fields = FieldArgs::default();
    let base_path = find_file(dir, "base", &["fvecs", "bvecs"])?;
    let query_path = find_file(dir, "query", &["fvecs", "bvecs"])?;
    let gt_path = find_file(dir, "gt", &["ivecs"])?;
    log(&format!("reading `{}`", base_path.display()));
    let (base_rows, byte_file) = read_all(&base_path, None, &fields)?;
    let (query_rows, _) = read_all(&query_path, None, &fields)?;
    let mut gt = read_gt(&gt_path)?;
    let base: Vec<Vec<f32>> = base_rows.into_iter().map(|r| r.vector).collect();
    let mut queries: Vec<Vec<f32>> = query_rows.into_iter().map(|r| r.vector).collect();
    if base.is_empty() || queries.is_empty() {
        return Err(CliError::input(format!("`{}`: no base vectors or no queries", dir.display())));
    }
    let dim = base[0].len();
    if queries[0].len() != dim {
        return Err(CliError::input(format!(
            "queries have dimension {}, base vectors {dim}",
            queries[0].len()
        )));
    }
    if let Some(n) = args.queries {
        queries.truncate(n);
    }
    if gt.len() < queries.len() {
        return Err(CliError::input(format!(
            "`{}` has {} rows for {} queries",
            gt_path.display(),
            gt.len(),
            queries.len()
        )));
    }
    gt.truncate(queries.len());
    if let Some(i) = gt.iter().position(|r| r.len() < args.k) {
        return Err(CliError::input(format!(
            "`{}` row {i} has {} ids, fewer than -k {}",
            gt_path.display(),
            gt[i].len(),
            args.k
        )));
    }
    let bytes =
        byte_file || base.iter().all(|v| v.iter().all(|&x| (0.0..=255.0).contains(&x) && x.fract() == 0.0));
    Ok(Dataset { name, metric, base, queries, gt, bytes })
}

/// Queries per second of `run` (which answers `n` queries): the fastest of repeated passes over
/// at least `min_time` seconds (as ann-benchmarks keeps the best of its runs), which keeps
/// other load on the machine out of the figure as far as possible.
pub(crate) fn qps(n: usize, min_time: f64, mut run: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::INFINITY;
    loop {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
        if start.elapsed().as_secs_f64() >= min_time {
            return n as f64 / best.max(1e-9);
        }
    }
}

/// Reads a `--compare` file: ours or `bench_peers.py`'s (both have `results: {name: {...}}`).
pub fn read_compare(path: &Path) -> Result<(Option<String>, Vec<LibResult>)> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::input(io_message("read", path, &e)))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::input(format!("`{}` is not valid JSON: {e}", path.display())))?;
    let results = v.get("results").and_then(|r| r.as_object()).ok_or_else(|| {
        CliError::input(format!(
            "`{}` has no \"results\" object: not a file of `bench --json` or `bench_peers.py --json`",
            path.display()
        ))
    })?;
    let threads = v.get("threads").and_then(|t| t.as_u64());
    let mut out = Vec::new();
    for (name, r) in results {
        let sweep: Vec<SweepPoint> = match r.get("sweep") {
            Some(s) => serde_json::from_value(s.clone())
                .map_err(|e| CliError::input(format!("`{}`: results.{name}.sweep: {e}", path.display())))?,
            None => Vec::new(),
        };
        let f = |k: &str| r.get(k).and_then(|x| x.as_f64());
        out.push(LibResult {
            name: name.clone(),
            build_1thread: f("build_s_1thread"),
            build_threads: f("build_s_threads"),
            build_one_at_a_time: f("build_s_one_at_a_time"),
            threads,
            sweep,
        });
    }
    let dataset = v.get("dataset").and_then(|d| d.as_str()).map(str::to_string);
    Ok((dataset, out))
}

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.k == 0 {
        return Err(CliError::usage("-k must be at least 1"));
    }
    if let Some(rounds) = args.churn {
        return crate::cmd::churn::run(args, rounds);
    }
    if args.ef.is_empty() || args.ef.contains(&0) {
        return Err(CliError::usage("--ef needs one or more values of at least 1"));
    }
    let quiet = args.quiet;
    let log = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let load_at_start = load_average();
    // Read the comparison files first: a typo should not cost a whole run.
    let mut compares = Vec::new();
    for p in &args.compare {
        compares.push((p.clone(), read_compare(p)?));
    }
    let ds = load_dataset(args, &log)?;
    let dim = ds.base[0].len();
    let n = ds.base.len();
    let storage = match (args.storage, ds.metric) {
        (StorageArg::Auto, Metric::Cosine) => hnsw_batch::Storage::F32,
        (s, _) => s.resolve(ds.bytes),
    };
    let cfg = IndexConfig::new(dim, ds.metric)
        .m(args.m)
        .ef_construction(args.ef_construction)
        .seed(args.seed)
        .storage(storage)
        .rerank(args.rerank);
    cfg.validate().map_err(|e| CliError::usage(e.to_string()))?;
    let all = thread_count(args.threads);
    let cpus = thread_count(0);
    let busy =
        load_at_start.as_deref().and_then(|l| l.parse::<f64>().ok()).and_then(|l| load_warning(l, cpus));
    if let Some(w) = &busy {
        // At the start as well as in the report: the user may stop a run that cannot be used.
        eprintln!("{w}");
    }
    let mut build_threads = args.build_threads.clone().unwrap_or_else(|| vec![1, 2, all]);
    build_threads.retain(|&t| t >= 1);
    build_threads.sort_unstable();
    build_threads.dedup();
    if args.build_threads.is_none() {
        build_threads.retain(|&t| t <= all);
    }
    if build_threads.is_empty() {
        return Err(CliError::usage("--build-threads needs one or more thread counts of at least 1"));
    }
    // What the batch builds gather candidates on, so that runs with and without codes are told
    // apart: codes only for float storage (`u8` and `sq8` walk their own bytes either way) and a
    // base set large enough for them (a build is one batch into an empty index).
    let coded_walk =
        !args.exact_walk && matches!(storage, hnsw_batch::Storage::F32 | hnsw_batch::Storage::F16);
    let build_walk = if coded_walk && n >= hnsw_batch::CODED_WALK_MIN_BATCH { "codes" } else { "stored" };
    log(&format!(
        "{}: {n} vectors, dim {dim}, {} queries, metric {}, {} storage, M {}, ef_construction {}, \
         batch builds walk {build_walk}",
        ds.name,
        ds.queries.len(),
        ds.metric.name(),
        storage.name(),
        args.m,
        args.ef_construction
    ));

    // --- builds ---
    let bad_input =
        |e: hnsw_batch::IndexError| CliError::input(format!("the index rejected a base vector: {e}"));
    let runs = args.build_runs.unwrap_or(if n <= 20_000 { 3 } else { 1 }).max(1);
    let of_runs = if runs > 1 { format!(" (fastest of {runs})") } else { String::new() };
    let mut one_at_a_time = None;
    if !args.skip_sequential {
        log(&format!("building one vector at a time (insert in a loop, 1 thread){of_runs}..."));
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let index = Index::new(cfg.clone()).map_err(|e| CliError::usage(e.to_string()))?;
            let t = Instant::now();
            if storage == hnsw_batch::Storage::Sq8 {
                // Single inserts need trained codes; timed, as a batch build trains too.
                index.train_sq8(&ds.base).map_err(bad_input)?;
            }
            for (i, v) in ds.base.iter().enumerate() {
                index.insert(i as u64, v).map_err(bad_input)?;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        log(&format!("  {best:.2} s"));
        one_at_a_time = Some(best);
    }
    let items: Vec<(u64, &[f32])> =
        ds.base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    let mut builds: Vec<BuildTime> = Vec::new();
    let mut index = None;
    for &t in &build_threads {
        log(&format!("building with insert_batch on {t} thread(s){of_runs}..."));
        let p = pool(t)?;
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            drop(index.take()); // free the previous index first
            let ix = Index::new(cfg.clone()).map_err(|e| CliError::usage(e.to_string()))?;
            let start = Instant::now();
            let opts = BatchOptions::new().coded_walk(coded_walk);
            p.install(|| ix.insert_batch(&items, &opts))
                .map_err(|e| CliError::input(format!("the index rejected the base vectors: {e}")))?;
            best = best.min(start.elapsed().as_secs_f64());
            index = Some(ix);
        }
        log(&format!("  {best:.2} s"));
        builds.push(BuildTime {
            threads: t,
            seconds: best,
            speedup_vs_one_at_a_time: one_at_a_time.map(|o| o / best),
            speedup_vs_1thread: None,
        });
    }
    if let Some(b1) = builds.iter().find(|b| b.threads == 1).map(|b| b.seconds) {
        for b in &mut builds {
            b.speedup_vs_1thread = Some(b1 / b.seconds);
        }
    }
    let index = index.expect("at least one build");
    let memory_bytes = index.memory_bytes();

    // --- ef sweep ---
    let mut efs = args.ef.clone();
    efs.sort_unstable();
    efs.dedup();
    let search_pool = pool(all)?;
    let nq = ds.queries.len();
    let mut sweep = Vec::new();
    log(&format!("sweeping ef over {} values ({nq} queries, k {})...", efs.len(), args.k));
    for &ef in &efs {
        let ef_eff = ef.max(args.k);
        // Results and work counts come from an untimed pass; the timed passes use `search`.
        let mut found: Vec<Vec<Neighbour>> = Vec::with_capacity(nq);
        let mut comps = 0u64;
        for q in &ds.queries {
            let (r, stats) = index
                .search_with_stats(q, args.k, ef_eff)
                .map_err(|e| CliError::input(format!("a query was rejected: {e}")))?;
            comps += stats.distance_computations;
            found.push(r);
        }
        let q1 = qps(nq, args.min_time, || {
            for q in &ds.queries {
                std::hint::black_box(index.search(q, args.k, ef_eff).ok());
            }
        });
        let qn = qps(nq, args.min_time, || {
            let r = search_pool.install(|| index.search_batch(&ds.queries, args.k, ef_eff));
            std::hint::black_box(r.ok());
        });
        let r = recall(&found, &ds.gt, args.k);
        let dist_comps = Some(comps as f64 / nq.max(1) as f64);
        sweep.push(SweepPoint { ef, recall: r, qps: q1, qps_threads: Some(qn), dist_comps });
    }
    let peak_rss = peak_rss_bytes();

    let ours = LibResult {
        name: NAME.into(),
        build_1thread: builds.iter().find(|b| b.threads == 1).map(|b| b.seconds),
        build_threads: builds.last().map(|b| b.seconds),
        build_one_at_a_time: one_at_a_time,
        threads: builds.last().map(|b| b.threads as u64),
        sweep: sweep.clone(),
    };

    // --- report ---
    let mut text = String::new();
    let p = |s: &mut String, line: String| {
        s.push_str(&line);
        s.push('\n');
    };
    p(
        &mut text,
        format!(
            "# {}: n={n} dim={dim} metric={} queries={nq} k={} M={} efc={} storage={} build walk={build_walk} \
             threads={all} cpus={cpus} build runs={runs} load average at start={}",
            ds.name,
            ds.metric.name(),
            args.k,
            args.m,
            args.ef_construction,
            storage.name(),
            load_at_start.as_deref().unwrap_or("n/a")
        ),
    );
    if let Some(w) = &busy {
        p(&mut text, format!("# {w}"));
    }
    p(&mut text, String::new());
    p(
        &mut text,
        format!(
            "{:<34} {:>7} {:>9} {:>11} {:>17} {:>16}",
            "build", "threads", "seconds", "vectors/s", "vs one-at-a-time", "vs batch 1 thread"
        ),
    );
    if let Some(s) = one_at_a_time {
        p(
            &mut text,
            format!(
                "{:<34} {:>7} {:>9.2} {:>11.0} {:>17} {:>16}",
                "one at a time (insert loop)",
                1,
                s,
                n as f64 / s,
                "1.00x",
                "-"
            ),
        );
    }
    for b in &builds {
        let x = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        p(
            &mut text,
            format!(
                "{:<34} {:>7} {:>9.2} {:>11.0} {:>17} {:>16}",
                "batch (insert_batch)",
                b.threads,
                b.seconds,
                n as f64 / b.seconds,
                x(b.speedup_vs_one_at_a_time),
                x(b.speedup_vs_1thread)
            ),
        );
    }
    p(&mut text, String::new());
    p(
        &mut text,
        format!(
            "memory: index {} (Index::memory_bytes, {} bytes/vector), peak RSS {} (VmHWM, whole process incl. dataset)",
            human_bytes(memory_bytes as f64),
            memory_bytes / n.max(1),
            peak_rss.map_or("n/a".to_string(), |b| human_bytes(b as f64))
        ),
    );
    p(&mut text, String::new());
    p(
        &mut text,
        format!(
            "{:>5} {:>10} {:>15} {:>16} {:>18}",
            "ef",
            format!("recall@{}", args.k),
            "QPS (1 thread)",
            format!("QPS ({all} threads)"),
            "dist comps/query"
        ),
    );
    for s in &sweep {
        p(
            &mut text,
            format!(
                "{:>5} {:>10.4} {:>15.0} {:>16.0} {:>18.0}",
                s.ef,
                s.recall,
                s.qps,
                s.qps_threads.unwrap_or(0.0),
                s.dist_comps.unwrap_or(0.0)
            ),
        );
    }
    let k = args.k;
    p(
        &mut text,
        format!("(recall@{k}: fraction of the true {k} nearest neighbours found, averaged over the queries)"),
    );
    p(
        &mut text,
        format!(
            "(QPS: queries per second; 1 thread = single-thread search throughput, {all} threads = search_batch)"
        ),
    );
    p(&mut text, "(dist comps/query: mean distance computations per query, Index::search_with_stats)".into());
    p(&mut text, String::new());
    p(&mut text, format!("smallest ef reaching recall@{}:", args.k));
    for t in TARGETS {
        let line = match first_hit(&sweep, t) {
            Some(h) => {
                format!("  {t:.2}: ef {:>4}  recall {:.4}  {:.0} QPS (1 thread)", h.ef, h.recall, h.qps)
            }
            None => format!("  {t:.2}: not reached (largest ef {})", efs.last().copied().unwrap_or(0)),
        };
        p(&mut text, line);
    }

    let mut all_libs: Vec<(String, LibResult)> = vec![(NAME.to_string(), ours.clone())];
    for (path, (dataset, libs)) in &compares {
        if let Some(d) = dataset.as_ref().filter(|d| **d != ds.name) {
            eprintln!("warning: `{}` is a run on `{d}`, this one is on `{}`", path.display(), ds.name);
        }
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        for lib in libs {
            let label = if lib.name == NAME { format!("{} ({file})", lib.name) } else { lib.name.clone() };
            all_libs.push((label, lib.clone()));
        }
    }
    if all_libs.len() > 1 {
        p(&mut text, String::new());
        p(&mut text, "comparison (QPS on 1 thread; build seconds: one vector per call, batch on 1 thread, batch on all threads of each run):".into());
        let mut header =
            format!("{:<28} {:>9} {:>9} {:>14}", "series", "one-at-a", "build 1t", "build all (t)");
        for t in TARGETS {
            header.push_str(&format!(" {:>19}", format!("@{t:.2}: ef / QPS")));
        }
        p(&mut text, header);
        for (label, lib) in &all_libs {
            let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
            let mut line = format!(
                "{:<28} {:>9} {:>9} {:>14}",
                label,
                secs(lib.build_one_at_a_time),
                secs(lib.build_1thread),
                match (lib.build_threads, lib.threads) {
                    (Some(s), Some(t)) => format!("{s:.2} ({t})"),
                    (Some(s), None) => format!("{s:.2}"),
                    _ => "-".into(),
                }
            );
            for t in TARGETS {
                line.push_str(&format!(
                    " {:>19}",
                    first_hit(&lib.sweep, t).map_or("-".to_string(), |h| format!("{} / {:.0}", h.ef, h.qps))
                ));
            }
            p(&mut text, line);
        }
        p(&mut text, String::new());
        let mut header = format!("{:>5}", "ef");
        for (label, _) in &all_libs {
            header.push_str(&format!(" {:>24}", format!("{} recall/QPS", truncate(label, 12))));
        }
        p(&mut text, header);
        let mut all_efs: Vec<usize> =
            all_libs.iter().flat_map(|(_, l)| l.sweep.iter().map(|s| s.ef)).collect();
        all_efs.sort_unstable();
        all_efs.dedup();
        for ef in all_efs {
            let mut line = format!("{ef:>5}");
            for (_, lib) in &all_libs {
                line.push_str(&format!(
                    " {:>24}",
                    lib.sweep
                        .iter()
                        .find(|s| s.ef == ef)
                        .map_or("-".to_string(), |s| format!("{:.4} / {:.0}", s.recall, s.qps))
                ));
            }
            p(&mut text, line);
        }
    }
    print!("{text}");

    if let Some(path) = &args.json {
        let mut r = serde_json::json!({
            "build_s_1thread": ours.build_1thread,
            "build_s_threads": ours.build_threads,
            "build_s_one_at_a_time": one_at_a_time,
            "build": builds,
            "memory_bytes": memory_bytes,
            "peak_rss_bytes": peak_rss,
            "sweep": sweep,
        });
        for b in &builds {
            r[format!("build_s_{}threads", b.threads)] = b.seconds.into();
        }
        for t in TARGETS {
            r[format!("at_{t:.2}")] = serde_json::to_value(first_hit(&sweep, t)).unwrap_or_default();
        }
        let v = serde_json::json!({
            "tool": format!("hnsw-batch-cli {}", env!("CARGO_PKG_VERSION")),
            "dataset": ds.name,
            "n": n,
            "dim": dim,
            "metric": ds.metric.name(),
            "M": args.m,
            "efc": args.ef_construction,
            "k": args.k,
            "queries": nq,
            "storage": storage.name(),
            "build_walk": build_walk,
            "threads": all,
            "machine": machine(),
            "cpus": cpus,
            "load_average_at_start": load_at_start,
            "build_runs": runs,
            "results": { NAME: r },
        });
        write_file(path, serde_json::to_string_pretty(&v).unwrap_or_default().as_bytes())?;
        log(&format!("wrote `{}`", path.display()));
    }
    if let Some(path) = &args.plot {
        let mut series = vec![
            Series {
                label: format!("{NAME} (1 thread)"),
                points: sweep.iter().map(|s| (s.recall, s.qps)).collect(),
                dashed: false,
            },
            Series {
                label: format!("{NAME} ({all} threads)"),
                points: sweep.iter().map(|s| (s.recall, s.qps_threads.unwrap_or(0.0))).collect(),
                dashed: true,
            },
        ];
        for (label, lib) in all_libs.iter().skip(1) {
            series.push(Series {
                label: format!("{label} (1 thread)"),
                points: lib.sweep.iter().map(|s| (s.recall, s.qps)).collect(),
                dashed: false,
            });
        }
        let title = format!(
            "{}  (n={n}, dim={dim}, k={}, M={}, efc={})",
            ds.name, args.k, args.m, args.ef_construction
        );
        let (png, svg) = write_plot(path, &title, &format!("recall@{}", args.k), &series)?;
        log(&format!("wrote `{}` and `{}`", png.display(), svg.display()));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect()
    }
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::index(io_message("create directory", dir, &e)))?;
    }
    std::fs::write(path, bytes).map_err(|e| CliError::index(io_message("write", path, &e)))
}

#[cfg(test)]
mod tests {
    use super::load_warning;

    #[test]
    fn load_above_half_the_cores_warns() {
        assert_eq!(load_warning(0.49, 2), None);
        assert_eq!(load_warning(1.0, 2), None);
        let w = load_warning(1.01, 2).expect("busy");
        assert!(w.starts_with("WARNING: load average 1.01 on 2 cores"), "{w}");
        assert!(load_warning(4.5, 8).is_some());
        assert_eq!(load_warning(3.9, 8), None);
    }
}
