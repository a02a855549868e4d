//! The `.npy` header: magic, version, and the Python dict literal describing the array.
//!
//! The dict is parsed by a tiny hand-written parser of Python literals (strings,
//! integers, booleans, `None`, tuples, lists and dicts), with a nesting limit so
//! a hostile header cannot exhaust the stack.

use std::fmt;
use std::io::{Read, Write};

use super::error::{FormatError, Result};
use super::util::{self, write_err};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are rejected before being read (numpy's own limit is 10 000).
const MAX_HEADER_LEN: u64 = 1 << 20;
const MAX_DEPTH: usize = 16;

/// A parsed npy header.
#[derive(Debug)]
pub(crate) struct RawHeader {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Offset of the first data byte.
    pub data_offset: u64,
}

/// A Python literal.
#[derive(Debug)]
enum Lit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    List(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn seq(f: &mut fmt::Formatter<'_>, items: &[Lit], open: &str, close: &str) -> fmt::Result {
            f.write_str(open)?;
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{it}")?;
            }
            f.write_str(close)
        }
        match self {
            Lit::Str(s) => write!(f, "'{s}'"),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Lit::None => f.write_str("None"),
            Lit::Tuple(v) => seq(f, v, "(", ")"),
            Lit::List(v) => seq(f, v, "[", "]"),
            Lit::Dict(kv) => {
                f.write_str("{")?;
                for (i, (k, v)) in kv.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Byte offset of `s` in the file, for error messages.
    base: u64,
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> FormatError {
        FormatError::BadHeader { offset: self.base + self.pos as u64, reason: reason.into() }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit> {
        if depth > MAX_DEPTH {
            return Err(self.err("header literal nested too deeply"));
        }
        self.skip_ws();
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q),
            Some(b'(') => Ok(Lit::Tuple(self.seq(b')', depth)?)),
            Some(b'[') => Ok(Lit::List(self.seq(b']', depth)?)),
            Some(b'{') => self.dict(depth),
            Some(b'0'..=b'9') => self.int(),
            Some(b'A'..=b'Z' | b'a'..=b'z') => self.word(),
            Some(c) => Err(self.err(format!("unexpected character {:?}", char::from(c)))),
            None => Err(self.err("unexpected end of header")),
        }
    }

    fn string(&mut self, quote: u8) -> Result<Lit> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => out.push(c),
                        None => return Err(self.err("unterminated string")),
                    }
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some(c) => out.push(c),
            }
            self.pos += 1;
        }
        String::from_utf8(out).map(Lit::Str).map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn int(&mut self) -> Result<Lit> {
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .ok_or_else(|| self.err("integer too large"))?;
            self.pos += 1;
        }
        // Python 2 long suffix, written by old numpy versions.
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Ok(Lit::Int(v))
    }

    fn word(&mut self) -> Result<Lit> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_')) {
            self.pos += 1;
        }
        match self.s.get(start..self.pos) {
            Some(b"True") => Ok(Lit::Bool(true)),
            Some(b"False") => Ok(Lit::Bool(false)),
            Some(b"None") => Ok(Lit::None),
            _ => {
                self.pos = start;
                Err(self.err("unknown identifier"))
            }
        }
    }

    /// Comma-separated values up to `close`, trailing comma allowed.
    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Lit>> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                if self.eat(close) {
                    return Ok(items);
                }
                return Err(self.err(format!("expected ',' or '{}'", char::from(close))));
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Lit> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(b'}') {
                return Ok(Lit::Dict(items));
            }
            let key = self.value(depth + 1)?;
            if !self.eat(b':') {
                return Err(self.err("expected ':'"));
            }
            let value = self.value(depth + 1)?;
            items.push((key, value));
            if !self.eat(b',') {
                if self.eat(b'}') {
                    return Ok(Lit::Dict(items));
                }
                return Err(self.err("expected ',' or '}'"));
            }
        }
    }
}

fn short(offset: u64, what: &str) -> FormatError {
    FormatError::BadHeader { offset, reason: format!("file ends inside the {what}") }
}

/// Reads and parses the header; `file_len`, when known, bounds the header length.
pub(crate) fn read_header<R: Read>(r: &mut R, file_len: Option<u64>) -> Result<RawHeader> {
    let io = |e| FormatError::io("reading", None, e);
    let mut pre = [0u8; 8];
    let n = util::read_full(r, &mut pre).map_err(io)?;
    if n < pre.len() {
        return Err(short(n as u64, "magic string"));
    }
    if pre.get(..6) != Some(&MAGIC[..]) {
        return Err(FormatError::BadHeader {
            offset: 0,
            reason: "not an npy file (bad magic string)".into(),
        });
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_size = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => {
            return Err(FormatError::BadHeader {
                offset: 6,
                reason: format!("unsupported npy format version {major}.{minor}"),
            })
        }
    };
    let mut len_bytes = [0u8; 4];
    let len_buf = len_bytes.get_mut(..len_size).unwrap_or_default();
    if util::read_full(r, len_buf).map_err(io)? < len_size {
        return Err(short(8, "header length"));
    }
    let header_len = u64::from(u32::from_le_bytes(len_bytes));
    let start = 8 + len_size as u64;
    let limit = file_len.map_or(MAX_HEADER_LEN, |l| l.saturating_sub(start).min(MAX_HEADER_LEN));
    if header_len > limit {
        return Err(FormatError::BadHeader {
            offset: 8,
            reason: format!("header length {header_len} exceeds the limit of {limit} bytes"),
        });
    }
    let mut text = Vec::new();
    if util::read_exact_growing(r, header_len, &mut text).map_err(io)? < header_len {
        return Err(short(start, "header"));
    }
    let mut p = Parser { s: &text, pos: 0, base: start };
    let lit = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("unexpected data after the header dict"));
    }
    let mut h = extract(lit, start)?;
    h.data_offset = start + header_len;
    Ok(h)
}

fn extract(lit: Lit, offset: u64) -> Result<RawHeader> {
    let bad = |reason: String| FormatError::BadHeader { offset, reason };
    let Lit::Dict(items) = lit else {
        return Err(bad(format!("header is not a dict: {lit}")));
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in items {
        let Lit::Str(key) = k else {
            return Err(bad(format!("header key {k} is not a string")));
        };
        let slot_taken = match key.as_str() {
            "descr" => descr.replace(v).is_some(),
            "fortran_order" => fortran.replace(v).is_some(),
            "shape" => shape.replace(v).is_some(),
            _ => return Err(bad(format!("unexpected header key '{key}'"))),
        };
        if slot_taken {
            return Err(bad(format!("duplicate header key '{key}'")));
        }
    }
    let descr = match descr {
        Some(Lit::Str(s)) => s,
        Some(other) => {
            return Err(FormatError::UnsupportedDtype {
                descr: other.to_string(),
                supported: "simple dtypes only",
            })
        }
        None => return Err(bad("missing header key 'descr'".into())),
    };
    let fortran_order = match fortran {
        Some(Lit::Bool(b)) => b,
        Some(other) => return Err(bad(format!("'fortran_order' is not a bool: {other}"))),
        None => return Err(bad("missing header key 'fortran_order'".into())),
    };
    let shape = match shape {
        Some(Lit::Tuple(items)) => items
            .into_iter()
            .map(|it| match it {
                Lit::Int(i) => Ok(i),
                other => Err(bad(format!("shape entry {other} is not an integer"))),
            })
            .collect::<Result<Vec<u64>>>()?,
        Some(other) => return Err(bad(format!("'shape' is not a tuple: {other}"))),
        None => return Err(bad("missing header key 'shape'".into())),
    };
    Ok(RawHeader { descr, fortran_order, shape, data_offset: 0 })
}

/// Writes a version 1.0 header, padded with spaces so the data starts at a
/// multiple of 64 bytes.
pub(crate) fn write_header<W: Write>(w: &mut W, descr: &str, shape: &[u64]) -> Result<()> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let len = u16::try_from(dict.len())
        .map_err(|_| FormatError::invalid("shape", "npy header does not fit a version 1.0 file"))?;
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    w.write_all(&out).map_err(write_err)
}
