//! Distance kernels and metrics.
//!
//! Every kernel has a scalar reference in [`scalar`]; SIMD versions (AVX-512, AVX2+FMA on x86-64,
//! NEON on aarch64) are picked once at run time by [`kernels`] and tested against the reference.
//! The index never calls a kernel through this module per call: it copies the chosen function
//! pointers at construction.
//!
//! Compact storage (issue 13) has its own kernel set, [`CompactKernels`] (chosen by
//! [`compact_kernels`]): an `f32` query against `f16` stored vectors ([`encode_f16`] makes them),
//! and the exact `u8` × `i8` integer dot product behind 8-bit scalar quantisation ([`sq8`]).
//!
//! [`QuadKernels`] compare a query with four stored `f32` vectors in one pass, each result equal
//! bit for bit to the single-vector kernel of the same instruction set; the graph walk uses them
//! where a fused set exists ([`quad_kernels_for`]).

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod scalar;
pub mod sq8;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::sync::OnceLock;

/// The distance an index orders neighbours by. Smaller is closer for every metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Cosine distance, `1 - cos(a, b)`. Vectors are normalised on insert and queries on search.
    Cosine,
    /// Inner-product distance, `1 - a·b` (not a metric; suits maximum-inner-product search).
    InnerProduct,
}

impl Metric {
    /// Stable name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "ip",
        }
    }

    /// Parses [`Metric::name`] (also accepts `euclidean`, `angular`, `dot`).
    pub fn from_name(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" | "sql2" => Some(Metric::L2),
            "cosine" | "angular" | "cos" => Some(Metric::Cosine),
            "ip" | "dot" | "inner_product" | "innerproduct" => Some(Metric::InnerProduct),
            _ => None,
        }
    }
}

/// Squared L2 between two `f32` vectors of equal length.
pub type F32Kernel = fn(&[f32], &[f32]) -> f32;
/// Squared L2 or dot product between an `f32` query and a `u8` stored vector of equal length.
pub type U8Kernel = fn(&[f32], &[u8]) -> f32;

/// Squared L2 or dot product between an `f32` query and an `f16` stored vector (IEEE 754 binary16
/// bits) of equal length.
pub type F16Kernel = fn(&[f32], &[u16]) -> f32;
/// Exact integer dot product `Σ codes[i] · w[i]` of unsigned and signed bytes, of equal length.
pub type U8I8Kernel = fn(&[u8], &[i8]) -> i32;

/// Squared L2 or dot product between an `f32` query and each of four stored `f32` vectors, each
/// over its common prefix with the query.
pub type F32x4Kernel = fn(&[f32], [&[f32]; 4]) -> [f32; 4];

/// The kernel set chosen for this CPU.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the instruction set the kernels use (`avx512`, `avx2`, `neon`, `scalar`).
    pub isa: &'static str,
    /// Squared L2, `f32` × `f32`.
    pub l2_f32: F32Kernel,
    /// Dot product, `f32` × `f32`.
    pub dot_f32: F32Kernel,
    /// Squared L2, `f32` query × `u8` stored vector.
    pub l2_u8: U8Kernel,
    /// Dot product, `f32` query × `u8` stored vector.
    pub dot_u8: U8Kernel,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

/// The scalar reference kernels.
pub fn scalar_kernels() -> Kernels {
    Kernels {
        isa: "scalar",
        l2_f32: scalar::l2_f32,
        dot_f32: scalar::dot_f32,
        l2_u8: scalar::l2_u8,
        dot_u8: scalar::dot_u8,
    }
}

/// The fastest kernel set this CPU supports, detected once and cached.
///
/// Setting the environment variable `HNSW_BATCH_ISA` before first use forces a set, for
/// benchmarks and debugging: `scalar` anywhere, `avx2` or `avx512` on x86-64 (falling back to
/// scalar if the CPU lacks it). Other values are ignored.
pub fn kernels() -> Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    *K.get_or_init(detect)
}

fn detect() -> Kernels {
    let forced = std::env::var("HNSW_BATCH_ISA").ok();
    if forced.as_deref() == Some("scalar") {
        return scalar_kernels();
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86_64::detect(forced.as_deref()) {
        return k;
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(k) = aarch64::detect() {
        return k;
    }
    scalar_kernels()
}

/// All kernel sets this CPU can run, scalar first (for tests and benchmarks).
pub fn available_kernels() -> Vec<Kernels> {
    #[allow(unused_mut)]
    let mut v = vec![scalar_kernels()];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64::available());
    #[cfg(target_arch = "aarch64")]
    v.extend(aarch64::detect());
    v
}

/// The kernel set for compact storage (`f16` and 8-bit scalar-quantised vectors) chosen for this
/// CPU.
///
/// A separate struct rather than more fields on [`Kernels`]: `Kernels` has public fields and is
/// passed to [`crate::Index::with_kernels`], so callers may build one themselves and new fields
/// would break them. The instruction sets also differ: `f16` conversion needs F16C next to AVX2,
/// and the integer kernel has a third x86-64 variant (AVX-512 VNNI), so the two sets are detected
/// separately and may have different names on the same CPU.
///
/// `#[non_exhaustive]` so that kernels can be added (e.g. `f16` × `f16`, or a signed `i8` × `i8`
/// dot product) without breaking anyone: outside this crate it is obtained only from
/// [`compact_kernels`], [`available_compact_kernels`] and [`scalar_compact_kernels`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct CompactKernels {
    /// Name of the instruction set (`avx512vnni`, `avx512`, `avx2`, `neon`, `scalar`).
    pub isa: &'static str,
    /// Squared L2, `f32` query × `f16` stored vector.
    pub l2_f16: F16Kernel,
    /// Dot product, `f32` query × `f16` stored vector.
    pub dot_f16: F16Kernel,
    /// Exact `u8` × `i8` dot product in `i32` (see [`scalar::dot_u8i8`] for its range).
    pub dot_u8i8: U8I8Kernel,
}

impl std::fmt::Debug for CompactKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactKernels").field("isa", &self.isa).finish()
    }
}

/// The scalar reference compact kernels.
pub fn scalar_compact_kernels() -> CompactKernels {
    CompactKernels {
        isa: "scalar",
        l2_f16: scalar::l2_f16,
        dot_f16: scalar::dot_f16,
        dot_u8i8: scalar::dot_u8i8,
    }
}

/// The fastest compact kernel set this CPU supports, detected once and cached.
///
/// `HNSW_BATCH_ISA` forces a set as for [`kernels`]: `scalar`, `avx2`, `avx512` (AVX-512 without
/// VNNI) or `avx512vnni` (falling back to scalar if the CPU lacks it). [`kernels`] treats
/// `avx512vnni` as unknown, i.e. picks its fastest set.
pub fn compact_kernels() -> CompactKernels {
    static K: OnceLock<CompactKernels> = OnceLock::new();
    *K.get_or_init(detect_compact)
}

fn detect_compact() -> CompactKernels {
    let forced = std::env::var("HNSW_BATCH_ISA").ok();
    if forced.as_deref() == Some("scalar") {
        return scalar_compact_kernels();
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86_64::detect_compact(forced.as_deref()) {
        return k;
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(k) = aarch64::detect_compact() {
        return k;
    }
    scalar_compact_kernels()
}

/// All compact kernel sets this CPU can run, scalar first (for tests and benchmarks).
pub fn available_compact_kernels() -> Vec<CompactKernels> {
    #[allow(unused_mut)]
    let mut v = vec![scalar_compact_kernels()];
    #[cfg(target_arch = "x86_64")]
    v.extend(x86_64::available_compact());
    #[cfg(target_arch = "aarch64")]
    v.extend(aarch64::detect_compact());
    v
}

/// Kernels that compare a query with four stored `f32` vectors in one pass.
///
/// The graph walk computes all the distances of one neighbour list before it compares any
/// (`Index::dists_of`); a fused kernel then loads four rows side by side, so their cache misses
/// overlap, and pays the call and the final reduction once per four. On debian-minilm (`f32`,
/// 384 dimensions) that measured 5–15 % more single-thread QPS than one call per row (see
/// `docs/benchmarks.md`, session 11).
///
/// Each result is, bit for bit, what the single-vector kernel of the same set ([`Kernels`] with
/// the same `isa`) returns for that vector: each vector gets the same accumulators, chunking and
/// reduction. So a search returns the same distances whichever path computed them.
///
/// `#[non_exhaustive]` for the reason given on [`CompactKernels`]; obtained from
/// [`quad_kernels_for`], [`available_quad_kernels`] and [`scalar_quad_kernels`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct QuadKernels {
    /// Name of the instruction set, the `isa` of the [`Kernels`] set it matches.
    pub isa: &'static str,
    /// Squared L2, `f32` query × four `f32` vectors.
    pub l2_f32_x4: F32x4Kernel,
    /// Dot product, `f32` query × four `f32` vectors.
    pub dot_f32_x4: F32x4Kernel,
}

impl std::fmt::Debug for QuadKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuadKernels").field("isa", &self.isa).finish()
    }
}

/// The scalar reference quad kernels: four calls of the scalar kernels.
pub fn scalar_quad_kernels() -> QuadKernels {
    QuadKernels { isa: "scalar", l2_f32_x4: scalar::l2_f32_x4, dot_f32_x4: scalar::dot_f32_x4 }
}

/// The fused quad kernels matching the [`Kernels`] set named `isa` (`avx512`), if this CPU runs
/// them; `None` for every other set, whose searches compute one distance per call. The scalar
/// reference is not returned here: it fuses nothing.
pub fn quad_kernels_for(isa: &str) -> Option<QuadKernels> {
    #[cfg(target_arch = "x86_64")]
    {
        x86_64::quad(isa)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

/// All quad kernel sets this CPU can run, scalar first (for tests and benchmarks).
pub fn available_quad_kernels() -> Vec<QuadKernels> {
    let mut v = vec![scalar_quad_kernels()];
    v.extend(quad_kernels_for("avx512"));
    v
}

/// Converts `src` to IEEE 754 half precision, written as bits into `dst`: round to nearest, ties
/// to even; magnitudes above 65504 become infinities and below about 6e-8 become zeros, NaN stays
/// NaN. Storage that must not lose values beyond rounding should reject inputs outside
/// `[-65504, 65504]` first.
///
/// # Panics
///
/// If `src` and `dst` differ in length.
pub fn encode_f16(src: &[f32], dst: &mut [u16]) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    dst.reinterpret_cast_mut::<half::f16>().convert_from_f32_slice(src);
}

/// Widens IEEE 754 half-precision bits in `src` to `f32` in `dst` (exact).
///
/// # Panics
///
/// If `src` and `dst` differ in length.
pub fn decode_f16(src: &[u16], dst: &mut [f32]) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    src.reinterpret_cast::<half::f16>().convert_to_f32_slice(dst);
}

/// Squared L2 distance with the fastest kernel. Lengths must match (extra elements are ignored).
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_f32)(a, b)
}

/// Dot product with the fastest kernel. Lengths must match (extra elements are ignored).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot_f32)(a, b)
}
