//! Online compaction: rewrite the live records of the oldest segments and retire the files.
//!
//! Compaction works on a *prefix* of the log (the first segments of the manifest, all sealed).
//! That keeps replay correct without versions: every record a dropped tombstone deleted is in
//! the prefix too (it is older), so tombstones can go; and a live record copied to the output,
//! which takes the prefix's place in the manifest, still replays before everything newer.
//!
//! Steps, and what a crash after each leaves (see docs/design.md, "Compaction"):
//! 1. Copy: decide liveness from the index (read lock), copy live records verbatim into new
//!    segment files, fsync them. Crash: the outputs are not in the manifest; removed at open.
//! 2. Switch (index write lock held, so no reader or writer sees a half state): re-check blobs
//!    dropped as unreferenced (copy any that gained a reader), write the new manifest
//!    atomically, point index entries that still name the old location at the copy.
//!    Crash: either manifest is complete and consistent.
//! 3. Retire: drop the old segments from the open set (readers holding one keep their view:
//!    the map outlives the unlinked file) and unlink them. Crash: unlisted files removed at open.
//!
//! A failure before the switch abandons the outputs and leaves the store as it was; a failure
//! during the switch poisons the store (the manifest's durable state is unknown).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::commit::Committer;
use crate::error::{Error, Result};
use crate::format::{
    EncodedFrame, FRAME_ALIGN, FRAME_HEADER_LEN, FrameHeader, FrameScanner, SEGMENT_HEADER_LEN, Scanned, align_up,
    salted_hasher,
};
use crate::index::{Applied, Index, IndexOp};
use crate::manifest::Layout;
use crate::recovery::{record_loc, replay_op};
use crate::segment::{Loc, Segment, segment_path, sync_dir, write_frame};
use crate::vfs::VfsFile;

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Segments rewritten (and retired).
    pub segments_rewritten: u64,
    /// Segments written.
    pub segments_written: u64,
    /// Bytes of the rewritten segments.
    pub bytes_before: u64,
    /// Bytes of the segments written in their place.
    pub bytes_after: u64,
    /// Bytes of live records copied.
    pub bytes_copied: u64,
    /// Live records copied.
    pub records_copied: u64,
    /// Dead records and tombstones dropped.
    pub records_dropped: u64,
    /// Deltas stored whole because nothing but them kept their base (which then dies).
    pub deltas_stored_whole: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// A record copied into the output: the op it makes, where it was, where it is now.
struct Moved {
    op: IndexOp<'static>,
    from: Loc,
    to: Loc,
}

/// A blob nothing read when it was dropped; it is copied late if that changed by the switch.
struct DroppedBlob {
    op: IndexOp<'static>,
    loc: Loc,
    bytes: Vec<u8>,
}

/// Writes copied records into fresh segments, framed like the live log.
struct Output<'a> {
    layout: &'a Layout,
    segment_size: u64,
    /// Finished and current segments: (number, file, bytes written).
    files: Vec<(u32, Arc<dyn VfsFile>, u64)>,
    frame_seq: u64,
    payload: Vec<u8>,
    /// Records in `payload`: offset in payload, body length.
    pending: Vec<(usize, u32)>,
    placed: Vec<Loc>,
}

impl<'a> Output<'a> {
    fn new(layout: &'a Layout, segment_size: u64) -> Self {
        Output {
            layout,
            segment_size,
            files: Vec::new(),
            frame_seq: 0,
            payload: Vec::new(),
            pending: Vec::new(),
            placed: Vec::new(),
        }
    }

    /// Queue a record (header and body, verbatim); its location is known once its frame is
    /// written (`flush_frame`).
    fn push(&mut self, record: &[u8], body_len: u32) -> Result<()> {
        if !self.payload.is_empty() && self.payload.len() + record.len() > (1 << 20) {
            self.flush_frame()?;
        }
        self.pending.push((self.payload.len(), body_len));
        self.payload.extend_from_slice(record);
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let span = align_up((FRAME_HEADER_LEN + self.payload.len()) as u64);
        let needs_new = self
            .files
            .last()
            .is_none_or(|(_, _, used)| used + span > self.segment_size.max(span + SEGMENT_HEADER_LEN as u64));
        if needs_new {
            let seq = self.layout.new_segment_number();
            let capacity = self.segment_size.max(span + SEGMENT_HEADER_LEN as u64);
            let segment = Segment::create(&*self.layout.vfs, &self.layout.dir, seq, capacity, false)?;
            let file = segment
                .active_file()
                .cloned()
                .ok_or_else(|| Error::invariant("a new compaction output segment is not writable"))?;
            self.files.push((seq, file, SEGMENT_HEADER_LEN as u64));
            self.frame_seq = 0;
        }
        let Some((seq, file, used)) = self.files.last_mut() else {
            return Err(Error::invariant("compaction has no output segment"));
        };
        self.frame_seq += 1;
        let mut crc = salted_hasher(u64::from(*seq));
        crc.update(&self.payload);
        let payload_len = u32::try_from(self.payload.len())
            .map_err(|_| Error::invariant("a compaction frame payload exceeds u32::MAX bytes"))?;
        let record_count = u32::try_from(self.pending.len())
            .map_err(|_| Error::invariant("a compaction frame holds more than u32::MAX records"))?;
        let header = FrameHeader {
            payload_len,
            record_count,
            frame_seq: self.frame_seq,
            synced_upto: *used,
            payload_crc: crc.finalize(),
        };
        let payload = [&self.payload[..]];
        let frame = EncodedFrame::new(&header, u64::from(*seq), &payload);
        write_frame(&**file, &segment_path(&self.layout.dir, *seq), *used, &frame)?;
        for &(at, len) in &self.pending {
            let offset = *used + FRAME_HEADER_LEN as u64 + at as u64;
            let offset = u32::try_from(offset)
                .map_err(|_| Error::invariant(format!("compaction output offset {offset} exceeds u32::MAX")))?;
            self.placed.push(Loc { segment: *seq, offset, len });
        }
        *used += span;
        self.payload.clear();
        self.pending.clear();
        Ok(())
    }

    /// Write the last frame, trim every output to its data and make it durable.
    fn finish(&mut self) -> Result<()> {
        self.flush_frame()?;
        for (seq, file, used) in &self.files {
            let path = segment_path(&self.layout.dir, *seq);
            file.set_len(*used).map_err(|e| Error::io("trim compacted segment", &path, e))?;
            file.sync_all().map_err(|e| Error::io("fsync compacted segment", &path, e))?;
        }
        Ok(())
    }

    /// Remove the outputs (compaction abandoned).
    fn abandon(&self) {
        for (seq, _, _) in &self.files {
            let _ = self.layout.vfs.remove_file(&segment_path(&self.layout.dir, *seq));
        }
    }
}

/// Compact `victims`, the first segments of the manifest (all sealed).
///
/// The switch runs with the commit path held (`committer`), so no commit lands between the
/// re-check of dropped blobs and the manifest switch: a put that found a blob stored and did not
/// write it again is checked by its leader against the index after the switch, never before a
/// drop it cannot see. `stop` is asked between frames of the copy (the store is closing):
/// compaction then abandons its outputs and fails with [`Error::Closed`].
pub fn compact_prefix(
    layout: &Layout,
    index: &RwLock<Index>,
    committer: &Committer,
    victims: &[Arc<Segment>],
    segment_size: u64,
    values: &ValuePolicy,
    stop: &dyn Fn() -> bool,
) -> Result<CompactionStats> {
    let started = Instant::now();
    let mut stats = CompactionStats { segments_rewritten: victims.len() as u64, ..CompactionStats::default() };
    let mut output = Output::new(layout, segment_size);
    let mut moved_ops = Vec::new();
    let mut dropped_blobs = Vec::new();
    let copied = copy_live(victims, index, &mut output, &mut moved_ops, &mut dropped_blobs, &mut stats, values, stop)
        .and_then(|()| output.finish());
    if let Err(error) = copied {
        output.abandon();
        return Err(error);
    }
    // The switch makes the drops permanent: a victim record is dropped because a later frame
    // killed it (a re-put, a tombstone, retention's rewrite). In `Flush` and `None` mode that
    // frame may not be durable yet; if the power went after the switch but before it was synced,
    // the old record would be gone and its replacement too. So the active segment is synced
    // first, with the commit path held (nothing can land in between), and a poisoned store
    // does not switch at all.
    let switched = committer.paused_durable(|_| {
        switch(layout, index, &mut output, victims, moved_ops, &dropped_blobs, &mut stats, &|e| committer.poison(e))
    });
    let old = match switched {
        Ok(switched) => switched?,
        Err(error) => {
            output.abandon();
            return Err(error);
        }
    };

    // Retire: readers holding a victim keep their map; the unlinked file goes with the last one.
    for seq in &old {
        layout.segments.remove(*seq);
        let path = segment_path(&layout.dir, *seq);
        if let Err(error) = layout.vfs.remove_file(&path) {
            tracing::warn!(%error, path = %path.display(), "cannot remove a compacted segment; it is removed at the next open");
        }
    }
    sync_dir(&*layout.vfs, &layout.dir)?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Step 2, with the commit path held: keep dropped blobs that gained a reader, switch the
/// manifest, point the index at the copies. Returns the retired segment numbers.
#[expect(clippy::too_many_arguments, reason = "the switch needs the copy's results, each its own value")]
fn switch(
    layout: &Layout,
    index: &RwLock<Index>,
    output: &mut Output<'_>,
    victims: &[Arc<Segment>],
    mut moved_ops: Vec<(IndexOp<'static>, Loc)>,
    dropped_blobs: &[DroppedBlob],
    stats: &mut CompactionStats,
    on_switch_failure: &dyn Fn(&Error),
) -> Result<Vec<u32>> {
    // No reader or writer sees the index between the manifest and the moves.
    let mut index = index.write();
    let late: Vec<&DroppedBlob> = dropped_blobs
        .iter()
        .filter(|blob| match &blob.op {
            IndexOp::Blob { thread, ns, hash, .. } => !index.drop_unreferenced_blob(thread, ns, *hash, blob.loc),
            _ => false,
        })
        .collect();
    if !late.is_empty() {
        // Read again since it was judged garbage: keep it after all.
        let appended =
            late.iter().try_for_each(|blob| output.push(&blob.bytes, blob.loc.len)).and_then(|()| output.finish());
        if let Err(error) = appended {
            output.abandon();
            return Err(error);
        }
        for blob in &late {
            moved_ops.push((blob.op.clone(), blob.loc));
        }
        stats.records_copied += late.len() as u64;
    }
    let moves: Vec<Moved> = moved_ops
        .into_iter()
        .zip(output.placed.iter().copied())
        .map(|((op, from), to)| Moved { op, from, to })
        .collect();
    let old: Vec<u32> = victims.iter().map(|s| s.seq).collect();
    let new: Vec<u32> = output.files.iter().map(|(seq, _, _)| *seq).collect();
    for (seq, _, used) in &output.files {
        stats.bytes_after += used;
        layout.segments.insert(Arc::new(Segment::sealed(&*layout.vfs, *seq, segment_path(&layout.dir, *seq))?));
    }
    stats.segments_written = new.len() as u64;
    if let Err(error) = layout.replace_prefix(&old, &new) {
        on_switch_failure(&error);
        return Err(error);
    }
    for entry in &moves {
        index.relocate(&entry.op, entry.from, entry.to);
    }
    index.forget_segments(&old);
    // If the last frame applied was in a victim, the index now covers the log up to the end of
    // the output (or, with no output, up to the start of the first segment kept).
    if old.contains(&index.applied.segment) {
        index.applied = match output.files.last() {
            Some((seq, _, used)) => Applied { segment: *seq, offset: *used, frame_seq: output.frame_seq },
            None => match layout.manifest().segments.first() {
                Some(&first) => Applied { segment: first, offset: SEGMENT_HEADER_LEN as u64, frame_seq: 0 },
                None => Applied::default(),
            },
        };
    }
    Ok(old)
}

/// Step 1: copy every live record of the victims, in log order, into `output`.
#[expect(clippy::too_many_arguments, reason = "the copy's inputs and the four things it fills, each its own value")]
fn copy_live(
    victims: &[Arc<Segment>],
    index: &RwLock<Index>,
    output: &mut Output<'_>,
    moved: &mut Vec<(IndexOp<'static>, Loc)>,
    dropped_blobs: &mut Vec<DroppedBlob>,
    stats: &mut CompactionStats,
    values: &ValuePolicy,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    for segment in victims {
        let data =
            segment.mapped_bytes().ok_or_else(|| Error::corruption(&segment.path, 0, "segment is not sealed"))?;
        stats.bytes_before += data.len() as u64;
        let seq = u64::from(segment.seq);
        let mut scanner = FrameScanner::new(data, seq, SEGMENT_HEADER_LEN as u64);
        loop {
            if stop() {
                return Err(Error::Closed);
            }
            let (offset, records) = match scanner.next_frame() {
                Scanned::End { .. } => break,
                Scanned::Frame { offset, records, .. } => (offset, records),
                // Damage skipped at open (SkipCorrupted): skip it here too.
                Scanned::Damage { offset, .. } => match scanner.next_valid_frame(offset + FRAME_ALIGN) {
                    Some((next, _)) => {
                        scanner.skip_to(next);
                        continue;
                    }
                    None => break,
                },
            };
            // One read lock per frame: writers are never held up for long. Decide first,
            // copy after: storing a delta whole reads its chain, which is not done under it.
            let mut decisions = Vec::with_capacity(records.len());
            {
                let index = index.read();
                for (relative, record) in records {
                    let loc = record_loc(segment, offset, relative, &record)?;
                    // Live: copied. An unreferenced blob the index still names: dropped, but
                    // kept in hand in case a checkpoint reads it again before the switch.
                    let (live, unreferenced_blob) = replay_op(segment, loc, &record, |op| {
                        let live = index.is_live(op, loc);
                        let named = matches!(op, IndexOp::Blob { thread, ns, hash, .. }
                            if index.namespace(thread, ns).and_then(|n| n.blobs.get(hash)).is_some_and(|slot| slot.loc == loc));
                        (live.then(|| op.to_static()), (!live && named).then(|| op.to_static()))
                    })?;
                    let rebase = live.as_ref().is_some_and(|op| only_a_chain_keeps_its_base(&index, op));
                    decisions.push((loc, live, unreferenced_blob, rebase));
                }
            }
            for (loc, live, unreferenced_blob, rebase) in decisions {
                let start = loc.offset as usize;
                let bytes = usize::try_from(loc.disk_len())
                    .ok()
                    .and_then(|len| data.get(start..start + len))
                    .ok_or_else(|| Error::invariant("a scanned record lies outside its segment's bytes"))?;
                if let Some(op) = live {
                    let whole =
                        if rebase { store_whole(index, &output.layout.segments, &op, loc, values) } else { None };
                    match whole {
                        Some((record, body_len, whole_op)) => {
                            output.push(&record, body_len)?;
                            moved.push((whole_op, loc));
                            stats.deltas_stored_whole += 1;
                            stats.bytes_copied += record.len() as u64;
                        }
                        None => {
                            output.push(bytes, loc.len)?;
                            moved.push((op, loc));
                            stats.bytes_copied += loc.disk_len();
                        }
                    }
                    stats.records_copied += 1;
                } else {
                    if let Some(op) = unreferenced_blob {
                        dropped_blobs.push(DroppedBlob { op, loc, bytes: bytes.to_vec() });
                    }
                    stats.records_dropped += 1;
                }
            }
        }
    }
    Ok(())
}

/// Whether `op` is a delta a checkpoint reads, whose base nothing reads but this one delta:
/// storing it whole lets the base (and, down the chain, whatever only it kept) die. Only deltas
/// that checkpoints read qualify: below one, every delta of a dead stretch of chain would
/// qualify too, and each would be stored whole only to die at the switch.
fn only_a_chain_keeps_its_base(index: &Index, op: &IndexOp<'_>) -> bool {
    let IndexOp::Blob { thread, ns, hash, base: Some(base) } = op else { return false };
    let Some(namespace) = index.namespace(thread, ns) else { return false };
    let read_by_a_checkpoint = namespace.blobs.get(hash).is_some_and(|slot| slot.refs > slot.delta_refs);
    read_by_a_checkpoint
        && namespace.blobs.get(base).is_some_and(|slot| slot.refs == slot.delta_refs && slot.delta_refs == 1)
}

/// The delta at `loc` rebuilt and encoded as a whole value record: (record bytes, body length,
/// its index op without a base). `None` (the delta is then copied as it is) if the index no
/// longer names that record or its chain cannot be read.
fn store_whole(
    index: &RwLock<Index>,
    segments: &crate::segment::SegmentSet,
    op: &IndexOp<'static>,
    loc: Loc,
    values: &ValuePolicy,
) -> Option<(Vec<u8>, u32, IndexOp<'static>)> {
    let IndexOp::Blob { thread, ns, hash, .. } = op else { return None };
    let rebuild = || -> Result<Option<(Vec<u8>, u32, IndexOp<'static>)>> {
        // Pinned under the lock (if the index still names this record), read after it.
        let chain = {
            let index = index.read();
            let Some(namespace) = index.namespace(thread, ns) else { return Ok(None) };
            if namespace.blobs.get(hash).is_none_or(|slot| slot.loc != loc) {
                return Ok(None);
            }
            crate::values::pin_chain(segments, namespace, *hash)?
        };
        let Some(chain) = chain else { return Ok(None) };
        let Some(record) = crate::values::whole_record(&chain, thread, ns, values.level, values.limit)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        let (_, body_len) = crate::commit::append_encoded(&mut bytes, &record)?;
        let body_len = u32::try_from(body_len).map_err(|_| Error::invariant("a rebuilt value over 4 GiB"))?;
        // The op the record itself makes, as a commit or a replay of it would apply.
        Ok(Some((bytes, body_len, crate::records::Record::index_op(&record).to_static())))
    };
    rebuild().unwrap_or_else(|error| {
        tracing::warn!(%error, thread = %thread, "cannot rebuild a delta to store it whole; copied as it is");
        None
    })
}

/// What compaction needs to store a delta whole: the zstd level and the value limit.
pub struct ValuePolicy {
    /// zstd level (`None`: uncompressed).
    pub level: Option<i32>,
    /// The store's `max_value_bytes`.
    pub limit: u64,
}
