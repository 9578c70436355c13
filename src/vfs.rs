//! File I/O behind a small trait, so tests can inject faults and simulate power loss.
//!
//! Everything the store does to disk goes through [`Vfs`] and [`VfsFile`]: creating, listing,
//! renaming and removing files, positioned reads and writes, fdatasync, preallocation, mapping
//! sealed segments, and the directory lock. [`RealFs`] is the real file system; the `testing`
//! feature adds a power-loss simulator and a fault injector (`crate::testing`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An immutable view of a whole file (a memory map on the real file system).
pub type Mapping = Box<dyn Deref<Target = [u8]> + Send + Sync>;

/// A held lock; dropping it releases the lock.
pub type LockGuard = Box<dyn Send + Sync>;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created empty, or truncated to empty if it exists (unlike std's
    /// `create_new`, an existing file is not an error).
    CreateTruncate,
}

/// A directory of files.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Create a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` is an existing directory. A file system without directories (the
    /// simulator) says no, and the store syncs the parents of the directories it "creates".
    fn is_dir(&self, _path: &Path) -> bool {
        false
    }
    /// Names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Open a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// Rename a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Take an exclusive lock on `path` (created if missing) without waiting: `Ok(None)` if
    /// someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>>;
    /// Like [`Vfs::try_lock`] on an existing lock file opened read-only: for diagnostics, which
    /// must work on a read-only copy of a store and never create a file.
    fn try_lock_existing(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        self.try_lock(path)
    }
    /// A value that changes whenever the file at `path` is replaced or rewritten (`None` if it
    /// does not exist). A reader beside a writer stats the MANIFEST with it on every call to
    /// notice a rotation or a compaction without reading the file. The default reads the file
    /// (its length and CRC): exact, for the simulators; the real file system stats it.
    fn stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        let file = match self.open(path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.len()?;
        let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| io::Error::other("file too large to stamp"))?];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(Some(FileStamp([len, u64::from(crc32fast::hash(&bytes)), 0, 0])))
    }
}

/// What [`Vfs::stamp`] returns: equal stamps mean the file was not replaced or rewritten.
/// On the real file system: inode, length, and modification and change times in nanoseconds.
/// (The kernel's file times tick at its timer's resolution, a few milliseconds: a file replaced
/// twice within one tick by one of the same length on a recycled inode would look unchanged
/// until its next change.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStamp(pub [u64; 4]);

/// An open file. Positioned I/O only, so one handle serves concurrent readers and the writer.
#[expect(
    clippy::len_without_is_empty,
    reason = "`len` is a fallible file-size query like std's Metadata::len, not a collection length; adding a method to this public trait would change its API"
)]
pub trait VfsFile: Send + Sync {
    /// Fill `buf` from `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make the file's data (and the size needed to read it) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Make the file's data and metadata durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Truncate or extend (with zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Preallocate `len` bytes from `offset` as written zeros, so later overwrites and their
    /// fdatasyncs need no block allocation or size change.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Current size.
    fn len(&self) -> io::Result<u64>;
    /// An immutable view of the whole file. The caller promises not to write or truncate the
    /// file while the view lives.
    fn map(&self) -> io::Result<Mapping>;
    /// A window onto the file as it is being written (the writer's active segment), for reading
    /// what was written without a system call; `None` where there is none (the simulators),
    /// and the caller reads with [`VfsFile::read_exact_at`].
    fn written_window(&self) -> io::Result<Option<WrittenWindow>> {
        Ok(None)
    }
    /// A window to write the file through without a system call (the writer's active segment
    /// in `Flush` mode); `None` where there is none, and the caller writes with
    /// [`VfsFile::write_all_at`].
    fn writing_window(&self) -> io::Result<Option<WritingWindow>> {
        Ok(None)
    }
}

/// A read-write shared mapping of the writer's active segment. Bytes copied into it are in the
/// page cache when the copy ends, as after a `pwrite`: a process crash keeps them, an
/// fdatasync makes them durable. Its owner drops it before it trims the file.
pub struct WritingWindow {
    map: memmap2::MmapRaw,
}

impl WritingWindow {
    /// Copy `bytes` to `offset`; `false` if the range is outside the window (then the caller
    /// writes with `pwrite`). The caller is the file's only writer and promises that nothing
    /// in this process reads the range until the write is published to it through a lock.
    pub(crate) fn write(&self, bytes: &[u8], offset: u64) -> bool {
        let Ok(start) = usize::try_from(offset) else { return false };
        if start.checked_add(bytes.len()).is_none_or(|end| end > self.map.len()) {
            return false;
        }
        // SAFETY: the range lies inside the mapping, which the owner keeps no longer than the
        // file (it drops the window before any trim), so every page is backed. The owner is the
        // only writer, and by its promise no reader in this process touches the range before
        // the write is published (readers elsewhere use read(2) and check CRCs), so the copy
        // races no access.
        #[expect(unsafe_code, reason = "the Flush-mode write path through the active segment's mapping; see SAFETY")]
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.as_mut_ptr().add(start), bytes.len());
        }
        true
    }
}

/// A read-only shared mapping of a file that its owner keeps writing (with positioned writes,
/// which the page cache makes visible through the mapping) and may shorten (trim) but never
/// below what it has written. [`WrittenWindow::written`] lends bytes the owner wrote before and
/// never writes again: the records of the active segment. Bytes of those ranges are never
/// written while lent, and a trim never cuts into them, so a loan neither races a write nor
/// touches a page past the end of the file.
pub struct WrittenWindow {
    map: memmap2::MmapRaw,
}

impl WrittenWindow {
    /// The `len` bytes at `offset`, borrowed from the mapping (no copy). The caller promises
    /// that they were written (and published to it through a lock) before, and are never
    /// written again; `None` if the range is outside the window (then it reads from the file).
    pub(crate) fn written(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        if start.checked_add(len).is_none_or(|end| end > self.map.len()) {
            return None;
        }
        // SAFETY: the range lies inside the mapping (checked above), which lives as long as
        // `self`. By the caller's promise its bytes were written before this read was published
        // to it and are never written again while the window lives, so nothing mutates them for
        // the borrow's lifetime (the writer only writes past them, through its own mapping or
        // pwrite); the file is never trimmed below them, so their pages stay backed (no SIGBUS).
        #[expect(unsafe_code, reason = "reading written bytes of the active segment through its mapping; see SAFETY")]
        unsafe {
            Some(std::slice::from_raw_parts(self.map.as_ptr().add(start), len))
        }
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl RealFs {
    /// The real file system, shared.
    pub fn shared() -> Arc<dyn Vfs> {
        Arc::new(RealFs)
    }
}

struct RealFile(File);

impl Vfs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        fs::read_dir(dir)?.map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let file = match mode {
            OpenMode::Read => File::open(path)?,
            OpenMode::ReadWrite => OpenOptions::new().read(true).write(true).open(path)?,
            OpenMode::CreateTruncate => {
                OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?
            }
        };
        Ok(Arc::new(RealFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        FileLock::try_acquire(OpenOptions::new().create(true).truncate(false).write(true).open(path)?)
    }

    fn stamp(&self, path: &Path) -> io::Result<Option<FileStamp>> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(FileStamp([
                meta.ino(),
                meta.len(),
                nanos(meta.mtime(), meta.mtime_nsec()),
                nanos(meta.ctime(), meta.ctime_nsec()),
            ]))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_lock_existing(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        // flock does not care how the descriptor was opened.
        FileLock::try_acquire(File::open(path)?)
    }
}

/// The directory lock on the real file system: an flock on the LOCK file, released explicitly
/// when dropped. Closing our descriptor is not enough: flock belongs to the open file
/// description, and a `fork` on another thread (a `Command::spawn`, Python's `subprocess`)
/// duplicates every descriptor until its child execs. Between the fork and the exec the child
/// would hold the store locked after `close` returned, and a reopen in this process failed
/// with `Locked`. An explicit unlock releases the description's lock whoever shares it.
/// A child made by `fork` without `exec` shares the description too: its copy of the guard
/// must not unlock it (that would release the parent's lock), so only the process that took
/// the lock unlocks it.
struct FileLock {
    file: File,
    owner_pid: u32,
}

impl FileLock {
    fn try_acquire(file: File) -> io::Result<Option<LockGuard>> {
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FileLock { file, owner_pid: std::process::id() }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Nothing to do on failure: the descriptor closes right after, which releases the lock
        // unless a forked child shares it, and then only until that child execs or exits.
        if std::process::id() == self.owner_pid {
            let _ = self.file.unlock();
        }
    }
}

/// A file time as one number (only compared for equality).
fn nanos(seconds: i64, nanoseconds: i64) -> u64 {
    seconds.cast_unsigned().wrapping_mul(1_000_000_000).wrapping_add(nanoseconds.cast_unsigned())
}

impl VfsFile for RealFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        // Written zeros rather than fallocate: ext4 keeps fallocated blocks "unwritten", and the
        // first overwrite then journals an extent conversion at every fdatasync.
        let mut zeros = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20)];
        let end = offset + len;
        let mut at = offset;
        while at < end {
            // Shorter only for the last piece.
            zeros.truncate(usize::try_from(end - at).unwrap_or(usize::MAX));
            self.0.write_all_at(&zeros, at)?;
            at += zeros.len() as u64;
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn writing_window(&self) -> io::Result<Option<WritingWindow>> {
        if self.len()? == 0 {
            return Ok(None);
        }
        Ok(Some(WritingWindow { map: memmap2::MmapOptions::new().map_raw(&self.0)? }))
    }

    fn written_window(&self) -> io::Result<Option<WrittenWindow>> {
        if self.len()? == 0 {
            return Ok(None);
        }
        Ok(Some(WrittenWindow { map: memmap2::MmapOptions::new().map_raw_read_only(&self.0)? }))
    }

    fn map(&self) -> io::Result<Mapping> {
        if self.len()? == 0 {
            // A zero-length map is an error on Linux; an empty view is what the caller means.
            return Ok(Box::new(Vec::new()));
        }
        // SAFETY: the store maps only sealed segments, which it never writes or truncates again;
        // compaction unlinks a retired segment while readers may still map it, which leaves the
        // mapped pages valid until the last `Arc<Segment>` drops. The directory lock keeps other
        // logsaver writers out. A foreign process modifying the file is outside the store's
        // contract.
        #[expect(unsafe_code, reason = "mmap of a sealed segment; the one unsafe block, see SAFETY")]
        let map = unsafe { memmap2::Mmap::map(&self.0) }?;
        Ok(Box::new(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_lock_releases_it_while_a_duplicated_descriptor_lives_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("LOCK");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).expect("open");
        // What a fork on another thread does to every descriptor until its child execs: a
        // second descriptor on the same open file description.
        let forked_child_copy = file.try_clone().expect("dup");
        let guard = FileLock::try_acquire(file).expect("lock").expect("free");
        assert!(RealFs.try_lock(&path).expect("lock").is_none(), "held while the guard lives");
        drop(guard);
        assert!(RealFs.try_lock(&path).expect("lock").is_some(), "released although a duplicate is open");
        drop(forked_child_copy);
    }
}
