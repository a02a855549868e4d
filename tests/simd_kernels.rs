//! Every SIMD kernel set this CPU can run, checked against the scalar reference kernels.
//!
//! Two kinds of check:
//!
//! * **Exact.** With small integer inputs every product and every partial sum is an integer
//!   below 2^24, so it is exact in `f32` whatever the summation order: a SIMD kernel must then
//!   equal the scalar one bit for bit. This catches any dropped, duplicated or misplaced element
//!   (tails, masks, loop bounds) with zero tolerance, for every dimension 1..=1536.
//! * **Rounding-bounded.** With arbitrary real inputs the kernels sum the same terms in a
//!   different order (SIMD lanes, several accumulators, FMA instead of multiply-then-add), so
//!   they may differ by rounding. See [`tolerance`] for the bound and why it holds.

use hnsw_batch::distance::{available_kernels, scalar, Kernels};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const MAX_DIM: usize = 1536;

/// Unit roundoff of `f32`, 2^-24.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// SplitMix64: a tiny deterministic generator, so failures print a seed that reproduces them.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// Integer in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    /// A value whose magnitude spans six orders (so dot products cancel heavily).
    fn wide(&mut self) -> f32 {
        let scale = [1e-3f32, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3][self.int(0, 6) as usize];
        self.unit() * scale
    }
}

fn simd_sets() -> Vec<Kernels> {
    available_kernels().into_iter().filter(|k| k.isa != "scalar").collect()
}

/// Allowed `|simd - scalar|` for a sum of terms `t_i` over `n` elements, `abs_sum = Σ|t_i|`
/// (computed exactly enough in `f64`).
///
/// Floating-point summation in any order (any tree) in which each term passes through at most
/// `d` roundings has error at most `γ_d · Σ|t_i|`, `γ_d = d·u / (1 - d·u)`, `u = 2^-24`
/// (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2). Both kernels compute each
/// difference `a_i - b_i` identically, so only the products and additions differ. Depths:
///
/// * scalar `f32` kernels: 4 lanes of `n/4` additions, 2 pairwise, at most 3 in the tail, plus
///   1 for rounding the product: `≤ n/4 + 6`.
/// * scalar `u8` kernels: a single running sum: `≤ n + 1`.
/// * SIMD (at least 4 lanes × 4 accumulators, FMA so products are not rounded separately, a
///   pairwise/horizontal reduction of at most 6 levels, a scalar tail of at most 7): `≤ n/16 + 16`.
///
/// So `|simd - scalar| ≤ |simd - exact| + |scalar - exact| ≤ (γ_scalar + γ_simd) · Σ|t_i|`,
/// plus a term for subnormal results, where rounding is absolute (`≤ 2^-150` per operation, so
/// less than `f32::MIN_POSITIVE` in total for `n < 2^24`). This bound can never fail spuriously;
/// typical observed errors are far smaller (they grow like `√n`, not `n`). Gross bugs are left to
/// the exact integer test, which has zero tolerance.
fn tolerance(n: usize, u8_kernel: bool, abs_sum: f64) -> f64 {
    let gamma = |d: usize| {
        let du = d as f64 * U;
        du / (1.0 - du)
    };
    let scalar_depth = if u8_kernel { n + 1 } else { n / 4 + 6 };
    let simd_depth = n / 16 + 16;
    (gamma(scalar_depth) + gamma(simd_depth)) * abs_sum + f32::MIN_POSITIVE as f64
}

fn abs_sum_l2(a: &[f32], b: impl Iterator<Item = f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| {
            let d = x as f64 - y;
            d * d
        })
        .sum()
}

fn abs_sum_dot(a: &[f32], b: impl Iterator<Item = f64>) -> f64 {
    a.iter().zip(b).map(|(&x, y)| (x as f64 * y).abs()).sum()
}

/// Checks all four kernels of `k` against scalar on `(a, b)` and `(a, c)` with the rounding bound.
fn check_bounded(k: &Kernels, a: &[f32], b: &[f32], c: &[u8], what: &str) -> Result<(), String> {
    let nb = a.len().min(b.len());
    let nc = a.len().min(c.len());
    let bf = || b.iter().map(|&y| y as f64);
    let cf = || c.iter().map(|&y| y as f64);
    let cases = [
        ("l2_f32", (k.l2_f32)(a, b), scalar::l2_f32(a, b), tolerance(nb, false, abs_sum_l2(a, bf()))),
        ("dot_f32", (k.dot_f32)(a, b), scalar::dot_f32(a, b), tolerance(nb, false, abs_sum_dot(a, bf()))),
        ("l2_u8", (k.l2_u8)(a, c), scalar::l2_u8(a, c), tolerance(nc, true, abs_sum_l2(a, cf()))),
        ("dot_u8", (k.dot_u8)(a, c), scalar::dot_u8(a, c), tolerance(nc, true, abs_sum_dot(a, cf()))),
    ];
    for (name, got, want, tol) in cases {
        let err = (got as f64 - want as f64).abs();
        // A NaN result must fail too.
        if err.is_nan() || err > tol {
            return Err(format!(
                "{}::{name} ({what}, len a={} b={} c={}): simd {got:e} vs scalar {want:e}, \
                 |diff| {err:e} > bound {tol:e}",
                k.isa,
                a.len(),
                b.len(),
                c.len(),
            ));
        }
    }
    Ok(())
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

#[test]
fn reports_sets() {
    let sets = available_kernels();
    assert_eq!(sets[0].isa, "scalar");
    let chosen = hnsw_batch::distance::kernels();
    eprintln!("available: {:?}; chosen: {}", sets.iter().map(|k| k.isa).collect::<Vec<_>>(), chosen.isa);
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
    for k in simd_sets() {
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

/// Zeros, large magnitudes and the u8 extremes 0 and 255, at sizes around every chunk boundary.
#[test]
fn special_values() {
    let dims = (0..=70).chain([127, 128, 129, 383, 384, 385, 783, 784, 785, 1535, 1536]);
    for k in simd_sets() {
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

/// Overflow must give infinity in SIMD exactly when it does in scalar for non-negative terms.
#[test]
fn overflow_to_infinity() {
    for k in simd_sets() {
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

    /// Random values and lengths; proptest prints the shrunk failing input and its seed, and
    /// replays stored seeds first on later runs.
    #[test]
    fn simd_matches_scalar((a, b, c) in vectors()) {
        for k in simd_sets() {
            if let Err(e) = check_bounded(&k, &a, &b, &c, "proptest") {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}
