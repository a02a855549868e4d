//! Structural checks of the graph, for tests, fuzzing and after recovery.

use crate::index::Index;
use thiserror::Error;

/// A broken structural invariant found by [`Index::check_integrity`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// A neighbour list is longer than its level's bound.
    #[error("node {node} has {degree} links on level {level}, more than {cap}")]
    DegreeTooHigh {
        /// Node number.
        node: u32,
        /// Level.
        level: usize,
        /// Links found.
        degree: usize,
        /// The bound.
        cap: usize,
    },
    /// A node links to itself.
    #[error("node {node} links to itself on level {level}")]
    SelfLoop {
        /// Node number.
        node: u32,
        /// Level.
        level: usize,
    },
    /// A link points to a node that does not exist or does not reach that level.
    #[error("node {node} on level {level} links to {target}, which is not a node of that level")]
    DanglingLink {
        /// Node number.
        node: u32,
        /// Level.
        level: usize,
        /// The bad target.
        target: u32,
    },
    /// A neighbour appears twice in one list.
    #[error("node {node} lists {target} twice on level {level}")]
    DuplicateLink {
        /// Node number.
        node: u32,
        /// Level.
        level: usize,
        /// The repeated neighbour.
        target: u32,
    },
    /// The entry point is missing or not on the top level.
    #[error("entry point problem: {0}")]
    EntryPoint(String),
    /// Live nodes that a walk from the entry point on level 0 does not reach.
    #[error("{count} live nodes unreachable from the entry point on level 0 (first: id {first_id})")]
    Unreachable {
        /// How many.
        count: usize,
        /// The id of one of them.
        first_id: u64,
    },
    /// The id map and the node table disagree.
    #[error("id map inconsistent: {0}")]
    IdMap(String),
    /// A node's in-degree counter differs from the links that name it (slot reuse relies on it).
    #[error("node {node} is named by {actual} links on levels {levels} but its counter says {counted}")]
    InDegree {
        /// Node number.
        node: u32,
        /// `"0"` or `"above 0"`.
        levels: &'static str,
        /// Links found.
        actual: u32,
        /// The counter.
        counted: u32,
    },
    /// A list names a retired slot that is marked reusable.
    #[error("node {node} on level {level} links to retired slot {target}")]
    LinkToRetired {
        /// Node number.
        node: u32,
        /// Level.
        level: usize,
        /// The retired slot.
        target: u32,
    },
}

/// Counts gathered by a successful [`Index::check_integrity`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IntegrityStats {
    /// Fully linked nodes (live or deleted).
    pub nodes: usize,
    /// Live nodes.
    pub live: usize,
    /// Highest level.
    pub max_level: usize,
    /// Total links on level 0.
    pub links_level0: usize,
    /// Live nodes not reachable from the entry point on level 0. Always 0 for L2 and cosine
    /// (anything else is an error); under inner product, vectors that no query can rank first
    /// (inside the convex hull of the others) may legitimately be cut off, and are counted here.
    pub unreachable: usize,
}

impl Index {
    /// Checks the graph's structural invariants: degrees within bounds, no self-loops, no
    /// duplicate or dangling links, the entry point on the top level, every live node reachable
    /// from the entry point on level 0 (counted, not an error, under inner product: see
    /// [`IntegrityStats::unreachable`]), and the id map matching the node table.
    ///
    /// Meant for a quiescent index; nodes still being inserted by other threads are skipped.
    pub fn check_integrity(&self) -> Result<IntegrityStats, IntegrityError> {
        let store = &self.store;
        let n = store.allocated();
        let mut stats = IntegrityStats::default();
        let mut links = Vec::new();
        let mut in0 = vec![0u32; n as usize];
        let mut in_up = vec![0u32; n as usize];
        for node in 0..n {
            if !store.is_ready(node) {
                // Retired or in flight: its lists may still count (an in-flight insert's), so
                // count them too; a quiescent index has no node in flight.
                if store.is_free(node) {
                    for level in 0..=store.level(node) {
                        store.read_links(node, level, &mut links);
                        for &t in &links {
                            if let Some(c) =
                                if level == 0 { in0.get_mut(t as usize) } else { in_up.get_mut(t as usize) }
                            {
                                *c += 1;
                            }
                        }
                    }
                }
                continue;
            }
            stats.nodes += 1;
            if !store.is_deleted(node) {
                stats.live += 1;
                // Two live nodes with one id, or a live node the map lost: the map names at
                // most one node per id, so this finds both.
                let id = store.id(node);
                let named = self.ids.get(&self.store, id);
                if named != Some(node) {
                    return Err(IntegrityError::IdMap(format!(
                        "node {node} is live with id {id}, but the id map names {named:?}"
                    )));
                }
            }
            let lv = store.level(node);
            stats.max_level = stats.max_level.max(lv);
            for level in 0..=lv {
                store.read_links(node, level, &mut links);
                let raw = store.link_count(node, level);
                let cap = store.cap(level);
                if raw > cap {
                    return Err(IntegrityError::DegreeTooHigh { node, level, degree: raw, cap });
                }
                if level == 0 {
                    stats.links_level0 += links.len();
                }
                let mut sorted = links.clone();
                sorted.sort_unstable();
                for w in sorted.windows(2) {
                    if w[0] == w[1] {
                        return Err(IntegrityError::DuplicateLink { node, level, target: w[0] });
                    }
                }
                for &t in &links {
                    if t == node {
                        return Err(IntegrityError::SelfLoop { node, level });
                    }
                    if t >= n || store.level(t) < level {
                        return Err(IntegrityError::DanglingLink { node, level, target: t });
                    }
                    // A retired slot may regain a link from an insert that chose it before it
                    // was deleted (it is then flagged and never reused); a reusable one may not.
                    if store.is_reusable(t) {
                        return Err(IntegrityError::LinkToRetired { node, level, target: t });
                    }
                    if level == 0 {
                        in0[t as usize] += 1;
                    } else {
                        in_up[t as usize] += 1;
                    }
                }
            }
        }
        for node in 0..n {
            let (c0, cu) = (store.indeg(node), store.indeg_upper(node));
            // A stuck counter only promises that the node once had that many in-links.
            if c0 != in0[node as usize] && c0 != crate::store::INDEG_STUCK {
                return Err(IntegrityError::InDegree {
                    node,
                    levels: "0",
                    actual: in0[node as usize],
                    counted: c0,
                });
            }
            if store.level(node) > 0 && cu != in_up[node as usize] {
                return Err(IntegrityError::InDegree {
                    node,
                    levels: "above 0",
                    actual: in_up[node as usize],
                    counted: cu,
                });
            }
        }
        if stats.live != self.len() {
            return Err(IntegrityError::IdMap(format!(
                "{} live nodes but len() is {}",
                stats.live,
                self.len()
            )));
        }
        let entries = self.ids.entries(&self.store);
        if entries.len() != stats.live {
            return Err(IntegrityError::IdMap(format!(
                "{} ids mapped but {} live nodes",
                entries.len(),
                stats.live
            )));
        }
        // The map reads each entry's id from the store, so an entry always agrees with its
        // node's id; what can go wrong is an entry that lookups no longer reach (a broken probe
        // run) or a second entry for one id.
        for &(id, node) in &entries {
            if node >= n || !store.is_live(node) || self.ids.get(store, id) != Some(node) {
                return Err(IntegrityError::IdMap(format!(
                    "id {id} maps to node {node}, which is not its node"
                )));
            }
        }
        let Some((ep, top)) = self.entry_point() else {
            if stats.live > 0 {
                return Err(IntegrityError::EntryPoint("no entry point but live nodes exist".into()));
            }
            return Ok(stats);
        };
        if ep >= n || !store.is_ready(ep) {
            return Err(IntegrityError::EntryPoint(format!("entry node {ep} is not a linked node")));
        }
        // Deletes can move the entry point below the highest level (when the highest nodes are
        // gone or out of reach); searches and inserts start from the entry's own level.
        if store.level(ep) != top {
            return Err(IntegrityError::EntryPoint(format!(
                "entry level {top}, node level {}, highest level {}",
                store.level(ep),
                stats.max_level
            )));
        }
        let mut seen = vec![false; n as usize];
        let mut stack = vec![ep];
        seen[ep as usize] = true;
        while let Some(x) = stack.pop() {
            store.read_links(x, 0, &mut links);
            for &t in &links {
                if !seen[t as usize] {
                    seen[t as usize] = true;
                    stack.push(t);
                }
            }
        }
        let unreachable: Vec<u32> = (0..n).filter(|&x| store.is_live(x) && !seen[x as usize]).collect();
        stats.unreachable = unreachable.len();
        if self.cfg.metric == crate::Metric::InnerProduct {
            return Ok(stats);
        }
        if let Some(&first) = unreachable.first() {
            return Err(IntegrityError::Unreachable { count: unreachable.len(), first_id: store.id(first) });
        }
        Ok(stats)
    }

    /// A 64-bit digest of the graph: node ids, levels, every neighbour list and the entry point.
    /// Two indexes with equal digests have (with overwhelming probability) identical graphs; used
    /// to check that seeded single-threaded builds are reproducible.
    pub fn graph_fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |v: u64| {
            h = (h ^ v).wrapping_mul(0x100_0000_01b3);
            h ^= h >> 31;
        };
        let store = &self.store;
        let mut links = Vec::new();
        for node in 0..store.allocated() {
            if !store.is_ready(node) {
                continue;
            }
            mix(store.id(node));
            mix(store.level(node) as u64);
            for level in 0..=store.level(node) {
                store.read_links(node, level, &mut links);
                mix(links.len() as u64);
                links.iter().for_each(|&t| mix(t as u64));
            }
        }
        if let Some((ep, l)) = self.entry_point() {
            mix(ep as u64);
            mix(l as u64);
        }
        h
    }
}
