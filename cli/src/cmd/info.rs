//! `info`: what an index file holds.

use std::path::PathBuf;

use clap::Args;

use crate::cmd::build::human_bytes;
use crate::error::Result;
use crate::meta::{read_sidecar, sidecar_path};
use crate::store;

/// Arguments of `info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// The index file.
    pub index: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let version = store::format_version(&args.index)?;
    let index = store::load(&args.index)?;
    let file_bytes = std::fs::metadata(&args.index).map(|m| m.len()).unwrap_or(0);
    let meta = read_sidecar(&args.index)?;
    let c = index.config();
    let side = sidecar_path(&args.index);
    let v = serde_json::json!({
        "path": args.index.display().to_string(),
        "format": "hnsw-batch snapshot",
        "format_version": version,
        "file_bytes": file_bytes,
        "vectors": index.len(),
        "allocated_nodes": index.allocated_nodes(),
        "dim": c.dim,
        "metric": c.metric.name(),
        "storage": c.storage.name(),
        "m": c.m,
        "m0": c.m0,
        "ef_construction": c.ef_construction,
        "ef_search": c.ef_search,
        "seed": c.seed,
        "max_elements": c.max_elements,
        "memory_bytes": index.memory_bytes(),
        "metadata_entries": meta.len(),
        "metadata_file": if meta.is_empty() { serde_json::Value::Null } else { side.display().to_string().into() },
    });
    if args.json {
        println!("{v}");
        return Ok(());
    }
    println!("index           {}", args.index.display());
    println!(
        "format          hnsw-batch snapshot, version {version} (this build writes version {})",
        store::current_version()
    );
    println!("file size       {} ({file_bytes} bytes)", human_bytes(file_bytes as f64));
    println!("vectors         {}", index.len());
    println!("node slots      {}", index.allocated_nodes());
    println!("dimension       {}", c.dim);
    println!("metric          {}", c.metric.name());
    println!("storage         {}", c.storage.name());
    println!("M / M0          {} / {}", c.m, c.m0);
    println!("ef_construction {}", c.ef_construction);
    println!("ef_search       {} (default)", c.ef_search);
    println!("seed            {}", c.seed);
    match c.max_elements {
        Some(n) => println!("max_elements    {n}"),
        None => println!("max_elements    none"),
    }
    println!(
        "memory          {} ({} bytes, in memory once loaded)",
        human_bytes(index.memory_bytes() as f64),
        index.memory_bytes()
    );
    if meta.is_empty() {
        println!("metadata        none");
    } else {
        println!("metadata        {} entries in `{}`", meta.len(), side.display());
    }
    Ok(())
}
