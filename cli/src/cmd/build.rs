//! `build` and `import`: stream an input file into an index, in chunks, on all cores.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use hnsw_batch::items::Item as IndexItem;
use hnsw_batch::{
    BatchError, BatchFailure, BatchMode, BatchOptions, Expiry, Index, IndexConfig, InvalidReason,
};

use crate::error::{CliError, Result};
use crate::input::{InputArgs, Item, Loc, Row, Source};
use crate::meta::{fold_side_file, sidecar_path};
use crate::params::{pool, thread_count, IndexArgs};
use crate::progress::Progress;
use crate::store::{self, Handle};

/// Arguments of `build` and `import`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["output", "durable"])))]
pub struct BuildArgs {
    /// Input file: .fvecs, .bvecs, .npy, .jsonl or .csv (each optionally .gz).
    pub input: PathBuf,
    /// Write the index as a snapshot file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the index as a durable index directory (write-ahead log + snapshots).
    #[arg(long, value_name = "DIR")]
    pub durable: Option<PathBuf>,
    #[command(flatten)]
    pub index: IndexArgs,
    /// Threads for the batch insert (0 = every core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Rows read and inserted per batch (bounds the memory used for the input).
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub chunk_size: usize,
    /// No progress bar and no summary (warnings and errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,
    /// f32 and f16 storage: find each vector's neighbour candidates on the stored vectors
    /// instead of on temporary 8-bit codes (the default: about a third faster on float
    /// embeddings, same recall, dim + 5 more bytes per vector until the build ends).
    #[arg(long)]
    pub exact_walk: bool,
    /// The default; kept so scripts that pass it still run.
    #[arg(long, hide = true, conflicts_with = "exact_walk")]
    pub coded_walk: bool,
    #[command(flatten)]
    pub input_args: InputArgs,
}

/// What a build read.
pub struct Built {
    /// Rows skipped.
    pub skipped: usize,
    /// Rows read (good and bad).
    pub rows: u64,
    /// Rows inserted with metadata.
    pub with_metadata: usize,
    /// What was wrong with the first [`KEPT_MESSAGES`] rows skipped (also printed as warnings).
    pub skipped_messages: Vec<String>,
}

/// Messages of skipped rows kept in [`Built::skipped_messages`].
pub const KEPT_MESSAGES: usize = 100;

/// Counts bad rows against `--max-errors` and reports each.
struct BadRows<'a> {
    max: usize,
    count: usize,
    path: &'a Path,
    progress: &'a Progress,
    messages: Vec<String>,
}

impl BadRows<'_> {
    fn skip(&mut self, msg: &str) -> Result<()> {
        self.count += 1;
        if self.count > self.max {
            let path = self.path.display();
            return Err(CliError::input(if self.max == 0 {
                format!("`{path}`: {msg}\n(pass --max-errors N to skip and report up to N bad rows)")
            } else {
                format!(
                    "`{path}`: more than {} bad rows (--max-errors {}); the last: {msg}",
                    self.max, self.max
                )
            }));
        }
        self.progress.warn(&format!("skipped {msg}"));
        if self.messages.len() < KEPT_MESSAGES {
            self.messages.push(msg.to_owned());
        }
        Ok(())
    }
}

/// Describes a row the index rejected.
fn failure_message(f: &BatchFailure, locs: &[Loc], storage: hnsw_batch::Storage) -> String {
    let loc = locs.get(f.index).map_or_else(|| format!("row {}", f.index), Loc::to_string);
    match &f.error {
        BatchError::DuplicateId { id, first_index: Some(j), .. } => {
            let first = locs.get(*j).map_or_else(|| format!("row {j}"), Loc::to_string);
            format!("{loc}: duplicate id {id} (first seen at {first})")
        }
        BatchError::InvalidVector { id, reason, .. } => {
            let hint = match reason {
                InvalidReason::Unrepresentable { .. } if storage == hnsw_batch::Storage::U8 => {
                    " (u8 storage holds integers 0..=255 only; use --storage f32)"
                }
                InvalidReason::Unrepresentable { .. } if storage == hnsw_batch::Storage::F16 => {
                    " (f16 storage holds magnitudes up to 65504 only; use --storage f32)"
                }
                _ => "",
            };
            format!("{loc} (id {id}): {reason}{hint}")
        }
        BatchError::DimensionMismatch { id, .. } => format!("{loc} (id {id}): {}", f.error.reason()),
        // The row's location replaces the batch position, which means nothing to the user.
        _ => format!("{loc}: {}", f.error.reason()),
    }
}

/// Streams `src` into `target`, created by `make` from the first good row's dimension: chunks
/// of good rows go to `insert_batch` (best effort, so a bad row costs only itself; on codes
/// with `coded_walk`) on `threads` threads; bad rows are reported and counted against
/// `max_errors`. Each row's metadata goes
/// into the index with its vector (in the same log record for a durable index).
#[allow(clippy::too_many_arguments)]
pub fn ingest(
    src: &mut Source,
    params: &IndexArgs,
    coded_walk: bool,
    threads: usize,
    chunk_size: usize,
    max_errors: usize,
    progress: &Progress,
    target: &mut Option<Handle>,
    make: &dyn Fn(IndexConfig) -> Result<Handle>,
) -> Result<Built> {
    let pool = pool(threads)?;
    let chunk_size = chunk_size.max(1);
    let path = src.path.clone();
    let mut bad = BadRows { max: max_errors, count: 0, path: &path, progress, messages: Vec::new() };
    let mut done = 0u64;
    let mut with_metadata = 0;
    let mut rows: Vec<Row> = Vec::with_capacity(chunk_size.min(1 << 16));
    let mut eof = false;
    while !eof {
        rows.clear();
        while rows.len() < chunk_size {
            match src.next_item() {
                None => {
                    eof = true;
                    break;
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(Item::Good(r))) => rows.push(r),
                Some(Ok(Item::Bad(msg))) => bad.skip(&msg)?,
            }
        }
        if rows.is_empty() {
            continue;
        }
        // Estimated total for the bar: exact for .npy, else extrapolated from bytes read.
        let read = src.rows_read();
        let estimate = match src.total_rows {
            Some(n) => n,
            None if eof => read,
            None => {
                let bytes = src.bytes_read().max(1);
                ((read as f64) * (src.file_len as f64) / (bytes as f64)).round().max(read as f64) as u64
            }
        };
        progress.set_len(estimate);
        if target.is_none() {
            let cfg = params.config(rows[0].vector.len(), src.is_byte_input())?;
            *target = Some(make(cfg)?);
        }
        let Some(index) = target.as_ref() else { unreachable!("created above") };
        let mut locs = Vec::with_capacity(rows.len());
        let mut items: Vec<IndexItem<Vec<f32>>> = Vec::with_capacity(rows.len());
        for r in rows.drain(..) {
            locs.push(r.loc);
            let item = IndexItem::new(r.id, r.vector).expiry(Expiry::from_option(r.expires_at));
            // Rows without metadata cost the index nothing for it.
            items.push(if r.metadata.is_empty() { item } else { item.metadata(r.metadata) });
        }
        let opts = BatchOptions::new()
            .mode(BatchMode::BestEffort)
            .coded_walk(coded_walk)
            .on_progress(progress.batch_callback(done));
        let report = pool.install(|| index.insert_items(&items, &opts))?;
        done += items.len() as u64;
        progress.set_pos(done);
        let storage = index.config().storage;
        let mut failed = vec![false; items.len()];
        for f in &report.failures {
            failed[f.index] = true;
            bad.skip(&failure_message(f, &locs, storage))?;
        }
        with_metadata +=
            items.iter().zip(&failed).filter(|(it, bad)| !**bad && it.metadata.is_some()).count();
    }
    Ok(Built { skipped: bad.count, rows: src.rows_read(), with_metadata, skipped_messages: bad.messages })
}

/// Runs `build` (or `import`).
pub fn run(args: &BuildArgs, verb: &str) -> Result<()> {
    args.index.check()?;
    let start = Instant::now();
    let durable = args.durable.is_some();
    let dest: &Path = match (&args.output, &args.durable) {
        (Some(o), _) => o,
        (None, Some(d)) => d,
        (None, None) => return Err(CliError::usage("give -o FILE or --durable DIR")),
    };
    if !durable && dest.is_dir() {
        return Err(CliError::usage(format!(
            "-o {}: is a directory (use --durable DIR for a durable index)",
            dest.display()
        )));
    }
    if !durable {
        store::check_output(dest)?;
    }
    let mut src = Source::open(&args.input, &args.input_args)?;
    let progress = Progress::new(args.quiet, src.total_rows.unwrap_or(0), "vectors");
    let mut target: Option<Handle> = None;
    // What a durable directory held before: the summary reports what this build added.
    let held_before = std::cell::Cell::new(0usize);
    let make = |cfg: IndexConfig| -> Result<Handle> {
        if durable {
            let db = store::open_durable(dest, cfg)?;
            held_before.set(db.len());
            if !db.is_empty() {
                progress.warn(&format!(
                    "`{}` already holds {} vectors: adding to them",
                    dest.display(),
                    db.len()
                ));
            }
            let handle = Handle::Durable(db);
            // A directory of an older build: its metadata side file goes into the index first.
            fold_side_file(&handle, dest)?;
            Ok(handle)
        } else {
            Ok(Handle::Plain(Index::new(cfg).map_err(|e| CliError::usage(e.to_string()))?))
        }
    };
    let built = ingest(
        &mut src,
        &args.index,
        !args.exact_walk,
        args.threads,
        args.chunk_size,
        args.input_args.max_errors,
        &progress,
        &mut target,
        &make,
    );
    progress.finish();
    let built = match built {
        Ok(b) => b,
        Err(mut e) => {
            if let Some(Handle::Durable(db)) = &target {
                e.msg.push_str(&format!(
                    "\n(the durable index `{}` now holds {} vectors: the valid rows of the batches \
                     inserted before the build stopped, that batch included, stay in it)",
                    dest.display(),
                    db.len()
                ));
            }
            return Err(e);
        }
    };
    let Some(handle) = target else {
        return Err(CliError::input(format!("`{}` holds no vectors", args.input.display())));
    };
    let build_secs = start.elapsed().as_secs_f64();
    let saved = match &handle {
        Handle::Plain(index) => store::save(index, dest),
        Handle::Durable(db) => store::checkpoint(db),
    };
    saved?;
    if !durable {
        // The side file of an index this build replaced (written by an older build) would be
        // folded into the new index at its first use: it belongs to the old one.
        let stale = sidecar_path(dest);
        if stale.is_file() {
            std::fs::remove_file(&stale)
                .map_err(|e| CliError::index(crate::error::io_message("remove stale", &stale, &e)))?;
        }
    }
    if !args.quiet {
        let c = handle.config();
        let (verb, count, total) = if durable {
            let total = handle.len();
            ("added", total.saturating_sub(held_before.get()), format!("; index now holds {total}"))
        } else {
            (verb, handle.len(), String::new())
        };
        println!(
            "{verb} {count} vectors (dim {}, {}, {} storage, M {}, ef_construction {}) from `{}` in {:.2} s \
             ({:.0} vectors/s, {} threads){total}",
            c.dim,
            c.metric.name(),
            c.storage.name(),
            c.m,
            c.ef_construction,
            args.input.display(),
            build_secs,
            (built.rows as usize - built.skipped) as f64 / build_secs.max(1e-9),
            thread_count(args.threads),
        );
        if built.skipped > 0 {
            println!(
                "skipped {} of {} rows (--max-errors {})",
                built.skipped, built.rows, args.input_args.max_errors
            );
        }
        if durable {
            println!("wrote durable index `{}` (checkpointed)", dest.display());
        } else {
            let size = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
            println!("wrote `{}` ({})", dest.display(), human_bytes(size as f64));
        }
        if built.with_metadata > 0 {
            println!("{} of them with metadata (stored in the index)", built.with_metadata);
        }
    }
    Ok(())
}

/// `1.5 MiB` style sizes.
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
