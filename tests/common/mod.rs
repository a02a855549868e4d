//! Shared test helpers: dataset loading, brute force, recall, seeded data.
#![allow(dead_code, missing_docs)]

pub mod splitmix;

use hnsw_batch::{Index, Metric, Neighbour};
use std::path::PathBuf;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/siftsmall")
}

fn read_i32_records(path: &PathBuf) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let d = i32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        out.push(bytes[off + 4..off + 4 + 4 * d].to_vec());
        off += 4 + 4 * d;
    }
    out
}

pub fn read_fvecs(name: &str) -> Vec<Vec<f32>> {
    read_i32_records(&data_dir().join(name))
        .into_iter()
        .map(|r| r.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        .collect()
}

pub fn read_ivecs(name: &str) -> Vec<Vec<u32>> {
    read_i32_records(&data_dir().join(name))
        .into_iter()
        .map(|r| r.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
        .collect()
}

pub struct Sift {
    pub base: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    pub gt: Vec<Vec<u32>>,
}

pub fn sift() -> Sift {
    Sift { base: read_fvecs("base.fvecs"), queries: read_fvecs("query.fvecs"), gt: read_ivecs("gt.ivecs") }
}

/// Mean recall@k of `found` against the first k of `truth`.
pub fn recall_at(found: &[Vec<Neighbour>], truth: &[Vec<u64>], k: usize) -> f64 {
    let mut hit = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t: std::collections::HashSet<u64> = t.iter().take(k).copied().collect();
        hit += f.iter().take(k).filter(|n| t.contains(&n.id)).count();
    }
    hit as f64 / (found.len() * k) as f64
}

pub fn search_all(index: &Index, queries: &[Vec<f32>], k: usize, ef: usize) -> Vec<Vec<Neighbour>> {
    queries.iter().map(|q| index.search(q, k, ef).expect("search")).collect()
}

/// Seeded generator of embedding-like data: clustered points in an 8-dimensional latent space,
/// mapped linearly into `dim` dimensions with a little noise (real embeddings have low
/// intrinsic dimension; uniform noise in many dimensions makes every neighbour equidistant).
pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    use rand::{Rng, SeedableRng};
    let latent = 8;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let proj: Vec<Vec<f32>> =
        (0..latent).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let centers: Vec<Vec<f32>> =
        (0..16).map(|_| (0..latent).map(|_| rng.random_range(-2.0f32..2.0)).collect()).collect();
    (0..n)
        .map(|_| {
            let c = &centers[rng.random_range(0..centers.len())];
            let z: Vec<f32> = c.iter().map(|x| x + rng.random_range(-1.0f32..1.0)).collect();
            (0..dim)
                .map(|j| {
                    (0..latent).map(|i| z[i] * proj[i][j]).sum::<f32>() + rng.random_range(-0.05f32..0.05)
                })
                .collect()
        })
        .collect()
}

/// Exact top-k ids by brute force under `metric` (ties by id).
pub fn brute_force(base: &[Vec<f32>], q: &[f32], k: usize, metric: Metric) -> Vec<u64> {
    let dist = |v: &[f32]| -> f32 {
        match metric {
            Metric::L2 => hnsw_batch::distance::scalar::l2_f32(q, v),
            Metric::Cosine => hnsw_batch::distance::scalar::cosine_distance(q, v),
            _ => 1.0 - hnsw_batch::distance::scalar::dot_f32(q, v),
        }
    };
    let mut all: Vec<(f32, u64)> = base.iter().enumerate().map(|(i, v)| (dist(v), i as u64)).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}
