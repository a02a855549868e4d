//! Dataset loading shared by the benches: siftsmall from the repo, Fashion-MNIST from
//! `../shared/data` (gzip'd) when it is there.
#![allow(dead_code, missing_docs)]

use std::io::Read;
use std::path::{Path, PathBuf};

pub struct Dataset {
    pub name: &'static str,
    pub dim: usize,
    pub base: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    pub gt: Vec<Vec<u64>>,
    /// Whether the source was bytes (bvecs): the index may then use u8 storage.
    pub bytes: bool,
}

fn read_maybe_gz(p: &Path) -> Option<Vec<u8>> {
    if p.exists() {
        return std::fs::read(p).ok();
    }
    let gz = PathBuf::from(format!("{}.gz", p.display()));
    let f = std::fs::File::open(gz).ok()?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(f).read_to_end(&mut out).ok()?;
    Some(out)
}

fn parse(b: &[u8], elem: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= b.len() {
        let d = i32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        let r = &b[off + 4..off + 4 + d * elem];
        out.push(match elem {
            1 => r.iter().map(|&x| x as f32).collect(),
            _ => r.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        });
        off += 4 + d * elem;
    }
    out
}

fn parse_ivecs(b: &[u8]) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= b.len() {
        let d = i32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        out.push(
            b[off + 4..off + 4 + 4 * d]
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
                .collect(),
        );
        off += 4 + 4 * d;
    }
    out
}

fn load(name: &'static str, dir: &Path, max_queries: usize) -> Option<Dataset> {
    let (base, bytes) = if let Some(b) = read_maybe_gz(&dir.join("base.fvecs")) {
        (parse(&b, 4), false)
    } else {
        (parse(&read_maybe_gz(&dir.join("base.bvecs"))?, 1), true)
    };
    let queries = match read_maybe_gz(&dir.join("query.fvecs")) {
        Some(b) => parse(&b, 4),
        None => parse(&read_maybe_gz(&dir.join("query.bvecs"))?, 1),
    };
    let gt = parse_ivecs(&read_maybe_gz(&dir.join("gt.ivecs"))?);
    let n = max_queries.min(queries.len());
    Some(Dataset {
        name,
        dim: base[0].len(),
        base,
        queries: queries[..n].to_vec(),
        gt: gt[..n].to_vec(),
        bytes,
    })
}

pub fn siftsmall() -> Dataset {
    load("siftsmall", &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/siftsmall"), 100)
        .expect("data/siftsmall")
}

/// Fashion-MNIST (first 1000 queries), if `../shared/data` is present.
pub fn fashion_mnist() -> Option<Dataset> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fashion-mnist-784-euclidean");
    load("fashion-mnist", &dir, 1000)
}

pub fn recall(found: &[Vec<hnsw_batch::Neighbour>], gt: &[Vec<u64>], k: usize) -> f64 {
    let mut hit = 0;
    for (f, g) in found.iter().zip(gt) {
        hit += f.iter().take(k).filter(|n| g[..k].contains(&n.id)).count();
    }
    hit as f64 / (k * found.len()) as f64
}
