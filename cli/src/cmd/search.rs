//! `search`: query a saved index.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use hnsw_batch::metadata::to_json;
use hnsw_batch::{Filter, Neighbour};

use crate::error::{CliError, Result};
use crate::input::{read_all, read_gt, FieldArgs, InputFormat};
use crate::params::{pool, thread_count};
use crate::store;

/// Output formats of `search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// An aligned table: query, rank, id, distance.
    Table,
    /// One JSON object per query: {"query": i, "results": [{"id": .., "distance": ..}, ...]}.
    Jsonl,
}

/// Arguments of `search`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["queries", "vector"])))]
pub struct SearchArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Query vectors: .fvecs, .bvecs, .npy, .jsonl or .csv (each optionally .gz).
    pub queries: Option<PathBuf>,
    /// A single query vector: numbers separated by commas or spaces, e.g. "0.1,0.2,0.3".
    #[arg(long, allow_hyphen_values = true, value_name = "NUMBERS")]
    pub vector: Option<String>,
    /// Neighbours per query.
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Beam width (at least k; default: the larger of k and the index's default ef_search).
    #[arg(long)]
    pub ef: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutFormat,
    /// Ground truth (.ivecs, row i = ids of query i's nearest neighbours): print recall@k.
    #[arg(long, value_name = "FILE")]
    pub gt: Option<PathBuf>,
    /// Use only the first N queries of the file.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Include each result's metadata.
    #[arg(long)]
    pub with_metadata: bool,
    /// Only return vectors whose metadata matches this filter, in the JSON query shape:
    /// '{"lang": "en"}', '{"year": {"$gte": 2000, "$lt": 2010}}', '{"tag": {"$in": ["a", "b"]}}',
    /// '{"$or": [..]}', '{"$not": {..}}', '{"tag": {"$exists": true}}'.
    #[arg(long, value_name = "JSON")]
    pub filter: Option<String>,
    /// Threads for searching a query file (0 = every core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Format of the query file (default: from the extension).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub input_format: Option<InputFormat>,
    #[command(flatten)]
    pub fields: FieldArgs,
}

/// Parses `--vector`: numbers separated by commas and/or whitespace, optionally in brackets.
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let parts: Vec<&str> =
        t.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(CliError::usage("--vector: no numbers given"));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| match p.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(CliError::usage(format!("--vector: component {i}: `{p}` is not a finite number"))),
        })
        .collect()
}

/// Parses a filter given on the command line (`flag` names it in errors, with the path inside
/// the filter of what is wrong).
pub fn parse_filter(flag: &str, text: &str) -> Result<Filter> {
    Filter::from_json_str(text).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// recall@k of `found` against ground-truth rows (set semantics, as ann-benchmarks).
pub fn recall(found: &[Vec<Neighbour>], gt: &[Vec<i32>], k: usize) -> f64 {
    if found.is_empty() {
        return 0.0;
    }
    let mut hits = 0usize;
    for (f, g) in found.iter().zip(gt) {
        let truth = &g[..k.min(g.len())];
        let mut ids: Vec<u64> = f.iter().take(k).map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        hits += ids.iter().filter(|&&id| truth.iter().any(|&t| t >= 0 && t as u64 == id)).count();
    }
    hits as f64 / (k * found.len()) as f64
}

/// Runs `search`.
pub fn run(args: &SearchArgs) -> Result<()> {
    if args.k == 0 {
        return Err(CliError::usage("-k must be at least 1"));
    }
    let filter = args.filter.as_deref().map(|f| parse_filter("--filter", f)).transpose()?;
    let index = store::load(&args.index)?.handle;
    let dim = index.dim();
    let ef = args.ef.unwrap_or(index.config().ef_search.max(args.k));
    if ef < args.k {
        return Err(CliError::usage(format!("--ef {ef} must be at least -k {}", args.k)));
    }
    if ef > hnsw_batch::MAX_EF {
        return Err(CliError::usage(format!("--ef {ef} is above the maximum {}", hnsw_batch::MAX_EF)));
    }
    let mut queries: Vec<Vec<f32>> = match (&args.vector, &args.queries) {
        (Some(v), _) => {
            let q = parse_vector(v)?;
            if q.len() != dim {
                return Err(CliError::input(format!(
                    "--vector has {} components, the index has dimension {dim}",
                    q.len()
                )));
            }
            vec![q]
        }
        (None, Some(path)) => {
            let (rows, _) = read_all(path, args.input_format, &args.fields)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if r.vector.len() != dim {
                    return Err(CliError::input(format!(
                        "`{}` {}: query has dimension {}, the index has dimension {dim}",
                        path.display(),
                        r.loc,
                        r.vector.len()
                    )));
                }
                out.push(r.vector);
            }
            out
        }
        (None, None) => return Err(CliError::usage("give a query file or --vector")),
    };
    if let Some(n) = args.limit {
        queries.truncate(n);
    }
    let gt = match &args.gt {
        Some(p) => {
            let g = read_gt(p)?;
            if g.len() < queries.len() {
                return Err(CliError::input(format!(
                    "ground truth `{}` has {} rows for {} queries",
                    p.display(),
                    g.len(),
                    queries.len()
                )));
            }
            if let Some(short) = g.iter().take(queries.len()).position(|r| r.len() < args.k) {
                return Err(CliError::input(format!(
                    "ground truth `{}` row {short} has {} ids, fewer than -k {}",
                    p.display(),
                    g[short].len(),
                    args.k
                )));
            }
            Some(g)
        }
        None => None,
    };
    let threads = thread_count(args.threads);
    let pool = pool(threads)?;
    let start = Instant::now();
    let results = pool
        .install(|| match &filter {
            Some(f) => index.search_batch_where(&queries, args.k, ef, f),
            None => index.search_batch(&queries, args.k, ef),
        })
        .map_err(|e| CliError::input(format!("search failed: {e}")))?;
    let secs = start.elapsed().as_secs_f64();
    // Read after the search: metadata of the results only; none shown for a result without.
    let metadata =
        |id: u64| if args.with_metadata { index.get_metadata(id).filter(|m| !m.is_empty()) } else { None };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let w = |e: std::io::Error| CliError::index(format!("cannot write the results: {e}"));
    match args.format {
        OutFormat::Table => {
            writeln!(out, "{:>7}  {:>4}  {:>20}  {:>14}", "query", "rank", "id", "distance").map_err(w)?;
            for (qi, res) in results.iter().enumerate() {
                for (rank, n) in res.iter().enumerate() {
                    write!(out, "{qi:>7}  {:>4}  {:>20}  {:>14.6}", rank + 1, n.id, n.distance).map_err(w)?;
                    if let Some(m) = metadata(n.id) {
                        write!(out, "  {}", to_json(&m)).map_err(w)?;
                    }
                    writeln!(out).map_err(w)?;
                }
            }
        }
        OutFormat::Jsonl => {
            for (qi, res) in results.iter().enumerate() {
                let items: Vec<serde_json::Value> = res
                    .iter()
                    .map(|n| {
                        let mut o = serde_json::json!({ "id": n.id, "distance": n.distance });
                        if let Some(m) = metadata(n.id) {
                            o["metadata"] = to_json(&m);
                        }
                        o
                    })
                    .collect();
                writeln!(out, "{}", serde_json::json!({ "query": qi, "results": items })).map_err(w)?;
            }
        }
    }
    out.flush().map_err(w)?;
    drop(out);
    let summary = format!(
        "{} queries, k {}, ef {ef}: {:.3} s ({:.0} queries/s on {threads} threads)",
        queries.len(),
        args.k,
        secs,
        queries.len() as f64 / secs.max(1e-9)
    );
    eprintln!("{summary}");
    if let Some(g) = gt {
        let r = recall(&results, &g, args.k);
        let line = format!("recall@{}: {r:.4}", args.k);
        // Keep stdout valid JSON Lines.
        match args.format {
            OutFormat::Table => println!("{line}"),
            OutFormat::Jsonl => eprintln!("{line}"),
        }
    }
    Ok(())
}
