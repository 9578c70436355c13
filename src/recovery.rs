//! Recovery at open: scan the segments in order, check every frame, rebuild the index, and
//! decide what a damaged frame means.
//!
//! The rules (see `docs/design.md`, "Recovery"):
//! - A sealed segment was fully fdatasync'ed before its successor received any data, so any
//!   damage in it is corruption.
//! - In the last segment, damage at offset X followed by no valid frame, or only by frames whose
//!   `synced_upto` ≤ X, lies in bytes that were never known durable: a torn tail. It is
//!   truncated (zeroed) and reported. No caller was told those frames were durable.
//! - Damage followed by a frame whose `synced_upto` > X hit bytes that had been made durable:
//!   corruption, an error naming the file and offset.
//! - [`RecoveryMode`] makes this stricter (a torn tail is an error) or more lenient (damaged
//!   frames are skipped and reported).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{FRAME_ALIGN, FrameHeader, FrameScanner, RecordView, SEGMENT_HEADER_LEN, Scanned, SegmentHeader};
use crate::index::{Applied, Index, IndexOp};
use crate::manifest::Manifest;
use crate::options::RecoveryMode;
use crate::records::with_index_op;
use crate::segment::{Loc, SEGMENT_SUFFIX, Segment, SegmentSet, segment_path, sync_dir};
use crate::vfs::{OpenMode, Vfs};

/// A damaged region found at open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first damaged byte.
    pub offset: u64,
    /// Bytes discarded or skipped.
    pub len: u64,
    /// What check failed.
    pub reason: String,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files scanned.
    pub segments: usize,
    /// Valid frames replayed.
    pub frames: u64,
    /// Records replayed.
    pub records: u64,
    /// Bytes of valid frames.
    pub bytes: u64,
    /// The torn tail truncated from the last segment, if any.
    pub torn_tail: Option<Damage>,
    /// Damaged frames skipped ([`RecoveryMode::SkipCorrupted`] only).
    pub skipped: Vec<Damage>,
    /// Files removed: temporary files and segments the manifest does not list (a crashed
    /// rotation's new segment, a crashed compaction's output, compacted segments).
    pub removed_files: Vec<PathBuf>,
    /// Whether the index came from the snapshot (then only the log after it was replayed).
    pub used_snapshot: bool,
    /// Wall time of the scan.
    pub elapsed: Duration,
}

/// Whether recovery may change the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Opening for writing: leftovers are removed, a torn tail is zeroed and synced, the last
    /// segment is opened for appending.
    ReadWrite,
    /// A read-only open or a diagnostic (`verify`): not one byte changes. Leftovers are ignored,
    /// a torn tail is only reported; sealed segments are mapped, the last one (which a writer in
    /// another process may be appending to and will trim) is read with positioned reads.
    ReadOnly,
}

/// The state recovery hands to the store.
pub struct Recovered {
    /// The rebuilt index.
    pub index: Index,
    /// Every segment, the last one open for writing (read-only: for positioned reads).
    pub segments: Arc<SegmentSet>,
    /// The last segment, its capacity and the end of its valid data; `None` for a new store.
    /// Read-only, where a reader beside a writer follows the log on from.
    pub active: Option<(Arc<Segment>, u64, u64)>,
    /// What was found.
    pub report: RecoveryReport,
    /// Sequence number for the next frame written.
    pub next_frame_seq: u64,
    /// The segment list as the MANIFEST has it (segments skipped as missing included, so a
    /// degraded open never rewrites it without them); `None` for a new store.
    pub manifest: Option<Manifest>,
    /// The next unused segment number.
    pub next_segment: u32,
}

/// Open the log in `dir`: read the manifest, remove what it does not list, and rebuild the
/// index (from the snapshot plus the log after it when the snapshot is valid, else by replaying
/// every segment).
pub fn recover(vfs: &dyn Vfs, dir: &Path, mode: RecoveryMode, use_snapshot: bool, access: Access) -> Result<Recovered> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let on_disk = list_segments(vfs, dir, &mut report, access)?;
    let next_segment = on_disk.iter().max().map_or(1, |max| max + 1);
    let mut manifest = match Manifest::load(vfs, dir)? {
        Some(manifest) => manifest,
        None if on_disk.is_empty() => {
            report.elapsed = started.elapsed();
            return Ok(Recovered {
                index: Index::default(),
                segments: Arc::new(SegmentSet::default()),
                active: None,
                report,
                next_frame_seq: 1,
                manifest: None,
                next_segment,
            });
        }
        // Not even `SkipCorrupted` guesses the order: segment numbers do not give it (a
        // compaction's output has the highest numbers and the oldest records), and replaying in
        // the wrong order would bring deleted data back.
        None => {
            return Err(Error::corruption(
                Manifest::path(dir),
                0,
                "MANIFEST is missing but segment files exist; the replay order of the segments is unknown",
            ));
        }
    };
    let listed_manifest = manifest.clone();
    let next_segment = next_segment.max(manifest.segments.iter().max().map_or(1, |max| max + 1));
    for &seq in on_disk.iter().filter(|seq| !manifest.segments.contains(seq)) {
        let path = segment_path(dir, seq);
        if access == Access::ReadWrite {
            vfs.remove_file(&path).map_err(|e| Error::io("remove unlisted segment", &path, e))?;
            report.removed_files.push(path);
        }
    }
    let mut listed = Vec::with_capacity(manifest.segments.len());
    for &seq in &manifest.segments {
        if on_disk.contains(&seq) {
            listed.push(seq);
        } else if mode == RecoveryMode::SkipCorrupted {
            let file = segment_path(dir, seq);
            report.skipped.push(Damage {
                file,
                offset: 0,
                len: 0,
                reason: "segment listed in MANIFEST is missing".into(),
            });
        } else {
            return Err(Error::corruption(segment_path(dir, seq), 0, "segment listed in MANIFEST is missing"));
        }
    }
    manifest.segments = listed;
    if !report.removed_files.is_empty() && access == Access::ReadWrite {
        sync_dir(vfs, dir)?;
    }

    let segments = Arc::new(SegmentSet::default());
    for (i, &seq) in manifest.segments.iter().enumerate() {
        let path = segment_path(dir, seq);
        // Read-only, the last segment may be another process's active one: never mapped.
        let segment = if access == Access::ReadOnly && i + 1 == manifest.segments.len() {
            Segment::following(vfs, seq, path)?
        } else {
            Segment::sealed(vfs, seq, path)?
        };
        segments.insert(Arc::new(segment));
    }
    let snapshot = if use_snapshot { crate::snapshot::load(vfs, dir, &manifest, &segments) } else { None };
    let (mut index, start, mut max_frame_seq) = match snapshot {
        Some(loaded) => {
            report.used_snapshot = true;
            (loaded.index, loaded.resume, loaded.last_frame_seq)
        }
        None => (Index::default(), (0, SEGMENT_HEADER_LEN as u64), 0),
    };
    let mut active = None;
    for (i, &seq) in manifest.segments.iter().enumerate().skip(start.0) {
        let is_last = i + 1 == manifest.segments.len();
        let segment =
            segments.get(seq).ok_or_else(|| Error::corruption(segment_path(dir, seq), 0, "segment not open"))?;
        // Resuming after the snapshot: the next frame must follow the last one it covers.
        let (from, previous) = match i == start.0 && start.1 > SEGMENT_HEADER_LEN as u64 {
            true => (start.1, Some(max_frame_seq)),
            false => (SEGMENT_HEADER_LEN as u64, None),
        };
        let scanned = scan_segment(
            &segment,
            from,
            previous,
            is_last,
            mode,
            &mut max_frame_seq,
            &mut index,
            &segments,
            &mut report,
        )?;
        report.segments += 1;
        // A segment skipped whole (damaged header) is never written to: the writer starts a new
        // one after it, and the damage stays for the next open to report.
        match (is_last, access, scanned) {
            (true, Access::ReadWrite, Some(end)) => {
                let path = segment.path.clone();
                drop(segment);
                active = Some(reopen_active(vfs, seq, path, end, &mut report)?);
            }
            (true, Access::ReadOnly, Some(end)) => {
                let capacity = segment.file_len();
                active = Some((segment, capacity, end));
            }
            _ => {}
        }
    }
    if let (Some((segment, _, _)), Access::ReadWrite) = (&active, access) {
        segments.insert(segment.clone());
    }
    report.elapsed = started.elapsed();
    Ok(Recovered {
        index,
        segments,
        active,
        report,
        next_frame_seq: max_frame_seq + 1,
        manifest: Some(listed_manifest),
        next_segment,
    })
}

/// Numbers of the segment files in `dir`, sorted; removes leftover temporary files.
fn list_segments(vfs: &dyn Vfs, dir: &Path, report: &mut RecoveryReport, access: Access) -> Result<Vec<u32>> {
    let mut seqs = Vec::new();
    let names = vfs.list(dir).map_err(|e| Error::io("list directory", dir, e))?;
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(".tmp") {
            // A segment, manifest or snapshot whose writing did not finish.
            if access == Access::ReadWrite {
                vfs.remove_file(&path).map_err(|e| Error::io("remove temporary file", &path, e))?;
                report.removed_files.push(path);
            }
        } else if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
            let seq = stem
                .parse::<u32>()
                .ok()
                .filter(|_| stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Error::corruption(&path, 0, "segment file name is not a 10-digit sequence number"))?;
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The frame sequence number the next frame of a segment must have.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The segment's first frame (or the first after a snapshot without a known predecessor).
    Any,
    /// Exactly this one: the previous frame was read.
    Exactly(u64),
    /// Greater than this one: frames were skipped as damaged since it, so the exact number is
    /// unknown, but the order still holds.
    After(u64),
}

/// Replay one segment into `index`; returns the end of its valid data, or `None` if the whole
/// segment was skipped (a damaged header under [`RecoveryMode::SkipCorrupted`]).
#[expect(
    clippy::too_many_arguments,
    reason = "the scan's state is threaded through explicitly; bundling it would only rename it"
)]
fn scan_segment(
    segment: &Segment,
    from: u64,
    previous: Option<u64>,
    is_last: bool,
    mode: RecoveryMode,
    max_frame_seq: &mut u64,
    index: &mut Index,
    segments: &SegmentSet,
    report: &mut RecoveryReport,
) -> Result<Option<u64>> {
    // The last segment read-only is copied (it may be another process's active segment).
    let bytes = segment.snapshot_bytes()?;
    let data: &[u8] = &bytes;
    let header = SegmentHeader::decode(data).and_then(|header| {
        if header.seq == u64::from(segment.seq) {
            Ok(header)
        } else {
            Err(format!("header names segment {}, file name {}", header.seq, segment.seq))
        }
    });
    let header = match header {
        Ok(header) => header,
        Err(reason) if mode == RecoveryMode::SkipCorrupted => {
            tracing::warn!(file = %segment.path.display(), %reason, "skipping a segment whose header is damaged");
            report.skipped.push(Damage {
                file: segment.path.clone(),
                offset: 0,
                len: data.len() as u64,
                reason: format!("damaged segment header, whole segment skipped: {reason}"),
            });
            return Ok(None);
        }
        Err(reason) => return Err(Error::corruption(&segment.path, 0, format!("damaged segment header: {reason}"))),
    };
    let seq = header.seq;
    let len = data.len() as u64;
    let mut expect = previous.map_or(Expect::Any, |last| Expect::Exactly(last + 1));
    let mut scanner = FrameScanner::new(data, seq, from);
    loop {
        let (offset, failure) = match scanner.next_frame() {
            Scanned::End { offset } => return Ok(Some(offset)),
            Scanned::Frame { offset, header: frame, records } => match check_frame_order(&frame, offset, expect) {
                Ok(()) => {
                    expect = Expect::Exactly(frame.frame_seq + 1);
                    *max_frame_seq = (*max_frame_seq).max(frame.frame_seq);
                    index.applied =
                        Applied { segment: segment.seq, offset: scanner.valid_up_to(), frame_seq: frame.frame_seq };
                    for (relative, record) in records {
                        let loc = record_loc(segment, offset, relative, &record)?;
                        replay_op(segment, loc, &record, |op| index.apply(op, loc, segments))?;
                        report.records += 1;
                    }
                    report.frames += 1;
                    report.bytes += frame.span();
                    continue;
                }
                Err(reason) => (offset, reason),
            },
            Scanned::Damage { offset, reason } => (offset, reason),
        };
        let next = scanner.next_valid_frame(offset + FRAME_ALIGN);
        // Unsynced only if no valid frame after it claims it durable: not just the next one,
        // which may be a stray copy of an older frame (claiming less than the frames around it).
        let unsynced = !later_frame_claims_durable(&scanner, next, offset);
        if is_last && unsynced {
            let dirty_end = dirty_end(data).max(offset);
            let damage = Damage { file: segment.path.clone(), offset, len: dirty_end - offset, reason: failure };
            if mode == RecoveryMode::AbsoluteConsistency {
                return Err(Error::corruption(&segment.path, offset, format!("torn tail: {}", damage.reason)));
            }
            tracing::warn!(file = %segment.path.display(), offset, bytes = damage.len, reason = %damage.reason, "truncating torn tail");
            report.torn_tail = Some(damage);
            return Ok(Some(offset));
        }
        let skip_to = next.map_or(len, |(at, _)| at);
        let damage = Damage { file: segment.path.clone(), offset, len: skip_to - offset, reason: failure };
        if mode != RecoveryMode::SkipCorrupted {
            let place = if is_last { "synced data of the last segment" } else { "a sealed segment" };
            return Err(Error::corruption(
                &segment.path,
                offset,
                format!("damaged frame in {place}: {}", damage.reason),
            ));
        }
        tracing::warn!(file = %segment.path.display(), offset, bytes = damage.len, reason = %damage.reason, "skipping damaged frame");
        report.skipped.push(damage);
        scanner.skip_to(skip_to);
        // Frames were skipped: the next one's number is unknown, but must still be higher.
        expect = match expect {
            Expect::Exactly(next) => Expect::After(next.saturating_sub(1)),
            other => other,
        };
    }
}

/// A frame is in its place if its sequence number follows the previous frame of the segment
/// and it claims no durability beyond its own offset. A duplicated or misplaced frame fails
/// here even though its CRCs pass.
fn check_frame_order(frame: &FrameHeader, offset: u64, expect: Expect) -> Result<(), String> {
    if frame.synced_upto > offset {
        return Err(format!("frame claims {} bytes durable, beyond its own offset", frame.synced_upto));
    }
    match expect {
        Expect::Exactly(next) if frame.frame_seq != next => {
            Err(format!("frame out of sequence: expected frame {next}, found frame {}", frame.frame_seq))
        }
        Expect::After(last) if frame.frame_seq <= last => Err(format!(
            "frame out of sequence: frame {} after frame {last} (frames skipped in between)",
            frame.frame_seq
        )),
        _ => Ok(()),
    }
}

/// Whether a valid frame at or after `first` (the next valid frame after the damage at
/// `damage`) says that `damage` had been made durable.
fn later_frame_claims_durable(scanner: &FrameScanner<'_>, first: Option<(u64, FrameHeader)>, damage: u64) -> bool {
    let mut found = first;
    while let Some((at, frame)) = found {
        if frame.synced_upto > damage {
            return true;
        }
        found = scanner.next_valid_frame(at + frame.span().max(FRAME_ALIGN));
    }
    false
}

/// The offset just past the last non-zero byte.
fn dirty_end(data: &[u8]) -> u64 {
    data.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1)
}

/// Open the last segment for writing, zeroing anything after `end` (a torn tail) and syncing,
/// so everything before `end` is durable and nothing stale follows it.
fn reopen_active(
    vfs: &dyn Vfs,
    seq: u32,
    path: PathBuf,
    end: u64,
    report: &mut RecoveryReport,
) -> Result<(Arc<Segment>, u64, u64)> {
    let file = vfs.open(&path, OpenMode::ReadWrite).map_err(|e| Error::io("open segment", &path, e))?;
    let capacity = file.len().map_err(|e| Error::io("stat segment", &path, e))?;
    if let Some(torn) = &report.torn_tail {
        file.allocate(torn.offset, torn.len).map_err(|e| Error::io("zero torn tail", &path, e))?;
    }
    file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
    Ok((Arc::new(Segment::writing(seq, path, file)), capacity, end))
}

/// Where a record of the frame at `frame_offset` lives. Locations are 32-bit and the segments
/// this store writes stay within 4 GiB: a record past that (a file it did not write) is corruption.
pub(crate) fn record_loc(
    segment: &Segment,
    frame_offset: u64,
    relative: usize,
    record: &RecordView<'_>,
) -> Result<Loc> {
    let offset = u32::try_from(frame_offset + relative as u64)
        .map_err(|_| Error::corruption(&segment.path, frame_offset, "record past the 4 GiB segment limit"))?;
    let len = u32::try_from(record.body.len())
        .map_err(|_| Error::corruption(&segment.path, frame_offset, "record longer than 4 GiB"))?;
    Ok(Loc { segment: segment.seq, offset, len })
}

/// Hand the index op of the replayed record at `loc` to `f`; a record that passed its CRC but
/// does not decode is corruption at `loc`.
pub(crate) fn replay_op<T>(
    segment: &Segment,
    loc: Loc,
    record: &RecordView<'_>,
    f: impl FnOnce(&IndexOp<'_>) -> T,
) -> Result<T> {
    with_index_op(record, f).map_err(|reason| Error::corruption(&segment.path, u64::from(loc.offset), reason))
}
