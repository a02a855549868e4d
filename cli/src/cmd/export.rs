//! `export`: index contents to JSON Lines, CSV, `.npy`, `.fvecs` or `.bvecs`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use hnsw_batch::io::{
    write_bvecs_to, write_csv_to, write_fvecs_to, write_jsonl_to, write_npy_ids, write_npy_to, ElementKind,
    FormatError, Record, VecSet,
};
use hnsw_batch::Storage;

use crate::error::{io_message, CliError, Result};
use crate::input::{detect_format, FieldArgs, InputFormat};
use crate::store::{self, Handle};

/// Records per write call: bounds the extra memory of text exports.
const CHUNK: usize = 10_000;

/// Arguments of `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The index file (or durable index directory).
    pub index: PathBuf,
    /// Output file.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output format (default: from the extension of -o).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<InputFormat>,
    /// .npy/.fvecs/.bvecs: where to write the ids, as a 1-D uint64 .npy
    /// (default: OUTPUT.ids.npy, e.g. out.fvecs.ids.npy).
    #[arg(long, value_name = "FILE.npy")]
    pub ids: Option<PathBuf>,
    /// Replace OUTPUT and the ids file if they exist (by default export refuses).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub fields: FieldArgs,
}

/// The default ids file beside a binary export: `x.npy` → `x.npy.ids.npy`. The whole name is
/// kept so that exports of one index to `x.npy` and `x.fvecs` get an ids file each.
pub fn default_ids_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|s| s.to_os_string()).unwrap_or_default();
    name.push(".ids.npy");
    out.with_file_name(name)
}

/// Refuses to replace an existing file without `--force`: an export is cheap to redo, the file
/// it would replace may not be.
fn check_new(path: &Path, force: bool) -> Result<()> {
    if !force && path.exists() {
        return Err(CliError::index(format!("`{}` exists; pass --force to replace it", path.display())));
    }
    Ok(())
}

fn write_err(path: &Path, e: FormatError) -> CliError {
    match e {
        FormatError::Io { source, .. } => CliError::index(io_message("write", path, &source)),
        other => CliError::index(format!("cannot write `{}`: {other}", path.display())),
    }
}

/// Every vector of `index`, ids ascending.
fn sorted_ids(index: &Handle) -> Vec<u64> {
    let mut ids = index.ids();
    ids.sort_unstable();
    ids
}

/// Checks an export's destination before any work: the format (`explicit`, else from the
/// extension of `path`), the ids file of a binary format (`ids`, else [`default_ids_path`]), and
/// that no existing file is replaced without `force`. Returns the format and the ids file.
pub fn plan(
    path: &Path,
    explicit: Option<InputFormat>,
    ids: Option<&Path>,
    force: bool,
) -> Result<(InputFormat, Option<PathBuf>)> {
    let (format, gz) = detect_format(path, explicit)?;
    if gz {
        return Err(CliError::usage("export does not compress: drop the .gz from -o"));
    }
    if ids.is_some() && format.has_ids() {
        return Err(CliError::usage(format!(
            "--ids applies to .npy/.fvecs/.bvecs exports; {} rows carry their ids",
            format.ext()
        )));
    }
    let ids_path = match format {
        InputFormat::Npy | InputFormat::Fvecs | InputFormat::Bvecs => {
            Some(ids.map(Path::to_path_buf).unwrap_or_else(|| default_ids_path(path)))
        }
        InputFormat::Jsonl | InputFormat::Csv => None,
    };
    if ids_path.as_deref() == Some(path) {
        return Err(CliError::usage("--ids names the output file itself"));
    }
    // Both checks before any work, so a refusal leaves every file as it was.
    check_new(path, force)?;
    if let Some(p) = &ids_path {
        check_new(p, force)?;
    }
    Ok((format, ids_path))
}

/// Writes every vector of `index` with its metadata to `path` in `format` (ids ascending), and
/// for a binary format the ids to `ids_path`; returns how many were written. Prints nothing.
pub fn write(
    index: &Handle,
    path: &Path,
    format: InputFormat,
    ids_path: Option<&Path>,
    fields: &FieldArgs,
) -> Result<usize> {
    let ids = sorted_ids(index);
    let n = match format {
        InputFormat::Jsonl | InputFormat::Csv => {
            let file = File::create(path).map_err(|e| CliError::index(io_message("create", path, &e)))?;
            let mut w = BufWriter::new(file);
            let records = |chunk: &[u64]| -> Vec<Record> {
                chunk
                    .iter()
                    .filter_map(|&id| {
                        let vector = index.get(id)?;
                        Some(Record {
                            id,
                            vector,
                            metadata: index.get_metadata(id).unwrap_or_default(),
                            expires_at: index.get_expiry(id).and_then(|e| e.at()),
                        })
                    })
                    .collect()
            };
            let mut n = 0;
            if format == InputFormat::Jsonl {
                let opts = fields.jsonl(false);
                for chunk in ids.chunks(CHUNK) {
                    n += write_jsonl_to(&mut w, &records(chunk), &opts).map_err(|e| write_err(path, e))?;
                }
            } else {
                let mut opts = fields.csv(false);
                opts.expected_dim = Some(index.dim());
                if opts.metadata_columns.is_none() {
                    // The same columns in every chunk: every metadata key of the index.
                    let keys: std::collections::BTreeSet<String> = ids
                        .iter()
                        .filter_map(|&id| index.get_metadata(id))
                        .flat_map(|m| m.into_keys())
                        .collect();
                    opts.metadata_columns = Some(keys.into_iter().collect());
                }
                // With the columns listed, the expiry column is written whenever it is named: name
                // it only if some vector expires, so an index without expiry exports as before.
                // (A metadata key of that name is refused by the writer, as it would read back as
                // the expiry.)
                let clash = opts.metadata_columns.iter().flatten().any(|c| *c == fields.expires_field);
                if !clash && !ids.iter().any(|&id| index.get_expiry(id).is_some_and(|e| e.at().is_some())) {
                    opts.expires_column = None;
                }
                let mut header = Vec::new();
                write_csv_to(&mut header, &[], &opts).map_err(|e| write_err(path, e))?;
                w.write_all(&header).map_err(|e| CliError::index(io_message("write", path, &e)))?;
                for chunk in ids.chunks(CHUNK) {
                    let mut buf = Vec::new();
                    n += write_csv_to(&mut buf, &records(chunk), &opts).map_err(|e| write_err(path, e))?;
                    let body = buf.get(header.len()..).unwrap_or_default();
                    w.write_all(body).map_err(|e| CliError::index(io_message("write", path, &e)))?;
                }
            }
            let file = w.into_inner().map_err(|e| CliError::index(io_message("write", path, e.error())))?;
            file.sync_all().map_err(|e| CliError::index(io_message("sync", path, &e)))?;
            n
        }
        InputFormat::Npy | InputFormat::Fvecs | InputFormat::Bvecs => {
            let element = match (format, index.config().storage) {
                (InputFormat::Bvecs, _) | (InputFormat::Npy, Storage::U8) => ElementKind::U8,
                _ => ElementKind::F32,
            };
            let mut data = Vec::with_capacity(ids.len() * index.dim());
            for &id in &ids {
                data.extend_from_slice(&index.get(id).unwrap_or_else(|| vec![0.0; index.dim()]));
            }
            let set = VecSet::new(index.dim(), data, element).map_err(|e| write_err(path, e))?;
            let file = File::create(path).map_err(|e| CliError::index(io_message("create", path, &e)))?;
            let mut w = BufWriter::new(file);
            match format {
                InputFormat::Npy => write_npy_to(&mut w, &set).map_err(|e| write_err(path, e))?,
                InputFormat::Fvecs => {
                    write_fvecs_to(&mut w, set.iter()).map_err(|e| write_err(path, e))?;
                }
                _ => {
                    write_bvecs_to(&mut w, set.iter()).map_err(|e| write_err(path, e))?;
                }
            }
            w.flush().map_err(|e| CliError::index(io_message("write", path, &e)))?;
            let default_ids;
            let ids_path = match ids_path {
                Some(p) => p,
                None => {
                    default_ids = default_ids_path(path);
                    &default_ids
                }
            };
            write_npy_ids(ids_path, &ids).map_err(|e| write_err(ids_path, e))?;
            ids.len()
        }
    };
    Ok(n)
}

/// Runs `export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let path = &args.output;
    let (format, ids_path) = plan(path, args.format, args.ids.as_deref(), args.force)?;
    let index = store::load(&args.index)?.handle;
    let n = write(&index, path, format, ids_path.as_deref(), &args.fields)?;
    if let Some(p) = &ids_path {
        eprintln!("wrote ids to `{}`", p.display());
    }
    eprintln!("exported {n} vectors (dim {}) to `{}`", index.dim(), path.display());
    Ok(())
}
