//! [`Index::to_storage`]: the same index with its vectors stored another way, keeping the
//! graph, ids, metadata and expiry times as they are.
//!
//! The graph is what costs time to make; the storage only decides how each visit reads a
//! vector. So an index can be built with one storage and searched with another. The main use is
//! a fast `f32` build: building under [`Storage::Sq8`] walks one-byte codes instead of `f32`
//! rows (a quarter of the memory traffic per distance; the walk is bound by memory, not
//! arithmetic), while every distance that picks and prunes links is exact, so the graph is as
//! good as one built under `f32` (measured in docs/benchmarks.md); converting it back to `f32`
//! takes one pass over the vectors.

use crate::config::Storage;
use crate::error::{IndexError, Result};
use crate::index::Index;
use crate::persist::snapshot;

impl Index {
    /// A new index holding this one's live vectors under `storage`, with the same graph (the
    /// same neighbour lists), ids, metadata, expiry times, parameters and default beam width.
    /// `self` is unchanged.
    ///
    /// Vectors are read in their exact form (for [`Storage::Sq8`], the `f32` originals kept for
    /// re-scoring) and stored as `storage` stores an inserted vector. Converting to `Sq8` trains
    /// the quantisation on a seeded sample of the vectors, as a first batch would; converting
    /// from `F16` or `U8` to `F32` gives the values those storages held. Tombstones are dropped
    /// (their links re-routed, as [`save`](Self::save) does), so node numbers may differ.
    ///
    /// The copy is made the way a snapshot is saved and loaded, without the file: for a while
    /// memory holds both indexes and one exported copy of every node. Meant for a quiescent
    /// index: under concurrent writes it holds some consistent state, as a snapshot would.
    ///
    /// Errors: [`IndexError::UnrepresentableValue`] when a vector cannot be stored as `storage`
    /// (`U8` takes integers in `0..=255`; `F16` values up to 65 504 in magnitude), naming the
    /// first such component; nothing is built then.
    ///
    /// ```
    /// use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric, Storage};
    /// let sq8 = Index::new(IndexConfig::new(2, Metric::L2).storage(Storage::Sq8))?;
    /// let items: Vec<(u64, Vec<f32>)> = (0..200).map(|i| (i, vec![i as f32, 1.0])).collect();
    /// sq8.insert_batch(&items, &BatchOptions::default()).expect("valid batch");
    /// let f32_index = sq8.to_storage(Storage::F32)?;
    /// assert_eq!(f32_index.config().storage, Storage::F32);
    /// assert_eq!(f32_index.get(7), Some(vec![7.0, 1.0]));
    /// assert_eq!(f32_index.search(&[41.2, 1.0], 1, 16)?[0].id, 41);
    /// assert!(f32_index.to_storage(Storage::U8).is_ok()); // whole numbers in 0..=255
    /// f32_index.insert(500, &[0.5, 1.0])?;
    /// assert!(f32_index.to_storage(Storage::U8).is_err()); // 0.5 is not a byte
    /// # Ok::<(), hnsw_batch::IndexError>(())
    /// ```
    pub fn to_storage(&self, storage: Storage) -> Result<Index> {
        let cfg = self.config().clone().storage(storage);
        // Holds the target's rules: `validate_vector` and `train_sq8_on` read only its config.
        let target = Index::new(cfg.clone())?;
        let (mut nodes, entry, meta) = snapshot::export_parts(self);
        let mut exact: Vec<Vec<f32>> = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let v = persisted_to_f32(self.config().storage, &node.vector);
            target.validate_vector(&v).map_err(IndexError::from)?;
            exact.push(v);
        }
        target.train_sq8_on(exact.len(), |i| &exact[i]);
        let mut buf = Vec::new();
        for (node, v) in nodes.iter_mut().zip(&exact) {
            node.vector = match storage {
                // A snapshot keeps the `f32` original of an `sq8` node; codes are derived.
                Storage::Sq8 => bytemuck::cast_slice::<f32, u8>(v).to_vec(),
                _ => {
                    target.encode(v, &mut buf);
                    std::mem::take(&mut buf)
                }
            };
        }
        drop(exact);
        let sq8 = target.sq8_params().cloned();
        let index = snapshot::rebuild(cfg, sq8, nodes, entry, Some(&meta)).map_err(|e| {
            IndexError::InvalidParameter {
                name: "storage",
                reason: format!("the converted index could not be rebuilt: {e}"),
            }
        })?;
        index.set_ef(self.ef())?;
        Ok(index)
    }
}

/// A node's vector as a snapshot holds it under `storage`, as `f32` values.
fn persisted_to_f32(storage: Storage, bytes: &[u8]) -> Vec<f32> {
    match storage {
        Storage::F32 | Storage::Sq8 => {
            bytes.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Storage::U8 => bytes.iter().map(|&b| b as f32).collect(),
        Storage::F16 => {
            let bits: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
            let mut out = vec![0.0; bits.len()];
            crate::distance::decode_f16(&bits, &mut out);
            out
        }
    }
}
