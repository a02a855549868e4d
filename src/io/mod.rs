//! Reading and writing vector files.
//!
//! | format | read | write |
//! |---|---|---|
//! | `.fvecs` / `.bvecs` (TEXMEX) | [`read_fvecs`], [`read_bvecs`], [`VecsReader`] | [`write_fvecs`], [`write_bvecs`] |
//! | `.ivecs` (ground truth) | [`read_ivecs`], [`IvecsReader`] | [`write_ivecs`] |
//! | `.npy` (2-D vectors, 1-D ids) | [`read_npy`], [`NpyReader`], [`read_npy_ids`] | [`write_npy`], [`write_npy_ids`] |
//! | CSV | [`CsvReader`] | [`write_csv`] |
//! | JSON Lines (feature `formats`) | `JsonlReader` | `write_jsonl` |
//!
//! [`read_vectors`] picks `.fvecs`, `.bvecs` or `.npy` by extension.
//!
//! Every reader checks what it reads: no input makes it panic, and every length
//! field is checked against the file size (or, for streams, against
//! [`MAX_DIM`] and the data actually present) before memory is allocated for it.
//! Failures are [`FormatError`]s. The text readers ([`CsvReader`], `JsonlReader`)
//! yield one `Result<Record, RowError>` per row so bad rows can be skipped;
//! [`collect_with_max_errors`] gathers them with an error budget.
//!
//! Writers validate their input (consistent dimension, finite values) and print
//! numbers so that export → import round-trips exactly.
//!
//! # Example
//!
//! ```
//! use hnsw_batch::io::{read_fvecs, write_fvecs, ElementKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("hnsw_batch_io_doc_{}.fvecs", std::process::id()));
//! let rows = vec![vec![1.0f32, 2.0, 3.0], vec![0.5, -0.25, 8.0]];
//! assert_eq!(write_fvecs(&path, &rows)?, 2);
//!
//! let set = read_fvecs(&path)?;
//! assert_eq!((set.len(), set.dim()), (2, 3));
//! assert_eq!(set.element(), ElementKind::F32);
//! assert_eq!(set.row(1), &[0.5, -0.25, 8.0]);
//! std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

use std::path::Path;

mod csv;
mod csv_write;
mod error;
#[cfg(feature = "formats")]
mod jsonl;
mod npy;
mod npy_header;
mod record;
mod set;
mod util;
mod vecs;

pub use csv::{CsvOptions, CsvReader, VectorColumns};
pub use csv_write::{write_csv, write_csv_to};
pub use error::{FormatError, Result, RowError};
#[cfg(feature = "formats")]
#[cfg_attr(docsrs, doc(cfg(feature = "formats")))]
pub use jsonl::{write_jsonl, write_jsonl_to, JsonlOptions, JsonlReader};
pub use npy::{
    read_npy, read_npy_from, read_npy_ids, read_npy_ids_from, write_npy, write_npy_ids, write_npy_ids_to,
    write_npy_to, NpyDtype, NpyReader,
};
pub use record::{collect_with_max_errors, Record};
pub use set::{ElementKind, VecSet};
pub use vecs::{
    read_bvecs, read_fvecs, read_ivecs, read_ivecs_from, read_vecs_from, write_bvecs, write_bvecs_to,
    write_fvecs, write_fvecs_to, write_ivecs, write_ivecs_to, IvecsReader, VecsReader,
};

/// Largest vector dimension accepted by the readers and writers (2^20).
pub const MAX_DIM: usize = 1 << 20;

/// Reads `.fvecs`, `.bvecs` or `.npy` vectors, choosing the format by the file
/// extension (case-insensitive).
//
// Here rather than in `vecs` because it dispatches over formats: the format modules then
// depend only on the shared helpers (`util`, `set`, `error`), never on one another.
pub fn read_vectors(path: impl AsRef<Path>) -> Result<VecSet> {
    let path = path.as_ref();
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("fvecs") => read_fvecs(path),
        Some("bvecs") => read_bvecs(path),
        Some("npy") => read_npy(path),
        _ => Err(FormatError::UnknownFormat { path: path.to_path_buf() }),
    }
}
