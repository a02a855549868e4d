//! hnsw-batch: an HNSW approximate nearest-neighbour index built for bulk loads.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod arena;
mod batch;
mod config;
pub mod distance;
mod error;
mod idmap;
mod index;
mod integrity;
pub mod io;
pub mod metadata;
pub mod persist;
mod progress;
mod raw;
mod scratch;
mod store;

pub use batch::{
    BatchError, BatchFailure, BatchInsertable, BatchMode, BatchOptions, BatchReport, InvalidReason,
};
pub use config::{IndexConfig, Storage, MAX_DIM, MAX_EF, MAX_M};
pub use distance::Metric;
pub use error::{IndexError, Result};
pub use index::{Index, Neighbour};
pub use integrity::{IntegrityError, IntegrityStats};
pub use persist::PersistError;
pub use progress::{BatchProgress, CancelFn, ProgressFn};
