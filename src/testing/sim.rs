//! `SimFs`: an in-memory file system that simulates power loss.
//!
//! Every file keeps a *durable* image (what survived the last fdatasync) and the operations
//! since then. Directory entries are durable only after `sync_dir`. [`SimFs::crash`] plays the
//! power cut: unsynced directory changes vanish, and each unsynced write is independently kept,
//! dropped or torn (a prefix of it reaches the disk), so writeback reordering is covered too.
//! Handles opened before a crash fail every later call, like a process that died.
#![expect(
    clippy::cast_possible_truncation,
    reason = "simulated files are Vec<u8> in memory: their offsets and lengths fit in usize, or they could not be simulated"
)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::testing::Rng;
use crate::vfs::{LockGuard, Mapping, OpenMode, Vfs, VfsFile};

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[expect(clippy::indexing_slicing, reason = "content is first resized to cover `offset..end`")]
fn apply(content: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::Write { offset, data } => {
            let end = *offset as usize + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => content.resize(*len as usize, 0),
    }
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Directory entries as the running system sees them.
    live_names: BTreeMap<PathBuf, u64>,
    /// Directory entries as they would be found after a power cut.
    durable_names: BTreeMap<PathBuf, u64>,
    locked: Vec<PathBuf>,
    /// Fail the n-th `sync_data` from now (counted down) the way Linux does: EIO, and the
    /// file's dirty data is dropped from the disk's future (the page cache still shows it).
    failing_sync: Option<u64>,
    /// Counters, for reports.
    crashes: u64,
    torn_writes: u64,
    dropped_writes: u64,
}

/// The power-loss simulator. Cheap to clone: clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: this handle belongs to a crashed machine")
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        SimFs::default()
    }

    /// A disk holding `files` (path → contents), all durable.
    pub fn with_files(files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>) -> Self {
        let fs = SimFs::new();
        {
            let mut state = fs.state.lock();
            for (path, content) in files {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, Inode { live: content.clone(), durable: content, pending: Vec::new() });
                state.live_names.insert(path.clone(), inode);
                state.durable_names.insert(path, inode);
            }
        }
        fs
    }

    /// This disk as a shared [`Vfs`].
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// Cut the power: keep what was durable, keep, drop or tear each unsynced write (decided by
    /// `seed`), forget unsynced directory changes, and kill every open handle and lock.
    pub fn crash(&self, seed: u64) {
        let mut rng = Rng(seed | 1);
        let mut state = self.state.lock();
        state.generation += 1;
        state.crashes += 1;
        state.locked.clear();
        state.live_names = state.durable_names.clone();
        let (mut torn, mut dropped) = (0, 0);
        for inode in state.inodes.values_mut() {
            let mut content = std::mem::take(&mut inode.durable);
            for op in inode.pending.drain(..) {
                match (rng.next() % 10, op) {
                    (0..=4, op) => apply(&mut content, &op),
                    (5..=7, _) => dropped += 1,
                    (_, Pending::Write { offset, data }) => {
                        // A torn write: some leading sectors made it, the rest did not.
                        let keep = (rng.next() % (data.len() as u64 + 1)) as usize;
                        #[expect(
                            clippy::indexing_slicing,
                            reason = "keep <= data.len(): a remainder modulo data.len() + 1"
                        )]
                        apply(&mut content, &Pending::Write { offset, data: data[..keep].to_vec() });
                        torn += 1;
                    }
                    (_, Pending::SetLen(_)) => dropped += 1,
                }
            }
            inode.live = content.clone();
            inode.durable = content;
        }
        state.torn_writes += torn;
        state.dropped_writes += dropped;
        let reachable: Vec<u64> = state.durable_names.values().copied().collect();
        state.inodes.retain(|id, _| reachable.contains(id));
    }

    /// The live contents of a file, if it exists.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.live_names.get(path)?;
        state.inodes.get(inode).map(|i| i.live.clone())
    }

    /// Replace a file's contents, durably (for corruption tests).
    pub fn write(&self, path: &Path, content: Vec<u8>) {
        let mut state = self.state.lock();
        let inode = match state.live_names.get(path) {
            Some(&inode) => inode,
            None => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.live_names.insert(path.to_path_buf(), inode);
                state.durable_names.insert(path.to_path_buf(), inode);
                inode
            }
        };
        state.inodes.insert(inode, Inode { live: content.clone(), durable: content, pending: Vec::new() });
    }

    /// Make the `nth` `sync_data` from now fail with EIO, losing that file's unsynced writes:
    /// they stay visible to reads (the page cache) but never reach the disk, and a later
    /// `sync_data` succeeds without them (Linux reports a writeback error once).
    pub fn fail_sync_losing_data(&self, nth: u64) {
        self.state.lock().failing_sync = Some(nth.max(1));
    }

    /// Crashes so far, and unsynced writes torn and dropped by them.
    pub fn crash_counts(&self) -> (u64, u64, u64) {
        let state = self.state.lock();
        (state.crashes, state.torn_writes, state.dropped_writes)
    }
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
    writable: bool,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock();
        if state.generation != self.generation {
            return Err(dead());
        }
        let inode = state.inodes.get_mut(&self.inode).ok_or_else(dead)?;
        f(inode)
    }

    fn mutate(&self, op: Pending) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(9)); // EBADF, as for a read-only fd
        }
        self.with(|inode| {
            apply(&mut inode.live, &op);
            inode.pending.push(op);
            Ok(())
        })
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .live_names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut state = self.state.lock();
        let inode = match (mode, state.live_names.get(path).copied()) {
            (OpenMode::CreateTruncate, existing) => {
                let inode = existing.unwrap_or_else(|| {
                    let inode = state.next_inode;
                    state.next_inode += 1;
                    inode
                });
                state.live_names.insert(path.to_path_buf(), inode);
                let entry = state.inodes.entry(inode).or_default();
                // Truncation is a pending change like any other.
                entry.live.clear();
                entry.pending.push(Pending::SetLen(0));
                inode
            }
            (_, Some(inode)) => inode,
            (_, None) => return Err(missing(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: state.generation,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = state.live_names.remove(from).ok_or_else(|| missing(from))?;
        state.live_names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.live_names.remove(path).map(|_| ()).ok_or_else(|| missing(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let live: Vec<(PathBuf, u64)> =
            state.live_names.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
        state.durable_names.retain(|path, _| !in_dir(path));
        state.durable_names.extend(live);
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let mut state = self.state.lock();
        if state.locked.iter().any(|p| p == path) {
            return Ok(None);
        }
        state.locked.push(path.to_path_buf());
        Ok(Some(Box::new(SimLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
            generation: state.generation,
        })))
    }
}

struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.generation == self.generation {
            state.locked.retain(|p| *p != self.path);
        }
    }
}

impl VfsFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|inode| {
            let start = offset as usize;
            let slice = inode
                .live
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"))?;
            buf.copy_from_slice(slice);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(Pending::Write { offset, data: buf.to_vec() })
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.generation != self.generation {
            return Err(dead());
        }
        let fail = match state.failing_sync {
            Some(1) => {
                state.failing_sync = None;
                true
            }
            Some(n) => {
                state.failing_sync = Some(n - 1);
                false
            }
            None => false,
        };
        let inode = state.inodes.get_mut(&self.inode).ok_or_else(dead)?;
        if fail {
            inode.pending.clear();
            return Err(io::Error::from_raw_os_error(5));
        }
        for op in std::mem::take(&mut inode.pending) {
            apply(&mut inode.durable, &op);
        }
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(Pending::SetLen(len))
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.mutate(Pending::Write { offset, data: vec![0; len as usize] })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|inode| Ok(inode.live.len() as u64))
    }

    fn map(&self) -> io::Result<Mapping> {
        self.with(|inode| Ok(Box::new(inode.live.clone()) as Mapping))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_survives_and_unsynced_data_may_not() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let file = fs.open(&dir.join("a"), OpenMode::CreateTruncate).expect("create");
        file.write_all_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        fs.sync_dir(dir).expect("sync dir");
        file.write_all_at(b"LOST???", 0).expect("write");
        let other = fs.open(&dir.join("b"), OpenMode::CreateTruncate).expect("create unsynced name");
        other.write_all_at(b"x", 0).expect("write");
        other.sync_data().expect("sync");
        // Find a seed that drops the overwrite: the durable image must come back exactly.
        let seed = (1..1000)
            .find(|&seed| {
                let probe = SimFs::new();
                let f = probe.open(Path::new("/p"), OpenMode::CreateTruncate).expect("create");
                f.sync_data().expect("sync");
                f.write_all_at(b"z", 0).expect("write");
                probe.sync_dir(Path::new("/")).expect("sync dir");
                probe.crash(seed);
                probe.read(Path::new("/p")).is_some_and(|c| c.is_empty())
            })
            .expect("some seed drops a write");
        fs.crash(seed);
        assert_eq!(fs.read(&dir.join("a")).as_deref(), Some(&b"durable"[..]));
        assert!(fs.read(&dir.join("b")).is_none(), "a name never made durable by sync_dir is gone");
        assert!(file.len().is_err(), "handles from before the crash are dead");
    }
}
