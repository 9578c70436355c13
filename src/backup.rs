//! Online backup: a consistent, point-in-time copy of a store, taken while writers keep going.
//!
//! The copy is planned in a moment and made afterwards. The writer's own store plans it with
//! the commit path held right after an fdatasync (`Committer::paused_durable`): the MANIFEST's
//! segments as they are, and the end of the last frame of the active one. A read-only store
//! (another process, beside the writer) plans it from the position it has caught up to. Then
//! every planned segment is copied (sealed segments whole: they never change again; the last
//! one up to the planned end) from the segments the plan holds open, so a compaction that
//! retires one meanwhile does not disturb the copy. The MANIFEST is written last: a copy that
//! did not finish has segment files and no MANIFEST, which no open mistakes for a store.
//!
//! The copy is a normal store (a closed one: its last segment ends at its last frame). It has
//! no INDEX snapshot, so its first open replays it. Restoring is opening it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Engine, create_store_dir};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::segment::{SEGMENT_SUFFIX, Segment, segment_path, sync_dir};
use crate::vfs::{OpenMode, Vfs};

/// Bytes copied per read and write.
const COPY_CHUNK: u64 = 1 << 20;

/// One segment of a backup plan: the segment (held open) and how many of its bytes to copy.
pub(crate) struct PlannedSegment {
    pub(crate) segment: Arc<Segment>,
    pub(crate) len: u64,
}

/// What a backup did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BackupStats {
    /// Segment files copied.
    pub segments: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Engine {
    /// Copy the store to `dest` (which must not exist, or be an empty directory). Everything
    /// committed before the call began is in the copy.
    pub(crate) fn backup(&self, dest: &Path) -> Result<BackupStats> {
        let _call = self.enter()?;
        let started = Instant::now();
        let vfs = &*self.layout.vfs;
        check_destination(vfs, &self.dir, dest)?;
        let plan = match &self.follower {
            Some(follower) => follower.plan_backup(&self.segments)?,
            None => self.committer.paused_durable(|end| {
                let manifest = self.layout.manifest();
                plan_segments(&manifest, &self.segments, |seq| (seq == end.segment).then_some(end.offset), &self.dir)
            })??,
        };
        let mut created = Vec::new();
        let copied = copy_segments(vfs, &plan, dest, &mut created, &|| self.closing());
        if copied.is_err() {
            // An unfinished copy has no MANIFEST, but a writer opening the directory would
            // remove its temporary files and start an empty store there: remove what was made.
            for path in created.iter().rev() {
                let _ = vfs.remove_file(path);
            }
        }
        let mut stats = copied?;
        stats.elapsed = started.elapsed();
        tracing::info!(dest = %dest.display(), segments = stats.segments, bytes = stats.bytes, "backup written");
        Ok(stats)
    }
}

/// The segments of `manifest` in order, with the bytes to copy of each: `end_of(seq)` for the
/// segment being written (the end of its last frame), the whole file for a sealed one.
pub(crate) fn plan_segments(
    manifest: &Manifest,
    segments: &crate::segment::SegmentSet,
    end_of: impl Fn(u32) -> Option<u64>,
    dir: &Path,
) -> Result<Vec<PlannedSegment>> {
    manifest
        .segments
        .iter()
        .map(|&seq| {
            let segment = segments.get(seq).ok_or_else(|| {
                Error::corruption(segment_path(dir, seq), 0, "a segment the MANIFEST lists is missing; no backup taken")
            })?;
            let len = end_of(seq).unwrap_or_else(|| segment.file_len());
            Ok(PlannedSegment { segment, len })
        })
        .collect()
}

/// `dest` must be new or an empty directory, and not the store itself.
fn check_destination(vfs: &dyn Vfs, source: &Path, dest: &Path) -> Result<()> {
    if dest == source {
        return Err(Error::invalid(format!("backup destination {} is the store itself", dest.display())));
    }
    if vfs.is_dir(dest) {
        let names = vfs.list(dest).map_err(|e| Error::io("list directory", dest, e))?;
        if !names.is_empty() {
            return Err(Error::invalid(format!(
                "backup destination {} is not empty ({} entries); give a new or empty directory",
                dest.display(),
                names.len()
            )));
        }
    }
    Ok(())
}

/// Copy the planned segments into `dest`, then write its MANIFEST. Stops (and says so) if
/// `closing` turns true: the source store is being closed.
fn copy_segments(
    vfs: &dyn Vfs,
    plan: &[PlannedSegment],
    dest: &Path,
    created: &mut Vec<std::path::PathBuf>,
    closing: &dyn Fn() -> bool,
) -> Result<BackupStats> {
    create_store_dir(vfs, dest)?;
    let mut stats = BackupStats::default();
    for planned in plan {
        let seq = planned.segment.seq;
        let path = segment_path(dest, seq);
        let temp = dest.join(format!("{seq:010}{SEGMENT_SUFFIX}.tmp"));
        let file = vfs.open(&temp, OpenMode::CreateTruncate).map_err(|e| Error::io("create", &temp, e))?;
        created.push(temp.clone());
        let mut offset = 0;
        while offset < planned.len {
            if closing() {
                return Err(Error::Closed);
            }
            let len = usize::try_from(COPY_CHUNK.min(planned.len - offset)).unwrap_or(usize::MAX);
            let bytes = planned.segment.read(offset, len)?;
            file.write_all_at(&bytes, offset).map_err(|e| Error::io("write", &temp, e))?;
            offset += len as u64;
        }
        file.sync_all().map_err(|e| Error::io("fsync", &temp, e))?;
        vfs.rename(&temp, &path).map_err(|e| Error::io("rename", &path, e))?;
        if let Some(last) = created.last_mut() {
            *last = path;
        }
        stats.segments += 1;
        stats.bytes += planned.len;
    }
    sync_dir(vfs, dest)?;
    let manifest = Manifest { generation: 1, segments: plan.iter().map(|p| p.segment.seq).collect() };
    manifest.store(vfs, dest)?;
    Ok(stats)
}
