//! Errors of the index layer.

use thiserror::Error;

/// Errors returned by [`crate::Index`] operations and by [`crate::IndexConfig`] validation.
///
/// Every failing operation leaves the index exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A vector's length differs from the index dimension.
    #[error("dimension mismatch: index has dimension {expected}, vector has {actual}")]
    DimensionMismatch {
        /// The index dimension.
        expected: usize,
        /// The length of the offending vector.
        actual: usize,
    },
    /// A vector component is NaN or infinite.
    #[error("non-finite value {value} at component {component}")]
    NonFiniteValue {
        /// Position of the offending component inside the vector.
        component: usize,
        /// The offending value.
        value: f32,
    },
    /// A vector has zero norm under the cosine metric, where it has no direction.
    #[error("zero vector cannot be normalised under the cosine metric")]
    ZeroVector,
    /// A value cannot be stored losslessly in the configured storage element type
    /// (for example 0.5 or 300.0 in `u8` storage).
    #[error("value {value} at component {component} does not fit the {storage} storage type")]
    UnrepresentableValue {
        /// Position of the offending component inside the vector.
        component: usize,
        /// The offending value.
        value: f32,
        /// The storage element type.
        storage: &'static str,
    },
    /// The id is already present in the index.
    #[error("id {id} is already present")]
    DuplicateId {
        /// The duplicate id.
        id: u64,
    },
    /// The id is not present in the index.
    #[error("id {id} not found")]
    NotFound {
        /// The missing id.
        id: u64,
    },
    /// The index is full: its configured `max_elements`, or the `u32` node space, is used up.
    #[error("capacity exceeded: limit is {limit} elements")]
    CapacityExceeded {
        /// The limit that was hit.
        limit: u64,
    },
    /// A parameter is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
}

/// Result alias for index operations.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
