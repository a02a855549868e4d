//! Loom model checks of the concurrency protocols the index's correctness rests on.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --test loom_protocols` (`.ci/run` does, with
//! `LOOM_MAX_PREEMPTIONS=3` and its own target directory). Without `--cfg loom` this file is empty.
//!
//! * **Id protocol** (reserve / publish / remove_published / replace_published / release): the
//!   real `src/idmap.rs` is compiled into this test, with loom's lock in place of parking_lot's
//!   (see the `cfg(all(loom, test))` shim there), so loom explores the real map code; the node
//!   store's id row, which the map reads the ids of its nodes from, is mirrored by `Keys`. The callers
//!   (`Index::insert`/`insert_prepared`, `Index::delete`, `Index::update`) and the node flags of
//!   `NodeStore` cannot run under loom (rayon, the epoch registry, arenas), so they are mirrored
//!   below with the same orderings; each mirror names the function it copies. **Changing one of
//!   those functions means changing its mirror here.**
//! * **Neighbour lists and in-degrees**: the real list code (`src/links.rs`: the 3-byte layout,
//!   its version-checked copy, and the walk's unchecked one-pass read of 4-byte lists) is
//!   compiled into this test; `lock`, `NodeGuard::drop`,
//!   `try_release0` and `inc_indeg` are mirrored in miniature, same orderings, with a node's lock
//!   and level-0 in-degree sharing one word as in the store.
//! * **Walk codes** (`WalkCodes::record_existing`, `record_new`, `write`, `prefetch`, `dist` in
//!   `src/walk_codes.rs`): one node's state and code row mirrored in miniature, same orderings,
//!   the row in loom's `UnsafeCell` so loom reports any unordered access to the bytes. **Changing
//!   one of those functions means changing its mirror here.**
//!
//! Each protocol also has a `#[should_panic]` model of a broken variant (the old id-map remove, a
//! node id written after its publication, a list copy without its version check, a split check-then-decrement,
//! an unlock that stores over the in-degree, a relaxed code publication, a reuse that leaves a code being written alone), so we know the
//! checks can fail.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use std::collections::HashMap;

// The real id map. Items the model does not call (entries, heap_bytes, ...) are dead here.
#[allow(dead_code)]
#[path = "../src/idmap.rs"]
mod idmap;

use idmap::{IdMap, NodeIds};

/// Runs `f` under loom with a preemption bound (`LOOM_MAX_PREEMPTIONS`, default 3): enough for
/// the three-thread races below and keeps the whole file well under a minute.
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_branches(f, loom::model::Builder::new().max_branches);
}

/// [`model`] with room for more branches per execution: a reader that retries while a writer is
/// mid-list takes a few dozen per retry.
fn model_branches(f: impl Fn() + Sync + Send + 'static, max_branches: usize) {
    let mut b = loom::model::Builder::new();
    b.max_branches = max_branches;
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

// ----- id protocol -------------------------------------------------------------------------------

const ID: u64 = 7;
/// Node flags, as in `store.rs`.
const READY: u8 = 0x40;
const DELETED: u8 = 0x80;
const NODES: usize = 3;

/// Mirrors `NodeStore`'s id row, which the map reads the ids of the nodes it holds from:
/// written with `Relaxed` by `init_node` before the node is published, so only the shard lock
/// orders that write before the map's reads. Loom checks that it does: a read it could reorder
/// would see the zero the row starts with and lose the id.
struct Keys([AtomicU64; NODES]);

impl Keys {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Mirrors `NodeStore::init_node` writing the node's id.
    fn init(&self, n: u32, id: u64) {
        self.0[n as usize].store(id, Ordering::Relaxed);
    }
}

impl NodeIds for Keys {
    /// Mirrors `NodeStore::id`.
    fn node_id(&self, n: u32) -> u64 {
        self.0.get(n as usize).map_or(0, |k| k.load(Ordering::Relaxed))
    }
}

/// The id-map operations the index's mutations use, so the same drivers and checker run against
/// the real map and against a broken one. `keys` is the store the real map reads ids from.
trait IdOps: Send + Sync + 'static {
    fn reserve(&self, keys: &Keys, id: u64) -> bool;
    fn release(&self, id: u64);
    fn publish(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce());
    fn remove_published(&self, keys: &Keys, id: u64, f: impl FnOnce(u32)) -> Option<u32>;
    fn replace_published(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce(u32)) -> Option<u32>;
    fn get(&self, keys: &Keys, id: u64) -> Option<u32>;
    fn is_taken(&self, keys: &Keys, id: u64) -> bool;
}

impl IdOps for IdMap {
    fn reserve(&self, keys: &Keys, id: u64) -> bool {
        IdMap::reserve(self, keys, id)
    }
    fn release(&self, id: u64) {
        IdMap::release(self, id)
    }
    fn publish(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce()) {
        IdMap::publish(self, keys, id, node, f)
    }
    fn remove_published(&self, keys: &Keys, id: u64, f: impl FnOnce(u32)) -> Option<u32> {
        IdMap::remove_published(self, keys, id, f)
    }
    fn replace_published(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce(u32)) -> Option<u32> {
        IdMap::replace_published(self, keys, id, node, f)
    }
    fn get(&self, keys: &Keys, id: u64) -> Option<u32> {
        IdMap::get(self, keys, id)
    }
    fn is_taken(&self, keys: &Keys, id: u64) -> bool {
        IdMap::is_taken(self, keys, id)
    }
}

/// The map before issue 9: `remove` dropped whatever the id held, a reservation included, and
/// `set` (publication) overwrote whatever it found. Closures still run under the lock, so the
/// only defect modelled is the dropped reservation.
struct OldIdMap(loom::sync::Mutex<HashMap<u64, u32>>);

/// The old map's value for a reserved id.
const RESERVED: u32 = u32::MAX;

impl IdOps for OldIdMap {
    fn reserve(&self, _: &Keys, id: u64) -> bool {
        let mut s = self.0.lock().unwrap();
        if s.contains_key(&id) {
            return false;
        }
        s.insert(id, RESERVED);
        true
    }
    fn release(&self, id: u64) {
        let mut s = self.0.lock().unwrap();
        if s.get(&id) == Some(&RESERVED) {
            s.remove(&id);
        }
    }
    fn publish(&self, _: &Keys, id: u64, node: u32, f: impl FnOnce()) {
        let mut s = self.0.lock().unwrap();
        s.insert(id, node);
        f();
    }
    fn remove_published(&self, _: &Keys, id: u64, f: impl FnOnce(u32)) -> Option<u32> {
        let mut s = self.0.lock().unwrap();
        match s.remove(&id) {
            Some(n) if n != RESERVED => {
                f(n);
                Some(n)
            }
            _ => None,
        }
    }
    fn replace_published(&self, _: &Keys, id: u64, node: u32, f: impl FnOnce(u32)) -> Option<u32> {
        let mut s = self.0.lock().unwrap();
        match s.get_mut(&id) {
            Some(n) if *n != RESERVED => {
                let old = std::mem::replace(n, node);
                f(old);
                Some(old)
            }
            _ => None,
        }
    }
    fn get(&self, _: &Keys, id: u64) -> Option<u32> {
        self.0.lock().unwrap().get(&id).copied().filter(|&n| n != RESERVED)
    }
    fn is_taken(&self, _: &Keys, id: u64) -> bool {
        self.0.lock().unwrap().contains_key(&id)
    }
}

/// The real map, with the node's stored id written only after the publication, outside the
/// shard lock (the id `World::insert` wrote is first taken back): a later reservation of the id
/// may then read the node's id before it is written, miss the published id and publish it twice.
struct LateKeys(IdMap);

/// `keys`, except that `node` already reads as `id` (so the map's own check of the published
/// node's id passes, and only the missed publication can fail the model).
struct Except<'a> {
    keys: &'a Keys,
    node: u32,
    id: u64,
}

impl NodeIds for Except<'_> {
    fn node_id(&self, n: u32) -> u64 {
        if n == self.node {
            self.id
        } else {
            self.keys.node_id(n)
        }
    }
}

impl IdOps for LateKeys {
    fn reserve(&self, keys: &Keys, id: u64) -> bool {
        self.0.reserve(keys, id)
    }
    fn release(&self, id: u64) {
        self.0.release(id)
    }
    fn publish(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce()) {
        keys.init(node, 0);
        self.0.publish(&Except { keys, node, id }, id, node, f);
        keys.init(node, id);
    }
    fn remove_published(&self, keys: &Keys, id: u64, f: impl FnOnce(u32)) -> Option<u32> {
        self.0.remove_published(keys, id, f)
    }
    fn replace_published(&self, keys: &Keys, id: u64, node: u32, f: impl FnOnce(u32)) -> Option<u32> {
        self.0.replace_published(keys, id, node, f)
    }
    fn get(&self, keys: &Keys, id: u64) -> Option<u32> {
        self.0.get(keys, id)
    }
    fn is_taken(&self, keys: &Keys, id: u64) -> bool {
        self.0.is_taken(keys, id)
    }
}

/// One change of the id's state, as seen by the closure that ran it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Publish(u32),
    Delete(u32),
    Replace { old: u32, new: u32 },
}

/// An index in miniature: the id map, node flags and the live count.
struct World<M> {
    ids: M,
    /// The nodes' stored ids, which the real map reads.
    keys: Keys,
    /// Mirrors `NodeStore::meta` (flags only; levels play no part here).
    meta: [AtomicU8; NODES],
    /// Mirrors `Index::live`.
    live: AtomicUsize,
    /// Ghost log: appended inside the closures, so (when they run under the id's lock, as they
    /// must) it is the order in which the id's state changed. Not a loom object: it is only
    /// touched inside those critical sections and adds no synchronisation of its own.
    log: std::sync::Mutex<Vec<Event>>,
}

impl<M: IdOps> World<M> {
    fn new(ids: M) -> Self {
        Self {
            ids,
            keys: Keys::new(),
            meta: std::array::from_fn(|_| AtomicU8::new(0)),
            live: AtomicUsize::new(0),
            log: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts with `ID` published as node 0 (as if inserted before the race).
    fn with_published(ids: M) -> Self {
        let w = Self::new(ids);
        w.insert(0).unwrap();
        w.log.lock().unwrap().clear();
        w
    }

    /// Mirrors `NodeStore::mark_ready`.
    fn mark_ready(&self, n: u32) {
        self.meta[n as usize].fetch_or(READY, Ordering::Release);
    }

    /// Mirrors `NodeStore::mark_deleted`.
    fn mark_deleted(&self, n: u32) {
        self.meta[n as usize].fetch_or(DELETED, Ordering::Release);
    }

    /// Mirrors `NodeStore::is_live`.
    fn is_live(&self, n: u32) -> bool {
        self.meta[n as usize].load(Ordering::Acquire) & (READY | DELETED) == READY
    }

    fn note(&self, e: Event) {
        self.log.lock().unwrap().push(e);
    }

    /// Mirrors `Index::insert` + `insert_prepared` with `node` already allocated and linked.
    fn insert(&self, node: u32) -> Result<(), &'static str> {
        if !self.ids.reserve(&self.keys, ID) {
            return Err("duplicate");
        }
        self.keys.init(node, ID);
        self.ids.publish(&self.keys, ID, node, || {
            self.mark_ready(node);
            self.live.fetch_add(1, Ordering::AcqRel);
            self.note(Event::Publish(node));
        });
        Ok(())
    }

    /// Mirrors `Index::insert` failing after the reservation (capacity, memory): `release`.
    fn failed_insert(&self) {
        if self.ids.reserve(&self.keys, ID) {
            self.ids.release(ID);
        }
    }

    /// Mirrors `Index::delete`.
    fn delete(&self) -> Option<u32> {
        self.ids.remove_published(&self.keys, ID, |n| {
            self.mark_deleted(n);
            self.live.fetch_sub(1, Ordering::AcqRel);
            self.note(Event::Delete(n));
        })
    }

    /// Mirrors `Index::update` with `node` as the freshly linked version.
    fn update(&self, node: u32) -> Result<u32, &'static str> {
        if self.ids.get(&self.keys, ID).is_none() {
            return Err("not found before linking");
        }
        self.keys.init(node, ID);
        let replaced = self.ids.replace_published(&self.keys, ID, node, |old| {
            self.mark_ready(node);
            self.mark_deleted(old);
            self.note(Event::Replace { old, new: node });
        });
        match replaced {
            Some(old) => Ok(old),
            None => {
                self.mark_ready(node);
                self.mark_deleted(node);
                Err("deleted while linking")
            }
        }
    }

    /// Checks the state once every thread is done, and the results the threads reported.
    fn check(&self, initial: Option<u32>, outcomes: &[Outcome]) {
        let log = self.log.lock().unwrap().clone();
        // Replay the changes in their order: each must be legal in the state it met.
        let mut mapped = initial;
        for e in &log {
            mapped = match (*e, mapped) {
                (Event::Publish(n), None) => Some(n),
                (Event::Delete(n), Some(m)) if n == m => None,
                (Event::Replace { old, new }, Some(m)) if old == m => Some(new),
                (e, m) => panic!("{e:?} applied to {m:?}; log {log:?}"),
            };
        }
        assert_eq!(self.ids.get(&self.keys, ID), mapped, "map disagrees with its own change log {log:?}");
        // Every insert has finished: nothing is left reserved.
        assert_eq!(self.ids.is_taken(&self.keys, ID), mapped.is_some(), "leaked reservation; log {log:?}");
        assert_eq!(self.live.load(Ordering::Acquire), mapped.is_some() as usize, "live count; log {log:?}");
        for n in 0..NODES as u32 {
            assert_eq!(self.is_live(n), mapped == Some(n), "node {n} live flag; log {log:?}");
        }
        for o in outcomes {
            match *o {
                Outcome::Inserted(n) => assert!(log.contains(&Event::Publish(n)), "insert of {n} unlogged"),
                Outcome::Deleted(n) => assert!(log.contains(&Event::Delete(n)), "delete of {n} unlogged"),
                Outcome::Updated { old, new } => {
                    assert!(log.contains(&Event::Replace { old, new }), "update {old}->{new} unlogged")
                }
                // An update that lost to a delete never resurrects the id: its node was never
                // mapped and is a tombstone.
                Outcome::UpdateLost(n) => {
                    assert!(log.iter().all(|e| !matches!(e, Event::Replace { new, .. } if *new == n)));
                    assert_eq!(
                        self.meta[n as usize].load(Ordering::Acquire) & (READY | DELETED),
                        READY | DELETED
                    );
                }
                Outcome::Nothing => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Inserted(u32),
    Deleted(u32),
    Updated { old: u32, new: u32 },
    UpdateLost(u32),
    Nothing,
}

#[derive(Clone, Copy)]
enum Op {
    Insert(u32),
    FailedInsert,
    Delete,
    Update(u32),
}

impl Op {
    fn run<M: IdOps>(self, w: &World<M>) -> Outcome {
        match self {
            Op::Insert(n) => w.insert(n).map_or(Outcome::Nothing, |()| Outcome::Inserted(n)),
            Op::FailedInsert => {
                w.failed_insert();
                Outcome::Nothing
            }
            Op::Delete => w.delete().map_or(Outcome::Nothing, Outcome::Deleted),
            Op::Update(new) => match w.update(new) {
                Ok(old) => Outcome::Updated { old, new },
                Err("deleted while linking") => Outcome::UpdateLost(new),
                Err(_) => Outcome::Nothing,
            },
        }
    }
}

/// Runs `ops` on threads of their own against a fresh world (empty, or with `ID` published as
/// node 0), then checks it.
fn race<M: IdOps>(map: fn() -> M, published: bool, ops: &'static [Op]) {
    model(move || {
        let w = Arc::new(if published { World::with_published(map()) } else { World::new(map()) });
        let handles: Vec<_> = ops
            .iter()
            .map(|&op| {
                let w = w.clone();
                thread::spawn(move || op.run(&w))
            })
            .collect();
        let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        w.check(published.then_some(0), &outcomes);
    });
}

fn old_map() -> OldIdMap {
    OldIdMap(loom::sync::Mutex::new(HashMap::new()))
}

fn late_keys() -> LateKeys {
    LateKeys(IdMap::new())
}

#[test]
fn insert_delete_update_on_absent_id() {
    race(IdMap::new, false, &[Op::Insert(1), Op::Delete, Op::Update(2)]);
}

#[test]
fn insert_delete_update_on_published_id() {
    race(IdMap::new, true, &[Op::Insert(1), Op::Delete, Op::Update(2)]);
}

#[test]
fn two_inserts_and_a_delete() {
    race(IdMap::new, false, &[Op::Insert(1), Op::Insert(2), Op::Delete]);
}

#[test]
fn two_updates_and_a_delete() {
    race(IdMap::new, true, &[Op::Update(1), Op::Update(2), Op::Delete]);
}

#[test]
fn failed_insert_with_insert_and_delete() {
    race(IdMap::new, false, &[Op::FailedInsert, Op::Insert(1), Op::Delete]);
}

/// The checker bites: with the pre-issue-9 remove, a delete drops the first insert's
/// reservation, the second insert reserves the id again and both publish.
#[test]
#[should_panic]
fn old_remove_dropping_a_reservation_is_caught() {
    race(old_map, false, &[Op::Insert(1), Op::Insert(2), Op::Delete]);
}

/// The checker bites on the stored ids the map reads: written after the publication instead of
/// before it (as `init_node` does), a second insert can miss the published id.
#[test]
#[should_panic]
fn stored_id_written_after_publication_is_caught() {
    race(late_keys, false, &[Op::Insert(1), Op::Insert(2)]);
}

// ----- neighbour lists and in-degrees --------------------------------------------------------------

/// Slot content never written by any writer (`alloc_zeroed` or a previous tenant in the real
/// store); a reader that sees it read an unpublished slot.
const GARBAGE: u32 = 0xDEAD;
const CAP: usize = 3;

// The real list layout and protocol. Items the model does not call are dead here.
#[allow(dead_code)]
#[path = "../src/links.rs"]
mod links;

/// 3-byte slots: they straddle words, so this is the layout a torn read could corrupt.
const CODEC: links::ListCodec = links::ListCodec::NARROW;

/// The lock bit and the in-degree mask of a node's lock-and-in-degree word, as in `store.rs`.
const LOCKED: u16 = 0x8000;
const INDEG_MASK: u16 = 0x7FFF;

/// A neighbour list in the real layout and code (`src/links.rs`, compiled into this test), plus
/// the node's lock-and-in-degree word, as in `NodeStore`.
struct List {
    words: Vec<AtomicU32>,
    word: AtomicU16,
}

/// How a guard unlocks: the real one clears the lock bit with an RMW; the broken variant stores
/// zero over the whole word.
type Unlock = fn(&AtomicU16);

fn unlock_rmw(w: &AtomicU16) {
    w.fetch_and(!LOCKED, Ordering::Release);
}

fn unlock_store(w: &AtomicU16) {
    w.store(0, Ordering::Release);
}

struct Guard<'a>(&'a AtomicU16, Unlock);

impl Drop for Guard<'_> {
    /// Mirrors `NodeGuard::drop`.
    fn drop(&mut self) {
        (self.1)(self.0);
    }
}

impl List {
    fn new(init: &[u32]) -> Self {
        Self::with_indeg(init, 0)
    }

    fn with_indeg(init: &[u32], indeg: u16) -> Self {
        let words = (0..CODEC.words(CAP)).map(|_| AtomicU32::new(0)).collect();
        let l = Self { words, word: AtomicU16::new(indeg) };
        // Slots past the count hold garbage, as a reused row does.
        CODEC.write(&l.words, &[GARBAGE; CAP]);
        CODEC.write(&l.words, init);
        l
    }

    /// Mirrors `NodeStore::lock` (loom needs the yield to schedule the holder).
    fn lock(&self) -> Guard<'_> {
        self.lock_with(unlock_rmw)
    }

    fn lock_with(&self, unlock: Unlock) -> Guard<'_> {
        while self.word.fetch_or(LOCKED, Ordering::Acquire) & LOCKED != 0 {
            while self.word.load(Ordering::Relaxed) & LOCKED != 0 {
                thread::yield_now();
            }
        }
        Guard(&self.word, unlock)
    }

    /// The in-degree half of the word.
    fn indeg(&self) -> u16 {
        self.word.load(Ordering::Acquire) & INDEG_MASK
    }

    /// `NodeStore::write_slots`: the real codec. The caller holds the lock.
    fn write_slots(&self, nbrs: &[u32]) {
        CODEC.write(&self.words, nbrs);
    }

    /// `NodeStore::try_push_link` (without the in-degree, counted by the caller): the real
    /// codec. The caller holds the lock.
    fn try_push_link(&self, v: u32) -> bool {
        CODEC.push(&self.words, CAP, v)
    }

    /// `NodeStore::read_links`: the real codec.
    fn read_links(&self) -> Vec<u32> {
        let mut out = Vec::new();
        CODEC.read(&self.words, &mut out);
        out
    }

    /// The broken variant: the count and the slots as they are, without the version check (an
    /// independent decoder of the 3-byte layout: little-endian bytes, three per slot).
    fn read_unchecked(&self) -> Vec<u32> {
        let cnt = (self.words[0].load(Ordering::Acquire) & 0xFFF) as usize;
        let bytes: Vec<u8> =
            self.words[1..].iter().flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes()).collect();
        (0..cnt.min(CAP))
            .map(|i| u32::from_le_bytes([bytes[3 * i], bytes[3 * i + 1], bytes[3 * i + 2], 0]))
            .collect()
    }
}

/// A writer rewrites the list and then appends to it, under the node's lock, while a lock-free
/// reader copies it. Slot values use all 24 bits, so a copy mixing words of two versions shows.
/// Every copy must be a list the node really held. (Writers of one list are serialised by its
/// lock, which `prune_race` covers; one writer keeps the reader's retries explorable.)
fn list_race(read: fn(&List) -> Vec<u32>) {
    const P: [u32; 2] = [0xA1A2A3, 0xB1B2B3];
    const R: [u32; 2] = [0x5C5D5E, 0x6E6F60];
    const T: u32 = 0xF7F8F9;
    model_branches(
        move || {
            let list = Arc::new(List::new(&P));
            let w = {
                let list = list.clone();
                thread::spawn(move || {
                    {
                        let _g = list.lock();
                        list.write_slots(&R);
                    }
                    let _g = list.lock();
                    assert!(list.try_push_link(T), "room for a third slot");
                })
            };
            let whole: [&[u32]; 3] = [&P, &R, &[R[0], R[1], T]];
            let got = read(&list);
            assert!(whole.contains(&got.as_slice()), "copied {got:x?}, a list the node never held");
            w.join().unwrap();
            assert_eq!(list.read_links(), whole[2]);
        },
        10_000,
    );
}

#[test]
fn readers_only_copy_lists_that_were_whole() {
    list_race(List::read_links);
}

/// The checker bites: without the version check a reader combines bytes of two versions.
#[test]
#[should_panic]
fn reading_without_the_version_check_is_caught() {
    list_race(List::read_unchecked);
}

/// A node's vector, written plainly before the node is linked (as `init_node` does): loom's
/// `UnsafeCell` reports a read that the list protocol leaves unordered after that write.
struct NodeData(loom::cell::UnsafeCell<u32>);

// SAFETY: the model only reads the cell after the protocol under test orders the write before
// that read; loom checks exactly that and fails the model otherwise.
unsafe impl Sync for NodeData {}

/// The walk's one-pass read of a 4-byte list (`ListCodec::read_filtered`) skips the version
/// check. A writer initialises node 2, then links it by an append and by a rewrite; a reader
/// that finds 2 in the list must see only real slots and 2's data. This caught a `Relaxed`
/// store of the odd header, from which such a reader took a count whose slots it could not yet
/// see (it read `[1, 0]`). Removing a writer's release fence does not fail it (loom lets a load
/// read an older store only in some interleavings); `readers_only_copy_lists_that_were_whole`
/// catches that one.
#[test]
fn the_walks_one_pass_read_sees_a_new_neighbours_data() {
    model(|| {
        let codec = links::ListCodec::WIDE;
        let list: Arc<Vec<AtomicU32>> = Arc::new((0..codec.words(CAP)).map(|_| AtomicU32::new(0)).collect());
        codec.write(&list, &[1]);
        let data = Arc::new(NodeData(loom::cell::UnsafeCell::new(0)));
        let w = {
            let (list, data) = (list.clone(), data.clone());
            thread::spawn(move || {
                // SAFETY: no reader touches the cell before node 2 is linked below.
                data.0.with_mut(|p| unsafe { *p = 42 });
                assert!(codec.push(&list, CAP, 2));
                codec.write(&list, &[2, 1]);
            })
        };
        for _ in 0..2 {
            let mut out = Vec::new();
            codec.read_filtered(&list, &mut out, |_| true);
            assert!(out.iter().all(|&v| v == 1 || v == 2), "read {out:?}");
            if out.contains(&2) {
                // SAFETY: ordered after the write by the protocol (loom checks it).
                assert_eq!(data.0.with(|p| unsafe { *p }), 42, "a neighbour seen before its data");
            }
        }
        w.join().unwrap();
    });
}

/// Mirrors `NodeStore::try_release0`: the check and the decrement are one atomic step, on the
/// in-degree bits only.
fn try_release0(w: &AtomicU16) -> bool {
    w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        let c = v & INDEG_MASK;
        (c > 1 && c != INDEG_MASK).then(|| v - 1)
    })
    .is_ok()
}

/// The broken variant: check, then decrement.
fn split_release(w: &AtomicU16) -> bool {
    if w.load(Ordering::Acquire) & INDEG_MASK > 1 {
        w.fetch_sub(1, Ordering::AcqRel);
        true
    } else {
        false
    }
}

/// Mirrors `NodeStore::inc_indeg` on level 0.
fn inc_indeg(w: &AtomicU16) {
    let _ =
        w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| (v & INDEG_MASK != INDEG_MASK).then(|| v + 1));
}

/// Node `X` has in-links from the lists of two nodes; each pruner drops its link only when the
/// release succeeds. With `inserter`, a third thread meanwhile takes `X`'s own lock (the word
/// that holds `X`'s in-degree) to rewrite `X`'s list, then links a new node to `X`
/// (`NodeStore::try_push_link` + `inc_indeg`). `X` must keep an in-link, its counter must equal
/// the lists that name it, and its lock must end free: neither half of the word may clobber the
/// other. `unlock` is how `X`'s guard unlocks.
fn prune_race(release: fn(&AtomicU16) -> bool, inserter: bool, unlock: Unlock) {
    const X: u32 = 9;
    model(move || {
        let x = Arc::new(List::with_indeg(&[4], 2));
        let lists: Arc<[List; 3]> = Arc::new([List::new(&[X, 4]), List::new(&[5, X]), List::new(&[6])]);
        let pruner = |i: usize| {
            let (x, lists) = (x.clone(), lists.clone());
            thread::spawn(move || {
                let l = &lists[i];
                let _g = l.lock();
                // Mirrors the pruning path of `Index::add_link`: decide the drop with the
                // release, then write the list with `set_links_counted`.
                if release(&x.word) {
                    let kept: Vec<u32> = l.read_links().into_iter().filter(|&v| v != X).collect();
                    l.write_slots(&kept);
                }
            })
        };
        let mut hs = vec![pruner(0), pruner(1)];
        if inserter {
            let (x, lists) = (x.clone(), lists.clone());
            hs.push(thread::spawn(move || {
                {
                    let _g = x.lock_with(unlock);
                    x.write_slots(&[4, 5]);
                }
                let l = &lists[2];
                let _g = l.lock();
                // Mirrors `try_push_link`: count first (`inc_indeg`), then the slot.
                inc_indeg(&x.word);
                assert!(l.try_push_link(X));
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        let naming = lists.iter().filter(|l| l.read_links().contains(&X)).count() as u16;
        let c = x.indeg();
        assert!(c >= 1, "node lost its last in-link");
        assert_eq!(c, naming, "in-degree counter drifted from the lists");
        assert_eq!(x.word.load(Ordering::Acquire) & LOCKED, 0, "the lock was left taken");
    });
}

#[test]
fn pruners_never_drop_the_last_in_link() {
    prune_race(try_release0, false, unlock_rmw);
}

#[test]
fn pruners_and_an_inserter_keep_counts_exact() {
    prune_race(try_release0, true, unlock_rmw);
}

/// The checker bites: a separate check and decrement lets both pruners drop.
#[test]
#[should_panic]
fn split_check_and_decrement_is_caught() {
    prune_race(split_release, false, unlock_rmw);
}

/// The checker bites: an unlock that stores zero over the word wipes an in-degree counted while
/// the lock was held.
#[test]
#[should_panic]
fn unlock_storing_over_the_in_degree_is_caught() {
    prune_race(try_release0, true, unlock_store);
}

// ----- walk codes -------------------------------------------------------------------------------

/// Code states, as in `walk_codes.rs` (a module of their own: `READY` is a node flag above).
mod code {
    pub(super) const EMPTY: u8 = 0;
    pub(super) const WRITING: u8 = 1;
    pub(super) const READY: u8 = 2;
    pub(super) const STALE: u8 = 3;
}

/// The row a writer stores for vector `v`: a code byte, then a byte standing in for the decoded
/// `‖x‖²`, so a reader that saw half a write (or the zeroed row) reads no writer's row.
fn code_row(v: u8) -> [u8; 2] {
    [v, v.wrapping_mul(3) ^ 0x5A]
}

/// Which protocol the mirror runs: the real one, or a broken variant.
#[derive(Clone, Copy, PartialEq)]
enum CodeVariant {
    /// `WalkCodes` as it is.
    Real,
    /// The publication (the compare-exchange to `READY` in `write`) `Relaxed` instead of `Release`.
    RelaxedPublish,
    /// `record_new` and `write` before the fix of the reuse-while-writing race: `record_new` left
    /// a `WRITING` slot alone and `write` stored `READY` unconditionally, so a slot reused while
    /// the batch was still coding its previous node ended `READY` with the previous vector's code.
    StaleOnlyWhenReady,
}

/// One node's slot in `WalkCodes` (`state[n]` and its row of `rows`), the row two bytes in
/// loom's `UnsafeCell`, so loom reports any access to them that the protocol leaves unordered
/// with a write.
struct CodeSlot {
    variant: CodeVariant,
    state: AtomicU8,
    row: [loom::cell::UnsafeCell<u8>; 2],
    /// Ghost: the vectors whose codes were written, in order. Not a loom object (it adds no
    /// synchronisation); touched only by the thread that claimed the slot.
    written: std::sync::Mutex<Vec<u8>>,
}

// SAFETY: as for `WalkCodes`: the row is written only by the thread that moved the state from
// `EMPTY` to `WRITING`, and read only after an acquire load of `READY` (what loom checks here).
unsafe impl Sync for CodeSlot {}

impl CodeSlot {
    /// Mirrors `WalkCodes::new`: `EMPTY`, the row zeroed.
    fn new(variant: CodeVariant) -> Self {
        Self {
            variant,
            state: AtomicU8::new(code::EMPTY),
            row: std::array::from_fn(|_| loom::cell::UnsafeCell::new(0)),
            written: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Mirrors `WalkCodes::record_existing`.
    fn record_existing(&self, v: u8) {
        if self
            .state
            .compare_exchange(code::EMPTY, code::WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            self.write(v);
        }
    }

    /// Mirrors `WalkCodes::record_new` (a swap to `STALE`, as there: see its comment on loom).
    fn record_new(&self, v: u8) {
        match self.state.compare_exchange(code::EMPTY, code::WRITING, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => self.write(v),
            Err(code::READY) => {
                self.state.swap(code::STALE, Ordering::Release);
            }
            Err(code::WRITING) if self.variant != CodeVariant::StaleOnlyWhenReady => {
                self.state.swap(code::STALE, Ordering::Release);
            }
            Err(_) => {}
        }
    }

    /// Mirrors `WalkCodes::write`; the caller moved the state to `WRITING`.
    fn write(&self, v: u8) {
        self.written.lock().unwrap().push(v);
        for (cell, b) in self.row.iter().zip(code_row(v)) {
            // SAFETY: this thread owns the `WRITING` state (loom checks the claim).
            cell.with_mut(|p| unsafe { *p = b });
        }
        match self.variant {
            CodeVariant::Real => {
                let _ = self.state.compare_exchange(
                    code::WRITING,
                    code::READY,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
            }
            CodeVariant::RelaxedPublish => {
                let _ = self.state.compare_exchange(
                    code::WRITING,
                    code::READY,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            CodeVariant::StaleOnlyWhenReady => self.state.store(code::READY, Ordering::Release),
        }
    }

    /// Mirrors `WalkCodes::prefetch`: a relaxed look at the state; the prefetch itself reads no
    /// bytes (a hint), so it is not modelled.
    fn prefetch(&self) -> bool {
        self.state.load(Ordering::Relaxed) == code::READY
    }

    /// Mirrors `WalkCodes::dist`: the row read, or `None` when the caller computes the distance
    /// exactly.
    fn dist(&self) -> Option<[u8; 2]> {
        if self.state.load(Ordering::Acquire) != code::READY {
            return None;
        }
        // SAFETY: `READY` was published with release after the row was written (loom checks it).
        Some(std::array::from_fn(|i| self.row[i].with(|p| unsafe { *p })))
    }

    /// Mirrors a walk reaching the node: `Index::prefetch_walk`, then `Index::dist`.
    fn walk(&self) -> Option<[u8; 2]> {
        self.prefetch();
        self.dist()
    }
}

/// Two writers race to code the same node (vectors 1 and 2; in the index, the batch's pass over
/// existing nodes and a node's own insert) while a walker reads it twice. Only the writer that
/// claimed the slot writes; a read that finds `READY` reads that writer's whole row.
fn two_writers_race(variant: CodeVariant) {
    model(move || {
        let slot = Arc::new(CodeSlot::new(variant));
        let writers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|v| {
                let slot = slot.clone();
                thread::spawn(move || slot.record_existing(v))
            })
            .collect();
        let reads = [slot.walk(), slot.walk()];
        for w in writers {
            w.join().unwrap();
        }
        let written = slot.written.lock().unwrap().clone();
        assert_eq!(written.len(), 1, "writers {written:?}");
        let row = code_row(written[0]);
        assert_eq!(slot.dist(), Some(row), "final code");
        for r in reads.into_iter().flatten() {
            assert_eq!(r, row, "read a row no writer finished");
        }
    });
}

/// The batch's pass codes a node (vector 1, `record_existing`) while its slot is reused for a
/// new node (vector 2, `record_new`) and a walker reads it twice. A read that finds `READY` reads
/// a whole row, and once both are done the slot is `STALE` (walked exactly) or holds the new
/// node's code, never the old one's.
fn reuse_race(variant: CodeVariant) {
    const OLD: u8 = 1;
    const NEW: u8 = 2;
    model(move || {
        let slot = Arc::new(CodeSlot::new(variant));
        let batch = {
            let slot = slot.clone();
            thread::spawn(move || slot.record_existing(OLD))
        };
        let reuse = {
            let slot = slot.clone();
            thread::spawn(move || slot.record_new(NEW))
        };
        let reads = [slot.walk(), slot.walk()];
        batch.join().unwrap();
        reuse.join().unwrap();
        let written = slot.written.lock().unwrap().clone();
        assert_eq!(written.len(), 1, "writers {written:?}");
        for r in reads.into_iter().flatten() {
            assert_eq!(r, code_row(written[0]), "read a row no writer finished");
        }
        match slot.state.load(Ordering::Acquire) {
            code::STALE => assert_eq!(slot.dist(), None),
            code::READY => assert_eq!(slot.dist(), Some(code_row(NEW)), "the reused slot kept the old code"),
            s => panic!("state {s} once every writer is done"),
        }
    });
}

#[test]
fn one_writer_codes_a_node_and_readers_see_its_whole_row() {
    two_writers_race(CodeVariant::Real);
}

#[test]
fn a_reused_slot_is_stale_or_holds_the_new_code() {
    reuse_race(CodeVariant::Real);
}

/// The checker bites: a relaxed publication lets a reader read the row unordered with its
/// write (loom reports the data race).
#[test]
#[should_panic]
fn relaxed_code_publication_is_caught() {
    two_writers_race(CodeVariant::RelaxedPublish);
}

/// The checker bites on the race it found: a reuse that meets `WRITING` and leaves it lets the
/// old node's code be published for the new node.
#[test]
#[should_panic]
fn reuse_while_writing_left_alone_is_caught() {
    reuse_race(CodeVariant::StaleOnlyWhenReady);
}
