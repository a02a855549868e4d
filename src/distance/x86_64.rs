//! x86-64 SIMD kernels (placeholder: filled in by the SIMD work).
use super::Kernels;

pub(super) fn detect(_forced: Option<&str>) -> Option<Kernels> {
    None
}

pub(super) fn available() -> Vec<Kernels> {
    Vec::new()
}
