//! Sharded map from user ids to node numbers.
//!
//! Shards keep concurrent inserts from serialising on one lock; the hash is a single multiply,
//! since ids are integers and need no protection against adversarial collisions more than the
//! high bits of a 64-bit multiplicative hash already give.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

    /// Sets the node of a reserved or present id.
    pub(crate) fn set(&self, id: u64, node: u32) {
        self.shards[shard_of(id)].write().insert(id, node);
    }

    /// Maps `id` to `node`, returning the published node it replaced.
    pub(crate) fn replace(&self, id: u64, node: u32) -> Option<u32> {
        match self.shards[shard_of(id)].write().insert(id, node) {
            Some(n) if n != RESERVED => Some(n),
            _ => None,
        }
    }

    /// Removes `id`, returning its node if it was published.
    pub(crate) fn remove(&self, id: u64) -> Option<u32> {
        match self.shards[shard_of(id)].write().remove(&id) {
            Some(n) if n != RESERVED => Some(n),
            _ => None,
        }
    }

    /// Removes `id` only if it maps to `node` (used to undo a reservation or a replaced mapping).
    pub(crate) fn remove_if(&self, id: u64, node: u32) -> bool {
        let mut s = self.shards[shard_of(id)].write();
        if s.get(&id) == Some(&node) {
            s.remove(&id);
            true
        } else {
            false
        }
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
