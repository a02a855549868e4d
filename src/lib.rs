//! hnsw-batch: an HNSW approximate nearest-neighbour index built for bulk loads.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod arena;
pub mod distance;
mod error;
pub mod io;
pub mod metadata;

pub use distance::Metric;
pub use error::{IndexError, Result};
