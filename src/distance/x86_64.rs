//! x86-64 SIMD kernels: an AVX2+FMA set and an AVX-512 (F+BW+VL) set of [`Kernels`], three
//! sets of [`CompactKernels`] for compact storage: AVX2+FMA+F16C, AVX-512 (F+BW+VL) and AVX-512
//! with VNNI, and an AVX-512 set of [`QuadKernels`] (four stored vectors per call).
//!
//! # Safety structure
//!
//! Every kernel body is a `#[target_feature]` function, which may only run on a CPU that has
//! those features. The safe `fn` pointers stored in [`Kernels`] are private wrappers in this
//! module; the only code that names them is [`avx2_set`], [`avx512_set`], [`avx2_compact_set`],
//! [`avx512_compact_set`], [`avx512vnni_compact_set`] and [`avx512_quad_set`], and each returns
//! `None` unless `is_x86_feature_detected!` has confirmed every feature its kernels are compiled
//! for. Everything outside this module reaches the wrappers only through [`detect`],
//! [`available`], [`detect_compact`], [`available_compact`] and [`quad`], which hand out nothing
//! but the results of those functions. So a wrapper can
//! only ever be called on a CPU that supports its instructions, which is what makes the `unsafe`
//! calls inside the wrappers sound.
//!
//! Loads take fixed-size arrays (`&[f32; 8]`, `&[u8; 16]`, ...) so the type itself proves the
//! bytes read are in bounds; only the AVX-512 tail loads take a short slice, and they mask off
//! every lane past its end (masked-off lanes are never accessed, so they cannot fault).

use super::{CompactKernels, Kernels, QuadKernels};

/// Picks the kernel set to use. `forced` is the `HNSW_BATCH_ISA` override: `avx2` and `avx512`
/// select that set (or `None` if this CPU lacks it); anything else means "fastest available".
pub(super) fn detect(forced: Option<&str>) -> Option<Kernels> {
    match forced {
        Some("avx2") => avx2_set(),
        Some("avx512") => avx512_set(),
        _ => best_set(),
    }
}

/// Every SIMD set this CPU supports, slowest first.
pub(super) fn available() -> Vec<Kernels> {
    avx2_set().into_iter().chain(avx512_set()).collect()
}

/// Whether the features of the AVX2 set are present.
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Whether the features of the AVX-512 set are present.
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
}

/// The AVX2+FMA set, if this CPU supports it.
fn avx2_set() -> Option<Kernels> {
    has_avx2().then_some(Kernels {
        isa: "avx2",
        l2_f32: avx2::l2_f32,
        dot_f32: avx2::dot_f32,
        l2_u8: avx2::l2_u8,
        dot_u8: avx2::dot_u8,
    })
}

/// The pure AVX-512 set, if this CPU supports it.
fn avx512_set() -> Option<Kernels> {
    has_avx512().then_some(Kernels {
        isa: "avx512",
        l2_f32: avx512::l2_f32,
        dot_f32: avx512::dot_f32,
        l2_u8: avx512::l2_u8,
        dot_u8: avx512::dot_u8,
    })
}

/// The AVX-512 [`QuadKernels`], if this CPU supports them.
fn avx512_quad_set() -> Option<QuadKernels> {
    has_avx512().then_some(QuadKernels {
        isa: "avx512",
        l2_f32_x4: avx512::l2_f32_x4,
        dot_f32_x4: avx512::dot_f32_x4,
    })
}

/// The fused [`QuadKernels`] matching the [`Kernels`] set named `isa`, if there is one and this
/// CPU supports it: only AVX-512 has them. AVX2 has 16 vector registers, too few for four
/// vectors' four accumulators each plus the query.
pub(super) fn quad(isa: &str) -> Option<QuadKernels> {
    match isa {
        "avx512" => avx512_quad_set(),
        _ => None,
    }
}

/// The fastest set: AVX-512 where available, else AVX2, else `None`.
///
/// AVX-512 is used for all four kernels because it measured faster than AVX2 for every kernel
/// at every dimension tried (128, 384, 784, 1536; `benches/distance.rs`), by about 1.2-1.6x on a
/// Sapphire Rapids-class Xeon, stored vector 64-byte aligned and the query either aligned or
/// 16 bytes off. Should a CPU turn up where one kernel is faster in AVX2, mix the sets here
/// (safe as long as both were detected) rather than dropping AVX-512 for all.
fn best_set() -> Option<Kernels> {
    avx512_set().or_else(avx2_set)
}

/// Picks the compact kernel set. `forced` is the `HNSW_BATCH_ISA` override: `avx2`, `avx512` and
/// `avx512vnni` select that set (or `None` if this CPU lacks it); anything else means "fastest
/// available".
pub(super) fn detect_compact(forced: Option<&str>) -> Option<CompactKernels> {
    match forced {
        Some("avx2") => avx2_compact_set(),
        Some("avx512") => avx512_compact_set(),
        Some("avx512vnni") => avx512vnni_compact_set(),
        _ => best_compact_set(),
    }
}

/// Every compact SIMD set this CPU supports, slowest first.
pub(super) fn available_compact() -> Vec<CompactKernels> {
    avx2_compact_set().into_iter().chain(avx512_compact_set()).chain(avx512vnni_compact_set()).collect()
}

/// Whether the features of the compact AVX2 set are present (the AVX2 set's plus F16C).
fn has_avx2_f16c() -> bool {
    has_avx2() && is_x86_feature_detected!("f16c")
}

/// Whether the features of the compact AVX-512 VNNI set are present.
fn has_avx512vnni() -> bool {
    has_avx512() && is_x86_feature_detected!("avx512vnni")
}

/// The compact AVX2+FMA+F16C set, if this CPU supports it.
fn avx2_compact_set() -> Option<CompactKernels> {
    has_avx2_f16c().then_some(CompactKernels {
        isa: "avx2",
        l2_f16: avx2::l2_f16,
        dot_f16: avx2::dot_f16,
        dot_u8i8: avx2::dot_u8i8,
    })
}

/// The compact AVX-512 (F+BW+VL) set, integer dot product without VNNI, if this CPU supports it.
fn avx512_compact_set() -> Option<CompactKernels> {
    has_avx512().then_some(CompactKernels {
        isa: "avx512",
        l2_f16: avx512::l2_f16,
        dot_f16: avx512::dot_f16,
        dot_u8i8: avx512::dot_u8i8,
    })
}

/// The compact AVX-512 set with the VNNI integer dot product, if this CPU supports it. Its `f16`
/// kernels are the AVX-512 set's (VNNI adds nothing for them).
fn avx512vnni_compact_set() -> Option<CompactKernels> {
    has_avx512vnni().then_some(CompactKernels {
        isa: "avx512vnni",
        l2_f16: avx512::l2_f16,
        dot_f16: avx512::dot_f16,
        dot_u8i8: avx512::dot_u8i8_vnni,
    })
}

/// The fastest compact set: AVX-512 VNNI, else AVX-512, else AVX2, else `None`.
///
/// `vpdpbusd` does a 64-byte multiply-add in one instruction where the plain AVX-512 and AVX2
/// kernels widen both operands to 16 bits first (three instructions per 32 or 16 bytes). On one
/// shared, noisy AVX-512 VNNI machine (`benches/distance.rs`, see rfcs/0002) `dot_u8i8` took
/// about 8 / 12 / 19 ns at dimension 128 / 384 / 768 with VNNI, 12 / 21 / 48 with AVX-512 and
/// 14 / 28 / 64 with AVX2; the `f16` kernels of the AVX-512 sets were level with or slightly
/// ahead of AVX2. Other CPUs have not been measured.
fn best_compact_set() -> Option<CompactKernels> {
    avx512vnni_compact_set().or_else(avx512_compact_set).or_else(avx2_compact_set)
}

/// AVX2+FMA kernels: four 8-lane accumulators (32 elements per iteration), then single 8-lane
/// steps, then a scalar tail.
mod avx2 {
    use std::arch::x86_64::*;

    use crate::distance::scalar::{self, f16_to_f32};

    /// Loads 8 `f32`s; the array type proves all 32 bytes are in bounds.
    #[inline]
    #[target_feature(enable = "avx")]
    fn load_f32(x: &[f32; 8]) -> __m256 {
        // SAFETY: `x` is 8 readable `f32`s and `loadu` has no alignment requirement; the `avx`
        // feature this intrinsic needs is enabled on this function.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    /// Loads 8 bytes and widens them to 8 `f32`s (each exactly representable).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load_u8(x: &[u8; 8]) -> __m256 {
        // SAFETY: `_mm_loadl_epi64` reads exactly 8 bytes, all in `x`, with no alignment
        // requirement.
        let v = unsafe { _mm_loadl_epi64(x.as_ptr().cast::<__m128i>()) };
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Adds the four accumulators pairwise and reduces them to one `f32`.
    #[inline]
    #[target_feature(enable = "avx")]
    fn reduce(acc: [__m256; 4]) -> f32 {
        hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])))
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm256_sub_ps(load_f32(&x[k]), load_f32(&y[k]));
                acc[k] = _mm256_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm256_sub_ps(load_f32(x), load_f32(y));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        }
        let mut s = reduce(acc);
        for (x, y) in ta.iter().zip(tb) {
            let d = x - y;
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm256_fmadd_ps(load_f32(&x[k]), load_f32(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm256_fmadd_ps(load_f32(x), load_f32(y), acc[0]);
        }
        let mut s = reduce(acc);
        for (x, y) in ta.iter().zip(tb) {
            s += x * y;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    fn l2_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm256_sub_ps(load_f32(&x[k]), load_u8(&y[k]));
                acc[k] = _mm256_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm256_sub_ps(load_f32(x), load_u8(y));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            let d = x - f32::from(y);
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm256_fmadd_ps(load_f32(&x[k]), load_u8(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm256_fmadd_ps(load_f32(x), load_u8(y), acc[0]);
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            s += x * f32::from(y);
        }
        s
    }

    /// Loads 8 `f16`s (as bits) and widens them to 8 `f32`s (exact).
    #[inline]
    #[target_feature(enable = "avx,f16c")]
    fn load_f16(x: &[u16; 8]) -> __m256 {
        // SAFETY: `_mm_loadu_si128` reads exactly the 16 bytes of `x`, with no alignment
        // requirement.
        let v = unsafe { _mm_loadu_si128(x.as_ptr().cast::<__m128i>()) };
        _mm256_cvtph_ps(v)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn l2_f16_impl(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm256_sub_ps(load_f32(&x[k]), load_f16(&y[k]));
                acc[k] = _mm256_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm256_sub_ps(load_f32(x), load_f16(y));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            let d = x - f16_to_f32(y);
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_f16_impl(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<8>();
        let (b, tb) = b[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm256_fmadd_ps(load_f32(&x[k]), load_f16(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm256_fmadd_ps(load_f32(x), load_f16(y), acc[0]);
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            s += x * f16_to_f32(y);
        }
        s
    }

    /// `Σ c[i]·w[i]` over 16 bytes as 8 `i32` lanes: both operands widened to `i16`, then
    /// `vpmaddwd` adds adjacent products. Each pair sum lies in `[-65280, 64770]`, so it is exact;
    /// `vpmaddubsw` is not used because its pair sums saturate at `i16` (255·127·2 > 32767).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn madd_u8i8(c: &[u8; 16], w: &[i8; 16]) -> __m256i {
        // SAFETY: `_mm_loadu_si128` reads exactly the 16 bytes of `c`, unaligned.
        let c = unsafe { _mm_loadu_si128(c.as_ptr().cast::<__m128i>()) };
        // SAFETY: `_mm_loadu_si128` reads exactly the 16 bytes of `w`, unaligned.
        let w = unsafe { _mm_loadu_si128(w.as_ptr().cast::<__m128i>()) };
        _mm256_madd_epi16(_mm256_cvtepu8_epi16(c), _mm256_cvtepi8_epi16(w))
    }

    /// Sum of the 8 `i32` lanes, wrapping like the scalar reference.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum_epi32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    #[target_feature(enable = "avx2")]
    fn dot_u8i8_impl(codes: &[u8], w: &[i8]) -> i32 {
        let n = codes.len().min(w.len());
        let (c, tc) = codes[..n].as_chunks::<16>();
        let (w, tw) = w[..n].as_chunks::<16>();
        let mut acc = [_mm256_setzero_si256(); 4];
        let (mut cc, mut cw) = (c.chunks_exact(4), w.chunks_exact(4));
        for (x, y) in (&mut cc).zip(&mut cw) {
            for k in 0..4 {
                acc[k] = _mm256_add_epi32(acc[k], madd_u8i8(&x[k], &y[k]));
            }
        }
        for (x, y) in cc.remainder().iter().zip(cw.remainder()) {
            acc[0] = _mm256_add_epi32(acc[0], madd_u8i8(x, y));
        }
        let v = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
        hsum_epi32(v).wrapping_add(scalar::dot_u8i8(tc, tw))
    }

    // The safe wrappers below are the only things stored in `Kernels`. They are private to
    // `x86_64` and named only by `avx2_set`, which returns them only after detecting AVX2 and FMA.

    pub(super) fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through `avx2_set`, which checked `avx2` and `fma` at run time.
        unsafe { l2_f32_impl(a, b) }
    }

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through `avx2_set`, which checked `avx2` and `fma` at run time.
        unsafe { dot_f32_impl(a, b) }
    }

    pub(super) fn l2_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: only reachable through `avx2_set`, which checked `avx2` and `fma` at run time.
        unsafe { l2_u8_impl(a, b) }
    }

    pub(super) fn dot_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: only reachable through `avx2_set`, which checked `avx2` and `fma` at run time.
        unsafe { dot_u8_impl(a, b) }
    }

    // The compact wrappers below are named only by `avx2_compact_set`, which returns them only
    // after detecting AVX2, FMA and F16C.

    pub(super) fn l2_f16(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: only reachable through `avx2_compact_set`, which checked `avx2`, `fma` and
        // `f16c` at run time.
        unsafe { l2_f16_impl(a, b) }
    }

    pub(super) fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: only reachable through `avx2_compact_set`, which checked `avx2`, `fma` and
        // `f16c` at run time.
        unsafe { dot_f16_impl(a, b) }
    }

    pub(super) fn dot_u8i8(codes: &[u8], w: &[i8]) -> i32 {
        // SAFETY: only reachable through `avx2_compact_set`, which checked `avx2` (with `fma`
        // and `f16c`) at run time.
        unsafe { dot_u8i8_impl(codes, w) }
    }
}

/// AVX-512 kernels: four 16-lane accumulators (64 elements per iteration), then single 16-lane
/// steps, then one masked load for the last `< 16` elements (no scalar tail). The masked step is
/// skipped when the length is a multiple of 16: dimensions are fixed per index, so the branch is
/// always predicted.
mod avx512 {
    use std::arch::x86_64::*;

    /// Loads 16 `f32`s; the array type proves all 64 bytes are in bounds.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_f32(x: &[f32; 16]) -> __m512 {
        // SAFETY: `x` is 16 readable `f32`s and `loadu` has no alignment requirement.
        unsafe { _mm512_loadu_ps(x.as_ptr()) }
    }

    /// Loads the first `min(x.len(), 16)` `f32`s, zeroing the other lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_f32_tail(x: &[f32]) -> __m512 {
        let k = mask(x.len());
        // SAFETY: lane `i` is read only if bit `i` of `k` is set, i.e. `i < x.len()`, so every
        // element read lies in `x`; masked-off lanes are not accessed and cannot fault.
        unsafe { _mm512_maskz_loadu_ps(k, x.as_ptr()) }
    }

    /// Loads 16 bytes and widens them to 16 `f32`s (each exactly representable).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_u8(x: &[u8; 16]) -> __m512 {
        // SAFETY: `_mm_loadu_si128` reads exactly the 16 bytes of `x`, unaligned.
        let v = unsafe { _mm_loadu_si128(x.as_ptr().cast::<__m128i>()) };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
    }

    /// Loads the first `min(x.len(), 16)` bytes widened to `f32`, zeroing the other lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn load_u8_tail(x: &[u8]) -> __m512 {
        let k = mask(x.len());
        // SAFETY: byte `i` is read only if bit `i` of `k` is set, i.e. `i < x.len()`, so every
        // byte read lies in `x`; masked-off bytes are not accessed and cannot fault.
        let v = unsafe { _mm_maskz_loadu_epi8(k, x.as_ptr().cast::<i8>()) };
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v))
    }

    /// A mask with the low `min(len, 16)` bits set.
    #[inline]
    fn mask(len: usize) -> u16 {
        ((1u32 << len.min(16)) - 1) as u16
    }

    /// Adds the four accumulators pairwise and reduces them to one `f32`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn reduce(acc: [__m512; 4]) -> f32 {
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn l2_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm512_sub_ps(load_f32(&x[k]), load_f32(&y[k]));
                acc[k] = _mm512_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm512_sub_ps(load_f32(x), load_f32(y));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
        }
        if !ta.is_empty() {
            let d = _mm512_sub_ps(load_f32_tail(ta), load_f32_tail(tb));
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        reduce(acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm512_fmadd_ps(load_f32(&x[k]), load_f32(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm512_fmadd_ps(load_f32(x), load_f32(y), acc[0]);
        }
        if !ta.is_empty() {
            acc[1] = _mm512_fmadd_ps(load_f32_tail(ta), load_f32_tail(tb), acc[1]);
        }
        reduce(acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn l2_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm512_sub_ps(load_f32(&x[k]), load_u8(&y[k]));
                acc[k] = _mm512_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm512_sub_ps(load_f32(x), load_u8(y));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
        }
        if !ta.is_empty() {
            let d = _mm512_sub_ps(load_f32_tail(ta), load_u8_tail(tb));
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        reduce(acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn dot_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm512_fmadd_ps(load_f32(&x[k]), load_u8(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm512_fmadd_ps(load_f32(x), load_u8(y), acc[0]);
        }
        if !ta.is_empty() {
            acc[1] = _mm512_fmadd_ps(load_f32_tail(ta), load_u8_tail(tb), acc[1]);
        }
        reduce(acc)
    }

    /// Loads 16 `f16`s (as bits) and widens them to 16 `f32`s (exact).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_f16(x: &[u16; 16]) -> __m512 {
        // SAFETY: `_mm256_loadu_si256` reads exactly the 32 bytes of `x`, unaligned.
        let v = unsafe { _mm256_loadu_si256(x.as_ptr().cast::<__m256i>()) };
        _mm512_cvtph_ps(v)
    }

    /// Loads the first `min(x.len(), 16)` `f16`s widened to `f32`, zeroing the other lanes
    /// (a zeroed `f16` lane is `+0.0`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn load_f16_tail(x: &[u16]) -> __m512 {
        let k = mask(x.len());
        // SAFETY: element `i` is read only if bit `i` of `k` is set, i.e. `i < x.len()`, so every
        // element read lies in `x`; masked-off elements are not accessed and cannot fault.
        let v = unsafe { _mm256_maskz_loadu_epi16(k, x.as_ptr().cast::<i16>()) };
        _mm512_cvtph_ps(v)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn l2_f16_impl(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = _mm512_sub_ps(load_f32(&x[k]), load_f16(&y[k]));
                acc[k] = _mm512_fmadd_ps(d, d, acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = _mm512_sub_ps(load_f32(x), load_f16(y));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
        }
        if !ta.is_empty() {
            let d = _mm512_sub_ps(load_f32_tail(ta), load_f16_tail(tb));
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        reduce(acc)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn dot_f16_impl(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<16>();
        let (b, tb) = b[..n].as_chunks::<16>();
        let mut acc = [_mm512_setzero_ps(); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = _mm512_fmadd_ps(load_f32(&x[k]), load_f16(&y[k]), acc[k]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = _mm512_fmadd_ps(load_f32(x), load_f16(y), acc[0]);
        }
        if !ta.is_empty() {
            acc[1] = _mm512_fmadd_ps(load_f32_tail(ta), load_f16_tail(tb), acc[1]);
        }
        reduce(acc)
    }

    /// Loads 32 bytes as a vector (the `i8` weights are loaded through [`load_i8x32`]).
    #[inline]
    #[target_feature(enable = "avx")]
    fn load_u8x32(x: &[u8; 32]) -> __m256i {
        // SAFETY: `_mm256_loadu_si256` reads exactly the 32 bytes of `x`, unaligned.
        unsafe { _mm256_loadu_si256(x.as_ptr().cast::<__m256i>()) }
    }

    /// Loads 32 signed bytes as a vector.
    #[inline]
    #[target_feature(enable = "avx")]
    fn load_i8x32(x: &[i8; 32]) -> __m256i {
        // SAFETY: `_mm256_loadu_si256` reads exactly the 32 bytes of `x`, unaligned.
        unsafe { _mm256_loadu_si256(x.as_ptr().cast::<__m256i>()) }
    }

    /// Loads the first `min(len, 32)` bytes at `p`, zeroing the other lanes.
    ///
    /// # Safety
    ///
    /// `p` must be valid for reading `min(len, 32)` bytes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load_bytes32_tail(p: *const i8, len: usize) -> __m256i {
        let k = if len >= 32 { u32::MAX } else { (1u32 << len) - 1 };
        // SAFETY: byte `i` is read only if bit `i` of `k` is set, i.e. `i < min(len, 32)`, which
        // the caller guarantees is readable; masked-off bytes are not accessed and cannot fault.
        unsafe { _mm256_maskz_loadu_epi8(k, p) }
    }

    /// `Σ c[i]·w[i]` over 32 byte lanes as 16 `i32` lanes: both widened to `i16`, then `vpmaddwd`
    /// adds adjacent products (each pair sum in `[-65280, 64770]`: exact, no saturation).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn madd_u8i8(c: __m256i, w: __m256i) -> __m512i {
        _mm512_madd_epi16(_mm512_cvtepu8_epi16(c), _mm512_cvtepi8_epi16(w))
    }

    /// Without VNNI: four 16-lane `i32` accumulators, 32 bytes per step (128 per iteration), then
    /// one masked step for the last `< 32` bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn dot_u8i8_impl(codes: &[u8], w: &[i8]) -> i32 {
        let n = codes.len().min(w.len());
        let (c, tc) = codes[..n].as_chunks::<32>();
        let (w, tw) = w[..n].as_chunks::<32>();
        let mut acc = [_mm512_setzero_si512(); 4];
        let (mut cc, mut cw) = (c.chunks_exact(4), w.chunks_exact(4));
        for (x, y) in (&mut cc).zip(&mut cw) {
            for k in 0..4 {
                acc[k] = _mm512_add_epi32(acc[k], madd_u8i8(load_u8x32(&x[k]), load_i8x32(&y[k])));
            }
        }
        for (x, y) in cc.remainder().iter().zip(cw.remainder()) {
            acc[0] = _mm512_add_epi32(acc[0], madd_u8i8(load_u8x32(x), load_i8x32(y)));
        }
        if !tc.is_empty() {
            // SAFETY: `tc` and `tw` are both `n % 32` long, so `tc.len()` bytes are readable at
            // each.
            let (x, y) = unsafe {
                (
                    load_bytes32_tail(tc.as_ptr().cast::<i8>(), tc.len()),
                    load_bytes32_tail(tw.as_ptr(), tw.len()),
                )
            };
            acc[1] = _mm512_add_epi32(acc[1], madd_u8i8(x, y));
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(
            _mm512_add_epi32(acc[0], acc[1]),
            _mm512_add_epi32(acc[2], acc[3]),
        ))
    }

    /// Loads 64 bytes as a vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_u8x64(x: &[u8; 64]) -> __m512i {
        // SAFETY: `_mm512_loadu_si512` reads exactly the 64 bytes of `x`, unaligned.
        unsafe { _mm512_loadu_si512(x.as_ptr().cast::<__m512i>()) }
    }

    /// Loads 64 signed bytes as a vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load_i8x64(x: &[i8; 64]) -> __m512i {
        // SAFETY: `_mm512_loadu_si512` reads exactly the 64 bytes of `x`, unaligned.
        unsafe { _mm512_loadu_si512(x.as_ptr().cast::<__m512i>()) }
    }

    /// Loads the first `min(len, 64)` bytes at `p`, zeroing the other lanes.
    ///
    /// # Safety
    ///
    /// `p` must be valid for reading `min(len, 64)` bytes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn load_bytes64_tail(p: *const i8, len: usize) -> __m512i {
        let k = if len >= 64 { u64::MAX } else { (1u64 << len) - 1 };
        // SAFETY: byte `i` is read only if bit `i` of `k` is set, i.e. `i < min(len, 64)`, which
        // the caller guarantees is readable; masked-off bytes are not accessed and cannot fault.
        unsafe { _mm512_maskz_loadu_epi8(k, p) }
    }

    /// With VNNI: `vpdpbusd` multiplies 64 unsigned bytes (first operand) by 64 signed bytes
    /// (second operand) and adds each group of four products to an `i32` lane, without
    /// saturation. Four accumulators, 256 bytes per iteration, then single 64-byte steps, then
    /// one masked step for the last `< 64` bytes. A zeroed byte contributes a zero product.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    fn dot_u8i8_vnni_impl(codes: &[u8], w: &[i8]) -> i32 {
        let n = codes.len().min(w.len());
        let (c, tc) = codes[..n].as_chunks::<64>();
        let (w, tw) = w[..n].as_chunks::<64>();
        let mut acc = [_mm512_setzero_si512(); 4];
        let (mut cc, mut cw) = (c.chunks_exact(4), w.chunks_exact(4));
        for (x, y) in (&mut cc).zip(&mut cw) {
            for k in 0..4 {
                acc[k] = _mm512_dpbusd_epi32(acc[k], load_u8x64(&x[k]), load_i8x64(&y[k]));
            }
        }
        for (x, y) in cc.remainder().iter().zip(cw.remainder()) {
            acc[0] = _mm512_dpbusd_epi32(acc[0], load_u8x64(x), load_i8x64(y));
        }
        if !tc.is_empty() {
            // SAFETY: `tc` and `tw` are both `n % 64` long, so `tc.len()` bytes are readable at
            // each.
            let (x, y) = unsafe {
                (
                    load_bytes64_tail(tc.as_ptr().cast::<i8>(), tc.len()),
                    load_bytes64_tail(tw.as_ptr(), tw.len()),
                )
            };
            acc[1] = _mm512_dpbusd_epi32(acc[1], x, y);
        }
        _mm512_reduce_add_epi32(_mm512_add_epi32(
            _mm512_add_epi32(acc[0], acc[1]),
            _mm512_add_epi32(acc[2], acc[3]),
        ))
    }

    /// Four kernels of one pass over the query: each stored vector gets the accumulators, the
    /// chunking and the reduction of the single-vector kernel (`$one`), so each result equals
    /// `$one(q, x)` bit for bit, while the four vectors' loads are in flight together. A vector
    /// shorter than the query (never the case inside an index) goes through `$one` on its own,
    /// which keeps the common-prefix rule.
    macro_rules! quad_kernel {
        ($name:ident, $one:ident, |$qv:ident, $xv:ident, $acc:ident| $term:expr) => {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
            fn $name(q: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
                let n = q.len();
                if x.iter().any(|v| v.len() < n) {
                    return [$one(q, x[0]), $one(q, x[1]), $one(q, x[2]), $one(q, x[3])];
                }
                let (qc, qt) = q.as_chunks::<16>();
                let xs = x.map(|v| v[..n].as_chunks::<16>());
                let mut acc = [[_mm512_setzero_ps(); 4]; 4];
                let full = qc.len() / 4 * 4;
                for i in (0..full).step_by(4) {
                    for k in 0..4 {
                        let $qv = load_f32(&qc[i + k]);
                        for (a, (c, _)) in acc.iter_mut().zip(&xs) {
                            let $xv = load_f32(&c[i + k]);
                            let $acc = a[k];
                            a[k] = $term;
                        }
                    }
                }
                for i in full..qc.len() {
                    let $qv = load_f32(&qc[i]);
                    for (a, (c, _)) in acc.iter_mut().zip(&xs) {
                        let $xv = load_f32(&c[i]);
                        let $acc = a[0];
                        a[0] = $term;
                    }
                }
                if !qt.is_empty() {
                    let $qv = load_f32_tail(qt);
                    for (a, (_, t)) in acc.iter_mut().zip(&xs) {
                        let $xv = load_f32_tail(t);
                        let $acc = a[1];
                        a[1] = $term;
                    }
                }
                [reduce(acc[0]), reduce(acc[1]), reduce(acc[2]), reduce(acc[3])]
            }
        };
    }

    quad_kernel!(l2_f32_x4_impl, l2_f32_impl, |qv, xv, acc| {
        let d = _mm512_sub_ps(qv, xv);
        _mm512_fmadd_ps(d, d, acc)
    });
    quad_kernel!(dot_f32_x4_impl, dot_f32_impl, |qv, xv, acc| _mm512_fmadd_ps(qv, xv, acc));

    // The safe wrappers below are the only things stored in `Kernels`. They are private to
    // `x86_64` and named only by `avx512_set`, which returns them only after detecting
    // `avx512f`, `avx512bw` and `avx512vl`.

    pub(super) fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through `avx512_set`, which checked avx512f/bw/vl at run time.
        unsafe { l2_f32_impl(a, b) }
    }

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only reachable through `avx512_set`, which checked avx512f/bw/vl at run time.
        unsafe { dot_f32_impl(a, b) }
    }

    pub(super) fn l2_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: only reachable through `avx512_set`, which checked avx512f/bw/vl at run time.
        unsafe { l2_u8_impl(a, b) }
    }

    pub(super) fn dot_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: only reachable through `avx512_set`, which checked avx512f/bw/vl at run time.
        unsafe { dot_u8_impl(a, b) }
    }

    // The compact wrappers below are named only by `avx512_compact_set` and
    // `avx512vnni_compact_set` (the `f16` ones by both), which return them only after detecting
    // `avx512f`, `avx512bw` and `avx512vl`; the second also `avx512vnni`, and only it names
    // `dot_u8i8_vnni`.

    pub(super) fn l2_f16(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: only reachable through the compact AVX-512 sets, which checked avx512f/bw/vl
        // at run time.
        unsafe { l2_f16_impl(a, b) }
    }

    pub(super) fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
        // SAFETY: only reachable through the compact AVX-512 sets, which checked avx512f/bw/vl
        // at run time.
        unsafe { dot_f16_impl(a, b) }
    }

    pub(super) fn dot_u8i8(codes: &[u8], w: &[i8]) -> i32 {
        // SAFETY: only reachable through `avx512_compact_set`, which checked avx512f/bw/vl at
        // run time.
        unsafe { dot_u8i8_impl(codes, w) }
    }

    pub(super) fn dot_u8i8_vnni(codes: &[u8], w: &[i8]) -> i32 {
        // SAFETY: only reachable through `avx512vnni_compact_set`, which checked avx512f/bw/vl
        // and avx512vnni at run time.
        unsafe { dot_u8i8_vnni_impl(codes, w) }
    }

    // The quad wrappers are named only by `avx512_quad_set`, which returns them only after
    // detecting `avx512f`, `avx512bw` and `avx512vl`.

    pub(super) fn l2_f32_x4(q: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: only reachable through `avx512_quad_set`, which checked avx512f/bw/vl at run
        // time.
        unsafe { l2_f32_x4_impl(q, x) }
    }

    pub(super) fn dot_f32_x4(q: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
        // SAFETY: only reachable through `avx512_quad_set`, which checked avx512f/bw/vl at run
        // time.
        unsafe { dot_f32_x4_impl(q, x) }
    }
}
