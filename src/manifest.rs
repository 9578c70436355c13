//! The MANIFEST: which segment files make up the log, in replay order.
//!
//! Segment numbers only name files; the manifest orders them. That lets compaction put its
//! output (new files, new numbers) where the segments it replaces were, and makes the switch
//! atomic: the new manifest is written to `MANIFEST.tmp`, fsynced, renamed over `MANIFEST`, and
//! the directory fsynced. A segment file the manifest does not list never held acknowledged
//! data (a crashed rotation's new segment, a crashed compaction's output, a compacted segment
//! whose removal was interrupted) and is removed at open.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `"LGSVMAN1"` |
//! | 8 | 8 | generation (u64 LE, +1 per rewrite) |
//! | 16 | 4 | segment count n (u32 LE) |
//! | 20 | 4n | segment numbers in replay order (u32 LE) |
//! | 20+4n | 4 | CRC32 of everything before |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::segment::{SegmentSet, sync_dir};
use crate::vfs::{OpenMode, Vfs};

/// File name of the manifest in a store directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
const MAGIC: &[u8; 8] = b"LGSVMAN1";

/// The list of live segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Bumped by every rewrite.
    pub generation: u64,
    /// Segment numbers in replay order; the last one is the active segment.
    pub segments: Vec<u32>,
}

impl Manifest {
    /// The manifest's path in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// The encoded file.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(24 + 4 * self.segments.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.generation.to_le_bytes());
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the manifest lists distinct u32 segment numbers, so it holds fewer than 2^32 of them"
        )]
        bytes.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for seq in &self.segments {
            bytes.extend_from_slice(&seq.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parse and check a manifest file.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < 24 || !bytes.starts_with(MAGIC) {
            return Err("not a logsaver manifest".into());
        }
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else { return Err("not a logsaver manifest".into()) };
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            return Err("manifest checksum mismatch".into());
        }
        #[expect(
            clippy::indexing_slicing,
            reason = "read at 8, 12 and 16 (the body is at least 20 bytes) and at 20 + 4i for i < count, after checking that the body is 20 + 4 * count bytes"
        )]
        let word = |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let generation = u64::from(word(8)) | (u64::from(word(12)) << 32);
        let count = word(16) as usize;
        if body.len() != 20 + 4 * count {
            return Err(format!("manifest lists {count} segments but holds {} bytes", body.len()));
        }
        let segments = (0..count).map(|i| word(20 + 4 * i)).collect();
        Ok(Manifest { generation, segments })
    }

    /// Read the manifest of `dir`; `None` if there is none.
    pub fn load(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Manifest>> {
        let path = Manifest::path(dir);
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let mut bytes = vec![0u8; len.min(64 << 20) as usize];
        file.read_exact_at(&mut bytes, 0).map_err(|e| Error::io("read", &path, e))?;
        Manifest::decode(&bytes).map(Some).map_err(|reason| Error::corruption(&path, 0, reason))
    }

    /// Write this manifest atomically (temporary file, fsync, rename, directory fsync).
    pub fn store(&self, vfs: &dyn Vfs, dir: &Path) -> Result<()> {
        let path = Manifest::path(dir);
        let temp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let file = vfs.open(&temp, OpenMode::CreateTruncate).map_err(|e| Error::io("create", &temp, e))?;
        file.write_all_at(&self.encode(), 0).map_err(|e| Error::io("write", &temp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &temp, e))?;
        vfs.rename(&temp, &path).map_err(|e| Error::io("rename manifest", &path, e))?;
        sync_dir(vfs, dir)
    }
}

/// The files of a store: where they are, which segments are open, and the manifest. Shared by
/// the writer (rotation appends a segment) and compaction (which replaces a prefix).
pub struct Layout {
    /// The file system.
    pub vfs: Arc<dyn Vfs>,
    /// The store directory.
    pub dir: PathBuf,
    /// Open segments.
    pub segments: Arc<SegmentSet>,
    manifest: Mutex<Manifest>,
    next_segment: AtomicU32,
}

impl Layout {
    /// A layout over `manifest`; new segments are numbered from `next_segment`.
    pub fn new(
        vfs: Arc<dyn Vfs>,
        dir: PathBuf,
        segments: Arc<SegmentSet>,
        manifest: Manifest,
        next_segment: u32,
    ) -> Self {
        Layout { vfs, dir, segments, manifest: Mutex::new(manifest), next_segment: AtomicU32::new(next_segment) }
    }

    /// A number no segment file has had.
    pub fn new_segment_number(&self) -> u32 {
        self.next_segment.fetch_add(1, Ordering::Relaxed)
    }

    /// The current manifest.
    pub fn manifest(&self) -> Manifest {
        self.manifest.lock().clone()
    }

    /// Add a new active segment at the end of the log (durably, before it receives data).
    pub fn append_segment(&self, seq: u32) -> Result<()> {
        let mut manifest = self.manifest.lock();
        let mut next = manifest.clone();
        next.generation += 1;
        next.segments.push(seq);
        next.store(&*self.vfs, &self.dir)?;
        *manifest = next;
        Ok(())
    }

    /// Replace the leading segments `old` with `new` (compaction's atomic switch). Fails if the
    /// log no longer starts with `old`.
    pub fn replace_prefix(&self, old: &[u32], new: &[u32]) -> Result<()> {
        let mut manifest = self.manifest.lock();
        if !manifest.segments.starts_with(old) {
            return Err(Error::invariant(
                "the log changed under compaction: its first segments are not the compacted ones",
            ));
        }
        let mut next = manifest.clone();
        next.generation += 1;
        next.segments.splice(..old.len(), new.iter().copied());
        next.store(&*self.vfs, &self.dir)?;
        *manifest = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let manifest = Manifest { generation: 7, segments: vec![12, 3, 40] };
        let mut bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(manifest));
        bytes[21] ^= 1;
        assert!(Manifest::decode(&bytes).is_err());
        assert!(Manifest::decode(&bytes[..10]).is_err());
    }
}
