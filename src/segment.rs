//! Segment files: creation (preallocated, atomically named), reading, sealing.
//!
//! Only the active segment is written. Sealed segments are immutable and read through a memory
//! map. The writer reads its active segment through a read-only window onto the file, lending
//! records it published (and never rewrites) without a copy; it never trims the file below them,
//! so no lent page can raise SIGBUS. Another process's active segment (a read-only follower's)
//! is read with positioned reads: its writer trims it on its own schedule.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::{
    EncodedFrame, RECORD_HEADER_LEN, RecordKind, RecordView, SEGMENT_HEADER_LEN, SegmentHeader, parse_record,
};
use crate::vfs::{Mapping, OpenMode, Vfs, VfsFile, WrittenWindow};

/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a segment still being prepared; removed at open.
pub const TEMP_SUFFIX: &str = ".seg.tmp";

/// A segment file made ready ahead of use, still under its temporary name.
pub struct PreparedSegment {
    /// Its number.
    pub seq: u32,
    /// Its size.
    pub capacity: u64,
    temp: PathBuf,
    file: Arc<dyn VfsFile>,
}

impl PreparedSegment {
    /// Rename it into place and sync the directory: now it is segment `seq`.
    pub fn install(self, vfs: &dyn Vfs, dir: &Path) -> Result<Segment> {
        let path = segment_path(dir, self.seq);
        vfs.rename(&self.temp, &path).map_err(|e| Error::io("rename new segment", &path, e))?;
        sync_dir(vfs, dir)?;
        Ok(Segment::writing(self.seq, path, self.file))
    }

    /// Remove it (not needed after all).
    pub fn discard(self, vfs: &dyn Vfs) {
        let _ = vfs.remove_file(&self.temp);
    }
}

/// Where a record lives: segment, offset of its header in the segment, length of its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// Segment sequence number.
    pub segment: u32,
    /// Offset of the record header.
    pub offset: u32,
    /// Length of the record body.
    pub len: u32,
}

impl Loc {
    /// No location: segment numbers start at 1, so this names no record (a blob placeholder).
    pub const ABSENT: Loc = Loc { segment: 0, offset: 0, len: 0 };

    /// Bytes the record occupies on disk (header + body).
    pub fn disk_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("{seq:010}{SEGMENT_SUFFIX}"))
}

/// Write `frame` at `offset` of a segment file: one write call for a small frame, one per piece
/// for a large one (no copy of a large payload). The commit path and compaction write frames
/// through it.
pub fn write_frame(file: &dyn VfsFile, path: &Path, offset: u64, frame: &EncodedFrame<'_>) -> Result<()> {
    if frame.span() <= 256 * 1024 {
        return file.write_all_at(&frame.to_vec(), offset).map_err(|e| Error::io("write", path, e));
    }
    let mut at = offset;
    for piece in frame.pieces() {
        file.write_all_at(piece, at).map_err(|e| Error::io("write", path, e))?;
        at += piece.len() as u64;
    }
    Ok(())
}

/// fsync a directory, so that files created, renamed or removed in it stay so after a crash.
pub fn sync_dir(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    vfs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Bytes written to the active segment but still held in memory (durability `None`), so
/// readers can see them before they reach the file.
#[derive(Default)]
pub struct BufferedTail {
    /// Segment offset of `bytes[0]`.
    pub start: u64,
    /// The buffered bytes.
    pub bytes: Vec<u8>,
}

enum Storage {
    /// The segment being written: positioned reads and writes, plus the in-memory tail. The
    /// writer's own reads borrow written records from `window` (no system call, no copy) when
    /// the file system offers one.
    Active { file: Arc<dyn VfsFile>, tail: Mutex<BufferedTail>, window: Option<WrittenWindow> },
    /// An immutable segment, mapped.
    Sealed { map: Mapping },
}

/// One segment file.
pub struct Segment {
    /// Sequence number.
    pub seq: u32,
    /// Path, for error messages.
    pub path: PathBuf,
    storage: Storage,
}

impl Segment {
    /// Create segment `seq` in `dir`: written under a temporary name with its header, sized to
    /// `capacity` (zero-filled when `preallocate`, so later fdatasyncs need not journal size or
    /// block allocation changes), synced, then renamed into place and the directory synced.
    pub fn create(vfs: &dyn Vfs, dir: &Path, seq: u32, capacity: u64, preallocate: bool) -> Result<Segment> {
        Segment::prepare(vfs, dir, seq, capacity, preallocate)?.install(vfs, dir)
    }

    /// The first half of [`create`](Self::create): the file under its temporary name, header
    /// written, preallocated and synced. Nothing refers to it yet (removed at open if left).
    pub fn prepare(vfs: &dyn Vfs, dir: &Path, seq: u32, capacity: u64, preallocate: bool) -> Result<PreparedSegment> {
        let temp = dir.join(format!("{seq:010}{TEMP_SUFFIX}"));
        let file = vfs.open(&temp, OpenMode::CreateTruncate).map_err(|e| Error::io("create segment", &temp, e))?;
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let header = SegmentHeader { seq: u64::from(seq), capacity, created_unix_ms };
        file.write_all_at(&header.encode(), 0).map_err(|e| Error::io("write segment header", &temp, e))?;
        let body = capacity.saturating_sub(SEGMENT_HEADER_LEN as u64);
        if preallocate {
            file.allocate(SEGMENT_HEADER_LEN as u64, body).map_err(|e| Error::io("preallocate segment", &temp, e))?;
        } else {
            file.set_len(capacity).map_err(|e| Error::io("size segment", &temp, e))?;
        }
        file.sync_all().map_err(|e| Error::io("fsync new segment", &temp, e))?;
        Ok(PreparedSegment { seq, capacity, temp, file })
    }

    /// Wrap an open file as the active segment.
    pub fn active(seq: u32, path: PathBuf, file: Arc<dyn VfsFile>) -> Segment {
        Segment {
            seq,
            path,
            storage: Storage::Active { file, tail: Mutex::new(BufferedTail::default()), window: None },
        }
    }

    /// The writer's active segment: like [`Segment::active`], and its records are read through
    /// a window onto the file when the file system has one (a read-only shared mapping: the
    /// writer only appends past its records and trims no shorter than them).
    pub fn writing(seq: u32, path: PathBuf, file: Arc<dyn VfsFile>) -> Segment {
        let window = match file.written_window() {
            Ok(window) => window,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot map the active segment; reading it with pread");
                None
            }
        };
        Segment { seq, path, storage: Storage::Active { file, tail: Mutex::new(BufferedTail::default()), window } }
    }

    /// Open another process's active segment for reading (a read-only store beside a writer):
    /// positioned reads only, never mapped, because the writer trims it when it seals or closes
    /// it, and touching a mapped page past the new end would raise SIGBUS.
    pub fn following(vfs: &dyn Vfs, seq: u32, path: PathBuf) -> Result<Segment> {
        let file = vfs.open(&path, OpenMode::Read).map_err(|e| Error::io("open segment", &path, e))?;
        Ok(Segment::active(seq, path, file))
    }

    /// Every byte of the file as it is now: borrowed from the map when sealed, read when active.
    pub fn snapshot_bytes(&self) -> Result<Cow<'_, [u8]>> {
        match &self.storage {
            Storage::Sealed { map } => Ok(Cow::Borrowed(map)),
            Storage::Active { file, .. } => {
                let len = file.len().map_err(|e| Error::io("stat segment", &self.path, e))?;
                let len = usize::try_from(len).map_err(|_| Error::corruption(&self.path, 0, "segment too large"))?;
                let mut bytes = vec![0u8; len];
                file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read segment", &self.path, e))?;
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// Map an existing file as a sealed (immutable) segment.
    pub fn sealed(vfs: &dyn Vfs, seq: u32, path: PathBuf) -> Result<Segment> {
        let file = vfs.open(&path, OpenMode::Read).map_err(|e| Error::io("open segment", &path, e))?;
        let map = file.map().map_err(|e| Error::io("map segment", &path, e))?;
        Ok(Segment { seq, path, storage: Storage::Sealed { map } })
    }

    /// The file handle of the active segment; `None` once sealed.
    pub fn active_file(&self) -> Option<&Arc<dyn VfsFile>> {
        match &self.storage {
            Storage::Active { file, .. } => Some(file),
            Storage::Sealed { .. } => None,
        }
    }

    /// Size of the file: the mapped length when sealed, the file's length when active.
    pub fn file_len(&self) -> u64 {
        match &self.storage {
            Storage::Sealed { map } => map.len() as u64,
            Storage::Active { file, .. } => file.len().unwrap_or(0),
        }
    }

    /// All bytes of a sealed (mapped) segment.
    pub fn mapped_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Sealed { map } => Some(map),
            Storage::Active { .. } => None,
        }
    }

    /// The in-memory tail of the active segment.
    pub fn tail(&self) -> Option<&Mutex<BufferedTail>> {
        match &self.storage {
            Storage::Active { tail, .. } => Some(tail),
            Storage::Sealed { .. } => None,
        }
    }

    /// `len` bytes at `offset`: borrowed from the map when sealed, and from the written window
    /// when active (unless still in the buffered tail, or the file system has no window: then
    /// copied from the tail or read from the file).
    pub fn read(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let corrupt = |reason: &str| Error::corruption(&self.path, offset, reason);
        match &self.storage {
            Storage::Active { file, tail, .. } => {
                let end = offset + len as u64;
                let tail = tail.lock();
                if !tail.bytes.is_empty() && end > tail.start {
                    // Durability `None`: the record (or its end) is still in memory. Records
                    // never straddle: a frame is either buffered whole or written whole.
                    let from =
                        offset.checked_sub(tail.start).ok_or_else(|| corrupt("record straddles the buffered tail"))?;
                    let slice = usize::try_from(from)
                        .ok()
                        .and_then(|from| tail.bytes.get(from..from + len))
                        .ok_or_else(|| corrupt("record past the buffered tail"))?;
                    return Ok(Cow::Owned(slice.to_vec()));
                }
                drop(tail);
                // Records are read only once published by the index, after their frame was
                // written, and are never rewritten: what the window requires.
                if let Some(bytes) = self.written(offset, len) {
                    return Ok(Cow::Borrowed(bytes));
                }
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, offset).map_err(|e| Error::io("read", &self.path, e))?;
                Ok(Cow::Owned(buf))
            }
            Storage::Sealed { .. } => self
                .written(offset, len)
                .map(Cow::Borrowed)
                .ok_or_else(|| corrupt("record runs past the end of the segment")),
        }
    }

    /// `len` bytes at `offset` borrowed without a copy: from the map when sealed, from the
    /// written window when active (bytes the writer published and never writes again). `None`
    /// when out of range, or the active segment has no window.
    fn written(&self, offset: u64, len: usize) -> Option<&[u8]> {
        match &self.storage {
            Storage::Sealed { map } => {
                let start = usize::try_from(offset).ok()?;
                map.get(start..start.checked_add(len)?)
            }
            Storage::Active { window, .. } => window.as_ref()?.written(offset, len),
        }
    }
}

/// A record's bytes, CRC-checked, kept alive with the segment they came from.
pub struct RecordBytes {
    storage: RecordStorage,
    kind: RecordKind,
    /// Where it was read from, for error messages.
    pub loc: Loc,
}

enum RecordStorage {
    /// Borrowed, header included, from the segment's map or written window at `loc`.
    Mapped(Arc<Segment>),
    /// A copy of the record, header included.
    Owned(Vec<u8>),
}

impl RecordBytes {
    /// The checked record.
    pub fn view(&self) -> RecordView<'_> {
        let record: &[u8] = match &self.storage {
            // Lent again from where `Pinned::read` borrowed and checked it.
            #[expect(
                clippy::expect_used,
                reason = "the same range of the same segment lent to Pinned::read: a segment's map or window never changes, so it is lent again (an empty body here would be silent corruption)"
            )]
            RecordStorage::Mapped(segment) => segment
                .written(u64::from(self.loc.offset), RECORD_HEADER_LEN + self.loc.len as usize)
                .expect("a record lent once is lent again"),
            RecordStorage::Owned(bytes) => bytes,
        };
        RecordView { kind: self.kind, body: record.get(RECORD_HEADER_LEN..).unwrap_or_default() }
    }
}

/// A record's location with its segment held. Readers resolve locations under the index lock
/// and read after releasing it: a segment compaction retires meanwhile stays readable through
/// the pin (the map, or the active segment's file handle, outlives the unlinked file), so the
/// read returns the bytes the index named when the location was taken.
#[derive(Clone)]
pub struct Pinned {
    segment: Arc<Segment>,
    /// The record's location.
    pub loc: Loc,
    /// The set's count of bytes read, for the store's metrics.
    bytes_read: Arc<AtomicU64>,
}

impl Pinned {
    /// Read and check the record.
    pub fn read(&self) -> Result<RecordBytes> {
        let (segment, loc) = (&self.segment, self.loc);
        let len = usize::try_from(loc.disk_len()).map_err(|_| {
            Error::corruption(&segment.path, u64::from(loc.offset), "record longer than the address space")
        })?;
        let bytes = segment.read(u64::from(loc.offset), len)?;
        self.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
        let (view, total) =
            parse_record(&bytes).map_err(|reason| Error::corruption(&segment.path, u64::from(loc.offset), reason))?;
        if total != len || view.body.len() != loc.len as usize {
            return Err(Error::corruption(
                &segment.path,
                u64::from(loc.offset),
                "record length differs from the index",
            ));
        }
        let kind = view.kind;
        let storage = match bytes {
            Cow::Borrowed(_) => RecordStorage::Mapped(segment.clone()),
            Cow::Owned(vec) => RecordStorage::Owned(vec),
        };
        Ok(RecordBytes { storage, kind, loc })
    }

    /// A corruption error at this record (it passed its CRC but does not decode, or holds
    /// something other than the index says).
    pub fn corruption(&self, reason: impl Into<String>) -> Error {
        Error::corruption(&self.segment.path, u64::from(self.loc.offset), reason)
    }
}

/// The live segments, by sequence number; shared by the writer and all readers.
#[derive(Default)]
pub struct SegmentSet {
    segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    /// Bytes of records read through the set (the store's metrics).
    pub bytes_read: Arc<AtomicU64>,
}

impl SegmentSet {
    /// Add or replace a segment (replacing is how a segment goes from active to sealed).
    pub fn insert(&self, segment: Arc<Segment>) {
        self.segments.write().insert(segment.seq, segment);
    }

    /// Drop a retired segment from the set (readers holding it keep it alive).
    pub fn remove(&self, seq: u32) {
        self.segments.write().remove(&seq);
    }

    /// The segment with this sequence number.
    pub fn get(&self, seq: u32) -> Option<Arc<Segment>> {
        self.segments.read().get(&seq).cloned()
    }

    /// All segments in order.
    pub fn all(&self) -> Vec<Arc<Segment>> {
        self.segments.read().values().cloned().collect()
    }

    /// Read and check the record at `loc`.
    pub fn read_record(&self, loc: Loc) -> Result<RecordBytes> {
        self.pin(loc)?.read()
    }

    /// Hold the segment of `loc`, so the record can be read after the index lock is released.
    pub fn pin(&self, loc: Loc) -> Result<Pinned> {
        let segment = self.get(loc.segment).ok_or_else(|| {
            Error::corruption(format!("segment {}", loc.segment), u64::from(loc.offset), "segment is not open")
        })?;
        Ok(Pinned { segment, loc, bytes_read: self.bytes_read.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::RealFs;

    #[test]
    fn the_active_segment_lends_published_bytes_and_they_outlive_a_trim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = RealFs::shared();
        let segment = Segment::create(&*vfs, dir.path(), 1, 64 * 1024, true).expect("create");
        let file = segment.active_file().expect("active").clone();
        let at = SEGMENT_HEADER_LEN as u64;
        // Written after the window was mapped, as the writer does: the window sees the pwrite.
        file.write_all_at(b"a published record", at).expect("write");
        let lent = segment.read(at, 18).expect("read");
        assert!(matches!(lent, Cow::Borrowed(_)), "lent from the window, not copied");
        // Sealing trims the file to the end of its data, never below a published record: the
        // lent pages stay backed (touching a page past the end would raise SIGBUS).
        file.set_len(at + 18).expect("trim");
        assert_eq!(&*lent, b"a published record");
        // Past the window's range (or with no window) the bytes come from the file.
        assert!(segment.read(64 * 1024, 1).is_err(), "nothing past the end");
    }
}
