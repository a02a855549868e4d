//! 8-bit scalar quantisation (SQ8): one byte per component, with distances from an exact integer
//! dot product.
//!
//! # Codes
//!
//! [`Sq8Params`] holds, for every component `i`, an offset `lo_i` and a step `scale_i`, learned
//! from sample data by [`Sq8Params::train`] as the component's minimum and `(max - min) / 255`.
//! A value `x_i` is stored as the byte
//!
//! ```text
//! c_i = clamp(round((x_i - lo_i) / scale_i), 0, 255)        decoded as  lo_i + scale_i · c_i
//! ```
//!
//! Inside the trained range `[lo_i, lo_i + 255 · scale_i]` the decoded value is within
//! `scale_i / 2` of `x_i` (plus `f32` rounding). Outside it the code **saturates**: values below
//! the range decode to `lo_i`, values above to `lo_i + 255 · scale_i`, so the error grows with
//! the distance from the range. That is the price of min/max training on a sample (no clipping
//! quantile is used: the range covers every sample value, so only vectors unlike the sample
//! saturate). SQ8 distances only pick candidates; the index re-ranks them with the exact `f32`
//! vectors, which fixes the final order. A component whose sample values are all equal has
//! `scale_i = 0`: it is always coded 0 and decodes to `lo_i` (no division by zero).
//!
//! # Distances through an integer dot product
//!
//! For an `f32` query `q` and a stored code vector `c` (decoded `x_i = lo_i + scale_i · c_i`):
//!
//! ```text
//! q·x = Σ q_i·lo_i + Σ (q_i·scale_i)·c_i = c0 + Σ w_i·c_i
//! ```
//!
//! `c0` and the weights `w_i` depend on the query only, so [`Sq8Params::prepare_query`] computes
//! them once per query ([`Sq8Query`]). The weights are then themselves quantised, to signed bytes
//! with one per-query scale: `sw = max_i |w_i| / 127`, `w8_i = round(w_i / sw)`, so
//! `|w_i - sw · w8_i| ≤ sw / 2`. The distance to each stored vector is then
//!
//! ```text
//! q·x ≈ c0 + sw · Σ w8_i · c_i          (error ≤ sw/2 · Σ c_i, plus f32 rounding)
//! ```
//!
//! where the sum is an **exact** `u8` × `i8` integer dot product in `i32`
//! ([`CompactKernels::dot_u8i8`](super::CompactKernels::dot_u8i8)): one `vpdpbusd` does 64 of
//! these products on AVX-512 VNNI. Codes are unsigned (`0..=255` uses all of the byte for the
//! range) and weights signed (a query can point either way), which is exactly the operand pair
//! `vpdpbusd` multiplies. One scale per query, not per component, is what lets the whole sum stay
//! in integers; the per-component scales are folded into the weights before they are rounded.
//!
//! Squared L2 uses `‖q − x‖² = ‖q‖² − 2 q·x + ‖x‖²`: `‖q‖²` comes with the prepared query, and
//! `‖x‖²` of the *decoded* vector is computed once per stored vector at encode time
//! ([`Sq8Params::decoded_norm_sq`]) and kept next to its codes by the caller.
//!
//! [`dot_sq8_exact`] and [`l2_sq8_exact`] decode and compute in `f32` instead: the reference the
//! tests bound the integer path's error against.
//!
//! # Bytes
//!
//! [`Sq8Params::to_bytes`] writes a self-checking little-endian record (layout there);
//! [`Sq8Params::from_bytes`] checks its length, header, checksum and values and returns a typed
//! [`Sq8Error`] for anything else, never panicking.

use thiserror::Error;

use super::{compact_kernels, scalar, U8I8Kernel};
use crate::MAX_DIM;

/// Why SQ8 parameters could not be trained, built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Sq8Error {
    /// The dimension is 0 or above [`MAX_DIM`].
    #[error("SQ8 dimension must be in 1..={MAX_DIM}, got {0}")]
    BadDim(usize),
    /// Training was given no rows.
    #[error("SQ8 training needs at least one row")]
    NoRows,
    /// A training row does not have the dimension's length.
    #[error("SQ8 training row {row} has {len} values, expected {dim}")]
    RowLength {
        /// Index of the row in the training iterator.
        row: usize,
        /// Its length.
        len: usize,
        /// The expected length.
        dim: usize,
    },
    /// A training row holds a NaN or an infinity.
    #[error("SQ8 training row {row} has a non-finite value at component {component}")]
    NonFinite {
        /// Index of the row in the training iterator.
        row: usize,
        /// The offending component.
        component: usize,
    },
    /// `lo` and `scale` differ in length.
    #[error("SQ8 parameters: {lo} offsets but {scale} scales")]
    LengthMismatch {
        /// Number of offsets.
        lo: usize,
        /// Number of scales.
        scale: usize,
    },
    /// An offset is not finite, or a scale is negative or not finite.
    #[error("SQ8 parameters: invalid offset or scale for component {component}")]
    InvalidParam {
        /// The offending component.
        component: usize,
    },
    /// The bytes end before the record does.
    #[error("SQ8 parameters truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the record needs (as far as the bytes present tell).
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// More bytes than the record holds.
    #[error("SQ8 parameters: {0} unexpected bytes after the record")]
    TrailingBytes(usize),
    /// The bytes do not start with the SQ8 magic number.
    #[error("not an SQ8 parameter record (bad magic number)")]
    BadMagic,
    /// The record has a format version this build does not read.
    #[error("unsupported SQ8 parameter format version {0}")]
    UnsupportedVersion(u32),
    /// The CRC-32 over the record does not match.
    #[error("SQ8 parameter checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the record.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
}

/// Per-component affine quantisation parameters: `x_i ≈ lo_i + scale_i · c_i`, `c_i ∈ 0..=255`.
///
/// See the [module docs](self) for the math and what happens outside the trained range.
#[derive(Debug, Clone, PartialEq)]
pub struct Sq8Params {
    lo: Vec<f32>,
    scale: Vec<f32>,
}

/// Magic number at the start of [`Sq8Params::to_bytes`]: "HBS8" (hnsw-batch SQ8).
const MAGIC: [u8; 4] = *b"HBS8";
/// Format version written by this build.
const VERSION: u32 = 1;
/// Bytes before the per-component values: magic, version, dimension.
const HEADER: usize = 12;

impl Sq8Params {
    /// Learns the parameters from sample rows of length `dim`: `lo_i` is the minimum of
    /// component `i` over the rows and `scale_i = (max_i - min_i) / 255`, so every sample value
    /// lies in the coded range.
    ///
    /// Errors if `dim` is out of range, there are no rows, a row has another length, or a row
    /// holds a NaN or an infinity.
    pub fn train<'a, I>(rows: I, dim: usize) -> Result<Self, Sq8Error>
    where
        I: IntoIterator<Item = &'a [f32]>,
    {
        check_dim(dim)?;
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        let mut count = 0usize;
        for (row, x) in rows.into_iter().enumerate() {
            if x.len() != dim {
                return Err(Sq8Error::RowLength { row, len: x.len(), dim });
            }
            if let Some(component) = x.iter().position(|v| !v.is_finite()) {
                return Err(Sq8Error::NonFinite { row, component });
            }
            for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(x) {
                *l = l.min(v);
                *h = h.max(v);
            }
            count += 1;
        }
        if count == 0 {
            return Err(Sq8Error::NoRows);
        }
        // In f64 so that `max - min` cannot overflow (it may reach 2 · f32::MAX); divided by 255
        // it fits `f32` again.
        let scale =
            lo.iter().zip(&hi).map(|(&l, &h)| ((f64::from(h) - f64::from(l)) / 255.0) as f32).collect();
        Ok(Sq8Params { lo, scale })
    }

    /// Builds parameters from explicit offsets and scales (e.g. computed elsewhere). Errors if the
    /// lengths differ or are out of range, an offset is not finite, or a scale is negative or not
    /// finite.
    pub fn from_parts(lo: Vec<f32>, scale: Vec<f32>) -> Result<Self, Sq8Error> {
        if lo.len() != scale.len() {
            return Err(Sq8Error::LengthMismatch { lo: lo.len(), scale: scale.len() });
        }
        check_dim(lo.len())?;
        let bad = |(&l, &s): (&f32, &f32)| !l.is_finite() || !s.is_finite() || s < 0.0;
        if let Some(component) = lo.iter().zip(&scale).position(bad) {
            return Err(Sq8Error::InvalidParam { component });
        }
        Ok(Sq8Params { lo, scale })
    }

    /// Number of components.
    pub fn dim(&self) -> usize {
        self.lo.len()
    }

    /// The offsets `lo_i` (the decoded value of code 0).
    pub fn lo(&self) -> &[f32] {
        &self.lo
    }

    /// The steps `scale_i` between adjacent codes (0 for a constant component).
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// Quantises `x` into `codes`: `c_i = clamp(round((x_i - lo_i) / scale_i), 0, 255)`, computed
    /// in `f64`. Values outside the trained range saturate to code 0 or 255; NaN becomes 0.
    ///
    /// # Panics
    ///
    /// If `x` or `codes` is not [`dim`](Self::dim) long.
    pub fn encode(&self, x: &[f32], codes: &mut [u8]) {
        assert_eq!(x.len(), self.dim(), "SQ8 encode: vector length");
        assert_eq!(codes.len(), self.dim(), "SQ8 encode: code length");
        for (((c, &v), &l), &s) in codes.iter_mut().zip(x).zip(&self.lo).zip(&self.scale) {
            *c = if s > 0.0 {
                // `as u8` saturates and maps NaN to 0; the clamp makes the intent explicit.
                ((f64::from(v) - f64::from(l)) / f64::from(s)).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
        }
    }

    /// The decoded value `lo_i + scale_i · c_i` of code `c` of component `i`, rounded once to
    /// `f32` (computed in `f64`).
    #[inline]
    fn decode_one(&self, i: usize, c: u8) -> f32 {
        (f64::from(self.lo[i]) + f64::from(self.scale[i]) * f64::from(c)) as f32
    }

    /// Decodes `codes` into `out` (see [`encode`](Self::encode)).
    ///
    /// # Panics
    ///
    /// If `codes` or `out` is not [`dim`](Self::dim) long.
    pub fn decode(&self, codes: &[u8], out: &mut [f32]) {
        assert_eq!(codes.len(), self.dim(), "SQ8 decode: code length");
        assert_eq!(out.len(), self.dim(), "SQ8 decode: output length");
        for (i, (o, &c)) in out.iter_mut().zip(codes).enumerate() {
            *o = self.decode_one(i, c);
        }
    }

    /// `‖x‖²` of the decoded vector of `codes` (summed in `f64`, rounded once): what
    /// [`Sq8Query::l2`] needs per stored vector. Compute it when encoding and store it next to
    /// the codes.
    ///
    /// # Panics
    ///
    /// If `codes` is not [`dim`](Self::dim) long.
    pub fn decoded_norm_sq(&self, codes: &[u8]) -> f32 {
        assert_eq!(codes.len(), self.dim(), "SQ8 norm: code length");
        codes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let d = f64::from(self.decode_one(i, c));
                d * d
            })
            .sum::<f64>() as f32
    }

    /// Prepares a query for distances to many code vectors: the `i8` weights with their scale,
    /// the constant term `c0 = Σ q_i · lo_i` and `‖q‖²` (see the [module docs](self)). All sums
    /// are formed in `f64` and rounded once.
    ///
    /// Results are finite if every `|q_i · scale_i|`, `|q_i · lo_i|` and `q_i²` sum stays within
    /// `f32` range.
    ///
    /// # Panics
    ///
    /// If `q` is not [`dim`](Self::dim) long.
    pub fn prepare_query(&self, q: &[f32]) -> Sq8Query {
        assert_eq!(q.len(), self.dim(), "SQ8 query length");
        // Products of two f32 are exact in f64. Written as plain loops over slices so that they
        // compile to vector instructions: a query is prepared once per search, and at 784
        // dimensions the scalar version (a library `round` per weight, two chains of dependent
        // f64 additions) was a tenth of an `sq8` search on Fashion-MNIST.
        let mut max = 0f64;
        for (&q, &s) in q.iter().zip(&self.scale) {
            let v = (f64::from(q) * f64::from(s)).abs();
            max = if v > max { v } else { max };
        }
        // `sw` is rounded to f32 first and the weights divided by the rounded value, so
        // `|w_i - sw · w8_i| ≤ sw / 2` holds for the `sw` actually used.
        let sw = (max / 127.0) as f32;
        let mut weights = vec![0i8; q.len()];
        if sw > 0.0 {
            let inv = f64::from(sw);
            for ((w, &q), &s) in weights.iter_mut().zip(q).zip(&self.scale) {
                *w = round_half_away(f64::from(q) * f64::from(s) / inv).clamp(-127, 127) as i8;
            }
        }
        let c0 = sum_f64(q, &self.lo);
        let norm_sq = sum_f64(q, q);
        Sq8Query { weights, sw, c0, norm_sq }
    }

    /// Bytes written by [`to_bytes`](Self::to_bytes) for this dimension.
    pub fn serialized_len(&self) -> usize {
        HEADER + 8 * self.dim() + 4
    }

    /// The parameters as a little-endian record:
    ///
    /// | bytes            | content                                   |
    /// |------------------|-------------------------------------------|
    /// | 0..4             | magic `HBS8`                              |
    /// | 4..8             | format version, `u32` (1)                 |
    /// | 8..12            | dimension `d`, `u32`                      |
    /// | 12..12+4d        | `lo`, `d` × `f32`                         |
    /// | 12+4d..12+8d     | `scale`, `d` × `f32`                      |
    /// | 12+8d..16+8d     | CRC-32 (IEEE) of all preceding bytes, `u32` |
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // `dim <= MAX_DIM = 2^16` is checked on construction, so it fits.
        out.extend_from_slice(&(self.dim() as u32).to_le_bytes());
        for v in self.lo.iter().chain(&self.scale) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a record written by [`to_bytes`](Self::to_bytes). `bytes` must be exactly the
    /// record: a short or long input, wrong magic or version, a dimension out of range, a
    /// checksum mismatch or an invalid value is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Sq8Error> {
        let truncated = |needed| Sq8Error::Truncated { needed, got: bytes.len() };
        let (header, rest) = bytes.split_first_chunk::<HEADER>().ok_or(truncated(HEADER + 4))?;
        let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        if header[..4] != MAGIC {
            return Err(Sq8Error::BadMagic);
        }
        let version = word(4);
        if version != VERSION {
            return Err(Sq8Error::UnsupportedVersion(version));
        }
        // u32 -> usize is lossless on every target with at least 32-bit pointers; a larger value
        // than MAX_DIM is rejected before any size arithmetic.
        let dim = usize::try_from(word(8)).unwrap_or(usize::MAX);
        check_dim(dim)?;
        let needed = HEADER + 8 * dim + 4;
        if rest.len() < needed - HEADER {
            return Err(truncated(needed));
        }
        if rest.len() > needed - HEADER {
            return Err(Sq8Error::TrailingBytes(bytes.len() - needed));
        }
        let (body, crc) = bytes.split_at(needed - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(Sq8Error::Checksum { stored, computed });
        }
        let floats = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        let values = &body[HEADER..];
        let (lo, scale) = values.split_at(4 * dim);
        Sq8Params::from_parts(floats(lo), floats(scale))
    }
}

fn check_dim(dim: usize) -> Result<(), Sq8Error> {
    if dim == 0 || dim > MAX_DIM {
        return Err(Sq8Error::BadDim(dim));
    }
    Ok(())
}

/// `x` rounded to the nearest integer, halves away from zero (as `f64::round`), for `|x|` up to
/// 2^20 (here at most 127.5); larger values and NaN give some value in `[-2^20 - 1, 2^20 + 1]`.
/// `f64::round` is a library call without SSE4.1 in the baseline target; this compiles to a
/// few vector instructions (`x - t` is exact, and the comparisons are added as numbers: which
/// way a weight rounds is a coin flip, so branches would mispredict).
#[inline(always)]
fn round_half_away(x: f64) -> i32 {
    const LIM: f64 = (1 << 20) as f64;
    // NaN fails both comparisons and becomes -LIM.
    let x = if x >= -LIM { x } else { -LIM };
    let x = if x <= LIM { x } else { LIM };
    // SAFETY: `x` is finite and within ±2^20 here, so its truncation fits an i32.
    let t: i32 = unsafe { x.to_int_unchecked() };
    let frac = x - f64::from(t);
    t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)
}

/// `Σ a_i · b_i` in `f64` with four running sums, so the additions do not wait on each other;
/// rounded once to `f32`. The `f64` error (a few units in the last place of the magnitudes) is
/// far below that single rounding.
fn sum_f64(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += f64::from(x[j]) * f64::from(y[j]);
        }
    }
    for (j, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[j] += f64::from(x) * f64::from(y);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) as f32
}

/// A query prepared by [`Sq8Params::prepare_query`] for distances to SQ8 code vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Sq8Query {
    weights: Vec<i8>,
    sw: f32,
    c0: f32,
    norm_sq: f32,
}

impl Sq8Query {
    /// The quantised weights `w8_i = round(q_i · scale_i / sw)`, in `-127..=127`.
    pub fn weights(&self) -> &[i8] {
        &self.weights
    }

    /// The weight scale `sw = max_i |q_i · scale_i| / 127` (0 if every weight is 0).
    pub fn weight_scale(&self) -> f32 {
        self.sw
    }

    /// The constant term `c0 = Σ q_i · lo_i`.
    pub fn offset(&self) -> f32 {
        self.c0
    }

    /// `‖q‖²`.
    pub fn norm_sq(&self) -> f32 {
        self.norm_sq
    }

    /// Approximate dot product `q · x` with the decoded vector of `codes`, with the given integer
    /// kernel (copy it from [`compact_kernels`] once, as the index does): `c0 + sw · Σ w8_i·c_i`.
    #[inline]
    pub fn dot_with(&self, kernel: U8I8Kernel, codes: &[u8]) -> f32 {
        debug_assert_eq!(codes.len(), self.weights.len(), "SQ8 code length");
        self.c0 + self.sw * kernel(codes, &self.weights) as f32
    }

    /// Approximate squared L2 distance to the decoded vector of `codes`, whose
    /// [`Sq8Params::decoded_norm_sq`] is `code_norm_sq`: `‖q‖² − 2 q·x + ‖x‖²`, clamped at 0
    /// (cancellation can make it slightly negative for near-identical vectors).
    #[inline]
    pub fn l2_with(&self, kernel: U8I8Kernel, codes: &[u8], code_norm_sq: f32) -> f32 {
        (self.norm_sq - 2.0 * self.dot_with(kernel, codes) + code_norm_sq).max(0.0)
    }

    /// [`dot_with`](Self::dot_with) using the fastest kernel of [`compact_kernels`].
    pub fn dot(&self, codes: &[u8]) -> f32 {
        self.dot_with(compact_kernels().dot_u8i8, codes)
    }

    /// [`l2_with`](Self::l2_with) using the fastest kernel of [`compact_kernels`].
    pub fn l2(&self, codes: &[u8], code_norm_sq: f32) -> f32 {
        self.l2_with(compact_kernels().dot_u8i8, codes, code_norm_sq)
    }
}

/// Reference dot product of `q` with the decoded vector of `codes`: decode to `f32`, then the
/// scalar `f32` kernel. Slow; for tests and accuracy checks of the integer path.
///
/// # Panics
///
/// If `q` or `codes` is not `params.dim()` long.
pub fn dot_sq8_exact(q: &[f32], params: &Sq8Params, codes: &[u8]) -> f32 {
    assert_eq!(q.len(), params.dim(), "SQ8 query length");
    let mut x = vec![0f32; params.dim()];
    params.decode(codes, &mut x);
    scalar::dot_f32(q, &x)
}

/// Reference squared L2 distance between `q` and the decoded vector of `codes` (decode, then
/// the scalar `f32` kernel).
///
/// # Panics
///
/// If `q` or `codes` is not `params.dim()` long.
pub fn l2_sq8_exact(q: &[f32], params: &Sq8Params, codes: &[u8]) -> f32 {
    assert_eq!(q.len(), params.dim(), "SQ8 query length");
    let mut x = vec![0f32; params.dim()];
    params.decode(codes, &mut x);
    scalar::l2_f32(q, &x)
}

#[cfg(test)]
mod tests {
    use super::{round_half_away, sum_f64};

    /// Agrees with `f64::round` on every half, its neighbours one ulp away and a grid in
    /// between, over the weights' range and beyond; NaN and huge values give a bounded value.
    #[test]
    fn round_half_away_matches_round() {
        let mut xs = Vec::new();
        for i in -600..=600 {
            let x = f64::from(i) / 4.0;
            xs.extend([x, x.next_up(), x.next_down(), x + 0.1, x - 0.1]);
        }
        xs.extend([0.499_999_999_999_999_94, -0.499_999_999_999_999_94, 1e6 + 0.5, -1e6 - 0.5]);
        for x in xs {
            assert_eq!(round_half_away(x), x.round() as i32, "x = {x:e}");
        }
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300] {
            assert!(round_half_away(x).unsigned_abs() <= (1 << 20) + 1, "x = {x:e}");
        }
    }

    /// Equals the `f64` sum of products rounded once, for lengths around the four-way split.
    #[test]
    fn sum_f64_is_the_rounded_f64_sum() {
        for n in 0..=11 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 / 7.0).collect();
            let want = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum::<f64>() as f32;
            assert_eq!(sum_f64(&a, &b), want, "n = {n}");
        }
    }
}
