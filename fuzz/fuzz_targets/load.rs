//! Bytes -> the snapshot loader and the log reader, which must never panic.
//!
//! The first byte picks how the rest is used:
//! - 0: raw bytes to `load_from_bytes`;
//! - 1: raw bytes to `load_from_bytes` after the section checksums are recomputed, so the
//!   parser behind them is reached;
//! - 2: a small valid snapshot built from the input, damaged at input-chosen bytes, checksums
//!   optionally recomputed, then loaded;
//! - 3: raw bytes to `read_records_from_bytes`;
//! - 4: a valid log built from the input (every record kind, metadata included), damaged at
//!   input-chosen bytes, then read.
//!
//! Whatever loads must behave: saving it again gives the same bytes as saving the reloaded
//! copy, searches and inserts work. Whatever a log yields must re-encode to the bytes read.
#![no_main]

use hnsw_batch::persist::wal::{encode_header, encode_record};
use hnsw_batch::persist::{load_from_bytes, read_records_from_bytes, save_to_bytes, WalRecord};
use hnsw_batch::items::MetaPatch;
use hnsw_batch::{Index, IndexConfig, MetaValue, Metadata, Metric};
use libfuzzer_sys::fuzz_target;

/// Recomputes the CRC of every section whose header and payload fit in `b`.
fn fix_crcs(b: &mut [u8]) {
    let mut pos = 16usize;
    while pos + 16 <= b.len() {
        let len = u64::from_le_bytes(b[pos + 4..pos + 12].try_into().unwrap());
        let Some(end) = usize::try_from(len).ok().and_then(|l| (pos + 16).checked_add(l)) else { return };
        if end > b.len() {
            return;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&b[pos..pos + 12]);
        h.update(&b[pos + 16..end]);
        let crc = h.finalize();
        b[pos + 12..pos + 16].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

fn exercise(index: &Index) {
    let bytes = save_to_bytes(index);
    let again = load_from_bytes(&bytes).expect("a saved index loads");
    assert_eq!(save_to_bytes(&again), bytes, "encoding is canonical");
    let q = vec![0.5f32; index.dim()];
    let _ = index.search(&q, 3, 8);
    let _ = index.check_integrity();
    let _ = index.insert(u64::MAX - 1, &q);
    let _ = index.search(&q, 3, 8);
}

/// A small index from input bytes.
fn build(data: &[u8]) -> Index {
    let dim = 2 + (data.first().copied().unwrap_or(0) % 3) as usize;
    let metric = match data.get(1).copied().unwrap_or(0) % 3 {
        0 => Metric::L2,
        1 => Metric::Cosine,
        _ => Metric::InnerProduct,
    };
    let index = Index::new(IndexConfig::new(dim, metric).m(2).ef_construction(4)).unwrap();
    for (i, c) in data.get(2..).unwrap_or(&[]).chunks(dim).take(40).enumerate() {
        let v: Vec<f32> = (0..dim).map(|j| c.get(j).map_or(1.0, |&b| b as i8 as f32 + 0.5)).collect();
        let _ = index.insert(i as u64, &v);
        if c[0] % 5 == 0 {
            let _ = index.delete(i as u64 / 2);
        }
    }
    index
}

/// Applies `(position, xor mask)` pairs from `edits` to `b`.
fn damage(b: &mut [u8], edits: &[u8]) {
    for e in edits.chunks_exact(3) {
        if b.is_empty() {
            return;
        }
        let pos = u16::from_le_bytes([e[0], e[1]]) as usize % b.len();
        b[pos] ^= e[2];
    }
}

fn check_log(bytes: &[u8]) {
    if let Ok(c) = read_records_from_bytes(bytes) {
        assert!(c.committed_len <= c.valid_len && c.valid_len as usize <= bytes.len());
        let mut pos = 24usize;
        for e in &c.entries {
            let enc = encode_record(&e.record, e.continued);
            assert_eq!(&bytes[pos..e.end as usize], &enc[..], "records re-encode to the bytes read");
            pos = e.end as usize;
        }
        assert_eq!(pos as u64, c.valid_len);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => {
            if let Ok(index) = load_from_bytes(rest) {
                exercise(&index);
            }
        }
        1 => {
            let mut b = rest.to_vec();
            fix_crcs(&mut b);
            if let Ok(index) = load_from_bytes(&b) {
                exercise(&index);
            }
        }
        2 => {
            let split = rest.first().copied().unwrap_or(0) as usize;
            let (spec, edits) = rest.split_at(split.min(rest.len()));
            let mut b = save_to_bytes(&build(spec));
            damage(&mut b, edits);
            if split % 2 == 0 {
                fix_crcs(&mut b);
            }
            if let Ok(index) = load_from_bytes(&b) {
                exercise(&index);
            }
        }
        3 => check_log(rest),
        _ => {
            let split = rest.first().copied().unwrap_or(0) as usize;
            let (spec, edits) = rest.split_at(split.min(rest.len()));
            let mut b = encode_header(u64::from(split as u8));
            for (i, c) in spec.chunks(5).enumerate() {
                let id = c[0] as u64;
                let meta = |salt: u8| -> Metadata {
                    let mut m = Metadata::new();
                    for &x in c.iter().skip(1) {
                        let v = match (x ^ salt) % 4 {
                            0 => MetaValue::Int(i64::from(x) - 100),
                            1 => MetaValue::Str(format!("s{x}")),
                            2 => MetaValue::Bool(x % 2 == 0),
                            _ => MetaValue::StrList(vec![format!("t{x}"); (x % 3) as usize]),
                        };
                        m.insert(format!("k{}", x % 7), v);
                    }
                    m
                };
                let record = match c[0] % 8 {
                    0 => WalRecord::Insert {
                        ids: vec![id, id + 1],
                        dim: 2,
                        vectors: c.iter().map(|&x| x as f32).chain([0.0; 4]).take(4).collect(),
                    },
                    1 => WalRecord::Delete { ids: c.iter().map(|&x| x as u64).collect() },
                    2 => WalRecord::Update { id, vector: c.iter().map(|&x| x as f32 - 3.0).collect() },
                    3 => WalRecord::InsertItems {
                        ids: vec![id, id + 1],
                        dim: 2,
                        vectors: c.iter().map(|&x| x as f32).chain([0.0; 4]).take(4).collect(),
                        metadata: vec![Some(meta(0)), (id % 2 == 0).then(|| meta(1))],
                        expires_at: vec![(id % 3 == 0).then_some(id * 1000), None],
                    },
                    4 => WalRecord::UpdateWithMetadata { id, vector: vec![id as f32, 1.0], metadata: meta(2) },
                    5 => WalRecord::PatchMetadata {
                        ids: c.iter().map(|&x| x as u64).collect(),
                        patch: MetaPatch { set: meta(3), remove: c.iter().map(|x| format!("k{}", x % 5)).collect() },
                    },
                    6 => WalRecord::SetExpiry { ids: vec![id], expires_at: (id % 2 == 0).then_some(id) },
                    _ => WalRecord::FieldIndex { field: format!("k{}", id % 7), create: id % 2 == 0 },
                };
                b.extend(encode_record(&record, i % 4 == 1));
            }
            damage(&mut b, edits);
            check_log(&b);
        }
    }
});
