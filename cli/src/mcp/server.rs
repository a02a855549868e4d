//! The MCP side: the tool list with its input schemas, and dispatch of tool calls to [`Store`].
//!
//! The tools are listed and dispatched by hand rather than through rmcp's macros, so that
//! arguments that do not fit a tool's schema come back as a typed tool error naming the field
//! (which an agent can correct), not as a protocol error.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::handler::server::tool::{schema_for_input, schema_for_type};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ops::{Store, ToolError, ToolResult, CONTENT_KEY};
use super::types::{BatchAdd, BatchDelete, BatchSearch, BatchUpdate, Export, Import, Info};

/// What the server tells a client about itself when a session starts.
const INSTRUCTIONS: &str = "\
A durable vector index (HNSW) of documents: each has a u64 id, an embedding vector computed by \
the caller (this server does not compute embeddings), optional text content and flat metadata \
for filters. Add with batch_add, query with batch_search (optionally filtered by metadata, e.g. \
{\"lang\": \"en\", \"year\": {\"$gte\": 2000}}), change with batch_update, remove with \
batch_delete (dry_run first, then confirm_count), move data with import/export, and see the \
index's parameters and limits with info. Every write is logged and synced before the tool \
returns: it survives a crash or restart.";

const BATCH_ADD: &str = "\
Add documents: {\"documents\": [{\"id\": 1, \"vector\": [0.1, ...], \"content\": \"text\", \
\"metadata\": {\"lang\": \"en\"}, \"expires_at\": 1767225600000}], \"atomic\": true}. \
atomic=true (default): all or nothing, one bad document rejects the batch (error \
batch_rejected, per-document results) and nothing is written. atomic=false: the valid \
documents are added, each bad one is reported. Results are per document, in input order. \
An id already in the index is an error (use batch_update). The first batch_add of a new index \
sets its dimension. Durable when the call returns.";

const BATCH_SEARCH: &str = "\
Nearest-neighbour search: {\"queries\": [{\"vector\": [...], \"limit\": 10, \"ef\": 64, \
\"filter\": {\"lang\": \"en\"}}], \"max_parallel\": 5}. Returns per query, in input order, the \
hits nearest first: {\"id\", \"distance\", \"content\"?, \"metadata\"?}, or an error for that \
query. Distances are the index metric's: squared L2, 1 - cosine, or 1 - inner product; \
smaller is closer. Expired documents are never returned.";

const BATCH_UPDATE: &str = "\
Update documents selected by \"document_ids\" or by a metadata \"filter\": {\"updates\": \
{\"metadata_updates\": {\"k\": \"v\", \"old\": null}, \"vector\": [...], \"content\": \"...\"}, \
\"max_documents\": 1000, \"dry_run\": false}. metadata_updates sets keys (null removes one) \
and keeps the others. More matches than max_documents refuses the whole call. dry_run reports \
what would change and changes nothing. Per-document results in order.";

const BATCH_DELETE: &str = "\
Delete documents selected by \"document_ids\" or by a metadata \"filter\". Safe pattern: call \
with \"dry_run\": true to see \"matched\", then again with \"confirm_count\" set to it: a \
different count refuses and deletes nothing. More matches than \"max_documents\" (default \
1000) also refuses. Per-document results in order.";

const EXPORT: &str = "\
Write every document (id, vector, metadata with content, expiry) to a file: {\"path\": \
\"out.jsonl\", \"format\": \"jsonl\"}. Formats jsonl, csv, npy, fvecs, bvecs (binary ones \
write the ids to PATH.ids.npy). Paths are relative to the server's I/O root and must stay \
under it; an existing file is replaced only with \"force\": true.";

const IMPORT: &str = "\
Add the records of a file: {\"path\": \"docs.jsonl\", \"format\": \"jsonl\", \"max_errors\": \
10}. JSON Lines rows are {\"id\", \"vector\", \"metadata\"?, \"expires_at\"?}; CSV, npy, fvecs \
and bvecs as in export. Bad rows are skipped and reported up to max_errors (default 0); the \
next one stops the import, keeping the rows added before it. Paths as in export.";

const INFO: &str = "\
The index: directory, document count, dimension, metric, storage, HNSW parameters, memory, \
durable log state, the metadata key content is stored under, and the server's request limits.";

/// The MCP server: tools over a [`Store`].
#[derive(Clone)]
pub struct Server {
    store: Arc<Store>,
    tools: Arc<Vec<Tool>>,
}

fn schema<T: JsonSchema + 'static>() -> Arc<serde_json::Map<String, Value>> {
    schema_for_input::<T>().unwrap_or_else(|_| schema_for_type::<T>())
}

fn tool<T: JsonSchema + 'static>(
    name: &'static str,
    description: &'static str,
    read_only: bool,
    destructive: bool,
) -> Tool {
    let mut hints = ToolAnnotations::new();
    hints.read_only_hint = Some(read_only);
    hints.destructive_hint = Some(destructive);
    hints.open_world_hint = Some(false);
    Tool::new(name, description, schema::<T>()).with_annotations(hints)
}

/// The tools, in the order they are listed.
pub fn tools() -> Vec<Tool> {
    vec![
        tool::<BatchAdd>("batch_add", BATCH_ADD, false, false),
        tool::<BatchSearch>("batch_search", BATCH_SEARCH, true, false),
        tool::<BatchUpdate>("batch_update", BATCH_UPDATE, false, true),
        tool::<BatchDelete>("batch_delete", BATCH_DELETE, false, true),
        tool::<Export>("export", EXPORT, false, true),
        tool::<Import>("import", IMPORT, false, false),
        tool::<Info>("info", INFO, true, false),
    ]
}

impl Server {
    /// A server over `store`.
    pub fn new(store: Store) -> Self {
        Server { store: Arc::new(store), tools: Arc::new(tools()) }
    }
}

/// Reads a tool's arguments; a mismatch names the field (`documents[2].vector[0]: ...`).
fn parse<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let msg = if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) };
        ToolError::new("invalid_arguments", msg)
    })
}

/// Runs tool `name` (blocking: called on a blocking thread).
fn dispatch(store: &Store, name: &str, args: Value) -> ToolResult {
    let max = store.limits().max_request_bytes;
    // Only a large request can be over the limit; measuring costs a serialisation.
    let size = serde_json::to_vec(&args).map_or(0, |v| v.len());
    if size > max {
        return Err(ToolError::limit("request bytes", size, max, "--max-request-mib"));
    }
    match name {
        "batch_add" => store.batch_add(parse(args)?),
        "batch_search" => store.batch_search(parse(args)?),
        "batch_update" => store.batch_update(parse(args)?),
        "batch_delete" => store.batch_delete(parse(args)?),
        "export" => store.export(parse(args)?),
        "import" => store.import(parse(args)?),
        "info" => {
            parse::<Info>(args)?;
            store.info()
        }
        other => Err(ToolError::new("unknown_tool", format!("no tool `{other}`"))),
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("hnsw-batch", env!("CARGO_PKG_VERSION"));
        info.with_instructions(format!(
            "{INSTRUCTIONS} Content is stored in metadata under the reserved key `{CONTENT_KEY}`."
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name: Cow<'static, str> = request.name;
        if !self.tools.iter().any(|t| t.name == name) {
            return Err(ErrorData::invalid_params(format!("unknown tool `{name}`"), None));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || dispatch(&store, &name, args))
            .await
            .unwrap_or_else(|e| Err(ToolError::new("internal_error", format!("the tool call failed: {e}"))));
        let result = match outcome {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => CallToolResult::structured_error(e.to_json()),
        };
        Ok(result.into())
    }
}
