//! The write-ahead log format (see `docs/format.md`).
//!
//! A log file is a 24-byte header followed by records framed as
//! `[payload length: u32][CRC32 of length and payload: u32][payload]`. A record may say that the
//! next one continues it; such a *group* (one batch too large for one record) is applied whole
//! or not at all. Reading stops at the first record that is torn (its length runs past the end
//! of the file), fails its checksum, or does not parse; everything before it is the valid
//! prefix, and only the complete groups in that prefix are ever applied.

use super::codec::{f32s, put_f32s, Put, Reader};
use super::error::{check_version, PersistError, Result};

/// First eight bytes of every log file.
pub const WAL_MAGIC: [u8; 8] = [0x89, b'H', b'W', b'A', b'L', b'\r', b'\n', 0x1A];
/// The log format version this build writes and reads.
pub const WAL_VERSION: u32 = 1;
/// Length of a log file's header: magic, version, generation, CRC32.
pub const WAL_HEADER_LEN: usize = 24;
/// Largest record payload a log may hold (64 MiB); larger batches are split into groups.
pub const MAX_RECORD_LEN: usize = 64 << 20;
/// Bytes of framing before each payload.
pub const RECORD_HEADER_LEN: usize = 8;

const KIND_INSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_UPDATE: u8 = 3;
const FLAG_CONTINUED: u8 = 1;

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WalRecord {
    /// A batch of new vectors, all valid and absent from the index when logged.
    Insert {
        /// Their ids.
        ids: Vec<u64>,
        /// Vector dimension.
        dim: usize,
        /// `ids.len()` vectors of `dim` components, row-major.
        vectors: Vec<f32>,
    },
    /// Ids to delete, all present when logged.
    Delete {
        /// The ids.
        ids: Vec<u64>,
    },
    /// A vector replacing the one stored under `id`.
    Update {
        /// The id.
        id: u64,
        /// The new vector.
        vector: Vec<f32>,
    },
}

/// A record read back from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct WalEntry {
    /// The operation.
    pub record: WalRecord,
    /// Whether the next record belongs to the same group.
    pub continued: bool,
    /// Offset just past this record in the file.
    pub end: u64,
}

/// Why reading a log stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalStop {
    /// The record's framing or payload runs past the end of the file (a torn append).
    Torn {
        /// Offset of the record.
        offset: u64,
    },
    /// The record's length is larger than [`MAX_RECORD_LEN`].
    TooLong {
        /// Offset of the record.
        offset: u64,
    },
    /// The record's checksum does not match.
    BadChecksum {
        /// Offset of the record.
        offset: u64,
    },
    /// The checksum matches but the payload does not parse.
    BadPayload {
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What [`read_records_from_bytes`] found in a log.
#[derive(Debug, Clone, PartialEq)]
pub struct WalContents {
    /// Generation stored in the header.
    pub generation: u64,
    /// Every well-formed record of the valid prefix, in order.
    pub entries: Vec<WalEntry>,
    /// Length of the valid prefix (header plus well-formed records).
    pub valid_len: u64,
    /// Length of the committed prefix: the valid prefix without a trailing incomplete group.
    /// Recovery applies the records up to here and truncates the file to this length.
    pub committed_len: u64,
    /// Why reading stopped, if it did not reach the end of the file.
    pub stop: Option<WalStop>,
}

impl WalContents {
    /// The records of the committed prefix.
    pub fn committed(&self) -> impl Iterator<Item = &WalEntry> {
        self.entries.iter().filter(move |e| e.end <= self.committed_len)
    }
}

/// The header of log file number `generation`.
pub fn encode_header(generation: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(WAL_HEADER_LEN);
    h.extend_from_slice(&WAL_MAGIC);
    h.put_u32(WAL_VERSION);
    h.put_u64(generation);
    let crc = crc32fast::hash(&h);
    h.put_u32(crc);
    h
}

/// Frames `payload` as a record and appends it to `out`.
fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    out.put_u32(len);
    out.put_u32(h.finalize());
    out.extend_from_slice(payload);
}

/// Encodes one framed record.
pub fn encode_record(record: &WalRecord, continued: bool) -> Vec<u8> {
    let flags = if continued { FLAG_CONTINUED } else { 0 };
    let mut p = Vec::new();
    match record {
        WalRecord::Insert { ids, dim, vectors } => {
            p.put_u8(KIND_INSERT);
            p.put_u8(flags);
            p.put_u32(ids.len() as u32);
            p.put_u32(*dim as u32);
            for &id in ids {
                p.put_u64(id);
            }
            put_f32s(&mut p, vectors);
        }
        WalRecord::Delete { ids } => {
            p.put_u8(KIND_DELETE);
            p.put_u8(flags);
            p.put_u32(ids.len() as u32);
            for &id in ids {
                p.put_u64(id);
            }
        }
        WalRecord::Update { id, vector } => {
            p.put_u8(KIND_UPDATE);
            p.put_u8(flags);
            p.put_u64(*id);
            p.put_u32(vector.len() as u32);
            put_f32s(&mut p, vector);
        }
    }
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + p.len());
    frame(&mut out, &p);
    out
}

/// Payload bytes of an insert record of `count` vectors of dimension `dim`.
pub(crate) fn insert_payload_len(count: usize, dim: usize) -> usize {
    2 + 4 + 4 + count * (8 + 4 * dim)
}

/// Appends framed insert records for `items` to `out`, splitting them into a group of records of
/// at most `max_payload` bytes each (at least one item per record).
pub(crate) fn encode_insert_group(
    out: &mut Vec<u8>,
    items: &[(u64, &[f32])],
    dim: usize,
    max_payload: usize,
) {
    let per_item = 8 + 4 * dim;
    let fixed = insert_payload_len(0, dim);
    let per_record = (max_payload.saturating_sub(fixed) / per_item).max(1);
    let chunks: Vec<&[(u64, &[f32])]> = items.chunks(per_record).collect();
    let mut p = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let continued = i + 1 < chunks.len();
        p.clear();
        p.reserve(insert_payload_len(chunk.len(), dim));
        p.put_u8(KIND_INSERT);
        p.put_u8(if continued { FLAG_CONTINUED } else { 0 });
        p.put_u32(chunk.len() as u32);
        p.put_u32(dim as u32);
        for (id, _) in chunk.iter() {
            p.put_u64(*id);
        }
        for (_, v) in chunk.iter() {
            put_f32s(&mut p, v);
        }
        frame(out, &p);
    }
}

fn decode_payload(p: &[u8]) -> Result<(WalRecord, bool)> {
    let mut r = Reader::new(p, "log record");
    let kind = r.u8()?;
    let flags = r.u8()?;
    if flags & !FLAG_CONTINUED != 0 {
        return Err(PersistError::corrupt(format!("unknown record flags {flags:#x}")));
    }
    let record = match kind {
        KIND_INSERT => {
            let count = r.u32()? as usize;
            let dim = r.u32()? as usize;
            if dim == 0 {
                return Err(PersistError::corrupt("insert record with dimension 0"));
            }
            let need = dim.checked_mul(4).and_then(|d| d.checked_add(8)).and_then(|x| x.checked_mul(count));
            if need != Some(r.remaining()) {
                return Err(PersistError::corrupt("insert record length does not match its counts"));
            }
            let ids = r.take(count * 8)?.chunks_exact(8).map(le_u64).collect();
            let vectors = f32s(r.take(count * dim * 4)?);
            WalRecord::Insert { ids, dim, vectors }
        }
        KIND_DELETE => {
            let count = r.count(8)?;
            let ids = r.take(count * 8)?.chunks_exact(8).map(le_u64).collect();
            WalRecord::Delete { ids }
        }
        KIND_UPDATE => {
            let id = r.u64()?;
            let dim = r.count(4)?;
            if dim == 0 {
                return Err(PersistError::corrupt("update record with dimension 0"));
            }
            WalRecord::Update { id, vector: f32s(r.take(dim * 4)?) }
        }
        k => return Err(PersistError::corrupt(format!("unknown record kind {k}"))),
    };
    r.finish()?;
    Ok((record, flags & FLAG_CONTINUED != 0))
}

fn le_u64(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(c);
    u64::from_le_bytes(a)
}

/// Checks a log header and returns its generation.
fn read_header(bytes: &[u8]) -> Result<u64> {
    let magic_len = bytes.len().min(WAL_MAGIC.len());
    if bytes[..magic_len] != WAL_MAGIC[..magic_len] {
        return Err(PersistError::BadMagic { kind: "log" });
    }
    if bytes.len() < WAL_HEADER_LEN {
        return Err(PersistError::Truncated {
            section: "log header",
            needed: WAL_HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    }
    let mut r = Reader::new(&bytes[8..WAL_HEADER_LEN], "log header");
    let version = r.u32()?;
    let generation = r.u64()?;
    let stored = r.u32()?;
    let computed = crc32fast::hash(&bytes[..WAL_HEADER_LEN - 4]);
    if stored != computed {
        return Err(PersistError::ChecksumMismatch { section: "log header", stored, computed });
    }
    check_version("log", version, WAL_VERSION)?;
    Ok(generation)
}

/// Reads a whole log file. A damaged header is an error; damaged records end the valid prefix
/// (see [`WalContents`]). Never panics, and allocates at most a small multiple of the input.
pub fn read_records_from_bytes(bytes: &[u8]) -> Result<WalContents> {
    let generation = read_header(bytes)?;
    let mut entries = Vec::new();
    let mut pos = WAL_HEADER_LEN;
    let mut committed_len = pos as u64;
    let mut stop = None;
    while pos < bytes.len() {
        let offset = pos as u64;
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER_LEN {
            stop = Some(WalStop::Torn { offset });
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_LEN {
            stop = Some(WalStop::TooLong { offset });
            break;
        }
        if len > rest.len() - RECORD_HEADER_LEN {
            stop = Some(WalStop::Torn { offset });
            break;
        }
        let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
        let mut h = crc32fast::Hasher::new();
        h.update(&rest[..4]);
        h.update(payload);
        if h.finalize() != stored {
            stop = Some(WalStop::BadChecksum { offset });
            break;
        }
        match decode_payload(payload) {
            Ok((record, continued)) => {
                pos += RECORD_HEADER_LEN + len;
                entries.push(WalEntry { record, continued, end: pos as u64 });
                if !continued {
                    committed_len = pos as u64;
                }
            }
            Err(e) => {
                stop = Some(WalStop::BadPayload { offset, reason: e.to_string() });
                break;
            }
        }
    }
    Ok(WalContents { generation, entries, valid_len: pos as u64, committed_len, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(records: &[(WalRecord, bool)]) -> Vec<u8> {
        let mut b = encode_header(7);
        for (r, c) in records {
            b.extend(encode_record(r, *c));
        }
        b
    }

    #[test]
    fn roundtrip_and_groups() {
        let a = WalRecord::Insert { ids: vec![1, 2], dim: 2, vectors: vec![1.0, 2.0, 3.0, 4.0] };
        let d = WalRecord::Delete { ids: vec![1] };
        let u = WalRecord::Update { id: 2, vector: vec![5.0, 6.0] };
        let bytes = log(&[(a.clone(), false), (d.clone(), true), (u.clone(), false), (a.clone(), true)]);
        let c = read_records_from_bytes(&bytes).unwrap();
        assert_eq!(c.generation, 7);
        assert_eq!(c.entries.len(), 4);
        assert_eq!(c.valid_len, bytes.len() as u64);
        assert!(c.committed_len < c.valid_len);
        let committed: Vec<_> = c.committed().map(|e| e.record.clone()).collect();
        assert_eq!(committed, vec![a, d, u]);
        assert!(c.stop.is_none());
    }

    /// A future log version (with a valid header checksum) is a newer build's; a version no
    /// build writes is a damaged header.
    #[test]
    fn header_version_newer_or_damaged() {
        let with_version = |v: u32| {
            let mut h = encode_header(3);
            h[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32fast::hash(&h[..WAL_HEADER_LEN - 4]);
            h[WAL_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
            read_records_from_bytes(&h)
        };
        assert!(matches!(with_version(WAL_VERSION + 1), Err(PersistError::UnsupportedVersion { .. })));
        let e = with_version(WAL_VERSION | 1 << 16).unwrap_err();
        assert!(matches!(e, PersistError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("log header: version field 65537"), "{e}");
        assert!(matches!(with_version(0), Err(PersistError::Corrupt { .. })));
    }

    #[test]
    fn group_encoder_splits() {
        let vs: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32; 3]).collect();
        let items: Vec<(u64, &[f32])> =
            vs.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
        let mut b = encode_header(0);
        encode_insert_group(&mut b, &items, 3, insert_payload_len(3, 3));
        let c = read_records_from_bytes(&b).unwrap();
        assert_eq!(c.entries.len(), 4);
        assert_eq!(c.committed_len, b.len() as u64);
        let ids: Vec<u64> = c
            .entries
            .iter()
            .flat_map(|e| match &e.record {
                WalRecord::Insert { ids, .. } => ids.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(ids, (0..10).collect::<Vec<u64>>());
    }

    #[test]
    fn torn_and_corrupt_tails_stop() {
        let a = WalRecord::Delete { ids: vec![9, 10] };
        let full = log(&[(a.clone(), false), (a.clone(), false)]);
        let one = WAL_HEADER_LEN as u64 + encode_record(&a, false).len() as u64;
        for cut in WAL_HEADER_LEN..full.len() {
            let c = read_records_from_bytes(&full[..cut]).unwrap();
            assert!(c.committed_len <= cut as u64);
            assert_eq!(c.committed_len, if cut as u64 >= one { one } else { WAL_HEADER_LEN as u64 });
        }
        for i in one as usize..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x40;
            let c = read_records_from_bytes(&b).unwrap();
            assert_eq!(c.committed_len, one, "flip at {i}");
            assert!(c.stop.is_some());
        }
    }

    #[test]
    fn bad_headers() {
        assert!(matches!(read_records_from_bytes(b"garbage!"), Err(PersistError::BadMagic { .. })));
        assert!(matches!(read_records_from_bytes(&WAL_MAGIC[..3]), Err(PersistError::Truncated { .. })));
        let mut h = encode_header(1);
        h[10] ^= 1;
        assert!(matches!(read_records_from_bytes(&h), Err(PersistError::ChecksumMismatch { .. })));
    }
}
