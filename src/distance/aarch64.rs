//! aarch64 NEON kernels (placeholder: filled in by the SIMD work).
use super::Kernels;

pub(super) fn detect() -> Option<Kernels> {
    None
}
