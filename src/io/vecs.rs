//! TEXMEX vector files: `.fvecs`, `.bvecs` and `.ivecs`.
//!
//! Every record is a little-endian `i32` dimension followed by that many
//! components: `f32` (fvecs), `u8` (bvecs) or `i32` (ivecs), all little-endian.
//! All records of a file must have the same dimension, in `1..=`[`MAX_DIM`].
//!
//! A file that ends exactly between two records is valid and simply holds fewer
//! records; a file that ends inside a record is reported as
//! [`FormatError::Truncated`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::{FormatError, Result};
use super::set::{ElementKind, VecSet};
use super::util::{self, to_u8, write_err};
use super::MAX_DIM;

/// The record layer shared by [`VecsReader`] and [`IvecsReader`].
#[derive(Debug)]
struct RawVecs<R> {
    inner: R,
    elem_size: u64,
    /// Bytes left in the underlying file, when known.
    remaining: Option<u64>,
    path: Option<PathBuf>,
    offset: u64,
    record: u64,
    dim: Option<usize>,
    buf: Vec<u8>,
    done: bool,
}

impl<R: Read> RawVecs<R> {
    fn new(inner: R, elem_size: u64) -> Self {
        RawVecs {
            inner,
            elem_size,
            remaining: None,
            path: None,
            offset: 0,
            record: 0,
            dim: None,
            buf: Vec::new(),
            done: false,
        }
    }

    fn io(&self, e: std::io::Error) -> FormatError {
        FormatError::io("reading", self.path.as_deref(), e)
    }

    fn fail(&mut self, e: FormatError) -> Option<Result<(u64, usize)>> {
        self.done = true;
        Some(Err(e))
    }

    /// Reads the next record into `self.buf`; returns its index and dimension.
    fn next_record(&mut self) -> Option<Result<(u64, usize)>> {
        if self.done {
            return None;
        }
        let record = self.record;
        let mut head = [0u8; 4];
        let n = match util::read_full(&mut self.inner, &mut head) {
            Ok(n) => n,
            Err(e) => {
                let e = self.io(e);
                return self.fail(e);
            }
        };
        if n == 0 {
            self.done = true;
            return None;
        }
        if n < head.len() {
            return self.fail(FormatError::Truncated {
                record,
                offset: self.offset,
                needed: head.len() as u64,
                available: n as u64,
            });
        }
        let raw_dim = i32::from_le_bytes(head);
        let dim = match usize::try_from(raw_dim) {
            Ok(d) if (1..=MAX_DIM).contains(&d) => d,
            _ => return self.fail(FormatError::bad_dim(record, raw_dim)),
        };
        let body_offset = self.offset + 4;
        // dim <= 2^20 and elem_size <= 4: cannot overflow.
        let body = dim as u64 * self.elem_size;
        if let Some(rem) = self.remaining {
            let left = rem.saturating_sub(4);
            if body > left {
                return self.fail(FormatError::Truncated {
                    record,
                    offset: body_offset,
                    needed: body,
                    available: left,
                });
            }
        }
        let got = match util::read_exact_growing(&mut self.inner, body, &mut self.buf) {
            Ok(g) => g,
            Err(e) => {
                let e = self.io(e);
                return self.fail(e);
            }
        };
        if got < body {
            return self.fail(FormatError::Truncated {
                record,
                offset: body_offset,
                needed: body,
                available: got,
            });
        }
        self.offset = body_offset + body;
        self.remaining = self.remaining.map(|r| r.saturating_sub(4 + body));
        self.record += 1;
        match self.dim {
            Some(expected) if expected != dim => {
                Some(Err(FormatError::DimensionMismatch { record, expected, got: dim }))
            }
            Some(_) => Some(Ok((record, dim))),
            None => {
                self.dim = Some(dim);
                Some(Ok((record, dim)))
            }
        }
    }

    /// Capacity hint for whole-file reads: the number of components the rest of
    /// the file can hold at dimension `dim` (bounded by the file size).
    fn capacity_hint(&self, dim: usize) -> usize {
        let rec = 4 + dim as u64 * self.elem_size;
        let rows = self.remaining.map_or(0, |r| r / rec);
        usize::try_from(rows.saturating_mul(dim as u64)).unwrap_or(0)
    }
}

/// Streaming reader of `.fvecs` / `.bvecs` records, yielding one `Vec<f32>` per record.
///
/// bvecs bytes are converted to `f32`. After a structural error (I/O failure,
/// truncation, invalid dimension) the iterator ends; a
/// [`FormatError::DimensionMismatch`] or [`FormatError::NonFinite`] concerns only
/// its own record, and iteration can go on.
#[derive(Debug)]
pub struct VecsReader<R> {
    raw: RawVecs<R>,
    element: ElementKind,
}

impl<R: Read> VecsReader<R> {
    /// Reads `.fvecs` (`ElementKind::F32`) or `.bvecs` (`ElementKind::U8`) records from `reader`.
    ///
    /// Wrap unbuffered readers (such as a `File`) in a `BufReader`.
    pub fn new(reader: R, element: ElementKind) -> Self {
        let size = match element {
            ElementKind::U8 => 1,
            ElementKind::F32 => 4,
        };
        VecsReader { raw: RawVecs::new(reader, size), element }
    }

    /// Requires every record to have dimension `dim` (by default the first record's).
    pub fn expect_dim(mut self, dim: usize) -> Self {
        self.raw.dim = Some(dim);
        self
    }

    /// The dimension required of the records: the expected one, or the first record's.
    pub fn dim(&self) -> Option<usize> {
        self.raw.dim
    }

    /// The element type of the file.
    pub fn element(&self) -> ElementKind {
        self.element
    }

    /// Number of records consumed so far, good or bad.
    pub fn records_read(&self) -> u64 {
        self.raw.record
    }
}

impl VecsReader<std::io::BufReader<std::fs::File>> {
    /// Opens a `.fvecs` (`F32`) or `.bvecs` (`U8`) file; lengths in the file are
    /// checked against the file size before anything is read.
    pub fn open(path: impl AsRef<Path>, element: ElementKind) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = util::open_with_len(path)?;
        let mut r = VecsReader::new(file, element);
        r.raw.remaining = Some(len);
        r.raw.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: Read> Iterator for VecsReader<R> {
    type Item = Result<Vec<f32>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (record, _dim) = match self.raw.next_record()? {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let bytes = &self.raw.buf;
        Some(match self.element {
            ElementKind::U8 => Ok(bytes.iter().map(|&b| f32::from(b)).collect()),
            ElementKind::F32 => decode_f32(bytes, record),
        })
    }
}

fn decode_f32(bytes: &[u8], record: u64) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(bytes.len() / 4);
    for (component, c) in bytes.chunks_exact(4).enumerate() {
        let value = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if !value.is_finite() {
            return Err(FormatError::NonFinite { record, component, value });
        }
        out.push(value);
    }
    Ok(out)
}

/// Streaming reader of `.ivecs` records (typically ground-truth neighbour ids),
/// yielding one `Vec<i32>` per record. Errors behave as for [`VecsReader`].
#[derive(Debug)]
pub struct IvecsReader<R> {
    raw: RawVecs<R>,
}

impl<R: Read> IvecsReader<R> {
    /// Reads `.ivecs` records from `reader` (wrap unbuffered readers in a `BufReader`).
    pub fn new(reader: R) -> Self {
        IvecsReader { raw: RawVecs::new(reader, 4) }
    }

    /// Requires every record to have dimension `dim` (by default the first record's).
    pub fn expect_dim(mut self, dim: usize) -> Self {
        self.raw.dim = Some(dim);
        self
    }

    /// The dimension required of the records: the expected one, or the first record's.
    pub fn dim(&self) -> Option<usize> {
        self.raw.dim
    }

    /// Number of records consumed so far, good or bad.
    pub fn records_read(&self) -> u64 {
        self.raw.record
    }
}

impl IvecsReader<std::io::BufReader<std::fs::File>> {
    /// Opens an `.ivecs` file; lengths are checked against the file size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, len) = util::open_with_len(path)?;
        let mut r = IvecsReader::new(file);
        r.raw.remaining = Some(len);
        r.raw.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: Read> Iterator for IvecsReader<R> {
    type Item = Result<Vec<i32>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.raw.next_record()? {
            return Some(Err(e));
        }
        let bytes = &self.raw.buf;
        Some(Ok(bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
    }
}

/// Reads a whole `.fvecs` / `.bvecs` stream into a [`VecSet`], stopping at the first error.
pub fn read_vecs_from<R: Read>(reader: R, element: ElementKind) -> Result<VecSet> {
    collect_set(VecsReader::new(reader, element))
}

fn collect_set<R: Read>(mut reader: VecsReader<R>) -> Result<VecSet> {
    let mut data = Vec::new();
    while let Some(row) = reader.next() {
        let row = row?;
        if data.is_empty() {
            data.reserve(reader.raw.capacity_hint(row.len()));
        }
        data.extend_from_slice(&row);
    }
    let dim = reader.dim().unwrap_or(0);
    VecSet::new(dim, data, reader.element)
}

/// Reads a whole `.fvecs` file. An empty file gives an empty set of dimension 0.
pub fn read_fvecs(path: impl AsRef<Path>) -> Result<VecSet> {
    collect_set(VecsReader::open(path, ElementKind::F32)?)
}

/// Reads a whole `.bvecs` file; the set's element kind is [`ElementKind::U8`].
pub fn read_bvecs(path: impl AsRef<Path>) -> Result<VecSet> {
    collect_set(VecsReader::open(path, ElementKind::U8)?)
}

/// Reads a whole `.ivecs` stream, stopping at the first error.
pub fn read_ivecs_from<R: Read>(reader: R) -> Result<Vec<Vec<i32>>> {
    IvecsReader::new(reader).collect()
}

/// Reads a whole `.ivecs` file (e.g. ground truth: one row of neighbour ids per
/// query). Values are returned as stored, `i32`; all rows have the same length.
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<Vec<Vec<i32>>> {
    IvecsReader::open(path)?.collect()
}

/// Checks one row's dimension against the first row's.
fn check_dim(record: u64, len: usize, dim: &mut Option<usize>) -> Result<()> {
    if len == 0 || len > MAX_DIM {
        return Err(FormatError::bad_dim(record, len));
    }
    match *dim {
        Some(expected) if expected != len => {
            Err(FormatError::DimensionMismatch { record, expected, got: len })
        }
        Some(_) => Ok(()),
        None => {
            *dim = Some(len);
            Ok(())
        }
    }
}

/// Writes records of any element type; `encode` validates a row and appends its bytes.
fn write_records<W, I, T>(
    mut w: W,
    rows: I,
    mut encode: impl FnMut(u64, &[T], &mut Vec<u8>) -> Result<()>,
) -> Result<usize>
where
    W: Write,
    I: IntoIterator,
    I::Item: AsRef<[T]>,
{
    let mut dim = None;
    let mut buf = Vec::new();
    let mut count = 0usize;
    for row in rows {
        let row = row.as_ref();
        let record = count as u64;
        check_dim(record, row.len(), &mut dim)?;
        buf.clear();
        // check_dim bounds the length by MAX_DIM, so it fits an i32.
        buf.extend_from_slice(&(row.len() as i32).to_le_bytes());
        encode(record, row, &mut buf)?;
        w.write_all(&buf).map_err(write_err)?;
        count += 1;
    }
    w.flush().map_err(write_err)?;
    Ok(count)
}

fn encode_f32(record: u64, row: &[f32], buf: &mut Vec<u8>) -> Result<()> {
    for (component, &value) in row.iter().enumerate() {
        if !value.is_finite() {
            return Err(FormatError::NonFinite { record, component, value });
        }
        buf.extend_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

fn encode_u8(record: u64, row: &[f32], buf: &mut Vec<u8>) -> Result<()> {
    for (component, &value) in row.iter().enumerate() {
        buf.push(to_u8(record, component, value)?);
    }
    Ok(())
}

fn encode_i32(_record: u64, row: &[i32], buf: &mut Vec<u8>) -> Result<()> {
    for v in row {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// Writes `.fvecs` records to `writer`; returns the number of records written.
///
/// Every row must have the same dimension in `1..=`[`MAX_DIM`] and only finite
/// values; a row is validated before any of its bytes is written, so on error
/// the output holds exactly the rows before the bad one.
pub fn write_fvecs_to<W, I>(writer: W, rows: I) -> Result<usize>
where
    W: Write,
    I: IntoIterator,
    I::Item: AsRef<[f32]>,
{
    write_records(writer, rows, encode_f32)
}

/// Writes `.bvecs` records; every value must be an integer in `0..=255`
/// ([`FormatError::ValueOutOfRange`] otherwise). See [`write_fvecs_to`].
pub fn write_bvecs_to<W, I>(writer: W, rows: I) -> Result<usize>
where
    W: Write,
    I: IntoIterator,
    I::Item: AsRef<[f32]>,
{
    write_records(writer, rows, encode_u8)
}

/// Writes `.ivecs` records. See [`write_fvecs_to`].
pub fn write_ivecs_to<W, I>(writer: W, rows: I) -> Result<usize>
where
    W: Write,
    I: IntoIterator,
    I::Item: AsRef<[i32]>,
{
    write_records(writer, rows, encode_i32)
}

fn to_file(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<usize>,
) -> Result<usize> {
    let mut w = util::create(path)?;
    let n = write(&mut w).map_err(|e| util::with_path(e, path))?;
    util::finish(w, path)?;
    Ok(n)
}

/// Creates (or truncates) an `.fvecs` file and writes `rows` to it; see
/// [`write_fvecs_to`]. On error the file may hold a prefix of the rows.
pub fn write_fvecs<I>(path: impl AsRef<Path>, rows: I) -> Result<usize>
where
    I: IntoIterator,
    I::Item: AsRef<[f32]>,
{
    to_file(path.as_ref(), |w| write_fvecs_to(w, rows))
}

/// Creates (or truncates) a `.bvecs` file and writes `rows` to it; see
/// [`write_bvecs_to`]. On error the file may hold a prefix of the rows.
pub fn write_bvecs<I>(path: impl AsRef<Path>, rows: I) -> Result<usize>
where
    I: IntoIterator,
    I::Item: AsRef<[f32]>,
{
    to_file(path.as_ref(), |w| write_bvecs_to(w, rows))
}

/// Creates (or truncates) an `.ivecs` file and writes `rows` to it; see
/// [`write_ivecs_to`]. On error the file may hold a prefix of the rows.
pub fn write_ivecs<I>(path: impl AsRef<Path>, rows: I) -> Result<usize>
where
    I: IntoIterator,
    I::Item: AsRef<[i32]>,
{
    to_file(path.as_ref(), |w| write_ivecs_to(w, rows))
}
