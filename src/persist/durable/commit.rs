//! Appending to the log: every logged write goes through `DurableIndex::commit`, which leaves
//! the log either with the whole of its records or with none of them.

use super::files::{create_log, log_name};
use super::{DurableIndex, SyncPolicy, Writer};
use crate::persist::error::{PersistError, Result};
use crate::persist::wal::{self, WAL_HEADER_LEN};
use std::path::PathBuf;
use std::time::{Duration, Instant};

impl DurableIndex {
    pub(super) fn log_path(&self, generation: u64) -> PathBuf {
        self.dir.join(log_name(generation))
    }

    /// Cuts the log back to its good prefix and syncs it.
    pub(super) fn truncate_to_good_prefix(&self, w: &mut Writer) -> Result<()> {
        let path = self.log_path(w.generation);
        let b = self.backend.as_ref();
        b.truncate(&path, w.good_len).map_err(PersistError::io("truncate", &path))?;
        b.sync(&path).map_err(PersistError::io("sync", &path))?;
        w.dirty = false;
        w.unsynced = false;
        w.last_sync = Instant::now();
        Ok(())
    }

    /// Makes the log ready for an append: created, and free of any failed tail.
    fn prepare_log(&self, w: &mut Writer) -> Result<()> {
        if let Some(reason) = &w.stats.poisoned {
            return Err(PersistError::Poisoned { reason: reason.clone() });
        }
        if !w.log_exists {
            create_log(self.backend.as_ref(), &self.dir, w.generation)?;
            w.log_exists = true;
            w.log_version = wal::WAL_VERSION;
            w.good_len = WAL_HEADER_LEN as u64;
            w.dirty = false;
            w.unsynced = false;
        }
        if w.dirty {
            self.truncate_to_good_prefix(w)?;
        }
        if w.log_version < wal::WAL_VERSION {
            // An older build may read that log: start one of the current version instead.
            self.checkpoint_locked(w)?;
        }
        Ok(())
    }

    /// Appends framed records and syncs them as the policy says. On error nothing of them
    /// stays in the log (or the log is marked to be cut back before the next append).
    pub(in crate::persist) fn commit(&self, w: &mut Writer, records: &[u8]) -> Result<()> {
        self.prepare_log(w)?;
        let path = self.log_path(w.generation);
        let b = self.backend.as_ref();
        w.dirty = true;
        if let Err(e) = b.append(&path, records) {
            let _ = self.truncate_to_good_prefix(w);
            return Err(PersistError::Io { op: "append", path, source: e });
        }
        let sync_now = match self.options.sync {
            SyncPolicy::EveryBatch => true,
            SyncPolicy::IntervalMs(ms) => w.last_sync.elapsed() >= Duration::from_millis(ms),
            SyncPolicy::Never => false,
        };
        if sync_now {
            if let Err(e) = b.sync(&path) {
                let _ = self.truncate_to_good_prefix(w);
                return Err(PersistError::Io { op: "sync", path, source: e });
            }
            w.unsynced = false;
            w.last_sync = Instant::now();
        } else {
            w.unsynced = true;
        }
        w.good_len += records.len() as u64;
        w.dirty = false;
        w.stats.log_bytes = w.good_len;
        Ok(())
    }

    pub(in crate::persist) fn poison(&self, w: &mut Writer, reason: String) -> PersistError {
        w.stats.poisoned = Some(reason.clone());
        PersistError::Poisoned { reason }
    }

    pub(in crate::persist) fn after_write(&self, w: &mut Writer) {
        if let Some(limit) = self.options.checkpoint_log_bytes {
            if w.good_len >= limit {
                if let Err(e) = self.checkpoint_locked(w) {
                    w.stats.auto_checkpoint_failures += 1;
                    w.stats.last_checkpoint_error = Some(e.to_string());
                }
            }
        }
    }
}
