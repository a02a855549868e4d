//! The word layout of a neighbour list, and how lock-free readers get a consistent copy of it.
//!
//! A list is `words(cap)` atomic words: a header, then the slots. The header holds the count
//! (low [`COUNT_BITS`] bits) and a version (the rest). Slots are node numbers of
//! [`ListCodec::slot_bytes`] bytes each: 4 (one per word), or 3 when every node number of the
//! index fits in 24 bits, packed four to three words. That saves a quarter of the links' memory
//! (32 bytes per node at `M0 = 32`), but a 3-byte slot may straddle two words, so a reader
//! racing a writer could combine half of an old neighbour with half of a new one: a number that
//! was never in the list, possibly of a slot being reused, whose vector is being rewritten.
//!
//! So readers validate: the list is a sequence lock. A writer (always holding the node's lock,
//! so there is one at a time) makes the version odd, stores the slots, then stores the new count
//! with the version even again (release). A reader loads the header (acquire), copies the slots,
//! and loads the header again behind an acquire fence; if it changed, or was odd, a writer was
//! in the middle and the copy is retried. Every slot is read and written as an atomic word, so a
//! torn copy is merely discarded, never undefined. A reader's copy is therefore always a list that
//! was whole at one instant, for both slot widths (so one protocol serves both).
//!
//! The version has 20 bits: a copy is wrongly accepted only if a reader stalls inside one copy
//! while the same list is rewritten exactly a multiple of 2^19 times. With 4-byte slots even
//! that copy holds only real neighbours. `tests/loom_protocols.rs` compiles this file on its own
//! and model-checks it.

#[cfg(all(loom, test))]
use loom::sync::atomic::{fence, AtomicU32, Ordering};
#[cfg(not(all(loom, test)))]
use std::sync::atomic::{fence, AtomicU32, Ordering};

#[cfg(all(loom, test))]
use loom::thread::yield_now;
#[cfg(not(all(loom, test)))]
use std::thread::yield_now;

/// Bits of the header that hold the count: enough for `4 * MAX_M` slots.
pub(crate) const COUNT_BITS: u32 = 12;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;
/// One step of the version in the header; the version is odd while a writer is busy.
const VERSION_ONE: u32 = 1 << COUNT_BITS;
/// The largest node number a 3-byte slot holds, plus one.
pub(crate) const NARROW_NODES: u64 = 1 << 24;
/// The largest `max_elements` that gets 3-byte slots: half the 24-bit node space.
pub(crate) const NARROW_MAX_ELEMENTS: u64 = NARROW_NODES / 2;
const NARROW_MASK: u32 = (1 << 24) - 1;

/// How a store lays out its lists: 3 or 4 bytes per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListCodec {
    narrow: bool,
}

impl ListCodec {
    /// 4-byte slots: any `u32` node number.
    pub(crate) const WIDE: Self = Self { narrow: false };
    /// 3-byte slots: node numbers below [`NARROW_NODES`].
    pub(crate) const NARROW: Self = Self { narrow: true };

    /// The width for an index with this `max_elements`: 3-byte slots when it is at most
    /// [`NARROW_MAX_ELEMENTS`], leaving node numbers twice the live vectors for tombstones
    /// awaiting reuse and updates in flight.
    pub(crate) fn for_max_elements(max_elements: Option<usize>) -> Self {
        match max_elements {
            Some(n) if n as u64 <= NARROW_MAX_ELEMENTS => Self::NARROW,
            _ => Self::WIDE,
        }
    }

    /// Bytes per slot: 3 or 4.
    pub(crate) fn slot_bytes(self) -> usize {
        if self.narrow {
            3
        } else {
            4
        }
    }

    /// Words of a list with room for `cap` slots, header included.
    pub(crate) fn words(self, cap: usize) -> usize {
        1 + (cap * self.slot_bytes()).div_ceil(4)
    }

    /// The most slots a list of `len` words can hold (at least its `cap`, by rounding).
    #[inline(always)]
    fn room(self, len: usize) -> usize {
        let data = len.saturating_sub(1);
        if self.narrow {
            data * 4 / 3
        } else {
            data
        }
    }

    /// The count in the header, without validation: exact when the caller holds the node's
    /// lock, a hint otherwise.
    #[inline(always)]
    pub(crate) fn count(self, list: &[AtomicU32]) -> usize {
        list.first().map_or(0, |h| (h.load(Ordering::Acquire) & COUNT_MASK) as usize)
    }

    /// A consistent copy of the list into `out` (cleared first), taken without the node's lock.
    #[inline(always)]
    pub(crate) fn read(self, list: &[AtomicU32], out: &mut Vec<u32>) {
        let Some(head) = list.first() else {
            out.clear();
            return;
        };
        if !self.try_read(list, head, out) {
            self.read_slow(list, head, out);
        }
    }

    /// The slots of the list for which `keep` returns `true`, into `out` (cleared first): the
    /// graph walk's read, `keep` marking nodes visited. Under 3-byte slots the copy is validated
    /// first, as in [`read`](Self::read) (`keep` must not see a torn number). Under 4-byte slots
    /// every slot is one atomic word that only ever holds a real node number, so the walk takes
    /// the slots as they come, in one pass: a list being rewritten may then yield some old and
    /// some new neighbours, which a greedy search does not mind.
    #[inline(always)]
    pub(crate) fn read_filtered(
        self,
        list: &[AtomicU32],
        out: &mut Vec<u32>,
        mut keep: impl FnMut(u32) -> bool,
    ) {
        if self.narrow {
            self.read(list, out);
            // In place, and without a branch on `keep`, as below.
            let mut len = 0;
            for i in 0..out.len() {
                let v = out[i];
                out[len] = v;
                len += usize::from(keep(v));
            }
            out.truncate(len);
            return;
        }
        out.clear();
        let Some(head) = list.first() else { return };
        let cnt = ((head.load(Ordering::Acquire) & COUNT_MASK) as usize).min(self.room(list.len()));
        out.reserve(cnt);
        let spare = &mut out.spare_capacity_mut()[..cnt];
        let mut len = 0;
        for (slot, i) in list[1..=cnt].iter().zip(0..cnt) {
            // Acquire: a slot naming a node linked since pairs with the release fence its writer
            // issued before storing slots, ordering the node's data before our reads of it.
            let v = slot.load(Ordering::Acquire);
            // Written whether kept or not, and kept by counting: `keep` (a visited test) goes
            // either way about as often, and a branch on it mispredicts that often.
            spare[len.min(i)].write(v);
            len += usize::from(keep(v));
        }
        // SAFETY: `len <= cnt` and every one of `spare[..len]` was written above: position `p`
        // is written while `len == p`, as each step writes `spare[len]` before `len` grows.
        unsafe { out.set_len(len) };
    }

    /// One copy attempt: `false` if a writer was busy before or during it.
    #[inline(always)]
    fn try_read(self, list: &[AtomicU32], head: &AtomicU32, out: &mut Vec<u32>) -> bool {
        let h = head.load(Ordering::Acquire);
        if h & VERSION_ONE != 0 {
            return false;
        }
        self.decode(list, h, out);
        // Orders the slot loads above before the header load below: had any of them seen a
        // store of a writer that started after `h`, this load sees that writer's odd version
        // or later (its release fence pairs with this acquire fence).
        fence(Ordering::Acquire);
        head.load(Ordering::Relaxed) == h
    }

    /// Retries until a copy is whole. Out of line: the walk's loop stays small, and a writer
    /// is rarely mid-list.
    #[cold]
    #[inline(never)]
    fn read_slow(self, list: &[AtomicU32], head: &AtomicU32, out: &mut Vec<u32>) {
        let mut spins = 0u32;
        loop {
            // A writer holds the node's lock and is mid-list: its few stores finish soon,
            // unless it was preempted.
            spins += 1;
            if spins < 64 && !cfg!(all(loom, test)) {
                std::hint::spin_loop();
            } else {
                yield_now();
            }
            if self.try_read(list, head, out) {
                return;
            }
        }
    }

    /// The slots named by header `h`, as they are now (the caller validates).
    #[inline(always)]
    fn decode(self, list: &[AtomicU32], h: u32, out: &mut Vec<u32>) {
        out.clear();
        let cnt = ((h & COUNT_MASK) as usize).min(self.room(list.len()));
        let data = &list[1..];
        let w = |i: usize| data[i].load(Ordering::Relaxed);
        if !self.narrow {
            out.extend(data[..cnt].iter().map(|s| s.load(Ordering::Relaxed)));
            return;
        }
        // Four slots in three words, little end first: `s0 | s1 << 24`, `s1 >> 8 | s2 << 16`,
        // `s2 >> 16 | s3 << 8`. `cnt <= room` keeps every word below `data.len()`; slicing the
        // whole groups first lets the loop run without bounds checks.
        out.reserve(cnt);
        let full = cnt / 4 * 3;
        for c in data[..full].chunks_exact(3) {
            let (a, b, c) =
                (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed), c[2].load(Ordering::Relaxed));
            out.extend([
                a & NARROW_MASK,
                (a >> 24) | ((b & 0xFFFF) << 8),
                (b >> 16) | ((c & 0xFF) << 16),
                c >> 8,
            ]);
        }
        let rem = cnt % 4;
        if rem > 0 {
            let a = w(full);
            out.push(a & NARROW_MASK);
            if rem > 1 {
                let b = w(full + 1);
                out.push((a >> 24) | ((b & 0xFFFF) << 8));
                if rem > 2 {
                    out.push((b >> 16) | ((w(full + 2) & 0xFF) << 16));
                }
            }
        }
    }

    /// Replaces the list with `nbrs` (at most its room; the rest is dropped). The caller holds
    /// the node's lock, so no other writer runs; values must fit the slot width.
    pub(crate) fn write(self, list: &[AtomicU32], nbrs: &[u32]) {
        let Some(head) = list.first() else { return };
        let nbrs = &nbrs[..nbrs.len().min(self.room(list.len()))];
        let h = head.load(Ordering::Relaxed);
        let version = h & !COUNT_MASK;
        // Release, though the version is odd: the walk's unchecked read of 4-byte lists may take
        // its count from this header, and must then see the slots of the write before (a plain
        // store would not carry them; loom's `the_walks_one_pass_read_sees_a_new_neighbours_data`
        // fails with `Relaxed` here).
        head.store(version.wrapping_add(VERSION_ONE) | (h & COUNT_MASK), Ordering::Release);
        // Orders the odd version before the slot stores: a reader that sees any of them sees
        // the odd version (or later) when it re-reads the header.
        fence(Ordering::Release);
        let data = &list[1..];
        if self.narrow {
            debug_assert!(nbrs.iter().all(|&v| v <= NARROW_MASK), "node number beyond 24 bits");
            for (g, four) in nbrs.chunks(4).enumerate() {
                let s = |i: usize| four.get(i).map_or(0, |&v| v & NARROW_MASK);
                let words = [s(0) | (s(1) << 24), (s(1) >> 8) | (s(2) << 16), (s(2) >> 16) | (s(3) << 8)];
                // A partial last group writes only the words its slots reach.
                let used = (four.len() * 3).div_ceil(4);
                for (j, &word) in words.iter().enumerate().take(used) {
                    data[3 * g + j].store(word, Ordering::Relaxed);
                }
            }
        } else {
            for (slot, &v) in data.iter().zip(nbrs) {
                slot.store(v, Ordering::Relaxed);
            }
        }
        head.store(version.wrapping_add(2 * VERSION_ONE) | nbrs.len() as u32, Ordering::Release);
    }

    /// Appends `v` if the list has room for `cap` slots; the caller holds the node's lock.
    pub(crate) fn push(self, list: &[AtomicU32], cap: usize, v: u32) -> bool {
        let Some(head) = list.first() else { return false };
        let h = head.load(Ordering::Relaxed);
        let cnt = (h & COUNT_MASK) as usize;
        if cnt >= cap.min(self.room(list.len())) {
            return false;
        }
        let version = h & !COUNT_MASK;
        // As in `write`: release, and the fence before the slot.
        head.store(version.wrapping_add(VERSION_ONE) | cnt as u32, Ordering::Release);
        fence(Ordering::Release);
        let data = &list[1..];
        if self.narrow {
            debug_assert!(v <= NARROW_MASK, "node number beyond 24 bits");
            // The slot's three bytes, in one word or across two; the bytes around it belong
            // to the neighbouring slots and are kept.
            let (w, shift) = (cnt * 3 / 4, (cnt * 3 % 4) as u32 * 8);
            let two = data.get(w + 1).filter(|_| shift > 8);
            let old = data[w].load(Ordering::Relaxed) as u64
                | two.map_or(0, |x| (x.load(Ordering::Relaxed) as u64) << 32);
            let mask = (NARROW_MASK as u64) << shift;
            let new = (old & !mask) | (((v & NARROW_MASK) as u64) << shift);
            data[w].store(new as u32, Ordering::Relaxed);
            if let Some(x) = two {
                x.store((new >> 32) as u32, Ordering::Relaxed);
            }
        } else {
            data[cnt].store(v, Ordering::Relaxed);
        }
        head.store(version.wrapping_add(2 * VERSION_ONE) | (cnt as u32 + 1), Ordering::Release);
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn list(codec: ListCodec, cap: usize) -> Vec<AtomicU32> {
        (0..codec.words(cap)).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn every_length_and_value_round_trips_in_both_widths() {
        let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11u64);
        println!("seed {seed} (replay with SEED={seed})");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for codec in [ListCodec::NARROW, ListCodec::WIDE] {
            let top = if codec == ListCodec::NARROW { NARROW_NODES as u32 } else { u32::MAX };
            for cap in [1usize, 2, 3, 4, 5, 7, 16, 31, 32, 33, 1024] {
                let l = list(codec, cap);
                let mut out = Vec::new();
                for len in (0..=cap).rev().chain(0..=cap.min(9)) {
                    // Extremes too: all-ones bits catch a mask or shift that leaks into a
                    // neighbouring slot.
                    let want: Vec<u32> = (0..len)
                        .map(|i| match i % 3 {
                            0 => top - 1,
                            1 => rng.random_range(0..top),
                            _ => 0,
                        })
                        .collect();
                    codec.write(&l, &want);
                    codec.read(&l, &mut out);
                    assert_eq!(out, want, "seed {seed}: {codec:?} cap {cap} len {len}");
                    assert_eq!(codec.count(&l), len);
                    // An append rewrites only its own bytes of the words it shares.
                    let v = rng.random_range(0..top);
                    assert_eq!(codec.push(&l, cap, v), len < cap);
                    codec.read(&l, &mut out);
                    let mut more = want.clone();
                    if len < cap {
                        more.push(v);
                    }
                    assert_eq!(out, more, "seed {seed}: {codec:?} cap {cap} push after {len}");
                }
            }
        }
    }

    #[test]
    fn narrow_lists_take_three_quarters_of_the_words() {
        assert_eq!(ListCodec::WIDE.words(32), 33);
        assert_eq!(ListCodec::NARROW.words(32), 25);
        assert_eq!(ListCodec::NARROW.words(16), 13);
        assert_eq!(ListCodec::NARROW.words(33), 26);
    }

    #[test]
    fn push_respects_the_cap_and_keeps_the_order() {
        for codec in [ListCodec::NARROW, ListCodec::WIDE] {
            let l = list(codec, 5);
            for v in 0..5u32 {
                assert!(codec.push(&l, 5, 0xABCDE0 + v));
            }
            assert!(!codec.push(&l, 5, 1), "{codec:?}: a sixth slot");
            let mut out = Vec::new();
            codec.read(&l, &mut out);
            assert_eq!(out, (0..5).map(|v| 0xABCDE0 + v).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_version_moves_on_every_write_and_never_touches_the_count() {
        let codec = ListCodec::NARROW;
        let l = list(codec, 4);
        let mut last = l[0].load(Ordering::Relaxed);
        for i in 0..3000u32 {
            let n = (i % 5) as usize;
            codec.write(&l, &vec![i; n.min(4)]);
            let h = l[0].load(Ordering::Relaxed);
            assert_eq!((h & COUNT_MASK) as usize, n.min(4));
            assert_eq!(h & VERSION_ONE, 0, "even after a write");
            assert_ne!(h & !COUNT_MASK, last & !COUNT_MASK);
            last = h;
        }
    }

    /// Readers on other threads racing one writer that alternates two lists whose slots
    /// straddle words: every copy must be one of the two lists, never a mix.
    #[test]
    fn concurrent_readers_only_ever_copy_whole_lists() {
        let codec = ListCodec::NARROW;
        let l = list(codec, 8);
        let a: Vec<u32> = (0..8).map(|i| 0x111111 * (i % 15 + 1)).collect();
        let b: Vec<u32> = vec![0xFFFFFF; 5];
        codec.write(&l, &a);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        codec.read(&l, &mut out);
                        assert!(out == a || out == b, "torn copy {out:x?}");
                    }
                });
            }
            for i in 0..200_000 {
                codec.write(&l, if i % 2 == 0 { &b } else { &a });
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    /// The walk's read keeps exactly the slots `keep` accepts, in list order, with `keep` seeing
    /// every slot once in order (it marks nodes visited, so a node listed twice is kept once),
    /// for both slot widths and every count up to the capacity.
    #[test]
    fn filtered_read_keeps_what_keep_accepts_in_order() {
        const CAP: usize = 40;
        for codec in [ListCodec::WIDE, ListCodec::NARROW] {
            for len in 0..=CAP {
                // Repeats (i * 7 % 13) and large numbers (a 3-byte slot's top byte in use).
                let nbrs: Vec<u32> = (0..len as u32).map(|i| (i * 7 % 13) * 0x0004_1001 + (i % 3)).collect();
                let list: Vec<AtomicU32> = (0..codec.words(CAP)).map(|_| AtomicU32::new(0)).collect();
                codec.write(&list, &nbrs);
                for pre_visited in [0u32, 3] {
                    let mut seen: Vec<u32> = nbrs.iter().copied().filter(|v| v % 5 < pre_visited).collect();
                    let mut calls = Vec::new();
                    let mut out = vec![99; 7];
                    codec.read_filtered(&list, &mut out, |v| {
                        calls.push(v);
                        let fresh = !seen.contains(&v);
                        seen.push(v);
                        fresh
                    });
                    let mut want_seen: Vec<u32> =
                        nbrs.iter().copied().filter(|v| v % 5 < pre_visited).collect();
                    let want: Vec<u32> = nbrs
                        .iter()
                        .copied()
                        .filter(|&v| {
                            let fresh = !want_seen.contains(&v);
                            want_seen.push(v);
                            fresh
                        })
                        .collect();
                    assert_eq!(calls, nbrs, "{codec:?}, {len} slots: keep sees each slot once, in order");
                    assert_eq!(out, want, "{codec:?}, {len} slots, pre-visited {pre_visited}");
                }
            }
        }
    }
}
