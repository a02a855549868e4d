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
