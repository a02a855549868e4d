//! Temporary 8-bit codes that a batch insert into an `f32` or `f16` index walks instead of the
//! stored vectors when asked (`BatchOptions::coded_walk`; design and costs in
//! `rfcs/0005-build-under-another-storage.md`).
//!
//! An insert spends most of its time in the `ef_construction` beam search that gathers its
//! candidates, and that search is bound by the bytes it pulls from memory: a 384-dimension `f32`
//! row is 1 536 bytes, its code 388. So while a batch runs, every node it may walk to gets an SQ8
//! code (quantiser trained on the batch), and the batch's walks compare codes; the links are
//! still chosen with exact distances (`select`, `add_link`: node to node, from the stored
//! vectors), so the graph is as good. The codes are dropped when the batch ends.
//!
//! # Publication
//!
//! Each node's code has a state: `EMPTY`, `WRITING`, `READY`, `STALE`. A code is written once,
//! by the one thread that moved its state from `EMPTY` to `WRITING`, and published by the
//! release compare-exchange from `WRITING` to `READY`; a reader reads the bytes only after an
//! acquire load of `READY`, and nobody writes them after that. A slot whose node changes while
//! its code is `READY` or `WRITING` (the slot was reused for another vector) turns `STALE` and is
//! then walked with exact distances: the old bytes stay as they were for any reader that saw
//! `READY` a moment before, which gets one approximate distance to the old vector, a matter of
//! candidate quality only; a writer still coding the old vector finds `STALE` instead of
//! `WRITING` and leaves it (its bytes are never read). `STALE` is final.
//!
//! `tests/loom_protocols.rs` model-checks this protocol on a mirror of these functions: change
//! them together.
//!
//! Who writes: the batch, for every node that is ready when it starts (`record_existing`), and
//! every insert or update of the index while the codes are installed (`record_new`, from
//! `write_and_link`, before the node is linked), so concurrent single writes are covered too.
//! Nodes numbered beyond the capacity, or never coded, are walked exactly.

use crate::config::Storage;
use crate::distance::sq8::{Sq8Params, Sq8Query};
use crate::distance::{Metric, U8I8Kernel};
use crate::index::Index;
use rayon::prelude::*;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;
const STALE: u8 = 3;

/// The codes of one batch (see the module docs).
pub(crate) struct WalkCodes {
    params: Sq8Params,
    dim: usize,
    /// Bytes per node: `dim` codes, then the decoded `‖x‖²` (`f32`, native order).
    stride: usize,
    l2: bool,
    state: Box<[AtomicU8]>,
    rows: Box<[UnsafeCell<u8>]>,
}

// SAFETY: the bytes in `rows` are written only by the thread that owns a node's `WRITING` state
// and read only after the release/acquire pair on `READY`, after which nobody writes them (see
// the module docs); everything else is atomics or immutable.
unsafe impl Sync for WalkCodes {}

impl WalkCodes {
    /// Room for nodes `0..capacity`, all `EMPTY`; `l2`: squared-L2 distances, else `1 - dot`.
    /// `None` when the memory cannot be had (the batch then walks the stored vectors).
    pub(crate) fn new(params: Sq8Params, capacity: usize, l2: bool) -> Option<Self> {
        let dim = params.dim();
        let stride = dim + 4;
        let len = capacity.checked_mul(stride)?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).ok()?;
        bytes.resize(len, 0u8);
        let raw = Box::into_raw(bytes.into_boxed_slice()) as *mut [UnsafeCell<u8>];
        // SAFETY: `UnsafeCell<u8>` has the layout of `u8` (`repr(transparent)`), so the boxed
        // slice is the same allocation with the same length and alignment.
        let rows = unsafe { Box::from_raw(raw) };
        let mut state = Vec::new();
        state.try_reserve_exact(capacity).ok()?;
        state.extend((0..capacity).map(|_| AtomicU8::new(EMPTY)));
        Some(Self { params, dim, stride, l2, state: state.into_boxed_slice(), rows })
    }

    /// The query form of a walk from `q` (a query-form vector).
    pub(crate) fn prepare(&self, q: &[f32]) -> Sq8Query {
        self.params.prepare_query(q)
    }

    /// Codes node `n` from its query-form vector `v`, unless it already has one (the batch's
    /// pass over the nodes that existed when it started).
    pub(crate) fn record_existing(&self, n: u32, v: &[f32]) {
        if let Some(st) = self.state.get(n as usize) {
            if st.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                self.write(n as usize, st, v);
            }
        }
    }

    /// Codes node `n`, just written with the query-form vector `v` and not yet linked; if the
    /// slot still holds the code of a previous node, marks it stale instead.
    pub(crate) fn record_new(&self, n: u32, v: &[f32]) {
        let Some(st) = self.state.get(n as usize) else { return };
        match st.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => self.write(n as usize, st, v),
            // `READY` or `WRITING`: the code is (or will be) the previous node's. A writer still
            // at work then fails its publication (`write`); a state never returns to `EMPTY`.
            // A swap, though a store would do: loom 0.7 lets a plain store fall between the read
            // and the write of the writer's compare-exchange (tokio-rs/loom#254), so the model
            // in `tests/loom_protocols.rs`, which mirrors this, would fail spuriously.
            Err(READY | WRITING) => {
                st.swap(STALE, Ordering::Release);
            }
            Err(_) => {}
        }
    }

    /// Writes node `n`'s code and publishes it, unless the slot turned `STALE` meanwhile; the
    /// caller moved its state to `WRITING`.
    fn write(&self, n: usize, st: &AtomicU8, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        let start = n * self.stride;
        // SAFETY: `start + stride <= rows.len()` as `n < capacity`; this thread owns the
        // `WRITING` state of `n`, so no other thread writes these bytes, and none reads them
        // before the `READY` below (never, if the slot turns `STALE` first).
        let row = unsafe { std::slice::from_raw_parts_mut(self.rows[start].get(), self.stride) };
        let (codes, norm) = row.split_at_mut(self.dim);
        self.params.encode(v, codes);
        norm.copy_from_slice(&self.params.decoded_norm_sq(codes).to_ne_bytes());
        // Fails only when `record_new` marked the slot `STALE` meanwhile (it was reused).
        let _ = st.compare_exchange(WRITING, READY, Ordering::Release, Ordering::Relaxed);
    }

    /// Starts loading node `n`'s code; `false` (nothing done) when it has none to read.
    #[inline(always)]
    pub(crate) fn prefetch(&self, n: u32) -> bool {
        let Some(st) = self.state.get(n as usize) else { return false };
        if st.load(Ordering::Relaxed) != READY {
            return false;
        }
        crate::store::prefetch_bytes(self.rows[n as usize * self.stride].get(), self.stride);
        true
    }

    /// The approximate distance from the prepared walk `q` to node `n`, or `None` when `n` has
    /// no usable code (the caller computes it exactly).
    #[inline(always)]
    pub(crate) fn dist(&self, q: &Sq8Query, n: u32, kernel: U8I8Kernel) -> Option<f32> {
        let st = self.state.get(n as usize)?;
        if st.load(Ordering::Acquire) != READY {
            return None;
        }
        let start = n as usize * self.stride;
        // SAFETY: in bounds as `n < capacity`; `READY` was published with release after the
        // bytes were written, and they are never written again (module docs).
        let row = unsafe { std::slice::from_raw_parts(self.rows[start].get() as *const u8, self.stride) };
        let (codes, norm) = row.split_at(self.dim);
        Some(if self.l2 {
            let norm = f32::from_ne_bytes([norm[0], norm[1], norm[2], norm[3]]);
            q.l2_with(kernel, codes, norm)
        } else {
            1.0 - q.dot_with(kernel, codes)
        })
    }
}

/// Where an index keeps the codes of the batch running now, if any.
#[derive(Default)]
pub(crate) struct WalkSlot(parking_lot::RwLock<Option<Arc<WalkCodes>>>);

impl WalkSlot {
    /// The codes installed now (a clone of the handle: the caller keeps them alive while it
    /// walks, even if the batch ends meanwhile).
    #[inline]
    pub(crate) fn current(&self) -> Option<Arc<WalkCodes>> {
        self.0.read().clone()
    }
}

use crate::batch::CODED_WALK_MIN_BATCH as WALK_MIN_BATCH;

/// Nor fewer than one item for every this many live vectors (coding a node costs about one of
/// its distances, a batch insert about a thousand distances per item).
const WALK_LIVE_PER_ITEM: usize = 64;

/// The codes of one batch, installed on its index until this is dropped.
pub(crate) struct WalkSession<'a> {
    index: &'a Index,
    codes: Arc<WalkCodes>,
}

impl Drop for WalkSession<'_> {
    fn drop(&mut self) {
        let mut slot = self.index.walk.0.write();
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.codes)) {
            *slot = None;
        }
    }
}

impl<'a> WalkSession<'a> {
    /// Installs codes for a batch of `count` valid items (`row(j)`, as given by the caller) when
    /// it is worth it: `f32` or `f16` storage, `count` at least [`WALK_MIN_BATCH`] and one item
    /// per [`WALK_LIVE_PER_ITEM`] live vectors, no other batch's codes installed, and memory for
    /// the codes available. Then codes every node that is ready now. `None`: the batch walks the
    /// stored vectors, as without codes.
    pub(crate) fn begin<'r>(
        index: &'a Index,
        count: usize,
        row: impl Fn(usize) -> &'r [f32] + Sync,
    ) -> Option<Self> {
        if !matches!(index.cfg.storage, Storage::F32 | Storage::F16)
            || count < WALK_MIN_BATCH
            || count.saturating_mul(WALK_LIVE_PER_ITEM) < index.len()
            || index.walk.0.read().is_some()
        {
            return None;
        }
        // Ranges from every row of the batch, one at a time: a sample of 20 000 rows of
        // debian-minilm gave ranges narrow enough to cost about 0.002 recall at ef 16.
        let dim = index.cfg.dim;
        let (mut lo, mut hi) = (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        for j in 0..count {
            let form = index.query_form(row(j));
            for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(form.iter()) {
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        // In f64, as `Sq8Params::train` does: `max - min` may not fit an f32.
        let scale =
            lo.iter().zip(&hi).map(|(&l, &h)| ((f64::from(h) - f64::from(l)) / 255.0) as f32).collect();
        let params = Sq8Params::from_parts(lo, scale).ok()?;
        let existing = index.store.allocated() as usize;
        // Room for the batch and for some concurrent inserts; nodes beyond are walked exactly.
        let capacity = existing.saturating_add(count + count / 8 + 1024).min(u32::MAX as usize);
        let l2 = index.cfg.metric == Metric::L2;
        let codes = Arc::new(WalkCodes::new(params, capacity, l2)?);
        {
            let mut slot = index.walk.0.write();
            if slot.is_some() {
                return None;
            }
            *slot = Some(codes.clone());
        }
        // Installed first: a node written from now on is coded by its own insert, so none that
        // the batch can walk to is missed. Pinned from the readiness check to the end of the
        // code, so the slot cannot be retired and reused in between (`store.rs`, "Slot reuse"):
        // the vector read is the ready node's, and a reuse's `record_new` finds `READY`.
        (0..existing as u32).into_par_iter().with_min_len(1024).for_each_init(Vec::new, |buf, n| {
            let _pin = crate::epoch::pin();
            if index.store.is_ready(n) {
                index.decode_into(n, buf);
                codes.record_existing(n, buf);
            }
        });
        Some(Self { index, codes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchInsertable, BatchOptions, IndexConfig};
    use std::sync::atomic::AtomicBool;

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        ((x >> 40) % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    /// Whether a batch of `n` items into `index` (holding `from` ids below) had codes installed,
    /// seen from its progress callback; and that none are left after it.
    fn coded_during(index: &Arc<Index>, from: u64, n: usize, coded: bool) -> bool {
        let seen = Arc::new(AtomicBool::new(false));
        let (i2, s2) = (index.clone(), seen.clone());
        let opts = BatchOptions::new().coded_walk(coded).on_progress(move |_| {
            if i2.walk.current().is_some() {
                s2.store(true, Ordering::Relaxed);
            }
        });
        let items: Vec<(u64, Vec<f32>)> =
            rows(n, index.cfg.dim, from).into_iter().enumerate().map(|(i, v)| (from + i as u64, v)).collect();
        index.insert_batch(&items, &opts).unwrap();
        assert!(index.walk.current().is_none(), "codes outlived their batch");
        seen.load(Ordering::Relaxed)
    }

    #[test]
    fn codes_exist_only_while_a_large_coded_batch_runs_on_float_storage() {
        let f32_index = Arc::new(Index::new(IndexConfig::new(8, Metric::L2)).unwrap());
        assert!(!coded_during(&f32_index, 0, 1500, false), "coded without being asked");
        assert!(!coded_during(&f32_index, 10_000, WALK_MIN_BATCH - 1, true), "small batch coded");
        assert!(coded_during(&f32_index, 20_000, WALK_MIN_BATCH, true));
        let f16 = Arc::new(Index::new(IndexConfig::new(8, Metric::Cosine).storage(Storage::F16)).unwrap());
        assert!(coded_during(&f16, 0, 1500, true));
        for storage in [Storage::U8, Storage::Sq8] {
            let index = Arc::new(Index::new(IndexConfig::new(8, Metric::L2).storage(storage)).unwrap());
            let items: Vec<(u64, Vec<f32>)> = (0..1500u64)
                .map(|i| (i, (0..8).map(|j| ((i as usize * 7 + j) % 200) as f32).collect()))
                .collect();
            let seen = Arc::new(AtomicBool::new(false));
            let (i2, s2) = (index.clone(), seen.clone());
            let opts = BatchOptions::new().coded_walk(true).on_progress(move |_| {
                s2.fetch_or(i2.walk.current().is_some(), Ordering::Relaxed);
            });
            index.insert_batch(&items, &opts).unwrap();
            assert!(!seen.load(Ordering::Relaxed), "{storage:?} walks bytes already");
        }
    }

    #[test]
    fn a_batch_too_small_for_the_index_gets_no_codes() {
        let index = Arc::new(Index::new(IndexConfig::new(4, Metric::L2)).unwrap());
        assert!(coded_during(&index, 0, 70_000, true));
        // 1 090 items for 70 000 live: fewer than one per 64; 1 120 for 71 090 is enough.
        assert!(!coded_during(&index, 100_000, 1090, true));
        assert!(coded_during(&index, 200_000, 1120, true));
    }

    #[test]
    fn a_code_is_written_once_and_a_reused_slot_goes_stale() {
        let dim = 16;
        let data = rows(50, dim, 9);
        let params = Sq8Params::train(data.iter().map(|v| v.as_slice()), dim).unwrap();
        let codes = WalkCodes::new(params, 10, true).unwrap();
        let k = crate::distance::compact_kernels().dot_u8i8;
        let q = codes.prepare(&data[0]);
        let exact = crate::distance::scalar::l2_f32(&data[0], &data[1]);
        assert_eq!(codes.dist(&q, 3, k), None, "an empty slot has no code");
        codes.record_existing(3, &data[1]);
        let d = codes.dist(&q, 3, k).expect("coded");
        assert!((d - exact).abs() <= 0.05 * exact.max(1.0), "code distance {d}, exact {exact}");
        // The pass over existing nodes never overwrites; a new node in a coded slot makes it stale.
        codes.record_existing(3, &data[2]);
        assert_eq!(codes.dist(&q, 3, k), Some(d));
        codes.record_new(3, &data[2]);
        assert_eq!(codes.dist(&q, 3, k), None, "stale code still read");
        codes.record_existing(3, &data[2]);
        codes.record_new(3, &data[2]);
        assert_eq!(codes.dist(&q, 3, k), None, "a stale slot came back");
        // A slot reused while the previous node's code is still being written goes stale too:
        // the writer, finishing after the reuse, does not publish the old vector's code.
        codes.state[5].store(WRITING, Ordering::Relaxed);
        codes.record_new(5, &data[2]);
        codes.write(5, &codes.state[5], &data[1]);
        assert_eq!(codes.dist(&q, 5, k), None, "a code finished after its slot's reuse was published");
        // A new node in an empty slot is coded; slots past the capacity are ignored.
        codes.record_new(4, &data[1]);
        assert_eq!(codes.dist(&q, 4, k), Some(d));
        codes.record_new(10, &data[1]);
        assert_eq!(codes.dist(&q, 10, k), None);
        assert!(!codes.prefetch(10) && !codes.prefetch(3) && codes.prefetch(4));
    }
}
