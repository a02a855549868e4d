//! What the MCP tools do to the durable index.
//!
//! This is the one module of the server that uses the library's API (the import and export
//! tools go through the CLI's own `build::ingest` and `export::write`, as the commands do), so
//! a rename in the library touches this file and no other of the server.
//!
//! Every operation returns a JSON value for the tool's structured result, or a [`ToolError`]
//! (a typed tool error: `{"error": {"code", "message"}, ...}`); nothing here panics or prints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hnsw_batch::items::{Item, MetaPatch};
use hnsw_batch::metadata::{to_json, MetaLimits, MetaValue, Metadata};
use hnsw_batch::persist::{DurableIndex, PersistError};
use hnsw_batch::{
    BatchError, BatchMode, BatchOptions, BatchReport, DeleteError, DeleteOptions, Expiry, Filter,
    IndexConfig, IndexError, InvalidReason, Metric, Storage, MAX_EF,
};
use rayon::prelude::*;
use serde_json::{json, Map, Number, Value};

use super::types::{BatchAdd, BatchDelete, BatchSearch, BatchUpdate, Export, Format, Import, Query};
use crate::cmd::{build, export};
use crate::error::{CliError, Kind};
use crate::input::{FieldArgs, InputFormat, Source};
use crate::params::{self, IndexArgs};
use crate::progress::Progress;
use crate::store::{self, Handle};

/// The metadata key a document's `content` is stored under. Documents may not set it through
/// `metadata`; `batch_search` returns it as `content`, never inside `metadata`.
pub const CONTENT_KEY: &str = "_content";

/// Request limits of the server (documented in `cli/README.md`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Documents in one `batch_add`, ids in one `batch_update` / `batch_delete`.
    pub max_batch: usize,
    /// Queries in one `batch_search`.
    pub max_queries: usize,
    /// Largest `limit` of a query.
    pub max_limit: usize,
    /// Threads one `batch_search` may use (its `max_parallel` is capped to this).
    pub max_parallel: usize,
    /// Bytes of one tool call's arguments (as JSON).
    pub max_request_bytes: usize,
}

/// A typed tool error: a stable `code`, a message, and details.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    /// Machine-readable kind (`invalid_arguments`, `limit_exceeded`, `batch_rejected`, …).
    pub code: &'static str,
    /// What went wrong, for a person or an agent.
    pub message: String,
    /// More fields of the error result (`failures`, `matched`, …).
    pub details: Map<String, Value>,
}

impl ToolError {
    /// An error without details.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ToolError { code, message: message.into(), details: Map::new() }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    /// The structured error result: `{"error": {"code", "message"}, ...details}`.
    pub fn to_json(&self) -> Value {
        let mut out = self.details.clone();
        out.insert("error".into(), json!({"code": self.code, "message": self.message}));
        Value::Object(out)
    }

    /// A request over one of the server's limits.
    pub fn limit(what: &str, got: usize, max: usize, flag: &str) -> Self {
        ToolError::new(
            "limit_exceeded",
            format!("{what}: {got} is over the server's limit of {max} ({flag})"),
        )
        .with("limit", json!(what))
        .with("max", json!(max))
        .with("got", json!(got))
    }
}

/// Result of a tool.
pub type ToolResult = Result<Value, ToolError>;

/// A per-item error: `{"code", "message"}`.
fn item_error(code: &str, message: impl std::fmt::Display) -> Value {
    json!({"code": code, "message": message.to_string()})
}

fn batch_error_code(e: &BatchError) -> &'static str {
    match e {
        BatchError::DimensionMismatch { .. } => "dimension_mismatch",
        BatchError::InvalidVector { reason: InvalidReason::Metadata(_), .. } => "invalid_metadata",
        BatchError::InvalidVector { .. } => "invalid_vector",
        BatchError::DuplicateId { .. } => "duplicate_id",
        BatchError::CapacityExceeded { .. } => "capacity_exceeded",
        BatchError::Cancelled { .. } => "cancelled",
        _ => "rejected",
    }
}

fn index_error_code(e: &IndexError) -> &'static str {
    match e {
        IndexError::DimensionMismatch { .. } => "dimension_mismatch",
        IndexError::NonFiniteValue { .. }
        | IndexError::ZeroVector
        | IndexError::UnrepresentableValue { .. } => "invalid_vector",
        IndexError::DuplicateId { .. } => "duplicate_id",
        IndexError::NotFound { .. } => "not_found",
        IndexError::CapacityExceeded { .. } => "capacity_exceeded",
        IndexError::InvalidMetadata(_) => "invalid_metadata",
        IndexError::InvalidFilter(_) => "invalid_filter",
        IndexError::Refused(_) => "refused",
        IndexError::InvalidParameter { .. } => "invalid_arguments",
        _ => "index_error",
    }
}

fn index_error(e: IndexError) -> ToolError {
    match e {
        IndexError::Refused(d) => refused(&d),
        e => ToolError::new(index_error_code(&e), e.to_string()),
    }
}

/// A write refused by a guard (`confirm_count`, `max_documents`): nothing was changed.
fn refused(e: &DeleteError) -> ToolError {
    let err = ToolError::new("refused", format!("{e}; nothing was changed"));
    match *e {
        DeleteError::CountMismatch { expected, found } => {
            err.with("matched", json!(found)).with("confirm_count", json!(expected))
        }
        DeleteError::TooMany { limit, found } => {
            err.with("matched", json!(found)).with("max_documents", json!(limit))
        }
        _ => err,
    }
}

/// The tool result of an update or delete by filter, from the library's report: `matched`, the
/// count changed under `verb.0` (0 in a dry run, which changes nothing), and a status per id
/// changed (`verb.0`) or, in a dry run, that would be (`verb.1`).
fn filter_result(r: &BatchReport, changed: usize, verb: (&str, &str)) -> Value {
    let status = if r.dry_run { verb.1 } else { verb.0 };
    let results: Vec<Value> = r.ids.iter().map(|id| json!({"id": id, "status": status})).collect();
    let mut out = Map::new();
    out.insert("dry_run".into(), r.dry_run.into());
    out.insert("matched".into(), r.total.into());
    out.insert(verb.0.into(), if r.dry_run { 0 } else { changed }.into());
    out.insert("results".into(), results.into());
    Value::Object(out)
}

fn persist_error(e: PersistError) -> ToolError {
    match e {
        PersistError::Index(e) => index_error(e),
        PersistError::Batch(e) => ToolError::new(batch_error_code(&e), e.to_string()),
        other => ToolError::new("storage_error", other.to_string()),
    }
}

fn cli_error(e: CliError) -> ToolError {
    let code = match e.kind {
        Kind::Usage => "invalid_arguments",
        Kind::Input => "invalid_input",
        Kind::Index => "storage_error",
    };
    ToolError::new(code, e.msg)
}

/// A float as JSON in its shortest form that reads back as the same `f32` (`0.1`, not
/// `0.10000000149011612`).
fn f32_json(x: f32) -> Value {
    format!("{x}").parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
}

/// The creation flags the server was started with, where given.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--dim`.
    pub dim: Option<usize>,
    /// `--metric`.
    pub metric: Option<Metric>,
    /// `--storage`, unless `auto`.
    pub storage: Option<Storage>,
    /// `--m`.
    pub m: Option<usize>,
    /// `--ef-construction`.
    pub ef_construction: Option<usize>,
}

impl Given {
    /// Checks the given flags against an existing index's parameters.
    fn check(&self, have: &IndexConfig, dir: &Path) -> Result<(), CliError> {
        let mut wrong = Vec::new();
        if let Some(d) = self.dim.filter(|&d| d != have.dim) {
            wrong.push(format!("--dim {d} (it has {})", have.dim));
        }
        if let Some(m) = self.metric.filter(|&m| m != have.metric) {
            wrong.push(format!("--metric {} (it has {})", m.name(), have.metric.name()));
        }
        if let Some(s) = self.storage.filter(|&s| s != have.storage) {
            wrong.push(format!("--storage {} (it has {})", s.name(), have.storage.name()));
        }
        if let Some(m) = self.m.filter(|&m| m != have.m) {
            wrong.push(format!("--m {m} (it has {})", have.m));
        }
        if let Some(e) = self.ef_construction.filter(|&e| e != have.ef_construction) {
            wrong.push(format!("--ef-construction {e} (it has {})", have.ef_construction));
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(CliError::usage(format!(
            "`{}` holds an index created with other parameters: {}; drop these flags (they apply to a new index only)",
            dir.display(),
            wrong.join(", ")
        )))
    }
}

/// The durable index behind the server, created on first use when its directory is empty.
pub struct Store {
    dir: PathBuf,
    /// Parameters of a new index (the dimension comes from `--dim` or the first document).
    create: IndexArgs,
    /// Canonical directories `import` and `export` may use; the first resolves relative paths.
    io_roots: Vec<PathBuf>,
    limits: Limits,
    state: RwLock<Option<Handle>>,
}

/// Whether `dir` holds nothing but what an interrupted creation may leave (its lock file).
fn is_empty_dir(dir: &Path) -> Result<bool, CliError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::index(crate::error::io_message("list", dir, &e)))?;
    for e in entries {
        let e = e.map_err(|e| CliError::index(crate::error::io_message("list", dir, &e)))?;
        if e.file_name() != "LOCK" {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Store {
    /// Opens the index in `dir`, or prepares to create it there: at once when `given.dim` is
    /// set, else with the first `batch_add` or `import`. A directory that holds other files
    /// but no index is refused.
    pub fn open(
        dir: &Path,
        given: &Given,
        create: IndexArgs,
        io_roots: &[PathBuf],
        limits: Limits,
    ) -> Result<Store, CliError> {
        if dir.is_file() {
            return Err(CliError::usage(format!("`{}` is a file; give a directory", dir.display())));
        }
        let mut roots = Vec::new();
        for r in io_roots {
            let c = r
                .canonicalize()
                .map_err(|e| CliError::usage(crate::error::io_message("use --io-root", r, &e)))?;
            if !c.is_dir() {
                return Err(CliError::usage(format!("--io-root `{}` is not a directory", r.display())));
            }
            roots.push(c);
        }
        let state = if dir.is_dir() && store::newest_snapshot(dir)?.is_some() {
            let loaded = store::load(dir)?;
            given.check(loaded.handle.config(), dir)?;
            Some(loaded.handle)
        } else {
            if dir.is_dir() && !is_empty_dir(dir)? {
                return Err(CliError::usage(format!(
                    "`{}` holds files but no hnsw-batch index; give an empty or new directory",
                    dir.display()
                )));
            }
            create.check()?;
            match given.dim {
                Some(d) => Some(Handle::Durable(store::open_durable(dir, create.config(d, false)?)?)),
                None => None,
            }
        };
        Ok(Store { dir: dir.to_path_buf(), create, io_roots: roots, limits, state: RwLock::new(state) })
    }

    /// The server's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Handle>> {
        // A panic cannot leave the state half-changed (it is replaced whole), so a poisoned
        // lock is as good as any.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Handle>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets an index this call created and nothing was written to: closes it and removes its
    /// files (only those of its own naming), so the next call can create it with another
    /// dimension.
    fn forget_created(&self, state: &mut Option<Handle>) {
        *state = None;
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let ours = name == "LOCK"
                    || name.ends_with(".tmp")
                    || (name.starts_with("snapshot-") && name.ends_with(".hnsw"))
                    || (name.starts_with("wal-") && name.ends_with(".log"));
                if ours {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    // ----- batch_add ---------------------------------------------------------------------------

    /// `batch_add`.
    pub fn batch_add(&self, req: BatchAdd) -> ToolResult {
        let n = req.documents.len();
        if n > self.limits.max_batch {
            return Err(ToolError::limit("documents", n, self.limits.max_batch, "--max-batch"));
        }
        if n == 0 {
            return Ok(json!({"total": 0, "inserted": 0, "failed": 0, "atomic": req.atomic, "results": []}));
        }
        {
            let state = self.read();
            if let Some(h) = state.as_ref() {
                return add_to(db(h)?, req);
            }
        }
        let mut state = self.write();
        if let Some(h) = state.as_ref() {
            return add_to(db(h)?, req);
        }
        let dim = req.documents[0].vector.len();
        let config = self.create.config(dim, false).map_err(|e| {
            ToolError::new(
                "invalid_arguments",
                format!(
                    "cannot create the index from the first document (id {}): {}",
                    req.documents[0].id, e.msg
                ),
            )
        })?;
        let created = store::open_durable(&self.dir, config).map_err(cli_error)?;
        let fresh = log_position(&created);
        *state = Some(Handle::Durable(created));
        let result = match state.as_ref() {
            Some(h) => add_to(db(h)?, req),
            None => Err(ToolError::new("internal_error", "index missing after creation")),
        };
        if unwritten(state.as_ref(), fresh) {
            self.forget_created(&mut state);
        }
        result
    }

    // ----- batch_search ------------------------------------------------------------------------

    /// `batch_search`.
    pub fn batch_search(&self, req: BatchSearch) -> ToolResult {
        let l = &self.limits;
        if req.queries.len() > l.max_queries {
            return Err(ToolError::limit("queries", req.queries.len(), l.max_queries, "--max-queries"));
        }
        if req.max_parallel == 0 {
            return Err(ToolError::new("invalid_arguments", "max_parallel: must be at least 1"));
        }
        for (i, q) in req.queries.iter().enumerate() {
            if q.limit == 0 {
                return Err(ToolError::new(
                    "invalid_arguments",
                    format!("queries[{i}].limit: must be at least 1"),
                ));
            }
            if q.limit > l.max_limit {
                return Err(ToolError::limit(
                    &format!("queries[{i}].limit"),
                    q.limit,
                    l.max_limit,
                    "--max-limit",
                ));
            }
            if let Some(ef) = q.ef.filter(|&ef| ef > MAX_EF) {
                return Err(ToolError::limit(&format!("queries[{i}].ef"), ef, MAX_EF, "the index's MAX_EF"));
            }
        }
        let state = self.read();
        let index = match state.as_ref() {
            Some(h) => Some(db(h)?),
            None => None,
        };
        let threads = req.max_parallel.min(l.max_parallel).min(req.queries.len()).max(1);
        let one = |(i, q): (usize, &Query)| search_one(index, i, q);
        let results: Vec<Value> = if threads == 1 {
            req.queries.iter().enumerate().map(one).collect()
        } else {
            let pool = params::pool(threads).map_err(cli_error)?;
            pool.install(|| req.queries.par_iter().enumerate().map(one).collect())
        };
        Ok(json!({"results": results}))
    }

    // ----- batch_update ------------------------------------------------------------------------

    /// `batch_update`.
    pub fn batch_update(&self, req: BatchUpdate) -> ToolResult {
        let target = Target::from_request(req.document_ids, req.filter.as_ref(), self.limits.max_batch)?;
        let u = req.updates;
        if u.metadata_updates.is_none() && u.vector.is_none() && u.content.is_none() {
            return Err(ToolError::new(
                "invalid_arguments",
                "updates: give metadata_updates, vector or content (nothing to change)",
            ));
        }
        let state = self.read();
        let Some(h) = state.as_ref() else {
            return Ok(empty_report("updated", req.dry_run, &target));
        };
        let db = db(h)?;
        let patch = make_patch(u.metadata_updates, u.content, &db.meta_limits())?;
        if let Some(v) = &u.vector {
            check_vector(v, db.dim())
                .map_err(|e| ToolError::new("invalid_vector", format!("updates.vector: {e}")))?;
        }
        let guard = DeleteOptions {
            dry_run: req.dry_run,
            confirm_count: None,
            max_affected: Some(req.max_documents),
            ..DeleteOptions::default()
        };
        match (target, u.vector) {
            (Target::Filter(f), None) => {
                let patch = patch.unwrap_or_default();
                let r = db.update_where(&f, &patch, &guard).map_err(persist_error)?;
                Ok(filter_result(&r, r.updated, ("updated", "would_update")))
            }
            (Target::Ids(ids), None) => update_metadata_by_ids(db, &ids, &patch.unwrap_or_default(), &guard),
            (target, Some(vector)) => update_vectors(db, target, &vector, patch.as_ref(), &guard),
        }
    }

    // ----- batch_delete ------------------------------------------------------------------------

    /// `batch_delete`.
    pub fn batch_delete(&self, req: BatchDelete) -> ToolResult {
        let target = Target::from_request(req.document_ids, req.filter.as_ref(), self.limits.max_batch)?;
        let opts = DeleteOptions {
            dry_run: req.dry_run,
            confirm_count: req.confirm_count,
            max_affected: Some(req.max_documents),
            ..DeleteOptions::default()
        };
        let state = self.read();
        let Some(h) = state.as_ref() else {
            check_guards(0, &opts)?;
            return Ok(empty_report("deleted", req.dry_run, &target));
        };
        let db = db(h)?;
        match target {
            Target::Filter(f) => {
                let r = db.delete_where(&f, &opts).map_err(persist_error)?;
                Ok(filter_result(&r, r.deleted, ("deleted", "would_delete")))
            }
            Target::Ids(ids) => {
                let sel = Selection::of(db, &ids);
                check_guards(sel.present.len(), &opts)?;
                let deleted = if opts.dry_run || sel.present.is_empty() {
                    0
                } else {
                    db.delete_batch(&sel.present, &BatchOptions::new()).map_err(persist_error)?.deleted
                };
                let done = if opts.dry_run { "would_delete" } else { "deleted" };
                let results = sel.results(&ids, |_| Ok(()), done);
                Ok(
                    json!({"dry_run": opts.dry_run, "matched": sel.present.len(), "deleted": deleted, "results": results}),
                )
            }
        }
    }

    // ----- export / import ---------------------------------------------------------------------

    /// Resolves a path of `export` or `import`: relative to the first I/O root, and refused
    /// unless it lies under one of the roots (symbolic links followed) and outside the index
    /// directory.
    fn resolve(&self, raw: &str, what: &str) -> Result<PathBuf, ToolError> {
        let bad = |msg: String| ToolError::new("path_not_allowed", format!("{what} `{raw}`: {msg}"));
        let Some(root) = self.io_roots.first() else {
            return Err(bad("import and export are disabled (the server has no --io-root)".into()));
        };
        let p = Path::new(raw);
        let abs = if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(bad("not a file path".into()));
        };
        let parent = parent.canonicalize().map_err(|e| {
            ToolError::new("invalid_input", crate::error::io_message("find the directory of", &abs, &e))
        })?;
        let joined = parent.join(name);
        // An existing name may be a link out of the roots: judge where it leads.
        let real = joined.canonicalize().unwrap_or_else(|_| joined.clone());
        if !self.io_roots.iter().any(|r| real.starts_with(r)) {
            let roots: Vec<String> = self.io_roots.iter().map(|r| r.display().to_string()).collect();
            return Err(bad(format!("outside the server's I/O roots ({})", roots.join(", "))));
        }
        if let Ok(dir) = self.dir.canonicalize() {
            if real.starts_with(&dir) {
                return Err(bad("inside the index directory".into()));
            }
        }
        Ok(real)
    }

    /// `export`.
    pub fn export(&self, req: Export) -> ToolResult {
        let path = self.resolve(&req.path, "path")?;
        let ids = req.ids_path.as_deref().map(|p| self.resolve(p, "ids_path")).transpose()?;
        let format = req.format.map(input_format);
        if !req.force {
            let is_binary =
                matches!(format, Some(InputFormat::Npy | InputFormat::Fvecs | InputFormat::Bvecs))
                    || (format.is_none()
                        && ["npy", "fvecs", "bvecs"]
                            .iter()
                            .any(|e| path.extension().is_some_and(|x| x.eq_ignore_ascii_case(e))));
            let ids_file = ids.clone().or_else(|| is_binary.then(|| export::default_ids_path(&path)));
            for p in std::iter::once(&path).chain(ids_file.as_ref()) {
                if p.exists() {
                    return Err(ToolError::new(
                        "file_exists",
                        format!("`{}` exists; pass \"force\": true to replace it", p.display()),
                    ));
                }
            }
        }
        let (format, ids_path) = export::plan(&path, format, ids.as_deref(), req.force).map_err(cli_error)?;
        let state = self.read();
        let Some(h) = state.as_ref() else {
            return Err(ToolError::new("no_index", "the index does not exist yet: add documents first"));
        };
        let n =
            export::write(h, &path, format, ids_path.as_deref(), &FieldArgs::default()).map_err(cli_error)?;
        Ok(json!({
            "exported": n,
            "path": path.display().to_string(),
            "format": format.ext(),
            "ids_path": ids_path.map(|p| p.display().to_string()),
        }))
    }

    /// `import`.
    pub fn import(&self, req: Import) -> ToolResult {
        let path = self.resolve(&req.path, "path")?;
        let ids = req.ids_path.as_deref().map(|p| self.resolve(p, "ids_path")).transpose()?;
        let mut src = Source::open_with(
            &path,
            req.format.map(input_format),
            ids.as_deref(),
            false,
            &FieldArgs::default(),
        )
        .map_err(cli_error)?;
        let mut state = self.write();
        let before = state.as_ref().map_or(0, |h| h.len());
        // Where the log of an index this import creates starts.
        let fresh = std::cell::Cell::new(None);
        let make = |cfg: IndexConfig| {
            let created = store::open_durable(&self.dir, cfg)?;
            fresh.set(Some(log_position(&created)));
            Ok(Handle::Durable(created))
        };
        let progress = Progress::new(true, 0, "vectors");
        let built = build::ingest(
            &mut src,
            &self.create,
            false,
            0,
            50_000,
            req.max_errors,
            &progress,
            &mut state,
            &make,
        );
        let after = state.as_ref().map_or(0, |h| h.len());
        if fresh.get().is_some_and(|f| unwritten(state.as_ref(), f)) {
            self.forget_created(&mut state);
        } else if let Some(Handle::Durable(d)) = state.as_ref() {
            // A fresh snapshot, so that the next start does not replay the whole import.
            let _ = d.checkpoint();
        }
        let added = after.saturating_sub(before);
        match built {
            Ok(b) => Ok(json!({
                "imported": added,
                "rows": b.rows,
                "skipped": b.skipped,
                "skipped_rows": b.skipped_messages,
                "count": after,
            })),
            Err(e) => Err(cli_error(e)
                .with("imported", json!(added))
                .with("count", json!(after))
                .with("note", json!("rows of the chunks read before the error stay in the index"))),
        }
    }

    // ----- info --------------------------------------------------------------------------------

    /// `info`.
    pub fn info(&self) -> ToolResult {
        let l = self.limits;
        let limits = json!({
            "max_batch": l.max_batch,
            "max_queries": l.max_queries,
            "max_limit": l.max_limit,
            "max_parallel": l.max_parallel,
            "max_request_bytes": l.max_request_bytes,
        });
        let roots: Vec<String> = self.io_roots.iter().map(|r| r.display().to_string()).collect();
        let state = self.read();
        let Some(h) = state.as_ref() else {
            return Ok(json!({
                "dir": self.dir.display().to_string(),
                "initialized": false,
                "count": 0,
                "note": "the index is created by the first batch_add or import (its dimension from the first vector)",
                "content_key": CONTENT_KEY,
                "io_roots": roots,
                "limits": limits,
            }));
        };
        let db = db(h)?;
        let c = db.config();
        let stats = db.stats();
        Ok(json!({
            "dir": self.dir.display().to_string(),
            "initialized": true,
            "count": db.len(),
            "dim": c.dim,
            "metric": c.metric.name(),
            "storage": c.storage.name(),
            "m": c.m,
            "ef_construction": c.ef_construction,
            "ef_search": c.ef_search,
            "memory_bytes": db.memory_bytes(),
            "field_indexes": db.field_indexes(),
            "durable": {"generation": stats.generation, "log_bytes": stats.log_bytes, "poisoned": stats.poisoned},
            "content_key": CONTENT_KEY,
            "io_roots": roots,
            "limits": limits,
        }))
    }
}

/// Where a durable index's log stands: its generation and length.
fn log_position(d: &DurableIndex) -> (u64, u64) {
    let s = d.stats();
    (s.generation, s.log_bytes)
}

/// Whether nothing was logged to the index of `state` since its log stood at `fresh`.
fn unwritten(state: Option<&Handle>, fresh: (u64, u64)) -> bool {
    matches!(state, Some(Handle::Durable(d)) if log_position(d) == fresh)
}

/// The durable index of the state (the server never holds a plain one).
fn db(h: &Handle) -> Result<&DurableIndex, ToolError> {
    match h {
        Handle::Durable(d) => Ok(d),
        Handle::Plain(_) => Err(ToolError::new("internal_error", "the server holds a non-durable index")),
    }
}

fn input_format(f: Format) -> InputFormat {
    match f {
        Format::Jsonl => InputFormat::Jsonl,
        Format::Csv => InputFormat::Csv,
        Format::Npy => InputFormat::Npy,
        Format::Fvecs => InputFormat::Fvecs,
        Format::Bvecs => InputFormat::Bvecs,
    }
}

/// Checks a vector's length and values; the index checks the rest (zero norm, storage range).
fn check_vector(v: &[f32], dim: usize) -> Result<(), String> {
    if v.len() != dim {
        return Err(format!("has {} components, the index dimension is {dim}", v.len()));
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(format!("component {i} is {} (not finite)", v[i])),
        None => Ok(()),
    }
}

/// A document's metadata with its content under [`CONTENT_KEY`]; `None` when it has neither.
fn document_metadata(
    meta: Option<Map<String, Value>>,
    content: Option<String>,
    limits: &MetaLimits,
) -> Result<Option<Metadata>, Value> {
    if meta.is_none() && content.is_none() {
        return Ok(None);
    }
    let mut m = match meta {
        Some(obj) => {
            if obj.contains_key(CONTENT_KEY) {
                return Err(item_error(
                    "invalid_metadata",
                    format!("metadata key `{CONTENT_KEY}` is reserved for the document's content"),
                ));
            }
            limits.from_json(&Value::Object(obj)).map_err(|e| item_error("invalid_metadata", e))?
        }
        None => Metadata::new(),
    };
    if let Some(c) = content {
        m.insert(CONTENT_KEY.to_owned(), MetaValue::Str(c));
        limits.check(&m).map_err(|e| item_error("invalid_metadata", format!("with its content: {e}")))?;
    }
    Ok(Some(m))
}

/// Adds documents to `db` (see `batch_add` in `cli/README.md`).
fn add_to(db: &DurableIndex, req: BatchAdd) -> ToolResult {
    let limits = db.meta_limits();
    let dim = db.dim();
    let n = req.documents.len();
    let mut ids = Vec::with_capacity(n);
    let mut errors: Vec<Option<Value>> = vec![None; n];
    let mut items: Vec<Item<Vec<f32>>> = Vec::with_capacity(n);
    // Position in the request of each element of `items`.
    let mut positions = Vec::with_capacity(n);
    let mut first_seen: HashMap<u64, usize> = HashMap::with_capacity(n);
    for (i, d) in req.documents.into_iter().enumerate() {
        ids.push(d.id);
        let dup = match first_seen.get(&d.id) {
            Some(&j) => {
                Some(item_error("duplicate_id", format!("id {} is also document {j} of this batch", d.id)))
            }
            None => {
                first_seen.insert(d.id, i);
                db.contains(d.id)
                    .then(|| item_error("duplicate_id", format!("id {} is already in the index", d.id)))
            }
        };
        let checked = match check_vector(&d.vector, dim) {
            Err(msg) if d.vector.len() != dim => {
                Err(item_error("dimension_mismatch", format!("vector {msg}")))
            }
            Err(msg) => Err(item_error("invalid_vector", format!("vector {msg}"))),
            Ok(()) => dup.map_or(Ok(()), Err),
        };
        let meta = checked.and_then(|()| document_metadata(d.metadata, d.content, &limits));
        match meta {
            Err(e) => errors[i] = Some(e),
            Ok(meta) => {
                let item = Item::new(d.id, d.vector).expiry(Expiry::from_option(d.expires_at));
                items.push(match meta {
                    Some(m) => item.metadata(m),
                    None => item,
                });
                positions.push(i);
            }
        }
    }
    let mode = if req.atomic { BatchMode::AllOrNothing } else { BatchMode::BestEffort };
    let any_bad = errors.iter().any(Option::is_some);
    if req.atomic && any_bad {
        return Err(rejected(&ids, &errors));
    }
    if !items.is_empty() {
        match db.insert_items(&items, &BatchOptions::new().mode(mode)) {
            Ok(report) => {
                for f in &report.failures {
                    if let Some(&i) = positions.get(f.index) {
                        errors[i] = Some(item_error(batch_error_code(&f.error), f.error.reason()));
                    }
                }
            }
            Err(PersistError::Batch(e)) if req.atomic && e.index().is_some() => {
                if let Some(&i) = e.index().and_then(|k| positions.get(k)) {
                    errors[i] = Some(item_error(batch_error_code(&e), e.reason()));
                }
                return Err(rejected(&ids, &errors));
            }
            Err(e) => return Err(persist_error(e).with("written", json!(0))),
        }
    }
    let failed = errors.iter().filter(|e| e.is_some()).count();
    let results: Vec<Value> = ids
        .iter()
        .zip(&errors)
        .enumerate()
        .map(|(i, (id, e))| match e {
            None => json!({"index": i, "id": id, "status": "inserted"}),
            Some(e) => json!({"index": i, "id": id, "status": "failed", "error": e}),
        })
        .collect();
    Ok(
        json!({"total": n, "inserted": n - failed, "failed": failed, "atomic": req.atomic, "results": results}),
    )
}

/// The error of an atomic batch with bad documents: every document's result, nothing written.
fn rejected(ids: &[u64], errors: &[Option<Value>]) -> ToolError {
    let bad = errors.iter().filter(|e| e.is_some()).count();
    let results: Vec<Value> = ids
        .iter()
        .zip(errors)
        .enumerate()
        .map(|(i, (id, e))| match e {
            None => json!({"index": i, "id": id, "status": "not_written"}),
            Some(e) => json!({"index": i, "id": id, "status": "failed", "error": e}),
        })
        .collect();
    ToolError::new(
        "batch_rejected",
        format!(
            "{bad} of {} documents are invalid; the batch is atomic, so nothing was written (pass \"atomic\": false to add the valid ones)",
            ids.len()
        ),
    )
    .with("written", json!(0))
    .with("results", Value::Array(results))
}

/// One query's result: `{"index", "hits"}` or `{"index", "error"}`.
fn search_one(index: Option<&DurableIndex>, i: usize, q: &Query) -> Value {
    let filter = match q.filter.as_ref().map(Filter::from_json).transpose() {
        Ok(f) => f,
        Err(e) => return json!({"index": i, "error": item_error("invalid_filter", e)}),
    };
    let Some(db) = index else { return json!({"index": i, "hits": []}) };
    let ef = q.ef.unwrap_or(db.config().ef_search).max(q.limit);
    let found = match &filter {
        Some(f) => db.search_where(&q.vector, q.limit, ef, f),
        None => db.search(&q.vector, q.limit, ef),
    };
    match found {
        Ok(hits) => {
            let hits: Vec<Value> = hits
                .iter()
                .map(|h| {
                    let mut hit = Map::new();
                    hit.insert("id".into(), json!(h.id));
                    hit.insert("distance".into(), f32_json(h.distance));
                    if let Some(mut meta) = db.get_metadata(h.id) {
                        if let Some(MetaValue::Str(c)) = meta.remove(CONTENT_KEY) {
                            hit.insert("content".into(), Value::String(c));
                        }
                        if !meta.is_empty() {
                            hit.insert("metadata".into(), to_json(&meta));
                        }
                    }
                    Value::Object(hit)
                })
                .collect();
            json!({"index": i, "hits": hits})
        }
        Err(e) => json!({"index": i, "error": item_error(index_error_code(&e), e)}),
    }
}

/// The documents a `batch_update` or `batch_delete` applies to.
enum Target {
    Ids(Vec<u64>),
    Filter(Filter),
}

impl Target {
    fn from_request(
        ids: Option<Vec<u64>>,
        filter: Option<&Value>,
        max_batch: usize,
    ) -> Result<Target, ToolError> {
        match (ids, filter) {
            (Some(_), Some(_)) => {
                Err(ToolError::new("invalid_arguments", "give document_ids or filter, not both"))
            }
            (None, None) => Err(ToolError::new("invalid_arguments", "give document_ids or filter")),
            (Some(ids), None) if ids.len() > max_batch => {
                Err(ToolError::limit("document_ids", ids.len(), max_batch, "--max-batch"))
            }
            (Some(ids), None) => Ok(Target::Ids(ids)),
            (None, Some(f)) => Filter::from_json(f).map(Target::Filter).map_err(|e| {
                ToolError::new("invalid_filter", format!("filter: {e}")).with("path", json!(e.path))
            }),
        }
    }
}

/// The result of an update or delete before the index exists: nothing matches.
fn empty_report(verb: &str, dry_run: bool, target: &Target) -> Value {
    let results: Vec<Value> = match target {
        Target::Ids(ids) => ids.iter().map(|id| json!({"id": id, "status": "not_found"})).collect(),
        Target::Filter(_) => Vec::new(),
    };
    let mut out = json!({"dry_run": dry_run, "matched": 0, "results": results});
    out[verb] = json!(0);
    out
}

/// The guards of [`DeleteOptions`] for `found` documents, as the library applies them to a
/// filter.
fn check_guards(found: usize, opts: &DeleteOptions) -> Result<(), ToolError> {
    if let Some(expected) = opts.confirm_count.filter(|&c| c != found) {
        return Err(refused(&DeleteError::CountMismatch { expected, found }));
    }
    if let Some(limit) = opts.max_affected.filter(|&l| found > l) {
        return Err(refused(&DeleteError::TooMany { limit, found }));
    }
    Ok(())
}

/// Ids of a request sorted out: the present ones (each once, in request order), and for each
/// position whether it repeats an earlier one.
struct Selection {
    present: Vec<u64>,
    repeat_of: Vec<Option<usize>>,
    missing: Vec<bool>,
}

impl Selection {
    fn of(db: &DurableIndex, ids: &[u64]) -> Selection {
        let mut first: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
        let mut present = Vec::new();
        let mut repeat_of = Vec::with_capacity(ids.len());
        let mut missing = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            match first.get(&id) {
                Some(&j) => {
                    repeat_of.push(Some(j));
                    missing.push(false);
                }
                None => {
                    first.insert(id, i);
                    repeat_of.push(None);
                    let here = db.contains(id);
                    missing.push(!here);
                    if here {
                        present.push(id);
                    }
                }
            }
        }
        Selection { present, repeat_of, missing }
    }

    /// Per-id results in request order: `not_found`, `duplicate`, or what `outcome` says of a
    /// present id (`Ok`: `done`; `Err`: `failed` with the error).
    fn results(&self, ids: &[u64], outcome: impl Fn(u64) -> Result<(), Value>, done: &str) -> Vec<Value> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| {
                if let Some(j) = self.repeat_of[i] {
                    json!({"id": id, "status": "duplicate", "error": item_error("duplicate_id", format!("id {id} is also item {j} of document_ids"))})
                } else if self.missing[i] {
                    json!({"id": id, "status": "not_found"})
                } else {
                    match outcome(id) {
                        Ok(()) => json!({"id": id, "status": done}),
                        Err(e) => json!({"id": id, "status": "failed", "error": e}),
                    }
                }
            })
            .collect()
    }
}

/// The metadata patch of `metadata_updates` (a `null` value removes the key) and `content`.
fn make_patch(
    updates: Option<Map<String, Value>>,
    content: Option<String>,
    limits: &MetaLimits,
) -> Result<Option<MetaPatch>, ToolError> {
    if updates.is_none() && content.is_none() {
        return Ok(None);
    }
    let mut patch = MetaPatch::new();
    if let Some(obj) = updates {
        if obj.contains_key(CONTENT_KEY) {
            return Err(ToolError::new(
                "invalid_metadata",
                format!("metadata_updates: key `{CONTENT_KEY}` is reserved; use updates.content"),
            ));
        }
        patch.remove = obj.iter().filter(|(_, v)| v.is_null()).map(|(k, _)| k.clone()).collect();
        patch.set = limits
            .from_json(&Value::Object(obj))
            .map_err(|e| ToolError::new("invalid_metadata", format!("metadata_updates: {e}")))?;
    }
    if let Some(c) = content {
        patch.set.insert(CONTENT_KEY.to_owned(), MetaValue::Str(c));
    }
    Ok(Some(patch))
}

/// The patched metadata of `id`, checked against the limits.
fn patched(db: &DurableIndex, id: u64, patch: &MetaPatch) -> Result<Metadata, Value> {
    let mut meta =
        db.get_metadata(id).ok_or_else(|| item_error("not_found", format!("id {id} not found")))?;
    patch.apply(&mut meta);
    db.meta_limits().check(&meta).map_err(|e| item_error("invalid_metadata", e))?;
    Ok(meta)
}

fn update_metadata_by_ids(
    db: &DurableIndex,
    ids: &[u64],
    patch: &MetaPatch,
    guard: &DeleteOptions,
) -> ToolResult {
    let sel = Selection::of(db, ids);
    check_guards(sel.present.len(), guard)?;
    // Each present id's patched metadata is checked first: a dry run reports the refusals too.
    let bad: HashMap<u64, Value> =
        sel.present.iter().filter_map(|&id| patched(db, id, patch).err().map(|e| (id, e))).collect();
    let todo: Vec<(u64, MetaPatch)> =
        sel.present.iter().filter(|id| !bad.contains_key(id)).map(|&id| (id, patch.clone())).collect();
    let mut failed_now: HashMap<u64, Value> = HashMap::new();
    let mut updated = 0;
    if !guard.dry_run && !todo.is_empty() {
        let r = db.set_metadata_batch(&todo).map_err(persist_error)?;
        for f in &r.failures {
            if let Some((id, _)) = todo.get(f.index) {
                failed_now.insert(*id, item_error(batch_error_code(&f.error), f.error.reason()));
            }
        }
        updated = r.updated;
    }
    let done = if guard.dry_run { "would_update" } else { "updated" };
    let results = sel.results(
        ids,
        |id| match bad.get(&id).or_else(|| failed_now.get(&id)) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        },
        done,
    );
    Ok(
        json!({"dry_run": guard.dry_run, "matched": sel.present.len(), "updated": updated, "results": results}),
    )
}

/// New vectors (and optionally a metadata patch) for the target documents, one logged write
/// each. The vector is the same for all: if the index refuses it for the first document,
/// nothing is changed and the call fails.
fn update_vectors(
    db: &DurableIndex,
    target: Target,
    vector: &[f32],
    patch: Option<&MetaPatch>,
    guard: &DeleteOptions,
) -> ToolResult {
    let (ids, sel) = match target {
        Target::Ids(ids) => {
            let sel = Selection::of(db, &ids);
            (ids, Some(sel))
        }
        Target::Filter(f) => (db.ids_where(&f).map_err(index_error)?, None),
    };
    let present: &[u64] = sel.as_ref().map_or(&ids, |s| &s.present);
    check_guards(present.len(), guard)?;
    let mut outcome: HashMap<u64, Value> = HashMap::new();
    let mut updated = 0;
    for &id in present {
        let meta = match patch.map(|p| patched(db, id, p)).transpose() {
            Ok(m) => m,
            Err(e) => {
                outcome.insert(id, e);
                continue;
            }
        };
        if guard.dry_run {
            continue;
        }
        let r = match meta {
            Some(m) => db.update_with(id, vector, Some(m)),
            None => db.update(id, vector),
        };
        match r {
            Ok(()) => updated += 1,
            Err(PersistError::Index(
                e @ (IndexError::ZeroVector
                | IndexError::UnrepresentableValue { .. }
                | IndexError::NonFiniteValue { .. }),
            )) if updated == 0 => {
                return Err(ToolError::new(
                    "invalid_vector",
                    format!("updates.vector: {e}; nothing was changed"),
                ));
            }
            Err(e) => {
                let e = persist_error(e);
                outcome.insert(id, item_error(e.code, e.message));
            }
        }
    }
    let done = if guard.dry_run { "would_update" } else { "updated" };
    let result_of = |id: u64| outcome.get(&id).map_or(Ok(()), |e| Err(e.clone()));
    let results = match &sel {
        Some(sel) => sel.results(&ids, result_of, done),
        None => ids
            .iter()
            .map(|&id| match result_of(id) {
                Ok(()) => json!({"id": id, "status": done}),
                Err(e) => json!({"id": id, "status": "failed", "error": e}),
            })
            .collect(),
    };
    Ok(json!({"dry_run": guard.dry_run, "matched": present.len(), "updated": updated, "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_in_their_shortest_f32_form() {
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(0.0024999997).as_f64().map(|x| x as f32), Some(0.0024999997));
        assert_eq!(f32_json(f32::MAX).as_f64().map(|x| x as f32), Some(f32::MAX));
        assert_eq!(f32_json(1e-40).as_f64().map(|x| x as f32), Some(1e-40));
    }
}
