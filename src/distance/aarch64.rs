//! aarch64 NEON kernels.
//!
//! NEON is part of the baseline of every standard aarch64 target, so there is no run-time
//! detection: the kernels are compiled only when `target_feature = "neon"` is enabled at compile
//! time (it is unless a soft-float target or `-C target-feature=-neon` turns it off), and then
//! they are always safe to run. Without NEON, [`detect`] returns `None` and the scalar kernels
//! are used.
//!
//! The compact set ([`CompactKernels`]) has a NEON integer dot product but uses the scalar `f16`
//! kernels: the NEON half-precision conversion (`vcvt_f32_f16` on `float16x4_t`, i.e. `fcvtl`)
//! is stable only since Rust 1.94 (`stdarch_neon_f16`), above this crate's minimum Rust 1.89,
//! and using it unconditionally would raise that minimum. The scalar kernels are correct, only
//! slower. A NEON `f16` kernel needs either a higher minimum Rust or a compiler-version gate
//! (build script emitting a `cfg`); it should also be run on aarch64 hardware, which the tests
//! here have not been (this module is only compile-checked on x86-64 hosts).
//!
//! Loads take fixed-size arrays (`&[f32; 4]`, `&[u8; 16]`), so the type itself proves that every
//! byte read is in bounds.

use super::{CompactKernels, Kernels};

/// The NEON kernel set.
#[cfg(target_feature = "neon")]
pub(super) fn detect() -> Option<Kernels> {
    Some(Kernels {
        isa: "neon",
        l2_f32: neon::l2_f32,
        dot_f32: neon::dot_f32,
        l2_u8: neon::l2_u8,
        dot_u8: neon::dot_u8,
    })
}

/// This build has NEON disabled: no SIMD set.
#[cfg(not(target_feature = "neon"))]
pub(super) fn detect() -> Option<Kernels> {
    None
}

/// The compact NEON set: NEON integer dot product, scalar `f16` kernels (see the module docs).
#[cfg(target_feature = "neon")]
pub(super) fn detect_compact() -> Option<CompactKernels> {
    Some(CompactKernels {
        isa: "neon",
        l2_f16: super::scalar::l2_f16,
        dot_f16: super::scalar::dot_f16,
        dot_u8i8: neon::dot_u8i8,
    })
}

/// This build has NEON disabled: no compact SIMD set.
#[cfg(not(target_feature = "neon"))]
pub(super) fn detect_compact() -> Option<CompactKernels> {
    None
}

/// Four 4-lane accumulators (16 elements per iteration), then single 4-lane steps, then a scalar
/// tail of at most 3 elements.
#[cfg(target_feature = "neon")]
mod neon {
    use std::arch::aarch64::*;

    /// Loads 4 `f32`s; the array type proves all 16 bytes are in bounds.
    #[inline]
    #[target_feature(enable = "neon")]
    fn load_f32(x: &[f32; 4]) -> float32x4_t {
        // SAFETY: `x` is 4 readable `f32`s and `vld1q_f32` needs only element alignment, which a
        // `&[f32; 4]` has.
        unsafe { vld1q_f32(x.as_ptr()) }
    }

    /// Loads 16 bytes and widens them to four vectors of 4 `f32`s (each exactly representable).
    #[inline]
    #[target_feature(enable = "neon")]
    fn load_u8(x: &[u8; 16]) -> [float32x4_t; 4] {
        // SAFETY: `vld1q_u8` reads exactly the 16 bytes of `x`, with no alignment requirement
        // beyond a byte's.
        let v = unsafe { vld1q_u8(x.as_ptr()) };
        let lo = vmovl_u8(vget_low_u8(v));
        let hi = vmovl_high_u8(v);
        [
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))),
            vcvtq_f32_u32(vmovl_high_u16(lo)),
            vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))),
            vcvtq_f32_u32(vmovl_high_u16(hi)),
        ]
    }

    /// Adds the four accumulators pairwise and reduces them to one `f32`.
    #[inline]
    #[target_feature(enable = "neon")]
    fn reduce(acc: [float32x4_t; 4]) -> f32 {
        vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])))
    }

    #[target_feature(enable = "neon")]
    fn l2_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<4>();
        let (b, tb) = b[..n].as_chunks::<4>();
        let mut acc = [vdupq_n_f32(0.0); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                let d = vsubq_f32(load_f32(&x[k]), load_f32(&y[k]));
                acc[k] = vfmaq_f32(acc[k], d, d);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            let d = vsubq_f32(load_f32(x), load_f32(y));
            acc[0] = vfmaq_f32(acc[0], d, d);
        }
        let mut s = reduce(acc);
        for (x, y) in ta.iter().zip(tb) {
            let d = x - y;
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "neon")]
    fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, ta) = a[..n].as_chunks::<4>();
        let (b, tb) = b[..n].as_chunks::<4>();
        let mut acc = [vdupq_n_f32(0.0); 4];
        let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..4 {
                acc[k] = vfmaq_f32(acc[k], load_f32(&x[k]), load_f32(&y[k]));
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = vfmaq_f32(acc[0], load_f32(x), load_f32(y));
        }
        let mut s = reduce(acc);
        for (x, y) in ta.iter().zip(tb) {
            s += x * y;
        }
        s
    }

    #[target_feature(enable = "neon")]
    fn l2_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a16, ta) = a[..n].as_chunks::<16>();
        let (b16, tb) = b[..n].as_chunks::<16>();
        let mut acc = [vdupq_n_f32(0.0); 4];
        for (x, y) in a16.iter().zip(b16) {
            let (x, _) = x.as_chunks::<4>();
            let y = load_u8(y);
            for k in 0..4 {
                let d = vsubq_f32(load_f32(&x[k]), y[k]);
                acc[k] = vfmaq_f32(acc[k], d, d);
            }
        }
        // At most 15 left: 4-wide steps with the bytes widened in an array, then scalar.
        let (a4, ta) = ta.as_chunks::<4>();
        let (b4, tb) = tb.as_chunks::<4>();
        for (x, y) in a4.iter().zip(b4) {
            let d = vsubq_f32(load_f32(x), load_f32(&y.map(f32::from)));
            acc[0] = vfmaq_f32(acc[0], d, d);
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            let d = x - f32::from(y);
            s += d * d;
        }
        s
    }

    #[target_feature(enable = "neon")]
    fn dot_u8_impl(a: &[f32], b: &[u8]) -> f32 {
        let n = a.len().min(b.len());
        let (a16, ta) = a[..n].as_chunks::<16>();
        let (b16, tb) = b[..n].as_chunks::<16>();
        let mut acc = [vdupq_n_f32(0.0); 4];
        for (x, y) in a16.iter().zip(b16) {
            let (x, _) = x.as_chunks::<4>();
            let y = load_u8(y);
            for k in 0..4 {
                acc[k] = vfmaq_f32(acc[k], load_f32(&x[k]), y[k]);
            }
        }
        // At most 15 left: 4-wide steps with the bytes widened in an array, then scalar.
        let (a4, ta) = ta.as_chunks::<4>();
        let (b4, tb) = tb.as_chunks::<4>();
        for (x, y) in a4.iter().zip(b4) {
            acc[0] = vfmaq_f32(acc[0], load_f32(x), load_f32(&y.map(f32::from)));
        }
        let mut s = reduce(acc);
        for (x, &y) in ta.iter().zip(tb) {
            s += x * f32::from(y);
        }
        s
    }

    /// `Σ c[i]·w[i]` over 16 bytes, into four `i32` accumulators: the bytes are widened to 16
    /// bits (codes zero-extended, weights sign-extended; both fit `i16`), then `smlal`/`smlal2`
    /// multiply-accumulate them into 32-bit lanes. Each product is at most 32640 in magnitude and
    /// the accumulation wraps like the scalar reference.
    #[inline]
    #[target_feature(enable = "neon")]
    fn mla_u8i8(acc: &mut [int32x4_t; 4], c: &[u8; 16], w: &[i8; 16]) {
        // SAFETY: `vld1q_u8` reads exactly the 16 bytes of `c`.
        let c = unsafe { vld1q_u8(c.as_ptr()) };
        // SAFETY: `vld1q_s8` reads exactly the 16 bytes of `w`.
        let w = unsafe { vld1q_s8(w.as_ptr()) };
        let c_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(c)));
        let c_hi = vreinterpretq_s16_u16(vmovl_high_u8(c));
        let w_lo = vmovl_s8(vget_low_s8(w));
        let w_hi = vmovl_high_s8(w);
        acc[0] = vmlal_s16(acc[0], vget_low_s16(c_lo), vget_low_s16(w_lo));
        acc[1] = vmlal_high_s16(acc[1], c_lo, w_lo);
        acc[2] = vmlal_s16(acc[2], vget_low_s16(c_hi), vget_low_s16(w_hi));
        acc[3] = vmlal_high_s16(acc[3], c_hi, w_hi);
    }

    #[target_feature(enable = "neon")]
    fn dot_u8i8_impl(codes: &[u8], w: &[i8]) -> i32 {
        let n = codes.len().min(w.len());
        let (c, tc) = codes[..n].as_chunks::<16>();
        let (w, tw) = w[..n].as_chunks::<16>();
        let mut acc = [vdupq_n_s32(0); 4];
        for (x, y) in c.iter().zip(w) {
            mla_u8i8(&mut acc, x, y);
        }
        let v = vaddq_s32(vaddq_s32(acc[0], acc[1]), vaddq_s32(acc[2], acc[3]));
        vaddvq_s32(v).wrapping_add(super::super::scalar::dot_u8i8(tc, tw))
    }

    // The safe wrappers below are what `Kernels` stores. `#[target_feature]` functions cannot be
    // coerced to safe `fn` pointers (and calling them needs `unsafe` even when the feature is on
    // for the whole build), so each wrapper asserts what the `cfg` on this module guarantees.

    pub(super) fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this module is compiled only with `target_feature = "neon"`, so every CPU this
        // binary runs on has NEON.
        unsafe { l2_f32_impl(a, b) }
    }

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this module is compiled only with `target_feature = "neon"`, so every CPU this
        // binary runs on has NEON.
        unsafe { dot_f32_impl(a, b) }
    }

    pub(super) fn l2_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: this module is compiled only with `target_feature = "neon"`, so every CPU this
        // binary runs on has NEON.
        unsafe { l2_u8_impl(a, b) }
    }

    pub(super) fn dot_u8(a: &[f32], b: &[u8]) -> f32 {
        // SAFETY: this module is compiled only with `target_feature = "neon"`, so every CPU this
        // binary runs on has NEON.
        unsafe { dot_u8_impl(a, b) }
    }

    pub(super) fn dot_u8i8(codes: &[u8], w: &[i8]) -> i32 {
        // SAFETY: this module is compiled only with `target_feature = "neon"`, so every CPU this
        // binary runs on has NEON.
        unsafe { dot_u8i8_impl(codes, w) }
    }
}
