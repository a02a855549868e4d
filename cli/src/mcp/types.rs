//! The tools' arguments: what each tool accepts, with the JSON Schemas the server advertises.
//!
//! Unknown fields are refused (`deny_unknown_fields`), so a misspelt key (`"embedding"` for
//! `"vector"`) is an error naming it rather than a silently ignored field. Metadata and filters
//! are free-form JSON objects here; their own rules are checked by the index (see `ops`).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Default `limit` of a query.
pub const DEFAULT_LIMIT: usize = 10;
/// Default `max_parallel` of `batch_search`.
pub const DEFAULT_MAX_PARALLEL: usize = 5;
/// Default `max_documents` of `batch_update` and `batch_delete`.
pub const DEFAULT_MAX_DOCUMENTS: usize = 1000;

fn yes() -> bool {
    true
}
fn default_limit() -> usize {
    DEFAULT_LIMIT
}
fn default_max_parallel() -> usize {
    DEFAULT_MAX_PARALLEL
}
fn default_max_documents() -> usize {
    DEFAULT_MAX_DOCUMENTS
}

/// One document to add.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The document's id: an unsigned 64-bit integer, unique in the index.
    pub id: u64,
    /// Its embedding, computed by the caller (the server does not compute embeddings): as many
    /// finite numbers as the index dimension.
    pub vector: Vec<f32>,
    /// Text stored with the document (under the reserved metadata key `_content`) and returned
    /// by `batch_search`.
    #[serde(default)]
    pub content: Option<String>,
    /// Metadata for filters: a flat object of strings, numbers, booleans and lists of strings.
    /// Keys may not start with `$` nor be `_content`; `null` values are left out.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Expiry time in unix milliseconds: from then on the document is left out of every result.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// Arguments of `batch_add`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchAdd {
    /// The documents, in the order their results are reported.
    pub documents: Vec<Document>,
    /// `true` (default): all or nothing, one bad document rejects the batch and nothing is
    /// written. `false`: best effort, every valid document is added and each bad one reported.
    #[serde(default = "yes")]
    pub atomic: bool,
}

/// One query of `batch_search`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The query embedding (same dimension as the index).
    pub vector: Vec<f32>,
    /// How many hits to return, nearest first.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Search beam width (default: the index's ef_search; raised to `limit` when smaller).
    /// Larger is slower and more accurate.
    #[serde(default)]
    pub ef: Option<usize>,
    /// Metadata filter, e.g. `{"lang": "en", "year": {"$gte": 2000}}`; operators `$eq`, `$ne`,
    /// `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$nin`, `$exists`, `$and`, `$or`, `$not`.
    #[serde(default)]
    pub filter: Option<Value>,
}

/// Arguments of `batch_search`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSearch {
    /// The queries, answered in this order.
    pub queries: Vec<Query>,
    /// Queries searched at once (threads), 1 or more; capped by the server.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: usize,
}

/// What `batch_update` changes in each selected document.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    /// Metadata keys to set; a key set to `null` is removed. Other keys are kept.
    #[serde(default)]
    pub metadata_updates: Option<Map<String, Value>>,
    /// A new embedding for every selected document.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// New text content for every selected document.
    #[serde(default)]
    pub content: Option<String>,
}

/// Arguments of `batch_update`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchUpdate {
    /// The documents to update (give this or `filter`).
    #[serde(default)]
    pub document_ids: Option<Vec<u64>>,
    /// Update the documents whose metadata matches this filter (give this or `document_ids`).
    #[serde(default)]
    pub filter: Option<Value>,
    /// The changes.
    pub updates: Updates,
    /// Refuse (changing nothing) if more documents than this would be updated.
    #[serde(default = "default_max_documents")]
    pub max_documents: usize,
    /// Report what would be updated without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

/// Arguments of `batch_delete`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDelete {
    /// The documents to delete (give this or `filter`).
    #[serde(default)]
    pub document_ids: Option<Vec<u64>>,
    /// Delete the documents whose metadata matches this filter (give this or `document_ids`).
    #[serde(default)]
    pub filter: Option<Value>,
    /// Report what would be deleted without deleting anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Refuse (deleting nothing) unless exactly this many documents would be deleted: run a
    /// dry run first and pass its `matched` count.
    #[serde(default)]
    pub confirm_count: Option<usize>,
    /// Refuse (deleting nothing) if more documents than this would be deleted.
    #[serde(default = "default_max_documents")]
    pub max_documents: usize,
}

/// File formats of `export` and `import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON Lines: `{"id": .., "vector": [..], "metadata": {..}, "expires_at": ..}` per line.
    Jsonl,
    /// CSV with a header: `id`, `vector` (numbers joined by `;`) and one column per metadata key.
    Csv,
    /// NumPy `.npy` 2-D array; ids in a separate uint64 `.npy` file.
    Npy,
    /// TEXMEX `.fvecs` (float32); ids in a separate `.npy` file.
    Fvecs,
    /// TEXMEX `.bvecs` (bytes 0..=255); ids in a separate `.npy` file.
    Bvecs,
}

/// Arguments of `export`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The file to write, under one of the server's I/O roots (relative paths are taken from
    /// the first root).
    pub path: String,
    /// Its format (default: from the file extension).
    #[serde(default)]
    pub format: Option<Format>,
    /// `.npy`/`.fvecs`/`.bvecs`: where to write the ids (default `PATH.ids.npy`).
    #[serde(default)]
    pub ids_path: Option<String>,
    /// Replace existing files (by default export refuses to).
    #[serde(default)]
    pub force: bool,
    /// Accepted for symmetry with `import`; an export writes every document.
    #[serde(default)]
    #[allow(dead_code)] // Read only to be accepted.
    pub max_errors: Option<usize>,
}

/// Arguments of `import`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// The file to read, under one of the server's I/O roots (relative paths are taken from the
    /// first root); `.gz` is decompressed.
    pub path: String,
    /// Its format (default: from the file extension).
    #[serde(default)]
    pub format: Option<Format>,
    /// `.npy`/`.fvecs`/`.bvecs`: a 1-D integer `.npy` of the vectors' ids (default: the row
    /// number, from 0).
    #[serde(default)]
    pub ids_path: Option<String>,
    /// Skip and report up to this many bad rows; the import stops at the next one (default 0).
    #[serde(default)]
    pub max_errors: usize,
}

/// Arguments of `info` (none).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Info {}
