//! NumPy `.npy` files: 2-D vector arrays and 1-D id arrays.
//!
//! Supported: format versions 1.0, 2.0 and 3.0; C (row-major) order only.
//! Vector arrays have shape `(rows, dim)` and dtype `<f4`, `<f8` (converted to
//! `f32`; values outside the `f32` range become [`FormatError::NonFinite`]) or
//! `|u1`. Id arrays have shape `(n,)` and dtype `<u8` (little-endian `uint64`)
//! or `<i8` (`int64`, which must be non-negative).
//!
//! When reading a file, the size announced by the header must match the file
//! size exactly; it is checked before any data is allocated.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::error::{FormatError, Result};
use super::npy_header::{read_header, write_header, RawHeader};
use super::set::{ElementKind, VecSet};
use super::util::{self, to_u8, write_err};
use super::MAX_DIM;

const VECTOR_DTYPES: (&[NpyDtype], &str) = (&[NpyDtype::F32, NpyDtype::F64, NpyDtype::U8], "<f4, <f8, |u1");
const ID_DTYPES: (&[NpyDtype], &str) = (&[NpyDtype::U64, NpyDtype::I64], "<u8, <i8");
/// Capacity reserved up front when the total size cannot be checked against a file.
const STREAM_RESERVE: u64 = 1 << 16;

/// The element type of an npy array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NpyDtype {
    /// `<f4`: little-endian `f32`.
    F32,
    /// `<f8`: little-endian `f64`.
    F64,
    /// `|u1`: bytes.
    U8,
    /// `<u8`: little-endian `u64`.
    U64,
    /// `<i8`: little-endian `i64`.
    I64,
}

impl NpyDtype {
    fn parse(descr: &str) -> Option<Self> {
        Some(match descr {
            "<f4" => NpyDtype::F32,
            "<f8" => NpyDtype::F64,
            "|u1" | "<u1" | ">u1" | "=u1" | "u1" => NpyDtype::U8,
            "<u8" => NpyDtype::U64,
            "<i8" => NpyDtype::I64,
            _ => return None,
        })
    }

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::U8 => 1,
            NpyDtype::F32 => 4,
            NpyDtype::F64 | NpyDtype::U64 | NpyDtype::I64 => 8,
        }
    }

    /// The numpy `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
            NpyDtype::U8 => "|u1",
            NpyDtype::U64 => "<u8",
            NpyDtype::I64 => "<i8",
        }
    }
}

/// Checks the announced data size against the file (exact match required).
fn check_size(h: &RawHeader, row_bytes: u64, rows: u64, file_len: u64) -> Result<()> {
    let available = file_len.saturating_sub(h.data_offset);
    match rows.checked_mul(row_bytes) {
        Some(needed) if needed == available => Ok(()),
        Some(needed) if needed < available => {
            Err(FormatError::TrailingData { offset: h.data_offset + needed, len: available - needed })
        }
        _ => {
            // row_bytes >= 1: the header's validation rejects empty rows.
            let whole = available / row_bytes.max(1);
            Err(FormatError::Truncated {
                record: whole,
                offset: h.data_offset + whole * row_bytes,
                needed: row_bytes,
                available: available % row_bytes.max(1),
            })
        }
    }
}

fn dtype_of(h: &RawHeader, (allowed, names): (&[NpyDtype], &'static str)) -> Result<NpyDtype> {
    match NpyDtype::parse(&h.descr) {
        Some(d) if allowed.contains(&d) => Ok(d),
        _ => Err(FormatError::UnsupportedDtype { descr: h.descr.clone(), supported: names }),
    }
}

/// Streaming reader of a 2-D npy vector array, yielding one `Vec<f32>` per row.
///
/// After an I/O error or a truncation the iterator ends; a
/// [`FormatError::NonFinite`] concerns only its own row.
#[derive(Debug)]
pub struct NpyReader<R> {
    inner: R,
    dtype: NpyDtype,
    rows: u64,
    dim: usize,
    row: u64,
    offset: u64,
    path: Option<PathBuf>,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> NpyReader<R> {
    /// Parses the header from `reader`; rows are then read on demand.
    ///
    /// The row count cannot be checked against a stream's length: a truncated
    /// stream shows up as [`FormatError::Truncated`] when the missing row is read.
    pub fn new(mut reader: R) -> Result<Self> {
        let h = read_header(&mut reader, None)?;
        Self::from_header(reader, &h)
    }

    fn from_header(inner: R, h: &RawHeader) -> Result<Self> {
        let dtype = dtype_of(h, VECTOR_DTYPES)?;
        let (rows, dim) = match h.shape[..] {
            [rows, dim] => (rows, dim),
            _ => return Err(FormatError::UnsupportedShape { shape: h.shape.clone(), expected_ndim: 2 }),
        };
        if h.fortran_order {
            return Err(FormatError::FortranOrder);
        }
        let dim = match usize::try_from(dim) {
            Ok(d) if (1..=MAX_DIM).contains(&d) => d,
            _ => return Err(FormatError::bad_dim(0, dim)),
        };
        Ok(NpyReader {
            inner,
            dtype,
            rows,
            dim,
            row: 0,
            offset: h.data_offset,
            path: None,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Number of rows announced by the header.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The dimension (number of columns).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The dtype of the file.
    pub fn dtype(&self) -> NpyDtype {
        self.dtype
    }

    /// [`ElementKind::U8`] for `|u1` arrays, [`ElementKind::F32`] otherwise.
    pub fn element(&self) -> ElementKind {
        match self.dtype {
            NpyDtype::U8 => ElementKind::U8,
            _ => ElementKind::F32,
        }
    }

    fn row_bytes(&self) -> u64 {
        self.dim as u64 * self.dtype.size() as u64
    }

    fn decode(&self, record: u64) -> Result<Vec<f32>> {
        let non_finite = |component, value| FormatError::NonFinite { record, component, value };
        let mut out = Vec::with_capacity(self.dim);
        match self.dtype {
            NpyDtype::U8 => out.extend(self.buf.iter().map(|&b| f32::from(b))),
            NpyDtype::F32 => {
                for (i, c) in self.buf.chunks_exact(4).enumerate() {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if !v.is_finite() {
                        return Err(non_finite(i, v));
                    }
                    out.push(v);
                }
            }
            _ => {
                for (i, c) in self.buf.chunks_exact(8).enumerate() {
                    let bytes = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                    let v = f64::from_le_bytes(bytes) as f32;
                    if !v.is_finite() {
                        return Err(non_finite(i, v));
                    }
                    out.push(v);
                }
            }
        }
        Ok(out)
    }
}

impl NpyReader<BufReader<File>> {
    /// Opens an npy file, checking the header against the file size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (mut file, len) = util::open_with_len(path)?;
        let h = read_header(&mut file, Some(len)).map_err(|e| util::with_path(e, path))?;
        let mut r = Self::from_header(file, &h)?;
        check_size(&h, r.row_bytes(), r.rows, len)?;
        r.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: Read> Iterator for NpyReader<R> {
    type Item = Result<Vec<f32>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.row >= self.rows {
            return None;
        }
        let record = self.row;
        let need = self.row_bytes();
        let got = match util::read_exact_growing(&mut self.inner, need, &mut self.buf) {
            Ok(g) => g,
            Err(e) => {
                self.done = true;
                return Some(Err(FormatError::io("reading", self.path.as_deref(), e)));
            }
        };
        if got < need {
            self.done = true;
            return Some(Err(FormatError::Truncated {
                record,
                offset: self.offset,
                needed: need,
                available: got,
            }));
        }
        self.row += 1;
        self.offset += need;
        Some(self.decode(record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.rows.saturating_sub(self.row)).ok();
        (0, left)
    }
}

fn collect_npy<R: Read>(mut r: NpyReader<R>, reserve_limit: u64) -> Result<VecSet> {
    let total = r.rows.saturating_mul(r.dim as u64).min(reserve_limit);
    let mut data = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for row in r.by_ref() {
        data.extend_from_slice(&row?);
    }
    VecSet::new(r.dim, data, r.element())
}

/// Reads a whole 2-D npy vector array.
pub fn read_npy(path: impl AsRef<Path>) -> Result<VecSet> {
    // The size check in `open` bounds rows * dim by the file size.
    collect_npy(NpyReader::open(path)?, u64::MAX)
}

/// Reads a whole 2-D npy vector array from a stream.
pub fn read_npy_from<R: Read>(reader: R) -> Result<VecSet> {
    collect_npy(NpyReader::new(reader)?, STREAM_RESERVE)
}

fn read_ids<R: Read>(mut r: R, h: &RawHeader, path: Option<&Path>) -> Result<Vec<u64>> {
    let dtype = dtype_of(h, ID_DTYPES)?;
    let n = match h.shape[..] {
        [n] => n,
        _ => return Err(FormatError::UnsupportedShape { shape: h.shape.clone(), expected_ndim: 1 }),
    };
    let mut ids = Vec::with_capacity(usize::try_from(n.min(STREAM_RESERVE)).unwrap_or(0));
    let mut buf = [0u8; 8];
    for record in 0..n {
        let got = util::read_full(&mut r, &mut buf).map_err(|e| FormatError::io("reading", path, e))?;
        if got < buf.len() {
            return Err(FormatError::Truncated {
                record,
                offset: h.data_offset + record * 8,
                needed: 8,
                available: got as u64,
            });
        }
        let id = match dtype {
            NpyDtype::I64 => {
                let v = i64::from_le_bytes(buf);
                u64::try_from(v).map_err(|_| FormatError::NegativeId { record, value: v })?
            }
            _ => u64::from_le_bytes(buf),
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Reads a 1-D npy id array (`<u8` or non-negative `<i8`) from a stream.
pub fn read_npy_ids_from<R: Read>(mut reader: R) -> Result<Vec<u64>> {
    let h = read_header(&mut reader, None)?;
    read_ids(reader, &h, None)
}

/// Reads a 1-D npy id array (`<u8` or non-negative `<i8`).
pub fn read_npy_ids(path: impl AsRef<Path>) -> Result<Vec<u64>> {
    let path = path.as_ref();
    let (mut file, len) = util::open_with_len(path)?;
    let h = read_header(&mut file, Some(len)).map_err(|e| util::with_path(e, path))?;
    if let [n] = h.shape[..] {
        // Only the dtype size is needed here; read_ids reports bad dtypes.
        if dtype_of(&h, ID_DTYPES).is_ok() {
            check_size(&h, 8, n, len)?;
        }
    }
    read_ids(file, &h, Some(path))
}

/// Writes `set` as a 2-D npy array (format version 1.0): `<f4` for
/// [`ElementKind::F32`] sets, `|u1` for [`ElementKind::U8`] sets.
///
/// Fails on non-finite values ([`FormatError::NonFinite`]), on `U8` sets holding
/// values that are not bytes ([`FormatError::ValueOutOfRange`]) and on an empty
/// set of unknown dimension.
pub fn write_npy_to<W: Write>(mut writer: W, set: &VecSet) -> Result<()> {
    let dim = set.dim();
    if dim == 0 {
        return Err(FormatError::invalid("set", "cannot write a set of unknown dimension (dim 0)"));
    }
    let dtype = match set.element() {
        ElementKind::U8 => NpyDtype::U8,
        _ => NpyDtype::F32,
    };
    // Validate everything first so no partial array is written.
    for (record, row) in set.iter().enumerate() {
        for (component, &value) in row.iter().enumerate() {
            if dtype == NpyDtype::U8 {
                to_u8(record as u64, component, value)?;
            } else if !value.is_finite() {
                return Err(FormatError::NonFinite { record: record as u64, component, value });
            }
        }
    }
    write_header(&mut writer, dtype.descr(), &[set.len() as u64, dim as u64])?;
    let mut buf = Vec::with_capacity(dim * dtype.size());
    for row in set.iter() {
        buf.clear();
        match dtype {
            // Validated above: every value is an integer in 0..=255.
            NpyDtype::U8 => buf.extend(row.iter().map(|&v| v as u8)),
            _ => row.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
        }
        writer.write_all(&buf).map_err(write_err)?;
    }
    writer.flush().map_err(write_err)
}

/// Creates (or truncates) `path` and writes `set` to it; see [`write_npy_to`].
pub fn write_npy(path: impl AsRef<Path>, set: &VecSet) -> Result<()> {
    let path = path.as_ref();
    let mut w = util::create(path)?;
    write_npy_to(&mut w, set).map_err(|e| util::with_path(e, path))?;
    util::finish(w, path)
}

/// Writes `ids` as a 1-D npy array of dtype `<u8` (little-endian `uint64`).
pub fn write_npy_ids_to<W: Write>(mut writer: W, ids: &[u64]) -> Result<()> {
    write_header(&mut writer, NpyDtype::U64.descr(), &[ids.len() as u64])?;
    for chunk in ids.chunks(4096) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|id| id.to_le_bytes()).collect();
        writer.write_all(&bytes).map_err(write_err)?;
    }
    writer.flush().map_err(write_err)
}

/// Creates (or truncates) `path` and writes `ids` to it; see [`write_npy_ids_to`].
pub fn write_npy_ids(path: impl AsRef<Path>, ids: &[u64]) -> Result<()> {
    let path = path.as_ref();
    let mut w = util::create(path)?;
    write_npy_ids_to(&mut w, ids).map_err(|e| util::with_path(e, path))?;
    util::finish(w, path)
}
