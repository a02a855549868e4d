//! `delete`, `update` and `purge-expired`: change many vectors at once by a metadata filter or
//! by expiry, with a dry run and safety limits, on an index file or a durable directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use hnsw_batch::items::MetaPatch;
use hnsw_batch::metadata::from_json;
use hnsw_batch::{BatchReport, DeleteOptions, ManualClock};
use serde_json::Value;

use crate::cmd::search::parse_filter;
use crate::error::{CliError, Result};
use crate::store::{self, Handle};

/// The safety options shared by the three commands.
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Report what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse (changing nothing) unless exactly N vectors match.
    #[arg(long, value_name = "N")]
    pub confirm_count: Option<usize>,
    /// Refuse (changing nothing) if more than N vectors match.
    #[arg(long = "max", value_name = "N")]
    pub max_affected: Option<usize>,
    /// Durable directory: log and apply at most N vectors per batch (one append and one sync
    /// each, so a crash keeps the batches done before it); 0 means all in one batch.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub batch_size: usize,
    /// Print one JSON object (the counts matched, changed and not found, dry run, and the ids
    /// changed, or that would be) instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

impl GuardArgs {
    fn options(&self) -> DeleteOptions {
        DeleteOptions {
            dry_run: self.dry_run,
            confirm_count: self.confirm_count,
            max_affected: self.max_affected,
            batch_size: self.batch_size,
        }
    }
}

/// Arguments of `delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Delete the vectors whose metadata matches this filter (the JSON query shape of
    /// `search --filter`).
    #[arg(long = "where", value_name = "JSON")]
    pub filter: String,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// Arguments of `update`.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Update the vectors whose metadata matches this filter.
    #[arg(long = "where", value_name = "JSON")]
    pub filter: String,
    /// The metadata keys to set, as a JSON object: '{"reviewed": true, "year": 2001}'; a key set
    /// to null is removed.
    #[arg(long, value_name = "JSON")]
    pub set: String,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// Arguments of `purge-expired`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Purge as of this time, in unix milliseconds (default: now, by the system clock).
    #[arg(long, value_name = "MS")]
    pub now: Option<u64>,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// Parses `--set`: a JSON object of metadata values; `null` removes the key.
pub fn parse_set(text: &str) -> Result<MetaPatch> {
    let bad = |msg: String| CliError::usage(format!("--set: {msg}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(bad("expected a JSON object of keys to set, e.g. '{\"reviewed\": true}'".into()));
    };
    if map.is_empty() {
        return Err(bad("needs at least one key".into()));
    }
    let remove: Vec<String> = map.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect();
    let set = from_json(&Value::Object(map)).map_err(|e| bad(e.to_string()))?;
    Ok(MetaPatch { set, remove })
}

/// Prints what a command did (its report, the library's shape for every bulk operation), and
/// saves a changed index file.
fn finish(index: &Handle, path: &Path, guard: &GuardArgs, r: &BatchReport, verb: (&str, &str)) -> Result<()> {
    let changed = r.ids.len();
    if changed > 0 && !r.dry_run {
        index.save_changes(path)?;
    }
    if guard.json {
        let mut v = serde_json::Map::new();
        v.insert("matched".into(), r.total.into());
        v.insert(verb.1.into(), changed.into());
        v.insert("not_found".into(), r.not_found.into());
        v.insert("dry_run".into(), r.dry_run.into());
        v.insert("ids".into(), r.ids.clone().into());
        println!("{}", Value::Object(v));
    } else if r.dry_run {
        println!("would {} {changed} vectors (dry run: nothing was changed)", verb.0);
    } else {
        println!("{} {changed} vectors", verb.1);
    }
    Ok(())
}

/// Runs `delete`.
pub fn run_delete(args: &DeleteArgs) -> Result<()> {
    let filter = parse_filter("--where", &args.filter)?;
    let index = store::load(&args.index)?.handle;
    let r = index.delete_where(&filter, &args.guard.options())?;
    finish(&index, &args.index, &args.guard, &r, ("delete", "deleted"))
}

/// Runs `update`.
pub fn run_update(args: &UpdateArgs) -> Result<()> {
    let filter = parse_filter("--where", &args.filter)?;
    let patch = parse_set(&args.set)?;
    let index = store::load(&args.index)?.handle;
    let r = index.update_where(&filter, &patch, &args.guard.options())?;
    finish(&index, &args.index, &args.guard, &r, ("update", "updated"))
}

/// Runs `purge-expired`.
pub fn run_purge(args: &PurgeArgs) -> Result<()> {
    let index = store::load(&args.index)?.handle;
    if let Some(ms) = args.now {
        index.set_clock(Arc::new(ManualClock::new(ms)));
    }
    let r = index.purge_expired(&args.guard.options())?;
    finish(&index, &args.index, &args.guard, &r, ("purge", "purged"))
}
