//! hnsw-batch: an HNSW approximate nearest-neighbour index built for bulk loads.
//!
//! - [`Index`]: the graph index. Every method takes `&self`; inserts, updates, deletes and
//!   searches run concurrently from any number of threads, and a vector becomes visible to
//!   searches only once it is fully linked.
//! - [`BatchInsertable`]: one call inserts a whole batch in parallel on the caller's rayon pool,
//!   validated first ([`BatchMode::AllOrNothing`]) or item by item ([`BatchMode::BestEffort`]),
//!   with progress and cancellation. Errors are a five-variant [`BatchError`].
//!   [`Index::update_batch`] and [`Index::delete_batch`] take the same [`BatchOptions`] and
//!   return the same `Result<`[`BatchReport`]`, BatchError>`; a cancelled batch's error carries
//!   the report of what it committed.
//! - Search ([`Index::search`] and its filtered, batch and flat-matrix forms,
//!   [`Index::search_batch_flat`]): `ef` is a number or `None` for the index's default
//!   ([`Index::set_ef`]). [`IndexView`] is the read-only face of an index, which a
//!   [`DurableIndex`] lends.
//! - [`distance`]: SIMD kernels chosen at run time, with the scalar reference they are tested
//!   against. [`Storage::U8`] keeps byte data (SIFT, pixels) in a quarter of the memory,
//!   [`Storage::F16`] any float data as half floats in half of it, [`Storage::Sq8`] walks
//!   the graph on 8-bit codes and re-scores the best candidates with the exact vectors.
//! - [`writer`]: a batching writer for many producers (items with metadata and expiry too,
//!   [`BatchWriter::submit_item`]): bounded queue with backpressure, flush
//!   by size or delay, a completion handle per item, retries with backoff, metrics and health.
//! - [`metadata`], [`filter`], [`expiry`]: typed per-vector metadata with limits and a canonical
//!   binary form; filters built in Rust or parsed from JSON (`{"year": {"$gte": 2000}}`);
//!   posting-bitmap field indexes; clocks and expiry times.
//! - [`items`]: the same wired into [`Index`]: [`Index::insert_with`], [`Index::insert_items`],
//!   metadata patches, [`Index::create_field_index`], filtered search
//!   ([`Index::search_where`]), [`Index::count`], [`Index::delete_where_filter`],
//!   [`Index::update_where`], expiry by an injectable clock and [`Index::purge_expired`]; the
//!   operations by filter report in the shared [`BatchReport`] (with
//!   [`dry_run`](BatchReport::dry_run)) and take [`DeleteOptions`].
//!   Snapshots keep metadata and expiry; [`DurableIndex`] logs every change of them (its
//!   [`insert_items`](DurableIndex::insert_items), [`delete_where`](DurableIndex::delete_where),
//!   [`update_where`](DurableIndex::update_where), [`purge_expired`](DurableIndex::purge_expired), …).
//! - [`io`]: vector files (fvecs/bvecs/ivecs, `.npy`, CSV, JSON Lines with feature `formats`).
//!
//! ```
//! use hnsw_batch::{BatchInsertable, BatchMode, BatchOptions, Index, IndexConfig, Metric};
//!
//! let index = Index::new(IndexConfig::new(2, Metric::Cosine))?;
//! let items = vec![(1u64, vec![1.0, 0.0]), (2, vec![0.0, 1.0]), (3, vec![f32::NAN, 1.0])];
//! let report = index.insert_batch(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
//! assert_eq!((report.inserted, report.failures[0].index), (2, 2));
//! assert_eq!(index.search(&[0.9, 0.1], 1, 16)?[0].id, 1);
//! # Ok::<(), hnsw_batch::IndexError>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod arena;
mod batch;
mod batch_ops;
mod config;
mod convert;
pub mod distance;
mod epoch;
mod error;
pub mod expiry;
pub mod filter;
mod idmap;
mod index;
mod integrity;
pub mod io;
pub mod items;
#[cfg(test)]
mod link_tests;
mod links;
pub mod metadata;
pub mod persist;
mod progress;
mod raw;
mod repair;
mod results;
mod reuse;
mod scratch;
mod search;
mod store;
mod view;
mod walk_codes;
pub mod writer;

pub use batch::{
    BatchError, BatchFailure, BatchInsertable, BatchMode, BatchOptions, BatchReport, InvalidReason,
    IterBatchError, CODED_WALK_MIN_BATCH,
};
pub use batch_ops::{DeleteError, DeleteOptions};
pub use config::{IndexConfig, Storage, MAX_DIM, MAX_EF, MAX_M};
pub use distance::Metric;
pub use error::{IndexError, Result};
pub use expiry::{Clock, Expiry, ManualClock, SystemClock};
pub use filter::{FieldIndex, Filter, FilterError, FilterErrorKind, FilterValue, Number};
pub use index::{Index, Neighbour, SearchStats, SQ8_TRAIN_SAMPLE};
pub use integrity::{IntegrityError, IntegrityStats};
pub use items::{FilterPlan, FilteredSearchStats, Item, MetaPatch};
pub use metadata::{MetaError, MetaLimits, MetaValue, Metadata};
pub use persist::{DurableIndex, DurableOptions, PersistError, SyncPolicy};
pub use progress::{BatchProgress, CancelFn, ProgressFn};
pub use reuse::SlotStats;
pub use search::{FlatNeighbours, MISSING_ID};
pub use view::IndexView;
pub use writer::{BatchSink, BatchWriter, Completion, SubmitError, WriteError, WriterOptions};

/// Bytes of node storage that every index in this process holds as memory mapped straight
/// from the OS rather than through the global allocator: on Linux, arena buckets of 2 MiB or
/// more are anonymous mappings (aligned and advised for transparent huge pages; see
/// `docs/architecture.md`, "Storage"). A counting global allocator misses these bytes; add them
/// to its figure. Pages never written are not resident, so this is address space reserved, as an
/// allocator's count is.
pub fn mapped_memory_bytes() -> usize {
    arena::mapped_bytes()
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
