//! Scalar vs every SIMD kernel set this CPU supports, at common embedding dimensions.
//!
//! One query against one stored vector, both in L1: this measures the kernels' arithmetic
//! throughput, not memory bandwidth. Run with `cargo bench --bench distance`.
//!
//! Alignment is fixed so runs are comparable (with 64-byte loads, a load that crosses a cache line
//! costs about twice as much): the stored vector starts on a 64-byte boundary, as rows in the
//! index arena do, and the query starts 16 bytes past one, as a `Vec<f32>` from the system
//! allocator often does.
//!
//! The compact-storage groups (`l2_f16`, `dot_f16`, `dot_u8i8`) run at [`COMPACT_DIMS`] and
//! include the chosen `f32` kernel (id `f32-<isa>`, `l2-f32-<isa>`) on the same dimension as the
//! baseline, so one group shows what `f16` or SQ8 storage costs or saves per distance;
//! `dot_u8i8` also times a whole SQ8 squared L2 from a prepared query (`sq8-l2-<isa>`).
//!
//! The `dot_f32_x4` group times four distances per iteration: four calls of each single-vector
//! kernel (`4x-<isa>`) against one call of each [`QuadKernels`](hnsw_batch::distance::QuadKernels)
//! set (`quad-<isa>`). With everything in L1 it shows only the arithmetic and call overhead;
//! what the fused kernel buys in a search (overlapping four rows' cache misses) shows in
//! `examples/qps.rs`, not here.
#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hnsw_batch::distance::sq8::Sq8Params;
use hnsw_batch::distance::{
    available_compact_kernels, available_kernels, available_quad_kernels, encode_f16, kernels,
    CompactKernels, F16Kernel, F32Kernel, Kernels, U8Kernel,
};

const DIMS: [usize; 4] = [128, 384, 784, 1536];

/// Dimensions of the compact-storage groups (common embedding sizes).
const COMPACT_DIMS: [usize; 3] = [128, 384, 768];

/// Byte offset of the query from a 64-byte boundary.
const QUERY_OFFSET: usize = 16;

/// A copy of `src` starting `offset` bytes past a 64-byte boundary (`offset` a multiple of
/// `size_of::<T>()`), as a backing buffer and the index range that holds the copy.
fn placed<T: Copy + Default>(src: &[T], offset: usize) -> (Vec<T>, std::ops::Range<usize>) {
    let size = std::mem::size_of::<T>();
    let mut buf = vec![T::default(); src.len() + 128 / size];
    let misalign = buf.as_ptr() as usize % 64;
    let start = ((64 - misalign) % 64 + offset) / size;
    buf[start..start + src.len()].copy_from_slice(src);
    (buf, start..start + src.len())
}

/// Deterministic pseudo-random values in `[-1, 1)` (quality is irrelevant here).
fn values(n: usize, mut seed: u32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn bench_f32(c: &mut Criterion, name: &str, pick: fn(&Kernels) -> F32Kernel) {
    let mut group = c.benchmark_group(name);
    for dim in DIMS {
        let (qa, ra) = placed(&values(dim, 1), QUERY_OFFSET);
        let (qb, rb) = placed(&values(dim, 2), 0);
        let (a, b) = (&qa[ra], &qb[rb]);
        group.throughput(Throughput::Elements(dim as u64));
        for k in available_kernels() {
            let f = pick(&k);
            group.bench_with_input(BenchmarkId::new(k.isa, dim), &dim, |bench, _| {
                bench.iter(|| f(black_box(a), black_box(b)))
            });
        }
    }
    group.finish();
}

fn bench_u8(c: &mut Criterion, name: &str, pick: fn(&Kernels) -> U8Kernel) {
    let mut group = c.benchmark_group(name);
    for dim in DIMS {
        let a: Vec<f32> = values(dim, 3).iter().map(|x| (x + 1.0) * 127.5).collect();
        let b: Vec<u8> = values(dim, 4).iter().map(|x| ((x + 1.0) * 127.5) as u8).collect();
        let (qa, ra) = placed(&a, QUERY_OFFSET);
        let (qb, rb) = placed(&b, 0);
        let (a, b) = (&qa[ra], &qb[rb]);
        group.throughput(Throughput::Elements(dim as u64));
        for k in available_kernels() {
            let f = pick(&k);
            group.bench_with_input(BenchmarkId::new(k.isa, dim), &dim, |bench, _| {
                bench.iter(|| f(black_box(a), black_box(b)))
            });
        }
    }
    group.finish();
}

/// `f32` query × `f16` stored, every compact set, plus the chosen `f32` kernel as baseline.
fn bench_f16(c: &mut Criterion, name: &str, pick: fn(&CompactKernels) -> F16Kernel, base: F32Kernel) {
    let mut group = c.benchmark_group(name);
    for dim in COMPACT_DIMS {
        let q = values(dim, 5);
        let x = values(dim, 6);
        let mut h = vec![0u16; dim];
        encode_f16(&x, &mut h);
        let (qa, ra) = placed(&q, QUERY_OFFSET);
        let (qx, rx) = placed(&x, 0);
        let (qh, rh) = placed(&h, 0);
        let (q, x, h) = (&qa[ra], &qx[rx], &qh[rh]);
        group.throughput(Throughput::Elements(dim as u64));
        group.bench_with_input(BenchmarkId::new(format!("f32-{}", kernels().isa), dim), &dim, |bench, _| {
            bench.iter(|| base(black_box(q), black_box(x)))
        });
        for k in available_compact_kernels() {
            let f = pick(&k);
            group.bench_with_input(BenchmarkId::new(k.isa, dim), &dim, |bench, _| {
                bench.iter(|| f(black_box(q), black_box(h)))
            });
        }
    }
    group.finish();
}

/// The integer `u8` × `i8` kernel alone (every compact set), the whole SQ8 squared L2 of a
/// prepared query (best set: the kernel plus the scalar `c0 + sw·S` and norm terms), and the
/// chosen `f32` L2 kernel as baseline.
fn bench_u8i8(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot_u8i8");
    for dim in COMPACT_DIMS {
        let rows: Vec<Vec<f32>> = (0..64).map(|i| values(dim, 100 + i)).collect();
        let params = Sq8Params::train(rows.iter().map(Vec::as_slice), dim).unwrap();
        let q = values(dim, 7);
        let mut codes = vec![0u8; dim];
        params.encode(&rows[0], &mut codes);
        let norm = params.decoded_norm_sq(&codes);
        let prep = params.prepare_query(&q);
        let (qc, rc) = placed(&codes, 0);
        let (qw, rw) = placed(prep.weights(), QUERY_OFFSET);
        let (qq, rq) = placed(&q, QUERY_OFFSET);
        let (qx, rx) = placed(&rows[0], 0);
        let (codes, w, q, x) = (&qc[rc], &qw[rw], &qq[rq], &qx[rx]);
        group.throughput(Throughput::Elements(dim as u64));
        let base = kernels().l2_f32;
        group.bench_with_input(
            BenchmarkId::new(format!("l2-f32-{}", kernels().isa), dim),
            &dim,
            |bench, _| bench.iter(|| base(black_box(q), black_box(x))),
        );
        for k in available_compact_kernels() {
            let f = k.dot_u8i8;
            group.bench_with_input(BenchmarkId::new(k.isa, dim), &dim, |bench, _| {
                bench.iter(|| f(black_box(codes), black_box(w)))
            });
        }
        let best = available_compact_kernels().last().unwrap().dot_u8i8;
        let name = format!("sq8-l2-{}", available_compact_kernels().last().unwrap().isa);
        group.bench_with_input(BenchmarkId::new(name, dim), &dim, |bench, _| {
            bench.iter(|| prep.l2_with(best, black_box(codes), black_box(norm)))
        });
    }
    group.finish();
}

fn bench_quad(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot_f32_x4");
    for dim in DIMS {
        let (qa, ra) = placed(&values(dim, 1), QUERY_OFFSET);
        let rows: Vec<(Vec<f32>, std::ops::Range<usize>)> =
            (0..4).map(|i| placed(&values(dim, 2 + i), 0)).collect();
        let q = &qa[ra];
        let x: [&[f32]; 4] = std::array::from_fn(|i| &rows[i].0[rows[i].1.clone()]);
        group.throughput(Throughput::Elements(4 * dim as u64));
        for k in available_kernels() {
            let f = k.dot_f32;
            group.bench_with_input(BenchmarkId::new(format!("4x-{}", k.isa), dim), &dim, |bench, _| {
                bench.iter(|| black_box(x).map(|v| f(black_box(q), v)))
            });
        }
        for k in available_quad_kernels() {
            let f = k.dot_f32_x4;
            group.bench_with_input(BenchmarkId::new(format!("quad-{}", k.isa), dim), &dim, |bench, _| {
                bench.iter(|| f(black_box(q), black_box(x)))
            });
        }
    }
    group.finish();
}

fn distance(c: &mut Criterion) {
    bench_f32(c, "l2_f32", |k| k.l2_f32);
    bench_f32(c, "dot_f32", |k| k.dot_f32);
    bench_u8(c, "l2_u8", |k| k.l2_u8);
    bench_u8(c, "dot_u8", |k| k.dot_u8);
    bench_f16(c, "l2_f16", |k| k.l2_f16, kernels().l2_f32);
    bench_f16(c, "dot_f16", |k| k.dot_f16, kernels().dot_f32);
    bench_u8i8(c);
    bench_quad(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = distance
}
criterion_main!(benches);
