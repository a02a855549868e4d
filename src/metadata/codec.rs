//! The binary form of [`Metadata`], for snapshots and the log.
//!
//! ```text
//! map    := varint(entries) entry*          keys strictly increasing (bytewise)
//! entry  := varint(key_len) key tag payload
//! tag 0  string   varint(len) utf8
//! tag 1  integer  varint(zigzag(i64))
//! tag 2  number   f64 little-endian (finite; +0.0 for zero)
//! tag 3  false    (no payload)
//! tag 4  true     (no payload)
//! tag 5  list     varint(count) (varint(len) utf8)*
//! ```
//!
//! Varints are unsigned LEB128 (little-endian base 128) of at most 10 bytes. The form is
//! *canonical*: [`decode`] accepts exactly the bytes [`encode`] writes (shortest varints, sorted
//! unique keys, no negative zero, nothing after the map), so equal maps have equal bytes and a
//! checksum or a byte comparison of two records means what it says. Integers are zigzag varints
//! because typical metadata integers (years, counts, ids) are small: 2001 takes 2 bytes, not 8.
//!
//! The form carries no version byte: the snapshot section or log record that holds it is
//! versioned, and a new value type takes a new tag.

use super::{MetaError, MetaValue, Metadata};

const TAG_STR: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_FALSE: u8 = 3;
const TAG_TRUE: u8 = 4;
const TAG_LIST: u8 = 5;

/// What [`decode`] found wrong, inside [`MetaError::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends inside a value.
    #[error("input ends early")]
    Truncated,
    /// A length or count is larger than the bytes left could hold.
    #[error("length {len} exceeds the {left} bytes left")]
    LengthExceedsInput {
        /// The length or count read.
        len: u64,
        /// Bytes left after it.
        left: usize,
    },
    /// A varint runs past 10 bytes or past `u64`.
    #[error("varint overflows u64")]
    VarintOverflow,
    /// A varint is longer than needed (not canonical).
    #[error("varint is not in its shortest form")]
    OverlongVarint,
    /// A value tag no encoder writes.
    #[error("unknown value tag {0}")]
    UnknownTag(u8),
    /// A key or string is not UTF-8.
    #[error("string is not UTF-8")]
    InvalidUtf8,
    /// A key is not greater than the key before it.
    #[error("keys are not strictly increasing")]
    KeysNotSorted,
    /// A float is NaN or infinite.
    #[error("float is not finite")]
    NonFiniteFloat,
    /// A float is `-0.0`, which [`encode`] writes as `+0.0`.
    #[error("float is negative zero (not canonical)")]
    NegativeZero,
    /// Bytes follow the end of the map.
    #[error("{left} bytes follow the end of the map")]
    TrailingBytes {
        /// How many.
        left: usize,
    },
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // ceil(bits / 7), at least 1 byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn str_len(s: &str) -> usize {
    varint_len(s.len() as u64) + s.len()
}

/// Appends the canonical binary form of `meta` to `out`.
///
/// Never fails: limits are checked where metadata enters ([`super::MetaLimits::check`]), and
/// every length fits a varint. A `-0.0` is written as `+0.0` (they compare equal); a NaN or
/// infinity, which the limits refuse, is written as is and refused by [`decode`].
///
/// ```
/// use hnsw_batch::metadata::{encode, Metadata};
///
/// let mut meta = Metadata::new();
/// meta.insert("year".into(), 2001.into());
/// let mut out = Vec::new();
/// encode(&meta, &mut out);
/// assert_eq!(out, [1, 4, b'y', b'e', b'a', b'r', 1, 0xa2, 0x1f]);
/// ```
pub fn encode(meta: &Metadata, out: &mut Vec<u8>) {
    out.reserve(encoded_len(meta));
    put_varint(out, meta.len() as u64);
    for (key, value) in meta {
        put_str(out, key);
        match value {
            MetaValue::Str(s) => {
                out.push(TAG_STR);
                put_str(out, s);
            }
            MetaValue::Int(i) => {
                out.push(TAG_INT);
                put_varint(out, zigzag(*i));
            }
            MetaValue::Float(f) => {
                out.push(TAG_FLOAT);
                // `f + 0.0` turns -0.0 into +0.0 and leaves every other value alone.
                out.extend_from_slice(&(f + 0.0).to_le_bytes());
            }
            MetaValue::Bool(false) => out.push(TAG_FALSE),
            MetaValue::Bool(true) => out.push(TAG_TRUE),
            MetaValue::StrList(list) => {
                out.push(TAG_LIST);
                put_varint(out, list.len() as u64);
                for s in list {
                    put_str(out, s);
                }
            }
        }
    }
}

/// The number of bytes [`encode`] writes for `meta`, computed without encoding.
pub fn encoded_len(meta: &Metadata) -> usize {
    let mut n = varint_len(meta.len() as u64);
    for (key, value) in meta {
        n += str_len(key) + 1;
        n += match value {
            MetaValue::Str(s) => str_len(s),
            MetaValue::Int(i) => varint_len(zigzag(*i)),
            MetaValue::Float(_) => 8,
            MetaValue::Bool(_) => 0,
            MetaValue::StrList(list) => {
                varint_len(list.len() as u64) + list.iter().map(|s| str_len(s)).sum::<usize>()
            }
        };
    }
    n
}

/// A cursor over the input that reports the offset of every failure.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, at: usize, kind: DecodeErrorKind) -> MetaError {
        MetaError::Corrupt { offset: at, kind }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, MetaError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.fail(self.pos, DecodeErrorKind::Truncated))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, MetaError> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            // The tenth byte may only carry bit 63.
            if i == 9 && part > 1 {
                return Err(self.fail(start, DecodeErrorKind::VarintOverflow));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                // A final zero byte after others adds nothing: the encoder never writes it.
                if i > 0 && b == 0 {
                    return Err(self.fail(start, DecodeErrorKind::OverlongVarint));
                }
                return Ok(v);
            }
        }
        Err(self.fail(start, DecodeErrorKind::VarintOverflow))
    }

    /// A length that must fit in the bytes left, each counted item taking at least
    /// `min_item` bytes; checked before anything is allocated for it.
    fn length(&mut self, min_item: usize) -> Result<usize, MetaError> {
        let start = self.pos;
        let len = self.varint()?;
        let left = self.left();
        let fits = usize::try_from(len).ok().filter(|n| n.checked_mul(min_item).is_some_and(|b| b <= left));
        fits.ok_or_else(|| self.fail(start, DecodeErrorKind::LengthExceedsInput { len, left }))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MetaError> {
        // `length` has checked `n` against the bytes left; checked again so this never panics.
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| self.fail(self.pos, DecodeErrorKind::Truncated))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn string(&mut self) -> Result<String, MetaError> {
        let n = self.length(1)?;
        let start = self.pos;
        let raw = self.bytes(n)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| self.fail(start, DecodeErrorKind::InvalidUtf8))
    }
}

/// Reads metadata written by [`encode`].
///
/// Any input is safe: every length is checked against the bytes left before anything is
/// allocated for it, and bytes that [`encode`] would not have written are a
/// [`MetaError::Corrupt`] with the offset and a [`DecodeErrorKind`]. Limits
/// ([`super::MetaLimits`]) are not checked here: they apply where metadata enters the index,
/// and bytes in a snapshot or the log passed them when written.
///
/// ```
/// use hnsw_batch::metadata::{decode, DecodeErrorKind, MetaError};
///
/// assert!(decode(&[0]).unwrap().is_empty());
/// let err = decode(&[1, 4, b'y', b'e']).unwrap_err();
/// assert!(matches!(err, MetaError::Corrupt { offset: 1, kind: DecodeErrorKind::LengthExceedsInput { .. } }));
/// ```
pub fn decode(bytes: &[u8]) -> Result<Metadata, MetaError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    // Smallest entry: a one-byte key length, an empty key and a boolean tag.
    let entries = r.length(2)?;
    let mut meta = Metadata::new();
    let mut last: Option<String> = None;
    for _ in 0..entries {
        let key_at = r.pos;
        let key = r.string()?;
        if last.as_ref().is_some_and(|prev| *prev >= key) {
            return Err(r.fail(key_at, DecodeErrorKind::KeysNotSorted));
        }
        let tag_at = r.pos;
        let value = match r.byte()? {
            TAG_STR => MetaValue::Str(r.string()?),
            TAG_INT => MetaValue::Int(unzigzag(r.varint()?)),
            TAG_FLOAT => {
                let at = r.pos;
                let raw = r.bytes(8)?;
                let mut le = [0u8; 8];
                le.copy_from_slice(raw);
                let f = f64::from_le_bytes(le);
                if !f.is_finite() {
                    return Err(r.fail(at, DecodeErrorKind::NonFiniteFloat));
                }
                if f == 0.0 && f.is_sign_negative() {
                    return Err(r.fail(at, DecodeErrorKind::NegativeZero));
                }
                MetaValue::Float(f)
            }
            TAG_FALSE => MetaValue::Bool(false),
            TAG_TRUE => MetaValue::Bool(true),
            TAG_LIST => {
                let count = r.length(1)?;
                let mut list = Vec::with_capacity(count);
                for _ in 0..count {
                    list.push(r.string()?);
                }
                MetaValue::StrList(list)
            }
            other => return Err(r.fail(tag_at, DecodeErrorKind::UnknownTag(other))),
        };
        last = Some(key.clone());
        meta.insert(key, value);
    }
    if r.left() > 0 {
        return Err(r.fail(r.pos, DecodeErrorKind::TrailingBytes { left: r.left() }));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_the_writer() {
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varint().unwrap(), v);
        }
    }

    #[test]
    fn zigzag_round_trips_the_extremes() {
        for i in [0, 1, -1, 2001, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(i)), i);
        }
        assert_eq!(zigzag(-1), 1);
    }

    #[test]
    fn overlong_and_overflowing_varints_are_refused() {
        let mut r = Reader { buf: &[0x80, 0x00], pos: 0 };
        assert!(matches!(r.varint(), Err(MetaError::Corrupt { kind: DecodeErrorKind::OverlongVarint, .. })));
        let eleven = [0xff; 11];
        let mut r = Reader { buf: &eleven, pos: 0 };
        assert!(matches!(r.varint(), Err(MetaError::Corrupt { kind: DecodeErrorKind::VarintOverflow, .. })));
        let mut ten = [0xff; 10];
        ten[9] = 0x02;
        let mut r = Reader { buf: &ten, pos: 0 };
        assert!(matches!(r.varint(), Err(MetaError::Corrupt { kind: DecodeErrorKind::VarintOverflow, .. })));
    }
}
