//! `mcp`: a Model Context Protocol server over stdio, backed by a durable index directory.
//!
//! - `types`: the tools' arguments and their JSON Schemas;
//! - `ops`: what each tool does to the index (the server's only use of the library's API);
//! - `server`: the MCP handler (tool list, dispatch, typed tool errors).
//!
//! Standard output carries the protocol; nothing else is written to it.

mod ops;
mod server;
mod types;

use std::path::PathBuf;

use clap::Args;
use rmcp::service::ServerInitializeError;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{RoleServer, ServiceExt};

use crate::error::{CliError, Result};
use crate::params::{thread_count, IndexArgs, MetricArg, StorageArg};

/// Arguments of `mcp`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// The durable index directory: opened if it holds an index, created if it is absent or
    /// empty (then at once with --dim, else by the first batch_add or import).
    pub index_dir: PathBuf,
    /// Dimension of a new index (default: that of the first document added).
    #[arg(long, value_name = "N", help_heading = "New index")]
    pub dim: Option<usize>,
    /// Distance of a new index [default: l2].
    #[arg(long, value_enum, help_heading = "New index")]
    pub metric: Option<MetricArg>,
    /// Element type of a new index's vectors [default: f32].
    #[arg(long, value_enum, help_heading = "New index")]
    pub storage: Option<StorageArg>,
    /// Links per node of a new index [default: 16].
    #[arg(long, value_name = "M", help_heading = "New index")]
    pub m: Option<usize>,
    /// Beam width while inserting, for a new index [default: 200].
    #[arg(long, value_name = "EF", help_heading = "New index")]
    pub ef_construction: Option<usize>,
    /// Directory the import and export tools may read and write under (repeatable; relative
    /// tool paths are taken from the first). Default: the working directory.
    #[arg(long = "io-root", value_name = "DIR", help_heading = "Limits")]
    pub io_roots: Vec<PathBuf>,
    /// Most documents in one batch_add, and ids in one batch_update or batch_delete.
    #[arg(long, default_value_t = 10_000, value_name = "N", help_heading = "Limits")]
    pub max_batch: usize,
    /// Most queries in one batch_search.
    #[arg(long, default_value_t = 1_000, value_name = "N", help_heading = "Limits")]
    pub max_queries: usize,
    /// Largest `limit` (hits per query) of batch_search.
    #[arg(long, default_value_t = 1_000, value_name = "K", help_heading = "Limits")]
    pub max_limit: usize,
    /// Most threads one batch_search uses, whatever its max_parallel (0 = every core).
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Limits")]
    pub max_parallel: usize,
    /// Largest tool call, in MiB of JSON arguments. Messages over twice this are dropped by the
    /// transport unanswered.
    #[arg(long, default_value_t = 32, value_name = "MIB", help_heading = "Limits")]
    pub max_request_mib: usize,
}

impl McpArgs {
    /// The parameters of a new index, from the flags and their defaults.
    fn index_args(&self) -> IndexArgs {
        IndexArgs {
            m: self.m.unwrap_or(16),
            ef_construction: self.ef_construction.unwrap_or(200),
            metric: self.metric.unwrap_or(MetricArg::L2),
            storage: self.storage.unwrap_or(StorageArg::Auto),
            rerank: 0,
            seed: 0,
            max_elements: None,
        }
    }

    fn given(&self) -> ops::Given {
        let storage = match self.storage {
            None | Some(StorageArg::Auto) => None,
            Some(s) => Some(s.resolve(false)),
        };
        ops::Given {
            dim: self.dim,
            metric: self.metric.map(Into::into),
            storage,
            m: self.m,
            ef_construction: self.ef_construction,
        }
    }
}

/// Runs `mcp`: serves until the client closes standard input.
pub fn run(args: &McpArgs) -> Result<()> {
    if args.max_batch == 0 || args.max_queries == 0 || args.max_limit == 0 || args.max_request_mib == 0 {
        return Err(CliError::usage(
            "--max-batch, --max-queries, --max-limit and --max-request-mib must be at least 1",
        ));
    }
    let max_request_bytes = args.max_request_mib.saturating_mul(1 << 20);
    let limits = ops::Limits {
        max_batch: args.max_batch,
        max_queries: args.max_queries,
        max_limit: args.max_limit,
        max_parallel: thread_count(args.max_parallel),
        max_request_bytes,
    };
    let roots = if args.io_roots.is_empty() {
        vec![std::env::current_dir()
            .map_err(|e| CliError::usage(format!("cannot read the working directory: {e}")))?]
    } else {
        args.io_roots.clone()
    };
    let store = ops::Store::open(&args.index_dir, &args.given(), args.index_args(), &roots, limits)?;
    let server = server::Server::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::index(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let transport = AsyncRwTransport::<RoleServer, _, _>::new(tokio::io::stdin(), tokio::io::stdout())
            .with_max_line_length(max_request_bytes.saturating_mul(2));
        let running = match server.serve(transport).await {
            Ok(r) => r,
            // The client went away before the session started: nothing to serve.
            Err(ServerInitializeError::ConnectionClosed(_)) => return Ok(()),
            Err(e) => return Err(CliError::index(format!("MCP session failed to start: {e}"))),
        };
        running.waiting().await.map_err(|e| CliError::index(format!("MCP session failed: {e}")))?;
        Ok(())
    })
}
