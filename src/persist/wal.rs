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
use crate::items::MetaPatch;
use crate::metadata::{self, Metadata};

/// First eight bytes of every log file.
pub const WAL_MAGIC: [u8; 8] = [0x89, b'H', b'W', b'A', b'L', b'\r', b'\n', 0x1A];
/// The log format version this build writes. It also reads version 1, whose logs hold only
/// the kinds insert, delete and update (no metadata, expiry or field index records).
pub const WAL_VERSION: u32 = 2;
/// The oldest log format version this build reads.
pub const WAL_MIN_VERSION: u32 = 1;
/// Length of a log file's header: magic, version, generation, CRC32.
pub const WAL_HEADER_LEN: usize = 24;
/// Largest record payload a log may hold (64 MiB); larger batches are split into groups.
pub const MAX_RECORD_LEN: usize = 64 << 20;
/// Bytes of framing before each payload.
pub const RECORD_HEADER_LEN: usize = 8;

const KIND_INSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_UPDATE: u8 = 3;
// Version 2 on:
const KIND_INSERT_ITEMS: u8 = 4;
const KIND_UPDATE_META: u8 = 5;
const KIND_PATCH_META: u8 = 6;
const KIND_SET_EXPIRY: u8 = 7;
const KIND_FIELD_INDEX: u8 = 8;
/// The highest kind a version-1 log may hold.
const V1_LAST_KIND: u8 = KIND_UPDATE;
const FLAG_CONTINUED: u8 = 1;
/// Per-item flags of an insert-items record: has metadata; has an expiry.
const ITEM_META: u8 = 1;
const ITEM_EXPIRES: u8 = 2;

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
    /// A batch of new vectors with their metadata and expiry (version 2 on), all valid and
    /// absent from the index when logged. Item `i` is `ids[i]`, row `i` of `vectors`,
    /// `metadata[i]` and `expires_at[i]`.
    InsertItems {
        /// Their ids.
        ids: Vec<u64>,
        /// Vector dimension.
        dim: usize,
        /// `ids.len()` vectors of `dim` components, row-major.
        vectors: Vec<f32>,
        /// Metadata per item (`None`: none given).
        metadata: Vec<Option<Metadata>>,
        /// Expiry per item, unix ms (`None`: never).
        expires_at: Vec<Option<u64>>,
    },
    /// A vector and a metadata map replacing those of `id` (version 2 on); its expiry is kept.
    UpdateWithMetadata {
        /// The id.
        id: u64,
        /// The new vector.
        vector: Vec<f32>,
        /// The new metadata.
        metadata: Metadata,
    },
    /// One patch applied to the metadata of each of `ids` (version 2 on), all present when
    /// logged; the patched maps passed the limits.
    PatchMetadata {
        /// The ids.
        ids: Vec<u64>,
        /// The patch.
        patch: MetaPatch,
    },
    /// A new expiry for each of `ids` (version 2 on), all present when logged.
    SetExpiry {
        /// The ids.
        ids: Vec<u64>,
        /// Unix ms from which they are expired (`None`: never).
        expires_at: Option<u64>,
    },
    /// A field index created or dropped (version 2 on).
    FieldIndex {
        /// The field.
        field: String,
        /// `true`: created; `false`: dropped.
        create: bool,
    },
}

/// One item of an insert-items group: id, vector, encoded metadata (if any), expiry.
pub(crate) type ItemRef<'a> = (u64, &'a [f32], Option<&'a [u8]>, Option<u64>);

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
    /// Format version stored in the header.
    pub version: u32,
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
        WalRecord::InsertItems { ids, dim, vectors, metadata, expires_at } => {
            let encoded: Vec<Option<Vec<u8>>> = (0..ids.len())
                .map(|i| {
                    metadata.get(i).and_then(Option::as_ref).map(|m| {
                        let mut bytes = Vec::with_capacity(metadata::encoded_len(m));
                        metadata::encode(m, &mut bytes);
                        bytes
                    })
                })
                .collect();
            let refs: Vec<ItemRef<'_>> = ids
                .iter()
                .zip(&encoded)
                .enumerate()
                .map(|(i, (&id, meta))| {
                    // A record whose lengths disagree encodes to bytes that do not decode.
                    let row =
                        i.checked_mul(*dim).and_then(|a| vectors.get(a..a.checked_add(*dim)?)).unwrap_or(&[]);
                    (id, row, meta.as_deref(), expires_at.get(i).copied().flatten())
                })
                .collect();
            put_insert_items(&mut p, &refs, *dim, flags);
        }
        WalRecord::UpdateWithMetadata { id, vector, metadata: meta } => {
            p.put_u8(KIND_UPDATE_META);
            p.put_u8(flags);
            p.put_u64(*id);
            p.put_u32(vector.len() as u32);
            put_f32s(&mut p, vector);
            put_meta(&mut p, meta);
        }
        WalRecord::PatchMetadata { ids, patch } => put_patch(&mut p, ids, patch, flags),
        WalRecord::SetExpiry { ids, expires_at } => put_set_expiry(&mut p, ids, *expires_at, flags),
        WalRecord::FieldIndex { field, create } => {
            p.put_u8(KIND_FIELD_INDEX);
            p.put_u8(flags);
            p.put_u8(u8::from(*create));
            put_str(&mut p, field);
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

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.put_u32(s.len() as u32);
    p.extend_from_slice(s.as_bytes());
}

fn put_meta(p: &mut Vec<u8>, meta: &Metadata) {
    let mut bytes = Vec::with_capacity(metadata::encoded_len(meta));
    metadata::encode(meta, &mut bytes);
    p.put_u32(bytes.len() as u32);
    p.extend_from_slice(&bytes);
}

/// Bytes of one item of an insert-items record beyond its id and vector.
fn item_extra_len(meta: Option<&[u8]>, expires_at: Option<u64>) -> usize {
    1 + expires_at.map_or(0, |_| 8) + meta.map_or(0, |m| 4 + m.len())
}

fn put_insert_items(p: &mut Vec<u8>, items: &[ItemRef<'_>], dim: usize, flags: u8) {
    p.put_u8(KIND_INSERT_ITEMS);
    p.put_u8(flags);
    p.put_u32(items.len() as u32);
    p.put_u32(dim as u32);
    for (id, ..) in items {
        p.put_u64(*id);
    }
    for (_, v, ..) in items {
        put_f32s(p, v);
    }
    for (_, _, meta, expires_at) in items {
        let f =
            if meta.is_some() { ITEM_META } else { 0 } | if expires_at.is_some() { ITEM_EXPIRES } else { 0 };
        p.put_u8(f);
        if let Some(t) = expires_at {
            p.put_u64(*t);
        }
        if let Some(m) = meta {
            p.put_u32(m.len() as u32);
            p.extend_from_slice(m);
        }
    }
}

fn put_patch(p: &mut Vec<u8>, ids: &[u64], patch: &MetaPatch, flags: u8) {
    p.put_u8(KIND_PATCH_META);
    p.put_u8(flags);
    p.put_u32(ids.len() as u32);
    for &id in ids {
        p.put_u64(id);
    }
    put_meta(p, &patch.set);
    p.put_u32(patch.remove.len() as u32);
    for k in &patch.remove {
        put_str(p, k);
    }
}

fn put_set_expiry(p: &mut Vec<u8>, ids: &[u64], expires_at: Option<u64>, flags: u8) {
    p.put_u8(KIND_SET_EXPIRY);
    p.put_u8(flags);
    p.put_u32(ids.len() as u32);
    for &id in ids {
        p.put_u64(id);
    }
    match expires_at {
        Some(t) => {
            p.put_u8(1);
            p.put_u64(t);
        }
        None => p.put_u8(0),
    }
}

/// Splits `0..sizes.len()` into consecutive runs whose sizes (plus `fixed`) fit in
/// `max_payload`, each run holding at least one item.
fn runs(sizes: impl Iterator<Item = usize>, fixed: usize, max_payload: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut len, mut i) = (0, fixed, 0);
    for size in sizes {
        if i > start && len + size > max_payload {
            out.push(start..i);
            start = i;
            len = fixed;
        }
        len += size;
        i += 1;
    }
    if i > start {
        out.push(start..i);
    }
    out
}

/// Appends framed insert-items records for `items` to `out`, as a group of records of at most
/// `max_payload` bytes each (at least one item per record).
pub(crate) fn encode_insert_items_group(
    out: &mut Vec<u8>,
    items: &[ItemRef<'_>],
    dim: usize,
    max_payload: usize,
) {
    let sizes = items.iter().map(|(_, _, m, e)| 8 + 4 * dim + item_extra_len(*m, *e));
    let runs = runs(sizes, insert_payload_len(0, dim), max_payload);
    let mut p = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let continued = i + 1 < runs.len();
        p.clear();
        put_insert_items(&mut p, &items[r.clone()], dim, if continued { FLAG_CONTINUED } else { 0 });
        frame(out, &p);
    }
}

/// Appends framed records of one kind over many ids (delete, metadata patch, expiry), as a
/// group of records of at most `max_payload` bytes each.
pub(crate) fn encode_ids_group(
    out: &mut Vec<u8>,
    ids: &[u64],
    max_payload: usize,
    make: impl Fn(Vec<u64>) -> WalRecord,
) {
    let probe = encode_record(&make(Vec::new()), false).len() - RECORD_HEADER_LEN;
    let per_record = (max_payload.saturating_sub(probe) / 8).max(1);
    let chunks: Vec<&[u64]> = ids.chunks(per_record).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend(encode_record(&make(chunk.to_vec()), i + 1 < chunks.len()));
    }
}

fn read_str(r: &mut Reader<'_>, what: &str) -> Result<String> {
    let len = r.count(1)?;
    String::from_utf8(r.take(len)?.to_vec())
        .map_err(|_| PersistError::corrupt(format!("{what} is not UTF-8")))
}

fn read_meta(r: &mut Reader<'_>) -> Result<Metadata> {
    let len = r.count(1)?;
    metadata::decode(r.take(len)?).map_err(|e| PersistError::corrupt(format!("log record metadata: {e}")))
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<u64>> {
    let count = r.count(8)?;
    Ok(r.take(count * 8)?.chunks_exact(8).map(le_u64).collect())
}

fn decode_payload(p: &[u8], version: u32) -> Result<(WalRecord, bool)> {
    let mut r = Reader::new(p, "log record");
    let kind = r.u8()?;
    let flags = r.u8()?;
    if flags & !FLAG_CONTINUED != 0 {
        return Err(PersistError::corrupt(format!("unknown record flags {flags:#x}")));
    }
    if version < 2 && kind > V1_LAST_KIND {
        return Err(PersistError::corrupt(format!("record kind {kind} in a version-{version} log")));
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
        KIND_INSERT_ITEMS => {
            let count = r.u32()? as usize;
            let dim = r.u32()? as usize;
            if dim == 0 {
                return Err(PersistError::corrupt("insert record with dimension 0"));
            }
            // Ids, vectors and at least the flags byte of every item must be there.
            let need = dim.checked_mul(4).and_then(|d| d.checked_add(9)).and_then(|x| x.checked_mul(count));
            if need.is_none_or(|need| need > r.remaining()) {
                return Err(PersistError::corrupt("insert record length does not match its counts"));
            }
            let ids = r.take(count * 8)?.chunks_exact(8).map(le_u64).collect();
            let vectors = f32s(r.take(count * dim * 4)?);
            let mut metadata = Vec::with_capacity(count);
            let mut expires_at = Vec::with_capacity(count);
            for _ in 0..count {
                let f = r.u8()?;
                if f & !(ITEM_META | ITEM_EXPIRES) != 0 {
                    return Err(PersistError::corrupt(format!("unknown item flags {f:#x}")));
                }
                expires_at.push(if f & ITEM_EXPIRES != 0 { Some(r.u64()?) } else { None });
                metadata.push(if f & ITEM_META != 0 { Some(read_meta(&mut r)?) } else { None });
            }
            WalRecord::InsertItems { ids, dim, vectors, metadata, expires_at }
        }
        KIND_UPDATE_META => {
            let id = r.u64()?;
            let dim = r.count(4)?;
            if dim == 0 {
                return Err(PersistError::corrupt("update record with dimension 0"));
            }
            let vector = f32s(r.take(dim * 4)?);
            WalRecord::UpdateWithMetadata { id, vector, metadata: read_meta(&mut r)? }
        }
        KIND_PATCH_META => {
            let ids = read_ids(&mut r)?;
            let set = read_meta(&mut r)?;
            let n = r.count(4)?;
            let mut remove = Vec::with_capacity(n);
            for _ in 0..n {
                remove.push(read_str(&mut r, "a removed metadata key")?);
            }
            WalRecord::PatchMetadata { ids, patch: MetaPatch { set, remove } }
        }
        KIND_SET_EXPIRY => {
            let ids = read_ids(&mut r)?;
            let expires_at = match r.u8()? {
                0 => None,
                1 => Some(r.u64()?),
                b => return Err(PersistError::corrupt(format!("expiry tag {b}"))),
            };
            WalRecord::SetExpiry { ids, expires_at }
        }
        KIND_FIELD_INDEX => {
            let create = match r.u8()? {
                0 => false,
                1 => true,
                b => return Err(PersistError::corrupt(format!("field index operation {b}"))),
            };
            WalRecord::FieldIndex { field: read_str(&mut r, "a field name")?, create }
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

/// Checks a log header and returns its version and generation.
fn read_header(bytes: &[u8]) -> Result<(u32, u64)> {
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
    if version != WAL_MIN_VERSION {
        check_version("log", version, WAL_VERSION)?;
    }
    Ok((version, generation))
}

/// Reads a whole log file. A damaged header is an error; damaged records end the valid prefix
/// (see [`WalContents`]). Never panics, and allocates at most a small multiple of the input.
pub fn read_records_from_bytes(bytes: &[u8]) -> Result<WalContents> {
    let (version, generation) = read_header(bytes)?;
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
        match decode_payload(payload, version) {
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
    Ok(WalContents { version, generation, entries, valid_len: pos as u64, committed_len, stop })
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
        assert_eq!(with_version(WAL_MIN_VERSION).unwrap().version, 1);
        assert_eq!(with_version(WAL_VERSION).unwrap().version, WAL_VERSION);
        let e = with_version(1 | 1 << 16).unwrap_err();
        assert!(matches!(e, PersistError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("log header: version field 65537"), "{e}");
        assert!(matches!(with_version(0), Err(PersistError::Corrupt { .. })));
    }

    fn meta(pairs: &[(&str, crate::metadata::MetaValue)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn v2_records() -> Vec<WalRecord> {
        use crate::metadata::MetaValue;
        vec![
            WalRecord::InsertItems {
                ids: vec![1, 2, 3],
                dim: 2,
                vectors: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                metadata: vec![Some(meta(&[("lang", "en".into())])), None, Some(Metadata::new())],
                expires_at: vec![None, Some(1_000), Some(u64::MAX)],
            },
            WalRecord::UpdateWithMetadata {
                id: 2,
                vector: vec![7.0, 8.0],
                metadata: meta(&[("tags", MetaValue::from(vec!["a", "b"])), ("year", 2001.into())]),
            },
            WalRecord::PatchMetadata {
                ids: vec![1, 3],
                patch: MetaPatch::new().set("x", 1.5).remove("lang").remove("gone"),
            },
            WalRecord::PatchMetadata { ids: vec![], patch: MetaPatch::new() },
            WalRecord::SetExpiry { ids: vec![1], expires_at: Some(5) },
            WalRecord::SetExpiry { ids: vec![2, 3], expires_at: None },
            WalRecord::FieldIndex { field: "lang".into(), create: true },
            WalRecord::FieldIndex { field: "année".into(), create: false },
        ]
    }

    #[test]
    fn version_2_records_roundtrip_and_reencode() {
        let records = v2_records();
        let with_flags: Vec<(WalRecord, bool)> =
            records.iter().enumerate().map(|(i, r)| (r.clone(), i % 3 == 1)).collect();
        let bytes = log(&with_flags);
        let c = read_records_from_bytes(&bytes).unwrap();
        assert_eq!(c.version, WAL_VERSION);
        assert!(c.stop.is_none());
        let got: Vec<WalRecord> = c.entries.iter().map(|e| e.record.clone()).collect();
        assert_eq!(got, records);
        let mut pos = WAL_HEADER_LEN;
        for (e, (r, cont)) in c.entries.iter().zip(&with_flags) {
            assert_eq!(e.continued, *cont);
            assert_eq!(&bytes[pos..e.end as usize], &encode_record(r, *cont)[..], "canonical");
            pos = e.end as usize;
        }
    }

    /// A version-1 log holds the first three kinds only: a later kind in it is damage.
    #[test]
    fn version_1_logs_read_old_kinds_and_refuse_new_ones() {
        let mut h = encode_header(4);
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&h[..WAL_HEADER_LEN - 4]);
        h[WAL_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        let old = WalRecord::Delete { ids: vec![4] };
        let mut b = h.clone();
        b.extend(encode_record(&old, false));
        let good = b.len() as u64;
        b.extend(encode_record(&v2_records()[4], false));
        let c = read_records_from_bytes(&b).unwrap();
        assert_eq!((c.version, c.generation, c.committed_len), (1, 4, good));
        assert_eq!(c.entries.len(), 1);
        match c.stop {
            Some(WalStop::BadPayload { offset, reason }) => {
                assert_eq!(offset, good);
                assert!(reason.contains("record kind 7 in a version-1 log"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_version_2_payloads_are_refused() {
        // Every truncation of each payload, with the frame's checksum fixed, fails to parse.
        for r in v2_records() {
            let framed = encode_record(&r, false);
            let payload = &framed[RECORD_HEADER_LEN..];
            for cut in 0..payload.len() {
                assert!(decode_payload(&payload[..cut], WAL_VERSION).is_err(), "{r:?} cut at {cut}");
            }
            let mut longer = payload.to_vec();
            longer.push(0);
            assert!(decode_payload(&longer, WAL_VERSION).is_err(), "{r:?} with a trailing byte");
        }
        // Unknown per-item flags, expiry tags and field operations.
        let items = encode_record(&v2_records()[0], false);
        let mut bad = items[RECORD_HEADER_LEN..].to_vec();
        // Kind, flags, count, dim, 3 ids, 3 vectors of 2: then item 0's flags.
        let flags_at = 2 + 4 + 4 + 3 * 8 + 3 * 2 * 4;
        assert_eq!(bad[flags_at], ITEM_META);
        bad[flags_at] = 4;
        let e = decode_payload(&bad, WAL_VERSION).unwrap_err();
        assert!(e.to_string().contains("unknown item flags 0x4"), "{e}");
        let exp = encode_record(&WalRecord::SetExpiry { ids: vec![], expires_at: None }, false);
        let mut bad = exp[RECORD_HEADER_LEN..].to_vec();
        *bad.last_mut().unwrap() = 2;
        assert!(decode_payload(&bad, WAL_VERSION).unwrap_err().to_string().contains("expiry tag 2"));
        // Metadata bytes that do not decode.
        let upd = encode_record(&v2_records()[1], false);
        let mut bad = upd[RECORD_HEADER_LEN..].to_vec();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let e = decode_payload(&bad, WAL_VERSION).unwrap_err();
        assert!(e.to_string().contains("log record metadata"), "{e}");
    }

    /// Every truncation and every single-byte flip of a log of version-2 records reads without
    /// panicking, and what it yields is a prefix of what was written.
    #[test]
    fn damaged_version_2_logs_yield_a_prefix() {
        let records = v2_records();
        let with_flags: Vec<(WalRecord, bool)> = records.iter().map(|r| (r.clone(), false)).collect();
        let full = log(&with_flags);
        let check = |b: &[u8], what: &str| {
            if let Ok(c) = read_records_from_bytes(b) {
                assert!(c.entries.len() <= records.len(), "{what}");
                for (e, r) in c.entries.iter().zip(&records) {
                    assert_eq!(&e.record, r, "{what}");
                }
            }
        };
        for cut in 0..full.len() {
            check(&full[..cut], &format!("cut at {cut}"));
        }
        for i in 0..full.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut b = full.clone();
                b[i] ^= mask;
                check(&b, &format!("flip {mask:#x} at {i}"));
            }
        }
    }

    #[test]
    fn item_and_id_groups_split_by_size() {
        let vs: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32; 3]).collect();
        let meta_bytes: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let mut b = Vec::new();
                metadata::encode(&meta(&[("k", "v".repeat(i).into())]), &mut b);
                b
            })
            .collect();
        let items: Vec<ItemRef<'_>> = (0..10)
            .map(|i| {
                let m = (i % 2 == 0).then(|| meta_bytes[i].as_slice());
                (i as u64, vs[i].as_slice(), m, (i % 3 == 0).then_some(i as u64))
            })
            .collect();
        let mut b = encode_header(0);
        encode_insert_items_group(&mut b, &items, 3, 80);
        let c = read_records_from_bytes(&b).unwrap();
        assert!(c.entries.len() > 2, "{} records", c.entries.len());
        assert_eq!(c.committed_len, b.len() as u64);
        let mut ids = vec![];
        for (i, e) in c.entries.iter().enumerate() {
            assert_eq!(e.continued, i + 1 < c.entries.len());
            let WalRecord::InsertItems { ids: these, metadata, expires_at, .. } = &e.record else {
                panic!("{:?}", e.record)
            };
            for (j, id) in these.iter().enumerate() {
                let k = *id as usize;
                assert_eq!(metadata[j].is_some(), k.is_multiple_of(2));
                assert_eq!(expires_at[j], k.is_multiple_of(3).then_some(k as u64));
            }
            ids.extend(these.iter().copied());
        }
        assert_eq!(ids, (0..10).collect::<Vec<u64>>());

        let mut b = encode_header(0);
        let all: Vec<u64> = (0..100).collect();
        encode_ids_group(&mut b, &all, 2 + 4 + 8 * 30, |ids| WalRecord::Delete { ids });
        let c = read_records_from_bytes(&b).unwrap();
        assert_eq!(c.entries.len(), 4);
        let got: Vec<u64> = c
            .entries
            .iter()
            .flat_map(|e| match &e.record {
                WalRecord::Delete { ids } => ids.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(got, all);
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
