//! Scalar vs every SIMD kernel set this CPU supports, at common embedding dimensions.
//!
//! One query against one stored vector, both in L1: this measures the kernels' arithmetic
//! throughput, not memory bandwidth. Run with `cargo bench --bench distance`.
//!
//! Alignment is fixed so runs are comparable (with 64-byte loads, a load that crosses a cache line
//! costs about twice as much): the stored vector starts on a 64-byte boundary, as rows in the
//! index arena do, and the query starts 16 bytes past one, as a `Vec<f32>` from the system
//! allocator often does.
#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hnsw_batch::distance::{available_kernels, F32Kernel, Kernels, U8Kernel};

const DIMS: [usize; 4] = [128, 384, 784, 1536];

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

fn distance(c: &mut Criterion) {
    bench_f32(c, "l2_f32", |k| k.l2_f32);
    bench_f32(c, "dot_f32", |k| k.dot_f32);
    bench_u8(c, "l2_u8", |k| k.l2_u8);
    bench_u8(c, "dot_u8", |k| k.dot_u8);
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
