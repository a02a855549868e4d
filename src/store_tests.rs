//! The lock-and-in-degree word: the count saturates below the lock bit, and neither half of the
//! word disturbs the other when threads lock and count the same node at once.

use super::*;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A store of `n` initialised level-0 nodes with 4-byte vectors.
fn store(n: u32) -> NodeStore {
    store_with(n, ListCodec::WIDE)
}

fn store_with(n: u32, codec: ListCodec) -> NodeStore {
    let s = NodeStore::new(4, 0, 4, 8, codec);
    let first = s.alloc(n).expect("memory for a few nodes");
    for i in first..first + n {
        // SAFETY: `i` was just handed out to this thread and is never published.
        assert!(unsafe { s.init_node(i, u64::from(i), 0, &[0; 4], &[]) });
    }
    s
}

fn raw(s: &NodeStore, n: u32) -> u16 {
    s.word0(n).expect("allocated").load(Ordering::SeqCst)
}

#[test]
fn in_degree_sticks_at_its_ceiling_without_touching_the_lock_bit() {
    let s = store(1);
    for _ in 0..INDEG_STUCK + 3 {
        s.inc_indeg(0, 0);
    }
    assert_eq!(s.indeg(0), INDEG_STUCK);
    assert_eq!(raw(&s, 0) & LOCKED, 0, "the count overflowed into the lock bit");
    // Stuck means "at least": never lowered, never the last link, never reusable.
    for _ in 0..10 {
        s.dec_indeg(0, 0);
    }
    assert_eq!(s.indeg(0), INDEG_STUCK);
    assert_eq!(s.try_release0(0), Release::Done);
    assert_eq!(s.indeg(0), INDEG_STUCK);
    assert_eq!(s.indeg_total_seqcst(0), INDEG_STUCK);
    let g = s.lock(0);
    assert_eq!(raw(&s, 0), LOCKED | INDEG_MASK);
    drop(g);
    assert_eq!(raw(&s, 0), INDEG_MASK);
}

#[test]
fn the_last_in_link_is_kept_and_locking_keeps_the_count() {
    let s = store(1);
    s.inc_indeg(0, 0);
    s.inc_indeg(0, 0);
    let g = s.lock(0);
    assert_eq!(s.try_release0(0), Release::Done);
    assert_eq!(s.try_release0(0), Release::Last);
    assert_eq!(s.indeg(0), 1);
    drop(g);
    assert_eq!(s.indeg(0), 1, "unlocking changed the count");
    assert_eq!(raw(&s, 0) & LOCKED, 0);
}

/// Every thread locks node 0 and, inside and outside the lock, counts links to node 0 up and
/// down: the lock must exclude (a plain read-then-write counter under it loses no update) and
/// the count must come out exact, so neither the lock's RMWs nor the counter's clobber the
/// other half of the word.
#[test]
fn threads_locking_and_counting_the_same_node_lose_nothing() {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 2_000;
    let s = Arc::new(store(2));
    let guarded = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, guarded) = (s.clone(), guarded.clone());
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    s.inc_indeg(0, 0);
                    {
                        let _g = s.lock(0);
                        // Not an RMW: two holders at once would lose an increment.
                        let v = guarded.load(Ordering::Relaxed);
                        if (r + t) % 7 == 0 {
                            std::hint::spin_loop();
                        }
                        guarded.store(v + 1, Ordering::Relaxed);
                        s.inc_indeg(0, 0);
                    }
                    if r % 2 == 0 {
                        s.dec_indeg(0, 0);
                    }
                    // Node 1 is counted but never locked: its word sees only count RMWs.
                    s.inc_indeg(1, 0);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(guarded.load(Ordering::SeqCst), THREADS * ROUNDS, "the lock let two holders in");
    let want = THREADS * (2 * ROUNDS - ROUNDS / 2);
    assert!(want < u64::from(INDEG_STUCK), "the test must stay below the ceiling");
    assert_eq!(u64::from(s.indeg(0)), want);
    assert_eq!(u64::from(s.indeg(1)), THREADS * ROUNDS);
    assert_eq!(raw(&s, 0) & LOCKED, 0, "the lock was left taken");
}

#[test]
fn narrow_stores_hand_out_only_24_bit_node_numbers() {
    let s = store_with(3, ListCodec::NARROW);
    assert_eq!(s.node_limit(), 1 << 24);
    assert_eq!(s.alloc(1 << 24), None, "a node number that 3 bytes cannot name");
    assert_eq!(s.allocated(), 3, "a refused allocation hands out nothing");
    assert_eq!(store(1).node_limit(), u32::MAX as u64);
}

#[test]
fn lists_of_both_widths_keep_links_and_in_degrees_exact() {
    for codec in [ListCodec::NARROW, ListCodec::WIDE] {
        let s = store_with(12, codec);
        let _g = s.lock(0);
        s.set_links(0, 0, &[1, 2, 3, 11]);
        assert!(s.try_push_link(0, 0, 5));
        let mut got = Vec::new();
        s.read_links(0, 0, &mut got);
        assert_eq!(got, [1, 2, 3, 11, 5], "{codec:?}");
        s.set_links(0, 0, &[3, 4]);
        s.read_links(0, 0, &mut got);
        assert_eq!(got, [3, 4], "{codec:?}");
        let indeg: Vec<u32> = (0..12).map(|n| s.indeg(n)).collect();
        assert_eq!(indeg, [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0], "{codec:?}");
        for v in 5..11 {
            assert!(s.try_push_link(0, 0, v), "{codec:?}: room for 8");
        }
        assert!(!s.try_push_link(0, 0, 11), "{codec:?}: a ninth link past M0 = 8");
        assert_eq!(s.link_count(0, 0), 8);
    }
}
