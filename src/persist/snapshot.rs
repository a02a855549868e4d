//! The snapshot file format (see `docs/format.md`) and [`Index::save`] / [`Index::load`].
//!
//! A snapshot is a 16-byte header followed by three sections (`PARM`, `NODE`, `ENTR`), each
//! with its length and a CRC32. The encoding is canonical: the same index always gives the same
//! bytes, and saving a loaded index reproduces the file it was loaded from.

use super::backend::{Backend, FileBackend};
use super::codec::{Put, Reader};
use super::error::{check_version, PersistError, Result};
use crate::config::{IndexConfig, Storage};
use crate::distance::Metric;
use crate::index::Index;
use crate::raw::RawNode;
use crate::store::MAX_LEVEL;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// First eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = [0x89, b'H', b'N', b'S', b'W', b'\r', b'\n', 0x1A];
/// The snapshot format version this build writes. It also reads version 1 (no `META`
/// section: every item loads without metadata or expiry).
pub const SNAPSHOT_VERSION: u32 = 2;

const HEADER_LEN: usize = 16;
/// Section header: tag (4), payload length (8), CRC32 (4).
const SECTION_HEADER_LEN: usize = 16;
const PARAMS_LEN: usize = 39;
/// `Storage::Sq8` appends to the params: `rerank` (u64), a trained flag (u8) and, if trained,
/// the length (u32) and bytes of [`Sq8Params::to_bytes`](crate::distance::sq8::Sq8Params::to_bytes).
const SQ8_PARAMS_MIN: usize = 9;
const SECTIONS: [(&[u8; 4], &str); 3] = [(b"PARM", "params"), (b"NODE", "nodes"), (b"ENTR", "entry")];
/// Metadata, expiry, limits and indexed field names (version 2 on).
const META_SECTION: (&[u8; 4], &str) = (b"META", "metadata");
/// `META` node flags: has side data; has an expiry.
const META_PRESENT: u8 = 1;
const META_EXPIRES: u8 = 2;

// ----- encoding ------------------------------------------------------------------------------------

/// Encodes `index` as a snapshot, or fails with [`PersistError::Corrupt`] if the index's id
/// map is inconsistent: two live nodes with one id, or a live node whose id the map does not
/// name. Such an index would otherwise save and load as if it were fine, hiding the damage.
///
/// Meant for a quiescent index. Under concurrent writes the snapshot is still loadable: nodes
/// still being inserted are left out (and links to them dropped), but which concurrent writes
/// it contains is unspecified. An update or delete in flight can look like an inconsistency
/// while the export reads node flags without locks; each suspect is re-checked under its id's
/// lock, which every id change holds while it sets the flags, so only real damage is reported.
pub fn try_save_to_bytes(index: &Index) -> Result<Vec<u8>> {
    let export = export(index);
    if let Some(first) = export.inconsistent.first() {
        return Err(PersistError::corrupt(format!(
            "refusing to save an index with an inconsistent id map ({} live nodes the id map does \
             not name; first: {first})",
            export.inconsistent.len()
        )));
    }
    Ok(encode(index, &export))
}

/// Encodes `index` as a snapshot; never fails.
///
/// Unlike [`try_save_to_bytes`] (and [`Index::save`]), an inconsistent id map is not reported:
/// of several live nodes with one id, the one the id map names is kept (the others are saved as
/// deleted), which is right for an update in flight but hides corruption. Prefer
/// [`try_save_to_bytes`] wherever the error can be handled.
pub fn save_to_bytes(index: &Index) -> Vec<u8> {
    encode(index, &export(index))
}

fn encode(index: &Index, export: &Export) -> Vec<u8> {
    let cfg = index.config();
    let mut out = Vec::with_capacity(HEADER_LEN + 3 * SECTION_HEADER_LEN + PARAMS_LEN + 5);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.put_u32(SNAPSHOT_VERSION);
    out.put_u32(0);
    push_section(&mut out, SECTIONS[0].0, &encode_params(cfg, index.sq8_params()));
    push_section(&mut out, SECTIONS[1].0, &encode_nodes(&export.nodes));
    let mut e = Vec::with_capacity(6);
    match export.entry {
        Some((node, level)) => {
            e.put_u8(1);
            e.put_u32(node);
            e.put_u8(level as u8);
        }
        None => e.put_u8(0),
    }
    push_section(&mut out, SECTIONS[2].0, &e);
    push_section(&mut out, META_SECTION.0, &encode_meta(index, export));
    out
}

fn encode_meta(index: &Index, export: &Export) -> Vec<u8> {
    let (limits, fields, sides) = crate::items::export_side(index, &export.old_of);
    let mut p = Vec::new();
    p.put_u64(limits.max_bytes as u64);
    p.put_u64(limits.max_key_len as u64);
    p.put_u64(limits.max_list_len as u64);
    p.put_u32(fields.len() as u32);
    for f in &fields {
        p.put_u32(f.len() as u32);
        p.extend_from_slice(f.as_bytes());
    }
    p.put_u32(sides.len() as u32);
    for (side, node) in sides.iter().zip(&export.nodes) {
        // A node saved as deleted (a duplicate live id resolved by the export) has no side data.
        match side.as_ref().filter(|_| !node.deleted) {
            None => p.put_u8(0),
            Some(side) => {
                let flags = META_PRESENT | if side.expires_at.is_some() { META_EXPIRES } else { 0 };
                p.put_u8(flags);
                if let Some(at) = side.expires_at {
                    p.put_u64(at);
                }
                p.put_u32(side.meta.len() as u32);
                p.extend_from_slice(&side.meta);
            }
        }
    }
    p
}

fn push_section(out: &mut Vec<u8>, tag: &[u8; 4], payload: &[u8]) {
    let len = payload.len() as u64;
    out.extend_from_slice(tag);
    out.put_u64(len);
    out.put_u32(section_crc(tag, len, payload));
    out.extend_from_slice(payload);
}

fn section_crc(tag: &[u8; 4], len: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(tag);
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

pub(crate) fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::InnerProduct => 2,
    }
}

fn metric_from(code: u8) -> Option<Metric> {
    match code {
        0 => Some(Metric::L2),
        1 => Some(Metric::Cosine),
        2 => Some(Metric::InnerProduct),
        _ => None,
    }
}

fn storage_code(s: Storage) -> u8 {
    match s {
        Storage::F32 => 0,
        Storage::U8 => 1,
        Storage::F16 => 2,
        Storage::Sq8 => 3,
    }
}

fn storage_from(code: u8) -> Option<Storage> {
    match code {
        0 => Some(Storage::F32),
        1 => Some(Storage::U8),
        2 => Some(Storage::F16),
        3 => Some(Storage::Sq8),
        _ => None,
    }
}

fn encode_params(cfg: &IndexConfig, sq8: Option<&crate::distance::sq8::Sq8Params>) -> Vec<u8> {
    let mut p = Vec::with_capacity(PARAMS_LEN);
    // Every value fits: `validate` bounds dim, m, m0 and ef far below u32::MAX.
    p.put_u32(cfg.dim as u32);
    p.put_u8(metric_code(cfg.metric));
    p.put_u8(storage_code(cfg.storage));
    p.put_u32(cfg.m as u32);
    p.put_u32(cfg.m0 as u32);
    p.put_u32(cfg.ef_construction as u32);
    p.put_u32(cfg.ef_search as u32);
    p.put_u64(cfg.seed);
    match cfg.max_elements {
        Some(n) => {
            p.put_u8(1);
            p.put_u64(n as u64);
        }
        None => {
            p.put_u8(0);
            p.put_u64(0);
        }
    }
    if cfg.storage == Storage::Sq8 {
        p.put_u64(cfg.rerank as u64);
        match sq8 {
            Some(params) => {
                let bytes = params.to_bytes();
                p.put_u8(1);
                p.put_u32(bytes.len() as u32);
                p.extend_from_slice(&bytes);
            }
            None => p.put_u8(0),
        }
    }
    p
}

fn encode_nodes(nodes: &[RawNode]) -> Vec<u8> {
    let bytes: usize = nodes
        .iter()
        .map(|n| 10 + n.vector.len() + n.links.iter().map(|l| 4 + 4 * l.len()).sum::<usize>())
        .sum();
    let mut p = Vec::with_capacity(4 + bytes);
    p.put_u32(nodes.len() as u32);
    for n in nodes {
        p.put_u8(u8::from(n.deleted));
        p.put_u8(n.level as u8);
        p.put_u64(n.id);
        p.extend_from_slice(&n.vector);
        for list in &n.links {
            p.put_u32(list.len() as u32);
            for &t in list {
                p.put_u32(t);
            }
        }
    }
    p
}

/// What [`export`] found.
struct Export {
    nodes: Vec<RawNode>,
    entry: Option<(u32, usize)>,
    /// Live nodes the id map does not name, re-checked under the id's lock: id-map corruption.
    inconsistent: Vec<String>,
    /// The index's node number of each exported node.
    old_of: Vec<u32>,
}

/// The index's fully linked nodes in node order, renumbered densely if there are holes, with
/// links to missing nodes dropped, duplicate live ids resolved through the id map, and an entry
/// point on the top level: a loadable graph even when writers ran during the export. Live nodes
/// the id map does not name (re-checked under the id's lock) are listed in `inconsistent`.
fn export(index: &Index) -> Export {
    // Pinned throughout, so no slot read here is retired and reused for another id before the
    // checks below (`store.rs`, "Slot reuse").
    let _pin = crate::epoch::pin();
    let count = index.raw_node_count();
    let mut nodes: Vec<RawNode> = Vec::with_capacity(count as usize);
    let mut renumber: Vec<u32> = Vec::with_capacity(count as usize);
    // Tombstones are left out (a snapshot holds no deleted vector); a link to one is replaced by
    // the tombstone's own neighbours, so paths through it survive the save.
    let mut tombstones: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
    for n in 0..count {
        match index.raw_node(n) {
            Some(node) if node.deleted => {
                tombstones.insert(n, node.links);
                renumber.push(u32::MAX);
            }
            Some(node) => {
                renumber.push(nodes.len() as u32);
                nodes.push(node);
            }
            None => renumber.push(u32::MAX),
        }
    }
    let level_of: Vec<usize> = nodes.iter().map(|n| n.level).collect();
    let cfg = index.config();
    for (new, node) in nodes.iter_mut().enumerate() {
        for (l, list) in node.links.iter_mut().enumerate() {
            let cap = if l == 0 { cfg.m0 } else { cfg.m };
            let mut out: Vec<u32> = Vec::with_capacity(list.len());
            let keep = |t: u32, out: &mut Vec<u32>| {
                let Some(&m) = renumber.get(t as usize) else { return };
                if m != u32::MAX && m as usize != new && level_of[m as usize] >= l && !out.contains(&m) {
                    out.push(m);
                }
            };
            for &t in list.iter() {
                keep(t, &mut out);
            }
            for &t in list.iter() {
                if let Some(via) = tombstones.get(&t).and_then(|lists| lists.get(l)) {
                    for &u in via {
                        if out.len() < cap {
                            keep(u, &mut out);
                        }
                    }
                }
            }
            *list = out;
        }
    }
    let old_of: Vec<u32> =
        renumber.iter().enumerate().filter(|(_, &m)| m != u32::MAX).map(|(o, _)| o as u32).collect();
    // A live node the id map does not name is either an update or delete in flight or
    // corruption (two live nodes with one id); `raw_id_settled` looks under the id's lock,
    // after which an id change in flight has set its flags.
    let unsettled: Vec<usize> = (0..nodes.len())
        .filter(|&i| !nodes[i].deleted && !index.raw_id_settled(old_of[i], nodes[i].id))
        .collect();
    let inconsistent = unsettled
        .iter()
        .map(|&i| {
            format!("node {} is live with id {}, which the id map does not name", old_of[i], nodes[i].id)
        })
        .collect();
    // Two live nodes with one id: keep the one the id map names.
    let mut live: HashMap<u64, usize> = HashMap::new();
    for i in 0..nodes.len() {
        if nodes[i].deleted {
            continue;
        }
        if let Some(&j) = live.get(&nodes[i].id) {
            let current = index.ids.get(&index.store, nodes[i].id);
            let drop = if current == Some(old_of[i]) { j } else { i };
            nodes[drop].deleted = true;
            if drop == j {
                live.insert(nodes[i].id, i);
            }
        } else {
            live.insert(nodes[i].id, i);
        }
    }
    let top = level_of.iter().copied().max();
    let entry = index
        .raw_entry()
        .and_then(|(n, l)| renumber.get(n as usize).map(|&m| (m, l)))
        .filter(|&(m, l)| m != u32::MAX && Some(l) == top && level_of[m as usize] == l)
        .or_else(|| {
            let top = top?;
            level_of.iter().position(|&l| l == top).map(|i| (i as u32, top))
        });
    Export { nodes, entry, inconsistent, old_of }
}

/// The parts of `index` that [`rebuild`] turns back into an index: its nodes as [`export`]
/// gives them (tombstones dropped, renumbered densely), the entry point, and the metadata
/// section's payload. For [`Index::to_storage`](crate::Index::to_storage), which re-encodes
/// the nodes' vectors in between.
pub(crate) fn export_parts(index: &Index) -> (Vec<RawNode>, Option<(u32, usize)>, Vec<u8>) {
    let export = export(index);
    let meta = encode_meta(index, &export);
    (export.nodes, export.entry, meta)
}

/// Builds an index from [`export_parts`] or a snapshot's decoded sections (vectors in `cfg`'s
/// persisted form; `meta`: the metadata payload, absent in version 1).
pub(crate) fn rebuild(
    cfg: IndexConfig,
    sq8: Option<crate::distance::sq8::Sq8Params>,
    nodes: Vec<RawNode>,
    entry: Option<(u32, usize)>,
    meta: Option<&[u8]>,
) -> Result<Index> {
    let meta = meta.map(|p| decode_meta(p, &nodes)).transpose()?;
    let nodes: Vec<Option<RawNode>> = nodes.into_iter().map(Some).collect();
    let index = Index::from_raw(cfg, sq8, nodes, entry).map_err(PersistError::corrupt)?;
    if let Some((limits, fields, sides)) = meta {
        // Field indexes are rebuilt from the metadata, not stored (RFC 0003).
        crate::items::restore_side(&index, limits, fields, sides);
    }
    // Tombstones were dropped; re-link anything that only they reached.
    index.repair();
    Ok(index)
}

// ----- decoding ------------------------------------------------------------------------------------

/// Decodes a snapshot. Never panics: damaged or hostile input gives an error, and no count read
/// from the input makes it allocate more than a small multiple of the input's size before the
/// index itself is built (whose size is that of the graph the input really describes).
pub fn load_from_bytes(bytes: &[u8]) -> Result<Index> {
    let version = check_header(bytes)?;
    let mut pos = HEADER_LEN;
    let mut payloads: [&[u8]; 3] = [&[]; 3];
    for (i, (tag, name)) in SECTIONS.iter().enumerate() {
        let (payload, next) = read_section(bytes, pos, tag, name)?;
        payloads[i] = payload;
        pos = next;
    }
    let mut meta_payload = None;
    if version >= 2 {
        let (payload, next) = read_section(bytes, pos, META_SECTION.0, META_SECTION.1)?;
        meta_payload = Some(payload);
        pos = next;
    }
    if pos != bytes.len() {
        return Err(PersistError::corrupt(format!("{} bytes after the last section", bytes.len() - pos)));
    }
    let (cfg, sq8) = decode_params(payloads[0])?;
    let nodes = decode_nodes(payloads[1], &cfg)?;
    let entry = decode_entry(payloads[2])?;
    let top = nodes.iter().map(|n| n.level).max();
    if let Some((_, level)) = entry {
        if Some(level) != top {
            return Err(PersistError::corrupt(format!("entry point on level {level}, top level is {top:?}")));
        }
    }
    rebuild(cfg, sq8, nodes, entry, meta_payload)
}

/// Checks magic, version and flags; returns the version (1 or 2).
fn check_header(bytes: &[u8]) -> Result<u32> {
    let magic_len = bytes.len().min(SNAPSHOT_MAGIC.len());
    if bytes[..magic_len] != SNAPSHOT_MAGIC[..magic_len] {
        return Err(PersistError::BadMagic { kind: "snapshot" });
    }
    if bytes.len() < HEADER_LEN {
        return Err(PersistError::Truncated {
            section: "header",
            needed: HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    }
    let mut r = Reader::new(&bytes[8..HEADER_LEN], "header");
    let version = r.u32()?;
    // Version 1 differs only by the missing `META` section.
    if version != 1 {
        check_version("snapshot", version, SNAPSHOT_VERSION)?;
    }
    let flags = r.u32()?;
    if flags != 0 {
        return Err(PersistError::corrupt(format!("unknown header flags {flags:#x}")));
    }
    Ok(version)
}

type DecodedMeta = (crate::metadata::MetaLimits, Vec<String>, Vec<(u32, crate::items::Side)>);

fn decode_meta(p: &[u8], nodes: &[RawNode]) -> Result<DecodedMeta> {
    let mut r = Reader::new(p, "metadata");
    let mut limit = |what: &str| -> Result<usize> {
        usize::try_from(r.u64()?).map_err(|_| PersistError::corrupt(format!("metadata {what} too large")))
    };
    let limits = crate::metadata::MetaLimits::default()
        .max_bytes(limit("max_bytes")?)
        .max_key_len(limit("max_key_len")?)
        .max_list_len(limit("max_list_len")?);
    let field_count = r.count(4)?;
    let mut fields = Vec::with_capacity(field_count);
    for i in 0..field_count {
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| PersistError::corrupt(format!("indexed field {i}: not UTF-8")))?;
        if name.is_empty() || name.starts_with('$') || fields.iter().any(|f: &String| f == name) {
            return Err(PersistError::corrupt(format!("indexed field {i}: bad or repeated name {name:?}")));
        }
        fields.push(name.to_owned());
    }
    let count = r.count(1)?;
    if count != nodes.len() {
        return Err(PersistError::corrupt(format!(
            "metadata section has {count} nodes, the nodes section {}",
            nodes.len()
        )));
    }
    let mut sides = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let flags = r.u8()?;
        if flags == 0 {
            continue;
        }
        if flags & META_PRESENT == 0 || flags & !(META_PRESENT | META_EXPIRES) != 0 || node.deleted {
            return Err(PersistError::corrupt(format!("node {n}: bad metadata flags {flags:#x}")));
        }
        let expires_at = if flags & META_EXPIRES != 0 { Some(r.u64()?) } else { None };
        let len = r.count(1)?;
        let bytes = r.take(len)?;
        // `decode` accepts only canonical encodings, so the stored bytes are what `encode`
        // of the decoded map writes.
        crate::metadata::decode(bytes)
            .map_err(|e| PersistError::corrupt(format!("node {n}: metadata: {e}")))?;
        sides.push((n as u32, crate::items::Side { meta: bytes.into(), expires_at }));
    }
    r.finish()?;
    Ok((limits, fields, sides))
}

/// The payload of the section starting at `pos` and the position after it.
fn read_section<'a>(
    bytes: &'a [u8],
    pos: usize,
    tag: &[u8; 4],
    name: &'static str,
) -> Result<(&'a [u8], usize)> {
    let available = bytes.len().saturating_sub(pos);
    if available < SECTION_HEADER_LEN {
        return Err(PersistError::Truncated {
            section: name,
            needed: SECTION_HEADER_LEN as u64,
            available: available as u64,
        });
    }
    let mut r = Reader::new(&bytes[pos..pos + SECTION_HEADER_LEN], name);
    let found = r.take(4)?;
    if found != tag {
        return Err(PersistError::corrupt(format!(
            "expected section `{}`, found tag {found:02x?}",
            String::from_utf8_lossy(tag)
        )));
    }
    let len = r.u64()?;
    let stored = r.u32()?;
    let rest = (available - SECTION_HEADER_LEN) as u64;
    if len > rest {
        return Err(PersistError::Truncated { section: name, needed: len, available: rest });
    }
    let start = pos + SECTION_HEADER_LEN;
    let end = start + len as usize;
    let payload = &bytes[start..end];
    let computed = section_crc(tag, len, payload);
    if computed != stored {
        return Err(PersistError::ChecksumMismatch { section: name, stored, computed });
    }
    Ok((payload, end))
}

fn decode_params(p: &[u8]) -> Result<(IndexConfig, Option<crate::distance::sq8::Sq8Params>)> {
    // The storage code is byte 5; `Storage::Sq8` params are longer (checked below).
    let sq8_storage = p.len() >= 6 && storage_from(p[5]) == Some(Storage::Sq8);
    let ok_len = if sq8_storage { p.len() >= PARAMS_LEN + SQ8_PARAMS_MIN } else { p.len() == PARAMS_LEN };
    if !ok_len {
        return Err(PersistError::corrupt(format!(
            "params section is {} bytes, expected {PARAMS_LEN}{}",
            p.len(),
            if sq8_storage { " plus the sq8 parameters" } else { "" }
        )));
    }
    let mut r = Reader::new(p, "params");
    let dim = r.u32()? as usize;
    let metric = metric_from(r.u8()?).ok_or_else(|| PersistError::corrupt("unknown metric code"))?;
    let storage = storage_from(r.u8()?).ok_or_else(|| PersistError::corrupt("unknown storage code"))?;
    let m = r.u32()? as usize;
    let m0 = r.u32()? as usize;
    let ef_construction = r.u32()? as usize;
    let ef_search = r.u32()? as usize;
    let seed = r.u64()?;
    let max_elements = match (r.u8()?, r.u64()?) {
        (0, 0) => None,
        (1, n) => Some(usize::try_from(n).map_err(|_| PersistError::corrupt("max_elements too large"))?),
        _ => return Err(PersistError::corrupt("bad max_elements field")),
    };
    let mut rerank = 0;
    let mut sq8 = None;
    if sq8_storage {
        rerank = usize::try_from(r.u64()?).map_err(|_| PersistError::corrupt("rerank too large"))?;
        match r.u8()? {
            0 => {}
            1 => {
                let len = r.count(1)?;
                let params = crate::distance::sq8::Sq8Params::from_bytes(r.take(len)?)
                    .map_err(|e| PersistError::corrupt(format!("sq8 parameters: {e}")))?;
                if params.dim() != dim {
                    return Err(PersistError::corrupt(format!(
                        "sq8 parameters have dimension {}, the index {dim}",
                        params.dim()
                    )));
                }
                sq8 = Some(params);
            }
            f => return Err(PersistError::corrupt(format!("bad sq8 trained flag {f}"))),
        }
    }
    r.finish()?;
    let cfg =
        IndexConfig { dim, metric, m, m0, ef_construction, ef_search, seed, max_elements, storage, rerank };
    cfg.validate().map_err(|e| PersistError::corrupt(format!("invalid parameters: {e}")))?;
    Ok((cfg, sq8))
}

fn decode_nodes(p: &[u8], cfg: &IndexConfig) -> Result<Vec<RawNode>> {
    let vec_bytes = crate::raw::persisted_vector_bytes(cfg);
    let mut r = Reader::new(p, "nodes");
    // Smallest node record: flags, level, id, vector, one (empty) level-0 list.
    let count = r.count(1 + 1 + 8 + vec_bytes + 4)?;
    let mut nodes = Vec::with_capacity(count);
    let mut sorted = Vec::new();
    for n in 0..count {
        let flags = r.u8()?;
        if flags > 1 {
            return Err(PersistError::corrupt(format!("node {n}: unknown flags {flags:#x}")));
        }
        let level = r.u8()? as usize;
        if level > MAX_LEVEL {
            return Err(PersistError::corrupt(format!("node {n}: level {level} above {MAX_LEVEL}")));
        }
        let id = r.u64()?;
        let vector = r.take(vec_bytes)?;
        let non_finite = match cfg.storage {
            // `sq8` saves the `f32` originals.
            Storage::F32 | Storage::Sq8 => {
                vector.chunks_exact(4).position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
            }
            // Exponent bits all set: infinity or NaN.
            Storage::F16 => {
                vector.chunks_exact(2).position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00)
            }
            Storage::U8 => None,
        };
        if let Some(c) = non_finite {
            return Err(PersistError::corrupt(format!("node {n}: non-finite component {c}")));
        }
        let mut links = Vec::with_capacity(level + 1);
        for l in 0..=level {
            let cap = if l == 0 { cfg.m0 } else { cfg.m };
            let len = r.count(4)?;
            if len > cap {
                return Err(PersistError::corrupt(format!(
                    "node {n}: {len} links on level {l}, at most {cap}"
                )));
            }
            let mut list = Vec::with_capacity(len);
            for _ in 0..len {
                list.push(r.u32()?);
            }
            sorted.clear();
            sorted.extend_from_slice(&list);
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(PersistError::corrupt(format!("node {n}: repeated link on level {l}")));
            }
            links.push(list);
        }
        nodes.push(RawNode { id, level, deleted: flags == 1, vector: vector.to_vec(), links });
    }
    r.finish()?;
    Ok(nodes)
}

fn decode_entry(p: &[u8]) -> Result<Option<(u32, usize)>> {
    let mut r = Reader::new(p, "entry");
    let entry = match r.u8()? {
        0 => None,
        1 => {
            let node = r.u32()?;
            let level = r.u8()? as usize;
            Some((node, level))
        }
        x => return Err(PersistError::corrupt(format!("bad entry flag {x}"))),
    };
    r.finish()?;
    Ok(entry)
}

// ----- files ---------------------------------------------------------------------------------------

/// `path` with `.tmp` appended to its file name.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| PersistError::Io {
        op: "save",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let mut tmp = name.to_os_string();
    tmp.push(".tmp");
    Ok(path.with_file_name(tmp))
}

/// Directory holding `path` (`""` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Replaces `path` with `bytes` atomically and durably: write a temporary file, sync it, rename
/// it over `path`, sync the directory. A crash at any point leaves the old file or the new one.
///
/// Errors name `path`: the temporary file is this function's business, and a caller told of
/// `x.hnsw.tmp` would look for a file it never asked for.
pub(crate) fn write_atomic(backend: &dyn Backend, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path)?;
    backend.write(&tmp, bytes).map_err(PersistError::io("write", path))?;
    backend.sync(&tmp).map_err(PersistError::io("sync", path))?;
    backend.rename(&tmp, path).map_err(PersistError::io("rename", path))?;
    let dir = parent_dir(path);
    backend.sync_dir(dir).map_err(PersistError::io("sync_dir", dir))
}

impl Index {
    /// Saves a snapshot to `path` on the real filesystem, atomically: a crash during the save
    /// leaves either the previous file or the new one. See [`save_with`](Self::save_with).
    ///
    /// ```
    /// use hnsw_batch::{Index, IndexConfig, Metric};
    /// let dir = std::env::temp_dir().join(format!("hnsw-doc-save-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("index.hnsw");
    ///
    /// let index = Index::new(IndexConfig::new(2, Metric::L2))?;
    /// index.insert(7, &[1.0, 2.0])?;
    /// index.save(&path)?;
    ///
    /// let loaded = Index::load(&path)?;
    /// assert_eq!(loaded.search(&[1.0, 2.0], 1, 8)?[0].id, 7);
    /// loaded.insert(8, &[3.0, 4.0])?; // a loaded index takes further inserts
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with(&FileBackend::new(), path.as_ref())
    }

    /// Loads a snapshot written by [`save`](Self::save) from the real filesystem.
    pub fn load(path: impl AsRef<Path>) -> Result<Index> {
        Self::load_with(&FileBackend::new(), path.as_ref())
    }

    /// Saves a snapshot through `backend`: writes `<path>.tmp`, syncs it, renames it over
    /// `path` and syncs the directory. Meant for a quiescent index (see [`try_save_to_bytes`]).
    ///
    /// Fails with [`PersistError::Corrupt`], writing nothing, if the index's id map is
    /// inconsistent (two live nodes with one id, or a live node the id map does not name).
    pub fn save_with(&self, backend: &dyn Backend, path: &Path) -> Result<()> {
        write_atomic(backend, path, &try_save_to_bytes(self)?)
    }

    /// Loads a snapshot through `backend`.
    pub fn load_with(backend: &dyn Backend, path: &Path) -> Result<Index> {
        let bytes = backend.read(path).map_err(PersistError::io("read", path))?;
        load_from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    //! Id-map corruption must not survive a save/load round trip unnoticed. The corruption is
    //! made through the crate-internal id map, as the insert/update race it guards against did.

    use super::*;
    use crate::persist::MemBackend;
    use crate::IntegrityError;

    fn index() -> Index {
        let index = Index::new(IndexConfig::new(2, Metric::L2).m(4).ef_construction(16)).unwrap();
        for i in 0..20u64 {
            index.insert(i, &[i as f32, (i % 3) as f32]).unwrap();
        }
        index
    }

    fn assert_refused(index: &Index, id: u64) {
        let err = try_save_to_bytes(index).unwrap_err();
        assert!(
            matches!(&err, PersistError::Corrupt { reason } if reason.contains(&format!("with id {id},"))),
            "{err}"
        );
        let fs = MemBackend::new();
        let path = Path::new("/snap/index.hnsw");
        let err = index.save_with(&fs, path).unwrap_err();
        assert!(matches!(err, PersistError::Corrupt { .. }), "{err}");
        assert!(fs.paths().is_empty(), "nothing may be written: {:?}", fs.paths());
        assert!(
            matches!(index.check_integrity(), Err(IntegrityError::IdMap(_))),
            "{:?}",
            index.check_integrity()
        );
    }

    #[test]
    fn save_refuses_two_live_nodes_with_one_id() {
        let index = index();
        load_from_bytes(&try_save_to_bytes(&index).unwrap()).unwrap();
        // What the insert/update race left behind: the map forgets id 7 while its node stays
        // live, and a new insert of 7 then succeeds.
        index.ids.remove_published(&index.store, 7, |_| {}).unwrap();
        index.insert(7, &[100.0, 100.0]).unwrap();
        assert_eq!(index.len(), 21);
        assert_refused(&index, 7);
    }

    #[test]
    fn save_refuses_a_live_node_the_id_map_does_not_name() {
        let index = index();
        index.ids.remove_published(&index.store, 5, |_| {}).unwrap();
        assert_eq!(index.len(), 20);
        assert_refused(&index, 5);
    }
}
