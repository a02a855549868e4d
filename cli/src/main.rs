//! `hnsw-batch`: build, query, benchmark, import and export HNSW indexes.

mod cmd;
mod error;
mod input;
mod mcp;
mod meta;
mod params;
mod plot;
mod progress;
mod store;

use clap::{Parser, Subcommand};

use crate::cmd::{bench, build, bulk, export, info, search};
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
Metadata of JSONL/CSV rows is stored in the index with its vector (search --filter, delete
--where, update --where use it). A FILE.meta.jsonl side file left by an older build is moved
into the index the first time a command opens it.
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
  hnsw-batch search docs.hnsw query.jsonl --filter '{\"lang\": \"en\", \"year\": {\"$gte\": 2000}}'

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

Vectors are written in ascending id order, with their metadata. u8-storage
indexes export .npy as uint8; cosine indexes hold (and export) normalised vectors. Existing
files (the output, the ids file) are replaced only with --force.";

const INFO_HELP: &str = "\
Examples:
  hnsw-batch info sift.hnsw
  hnsw-batch info sift.hnsw --json

Also lists the metadata fields with the number of vectors that have each, the indexed fields
and how many vectors expire.";

const FILTER_HELP: &str = "\
Filters use the JSON query shape of document stores: {\"lang\": \"en\"} (equality),
{\"year\": {\"$gte\": 2000, \"$lt\": 2010}}, {\"tag\": {\"$in\": [\"a\", \"b\"]}}, {\"lang\": {\"$ne\": \"en\"}},
{\"tag\": {\"$exists\": true}}, {\"$and\": [..]}, {\"$or\": [..]}, {\"$not\": {..}}; several keys in one
object mean \"and\"; a list-valued field matches when any element does. A malformed filter is a
usage error naming the path of what is wrong; nothing is changed.

--dry-run reports what would change; --confirm-count N refuses unless exactly N vectors match,
--max N if more than N match (exit 3, nothing changed). An index file is saved (atomically)
after a change; a durable directory logs it.";

const DELETE_HELP: &str = "\
Examples:
  hnsw-batch delete docs.hnsw --where '{\"lang\": \"xx\"}' --dry-run
  hnsw-batch delete docs.hnsw --where '{\"lang\": \"xx\"}' --confirm-count 42
  hnsw-batch delete db/ --where '{\"year\": {\"$lt\": 1990}}' --max 1000 --json";

const UPDATE_HELP: &str = "\
Examples:
  hnsw-batch update docs.hnsw --where '{\"lang\": \"en\"}' --set '{\"reviewed\": true}'
  hnsw-batch update db/ --where '{\"tag\": {\"$in\": [\"old\"]}}' --set '{\"tag\": null}' --dry-run

--set is a JSON object of metadata values (strings, numbers, booleans, lists of strings); a key
set to null is removed. The patched metadata must stay within the index's limits, for every
matching vector, or nothing changes.";

const MCP_HELP: &str = "\
Serves the index to an MCP client (an agent framework, an IDE) over stdin/stdout: tools
batch_add, batch_search, batch_update, batch_delete, export, import and info, with JSON Schemas
for their arguments. The client starts the server; an entry in its server list:

  {\"mcpServers\": {\"vectors\": {\"command\": \"hnsw-batch\", \"args\": [\"mcp\", \"/data/vectors\"]}}}

Examples:
  hnsw-batch mcp /data/vectors                        # open, or create with the first batch_add
  hnsw-batch mcp /data/vectors --dim 384 --metric cosine
  hnsw-batch mcp db/ --io-root /data/exports --max-batch 1000

Every write is logged and synced before its tool call returns: it survives a crash or restart.
Document text (`content`) is stored in metadata under the reserved key `_content`. See
cli/README.md for the tools' arguments, results, errors and limits.";

const PURGE_HELP: &str = "\
Examples:
  hnsw-batch purge-expired docs.hnsw
  hnsw-batch purge-expired db/ --dry-run --now 1767225600000

Deletes the vectors whose expiry time has passed (they are already hidden from search).";

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
    /// Show an index file's parameters, counts, memory, format version and metadata fields.
    #[command(after_help = format!("{INFO_HELP}\n\n{EXIT_CODES_HELP}"))]
    Info(info::InfoArgs),
    /// Delete the vectors whose metadata matches a filter (with a dry run and safety limits).
    #[command(after_help = format!("{DELETE_HELP}\n\n{FILTER_HELP}\n\n{EXIT_CODES_HELP}"))]
    Delete(bulk::DeleteArgs),
    /// Set or remove metadata keys of the vectors matching a filter.
    #[command(after_help = format!("{UPDATE_HELP}\n\n{FILTER_HELP}\n\n{EXIT_CODES_HELP}"))]
    Update(bulk::UpdateArgs),
    /// Delete the vectors whose expiry time has passed.
    #[command(after_help = format!("{PURGE_HELP}\n\n{EXIT_CODES_HELP}"))]
    PurgeExpired(bulk::PurgeArgs),
    /// Serve a durable index to MCP clients over stdio (batch add, search, update, delete, import, export).
    #[command(after_help = format!("{MCP_HELP}\n\n{EXIT_CODES_HELP}"))]
    Mcp(mcp::McpArgs),
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
        Command::Delete(a) => bulk::run_delete(a),
        Command::Update(a) => bulk::run_update(a),
        Command::PurgeExpired(a) => bulk::run_purge(a),
        Command::Mcp(a) => mcp::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
