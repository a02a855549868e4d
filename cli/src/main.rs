//! `hnsw-batch`: build, query, benchmark, import and export HNSW indexes.

mod cmd;
mod error;
mod input;
mod meta;
mod params;
mod plot;
mod progress;
mod store;

use clap::{Parser, Subcommand};

use crate::cmd::{bench, build, export, info, search};
use crate::error::{code, EXIT_CODES_HELP};

const BUILD_HELP: &str = "\
Examples:
  # SIFT-style byte data: u8 storage is picked automatically for .bvecs
  hnsw-batch build base.bvecs -o sift.hnsw
  # float vectors with their ids, 4 threads, higher quality
  hnsw-batch build emb.npy --ids ids.npy -o emb.hnsw --threads 4 --m 32 --ef-construction 400
  # JSON Lines with other field names, skipping up to 10 bad rows
  hnsw-batch build docs.jsonl -o docs.hnsw --id-field doc_id --vector-field emb --max-errors 10
  # CSV with one column per component (v0, v1, ...), cosine distance
  hnsw-batch build rows.csv -o rows.hnsw --vector-prefix v --metric cosine

Vectors of .fvecs/.bvecs/.npy files get their row number (from 0) as id unless --ids is given.
Metadata of JSONL/CSV rows is kept in FILE.meta.jsonl beside the index.
Bad rows are reported by line (text formats, from 1) or record (binary formats, from 0).";

const IMPORT_HELP: &str = "\
`import` is `build` for record files: it reads ids, vectors and metadata from JSON Lines, CSV
or .npy (+ ids .npy) with the given field mapping, validates every row (--max-errors) and
writes an index file. `export` writes the same formats back.

Examples:
  hnsw-batch import records.jsonl -o records.hnsw
  hnsw-batch import records.csv -o records.hnsw --id-field key --vector-separator ' '
  hnsw-batch import vectors.npy --ids ids.npy -o vectors.hnsw --max-errors 100";

const SEARCH_HELP: &str = "\
Examples:
  hnsw-batch search sift.hnsw query.fvecs -k 10 --ef 64
  hnsw-batch search sift.hnsw query.fvecs --gt gt.ivecs          # prints recall@10
  hnsw-batch search emb.hnsw --vector \"0.1,0.2,0.3\" -k 5 --format jsonl --with-metadata

Table output goes to stdout; the timing line goes to stderr. With --gt the recall goes to
stdout after a table and to stderr with --format jsonl (which keeps stdout JSON Lines).";

const BENCH_HELP: &str = "\
Examples:
  hnsw-batch bench data/siftsmall --plot docs/img/siftsmall.png --json docs/bench/siftsmall.json
  hnsw-batch bench /data/fashion-mnist-784-euclidean --queries 1000 --skip-sequential
  hnsw-batch bench data/siftsmall --compare peers.json --plot cmp.png   # bench_peers.py --json output
  hnsw-batch bench data/siftsmall --ef 16,32,64 --build-threads 1,4 --storage f32
  hnsw-batch bench DIR --churn 20 --storage f32 --json churn.json   # deletes/updates/inserts

With --churn ROUNDS the ef sweep is replaced by a churn run: 20 % of the base (--churn-holdout)
is held out, the rest built with insert_batch, then each round runs delete_batch, update_batch
(live ids get held-out vectors) and insert_batch (new ids, held-out vectors) of 5 % of the live
ids each (--churn-fraction, seeded by --seed). After each round: recall@10 at --churn-ef (64)
against a brute-force ground truth of the live set, 1-thread QPS, memory_bytes, slot_stats and
each batch's items/s; then a fresh build of the final live set, timed in turns with the churned
index, and the churned index after compact(). --limit N uses the first N base vectors; the first
200 queries are used unless --queries is given.

The folder holds base.fvecs|bvecs, query.fvecs|bvecs and gt.ivecs (each optionally .gz) and
meta.json with the \"metric\" (l2/euclidean, cosine/angular, ip/dot). QPS on one thread is a
query loop on one thread; QPS on all threads is search_batch on --threads threads. The mean
distance computations per query come from Index::search_with_stats.";

const EXPORT_HELP: &str = "\
Examples:
  hnsw-batch export docs.hnsw -o docs.jsonl
  hnsw-batch export docs.hnsw -o docs.csv --vector-prefix v          # one column per component
  hnsw-batch export sift.hnsw -o sift.npy                             # also writes sift.npy.ids.npy
  hnsw-batch export sift.hnsw -o sift.bvecs --ids sift-ids.npy

Vectors are written in ascending id order, with the metadata kept at build time. u8-storage
indexes export .npy as uint8; cosine indexes hold (and export) normalised vectors. Existing
files (the output, the ids file) are replaced only with --force.";

const INFO_HELP: &str = "\
Examples:
  hnsw-batch info sift.hnsw
  hnsw-batch info sift.hnsw --json";

/// Build, query and benchmark HNSW approximate nearest-neighbour indexes.
#[derive(Debug, Parser)]
#[command(name = "hnsw-batch", version, after_help = EXIT_CODES_HELP, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an index from a vector file (streamed, batch insert on all cores).
    #[command(after_help = format!("{BUILD_HELP}\n\n{EXIT_CODES_HELP}"))]
    Build(build::BuildArgs),
    /// Query an index with a query file or a single vector.
    #[command(after_help = format!("{SEARCH_HELP}\n\n{EXIT_CODES_HELP}"))]
    Search(search::SearchArgs),
    /// Run the ann-benchmarks procedure on a dataset folder: build times, recall and QPS per ef.
    #[command(after_help = format!("{BENCH_HELP}\n\n{EXIT_CODES_HELP}"))]
    Bench(bench::BenchArgs),
    /// Build an index from a record file (JSON Lines, CSV or .npy with ids).
    #[command(after_help = format!("{IMPORT_HELP}\n\n{EXIT_CODES_HELP}"))]
    Import(build::BuildArgs),
    /// Write an index's ids, vectors and metadata to JSON Lines, CSV, .npy, .fvecs or .bvecs.
    #[command(after_help = format!("{EXPORT_HELP}\n\n{EXIT_CODES_HELP}"))]
    Export(export::ExportArgs),
    /// Show an index file's parameters, counts, memory and format version.
    #[command(after_help = format!("{INFO_HELP}\n\n{EXIT_CODES_HELP}"))]
    Info(info::InfoArgs),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { code::USAGE } else { code::OK };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match &cli.command {
        Command::Build(a) => build::run(a, "built index of"),
        Command::Import(a) => build::run(a, "imported"),
        Command::Search(a) => search::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
        Command::Info(a) => info::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
