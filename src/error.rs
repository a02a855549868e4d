//! Errors of the index layer.

use thiserror::Error;

/// Errors returned by [`crate::Index`] operations and by [`crate::IndexConfig`] validation.
///
/// Every failing operation leaves the index exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A vector's length differs from the index dimension.
    #[error("{}", phrase::dimension(*expected, *actual))]
    DimensionMismatch {
        /// The index dimension.
        expected: usize,
        /// The length of the offending vector.
        actual: usize,
    },
    /// A flat row-major matrix's length is not a whole number of rows of the index dimension
    /// ([`Index::search_batch_flat`](crate::Index::search_batch_flat)).
    #[error("a matrix of {len} values is not a whole number of rows of dimension {dim}")]
    MatrixLength {
        /// Values given.
        len: usize,
        /// The index dimension (the row length).
        dim: usize,
    },
    /// A vector component is NaN or infinite.
    #[error("{}", phrase::non_finite(*component, *value))]
    NonFiniteValue {
        /// Position of the offending component inside the vector.
        component: usize,
        /// The offending value.
        value: f32,
    },
    /// A vector has zero norm under the cosine metric, where it has no direction.
    #[error("{}", phrase::ZERO_VECTOR)]
    ZeroVector,
    /// A value cannot be stored in the configured storage element type: not losslessly in `u8`
    /// (for example 0.5 or 300.0), not as a finite half float in `f16` (for example 70000.0).
    #[error("{}", phrase::unrepresentable(*component, *value, storage))]
    UnrepresentableValue {
        /// Position of the offending component inside the vector.
        component: usize,
        /// The offending value.
        value: f32,
        /// The storage element type.
        storage: &'static str,
    },
    /// The id is already present in the index.
    #[error("{}", phrase::duplicate(*id, None))]
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
    /// The index is full: its configured `max_elements`, or its node space (`u32` node
    /// numbers, or 24-bit ones when a `max_elements` of at most 8 388 608 selected 3-byte links;
    /// node slots include deleted vectors not yet reused), is used up.
    #[error("{}", phrase::capacity(*limit))]
    CapacityExceeded {
        /// The limit that was hit.
        limit: u64,
    },
    /// Metadata breaks a [`MetaLimits`](crate::MetaLimits) limit or value rule.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(#[from] crate::metadata::MetaError),
    /// A filter is malformed ([`Filter::check`](crate::Filter::check)).
    #[error("invalid filter: {0}")]
    InvalidFilter(#[from] crate::filter::FilterError),
    /// A bulk operation's safety option (`confirm_count`, `max_affected`) refused it; nothing
    /// changed.
    #[error("refused: {0}")]
    Refused(crate::batch_ops::DeleteError),
    /// [`Storage::Sq8`](crate::Storage::Sq8) has no quantisation parameters yet, so a single
    /// vector cannot be coded: insert a batch first (the first batch trains them) or call
    /// [`Index::train_sq8`](crate::Index::train_sq8). Nothing changed.
    #[error("sq8 storage is untrained: insert a batch first or call train_sq8")]
    Sq8Untrained,
    /// A parameter is out of its valid range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// Name of the parameter.
        name: &'static str,
        /// Why the value is rejected.
        reason: String,
    },
}

/// The wording of each fault a vector or an item can have, shared by [`IndexError`] and
/// [`crate::BatchError`] so that one fault reads the same whichever API reported it (a batch
/// error only prefixes the item's position and id).
pub(crate) mod phrase {
    use std::fmt;

    /// `Display` from a closure: lets a phrase be formatted in place, without a `String`.
    pub(crate) struct Phrase<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(pub(crate) F);

    impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Phrase<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            (self.0)(f)
        }
    }

    pub(crate) fn dimension(expected: usize, actual: usize) -> impl fmt::Display {
        Phrase(move |f| write!(f, "dimension mismatch: index has dimension {expected}, vector has {actual}"))
    }

    pub(crate) fn non_finite(component: usize, value: f32) -> impl fmt::Display {
        Phrase(move |f| write!(f, "non-finite value {value} at component {component}"))
    }

    pub(crate) const ZERO_VECTOR: &str = "zero vector: cannot be normalised under the cosine metric";

    pub(crate) fn unrepresentable(component: usize, value: f32, storage: &str) -> impl fmt::Display + '_ {
        Phrase(move |f| {
            write!(f, "value {value} at component {component} does not fit the {storage} storage type")
        })
    }

    /// `earlier`: the position of an earlier item of the same batch with this id, if any.
    pub(crate) fn duplicate(id: u64, earlier: Option<usize>) -> impl fmt::Display {
        Phrase(move |f| match earlier {
            Some(i) => write!(f, "duplicate id {id} (also item {i})"),
            None => write!(f, "duplicate id {id} (already in the index)"),
        })
    }

    pub(crate) fn capacity(limit: u64) -> impl fmt::Display {
        Phrase(move |f| write!(f, "capacity exceeded: limit is {limit} elements"))
    }
}

/// Result alias for index operations.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
