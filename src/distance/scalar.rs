//! Scalar reference kernels: the definition every SIMD kernel is tested against.
//!
//! They use four independent accumulators so the compiler can keep several additions in flight;
//! the result differs from a strict left-to-right sum only by rounding.

/// Squared L2 distance over the common prefix of `a` and `b`.
pub fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// Dot product over the common prefix of `a` and `b`.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// [`l2_f32`] of `q` and each of four vectors: the reference for the [`QuadKernels`](super::QuadKernels).
pub fn l2_f32_x4(q: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    x.map(|v| l2_f32(q, v))
}

/// [`dot_f32`] of `q` and each of four vectors: the reference for the [`QuadKernels`](super::QuadKernels).
pub fn dot_f32_x4(q: &[f32], x: [&[f32]; 4]) -> [f32; 4] {
    x.map(|v| dot_f32(q, v))
}

/// Squared L2 distance between an `f32` query and a `u8` vector, over their common prefix.
pub fn l2_u8(a: &[f32], b: &[u8]) -> f32 {
    let n = a.len().min(b.len());
    let mut s = 0f32;
    for i in 0..n {
        let d = a[i] - b[i] as f32;
        s += d * d;
    }
    s
}

/// Dot product between an `f32` query and a `u8` vector, over their common prefix.
pub fn dot_u8(a: &[f32], b: &[u8]) -> f32 {
    let n = a.len().min(b.len());
    let mut s = 0f32;
    for i in 0..n {
        s += a[i] * b[i] as f32;
    }
    s
}

/// Cosine distance `1 - cos(a, b)`; 1.0 when either vector is zero.
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let ab = dot_f32(a, b);
    let aa = dot_f32(a, a);
    let bb = dot_f32(b, b);
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    1.0 - ab / (aa.sqrt() * bb.sqrt())
}

/// The `f32` value of the IEEE 754 half-precision number with bits `h` (exact: every `f16` is an
/// `f32`).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Squared L2 distance between an `f32` query and an `f16` stored vector (given as its bits),
/// over their common prefix.
///
/// Each stored element is widened to `f32` exactly, then the sum is formed like [`l2_f32`]'s,
/// so the SIMD versions are held to the same rounding bound.
pub fn l2_f16(q: &[f32], x: &[u16]) -> f32 {
    let n = q.len().min(x.len());
    let (q, x) = (&q[..n], &x[..n]);
    let mut acc = [0f32; 4];
    let mut cq = q.chunks_exact(4);
    let mut cx = x.chunks_exact(4);
    for (a, b) in (&mut cq).zip(&mut cx) {
        for i in 0..4 {
            let d = a[i] - f16_to_f32(b[i]);
            acc[i] += d * d;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, &b) in cq.remainder().iter().zip(cx.remainder()) {
        let d = a - f16_to_f32(b);
        s += d * d;
    }
    s
}

/// Dot product between an `f32` query and an `f16` stored vector (given as its bits), over their
/// common prefix.
pub fn dot_f16(q: &[f32], x: &[u16]) -> f32 {
    let n = q.len().min(x.len());
    let (q, x) = (&q[..n], &x[..n]);
    let mut acc = [0f32; 4];
    let mut cq = q.chunks_exact(4);
    let mut cx = x.chunks_exact(4);
    for (a, b) in (&mut cq).zip(&mut cx) {
        for i in 0..4 {
            acc[i] += a[i] * f16_to_f32(b[i]);
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, &b) in cq.remainder().iter().zip(cx.remainder()) {
        s += a * f16_to_f32(b);
    }
    s
}

/// Integer dot product `Σ codes[i] · w[i]` (unsigned bytes times signed bytes) over the common
/// prefix, in `i32`.
///
/// Every product lies in `[-32640, 32385]`, so the sum is exact (no wrap-around) for up to
/// 65 793 elements, which covers [`crate::MAX_DIM`]. Longer inputs wrap modulo 2^32; addition
/// modulo 2^32 is associative, so every SIMD kernel still returns exactly this value.
pub fn dot_u8i8(codes: &[u8], w: &[i8]) -> i32 {
    codes.iter().zip(w).fold(0i32, |s, (&c, &w)| s.wrapping_add(i32::from(c) * i32::from(w)))
}
