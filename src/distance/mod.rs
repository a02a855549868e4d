//! Distance kernels and metrics.
//!
//! Every kernel has a scalar reference in [`scalar`]; SIMD versions (AVX-512, AVX2+FMA on x86-64,
//! NEON on aarch64) are picked once at run time by [`kernels`] and tested against the reference.
//! The index never calls a kernel through this module per call: it copies the chosen function
//! pointers at construction.

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod scalar;
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

/// Squared L2 distance with the fastest kernel. Lengths must match (extra elements are ignored).
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_f32)(a, b)
}

/// Dot product with the fastest kernel. Lengths must match (extra elements are ignored).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot_f32)(a, b)
}
