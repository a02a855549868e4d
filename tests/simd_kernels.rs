//! Every kernel set this CPU can run (scalar, AVX2+FMA, AVX-512, NEON), checked for accuracy.
//!
//! Two kinds of check:
//!
//! * **Exact.** With small integer inputs every product and every partial sum is an integer
//!   below 2^24, so it is exact in `f32` whatever the summation order: a SIMD kernel must then
//!   equal the scalar one bit for bit. This catches any dropped, duplicated or misplaced element
//!   (tails, masks, loop bounds) with zero tolerance, for every dimension 1..=1536.
//! * **Rounding-bounded.** With arbitrary real inputs every kernel, scalar included, is compared
//!   with the exact result (computed in `f64`) under a bound derived from that very input: the
//!   kernel's rounding depth times the sum of the absolute values of its terms. See [`bound`]
//!   for the bound and why it holds. Inputs of small magnitude (values in ±0.01, unit-norm
//!   embeddings, near-duplicates) make that bound far below 1e-3, so a constant error of that
//!   size in any kernel fails.
//!
//! A kernel set the CPU supports but the library does not offer is a failure, not a silent skip
//! (see [`every_set_the_cpu_supports_is_available`]); `HNSW_BATCH_ALLOW_MISSING_ISA=1` waives it.

mod common;

use common::splitmix::{normalised, SplitMix as Rng};
use hnsw_batch::distance::{available_kernels, scalar, Kernels};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const MAX_DIM: usize = 1536;

/// Unit roundoff of `f32`, 2^-24.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Whether `HNSW_BATCH_ALLOW_MISSING_ISA=1` waives kernel sets the CPU supports but the library
/// does not offer.
fn missing_isa_allowed() -> bool {
    std::env::var("HNSW_BATCH_ALLOW_MISSING_ISA").is_ok_and(|v| v == "1")
}

/// The SIMD sets, printed so a run shows what it covered.
fn simd_sets() -> Vec<Kernels> {
    let sets: Vec<Kernels> = available_kernels().into_iter().filter(|k| k.isa != "scalar").collect();
    eprintln!("SIMD kernel sets checked: {:?}", sets.iter().map(|k| k.isa).collect::<Vec<_>>());
    sets
}

/// Every set, scalar first, printed.
fn all_sets() -> Vec<Kernels> {
    let sets = available_kernels();
    eprintln!("kernel sets checked: {:?}", sets.iter().map(|k| k.isa).collect::<Vec<_>>());
    sets
}

/// Which of the four kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    L2F32,
    DotF32,
    L2U8,
    DotU8,
}

/// How many roundings a term can pass through in kernel `kind` of set `isa` over `n` elements.
///
/// * scalar `f32` kernels: 4 lanes of `n/4` additions, 2 pairwise, at most 3 in the tail, plus
///   1 for rounding the product: `≤ n/4 + 6`.
/// * scalar `u8` kernels: a single running sum plus the product: `≤ n + 1`.
/// * SIMD (at least 8 lanes × 4 accumulators, FMA so products are not rounded separately, at
///   most 3 extra steps into one accumulator, a pairwise/horizontal reduction of at most 6
///   levels, a scalar tail of at most 7 with rounded products): `≤ n/16 + 16`.
/// * L2 kernels round the difference `a_i - b_i` first, which is then squared: 2 more.
fn depth(isa: &str, kind: Kind, n: usize) -> usize {
    let sums = match (isa, kind) {
        ("scalar", Kind::L2F32 | Kind::DotF32) => n / 4 + 6,
        ("scalar", _) => n + 1,
        _ => n / 16 + 16,
    };
    sums + if matches!(kind, Kind::L2F32 | Kind::L2U8) { 2 } else { 0 }
}

/// Allowed `|kernel - exact|` for a sum of `n` terms `t_i` with `abs_sum = Σ|t_i|`, `exact`
/// being the sum computed in `f64`.
///
/// Floating-point summation in any order (any tree) in which each term passes through at most
/// `d` roundings has error at most `γ_d · Σ|t_i|`, `γ_d = d·u / (1 - d·u)`, `u = 2^-24`
/// (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1 and §4.2); [`depth`] gives
/// `d` for each kernel. The `f64` reference is itself off by at most `(n + 2)·2^-53·Σ|t_i|`,
/// and results in the subnormal range round absolutely (`≤ 2^-150` per operation, so less than
/// `f32::MIN_POSITIVE` in total for `n < 2^24`). So the bound can never fail spuriously; typical
/// errors are far smaller (they grow like `√n`, not `n`). For L2 `Σ|t_i|` is the result itself,
/// so the bound is relative to it: tiny distances get tiny bounds.
fn bound(depth: usize, n: usize, abs_sum: f64) -> f64 {
    let du = depth as f64 * U;
    let gamma = du / (1.0 - du);
    (gamma + (n as f64 + 2.0) * f64::EPSILON) * abs_sum + f32::MIN_POSITIVE as f64
}

/// `(exact sum, Σ|t_i|)` of the squared differences, in `f64`.
fn exact_l2(a: &[f32], b: impl Iterator<Item = f64>) -> (f64, f64) {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, y)| {
            let d = x as f64 - y;
            d * d
        })
        .sum();
    (s, s)
}

/// `(exact sum, Σ|t_i|)` of the products, in `f64`.
fn exact_dot(a: &[f32], b: impl Iterator<Item = f64>) -> (f64, f64) {
    a.iter().zip(b).map(|(&x, y)| x as f64 * y).fold((0.0, 0.0), |(s, abs), t| (s + t, abs + t.abs()))
}

/// Checks all four kernels of `k` against the exact results on `(a, b)` and `(a, c)` under each
/// kernel's own rounding bound for this input. Returns the bounds used, in the order
/// `[l2_f32, dot_f32, l2_u8, dot_u8]`, so callers can check their inputs make them small.
fn check_bounded(k: &Kernels, a: &[f32], b: &[f32], c: &[u8], what: &str) -> Result<[f64; 4], String> {
    let nb = a.len().min(b.len());
    let nc = a.len().min(c.len());
    let bf = || b.iter().map(|&y| y as f64);
    let cf = || c.iter().map(|&y| y as f64);
    let cases = [
        (Kind::L2F32, (k.l2_f32)(a, b), exact_l2(a, bf()), nb),
        (Kind::DotF32, (k.dot_f32)(a, b), exact_dot(a, bf()), nb),
        (Kind::L2U8, (k.l2_u8)(a, c), exact_l2(a, cf()), nc),
        (Kind::DotU8, (k.dot_u8)(a, c), exact_dot(a, cf()), nc),
    ];
    let mut bounds = [0f64; 4];
    for (i, (kind, got, (exact, abs_sum), n)) in cases.into_iter().enumerate() {
        let tol = bound(depth(k.isa, kind, n), n, abs_sum);
        bounds[i] = tol;
        let err = (got as f64 - exact).abs();
        // A NaN result must fail too.
        if err.is_nan() || err > tol {
            return Err(format!(
                "{}::{kind:?} ({what}, len a={} b={} c={}): kernel {got:e} vs exact {exact:e}, \
                 |diff| {err:e} > bound {tol:e}",
                k.isa,
                a.len(),
                b.len(),
                c.len(),
            ));
        }
    }
    Ok(bounds)
}

/// Checks all four kernels of `k` for bit-exact agreement with scalar.
fn check_exact(k: &Kernels, a: &[f32], b: &[f32], c: &[u8], what: &str) {
    let cases = [
        ("l2_f32", (k.l2_f32)(a, b), scalar::l2_f32(a, b)),
        ("dot_f32", (k.dot_f32)(a, b), scalar::dot_f32(a, b)),
        ("l2_u8", (k.l2_u8)(a, c), scalar::l2_u8(a, c)),
        ("dot_u8", (k.dot_u8)(a, c), scalar::dot_u8(a, c)),
    ];
    for (name, got, want) in cases {
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{}::{name} ({what}, dim {}): simd {got} != scalar {want}",
            k.isa,
            a.len()
        );
    }
}

/// Kernel sets are never skipped silently: every set whose instructions this CPU reports must be
/// offered by `available_kernels()` (and so checked by every test here). Prints what ran.
/// `HNSW_BATCH_ALLOW_MISSING_ISA=1` turns a missing set into a printed notice.
#[test]
fn every_set_the_cpu_supports_is_available() {
    let sets = available_kernels();
    assert_eq!(sets[0].isa, "scalar");
    let names: Vec<&str> = sets.iter().map(|k| k.isa).collect();
    let chosen = hnsw_batch::distance::kernels();
    eprintln!("kernel sets available and checked: {names:?}; chosen for the index: {}", chosen.isa);
    #[allow(unused_mut)]
    let mut expected: Vec<(&str, String)> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let (avx2, fma) = (is_x86_feature_detected!("avx2"), is_x86_feature_detected!("fma"));
        let avx512f = is_x86_feature_detected!("avx512f");
        let (bw, vl) = (is_x86_feature_detected!("avx512bw"), is_x86_feature_detected!("avx512vl"));
        eprintln!("CPU reports: avx2 {avx2}, fma {fma}, avx512f {avx512f}, avx512bw {bw}, avx512vl {vl}");
        if avx2 && fma {
            expected.push(("avx2", "the CPU reports avx2 and fma".into()));
        }
        if avx512f && bw && vl {
            expected.push(("avx512", "the CPU reports avx512f, avx512bw and avx512vl".into()));
        } else if avx512f {
            eprintln!("note: avx512f without avx512bw/avx512vl; the avx512 set needs all three");
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        expected.push(("neon", "the CPU reports neon".into()));
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|(isa, _)| !names.contains(isa))
        .map(|(isa, why)| format!("`{isa}` ({why})"))
        .collect();
    if missing.is_empty() {
        return;
    }
    let msg = format!("kernel sets not available although supported: {}", missing.join(", "));
    if missing_isa_allowed() {
        eprintln!("NOTICE: {msg}; waived by HNSW_BATCH_ALLOW_MISSING_ISA=1, those kernels were NOT tested");
    } else {
        panic!("{msg}: their kernels would go untested (set HNSW_BATCH_ALLOW_MISSING_ISA=1 to waive)");
    }
}

/// Integer inputs, every dimension 1..=1536: results must be bit-identical.
#[test]
fn exact_on_integer_inputs_every_dim() {
    // f32 values in [-50, 50]: |a-b|^2 <= 100^2, times 1536 < 2^24. u8 values and the query in
    // [0, 100] for the u8 kernels: both l2 and dot terms are <= 100^2, same bound.
    for k in simd_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0x5EED_0000 + dim as u64;
            let mut r = Rng(seed);
            let a: Vec<f32> = (0..dim).map(|_| r.int(-50, 50) as f32).collect();
            let b: Vec<f32> = (0..dim).map(|_| r.int(-50, 50) as f32).collect();
            check_exact(&k, &a, &b, &[], &format!("f32 ints, seed {seed:#x}"));
            let q: Vec<f32> = (0..dim).map(|_| r.int(0, 100) as f32).collect();
            let c: Vec<u8> = (0..dim).map(|_| r.int(0, 100) as u8).collect();
            check_exact(&k, &q, &[], &c, &format!("u8 ints, seed {seed:#x}"));
        }
    }
}

/// Real inputs of widely varying magnitude, every dimension 1..=1536, within the rounding bound.
#[test]
fn bounded_on_real_inputs_every_dim() {
    for k in all_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0xF10A_0000 + dim as u64;
            let mut r = Rng(seed);
            let a: Vec<f32> = (0..dim).map(|_| r.wide()).collect();
            let b: Vec<f32> = (0..dim).map(|_| r.wide()).collect();
            let c: Vec<u8> = (0..dim).map(|_| r.next_u64() as u8).collect();
            let what = format!("seed {seed:#x}");
            check_bounded(&k, &a, &b, &c, &what).unwrap();
        }
    }
}

/// The bound any of these small-magnitude inputs must stay under for the check to be meaningful:
/// a constant error of 1e-3 (or 1e-4) in a kernel must fail it.
const SMALL_BOUND: f64 = 1e-4;

/// Values in ±0.01 at every dimension, and `u8` queries within ±0.01 of the stored bytes: exact
/// results and their bounds are far below 1e-3, so a kernel off by a constant of that size fails.
#[test]
fn bounded_on_small_magnitudes_every_dim() {
    for k in all_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0x5A11_0000 + dim as u64;
            let mut r = Rng(seed);
            let a: Vec<f32> = (0..dim).map(|_| r.unit() * 0.01).collect();
            let b: Vec<f32> = (0..dim).map(|_| r.unit() * 0.01).collect();
            let what = format!("values in ±0.01, seed {seed:#x}");
            let bounds = check_bounded(&k, &a, &b, &[], &what).unwrap();
            assert!(bounds.iter().all(|&t| t < SMALL_BOUND), "{what}: bounds {bounds:?} too loose");
            let c: Vec<u8> = (0..dim).map(|_| r.next_u64() as u8).collect();
            let cf: Vec<f32> = c.iter().map(|&x| x as f32).collect();
            let q: Vec<f32> = cf.iter().map(|&x| x + r.unit() * 0.01).collect();
            let what = format!("u8 near-duplicate within ±0.01, seed {seed:#x}");
            let [l2_f32, _, l2_u8, _] = check_bounded(&k, &q, &cf, &c, &what).unwrap();
            assert!(l2_f32 < SMALL_BOUND && l2_u8 < SMALL_BOUND, "{what}: bounds {l2_f32:e} {l2_u8:e}");
        }
    }
}

/// Unit-norm embeddings (as cosine and dot-product models produce them) at common dimensions:
/// independent pairs (squared L2 about 2) and near-duplicates (squared L2 about 1e-4).
#[test]
fn bounded_on_unit_norm_embeddings() {
    for k in all_sets() {
        for dim in [3, 64, 100, 128, 300, 384, 512, 768, 784, 1024, 1536] {
            for pair in 0..8u64 {
                let seed = 0xE1B0_0000 + (dim as u64) * 16 + pair;
                let mut r = Rng(seed);
                let a = r.unit_vector(dim);
                let b = r.unit_vector(dim);
                let what = format!("unit vectors, dim {dim}, seed {seed:#x}");
                let bounds = check_bounded(&k, &a, &b, &[], &what).unwrap();
                assert!(bounds.iter().all(|&t| t < SMALL_BOUND), "{what}: bounds {bounds:?} too loose");
                let noisy: Vec<f32> =
                    a.iter().map(|&x| x + 0.01 * r.gaussian() / (dim as f32).sqrt()).collect();
                let near = normalised(&noisy);
                let what = format!("unit near-duplicates, dim {dim}, seed {seed:#x}");
                let bounds = check_bounded(&k, &a, &near, &[], &what).unwrap();
                assert!(bounds[0] < 1e-8, "{what}: l2 bound {:e} too loose", bounds[0]);
            }
        }
    }
}

/// Zeros, large magnitudes and the u8 extremes 0 and 255, at sizes around every chunk boundary.
#[test]
fn special_values() {
    let dims = (0..=70).chain([127, 128, 129, 383, 384, 385, 783, 784, 785, 1535, 1536]);
    for k in all_sets() {
        for dim in dims.clone() {
            let zf = vec![0f32; dim];
            let zu = vec![0u8; dim];
            let fu = vec![255u8; dim];
            check_exact(&k, &zf, &zf, &zu, "all zero");
            // Sums of 255^2 = 65025 over more than 258 elements exceed 2^24 and round, so these
            // get the rounding bound rather than bit equality.
            let q255 = vec![255f32; dim];
            check_bounded(&k, &zf, &zf, &fu, "zero query, 255 stored").unwrap();
            check_bounded(&k, &q255, &zf, &zu, "255 query, 0 stored").unwrap();
            check_bounded(&k, &q255, &q255, &fu, "255 query, 255 stored").unwrap();
            // Large magnitudes: terms up to (2e15)^2 = 4e30, sums up to ~6e33 < f32::MAX.
            let mut r = Rng(dim as u64);
            let big: Vec<f32> = (0..dim).map(|_| r.unit() * 1e15).collect();
            let big2: Vec<f32> = (0..dim).map(|_| r.unit() * 1e15).collect();
            let ext: Vec<u8> = (0..dim).map(|i| if i % 2 == 0 { 0 } else { 255 }).collect();
            check_bounded(&k, &big, &big2, &ext, "large magnitudes").unwrap();
            let neg: Vec<f32> = (0..dim).map(|_| -1e3 * r.unit().abs()).collect();
            check_bounded(&k, &neg, &zf, &fu, "negative query, 255 stored").unwrap();
            // Tiny values: products underflow into subnormals.
            let tiny: Vec<f32> = (0..dim).map(|_| r.unit() * 1e-20).collect();
            check_bounded(&k, &tiny, &big, &zu, "tiny values").unwrap();
        }
    }
}

/// Overflow must give infinity in every set exactly when it does in scalar for non-negative terms.
#[test]
fn overflow_to_infinity() {
    for k in all_sets() {
        for dim in [1, 7, 8, 16, 33, 100] {
            let a = vec![3e38f32; dim];
            let b = vec![-3e38f32; dim];
            assert_eq!((k.l2_f32)(&a, &b), f32::INFINITY, "{} dim {dim}", k.isa);
            assert_eq!((k.dot_f32)(&a, &a), f32::INFINITY, "{} dim {dim}", k.isa);
            assert_eq!((k.dot_u8)(&a, &[255; 100]), f32::INFINITY, "{}", k.isa);
        }
    }
}

/// Mismatched lengths use the common prefix, including empty slices, and never panic.
#[test]
fn mismatched_lengths_use_common_prefix() {
    let mut r = Rng(42);
    let a: Vec<f32> = (0..200).map(|_| r.wide()).collect();
    let b: Vec<f32> = (0..200).map(|_| r.wide()).collect();
    let c: Vec<u8> = (0..200).map(|_| r.next_u64() as u8).collect();
    for k in available_kernels() {
        for la in [0, 1, 5, 16, 17, 64, 99, 200] {
            for lb in [0, 1, 3, 15, 16, 31, 65, 128, 200] {
                let (a, b, c) = (&a[..la], &b[..lb], &c[..lb]);
                let m = la.min(lb);
                let what = format!("{}: la {la} lb {lb}", k.isa);
                assert_eq!((k.l2_f32)(a, b), (k.l2_f32)(&a[..m], &b[..m]), "{what}");
                assert_eq!((k.dot_f32)(a, b), (k.dot_f32)(&a[..m], &b[..m]), "{what}");
                assert_eq!((k.l2_u8)(a, c), (k.l2_u8)(&a[..m], &c[..m]), "{what}");
                assert_eq!((k.dot_u8)(a, c), (k.dot_u8)(&a[..m], &c[..m]), "{what}");
                if m == 0 {
                    assert_eq!((k.l2_f32)(a, b), 0.0, "{what}");
                    assert_eq!((k.dot_u8)(a, c), 0.0, "{what}");
                }
                check_bounded(&k, a, b, c, &what).unwrap();
            }
        }
    }
}

/// `(query, f32 stored, u8 stored)`: a common dimension in 1..=1536, each vector then given up
/// to 20 extra elements so lengths also mismatch.
fn vectors() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<u8>)> {
    let value = prop_oneof![
        8 => -1e3f32..1e3f32,
        4 => -1e-2f32..1e-2f32,
        1 => Just(0.0f32),
        1 => -1e15f32..1e15f32,
        1 => Just(255.0f32),
    ];
    (1..=MAX_DIM, 0..=20usize, 0..=20usize, 0..=20usize).prop_flat_map(move |(dim, ea, eb, ec)| {
        (
            proptest::collection::vec(value.clone(), dim + ea),
            proptest::collection::vec(value.clone(), dim + eb),
            proptest::collection::vec(prop_oneof![Just(0u8), Just(255u8), any::<u8>()], dim + ec),
        )
    })
}

proptest! {
    // The default persistence looks for `lib.rs` next to the test file and finds none in
    // `tests/`; store failing seeds in `tests/simd_kernels.proptest-regressions` instead.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    /// Random values and lengths, every kernel set against the exact result; proptest prints the
    /// shrunk failing input and its seed, and replays stored seeds first on later runs.
    #[test]
    fn kernels_within_rounding_bound_of_exact((a, b, c) in vectors()) {
        for k in available_kernels() {
            if let Err(e) = check_bounded(&k, &a, &b, &c, "proptest") {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}
