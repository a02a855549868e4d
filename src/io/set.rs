//! [`VecSet`]: a dense, row-major set of equal-length vectors.

use super::error::{FormatError, Result};
use super::MAX_DIM;

/// The element type a vector file stored, so callers can pick matching index storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ElementKind {
    /// 32-bit floats (`.fvecs`, npy `<f4`; also npy `<f8`, converted).
    F32,
    /// Bytes (`.bvecs`, npy `|u1`): every value is an integer in `0..=255`.
    U8,
}

impl ElementKind {
    /// A short name: `"f32"` or `"u8"`.
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::F32 => "f32",
            ElementKind::U8 => "u8",
        }
    }
}

/// Vectors of one dimension stored contiguously, row after row, as `f32`.
///
/// Invariant: `data().len()` is a multiple of `dim()`, and `dim()` is 0 only
/// when the set is empty and its dimension unknown (an empty file).
#[derive(Debug, Clone, PartialEq)]
pub struct VecSet {
    dim: usize,
    data: Vec<f32>,
    element: ElementKind,
}

impl VecSet {
    /// Builds a set from row-major `data` of vectors of length `dim`.
    ///
    /// Fails with [`FormatError::InvalidArgument`] if `data.len()` is not a multiple
    /// of `dim`, and with [`FormatError::BadDimension`] if `dim` is 0 while `data`
    /// is not empty or if `dim` exceeds [`MAX_DIM`].
    pub fn new(dim: usize, data: Vec<f32>, element: ElementKind) -> Result<Self> {
        if dim > MAX_DIM || (dim == 0 && !data.is_empty()) {
            return Err(FormatError::bad_dim(0, dim));
        }
        if dim != 0 && !data.len().is_multiple_of(dim) {
            return Err(FormatError::invalid(
                "data",
                format!("length {} is not a multiple of dim {dim}", data.len()),
            ));
        }
        Ok(VecSet { dim, data, element })
    }

    /// The dimension of every vector (0 for an empty set of unknown dimension).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether the set holds no vector.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What the source file stored (`U8` for `.bvecs` and npy `|u1`).
    pub fn element(&self) -> ElementKind {
        self.element
    }

    /// All components, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the set, returning its row-major components.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Vector `i`, or `None` if `i >= len()`.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        let end = start.checked_add(self.dim)?;
        if self.dim == 0 {
            return None;
        }
        self.data.get(start..end)
    }

    /// Vector `i`.
    ///
    /// # Panics
    ///
    /// Panics if `i >= len()`, like slice indexing; use [`VecSet::get`] for a
    /// checked access.
    pub fn row(&self, i: usize) -> &[f32] {
        match self.get(i) {
            Some(r) => r,
            None => panic!("row index {i} out of range for a VecSet of {} rows", self.len()),
        }
    }

    /// Iterates over the vectors in order.
    pub fn iter(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

impl<'a> IntoIterator for &'a VecSet {
    type Item = &'a [f32];
    type IntoIter = std::slice::ChunksExact<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
