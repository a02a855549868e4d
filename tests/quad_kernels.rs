//! The four-vector kernels ([`QuadKernels`]) against the single-vector kernels and the scalar
//! reference, and the search that uses them against the one that does not.
//!
//! The contract is bit-identity: each of the four results is exactly what the single-vector
//! kernel of the same instruction set returns for that vector (and that kernel is checked
//! against the scalar reference by `tests/simd_kernels.rs`). So a search returns the same
//! neighbours and the same distances whichever path computed them, which the last tests here
//! check on whole indexes.

mod common;

use common::splitmix::SplitMix as Rng;
use hnsw_batch::distance::{
    available_kernels, available_quad_kernels, quad_kernels_for, scalar, Kernels, QuadKernels,
};
use hnsw_batch::{Index, IndexConfig, Metric};

const MAX_DIM: usize = 1536;

/// The single-vector set a quad set must agree with.
fn single_set(isa: &str) -> Kernels {
    available_kernels()
        .into_iter()
        .find(|k| k.isa == isa)
        .unwrap_or_else(|| panic!("quad set `{isa}` has no single-vector set of that name"))
}

/// Every quad set, scalar first, printed so a run shows what it covered.
fn quad_sets() -> Vec<QuadKernels> {
    let sets = available_quad_kernels();
    eprintln!("quad kernel sets checked: {:?}", sets.iter().map(|k| k.isa).collect::<Vec<_>>());
    sets
}

/// Checks both quad kernels of `q4` on `(q, x)` against the single kernels of `one`, bit for bit.
fn check_same_bits(q4: &QuadKernels, one: &Kernels, q: &[f32], x: [&[f32]; 4], what: &str) {
    let cases = [
        ("l2_f32_x4", (q4.l2_f32_x4)(q, x), x.map(|v| (one.l2_f32)(q, v))),
        ("dot_f32_x4", (q4.dot_f32_x4)(q, x), x.map(|v| (one.dot_f32)(q, v))),
    ];
    for (name, got, want) in cases {
        for i in 0..4 {
            assert_eq!(
                got[i].to_bits(),
                want[i].to_bits(),
                "{}::{name} ({what}, dim {}, vector {i} of length {}): {} != single kernel {}",
                q4.isa,
                q.len(),
                x[i].len(),
                got[i],
                want[i]
            );
        }
    }
}

/// A CPU with AVX-512 F+BW+VL must get the fused set (otherwise the search would silently fall
/// back to one call per vector and nothing here would test the fused kernels).
/// `HNSW_BATCH_ALLOW_MISSING_ISA=1` waives it, as in `tests/simd_kernels.rs`.
#[test]
fn the_fused_set_is_offered_where_the_cpu_has_avx512() {
    let sets = available_quad_kernels();
    assert_eq!(sets[0].isa, "scalar");
    assert!(
        quad_kernels_for("scalar").is_none(),
        "the scalar reference fuses nothing: the index must not use it"
    );
    assert!(quad_kernels_for("avx2").is_none(), "no fused AVX2 set exists");
    #[cfg(target_arch = "x86_64")]
    {
        let has = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl");
        eprintln!("CPU reports avx512f+bw+vl: {has}");
        let offered = quad_kernels_for("avx512").is_some();
        assert_eq!(offered, sets.iter().any(|k| k.isa == "avx512"));
        if has && !offered {
            if std::env::var("HNSW_BATCH_ALLOW_MISSING_ISA").is_ok_and(|v| v == "1") {
                eprintln!("NOTICE: the avx512 quad set is missing; waived, its kernels were NOT tested");
            } else {
                panic!("the CPU has AVX-512 F+BW+VL but no avx512 quad set is offered");
            }
        }
    }
}

/// Real inputs, every dimension 1..=1536, four different vectors: every quad set equals its
/// single-vector set bit for bit (which catches any lane, chunk, tail or accumulator that the
/// fused loop handles differently, and results returned in the wrong order).
#[test]
fn each_result_equals_the_single_kernel_bit_for_bit_every_dim() {
    for q4 in quad_sets() {
        let one = single_set(q4.isa);
        for dim in 1..=MAX_DIM {
            let seed = 0x0A0D_0000 + dim as u64;
            let mut r = Rng(seed);
            let q = r.vector(dim);
            let x: Vec<Vec<f32>> = (0..4).map(|_| r.vector(dim)).collect();
            check_same_bits(&q4, &one, &q, [&x[0], &x[1], &x[2], &x[3]], &format!("seed {seed:#x}"));
        }
    }
}

/// Small integer inputs, every dimension: every partial sum is exact, so each quad kernel must
/// equal the scalar reference itself, whatever its summation order.
#[test]
fn integer_inputs_equal_the_scalar_reference_every_dim() {
    for q4 in quad_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0x1E77_0000 + dim as u64;
            let mut r = Rng(seed);
            let mut int = || (r.next_u64() % 101) as f32 - 50.0;
            let q: Vec<f32> = (0..dim).map(|_| int()).collect();
            let x: Vec<Vec<f32>> = (0..4).map(|_| (0..dim).map(|_| int()).collect()).collect();
            let rows = [&x[0][..], &x[1][..], &x[2][..], &x[3][..]];
            let l2 = (q4.l2_f32_x4)(&q, rows);
            let dot = (q4.dot_f32_x4)(&q, rows);
            for i in 0..4 {
                assert_eq!(
                    l2[i],
                    scalar::l2_f32(&q, rows[i]),
                    "{} l2, dim {dim}, seed {seed:#x}, vector {i}",
                    q4.isa
                );
                assert_eq!(
                    dot[i],
                    scalar::dot_f32(&q, rows[i]),
                    "{} dot, dim {dim}, seed {seed:#x}, vector {i}",
                    q4.isa
                );
            }
        }
    }
}

/// Vectors of other lengths than the query: each result is the single kernel over the common
/// prefix, as for one vector at a time, including an empty vector and longer ones.
#[test]
fn vectors_of_other_lengths_use_their_common_prefix() {
    for q4 in quad_sets() {
        let one = single_set(q4.isa);
        for dim in [1, 15, 16, 17, 64, 100, 384] {
            let seed = 0x1E46_0000 + dim as u64;
            let mut r = Rng(seed);
            let q = r.vector(dim);
            let long = r.vector(dim + 21);
            let short = r.vector(dim - 1);
            let same = r.vector(dim);
            for x in [
                [&long[..], &same[..], &same[..], &same[..]],
                [&same[..], &short[..], &same[..], &long[..]],
                [&[][..], &same[..], &long[..], &short[..]],
            ] {
                check_same_bits(&q4, &one, &q, x, &format!("mixed lengths, seed {seed:#x}"));
            }
        }
    }
}

/// A NaN or an infinity in one vector spoils that vector's result only.
#[test]
fn a_special_value_spoils_only_its_own_vector() {
    for q4 in quad_sets() {
        let one = single_set(q4.isa);
        let mut r = Rng(0x5BEC);
        let q = r.vector(40);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 17, 39] {
                let x: Vec<Vec<f32>> = (0..4).map(|_| r.vector(40)).collect();
                let mut spoiled = x[2].clone();
                spoiled[at] = bad;
                let rows = [&x[0][..], &x[1][..], &spoiled[..], &x[3][..]];
                let got = (q4.dot_f32_x4)(&q, rows);
                for i in [0, 1, 3] {
                    assert!(got[i].is_finite(), "{} dot: vector {i} spoiled by {bad} in vector 2", q4.isa);
                }
                assert_eq!(got[2].to_bits(), (one.dot_f32)(&q, &spoiled).to_bits(), "{}", q4.isa);
                check_same_bits(&q4, &one, &q, rows, &format!("{bad} at {at}"));
            }
        }
    }
}

/// Builds the same index twice, once with the fused quad path and once with one call per
/// vector (the same AVX-512 single kernels under another set name, which has no quad set), and
/// checks that every search returns the same ids with the same distance bits. A fused path that
/// paired a distance with the wrong neighbour, or applied the metric's `1 - x` wrongly, would
/// change the graph or the results.
#[test]
fn searches_with_and_without_the_fused_kernels_agree_exactly() {
    let Some(avx512) = available_kernels().into_iter().find(|k| k.isa == "avx512") else {
        eprintln!("no AVX-512 on this CPU: nothing fused to compare (the search runs one call per vector)");
        return;
    };
    assert!(quad_kernels_for("avx512").is_some());
    let per_row = Kernels { isa: "avx512-per-row", ..avx512 };
    for metric in [Metric::L2, Metric::Cosine] {
        // 37 dimensions: two full 16-lane chunks and a masked tail of 5.
        let dim = 37;
        let seed = 0x0FAD_0037;
        eprintln!("metric {metric:?}, seed {seed:#x}");
        let mut r = Rng(seed);
        let data: Vec<Vec<f32>> = (0..1500).map(|_| r.vector(dim)).collect();
        let build = |k: Kernels| {
            let index = Index::with_kernels(IndexConfig::new(dim, metric).seed(7), k).expect("config");
            // One at a time, in order: the graph then depends only on the distances.
            for (i, v) in data.iter().enumerate() {
                index.insert(i as u64, v).expect("insert");
            }
            index
        };
        let fused = build(avx512);
        let plain = build(per_row);
        for qi in 0..200 {
            let q = r.vector(dim);
            for ef in [10, 40] {
                let a = fused.search(&q, 10, ef).expect("search");
                let b = plain.search(&q, 10, ef).expect("search");
                let a: Vec<(u64, u32)> = a.iter().map(|n| (n.id, n.distance.to_bits())).collect();
                let b: Vec<(u64, u32)> = b.iter().map(|n| (n.id, n.distance.to_bits())).collect();
                assert_eq!(a, b, "{metric:?}, query {qi}, ef {ef}: fused and per-vector searches differ");
            }
        }
    }
}
