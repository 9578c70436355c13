//! `FaultFs`: wraps a [`Vfs`] and fails the n-th operation of a kind with a chosen OS error
//! (ENOSPC for a full disk, EIO for a failed fsync, EROFS for a read-only directory, ...).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::vfs::{LockGuard, Mapping, OpenMode, Vfs, VfsFile};

/// The operations a fault can hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `write_all_at`.
    Write,
    /// `sync_data`, `sync_all` and `sync_dir`.
    Sync,
    /// `allocate` and `set_len`.
    Allocate,
    /// `rename`.
    Rename,
    /// Opening a file for writing (create or read-write).
    OpenWrite,
    /// Any of the above: a crash point counted over all mutating operations.
    Any,
}

/// Which operation fails, and how.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// The kind of operation counted.
    pub kind: FaultKind,
    /// The 1-based count at which it fails.
    pub nth: u64,
    /// The OS error number returned (28 = ENOSPC, 5 = EIO, 30 = EROFS).
    pub errno: i32,
    /// Keep failing every later operation of the kind (a disk that stays full).
    pub sticky: bool,
}

#[derive(Debug, Default)]
struct Plan {
    fault: Mutex<Option<Fault>>,
    counts: Mutex<std::collections::HashMap<FaultKind, u64>>,
    injected: AtomicU64,
}

impl Plan {
    fn check(&self, kind: FaultKind) -> io::Result<()> {
        let Some(fault) = *self.fault.lock() else { return Ok(()) };
        let mut counts = self.counts.lock();
        let mut fire = false;
        for counted in [kind, FaultKind::Any] {
            let count = counts.entry(counted).or_insert(0);
            *count += 1;
            if fault.kind == counted && (*count == fault.nth || (fault.sticky && *count > fault.nth)) {
                fire = true;
            }
        }
        if fire {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::from_raw_os_error(fault.errno));
        }
        Ok(())
    }
}

/// A file system that fails on schedule.
#[derive(Clone, Debug)]
pub struct FaultFs {
    inner: Arc<dyn Vfs>,
    plan: Arc<Plan>,
}

impl FaultFs {
    /// Wrap `inner`; no fault is armed yet.
    pub fn new(inner: Arc<dyn Vfs>) -> Self {
        FaultFs { inner, plan: Arc::default() }
    }

    /// Arm a fault, resetting the operation counters.
    pub fn arm(&self, fault: Fault) {
        self.plan.counts.lock().clear();
        *self.plan.fault.lock() = Some(fault);
    }

    /// Disarm.
    pub fn disarm(&self) {
        *self.plan.fault.lock() = None;
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.plan.injected.load(Ordering::Relaxed)
    }

    /// Operations of `kind` counted since the last `arm`.
    pub fn count(&self, kind: FaultKind) -> u64 {
        self.plan.counts.lock().get(&kind).copied().unwrap_or(0)
    }

    /// This file system as a shared [`Vfs`].
    pub fn vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }
}

impl Vfs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        if mode != OpenMode::Read {
            self.plan.check(FaultKind::OpenWrite)?;
        }
        let inner = self.inner.open(path, mode)?;
        Ok(Arc::new(FaultFile { inner, plan: self.plan.clone() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.plan.check(FaultKind::Rename)?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.plan.check(FaultKind::Sync)?;
        self.inner.sync_dir(dir)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        self.plan.check(FaultKind::OpenWrite)?;
        self.inner.try_lock(path)
    }

    fn try_lock_existing(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        self.inner.try_lock_existing(path)
    }

    fn stamp(&self, path: &Path) -> io::Result<Option<crate::vfs::FileStamp>> {
        self.inner.stamp(path)
    }
}

struct FaultFile {
    inner: Arc<dyn VfsFile>,
    plan: Arc<Plan>,
}

impl VfsFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.plan.check(FaultKind::Write)?;
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.plan.check(FaultKind::Sync)?;
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.plan.check(FaultKind::Sync)?;
        self.inner.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.plan.check(FaultKind::Allocate)?;
        self.inner.set_len(len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.plan.check(FaultKind::Allocate)?;
        self.inner.allocate(offset, len)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn map(&self) -> io::Result<Mapping> {
        self.inner.map()
    }

    // No windows: injected read and write faults must reach every read and write.
}
