//! Reading beside a live writer: a read-only store follows the log another process appends.
//!
//! A read-only open takes no lock. It recovers read-only (sealed segments mapped, the last one
//! read with positioned reads, since its writer trims it when it seals or closes it), then
//! catches up at the start of every call:
//!
//! 1. stat the MANIFEST; unchanged, go to 3;
//! 2. changed: read it. If segments were only appended (rotations), finish the last segment
//!    (its writer sealed it before listing the next) and follow the new ones; anything else (a
//!    compaction replaced a prefix, a writer reopened oddly) rebuilds the view from scratch;
//! 3. read the frame header at the cursor of the last segment: zeros mean nothing new (one
//!    positioned read of 32 bytes); valid frames are read, checked (CRCs, sequence) and applied
//!    to the index. The first bytes that are not a whole valid frame end the catch-up: a frame
//!    its writer has not finished writing is simply not there yet.
//!
//! So a reader sees a prefix of the frames its writer has written, whole frames only: a `put`
//! with all of its values, never half a group. A retired segment stays readable to it (a
//! sealed one through its map, the followed one through its open descriptor) until the view
//! stops naming it.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::{FRAME_HEADER_LEN, FrameHeader, FrameSlot, SEGMENT_HEADER_LEN, SegmentHeader, parse_frame};
use crate::index::{Applied, Index};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::options::RecoveryMode;
use crate::recovery::{Access, Recovered, record_loc, recover, replay_op};
use crate::segment::{Segment, SegmentSet, segment_path};
use crate::vfs::{FileStamp, Vfs};

/// How many times a read-only recovery is tried when what it found may be a writer's work in
/// progress (a segment compacted away between reading the MANIFEST and opening it, the last
/// segment's tail changing while it was copied).
const RECOVERY_ATTEMPTS: u32 = 5;

/// Bytes read ahead from the followed segment when a new frame is found (the segment's
/// preallocated zeros count as readable, so this bounds what a catch-up reads for nothing).
const READ_AHEAD: u64 = 64 << 10;

/// Where a read-only store is in the log it follows.
struct Position {
    /// The MANIFEST as last stat'ed.
    stamp: Option<FileStamp>,
    /// The segment list as last read.
    manifest: Manifest,
    /// The last segment (read with positioned reads), if it could be followed.
    tail: Option<Arc<Segment>>,
    /// Offset in `tail` of the next frame.
    cursor: u64,
    /// Sequence number of the last frame applied.
    last_frame_seq: u64,
    /// Whether a frame of `tail` was applied (then the next must be exactly the one after it;
    /// otherwise any higher number, as at the start of a segment).
    in_sequence: bool,
}

impl Position {
    fn new(recovered: &Recovered, stamp: Option<FileStamp>) -> Position {
        let (tail, cursor) = match &recovered.active {
            Some((segment, _, end)) => (Some(segment.clone()), *end),
            None => (None, SEGMENT_HEADER_LEN as u64),
        };
        let damaged_tail = tail.as_ref().is_some_and(|t| recovered.report.skipped.iter().any(|d| d.file == t.path));
        Position {
            stamp,
            manifest: recovered.manifest.clone().unwrap_or(Manifest { generation: 0, segments: Vec::new() }),
            tail,
            cursor,
            last_frame_seq: recovered.next_frame_seq.saturating_sub(1),
            in_sequence: cursor > SEGMENT_HEADER_LEN as u64 && !damaged_tail,
        }
    }
}

/// What reading the followed segment ended on.
enum TailEnd {
    /// The end of what is written (or being written) now.
    Caught,
    /// The file ends at the cursor: its writer trimmed it (sealed or closed it).
    Trimmed,
    /// A valid frame out of sequence: the log is not what this view was built from.
    Rebuild,
}

/// The catch-up state of a read-only store.
pub(crate) struct Follower {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    mode: RecoveryMode,
    use_snapshot: bool,
    position: Mutex<Position>,
}

impl Follower {
    /// Follow on from what `recover_read_only` returned (with the MANIFEST's stamp taken
    /// before it read the MANIFEST).
    pub(crate) fn new(
        vfs: Arc<dyn Vfs>,
        dir: PathBuf,
        mode: RecoveryMode,
        use_snapshot: bool,
        recovered: &Recovered,
        stamp: Option<FileStamp>,
    ) -> Follower {
        Follower { vfs, dir, mode, use_snapshot, position: Mutex::new(Position::new(recovered, stamp)) }
    }

    /// Apply whatever the writer has committed since the last call.
    pub(crate) fn catch_up(&self, index: &RwLock<Index>, segments: &SegmentSet) -> Result<()> {
        let mut position = self.position.lock();
        if self.follow_manifest(&mut position, index, segments, false)? {
            return Ok(());
        }
        match self.read_tail(&mut position, index, segments)? {
            TailEnd::Caught => Ok(()),
            // The followed segment ends at the cursor: its writer sealed it (a rotation: the
            // next segment is listed) or closed it. The MANIFEST's stamp cannot be trusted to
            // show that (rewritten twice within one timer tick, same length, recycled inode),
            // so it is read.
            TailEnd::Trimmed => {
                if self.follow_manifest(&mut position, index, segments, true)? {
                    return Ok(());
                }
                match self.read_tail(&mut position, index, segments)? {
                    TailEnd::Rebuild => self.rebuild(&mut position, index, segments),
                    TailEnd::Caught | TailEnd::Trimmed => Ok(()),
                }
            }
            TailEnd::Rebuild => self.rebuild(&mut position, index, segments),
        }
    }

    /// If the MANIFEST changed (its stamp, or `force`: read it anyway), follow new segments or
    /// rebuild. Returns whether the view was rebuilt (nothing more to read then).
    fn follow_manifest(
        &self,
        position: &mut Position,
        index: &RwLock<Index>,
        segments: &SegmentSet,
        force: bool,
    ) -> Result<bool> {
        let manifest_path = self.dir.join(MANIFEST_FILE);
        let stamp = self.vfs.stamp(&manifest_path).map_err(|e| Error::io("stat", &manifest_path, e))?;
        if force || stamp != position.stamp {
            let manifest = Manifest::load(&*self.vfs, &self.dir)?.ok_or_else(|| {
                Error::corruption(&manifest_path, 0, "the MANIFEST disappeared while the store was open read-only")
            })?;
            if manifest != position.manifest {
                let old = position.manifest.segments.clone();
                let rotated = manifest.segments.len() > old.len()
                    && manifest.segments.starts_with(&old)
                    && position.tail.as_ref().map(|t| t.seq) == old.last().copied();
                if !rotated {
                    self.rebuild(position, index, segments)?;
                    return Ok(true);
                }
                // Its writer sealed the last segment before it listed the next one: read it
                // to its end, then follow each new segment in turn.
                if let TailEnd::Rebuild = self.read_tail(position, index, segments)? {
                    self.rebuild(position, index, segments)?;
                    return Ok(true);
                }
                for &seq in manifest.segments.get(old.len()..).unwrap_or_default() {
                    let Some(segment) = self.open_listed(seq)? else {
                        self.rebuild(position, index, segments)?;
                        return Ok(true);
                    };
                    segments.insert(segment.clone());
                    // Listed as it is followed: a failure later in this loop leaves a position
                    // whose list names every segment it reads (a backup plans from it), and the
                    // stamp unchanged, so the next call reads the MANIFEST again.
                    position.manifest.segments.push(seq);
                    position.tail = Some(segment);
                    position.cursor = SEGMENT_HEADER_LEN as u64;
                    position.in_sequence = false;
                    if let TailEnd::Rebuild = self.read_tail(position, index, segments)? {
                        self.rebuild(position, index, segments)?;
                        return Ok(true);
                    }
                }
                position.manifest = manifest;
            }
            position.stamp = stamp;
        }
        Ok(false)
    }

    /// The backup plan of a read-only store: the segments of the MANIFEST as last read, the
    /// followed one up to the frames caught up with (call after `catch_up`).
    pub(crate) fn plan_backup(&self, segments: &SegmentSet) -> Result<Vec<crate::backup::PlannedSegment>> {
        let position = self.position.lock();
        let tail = position.tail.as_ref().map(|tail| (tail.seq, position.cursor));
        crate::backup::plan_segments(
            &position.manifest,
            segments,
            |seq| tail.filter(|(followed, _)| *followed == seq).map(|(_, end)| end),
            &self.dir,
        )
    }

    /// Open segment `seq`, just listed, to follow it; `None` if it is gone already (compacted
    /// away meanwhile: the caller rebuilds).
    fn open_listed(&self, seq: u32) -> Result<Option<Arc<Segment>>> {
        let path = segment_path(&self.dir, seq);
        let segment = match Segment::following(&*self.vfs, seq, path.clone()) {
            Ok(segment) => segment,
            Err(error) if error.io_kind() == Some(io::ErrorKind::NotFound) => return Ok(None),
            Err(error) => return Err(error),
        };
        let header = segment.read(0, SEGMENT_HEADER_LEN)?;
        match SegmentHeader::decode(&header) {
            Ok(header) if header.seq == u64::from(seq) => Ok(Some(Arc::new(segment))),
            Ok(header) => {
                Err(Error::corruption(&path, 0, format!("header names segment {}, file name {seq}", header.seq)))
            }
            Err(reason) => Err(Error::corruption(&path, 0, format!("damaged segment header: {reason}"))),
        }
    }

    /// Read and apply the whole valid frames after the cursor of the followed segment.
    fn read_tail(&self, position: &mut Position, index: &RwLock<Index>, segments: &SegmentSet) -> Result<TailEnd> {
        let Some(tail) = position.tail.clone() else { return Ok(TailEnd::Caught) };
        let seq = u64::from(tail.seq);
        loop {
            let mut slot = [0u8; FRAME_HEADER_LEN];
            if !read_fully(&tail, &mut slot, position.cursor)? {
                return Ok(TailEnd::Trimmed);
            }
            let FrameSlot::Frame(first) = FrameHeader::decode(&slot, seq) else {
                return Ok(TailEnd::Caught); // nothing yet, or a header being written
            };
            let file_len = tail.file_len();
            let available = file_len.saturating_sub(position.cursor);
            if available < first.span() {
                return Ok(TailEnd::Caught);
            }
            let want = usize::try_from(first.span().max(READ_AHEAD).min(available))
                .map_err(|_| Error::corruption(&tail.path, position.cursor, "frame larger than the address space"))?;
            let mut chunk = vec![0u8; want];
            if !read_fully(&tail, &mut chunk, position.cursor)? {
                // The writer trimmed the file between the length and the read (it sealed the
                // segment: a rotation). Never below a frame it wrote, so look again with the
                // new length: giving up here would hide frames already acknowledged.
                continue;
            }
            let mut at = 0usize;
            let mut out_of_order = false;
            let mut index = index.write();
            while let Some(rest) = chunk.get(at..).filter(|rest| rest.len() >= FRAME_HEADER_LEN) {
                // A frame not (yet) whole ends this pass; the next call looks again.
                let Ok((frame, records)) = parse_frame(rest, seq) else { break };
                let offset = position.cursor + at as u64;
                let follows = match position.in_sequence {
                    true => frame.frame_seq == position.last_frame_seq + 1,
                    false => frame.frame_seq > position.last_frame_seq,
                };
                if !follows || frame.synced_upto > offset {
                    out_of_order = true;
                    break;
                }
                for (relative, record) in records {
                    let loc = record_loc(&tail, offset, relative, &record)?;
                    replay_op(&tail, loc, &record, |op| index.apply(op, loc, segments))?;
                }
                let span = usize::try_from(frame.span()).unwrap_or(usize::MAX);
                at = at.saturating_add(span);
                index.applied =
                    Applied { segment: tail.seq, offset: offset + frame.span(), frame_seq: frame.frame_seq };
                position.last_frame_seq = frame.frame_seq;
                position.in_sequence = true;
            }
            drop(index);
            position.cursor += at as u64;
            if out_of_order {
                tracing::warn!(file = %tail.path.display(), offset = position.cursor, "a frame out of sequence: rebuilding the read-only view");
                return Ok(TailEnd::Rebuild);
            }
            if at == 0 {
                return Ok(TailEnd::Caught);
            }
        }
    }

    /// Build the view again from what is on disk now, and swap it in: segments first (so every
    /// location of the new index can be read), then the index, then the segments it no longer
    /// names are let go (readers holding one keep it alive).
    fn rebuild(&self, position: &mut Position, index: &RwLock<Index>, segments: &SegmentSet) -> Result<()> {
        let (recovered, stamp) = recover_read_only(&*self.vfs, &self.dir, self.mode, self.use_snapshot, false)?;
        let fresh = recovered.segments.all();
        let keep: HashSet<u32> = fresh.iter().map(|segment| segment.seq).collect();
        *position = Position::new(&recovered, stamp);
        // Under the index write lock (the readers' order: index, then segments), so no reader
        // pins a location of the old index in a segment of the new view (a segment number can
        // come back after a writer restarts) or the other way round.
        let mut index = index.write();
        for segment in fresh {
            segments.insert(segment);
        }
        *index = recovered.index;
        for old in segments.all().into_iter().filter(|segment| !keep.contains(&segment.seq)) {
            segments.remove(old.seq);
        }
        Ok(())
    }
}

/// Fill `buf` from `offset` of `segment`; `false` if the file ends before (its writer trimmed it).
fn read_fully(segment: &Segment, buf: &mut [u8], offset: u64) -> Result<bool> {
    let file = segment.active_file().ok_or_else(|| Error::invariant("the followed segment is mapped"))?;
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("read", &segment.path, e)),
    }
}

/// Recover `dir` read-only, retrying what a writer working meanwhile can cause: a listed
/// segment removed by a compaction before it was opened, a last segment copied while a frame
/// was being written (a frame after the one being written can look like damage to synced data),
/// a file trimmed while it was read; with `retry_torn_tail` (verify), also a torn tail, which
/// beside a live writer is usually a frame being written. Real damage persists and is returned
/// (or reported) by the last attempt. Returns the MANIFEST's stamp taken before it was read.
pub(crate) fn recover_read_only(
    vfs: &dyn Vfs,
    dir: &Path,
    mode: RecoveryMode,
    use_snapshot: bool,
    retry_torn_tail: bool,
) -> Result<(Recovered, Option<FileStamp>)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut attempt = 1;
    loop {
        let stamp = vfs.stamp(&manifest_path).map_err(|e| Error::io("stat", &manifest_path, e))?;
        let outcome = recover(vfs, dir, mode, use_snapshot, Access::ReadOnly);
        let retry = match &outcome {
            Ok(recovered) => {
                !recovered.report.skipped.is_empty() || (retry_torn_tail && recovered.report.torn_tail.is_some())
            }
            Err(Error::Corruption { .. }) => true,
            Err(error) => {
                matches!(error.io_kind(), Some(io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof))
            }
        };
        if !retry || attempt >= RECOVERY_ATTEMPTS {
            return outcome.map(|recovered| (recovered, stamp));
        }
        std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
        attempt += 1;
    }
}
