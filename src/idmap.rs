//! Sharded map from user ids to node numbers that stores only the node numbers.
//!
//! Each of the 64 shards is an open-addressing table of `u32` node numbers: linear probing,
//! backward-shift deletion (no tombstones). The id a slot stands for is not kept in the table:
//! the node store already holds every node's id, so a probe reads it from there through
//! [`NodeIds`]. A slot costs 4 bytes.
//!
//! **Load.** A table grows past a load of 0.9 to one of 0.85 (by about 6 %, so table sizes are
//! not powers of two and the home slot is a multiply-high of the hash), and shrinks below 0.4 to
//! 0.85: a growing map holds 4.4 to 4.7 bytes per id, where doubling at 0.8 held 5 to 10 and a
//! `HashMap<u64, u32>` about 30 (a 16-byte bucket and a control byte at a load of at most 7/8).
//! The price is longer probes: a lookup of an absent id (every insert makes one) reads the
//! stored ids of about 22 to 50 slots at these loads (Knuth's ½(1 + 1/(1 − α)²)), a present one
//! about 4 to 6; and each growth rehashes the shard, about 17 moves per insert amortised, each
//! reading a stored id (prefetched a few entries ahead). The map alone is several times slower
//! than with doubling tables (about 0.5 µs per insert at a million ids against 0.08); against
//! the hundreds of distances an insert computes this stays within the noise of a build
//! (`docs/benchmarks.md`, session 9, has both). Robin Hood order was tried: it halves the
//! lookups of absent ids but makes those of present ones 1.4x slower, for the same insert
//! cost.
//!
//! **Why reading a probed node's id is safe.** A table holds only published nodes, and the store
//! wrote a node's id (`NodeStore::init_node`) before the node was published, on the publishing
//! thread, which then took the shard's write lock to insert it; whoever probes holds the same
//! lock, so the lock orders the id write before the read. The id cannot change while the node is
//! in the table: the store rewrites it only when the number is reused, and a number is reused
//! only after it has left the id map (under this lock) and a grace period has passed (see "Slot
//! reuse" in `store.rs`). So under the shard lock every node in a shard's table carries the id it
//! was inserted under, and lookups, deletions and rehashing may read it.
//!
//! Reservations (ids of inserts in flight; a batch may reserve tens of thousands at once) have no
//! node yet, hence no stored id: each shard keeps them in a second table that holds the ids
//! themselves, shrunk again as the reservations are published or released. An id is in at most
//! one of the two tables.
//!
//! The hash is a xor-fold and a multiply: ids are integers and need no defence against
//! adversarial keys, but linear probing punishes clustered hashes, so every bit of the id must
//! reach the top bits, which pick the shard and then the home slot.

#[cfg(not(all(loom, test)))]
use parking_lot::RwLock;

/// Under `--cfg loom`, `tests/loom_protocols.rs` compiles this file as its own module (the
/// library build itself never has `cfg(test)` there) and model-checks this very code with loom's
/// lock, which has `parking_lot`'s API once its poisoning results are unwrapped.
#[cfg(all(loom, test))]
struct RwLock<T>(loom::sync::RwLock<T>);

#[cfg(all(loom, test))]
impl<T> RwLock<T> {
    fn new(v: T) -> Self {
        Self(loom::sync::RwLock::new(v))
    }
    fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
        self.0.read().unwrap()
    }
    fn write(&self) -> loom::sync::RwLockWriteGuard<'_, T> {
        self.0.write().unwrap()
    }
}

/// The node number no node ever has (`NodeStore::alloc` stops below it): marks an empty slot of
/// a node table.
const NO_NODE: u32 = u32::MAX;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
/// Smallest non-empty table.
const MIN_SLOTS: usize = 8;

/// Slots for a table that should hold `len` entries at a load of 0.85 (at least `MIN_SLOTS`,
/// and always more than `len`, so every probe ends at an empty slot).
fn slots_for(len: usize) -> usize {
    (len * 20 / 17 + 1).max(MIN_SLOTS)
}

/// Whether a table of `slots` slots holding `len` entries is past the highest load, 0.9.
#[inline]
fn over_full(len: usize, slots: usize) -> bool {
    len * 10 > slots * 9
}

/// Whether a table of `slots` slots holding `len` entries is below the lowest load kept, 0.4
/// (tables of `MIN_SLOTS` are left alone).
#[inline]
fn under_full(len: usize, slots: usize) -> bool {
    slots > MIN_SLOTS && len * 5 < slots * 2
}

/// Where the map reads the id stored for a node: the node store, or a fake in tests.
pub(crate) trait NodeIds {
    /// The id stored for node `n`. The map calls this only for nodes it holds, under the shard
    /// lock (see the module docs for why the answer is then stable).
    fn node_id(&self, n: u32) -> u64;

    /// Starts loading what [`node_id`](Self::node_id) will read for `n` (a hint; the default
    /// does nothing). A rehash reads every entry's id, one cache miss each in a large index, so
    /// it asks a few entries ahead.
    fn prefetch_id(&self, _n: u32) {}
}

/// How a table learns the id a slot stands for.
trait SlotKey<S> {
    fn key(&self, s: S) -> u64;
    /// Starts loading what `key(s)` will read.
    fn prefetch(&self, _s: S) {}
}

/// Any function of the slot: the reservation tables' (the slot is the id).
impl<S, F: Fn(S) -> u64> SlotKey<S> for F {
    #[inline]
    fn key(&self, s: S) -> u64 {
        self(s)
    }
}

/// The node tables' keys: the ids the node store holds.
struct StoredIds<'a, K: ?Sized>(&'a K);

impl<K: NodeIds + ?Sized> SlotKey<u32> for StoredIds<'_, K> {
    #[inline]
    fn key(&self, n: u32) -> u64 {
        self.0.node_id(n)
    }
    #[inline]
    fn prefetch(&self, n: u32) {
        self.0.prefetch_id(n);
    }
}

/// Entries a rehash reads ahead of the one it places.
const REHASH_AHEAD: usize = 16;

#[inline]
fn hash(id: u64) -> u64 {
    // The fold lets the high half of the id reach the product's top bits too.
    (id ^ (id >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline]
fn shard_of(id: u64) -> usize {
    (hash(id) >> (64 - SHARD_BITS)) as usize
}

/// What a table slot holds, with the value that marks it empty.
trait Slot: Copy + PartialEq {
    const EMPTY: Self;
    const BYTES: usize = std::mem::size_of::<Self>();
}

impl Slot for u32 {
    const EMPTY: u32 = NO_NODE;
}

/// Reservation tables hold ids; `u64::MAX` itself is kept in [`Shard::reserved_max`].
impl Slot for u64 {
    const EMPTY: u64 = u64::MAX;
}

/// An open-addressing table with linear probing. `key` maps a slot's content to its id.
///
/// Invariant: every entry lies at or after its home slot with no empty slot in between
/// (cyclically), and at least one slot is empty (the load stays at most 0.9), so every probe
/// ends at the entry or at an empty slot.
struct Table<S: Slot> {
    slots: Box<[S]>,
    len: usize,
}

impl<S: Slot> Table<S> {
    fn new() -> Self {
        Self { slots: Box::default(), len: 0 }
    }

    /// Home slot of `id` in a table of `slots` slots: the hash bits below the shard bits (which
    /// every id of this shard shares) scaled to `0..slots` by a multiply-high, so any table size
    /// works.
    #[inline]
    fn home(id: u64, slots: usize) -> usize {
        (((hash(id) << SHARD_BITS) as u128 * slots as u128) >> 64) as usize
    }

    /// The slot after `i` in a table of `slots` slots, cyclically.
    #[inline]
    fn next(i: usize, slots: usize) -> usize {
        if i + 1 == slots {
            0
        } else {
            i + 1
        }
    }

    /// Position of the entry for `id`.
    fn find(&self, id: u64, key: &impl SlotKey<S>) -> Option<usize> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = Self::home(id, n);
        // Bounded, so that even a key function that broke its promise cannot make this spin.
        for _ in 0..n {
            let s = self.slots[i];
            if s == S::EMPTY {
                return None;
            }
            if key.key(s) == id {
                return Some(i);
            }
            i = Self::next(i, n);
        }
        None
    }

    /// Adds `s` for `id`, which the table must not hold yet.
    fn insert(&mut self, id: u64, s: S, key: &impl SlotKey<S>) {
        if over_full(self.len + 1, self.slots.len()) {
            self.resize(slots_for(self.len + 1), key);
        }
        Self::place(&mut self.slots, id, s);
        self.len += 1;
    }

    /// Puts `s` into the first empty slot from `id`'s home on.
    fn place(slots: &mut [S], id: u64, s: S) {
        let n = slots.len();
        if n == 0 {
            return;
        }
        let mut i = Self::home(id, n);
        for _ in 0..n {
            if slots[i] == S::EMPTY {
                slots[i] = s;
                return;
            }
            i = Self::next(i, n);
        }
    }

    /// Moves every entry into a table of `slots` slots (0, or more than the entries), reading
    /// each entry's id through `key`, `REHASH_AHEAD` entries after asking for it: the reads
    /// are random and would otherwise wait for memory one at a time.
    fn resize(&mut self, slots: usize, key: &impl SlotKey<S>) {
        let mut next = vec![S::EMPTY; slots].into_boxed_slice();
        let mut ahead = self.slots.iter().copied().filter(|&s| s != S::EMPTY);
        for s in ahead.by_ref().take(REHASH_AHEAD) {
            key.prefetch(s);
        }
        for s in self.slots.iter().copied().filter(|&s| s != S::EMPTY) {
            if let Some(a) = ahead.next() {
                key.prefetch(a);
            }
            Self::place(&mut next, key.key(s), s);
        }
        self.slots = next;
    }

    /// Empties slot `i` (which holds an entry) and closes the gap: each later entry of the run
    /// that may legally sit in the hole (its home is not cyclically inside the hole's run
    /// between the hole and itself) moves back into it, and the hole moves to where it was.
    /// Without tombstones, a lookup never has to step over a deleted slot.
    fn remove_at(&mut self, mut hole: usize, key: &impl SlotKey<S>) {
        let n = self.slots.len();
        if hole >= n {
            return;
        }
        // Cyclic distance from `a` forward to `b`.
        let dist = |a: usize, b: usize| if b >= a { b - a } else { b + n - a };
        let mut j = hole;
        for _ in 0..n {
            j = Self::next(j, n);
            let s = self.slots[j];
            if s == S::EMPTY {
                break;
            }
            let home = Self::home(key.key(s), n);
            // Distance from its home to where it sits, against distance from the hole to there:
            // at least as far means the home is not in (hole, j], so the entry may move back.
            if dist(home, j) >= dist(hole, j) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = S::EMPTY;
        self.len -= 1;
        // Shrink below a load of 0.4 to 0.85 (or to nothing): a table that held a large batch's
        // reservations, or ids since deleted, gives its memory back, and the next shrink or
        // growth is a constant fraction of operations away.
        if under_full(self.len, n) {
            let want = if self.len == 0 { 0 } else { slots_for(self.len) };
            self.resize(want, key);
        }
    }

    fn entries(&self) -> impl Iterator<Item = S> + '_ {
        self.slots.iter().copied().filter(|&s| s != S::EMPTY)
    }

    fn heap_bytes(&self) -> usize {
        self.slots.len() * S::BYTES
    }
}

/// One shard: the published ids (as their node numbers) and the reserved ones.
struct Shard {
    nodes: Table<u32>,
    reserved: Table<u64>,
    /// Whether `u64::MAX`, the empty marker of `reserved`, is reserved.
    reserved_max: bool,
}

/// The key of a reservation-table slot: the id itself.
fn own(id: u64) -> u64 {
    id
}

impl Shard {
    fn new() -> Self {
        Self { nodes: Table::new(), reserved: Table::new(), reserved_max: false }
    }

    /// Slot of the published `id`.
    #[inline]
    fn find<K: NodeIds + ?Sized>(&self, keys: &K, id: u64) -> Option<usize> {
        self.nodes.find(id, &StoredIds(keys))
    }

    /// Node of the published `id`.
    #[inline]
    fn node<K: NodeIds + ?Sized>(&self, keys: &K, id: u64) -> Option<u32> {
        self.find(keys, id).map(|i| self.nodes.slots[i])
    }

    fn is_reserved(&self, id: u64) -> bool {
        if id == u64::MAX {
            self.reserved_max
        } else {
            self.reserved.find(id, &own).is_some()
        }
    }

    fn add_reservation(&mut self, id: u64) {
        if id == u64::MAX {
            self.reserved_max = true;
        } else {
            self.reserved.insert(id, id, &own);
        }
    }

    /// Drops the reservation of `id`; `false` if there was none.
    fn drop_reservation(&mut self, id: u64) -> bool {
        if id == u64::MAX {
            return std::mem::replace(&mut self.reserved_max, false);
        }
        match self.reserved.find(id, &own) {
            Some(i) => {
                self.reserved.remove_at(i, &own);
                true
            }
            None => false,
        }
    }

    /// Maps `id` to `node`, whose stored id must be `id`.
    fn add_node<K: NodeIds + ?Sized>(&mut self, keys: &K, id: u64, node: u32) {
        debug_assert_eq!(keys.node_id(node), id, "node {node} does not carry id {id}");
        self.nodes.insert(id, node, &StoredIds(keys));
    }

    /// Unmaps the entry at slot `i`.
    fn remove_node_at<K: NodeIds + ?Sized>(&mut self, keys: &K, i: usize) {
        self.nodes.remove_at(i, &StoredIds(keys));
    }
}

/// Every method that looks an id up takes `keys`, the node store the map reads stored ids from
/// (module docs); all calls on one map must pass the same store.
pub(crate) struct IdMap {
    shards: Box<[RwLock<Shard>]>,
}

impl IdMap {
    pub(crate) fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect() }
    }

    #[inline]
    fn shard(&self, id: u64) -> &RwLock<Shard> {
        // `shard_of` is below `SHARDS`, the number of shards built by `new`.
        &self.shards[shard_of(id)]
    }

    /// Node of a published id (not a reservation).
    pub(crate) fn get<K: NodeIds + ?Sized>(&self, keys: &K, id: u64) -> Option<u32> {
        self.shard(id).read().node(keys, id)
    }

    /// Whether the id is present or reserved.
    pub(crate) fn is_taken<K: NodeIds + ?Sized>(&self, keys: &K, id: u64) -> bool {
        let s = self.shard(id).read();
        s.is_reserved(id) || s.find(keys, id).is_some()
    }

    /// Reserves `id`; `false` if it is present or already reserved.
    pub(crate) fn reserve<K: NodeIds + ?Sized>(&self, keys: &K, id: u64) -> bool {
        let mut s = self.shard(id).write();
        if s.is_reserved(id) || s.find(keys, id).is_some() {
            return false;
        }
        s.add_reservation(id);
        true
    }

    /// Gives back a reservation that was never published. A published mapping is left alone.
    pub(crate) fn release(&self, id: u64) {
        self.shard(id).write().drop_reservation(id);
    }

    /// Publishes a reserved id as `node` (whose stored id is `id`), running `publish` under the
    /// id's shard lock.
    ///
    /// Every change of one id's state (publish, delete, replace) runs under that lock, so the
    /// changes of one id are totally ordered and the bookkeeping done in the closures (flags,
    /// live count) is ordered with them: a delete cannot overtake the publication it removes.
    pub(crate) fn publish<K: NodeIds + ?Sized>(&self, keys: &K, id: u64, node: u32, publish: impl FnOnce()) {
        let mut s = self.shard(id).write();
        let was_reserved = s.drop_reservation(id);
        debug_assert!(was_reserved, "publishing an id that is not reserved");
        // A reserved id is not in the node table (an id is in at most one table), so only an
        // unreserved one, which callers never publish, needs the lookup; overwriting then keeps
        // the map's answer the latest publication, as a plain map insert would.
        match if was_reserved { None } else { s.find(keys, id) } {
            Some(i) => s.nodes.slots[i] = node,
            None => s.add_node(keys, id, node),
        }
        publish();
    }

    /// Removes a published id, running `removed(node)` under the shard lock. A reservation (an
    /// insert still in flight) is not a published id: it stays, and this returns `None`.
    pub(crate) fn remove_published<K: NodeIds + ?Sized>(
        &self,
        keys: &K,
        id: u64,
        removed: impl FnOnce(u32),
    ) -> Option<u32> {
        self.remove_published_if(keys, id, |_| true, removed)
    }

    /// Runs `f(node)` for a published id under the shard's read lock, so no transition of the id
    /// (publish, delete, replace) runs meanwhile; `None` when the id is absent or only reserved.
    pub(crate) fn with_published<K: NodeIds + ?Sized, R>(
        &self,
        keys: &K,
        id: u64,
        f: impl FnOnce(u32) -> R,
    ) -> Option<R> {
        self.shard(id).read().node(keys, id).map(f)
    }

    /// Like [`remove_published`](Self::remove_published), but only when `keep_going(node)`
    /// (evaluated under the shard lock, so the id cannot change meanwhile) says so.
    pub(crate) fn remove_published_if<K: NodeIds + ?Sized>(
        &self,
        keys: &K,
        id: u64,
        keep_going: impl FnOnce(u32) -> bool,
        removed: impl FnOnce(u32),
    ) -> Option<u32> {
        let mut s = self.shard(id).write();
        let i = s.find(keys, id)?;
        let n = s.nodes.slots[i];
        if !keep_going(n) {
            return None;
        }
        s.remove_node_at(keys, i);
        removed(n);
        Some(n)
    }

    /// Points a published id at `node`, whose stored id must be `id` too, running
    /// `replaced(old)` under the shard lock. Returns the old node, or `None` (changing nothing)
    /// when the id is absent or only reserved.
    ///
    /// The entry stays in its slot: the id, hence its home slot and every probe run through it,
    /// is unchanged.
    pub(crate) fn replace_published<K: NodeIds + ?Sized>(
        &self,
        keys: &K,
        id: u64,
        node: u32,
        replaced: impl FnOnce(u32),
    ) -> Option<u32> {
        let mut s = self.shard(id).write();
        let i = s.find(keys, id)?;
        debug_assert_eq!(keys.node_id(node), id, "node {node} does not carry id {id}");
        let old = std::mem::replace(&mut s.nodes.slots[i], node);
        replaced(old);
        Some(old)
    }

    /// Maps `id` to `node` (whose stored id is `id`) while an index is rebuilt from a snapshot
    /// (single-threaded); `false` if the id is already mapped.
    pub(crate) fn restore<K: NodeIds + ?Sized>(&self, keys: &K, id: u64, node: u32) -> bool {
        let mut s = self.shard(id).write();
        if s.is_reserved(id) || s.find(keys, id).is_some() {
            return false;
        }
        s.add_node(keys, id, node);
        true
    }

    /// Some published node, if any id is published (used to move the entry point).
    pub(crate) fn any_node(&self) -> Option<u32> {
        self.shards.iter().find_map(|s| s.read().nodes.entries().next())
    }

    /// Heap bytes held by the map: the shard array and every table's slots, exactly.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.shards.len() * std::mem::size_of::<RwLock<Shard>>()
            + self
                .shards
                .iter()
                .map(|s| {
                    let s = s.read();
                    s.nodes.heap_bytes() + s.reserved.heap_bytes()
                })
                .sum::<usize>()
    }

    /// Every published (id, node) pair, in no particular order.
    pub(crate) fn entries<K: NodeIds + ?Sized>(&self, keys: &K) -> Vec<(u64, u32)> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            v.extend(s.read().nodes.entries().map(|n| (keys.node_id(n), n)));
        }
        v
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{HashMap, HashSet};

    /// A node store in miniature: node `n` carries id `self[n]`. Nodes are only appended, so a
    /// mapped node's id never changes, as in the real store.
    impl NodeIds for Vec<u64> {
        fn node_id(&self, n: u32) -> u64 {
            self.get(n as usize).copied().unwrap_or(u64::MAX)
        }
    }

    /// `count` ids whose hash satisfies `pick`, from a deterministic walk over the id space.
    fn ids_where(count: usize, pick: impl Fn(u64) -> bool) -> Vec<u64> {
        (0u64..)
            .map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5bd1_e995)
            .filter(|&id| pick(id))
            .take(count)
            .collect()
    }

    /// The structure the map must keep, checked slot by slot.
    fn check_structure(map: &IdMap, keys: &Vec<u64>, ctx: &str) {
        let mut bytes = SHARDS * std::mem::size_of::<RwLock<Shard>>();
        for (si, shard) in map.shards.iter().enumerate() {
            let s = shard.read();
            for (name, len, slots) in [
                ("nodes", s.nodes.len, s.nodes.slots.len()),
                ("reserved", s.reserved.len, s.reserved.slots.len()),
            ] {
                assert!(slots == 0 || slots >= MIN_SLOTS, "{ctx}: shard {si} {name}: {slots} slots");
                assert!(
                    !over_full(len, slots) && (len == 0 || len < slots),
                    "{ctx}: shard {si} {name}: load {len}/{slots}"
                );
                assert!(!under_full(len, slots), "{ctx}: shard {si} {name}: load {len}/{slots} not shrunk");
            }
            assert_eq!(s.nodes.entries().count(), s.nodes.len, "{ctx}: shard {si} node count");
            assert_eq!(s.reserved.entries().count(), s.reserved.len, "{ctx}: shard {si} reservation count");
            for (i, &n) in s.nodes.slots.iter().enumerate().filter(|(_, &n)| n != NO_NODE) {
                let id = keys.node_id(n);
                assert_eq!(shard_of(id), si, "{ctx}: node {n} (id {id}) in the wrong shard");
                assert_eq!(s.find(keys, id), Some(i), "{ctx}: node {n} (id {id}) unreachable from its home");
            }
            for (i, &id) in s.reserved.slots.iter().enumerate().filter(|(_, &id)| id != u64::MAX) {
                assert_eq!(shard_of(id), si, "{ctx}: reservation {id} in the wrong shard");
                assert_eq!(s.reserved.find(id, &own), Some(i), "{ctx}: reservation {id} unreachable");
            }
            bytes += s.nodes.slots.len() * 4 + s.reserved.slots.len() * 8;
        }
        assert_eq!(map.heap_bytes(), bytes, "{ctx}: heap_bytes");
    }

    /// The map answers as the model does, for every id the model knows and for `absent`.
    fn check_answers(
        map: &IdMap,
        keys: &Vec<u64>,
        published: &HashMap<u64, u32>,
        reserved: &HashSet<u64>,
        absent: &[u64],
        ctx: &str,
    ) {
        let mut entries = map.entries(keys);
        entries.sort_unstable();
        let mut want: Vec<(u64, u32)> = published.iter().map(|(&id, &n)| (id, n)).collect();
        want.sort_unstable();
        assert_eq!(entries, want, "{ctx}: entries");
        for (&id, &n) in published {
            assert_eq!(map.get(keys, id), Some(n), "{ctx}: get({id})");
            assert!(map.is_taken(keys, id), "{ctx}: is_taken({id})");
        }
        for &id in reserved {
            assert_eq!(map.get(keys, id), None, "{ctx}: reserved {id} is not published");
            assert!(map.is_taken(keys, id), "{ctx}: reserved {id} is taken");
        }
        for &id in absent.iter().filter(|id| !published.contains_key(id) && !reserved.contains(id)) {
            assert_eq!(map.get(keys, id), None, "{ctx}: absent {id}");
            assert!(!map.is_taken(keys, id), "{ctx}: absent {id} is not taken");
        }
        assert_eq!(map.any_node().is_some(), !published.is_empty(), "{ctx}: any_node");
    }

    /// Random operations, as the index issues them, against a `HashMap` model. `pool` is the id
    /// space: small pools make hits, repeats and long probe runs common.
    fn run_model(seed: u64, pool: &[u64], steps: usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let map = IdMap::new();
        let mut keys: Vec<u64> = Vec::new();
        let mut published: HashMap<u64, u32> = HashMap::new();
        let mut reserved: HashSet<u64> = HashSet::new();
        let new_node = |keys: &mut Vec<u64>, id: u64| {
            keys.push(id);
            keys.len() as u32 - 1
        };
        for step in 0..steps {
            let id = pool[rng.random_range(0..pool.len())];
            let ctx = format!("seed {seed} step {step} id {id}");
            match rng.random_range(0..9) {
                0 | 1 => {
                    let free = !published.contains_key(&id) && !reserved.contains(&id);
                    assert_eq!(map.reserve(&keys, id), free, "{ctx}: reserve");
                    if free {
                        reserved.insert(id);
                    }
                }
                2 | 3 => {
                    if reserved.remove(&id) {
                        let n = new_node(&mut keys, id);
                        let mut ran = false;
                        map.publish(&keys, id, n, || ran = true);
                        assert!(ran, "{ctx}: publish closure");
                        published.insert(id, n);
                    }
                }
                4 => {
                    map.release(id);
                    reserved.remove(&id);
                }
                5 => {
                    let mut seen = None;
                    let got = map.remove_published(&keys, id, |n| seen = Some(n));
                    let want = published.remove(&id);
                    assert_eq!(got, want, "{ctx}: remove_published");
                    assert_eq!(seen, want, "{ctx}: remove_published closure");
                }
                6 => {
                    let keep = rng.random_bool(0.5);
                    let got = map.remove_published_if(&keys, id, |_| keep, |_| {});
                    let want = if keep { published.remove(&id) } else { None };
                    assert_eq!(got, want, "{ctx}: remove_published_if({keep})");
                }
                7 => {
                    let n = new_node(&mut keys, id);
                    let mut seen = None;
                    let got = map.replace_published(&keys, id, n, |old| seen = Some(old));
                    let want = published.get(&id).copied();
                    assert_eq!(got, want, "{ctx}: replace_published");
                    assert_eq!(seen, want, "{ctx}: replace_published closure");
                    if want.is_some() {
                        published.insert(id, n);
                    }
                }
                _ => {
                    let n = new_node(&mut keys, id);
                    let free = !published.contains_key(&id) && !reserved.contains(&id);
                    assert_eq!(map.restore(&keys, id, n), free, "{ctx}: restore");
                    if free {
                        published.insert(id, n);
                    }
                }
            }
            assert_eq!(map.get(&keys, id), published.get(&id).copied(), "{ctx}: get after the step");
            assert_eq!(
                map.with_published(&keys, id, |n| n),
                published.get(&id).copied(),
                "{ctx}: with_published"
            );
            if step % 64 == 0 || step + 1 == steps {
                check_structure(&map, &keys, &ctx);
                check_answers(&map, &keys, &published, &reserved, pool, &ctx);
            }
        }
    }

    fn seeds() -> Vec<u64> {
        match std::env::var("IDMAP_SEED").ok().and_then(|s| s.parse().ok()) {
            Some(s) => vec![s],
            None => (0..12).collect(),
        }
    }

    #[test]
    fn random_operations_match_a_hashmap() {
        let pool = ids_where(3000, |_| true);
        for seed in seeds() {
            run_model(seed, &pool, 12_000);
        }
    }

    /// Every id in one shard: tables grow, shrink and wrap with long probe runs.
    #[test]
    fn random_operations_in_one_shard() {
        let mut pool = ids_where(600, |id| shard_of(id) == 5);
        // `u64::MAX`, the reservation table's empty marker, must behave like any other id.
        pool.push(u64::MAX);
        for seed in seeds() {
            run_model(seed ^ 0xA5A5, &pool, 12_000);
        }
    }

    /// Every id with the same home slot in tables of up to 64 slots: one run, every removal in
    /// the middle of it.
    #[test]
    fn random_operations_with_one_home() {
        let home = |id: u64| Table::<u32>::home(id, 64);
        let pool = ids_where(40, |id| shard_of(id) == 0 && home(id) == 63);
        for seed in seeds() {
            run_model(seed ^ 0x5A5A, &pool, 4_000);
        }
    }

    /// Backward shift by hand: a run that wraps round the end of the table, entries from two
    /// homes, removals from its middle. Which entries move, and where, is fixed by the rules.
    #[test]
    fn removal_in_the_middle_of_a_run_shifts_the_right_entries() {
        let slots = 16;
        let mut t: Table<u64> = Table::new();
        t.resize(slots, &own);
        let with_home = |h: usize, count: usize| {
            ids_where(count, move |id| id != u64::MAX && Table::<u64>::home(id, slots) == h)
        };
        let a = with_home(14, 3); // slots 14, 15, 0
        let b = with_home(15, 2); // slots 1, 2
        let c = with_home(2, 1); // slot 3 (its home is taken by b[1])
        let d = with_home(5, 1); // slot 5, after an empty slot 4: not in the run
                                 // Slots 8 to 11, away from the runs: they keep the load above the shrink threshold
                                 // (0.4) while the test removes entries.
        let e: Vec<u64> = (8..12).flat_map(|h| with_home(h, 1)).collect();
        for &id in a.iter().chain(&b).chain(&c).chain(&d).chain(&e) {
            t.insert(id, id, &own);
        }
        let at = |t: &Table<u64>, i: usize| t.slots[i];
        assert_eq!(
            [at(&t, 14), at(&t, 15), at(&t, 0), at(&t, 1), at(&t, 2), at(&t, 3), at(&t, 4), at(&t, 5)],
            [a[0], a[1], a[2], b[0], b[1], c[0], u64::MAX, d[0]]
        );
        // Remove a[1] (slot 15): a[2] moves back from 0, b[0] from 1 to 0, b[1] from 2 to 1;
        // c[0] (home 2) moves to 2; the run ends at the empty slot 4, so d[0] stays.
        let i = t.find(a[1], &own).unwrap();
        t.remove_at(i, &own);
        assert_eq!(
            [at(&t, 14), at(&t, 15), at(&t, 0), at(&t, 1), at(&t, 2), at(&t, 3), at(&t, 5)],
            [a[0], a[2], b[0], b[1], c[0], u64::MAX, d[0]]
        );
        // Remove b[0] (slot 0): b[1] (home 15) may move back to 0; c[0] (home 2, now at 2)
        // may not move before its home.
        let i = t.find(b[0], &own).unwrap();
        t.remove_at(i, &own);
        assert_eq!([at(&t, 15), at(&t, 0), at(&t, 1), at(&t, 2)], [a[2], b[1], u64::MAX, c[0]]);
        for &id in [a[0], a[2], b[1], c[0], d[0]].iter() {
            assert!(t.find(id, &own).is_some(), "{id} lost");
        }
        for &id in [a[1], b[0]].iter() {
            assert!(t.find(id, &own).is_none(), "{id} still found");
        }
        assert_eq!(t.len, 9);
        assert_eq!(t.slots.len(), slots, "no shrink above a load of 0.4");
    }

    /// Growth rehashes by the stored ids; removing everything gives the memory back; the cost
    /// per id stays within the compact budget.
    #[test]
    fn growth_and_shrink_keep_every_id_and_the_budget() {
        let n = 200_000usize;
        let ids = ids_where(n, |_| true);
        let keys = ids.clone();
        let map = IdMap::new();
        for (node, &id) in ids.iter().enumerate() {
            assert!(map.reserve(&keys, id));
            map.publish(&keys, id, node as u32, || {});
        }
        check_structure(&map, &keys, "grown");
        for (node, &id) in ids.iter().enumerate() {
            assert_eq!(map.get(&keys, id), Some(node as u32));
        }
        let per_id = map.heap_bytes() as f64 / n as f64;
        // 4-byte slots at a load between 0.85 and 0.9: at most 4.71 bytes per id, plus the
        // shards (64 small headers, under 0.1 byte per id here).
        assert!(per_id <= 4.8, "{per_id:.2} bytes per id");
        for &id in &ids[..n - 10] {
            assert!(map.remove_published(&keys, id, |_| {}).is_some());
        }
        check_structure(&map, &keys, "shrunk");
        // Tables shrink below a load of 0.4 (empty ones down to `MIN_SLOTS`): 10 ids left
        // leave at most 16 node slots and 8 reservation slots in a shard.
        let most = SHARDS * (std::mem::size_of::<RwLock<Shard>>() + 4 * 16 + 8 * MIN_SLOTS);
        assert!(map.heap_bytes() <= most, "{} bytes left for 10 ids", map.heap_bytes());
        for (node, &id) in ids.iter().enumerate().skip(n - 10) {
            assert_eq!(map.get(&keys, id), Some(node as u32));
        }
    }

    /// A batch's worth of reservations does not stay allocated once published.
    #[test]
    fn reservation_tables_shrink_after_a_batch() {
        let ids = ids_where(50_000, |_| true);
        let keys = ids.clone();
        let map = IdMap::new();
        for &id in &ids {
            assert!(map.reserve(&keys, id));
        }
        let reserving = map.heap_bytes();
        for (node, &id) in ids.iter().enumerate() {
            map.publish(&keys, id, node as u32, || {});
        }
        let reserved_bytes: usize = map.shards.iter().map(|s| s.read().reserved.heap_bytes()).sum();
        assert!(reserved_bytes <= SHARDS * 8 * MIN_SLOTS, "{reserved_bytes} bytes of reservations left");
        assert!(reserving > 50_000 * 8, "the reservations were counted: {reserving}");
        check_structure(&map, &keys, "published");
    }
}

/// Timings of the map alone, for `docs/benchmarks.md` (not a test of speed: it asserts only
/// that every id is found). Run with
/// `cargo test --release --lib idmap::timings -- --ignored --nocapture`.
#[cfg(all(test, not(loom)))]
mod timings {
    use super::*;
    use std::time::Instant;

    /// Ids kept as the node store keeps them, with its prefetch.
    struct Ids(Vec<u64>);

    impl NodeIds for Ids {
        fn node_id(&self, n: u32) -> u64 {
            self.0[n as usize]
        }
        fn prefetch_id(&self, n: u32) {
            if let Some(r) = self.0.get(n as usize) {
                crate::store::prefetch_bytes((r as *const u64).cast::<u8>(), 8);
            }
        }
    }

    #[test]
    #[ignore]
    fn insert_and_lookup_costs() {
        for n in [1_000_000usize, 8_000_000] {
            let keys = Ids((0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x1234).collect());
            let map = IdMap::new();
            let t = Instant::now();
            for (node, &id) in keys.0.iter().enumerate() {
                assert!(map.reserve(&keys, id));
                map.publish(&keys, id, node as u32, || {});
            }
            let insert = t.elapsed().as_secs_f64() * 1e9 / n as f64;
            let t = Instant::now();
            let present: Vec<u64> = keys.0.iter().copied().step_by(7).collect();
            let found = present.iter().filter(|&&id| map.get(&keys, id).is_some()).count();
            assert_eq!(found, present.len());
            let get = t.elapsed().as_secs_f64() * 1e9 / found as f64;
            let t = Instant::now();
            let absent = (0..(n / 7) as u64)
                .filter(|i| map.get(&keys, i.wrapping_mul(0xD6E8_FEB8_6659_FD93)).is_none())
                .count();
            let miss = t.elapsed().as_secs_f64() * 1e9 / absent as f64;
            println!(
                "{n} ids: reserve+publish {insert:.0} ns, get present {get:.0} ns, get absent {miss:.0} ns, {:.2} B/id",
                map.heap_bytes() as f64 / n as f64
            );
        }
    }
}
