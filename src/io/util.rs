//! Small helpers shared by the readers and writers.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;

use super::error::{FormatError, Result};

/// Opens `path` for buffered reading and returns its length in bytes.
pub(crate) fn open_with_len(path: &Path) -> Result<(BufReader<File>, u64)> {
    let file = File::open(path).map_err(|e| FormatError::io("opening", Some(path), e))?;
    let len = file.metadata().map_err(|e| FormatError::io("reading metadata of", Some(path), e))?.len();
    Ok((BufReader::with_capacity(1 << 16, file), len))
}

/// Creates (truncates) `path` for buffered writing.
pub(crate) fn create(path: &Path) -> Result<BufWriter<File>> {
    let file = File::create(path).map_err(|e| FormatError::io("creating", Some(path), e))?;
    Ok(BufWriter::with_capacity(1 << 16, file))
}

/// Flushes a file writer, attaching `path` to a failure.
pub(crate) fn finish(mut w: BufWriter<File>, path: &Path) -> Result<()> {
    w.flush().map_err(|e| FormatError::io("writing", Some(path), e))?;
    let file = w.into_inner().map_err(|e| FormatError::io("writing", Some(path), e.into_error()))?;
    file.sync_all().map_err(|e| FormatError::io("syncing", Some(path), e))
}

/// Attaches `path` to an I/O error that carries none.
pub(crate) fn with_path(e: FormatError, path: &Path) -> FormatError {
    match e {
        FormatError::Io { op, path: None, source } => FormatError::io(op, Some(path), source),
        other => other,
    }
}

/// Maps a writer error.
pub(crate) fn write_err(e: std::io::Error) -> FormatError {
    FormatError::io("writing", None, e)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n.min(rest.len()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Replaces `buf`'s content with up to `len` bytes of `r`, growing it only as
/// data arrives (a lying length field cannot make us allocate it up front).
/// Returns the number of bytes read, which is less than `len` only at end of stream.
pub(crate) fn read_exact_growing<R: Read + ?Sized>(
    r: &mut R,
    len: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<u64> {
    buf.clear();
    let n = r.take(len).read_to_end(buf)?;
    Ok(n as u64)
}

/// Outcome of [`read_line_capped`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// End of stream: nothing was read.
    Eof,
    /// A line (with its terminator, if any) was appended.
    Read,
    /// The line exceeded the limit; it was consumed up to its terminator and
    /// `out` holds only a prefix.
    TooLong,
}

/// Appends one line of `r` (including the `\n`, if any) to `out`, reading at most
/// `limit` bytes into memory; longer lines are skipped to their end.
///
/// The line end is found by `read_until` and `skip_until`, which search with `memchr`: a byte
/// loop here took a measurable share of a CSV import of 4 KB rows.
pub(crate) fn read_line_capped<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX);
    let n = r.take(cap).read_until(b'\n', out)?;
    if out.last() == Some(&b'\n') && n > 0 {
        return Ok(Line::Read);
    }
    if n < limit {
        // The stream ended before the limit (and before any line end).
        return Ok(if n == 0 { Line::Eof } else { Line::Read });
    }
    // `limit` bytes and no line end yet: the line is longer, unless the stream ends right here.
    let more = loop {
        match r.fill_buf() {
            Ok(b) => break !b.is_empty(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if !more {
        return Ok(if n == 0 { Line::Eof } else { Line::Read });
    }
    r.skip_until(b'\n')?;
    Ok(Line::TooLong)
}

/// Strips a trailing `\n` or `\r\n`.
pub(crate) fn trim_eol(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

/// Decodes a line as UTF-8, reporting the 1-based column of the first invalid byte.
pub(crate) fn utf8_line(bytes: Vec<u8>, line: usize) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| FormatError::Parse {
        line,
        column: Some(e.utf8_error().valid_up_to() + 1),
        field: None,
        reason: "invalid UTF-8".into(),
    })
}

/// Converts `value` to a byte, if it is an integer in `0..=255`.
pub(crate) fn to_u8(record: u64, component: usize, value: f32) -> Result<u8> {
    if value.fract() == 0.0 && (0.0..=255.0).contains(&value) {
        Ok(value as u8)
    } else {
        Err(FormatError::ValueOutOfRange { record, component, value: f64::from(value), target: "u8" })
    }
}

/// Formats an `f64` metadata value so that it reads back as a float (never as an integer).
pub(crate) fn float_text(v: f64) -> String {
    let mut s = v.to_string();
    if !s.contains(['.', 'e', 'E']) {
        s.push_str(".0");
    }
    s
}
