//! `info`: what an index file (or durable index directory) holds.

use std::path::PathBuf;

use std::collections::BTreeMap;

use clap::Args;
use hnsw_batch::Expiry;

use crate::cmd::build::human_bytes;
use crate::error::{CliError, Result};
use crate::store::{self, Handle};

/// Arguments of `info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let durable = args.index.is_dir();
    let snapshot = if durable {
        store::newest_snapshot(&args.index)?.ok_or_else(|| {
            CliError::index(format!(
                "`{}` is a directory but not a durable hnsw-batch index",
                args.index.display()
            ))
        })?
    } else {
        args.index.clone()
    };
    let version = store::format_version(&snapshot)?;
    let loaded = store::load(&args.index)?;
    let index = &loaded.handle;
    let file_bytes = if durable {
        std::fs::read_dir(&args.index)
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(&args.index).map(|m| m.len()).unwrap_or(0)
    };
    let meta = MetaSummary::of(index);
    let c = index.config();
    let node_slots = match index {
        Handle::Plain(i) => Some(i.allocated_nodes()),
        Handle::Durable(_) => None,
    };
    let durable_json = match (index, &loaded.recovery) {
        (Handle::Durable(db), Some(r)) => {
            let s = db.stats();
            serde_json::json!({
                "generation": s.generation,
                "log_bytes": s.log_bytes,
                "snapshot_generation_loaded": r.snapshot_generation,
                "logs_replayed": r.logs_replayed,
                "records_replayed": r.records_replayed,
                "truncated_bytes": r.truncated_bytes,
            })
        }
        _ => serde_json::Value::Null,
    };
    let v = serde_json::json!({
        "path": args.index.display().to_string(),
        "format": if durable { "hnsw-batch durable index" } else { "hnsw-batch snapshot" },
        "format_version": version,
        "file_bytes": file_bytes,
        "vectors": index.len(),
        "allocated_nodes": node_slots,
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
        "hot_memory_bytes": index.hot_memory_bytes(),
        "link_bytes": index.link_bytes(),
        "metadata": {
            "vectors": meta.vectors,
            "fields": meta.fields,
            "indexed_fields": meta.indexed,
            "expiring": meta.expiring,
        },
        "durable": durable_json,
    });
    if args.json {
        println!("{v}");
        return Ok(());
    }
    let current = store::current_version();
    println!("index           {}", args.index.display());
    if durable {
        println!("format          hnsw-batch durable index, snapshot version {version} (this build writes version {current})");
        println!("size on disk    {} ({file_bytes} bytes, all files)", human_bytes(file_bytes as f64));
    } else {
        println!(
            "format          hnsw-batch snapshot, version {version} (this build writes version {current})"
        );
        println!("file size       {} ({file_bytes} bytes)", human_bytes(file_bytes as f64));
    }
    println!("vectors         {}", index.len());
    if let Some(n) = node_slots {
        println!("node slots      {n}");
    }
    println!("dimension       {}", c.dim);
    println!("metric          {}", c.metric.name());
    println!("storage         {}", c.storage.name());
    println!("M / M0          {} / {} ({} bytes per link)", c.m, c.m0, index.link_bytes());
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
    if c.storage == hnsw_batch::Storage::Sq8 {
        println!(
            "hot memory      {} ({} bytes: all but the exact f32 vectors)",
            human_bytes(index.hot_memory_bytes() as f64),
            index.hot_memory_bytes()
        );
    }
    if let (Handle::Durable(db), Some(r)) = (index, &loaded.recovery) {
        let s = db.stats();
        println!("generation      {} (log {} bytes)", s.generation, s.log_bytes);
        println!(
            "recovery        snapshot {} + {} log(s), {} record(s) replayed, {} torn bytes cut",
            r.snapshot_generation, r.logs_replayed, r.records_replayed, r.truncated_bytes
        );
    }
    if meta.vectors == 0 {
        println!("metadata        none");
    } else {
        let fields: Vec<String> = meta.fields.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        println!("metadata        {} vectors; fields: {}", meta.vectors, fields.join(", "));
    }
    if !meta.indexed.is_empty() {
        println!("indexed fields  {}", meta.indexed.join(", "));
    }
    if meta.expiring > 0 {
        println!("expiring        {} vectors", meta.expiring);
    }
    Ok(())
}

/// The metadata of the live vectors of an index, in numbers.
struct MetaSummary {
    /// Vectors with metadata.
    vectors: usize,
    /// Each field, with the number of vectors that have it.
    fields: BTreeMap<String, usize>,
    /// Fields with a field index.
    indexed: Vec<String>,
    /// Vectors with an expiry time.
    expiring: usize,
}

impl MetaSummary {
    fn of(index: &Handle) -> MetaSummary {
        let mut s =
            MetaSummary { vectors: 0, fields: BTreeMap::new(), indexed: index.field_indexes(), expiring: 0 };
        for id in index.ids() {
            if let Some(m) = index.get_metadata(id) {
                s.vectors += usize::from(!m.is_empty());
                for k in m.into_keys() {
                    *s.fields.entry(k).or_default() += 1;
                }
            }
            if let Some(Expiry::At(_)) = index.get_expiry(id) {
                s.expiring += 1;
            }
        }
        s
    }
}
