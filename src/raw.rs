//! Crate-internal access to an index's raw parts, for snapshots and log replay.
//!
//! Export walks fully linked nodes in node order; restore rebuilds the same node numbers, so a
//! loaded index has exactly the saved graph.

use crate::index::Index;
use crate::links::{ListCodec, NARROW_NODES};
use crate::store::MAX_LEVEL;

/// One node as stored: everything a snapshot needs to rebuild it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawNode {
    pub(crate) id: u64,
    pub(crate) level: usize,
    pub(crate) deleted: bool,
    /// Stored bytes ([`persisted_vector_bytes`]: `dim * element_size`, or the `f32` original
    /// for `Storage::Sq8`, whose codes are derived from it).
    pub(crate) vector: Vec<u8>,
    /// Neighbour lists, level 0 first (`level + 1` lists).
    pub(crate) links: Vec<Vec<u32>>,
}

/// Bytes of one node's vector in snapshots and exports: the stored row, except for
/// `Storage::Sq8`, which saves the exact `f32` original (its codes are re-derived on load).
pub(crate) fn persisted_vector_bytes(cfg: &crate::IndexConfig) -> usize {
    match cfg.storage {
        crate::Storage::Sq8 => cfg.dim * 4,
        s => cfg.dim * s.element_size(),
    }
}

impl Index {
    /// Node slots handed out, ready or not (holes are reported by `raw_node` as `None`).
    pub(crate) fn raw_node_count(&self) -> u32 {
        self.store.allocated()
    }

    /// Node `n`, or `None` if it is not fully linked (an insert in flight or an abandoned slot).
    pub(crate) fn raw_node(&self, n: u32) -> Option<RawNode> {
        if n >= self.store.allocated() || !self.store.is_ready(n) {
            return None;
        }
        let level = self.store.level(n);
        let mut links = Vec::with_capacity(level + 1);
        for l in 0..=level {
            let mut v = Vec::new();
            self.store.read_links(n, l, &mut v);
            links.push(v);
        }
        Some(RawNode {
            id: self.store.id(n),
            level,
            deleted: self.store.is_deleted(n),
            vector: {
                let _pin = crate::epoch::pin();
                if self.cfg.storage == crate::Storage::Sq8 {
                    // SAFETY: `n` was seen ready (a published node) and the thread is pinned
                    // while it copies the vector (`store.rs`, "Slot reuse").
                    let exact = unsafe { self.store.exact_f32(n) };
                    bytemuck::cast_slice::<f32, u8>(exact).to_vec()
                } else {
                    // SAFETY: as above.
                    unsafe { self.store.vector_bytes(n) }.to_vec()
                }
            },
            links,
        })
    }

    /// Whether node `n`, exported as live with `id`, is still consistent or has settled: it is
    /// the node the id map names for `id`, or it has been tombstoned since (a delete or an update
    /// in flight finished). A live node the id map does not name is otherwise id-map corruption.
    pub(crate) fn raw_id_settled(&self, n: u32, id: u64) -> bool {
        self.ids.get(&self.store, id) == Some(n) || self.store.is_deleted(n) || !self.store.is_ready(n)
    }

    /// The entry point `(node, level)`.
    pub(crate) fn raw_entry(&self) -> Option<(u32, usize)> {
        self.entry_point()
    }

    /// Rebuilds an index from nodes in node order (`None` = a hole) and an entry point.
    /// Checks everything a corrupt snapshot could get wrong and returns a description on error;
    /// the caller wraps it in its own error type.
    ///
    /// `sq8`: the quantisation parameters of a `Storage::Sq8` index (`None`: untrained, which
    /// only an index without nodes can be).
    pub(crate) fn from_raw(
        cfg: crate::IndexConfig,
        sq8: Option<crate::distance::sq8::Sq8Params>,
        nodes: Vec<Option<RawNode>>,
        entry: Option<(u32, usize)>,
    ) -> Result<Index, String> {
        // A snapshot of an index that had more node numbers than 3-byte links can name (its
        // `max_elements` lowered since, or written before they existed) keeps 4-byte ones.
        let codec = if nodes.len() as u64 >= NARROW_NODES {
            ListCodec::WIDE
        } else {
            ListCodec::for_max_elements(cfg.max_elements)
        };
        let index = Index::with_codec(cfg, crate::distance::kernels(), codec).map_err(|e| e.to_string())?;
        let is_sq8 = index.cfg.storage == crate::Storage::Sq8;
        let unfit = match sq8 {
            Some(p) => (!index.set_sq8_params(p))
                .then_some("sq8 parameters do not fit the index (dimension or storage)"),
            None => (is_sq8 && nodes.iter().any(|n| n.is_some()))
                .then_some("sq8 index has vectors but no quantisation parameters"),
        };
        if let Some(e) = unfit {
            return Err(e.into());
        }
        let count = u32::try_from(nodes.len()).map_err(|_| "too many nodes".to_string())?;
        let vec_bytes = persisted_vector_bytes(&index.cfg);
        for (n, node) in nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            if node.level > MAX_LEVEL || node.links.len() != node.level + 1 || node.vector.len() != vec_bytes
            {
                return Err(format!("node {n}: bad level, link lists or vector length"));
            }
            for (l, list) in node.links.iter().enumerate() {
                if list.len() > index.store.cap(l) {
                    return Err(format!("node {n}: {} links on level {l}", list.len()));
                }
                for &t in list {
                    let ok = nodes.get(t as usize).and_then(|x| x.as_ref()).is_some_and(|x| x.level >= l);
                    if !ok || t as usize == n {
                        return Err(format!("node {n}: bad link to {t} on level {l}"));
                    }
                }
            }
        }
        if count > 0 && index.store.alloc(count).is_none() {
            return Err("out of memory for nodes".into());
        }
        // Nodes first, links second: counting a link needs its target's upper-level block.
        let mut exact: Vec<f32> = Vec::new();
        let mut codes: Vec<u8> = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let (row, original): (&[u8], &[u8]) = if is_sq8 {
                exact.clear();
                exact.extend(
                    node.vector.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
                );
                index.encode(&exact, &mut codes);
                (&codes, bytemuck::cast_slice(&exact))
            } else {
                (&node.vector, &[])
            };
            // SAFETY: the index is new and not shared yet: no other thread can read any node.
            if !unsafe { index.store.init_node(n as u32, node.id, node.level, row, original) } {
                return Err("out of memory for links".into());
            }
        }
        let mut live = 0usize;
        for (n, node) in nodes.iter().enumerate() {
            let n = n as u32;
            let Some(node) = node else { continue };
            {
                let _g = index.store.lock(n);
                for (l, list) in node.links.iter().enumerate() {
                    index.store.set_links(n, l, list);
                }
            }
            index.store.mark_ready(n);
            if node.deleted {
                // Snapshots of earlier versions kept tombstones: unlink them like any delete.
                index.store.mark_deleted(n);
                index.slots.push_pending(n);
            } else {
                if !index.ids.restore(&index.store, node.id, n) {
                    return Err(format!("id {} appears twice", node.id));
                }
                live += 1;
            }
        }
        match entry {
            Some((ep, level)) => {
                let ok = nodes.get(ep as usize).and_then(|x| x.as_ref()).is_some_and(|x| x.level == level);
                if !ok {
                    return Err(format!("entry point {ep} at level {level} is not a node of that level"));
                }
                index.set_entry(ep, level);
            }
            None if nodes.iter().any(|x| x.is_some()) => return Err("nodes but no entry point".into()),
            None => {}
        }
        if index.cfg.max_elements.is_some_and(|m| live > m) {
            return Err(format!("{live} live vectors exceed max_elements"));
        }
        index.set_counts(live);
        Ok(index)
    }
}
