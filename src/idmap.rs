//! Sharded map from user ids to node numbers.
//!
//! Shards keep concurrent inserts from serialising on one lock; the hash is a single multiply,
//! since ids are integers and need no protection against adversarial collisions more than the
//! high bits of a 64-bit multiplicative hash already give.

#[cfg(not(all(loom, test)))]
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// Value stored for an id that is reserved by an insert still in progress.
pub(crate) const RESERVED: u32 = u32::MAX;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing; hashbrown uses the top 7 bits as tags and the low bits as bucket.
        let h = v.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type Shard = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

pub(crate) struct IdMap {
    shards: Box<[RwLock<Shard>]>,
}

#[inline]
fn shard_of(id: u64) -> usize {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize
}

impl IdMap {
    pub(crate) fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect() }
    }

    /// Node of a published id (not a reservation).
    pub(crate) fn get(&self, id: u64) -> Option<u32> {
        match self.shards[shard_of(id)].read().get(&id) {
            Some(&n) if n != RESERVED => Some(n),
            _ => None,
        }
    }

    /// Whether the id is present or reserved.
    pub(crate) fn is_taken(&self, id: u64) -> bool {
        self.shards[shard_of(id)].read().contains_key(&id)
    }

    /// Reserves `id`; `false` if it is present or already reserved.
    pub(crate) fn reserve(&self, id: u64) -> bool {
        let mut s = self.shards[shard_of(id)].write();
        if s.contains_key(&id) {
            return false;
        }
        s.insert(id, RESERVED);
        true
    }

    /// Gives back a reservation that was never published. A published mapping is left alone.
    pub(crate) fn release(&self, id: u64) {
        let mut s = self.shards[shard_of(id)].write();
        if s.get(&id) == Some(&RESERVED) {
            s.remove(&id);
        }
    }

    /// Publishes a reserved id as `node`, running `publish` under the id's shard lock.
    ///
    /// Every change of one id's state (publish, delete, replace) runs under that lock, so the
    /// changes of one id are totally ordered and the bookkeeping done in the closures (flags,
    /// live count) is ordered with them: a delete cannot overtake the publication it removes.
    pub(crate) fn publish(&self, id: u64, node: u32, publish: impl FnOnce()) {
        let mut s = self.shards[shard_of(id)].write();
        debug_assert_eq!(s.get(&id), Some(&RESERVED), "publishing an id that is not reserved");
        s.insert(id, node);
        publish();
    }

    /// Removes a published id, running `removed(node)` under the shard lock. A reservation (an
    /// insert still in flight) is not a published id: it stays, and this returns `None`.
    pub(crate) fn remove_published(&self, id: u64, removed: impl FnOnce(u32)) -> Option<u32> {
        let mut s = self.shards[shard_of(id)].write();
        match s.get(&id) {
            Some(&n) if n != RESERVED => {
                s.remove(&id);
                removed(n);
                Some(n)
            }
            _ => None,
        }
    }

    /// Runs `f(node)` for a published id under the shard's read lock, so no transition of the id
    /// (publish, delete, replace) runs meanwhile; `None` when the id is absent or only reserved.
    pub(crate) fn with_published<R>(&self, id: u64, f: impl FnOnce(u32) -> R) -> Option<R> {
        let s = self.shards[shard_of(id)].read();
        match s.get(&id) {
            Some(&n) if n != RESERVED => Some(f(n)),
            _ => None,
        }
    }

    /// Like [`remove_published`](Self::remove_published), but only when `keep_going(node)`
    /// (evaluated under the shard lock, so the id cannot change meanwhile) says so.
    pub(crate) fn remove_published_if(
        &self,
        id: u64,
        keep_going: impl FnOnce(u32) -> bool,
        removed: impl FnOnce(u32),
    ) -> Option<u32> {
        let mut s = self.shards[shard_of(id)].write();
        match s.get(&id) {
            Some(&n) if n != RESERVED && keep_going(n) => {
                s.remove(&id);
                removed(n);
                Some(n)
            }
            _ => None,
        }
    }

    /// Points a published id at `node`, running `replaced(old)` under the shard lock. Returns the
    /// old node, or `None` (changing nothing) when the id is absent or only reserved.
    pub(crate) fn replace_published(&self, id: u64, node: u32, replaced: impl FnOnce(u32)) -> Option<u32> {
        let mut s = self.shards[shard_of(id)].write();
        match s.get_mut(&id) {
            Some(n) if *n != RESERVED => {
                let old = std::mem::replace(n, node);
                replaced(old);
                Some(old)
            }
            _ => None,
        }
    }

    /// Maps `id` to `node` while an index is rebuilt from a snapshot (single-threaded);
    /// `false` if the id is already mapped.
    pub(crate) fn restore(&self, id: u64, node: u32) -> bool {
        let mut s = self.shards[shard_of(id)].write();
        if s.contains_key(&id) {
            return false;
        }
        s.insert(id, node);
        true
    }

    /// Some published node, if any id is published (used to move the entry point).
    pub(crate) fn any_node(&self) -> Option<u32> {
        self.shards.iter().find_map(|s| s.read().values().copied().find(|&n| n != RESERVED))
    }

    /// Heap bytes held by the map (approximate: buckets of hashbrown with one control byte each).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().capacity() * (std::mem::size_of::<(u64, u32)>() + 1)).sum()
    }

    /// Every published (id, node) pair, in no particular order.
    pub(crate) fn entries(&self) -> Vec<(u64, u32)> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            v.extend(s.read().iter().filter(|(_, &n)| n != RESERVED).map(|(&id, &n)| (id, n)));
        }
        v
    }
}
