//! Checkpoints: a snapshot of the current state, a fresh log, and removal of older generations.

use super::files::{classify, create_log, remove_file, snapshot_name, FileKind};
use super::{DurableIndex, Writer};
use crate::persist::error::{PersistError, Result};
use crate::persist::snapshot::{save_to_bytes, temp_path};
use crate::persist::wal::{self, WAL_HEADER_LEN};
use std::time::Instant;

impl DurableIndex {
    /// `checkpoint` with the writer lock held; counts the outcome in the stats.
    pub(super) fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        let r = self.checkpoint_steps(w);
        match &r {
            Ok(()) => {
                w.stats.checkpoints += 1;
                w.stats.last_checkpoint_error = None;
            }
            Err(e) => w.stats.last_checkpoint_error = Some(e.to_string()),
        }
        r
    }

    fn checkpoint_steps(&self, w: &mut Writer) -> Result<()> {
        let b = self.backend.as_ref();
        // The current log must be complete on disk: if the new snapshot were lost, recovery
        // falls back to the old snapshot and this log.
        if w.log_exists {
            if w.dirty {
                self.truncate_to_good_prefix(w)?;
            } else if w.unsynced {
                let path = self.log_path(w.generation);
                b.sync(&path).map_err(PersistError::io("sync", &path))?;
                w.unsynced = false;
                w.last_sync = Instant::now();
            }
        }
        let next = w.generation + 1;
        let path = self.dir.join(snapshot_name(next));
        let tmp = temp_path(&path)?;
        b.write(&tmp, &save_to_bytes(&self.index)).map_err(PersistError::io("write", &tmp))?;
        b.sync(&tmp).map_err(PersistError::io("sync", &tmp))?;
        b.rename(&tmp, &path).map_err(PersistError::io("rename", &tmp))?;
        // From here the new snapshot may survive a crash: the old log must never grow again.
        w.generation = next;
        w.log_exists = false;
        w.good_len = 0;
        w.dirty = false;
        w.unsynced = false;
        w.stats.generation = next;
        w.stats.log_bytes = 0;
        b.sync_dir(&self.dir).map_err(PersistError::io("sync_dir", &self.dir))?;
        create_log(b, &self.dir, next)?;
        w.log_exists = true;
        w.log_version = wal::WAL_VERSION;
        w.good_len = WAL_HEADER_LEN as u64;
        w.stats.log_bytes = w.good_len;
        // The new snapshot is durable: older generations are obsolete.
        let mut removed = false;
        for p in b.list(&self.dir).map_err(PersistError::io("list", &self.dir))? {
            let old = match classify(&p) {
                FileKind::Snapshot(g) | FileKind::Log(g) => g < next,
                FileKind::Temp | FileKind::Other => false,
            };
            if old {
                remove_file(b, &p)?;
                removed = true;
            }
        }
        if removed {
            b.sync_dir(&self.dir).map_err(PersistError::io("sync_dir", &self.dir))?;
        }
        Ok(())
    }
}
