//! The compact-storage kernels (`f16` and `u8` × `i8`) of every SIMD set this CPU can run,
//! checked against the scalar reference, and the SQ8 quantiser.
//!
//! * `dot_u8i8` is integer arithmetic: every set must equal scalar **bit for bit**, for every
//!   dimension 1..=1536, on random bytes and on the extremes (255 × −128, 255 × 127).
//! * The `f16` kernels widen each stored element exactly and then sum like the `f32` kernels, so
//!   they get the same two checks as those in `simd_kernels.rs`: bit equality where every partial
//!   sum is an exact integer, and the summation rounding bound (see [`tolerance`]) otherwise.
//! * SQ8: encode/decode error within half a step inside the trained range, saturation outside,
//!   the integer-dot distance within a derived bound of the decode-then-`f32` reference, and the
//!   byte format rejecting every truncation and corruption without panicking.
//!
//! Sets the CPU has must not be skipped silently: [`expected_sets`] reads `/proc/cpuinfo` (and
//! `is_x86_feature_detected!`), and each kernel test fails if one of those sets did not run.
//! Randomised tests print their seeds (or derive them from the dimension, printed on failure).

mod common;

use common::splitmix::SplitMix as Rng;
use std::collections::BTreeSet;

use hnsw_batch::distance::sq8::{dot_sq8_exact, l2_sq8_exact, Sq8Error, Sq8Params};
use hnsw_batch::distance::{
    available_compact_kernels, available_kernels, compact_kernels, decode_f16, encode_f16, scalar,
    CompactKernels,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const MAX_DIM: usize = 1536;

/// Unit roundoff of `f32`, 2^-24.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// Flags of the first processor in `/proc/cpuinfo`, if readable (Linux).
fn cpuinfo_flags() -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    Some(line.split(':').nth(1)?.split_whitespace().map(str::to_owned).collect())
}

/// The compact SIMD sets this CPU must run, by `/proc/cpuinfo` or by std's run-time detection
/// (either saying "present" is enough).
fn expected_sets() -> BTreeSet<&'static str> {
    #[allow(unused_variables)]
    let flags = cpuinfo_flags().unwrap_or_default();
    #[allow(unused_mut)]
    let mut sets = BTreeSet::new();
    #[cfg(target_arch = "x86_64")]
    {
        let has = |flag: &str, detected: bool| flags.contains(flag) || detected;
        let avx2 = has("avx2", is_x86_feature_detected!("avx2"))
            && has("fma", is_x86_feature_detected!("fma"))
            && has("f16c", is_x86_feature_detected!("f16c"));
        let avx512 = has("avx512f", is_x86_feature_detected!("avx512f"))
            && has("avx512bw", is_x86_feature_detected!("avx512bw"))
            && has("avx512vl", is_x86_feature_detected!("avx512vl"));
        let vnni = avx512 && has("avx512_vnni", is_x86_feature_detected!("avx512vnni"));
        for (name, present) in [("avx2", avx2), ("avx512", avx512), ("avx512vnni", vnni)] {
            if present {
                sets.insert(name);
            }
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    sets.insert("neon");
    sets
}

/// The SIMD compact sets to test.
fn simd_sets() -> Vec<CompactKernels> {
    available_compact_kernels().into_iter().filter(|k| k.isa != "scalar").collect()
}

/// Fails if a set this CPU supports is missing from `ran`; prints what ran.
fn assert_ran_all(test: &str, ran: &BTreeSet<&'static str>) {
    let expected = expected_sets();
    eprintln!("{test}: ran {ran:?} (expected from cpuinfo/detection: {expected:?})");
    let missing: Vec<_> = expected.difference(ran).collect();
    assert!(missing.is_empty(), "{test}: the CPU has {missing:?} but those kernel sets did not run");
}

/// `f16` values of `x`, and `x` rounded to them.
fn to_f16(x: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let mut h = vec![0u16; x.len()];
    encode_f16(x, &mut h);
    let mut back = vec![0f32; x.len()];
    decode_f16(&h, &mut back);
    (h, back)
}

#[test]
fn compact_sets_match_cpu() {
    let sets = available_compact_kernels();
    assert_eq!(sets[0].isa, "scalar");
    let names: BTreeSet<_> = sets.iter().map(|k| k.isa).filter(|&n| n != "scalar").collect();
    eprintln!(
        "compact: available {:?}, chosen {}; f32 sets {:?}; cpuinfo-expected {:?}",
        sets.iter().map(|k| k.isa).collect::<Vec<_>>(),
        compact_kernels().isa,
        available_kernels().iter().map(|k| k.isa).collect::<Vec<_>>(),
        expected_sets(),
    );
    assert_ran_all("compact_sets_match_cpu", &names);
    // The fastest available set is chosen unless HNSW_BATCH_ISA forces one this CPU has (run
    // e.g. `HNSW_BATCH_ISA=avx512 cargo test --test compact_kernels compact_sets` to check).
    let chosen = compact_kernels().isa;
    match std::env::var("HNSW_BATCH_ISA").ok() {
        Some(f) if f == "scalar" || (cfg!(target_arch = "x86_64") && names.contains(f.as_str())) => {
            assert_eq!(chosen, f)
        }
        Some(f) if ["avx2", "avx512", "avx512vnni"].contains(&f.as_str()) && cfg!(target_arch = "x86_64") => {
            assert_eq!(chosen, "scalar", "forced {f} is not available: scalar")
        }
        _ => assert_eq!(chosen, sets.last().unwrap().isa),
    }
}

// ---------------------------------------------------------------------------------------------
// u8 × i8
// ---------------------------------------------------------------------------------------------

/// The exact value in `i64` (no wrap-around possible for these lengths).
fn dot_u8i8_i64(c: &[u8], w: &[i8]) -> i64 {
    c.iter().zip(w).map(|(&c, &w)| i64::from(c) * i64::from(w)).sum()
}

fn check_u8i8(k: &CompactKernels, c: &[u8], w: &[i8], what: &str) {
    let want = scalar::dot_u8i8(c, w);
    let got = (k.dot_u8i8)(c, w);
    assert_eq!(got, want, "{}::dot_u8i8 ({what}, len c={} w={}): simd != scalar", k.isa, c.len(), w.len());
}

/// Random bytes and the extremes, every dimension 1..=1536: bit-exact.
#[test]
fn dot_u8i8_bit_exact_every_dim() {
    let mut ran = BTreeSet::new();
    for k in simd_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0xD07_0000 + dim as u64;
            let mut r = Rng(seed);
            let c: Vec<u8> = (0..dim).map(|_| r.next_u64() as u8).collect();
            let w: Vec<i8> = (0..dim).map(|_| r.next_u64() as i8).collect();
            // The reference itself is exact here.
            assert_eq!(i64::from(scalar::dot_u8i8(&c, &w)), dot_u8i8_i64(&c, &w));
            check_u8i8(&k, &c, &w, &format!("random, seed {seed:#x}"));
            let ext_c: Vec<u8> =
                (0..dim).map(|_| if r.next_u64().is_multiple_of(4) { 0 } else { 255 }).collect();
            let ext_w: Vec<i8> =
                (0..dim).map(|_| if r.next_u64().is_multiple_of(2) { -128 } else { 127 }).collect();
            check_u8i8(&k, &ext_c, &ext_w, &format!("random extremes, seed {seed:#x}"));
            let all255 = vec![255u8; dim];
            for (wv, label) in [(-128i8, "255 x -128"), (127, "255 x 127"), (0, "255 x 0")] {
                let w = vec![wv; dim];
                check_u8i8(&k, &all255, &w, label);
                assert_eq!(i64::from((k.dot_u8i8)(&all255, &w)), 255 * i64::from(wv) * dim as i64, "{label}");
            }
            // A single non-zero product at every position catches misplaced lanes.
            if dim <= 130 || dim.is_multiple_of(97) {
                for pos in 0..dim {
                    let mut c1 = vec![0u8; dim];
                    c1[pos] = 255;
                    let w1 = vec![-128i8; dim];
                    assert_eq!((k.dot_u8i8)(&c1, &w1), -32640, "{} dim {dim} pos {pos}", k.isa);
                }
            }
        }
        ran.insert(k.isa);
    }
    assert_ran_all("dot_u8i8_bit_exact_every_dim", &ran);
}

/// Past 65 793 elements of 255 × −128 the sum leaves `i32`; every set wraps like scalar.
#[test]
fn dot_u8i8_wraps_like_scalar() {
    let n = 70_001;
    let c = vec![255u8; n];
    let w = vec![-128i8; n];
    let want = (-32640i64 * n as i64) as i32; // two's complement truncation = wrapping sum
    assert_eq!(scalar::dot_u8i8(&c, &w), want);
    for k in simd_sets() {
        assert_eq!((k.dot_u8i8)(&c, &w), want, "{}", k.isa);
    }
}

/// Mismatched lengths use the common prefix, including empty slices.
#[test]
fn dot_u8i8_mismatched_lengths() {
    let mut r = Rng(7);
    let c: Vec<u8> = (0..300).map(|_| r.next_u64() as u8).collect();
    let w: Vec<i8> = (0..300).map(|_| r.next_u64() as i8).collect();
    for k in available_compact_kernels() {
        for lc in [0, 1, 15, 16, 31, 32, 63, 64, 65, 255, 300] {
            for lw in [0, 2, 17, 33, 64, 129, 300] {
                let m = lc.min(lw);
                assert_eq!(
                    (k.dot_u8i8)(&c[..lc], &w[..lw]),
                    scalar::dot_u8i8(&c[..m], &w[..m]),
                    "{} lc {lc} lw {lw}",
                    k.isa
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// f16
// ---------------------------------------------------------------------------------------------

/// Allowed `|simd - scalar|` for a sum over `n` terms with `abs_sum = Σ|t_i|`: the bound of
/// `simd_kernels.rs`. Summation in any order with at most `d` roundings per term errs by at most
/// `γ_d · Σ|t_i|`, `γ_d = d·u/(1 - d·u)` (Higham §4.2). Both kernels widen the `f16` element and
/// subtract identically (widening is exact), so only products and additions differ: scalar depth
/// `≤ n/4 + 6` (4 lanes, 2 pairwise, 3 tail, 1 product), SIMD `≤ n/16 + 16` (≥ 8 lanes × 4
/// accumulators with FMA, ≤ 3 single steps, ≤ 7 scalar tail, ≤ 6 reduction levels), plus
/// `f32::MIN_POSITIVE` for subnormal results.
fn tolerance(n: usize, abs_sum: f64) -> f64 {
    let gamma = |d: usize| {
        let du = d as f64 * U;
        du / (1.0 - du)
    };
    (gamma(n / 4 + 6) + gamma(n / 16 + 16)) * abs_sum + f32::MIN_POSITIVE as f64
}

/// Checks both `f16` kernels of `k` against scalar on `(q, x)` with the rounding bound.
fn check_f16_bounded(k: &CompactKernels, q: &[f32], x: &[u16], what: &str) -> Result<(), String> {
    let n = q.len().min(x.len());
    let xf: Vec<f64> = x[..n].iter().map(|&h| f64::from(scalar::f16_to_f32(h))).collect();
    let l2_abs: f64 = q.iter().zip(&xf).map(|(&a, &b)| (f64::from(a) - b).powi(2)).sum();
    let dot_abs: f64 = q.iter().zip(&xf).map(|(&a, &b)| (f64::from(a) * b).abs()).sum();
    let cases = [
        ("l2_f16", (k.l2_f16)(q, x), scalar::l2_f16(q, x), tolerance(n, l2_abs)),
        ("dot_f16", (k.dot_f16)(q, x), scalar::dot_f16(q, x), tolerance(n, dot_abs)),
    ];
    for (name, got, want, tol) in cases {
        let err = (f64::from(got) - f64::from(want)).abs();
        if err.is_nan() || err > tol {
            return Err(format!(
                "{}::{name} ({what}, len q={} x={}): simd {got:e} vs scalar {want:e}, |diff| {err:e} > bound {tol:e}",
                k.isa,
                q.len(),
                x.len()
            ));
        }
    }
    Ok(())
}

/// Integer inputs, every dimension 1..=1536: every partial sum is an integer below 2^24, so the
/// results must be bit-identical.
#[test]
fn f16_exact_on_integer_inputs_every_dim() {
    let mut ran = BTreeSet::new();
    for k in simd_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0xF16_0000 + dim as u64;
            let mut r = Rng(seed);
            // |q - x|^2 <= 100^2 and |q·x| <= 50^2, times 1536 < 2^24; integers are exact in f16.
            let q: Vec<f32> = (0..dim).map(|_| r.int(-50, 50) as f32).collect();
            let x: Vec<f32> = (0..dim).map(|_| r.int(-50, 50) as f32).collect();
            let (h, back) = to_f16(&x);
            assert_eq!(back, x);
            for (name, got, want) in [
                ("l2_f16", (k.l2_f16)(&q, &h), scalar::l2_f16(&q, &h)),
                ("dot_f16", (k.dot_f16)(&q, &h), scalar::dot_f16(&q, &h)),
            ] {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{}::{name} dim {dim} seed {seed:#x}: {got} != {want}",
                    k.isa
                );
            }
            // The f16 kernels agree with the f32 kernels on the widened vector, exactly here.
            assert_eq!((k.l2_f16)(&q, &h), scalar::l2_f32(&q, &back));
        }
        ran.insert(k.isa);
    }
    assert_ran_all("f16_exact_on_integer_inputs_every_dim", &ran);
}

/// Real inputs of widely varying magnitude, every dimension 1..=1536, within the rounding bound.
#[test]
fn f16_bounded_on_real_inputs_every_dim() {
    let mut ran = BTreeSet::new();
    for k in simd_sets() {
        for dim in 1..=MAX_DIM {
            let seed = 0xF16B_0000 + dim as u64;
            let mut r = Rng(seed);
            let q: Vec<f32> = (0..dim).map(|_| r.wide()).collect();
            let x: Vec<f32> = (0..dim).map(|_| r.wide()).collect();
            let (h, _) = to_f16(&x);
            check_f16_bounded(&k, &q, &h, &format!("wide, seed {seed:#x}")).unwrap();
            // Small values keep the sums below 1, so the bound is below 1e-4 at every dimension:
            // an error of 1e-3 (a kernel adding a constant, a lost or doubled element) fails.
            let q: Vec<f32> = (0..dim).map(|_| r.unit() * 0.01).collect();
            let x: Vec<f32> = (0..dim).map(|_| r.unit() * 0.01).collect();
            let (h, _) = to_f16(&x);
            check_f16_bounded(&k, &q, &h, &format!("small, seed {seed:#x}")).unwrap();
        }
        ran.insert(k.isa);
    }
    assert_ran_all("f16_bounded_on_real_inputs_every_dim", &ran);
}

/// Zeros, the largest finite `f16`, subnormal `f16`s, infinities and NaN, around every chunk
/// boundary.
#[test]
fn f16_special_values() {
    const F16_MAX: u16 = 0x7BFF; // 65504
    const F16_MIN_SUB: u16 = 0x0001; // 2^-24
    const F16_INF: u16 = 0x7C00;
    const F16_NAN: u16 = 0x7E00;
    let dims = (0..=70).chain([127, 128, 129, 383, 384, 385, 767, 768, 769, 1535, 1536]);
    for k in simd_sets() {
        for dim in dims.clone() {
            let zq = vec![0f32; dim];
            let zh = vec![0u16; dim];
            assert_eq!((k.l2_f16)(&zq, &zh), 0.0);
            assert_eq!((k.dot_f16)(&zq, &zh), 0.0);
            let maxh = vec![F16_MAX; dim];
            check_f16_bounded(&k, &zq, &maxh, "zero query, f16 max stored").unwrap();
            let negmax = vec![F16_MAX | 0x8000; dim];
            check_f16_bounded(&k, &vec![65504f32; dim], &negmax, "65504 vs -65504").unwrap();
            let mut r = Rng(dim as u64);
            let sub: Vec<u16> = (0..dim).map(|_| (r.next_u64() % 0x400) as u16 | F16_MIN_SUB).collect();
            let q: Vec<f32> = (0..dim).map(|_| r.unit() * 1e-3).collect();
            check_f16_bounded(&k, &q, &sub, "subnormal f16").unwrap();
            let neg0 = vec![0x8000u16; dim];
            check_f16_bounded(&k, &q, &neg0, "negative zero").unwrap();
            if dim > 0 {
                let mut inf = zh.clone();
                inf[dim - 1] = F16_INF;
                assert_eq!((k.l2_f16)(&zq, &inf), f32::INFINITY, "{} dim {dim}", k.isa);
                let mut nan = zh.clone();
                nan[dim / 2] = F16_NAN;
                assert!((k.l2_f16)(&zq, &nan).is_nan(), "{} dim {dim}", k.isa);
                assert!((k.dot_f16)(&zq, &nan).is_nan(), "{} dim {dim}", k.isa);
            }
        }
    }
}

/// Mismatched lengths use the common prefix, including empty slices.
#[test]
fn f16_mismatched_lengths() {
    let mut r = Rng(42);
    let q: Vec<f32> = (0..200).map(|_| r.wide()).collect();
    let (h, _) = to_f16(&(0..200).map(|_| r.wide()).collect::<Vec<_>>());
    for k in available_compact_kernels() {
        for lq in [0, 1, 5, 16, 17, 64, 99, 200] {
            for lh in [0, 1, 3, 15, 16, 31, 65, 128, 200] {
                let m = lq.min(lh);
                let what = format!("{}: lq {lq} lh {lh}", k.isa);
                assert_eq!((k.l2_f16)(&q[..lq], &h[..lh]), (k.l2_f16)(&q[..m], &h[..m]), "{what}");
                assert_eq!((k.dot_f16)(&q[..lq], &h[..lh]), (k.dot_f16)(&q[..m], &h[..m]), "{what}");
                check_f16_bounded(&k, &q[..lq], &h[..lh], &what).unwrap();
            }
        }
    }
}

/// Every `f16` bit pattern decodes and re-encodes to itself (NaN to some NaN); encoding rounds
/// to nearest and overflows to infinity.
#[test]
fn f16_encode_decode() {
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut f = vec![0f32; all.len()];
    decode_f16(&all, &mut f);
    let mut back = vec![0u16; all.len()];
    encode_f16(&f, &mut back);
    for (&h, &b) in all.iter().zip(&back) {
        if f[h as usize].is_nan() {
            assert!(scalar::f16_to_f32(b).is_nan(), "{h:#06x}");
        } else {
            assert_eq!(h, b, "{h:#06x}");
            assert_eq!(f[h as usize].to_bits(), scalar::f16_to_f32(h).to_bits());
        }
    }
    let (h, x) = to_f16(&[1.0, 1.0 + 1.0 / 4096.0, 65504.0, 65520.0, -1e6, 1e-9]);
    assert_eq!(x, [1.0, 1.0, 65504.0, f32::INFINITY, f32::NEG_INFINITY, 0.0]);
    assert_eq!(h[0], 0x3C00);
}

// ---------------------------------------------------------------------------------------------
// SQ8
// ---------------------------------------------------------------------------------------------

/// `n` rows of dimension `dim`: each component has its own centre and spread (over six orders
/// of magnitude); every 7th component is constant (zero range).
fn sq8_rows(r: &mut Rng, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let centre: Vec<f32> = (0..dim).map(|_| r.wide()).collect();
    let spread: Vec<f32> = (0..dim).map(|i| if i % 7 == 3 { 0.0 } else { r.wide().abs() }).collect();
    (0..n).map(|_| (0..dim).map(|i| centre[i] + spread[i] * r.unit()).collect()).collect()
}

fn train(rows: &[Vec<f32>], dim: usize) -> Sq8Params {
    Sq8Params::train(rows.iter().map(Vec::as_slice), dim).unwrap()
}

/// Inside the trained range, decode(encode(x)) is within half a step (plus rounding).
#[test]
fn sq8_round_trip_within_half_step() {
    for dim in [1, 2, 7, 16, 33, 128, 384, 1536] {
        let seed = 0x5180_0000 + dim as u64;
        eprintln!("sq8_round_trip_within_half_step: dim {dim} seed {seed:#x}");
        let mut r = Rng(seed);
        let rows = sq8_rows(&mut r, 50, dim);
        let p = train(&rows, dim);
        assert_eq!(p.dim(), dim);
        for i in 0..dim {
            if i % 7 == 3 {
                assert_eq!(p.scale()[i], 0.0, "constant component {i}");
            }
        }
        let mut codes = vec![0u8; dim];
        let mut back = vec![0f32; dim];
        // The training rows, and fresh points drawn inside each component's range.
        let inside: Vec<Vec<f32>> = (0..50)
            .map(|_| (0..dim).map(|i| p.lo()[i] + p.scale()[i] * 255.0 * (r.unit() + 1.0) / 2.0).collect())
            .collect();
        for x in rows.iter().chain(&inside) {
            p.encode(x, &mut codes);
            p.decode(&codes, &mut back);
            for i in 0..dim {
                let (s, err) = (f64::from(p.scale()[i]), (f64::from(back[i]) - f64::from(x[i])).abs());
                // Half a step, 255·u·scale for the rounding of `scale` itself at the top of the
                // range, one rounding of the decoded value and one of the test's own point (it
                // may land an ulp outside the range), and slack for the f64 arithmetic.
                let bound = s * (0.5 + 256.0 * U) + 2.01 * U * f64::from(back[i]).abs() + 1e-45;
                assert!(
                    err <= bound,
                    "dim {dim} comp {i}: x {} -> code {} -> {} err {err:e} > {bound:e}",
                    x[i],
                    codes[i],
                    back[i]
                );
            }
        }
        // Component extremes map to codes 0 and 255.
        let lo: Vec<f32> = p.lo().to_vec();
        p.encode(&lo, &mut codes);
        assert!(codes.iter().all(|&c| c == 0));
    }
}

/// Values outside the range saturate to codes 0 / 255; NaN encodes to 0.
#[test]
fn sq8_saturates_outside_range() {
    // Ranges 0..255 and -255..255 give steps 1 and 2, exact in f32, so codes are predictable.
    let rows = [vec![0.0f32, -255.0, 5.0], vec![255.0, 255.0, 5.0]];
    let p = train(&rows, 3);
    assert_eq!(p.lo(), [0.0, -255.0, 5.0]);
    assert_eq!(p.scale(), [1.0, 2.0, 0.0]);
    let mut c = [0u8; 3];
    let cases: [([f32; 3], [u8; 3]); 6] = [
        ([127.25, 0.5, 5.0], [127, 128, 0]),
        ([-10.0, -1e30, 4.0], [0, 0, 0]),
        ([1000.0, 1e30, 6.0], [255, 255, 0]),
        ([f32::MAX, f32::MIN, f32::MAX], [255, 0, 0]),
        ([f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY], [255, 0, 0]),
        ([f32::NAN, f32::NAN, f32::NAN], [0, 0, 0]),
    ];
    for (x, want) in cases {
        p.encode(&x, &mut c);
        assert_eq!(c, want, "{x:?}");
    }
    let mut back = [0f32; 3];
    p.encode(&[1000.0, -1000.0, 100.0], &mut c);
    p.decode(&c, &mut back);
    assert_eq!(back, [255.0, -255.0, 5.0], "saturated values decode to the range ends");
}

#[test]
fn sq8_train_errors() {
    let rows = [vec![1.0f32, 2.0], vec![1.0, f32::NAN]];
    let it = || rows.iter().map(Vec::as_slice);
    assert_eq!(Sq8Params::train(it(), 0), Err(Sq8Error::BadDim(0)));
    assert_eq!(Sq8Params::train(it(), 1 << 17), Err(Sq8Error::BadDim(1 << 17)));
    assert_eq!(Sq8Params::train(it(), 3), Err(Sq8Error::RowLength { row: 0, len: 2, dim: 3 }));
    assert_eq!(Sq8Params::train(it(), 2), Err(Sq8Error::NonFinite { row: 1, component: 1 }));
    assert_eq!(Sq8Params::train(std::iter::empty(), 2), Err(Sq8Error::NoRows));
    // A range of 2·f32::MAX does not overflow.
    let p = Sq8Params::train([&[f32::MAX][..], &[f32::MIN][..]], 1).unwrap();
    assert!(p.scale()[0].is_finite() && p.scale()[0] > 0.0);
    assert_eq!(Sq8Params::from_parts(vec![0.0], vec![-1.0]), Err(Sq8Error::InvalidParam { component: 0 }));
    assert_eq!(Sq8Params::from_parts(vec![0.0], vec![]), Err(Sq8Error::LengthMismatch { lo: 1, scale: 0 }));
}

/// Bound on `|integer path − dot_sq8_exact|`, both against the real value `T = Σ q_i·D_i` of the
/// decoded vector `D_i = lo_i + scale_i·c_i`.
///
/// Integer path `I = fl(c0 + fl(sw · fl(S)))`, `S = Σ w8_i·c_i` exact:
/// * weight rounding: `|w_i − sw·w8_i| ≤ sw/2`, so `|C0 + sw·S − T| ≤ sw/2 · Σ c_i`;
/// * `c0` (an `f64` sum rounded once), `S` to `f32`, the product and the sum: at most
///   `3u·(Σ|q_i·lo_i| + sw·|S|)` to first order (written with slack below).
///
/// Reference `E = dot_f32(q, d)`, `d_i = fl(D_i)`: `u·Σ|q_i·D_i|` from decoding and
/// `γ_{n/4+6}·Σ|q_i·d_i|` from the summation (see [`tolerance`]).
struct DotBound {
    /// Bound on `|I − T|`.
    int_vs_true: f64,
    /// Bound on `|E − T|`.
    exact_vs_true: f64,
}

fn sq8_dot_bound(q: &[f32], p: &Sq8Params, codes: &[u8], sw: f64, s_int: i64) -> DotBound {
    let n = q.len();
    let gamma = |d: usize| d as f64 * U / (1.0 - d as f64 * U);
    let mut d = vec![0f32; n];
    p.decode(codes, &mut d);
    let sum_c: f64 = codes.iter().map(|&c| f64::from(c)).sum();
    let abs_c0: f64 = q.iter().zip(p.lo()).map(|(&q, &l)| (f64::from(q) * f64::from(l)).abs()).sum();
    let abs_qd: f64 = q.iter().zip(&d).map(|(&q, &d)| (f64::from(q) * f64::from(d)).abs()).sum();
    let quant = sw / 2.0 * sum_c * (1.0 + 1e-12);
    let round = 3.01 * U * (abs_c0 + sw * s_int.unsigned_abs() as f64) + n as f64 * 2f64.powi(-52) * abs_c0;
    DotBound {
        int_vs_true: quant + round + 4.0 * f64::from(f32::MIN_POSITIVE),
        exact_vs_true: (1.01 * U + gamma(n / 4 + 6)) * abs_qd + 4.0 * f64::from(f32::MIN_POSITIVE),
    }
}

/// The integer-dot distances (every set's kernel) within the derived bound of the reference,
/// for dot product and squared L2, including queries outside the trained range.
#[test]
fn sq8_integer_path_error_bounded() {
    let mut ran = BTreeSet::new();
    let mut worst = 0f64;
    let dims: Vec<usize> = (1..=40).chain([63, 64, 65, 127, 128, 129, 384, 768, 1000, 1536]).collect();
    for k in available_compact_kernels() {
        for &dim in &dims {
            let seed = 0x5181_0000 + dim as u64;
            let mut r = Rng(seed);
            let rows = sq8_rows(&mut r, 40, dim);
            let p = train(&rows, dim);
            // Queries: a training row, a fresh row, and one well outside the range.
            let queries = [
                rows[0].clone(),
                sq8_rows(&mut r, 1, dim).remove(0),
                (0..dim).map(|_| r.wide() * 10.0).collect(),
            ];
            for (qi, q) in queries.iter().enumerate() {
                let prep = p.prepare_query(q);
                let sw = f64::from(prep.weight_scale());
                assert!(prep.weights().iter().all(|&w| w != -128));
                for x in rows.iter().take(10) {
                    let mut codes = vec![0u8; dim];
                    p.encode(x, &mut codes);
                    let s_int = i64::from((k.dot_u8i8)(&codes, prep.weights()));
                    assert_eq!(s_int, dot_u8i8_i64(&codes, prep.weights()));
                    let b = sq8_dot_bound(q, &p, &codes, sw, s_int);
                    let got = prep.dot_with(k.dot_u8i8, &codes);
                    let want = dot_sq8_exact(q, &p, &codes);
                    let err = (f64::from(got) - f64::from(want)).abs();
                    let bound = b.int_vs_true + b.exact_vs_true;
                    let what = format!("{} dim {dim} seed {seed:#x} query {qi}", k.isa);
                    assert!(
                        err <= bound,
                        "dot ({what}): int {got:e} vs exact {want:e}, err {err:e} > {bound:e}"
                    );
                    worst = worst.max(err / bound);

                    // L2 = ‖q‖² − 2·q·x + ‖x‖² (see the module docs); the extra terms: the
                    // roundings of ‖q‖² and ‖x‖² (each an f64 sum of f32 values, rounded once;
                    // ‖x‖² of the rounded decoded values: ≤ 2u relative), of 2·dot and the two
                    // additions; and for the reference, decoding (u·|D_i| per difference) and
                    // the l2_f32 summation with the subtraction (depth n/4 + 8).
                    let xn = p.decoded_norm_sq(&codes);
                    let got = prep.l2_with(k.dot_u8i8, &codes, xn);
                    let want = l2_sq8_exact(q, &p, &codes);
                    let mut d = vec![0f32; dim];
                    p.decode(&codes, &mut d);
                    let (nq, xnf) = (f64::from(prep.norm_sq()), f64::from(xn));
                    let dot_i = f64::from(prep.dot_with(k.dot_u8i8, &codes));
                    let sq: f64 =
                        q.iter().zip(&d).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum();
                    let cross: f64 = q
                        .iter()
                        .zip(&d)
                        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs() * f64::from(b).abs())
                        .sum();
                    let g = (dim / 4 + 8) as f64 * U / (1.0 - (dim / 4 + 8) as f64 * U);
                    let bound = 2.0 * b.int_vs_true
                        + 1.01 * U * nq
                        + 3.03 * U * xnf
                        + 2.03 * U * (nq + 2.0 * dot_i.abs() + xnf)
                        + g * sq
                        + 2.03 * U * cross
                        + 2.0 * U * U * xnf
                        + 8.0 * f64::from(f32::MIN_POSITIVE);
                    let err = (f64::from(got) - f64::from(want)).abs();
                    assert!(
                        err <= bound,
                        "l2 ({what}): int {got:e} vs exact {want:e}, err {err:e} > {bound:e}"
                    );
                }
            }
        }
        if k.isa != "scalar" {
            ran.insert(k.isa);
        }
    }
    eprintln!("sq8_integer_path_error_bounded: worst err/bound {worst:.3}");
    assert_ran_all("sq8_integer_path_error_bounded", &ran);
}

/// A zero query, and components with zero range, give exact results and no NaN.
#[test]
fn sq8_degenerate_queries() {
    let rows = [vec![1.0f32, 2.0, 3.0], vec![1.0, 4.0, 3.0]];
    let p = train(&rows, 3);
    let prep = p.prepare_query(&[0.0, 0.0, 0.0]);
    assert_eq!(prep.weight_scale(), 0.0);
    let mut c = [0u8; 3];
    p.encode(&rows[1], &mut c);
    assert_eq!(prep.dot(&c), 0.0);
    // Only the constant components are non-zero in the query: all weights 0, dot = c0.
    let prep = p.prepare_query(&[2.0, 0.0, -1.0]);
    assert_eq!(prep.weights(), [0, 0, 0]);
    assert_eq!(prep.dot(&c), 2.0 * 1.0 - 3.0);
    assert_eq!(prep.l2(&c, p.decoded_norm_sq(&c)), l2_sq8_exact(&[2.0, 0.0, -1.0], &p, &c));
}

fn sample_params(dim: usize) -> Sq8Params {
    let mut r = Rng(0xB17E5 + dim as u64);
    train(&sq8_rows(&mut r, 20, dim), dim)
}

#[test]
fn sq8_bytes_round_trip() {
    for dim in [1, 3, 128, 1536, 1 << 16] {
        let p = sample_params(dim);
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), p.serialized_len());
        assert_eq!(&bytes[..4], b"HBS8");
        let back = Sq8Params::from_bytes(&bytes).unwrap();
        assert_eq!(back, p);
        // Bit-exact, not merely ==.
        assert!(back.lo().iter().zip(p.lo()).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(back.scale().iter().zip(p.scale()).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

/// Every prefix, every single-bit flip, every byte set to 0x00 and 0xFF, and extra bytes: an
/// error, never a panic, never a successful parse.
#[test]
fn sq8_bytes_every_truncation_and_corruption_is_err() {
    for dim in [1, 2, 17] {
        let bytes = sample_params(dim).to_bytes();
        for len in 0..bytes.len() {
            match Sq8Params::from_bytes(&bytes[..len]) {
                Err(Sq8Error::Truncated { got, .. }) => assert_eq!(got, len),
                other => panic!("dim {dim} prefix {len}: {other:?}"),
            }
        }
        for i in 0..bytes.len() {
            let mut variants: Vec<Vec<u8>> = (0..8)
                .map(|bit| {
                    let mut b = bytes.clone();
                    b[i] ^= 1 << bit;
                    b
                })
                .collect();
            for v in [0x00, 0xFF] {
                if bytes[i] != v {
                    let mut b = bytes.clone();
                    b[i] = v;
                    variants.push(b);
                }
            }
            for b in variants {
                let res = Sq8Params::from_bytes(&b);
                assert!(res.is_err(), "dim {dim}: corrupting byte {i} went undetected: {res:?}");
            }
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Sq8Params::from_bytes(&long), Err(Sq8Error::TrailingBytes(1)));
    }
}

/// Well-formed records (checksum right) with bad contents.
#[test]
fn sq8_bytes_bad_contents() {
    let reseal = |mut b: Vec<u8>| {
        let n = b.len() - 4;
        let crc = crc32fast_like(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let good = sample_params(2).to_bytes();
    // NaN offset, negative scale, infinite scale.
    for (at, val) in [(12, f32::NAN), (20, -1.0), (24, f32::INFINITY)] {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&val.to_le_bytes());
        let comp = ((at - 12) / 4) % 2;
        assert_eq!(Sq8Params::from_bytes(&reseal(b)), Err(Sq8Error::InvalidParam { component: comp }));
    }
    let mut b = good.clone();
    b[4] = 2;
    assert_eq!(Sq8Params::from_bytes(&b), Err(Sq8Error::UnsupportedVersion(2)));
    for dim in [0u32, 65537, u32::MAX] {
        let mut b = good.clone();
        b[8..12].copy_from_slice(&dim.to_le_bytes());
        assert_eq!(Sq8Params::from_bytes(&b), Err(Sq8Error::BadDim(dim as usize)));
    }
    assert_eq!(Sq8Params::from_bytes(b"HBS9\x01\0\0\0\x01\0\0\0"), Err(Sq8Error::BadMagic));
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), written out here so the test does not take
/// the library's word for the checksum it checks.
fn crc32fast_like(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

/// `(query, f16 stored)`: a common dimension in 1..=1536, each then given up to 20 extra
/// elements so lengths also mismatch.
fn f16_vectors() -> impl Strategy<Value = (Vec<f32>, Vec<u16>)> {
    let value = prop_oneof![
        8 => -1e3f32..1e3f32,
        1 => Just(0.0f32),
        1 => -65504f32..65504f32,
        1 => -1e-5f32..1e-5f32,
    ];
    (1..=MAX_DIM, 0..=20usize, 0..=20usize).prop_flat_map(move |(dim, eq, ex)| {
        (
            proptest::collection::vec(value.clone(), dim + eq),
            proptest::collection::vec(value.clone(), dim + ex).prop_map(|x| to_f16(&x).0),
        )
    })
}

/// `(codes, weights)` with extremes over-represented.
fn u8i8_vectors() -> impl Strategy<Value = (Vec<u8>, Vec<i8>)> {
    (1..=MAX_DIM, 0..=70usize, 0..=70usize).prop_flat_map(|(dim, ec, ew)| {
        (
            proptest::collection::vec(prop_oneof![Just(0u8), Just(255u8), any::<u8>()], dim + ec),
            proptest::collection::vec(prop_oneof![Just(-128i8), Just(127i8), any::<i8>()], dim + ew),
        )
    })
}

proptest! {
    // As in `simd_kernels.rs`: store failing seeds in `tests/compact_kernels.proptest-regressions`.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    /// Random values and lengths; proptest prints the shrunk failing input and its seed.
    #[test]
    fn f16_simd_matches_scalar((q, x) in f16_vectors()) {
        for k in simd_sets() {
            if let Err(e) = check_f16_bounded(&k, &q, &x, "proptest") {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    #[test]
    fn u8i8_simd_matches_scalar((c, w) in u8i8_vectors()) {
        let want = scalar::dot_u8i8(&c, &w);
        prop_assert_eq!(i64::from(want), dot_u8i8_i64(&c, &w));
        for k in simd_sets() {
            prop_assert_eq!((k.dot_u8i8)(&c, &w), want, "{}", k.isa);
        }
    }

    /// Arbitrary bytes, and valid records with random bytes overwritten: never a panic.
    #[test]
    fn sq8_from_bytes_never_panics(
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        dim in 1usize..40,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let _ = Sq8Params::from_bytes(&junk);
        let mut b = sample_params(dim).to_bytes();
        let n = b.len();
        for (at, v) in edits {
            b[at % n] = v;
        }
        let _ = Sq8Params::from_bytes(&b);
        let _ = Sq8Params::from_bytes(&b[..b.len() / 2]);
    }
}
