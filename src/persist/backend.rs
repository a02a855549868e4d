//! The storage backend: every file operation of the persistence layer goes through [`Backend`],
//! so tests can run the same code against [`MemBackend`], which injects faults and simulates
//! crashes, instead of the real filesystem ([`FileBackend`]).
//!
//! # Durability model
//! A backend distinguishes what a program sees (the *visible* state) from what survives a
//! crash or power loss (the *durable* state), in the terms POSIX guarantees:
//!
//! - [`write`](Backend::write), [`append`](Backend::append) and [`truncate`](Backend::truncate)
//!   change a file's visible contents only; [`sync`](Backend::sync) makes the file's current
//!   contents durable.
//! - Creating, renaming and removing a file change the visible directory only;
//!   [`sync_dir`](Backend::sync_dir) makes the directory's current entries durable. A new file
//!   whose contents were synced is still lost in a crash if its directory was not synced after
//!   it was created (or renamed into place).
//!
//! [`MemBackend`] implements exactly this model, and [`MemBackend::crash`] keeps only the
//! durable state. The persistence layer is written so that a crash at any point leaves a state
//! it can recover from under this model.

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File operations used by the persistence layer.
///
/// Paths are used as given: a backend never resolves or normalises them. Implementations must
/// be usable from many threads at once.
pub trait Backend: Send + Sync {
    /// The whole visible contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates the file, or truncates it if it exists, and writes `data` (not synced).
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Appends `data` to the file, creating it if needed (not synced).
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Shortens (or extends with zeros) the file to `len` bytes (not synced).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the file's current contents durable (`fsync`).
    fn sync(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from` (visible at once, durable after [`sync_dir`](Self::sync_dir)).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable after [`sync_dir`](Self::sync_dir)).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates a directory and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Paths of the files directly inside `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Takes the exclusive lock named by `path` (a lock file, created if needed): `Ok(false)`
    /// if it is held already, by this process or another. Held until
    /// [`unlock`](Self::unlock) or the end of the process.
    fn try_lock(&self, path: &Path) -> io::Result<bool>;
    /// Releases a lock taken by [`try_lock`](Self::try_lock).
    fn unlock(&self, path: &Path) -> io::Result<()>;
}

/// The real filesystem through `std::fs`, with real `fsync`.
///
/// The file last appended to stays open, so a write-ahead log does not reopen its file for
/// every record; any other operation on that path closes it first.
#[derive(Debug, Default)]
pub struct FileBackend {
    open: Mutex<Option<(PathBuf, File)>>,
    /// Lock files held, each with the open handle that holds its lock.
    locks: Mutex<HashMap<PathBuf, File>>,
}

impl FileBackend {
    /// A backend over the real filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// Closes the cached handle if it belongs to `path`.
    fn forget(&self, path: &Path) {
        let mut open = self.open.lock();
        if open.as_ref().is_some_and(|(p, _)| p == path) {
            *open = None;
        }
    }
}

impl Backend for FileBackend {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.forget(path);
        let mut f = File::create(path)?;
        f.write_all(data)
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut open = self.open.lock();
        if open.as_ref().is_none_or(|(p, _)| p != path) {
            let f = OpenOptions::new().create(true).append(true).open(path)?;
            *open = Some((path.to_path_buf(), f));
        }
        match open.as_mut() {
            Some((_, f)) => f.write_all(data),
            None => Err(io::Error::other("append handle missing")),
        }
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.forget(path);
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        {
            let open = self.open.lock();
            if let Some((p, f)) = open.as_ref() {
                if p == path {
                    return f.sync_data();
                }
            }
        }
        // fsync through any descriptor of the file flushes the file (POSIX); Windows needs
        // write access for FlushFileBuffers.
        #[cfg(unix)]
        let f = File::open(path)?;
        #[cfg(not(unix))]
        let f = OpenOptions::new().write(true).open(path)?;
        f.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            // Directory entries cannot be synced through std elsewhere; NTFS journals them.
            let _ = dir;
            Ok(())
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn try_lock(&self, path: &Path) -> io::Result<bool> {
        let mut locks = self.locks.lock();
        if locks.contains_key(path) {
            return Ok(false);
        }
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match f.try_lock() {
            Ok(()) => {
                locks.insert(path.to_path_buf(), f);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn unlock(&self, path: &Path) -> io::Result<()> {
        match self.locks.lock().remove(path) {
            // Closing the handle releases the lock too; unlocking first reports errors.
            Some(f) => f.unlock(),
            None => Ok(()),
        }
    }
}

/// Whether an injected fault fires once or for every operation from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Only the chosen operation fails.
    Once,
    /// The chosen operation and every later one fail, until [`MemBackend::clear_faults`].
    Forever,
}

/// What a simulated crash keeps of data written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every file reverts to its last synced contents.
    DropUnsynced,
    /// A file that only grew since its last sync keeps its synced contents plus the first `n`
    /// unsynced bytes (a torn append); any other unsynced change is dropped.
    KeepUnsyncedPrefix(usize),
    /// Every directory change (creation, rename, removal) survives although no directory sync
    /// made it durable, as a filesystem may persist them at any time; file contents revert to
    /// their last sync. Together with [`CrashMode::DropUnsynced`] this brackets what a real
    /// crash can leave of unsynced directory changes.
    KeepDirectoryEntries,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    /// Visible contents.
    data: Vec<u8>,
    /// Contents as of the last sync.
    synced: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
struct MemState {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Visible directory entries: path → inode.
    visible: BTreeMap<PathBuf, u64>,
    /// Durable directory entries: path → inode.
    durable: BTreeMap<PathBuf, u64>,
    /// Directories created (directories themselves are durable at once in this model).
    dirs: BTreeSet<PathBuf>,
    /// Locks held (released by a crash, like a dead process's locks).
    locks: BTreeSet<PathBuf>,
    ops: u64,
    fault: Option<(u64, FailMode)>,
    trace: Vec<String>,
}

impl MemState {
    /// Counts an operation and says whether it must fail.
    fn tick(&mut self, what: &str, path: &Path) -> io::Result<()> {
        let n = self.ops;
        self.ops += 1;
        self.trace.push(format!("{n}: {what} {}", path.display()));
        match self.fault {
            Some((at, FailMode::Once)) if n == at => {
                self.fault = None;
                Err(injected(n))
            }
            Some((at, FailMode::Forever)) if n >= at => Err(injected(n)),
            _ => Ok(()),
        }
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.visible.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn create(&mut self, path: &Path) -> u64 {
        if let Some(&i) = self.visible.get(path) {
            return i;
        }
        let i = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(i, Inode::default());
        self.visible.insert(path.to_path_buf(), i);
        i
    }

    fn inode_mut(&mut self, i: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&i).ok_or_else(|| io::Error::other("dangling inode"))
    }
}

fn injected(n: u64) -> io::Error {
    io::Error::other(format!("injected fault at operation {n}"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

/// An in-memory filesystem for tests: tracks visible and durable state separately (see the
/// [module documentation](self)), counts operations, injects faults and simulates crashes.
///
/// Every [`Backend`] call is one operation, numbered from 0. A failing operation returns an
/// `io::Error` and changes nothing, except a failing `write` or `append`, which first applies
/// half of its bytes, as a short write on a full disk can.
///
/// Directories are implicit: any path can hold files, and `create_dir_all` only records the
/// directory for [`exists`](Backend::exists). Locks are not files; a crash releases them.
///
/// ```
/// use hnsw_batch::persist::{Backend, MemBackend};
/// use std::path::Path;
/// let fs = MemBackend::new();
/// let p = Path::new("d/a");
/// fs.write(p, b"hello").unwrap();
/// fs.sync(p).unwrap();
/// fs.crash(); // the directory entry was never synced: the file is gone
/// assert!(!fs.exists(p).unwrap());
/// fs.write(p, b"hello").unwrap();
/// fs.sync(p).unwrap();
/// fs.sync_dir(Path::new("d")).unwrap();
/// fs.append(p, b" world").unwrap();
/// fs.crash(); // the unsynced append is lost
/// assert_eq!(fs.read(p).unwrap(), b"hello");
/// ```
#[derive(Debug, Default)]
pub struct MemBackend {
    state: Mutex<MemState>,
}

impl MemBackend {
    /// An empty filesystem.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the operation `n` operations from now fail (`n = 0`: the next one), and with
    /// [`FailMode::Forever`] every operation after it too. Replaces any earlier fault.
    pub fn fail_after(&self, n: u64, mode: FailMode) {
        let mut s = self.state.lock();
        s.fault = Some((s.ops.saturating_add(n), mode));
    }

    /// Removes any pending fault.
    pub fn clear_faults(&self) {
        self.state.lock().fault = None;
    }

    /// An independent copy of this filesystem (files, durable state, counters and faults), to
    /// try several crash outcomes from one state.
    pub fn fork(&self) -> MemBackend {
        MemBackend { state: Mutex::new(self.state.lock().clone()) }
    }

    /// Operations performed so far (failed ones included).
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// A line per operation performed so far (`"N: op path"`), for debugging tests.
    pub fn trace(&self) -> Vec<String> {
        self.state.lock().trace.clone()
    }

    /// Simulates a crash or power loss: only the durable state survives
    /// ([`CrashMode::DropUnsynced`]). Pending faults stay in place.
    pub fn crash(&self) {
        self.crash_with(CrashMode::DropUnsynced);
    }

    /// Simulates a crash, keeping what `mode` says of unsynced data.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut s = self.state.lock();
        s.locks.clear();
        if mode == CrashMode::KeepDirectoryEntries {
            s.durable = s.visible.clone();
        }
        s.visible = s.durable.clone();
        let live: BTreeSet<u64> = s.visible.values().copied().collect();
        s.inodes.retain(|i, _| live.contains(i));
        for inode in s.inodes.values_mut() {
            let grew = inode.data.len() > inode.synced.len() && inode.data.starts_with(&inode.synced);
            match mode {
                CrashMode::KeepUnsyncedPrefix(n) if grew => {
                    let keep = (inode.synced.len() + n).min(inode.data.len());
                    inode.data.truncate(keep);
                    inode.synced = inode.data.clone();
                }
                _ => inode.data = inode.synced.clone(),
            }
        }
    }

    /// The visible contents of a file, without counting an operation.
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let i = s.visible.get(path)?;
        s.inodes.get(i).map(|n| n.data.clone())
    }

    /// Replaces a file with `data`, durably (contents and directory entry), without counting an
    /// operation: for tests that plant damaged files.
    pub fn set_file(&self, path: &Path, data: &[u8]) {
        let mut s = self.state.lock();
        let i = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(i, Inode { data: data.to_vec(), synced: data.to_vec() });
        s.visible.insert(path.to_path_buf(), i);
        s.durable.insert(path.to_path_buf(), i);
        let live: BTreeSet<u64> = s.visible.values().chain(s.durable.values()).copied().collect();
        s.inodes.retain(|i, _| live.contains(i));
    }

    /// Every visible file path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.lock().visible.keys().cloned().collect()
    }
}

impl Backend for MemBackend {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.state.lock();
        s.tick("read", path)?;
        let i = s.inode_of(path)?;
        Ok(s.inodes.get(&i).map(|n| n.data.clone()).unwrap_or_default())
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        let r = s.tick("write", path);
        let i = s.create(path);
        let inode = s.inode_mut(i)?;
        inode.data.clear();
        match r {
            Ok(()) => {
                inode.data.extend_from_slice(data);
                Ok(())
            }
            Err(e) => {
                inode.data.extend_from_slice(&data[..data.len() / 2]);
                Err(e)
            }
        }
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        let r = s.tick("append", path);
        let i = s.create(path);
        let inode = s.inode_mut(i)?;
        match r {
            Ok(()) => {
                inode.data.extend_from_slice(data);
                Ok(())
            }
            Err(e) => {
                inode.data.extend_from_slice(&data[..data.len() / 2]);
                Err(e)
            }
        }
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("truncate", path)?;
        let i = s.inode_of(path)?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        s.inode_mut(i)?.data.resize(len, 0);
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("sync", path)?;
        let i = s.inode_of(path)?;
        let inode = s.inode_mut(i)?;
        inode.synced = inode.data.clone();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("rename", from)?;
        let i = s.inode_of(from)?;
        s.visible.remove(from);
        s.visible.insert(to.to_path_buf(), i);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("remove", path)?;
        s.inode_of(path)?;
        s.visible.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("sync_dir", dir)?;
        let in_dir = |p: &Path| p.parent().unwrap_or(Path::new("")) == dir;
        s.durable.retain(|p, _| !in_dir(p));
        let entries: Vec<(PathBuf, u64)> =
            s.visible.iter().filter(|(p, _)| in_dir(p)).map(|(p, &i)| (p.clone(), i)).collect();
        s.durable.extend(entries);
        let live: BTreeSet<u64> = s.visible.values().chain(s.durable.values()).copied().collect();
        s.inodes.retain(|i, _| live.contains(i));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("create_dir_all", dir)?;
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
            s.dirs.insert(p.to_path_buf());
            d = p.parent();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut s = self.state.lock();
        s.tick("list", dir)?;
        Ok(s.visible.keys().filter(|p| p.parent().unwrap_or(Path::new("")) == dir).cloned().collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut s = self.state.lock();
        s.tick("exists", path)?;
        Ok(s.visible.contains_key(path)
            || s.dirs.contains(path)
            || s.visible.keys().any(|p| p.starts_with(path)))
    }

    fn try_lock(&self, path: &Path) -> io::Result<bool> {
        let mut s = self.state.lock();
        s.tick("try_lock", path)?;
        Ok(s.locks.insert(path.to_path_buf()))
    }

    fn unlock(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.tick("unlock", path)?;
        s.locks.remove(path);
        Ok(())
    }
}
