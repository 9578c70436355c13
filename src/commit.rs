//! The write path: batches, the active-segment writer, and group commit.
//!
//! Callers encode their records into a [`Batch`] on their own thread (postcard and CRC work run
//! in parallel). [`Committer::commit`] queues the batch; the first caller to find no leader
//! becomes the leader, writes every queued batch as one frame, makes it durable as the
//! durability mode asks (one fdatasync for the whole group in `Sync`), applies the index ops in
//! log order and wakes the others. A failed write or fsync poisons the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crc32fast::Hasher;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::format::{
    EncodedFrame, FRAME_HEADER_LEN, FrameHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, align_up, begin_record,
    finish_record, salted_hasher,
};
use crate::index::{Applied, Index, IndexOp, RecordSource};
use crate::manifest::Layout;
use crate::options::Durability;
use crate::records::{Record, write_keys_of};
use crate::segment::{Loc, PreparedSegment, Segment, SegmentSet, write_frame};
use crate::vfs::WritingWindow;

/// The largest frame payload: frame lengths and segment offsets are 32-bit.
pub const MAX_FRAME_PAYLOAD: u64 = (u32::MAX as u64) - (1 << 20);

/// Append `record` to `bytes`, header and postcard body: the one record encoder (a batch's
/// records, the values compaction rebuilds). Returns where the record starts and its body length.
pub(crate) fn append_encoded<R: Record>(bytes: &mut Vec<u8>, record: &R) -> Result<(usize, usize)> {
    let at = begin_record(bytes);
    let taken = std::mem::take(bytes);
    *bytes =
        postcard::to_extend(record, taken).map_err(|e| Error::invariant(format!("cannot encode a record: {e}")))?;
    Ok((at, finish_record(bytes, at, R::KIND)))
}

/// A blob a batch relies on without writing it: (thread, namespace, hash, the record a delta was
/// made against).
type Assumed = (Box<str>, Box<str>, u64, Option<Loc>);

/// Records encoded by one caller, committed atomically.
pub struct Batch {
    bytes: Vec<u8>,
    crc: Hasher,
    records: Vec<(IndexOp<'static>, usize, u32)>,
    /// Blobs (thread, namespace, hash) the records read but do not write, and for a delta's
    /// base the very record it was encoded against: checked by the leader.
    assumed: Vec<Assumed>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch { bytes: Vec::new(), crc: Hasher::new(), records: Vec::new(), assumed: Vec::new() }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Encode `record` into the batch; committing it applies its [`Record::index_op`].
    pub fn push<R: Record>(&mut self, record: &R) -> Result<()> {
        let op = record.index_op().to_static();
        let (at, body_len) = append_encoded(&mut self.bytes, record)?;
        if self.bytes.len() as u64 > MAX_FRAME_PAYLOAD {
            return Err(Error::TooLarge {
                what: "one call's records".into(),
                size: self.bytes.len() as u64,
                limit: MAX_FRAME_PAYLOAD,
            });
        }
        #[expect(
            clippy::indexing_slicing,
            reason = "`at` is where begin_record started this record in self.bytes, which only grew since"
        )]
        self.crc.update(&self.bytes[at..]);
        #[expect(
            clippy::cast_possible_truncation,
            reason = "body_len <= self.bytes.len() <= MAX_FRAME_PAYLOAD < u32::MAX, checked just above"
        )]
        self.records.push((op, at, body_len as u32));
        Ok(())
    }

    /// The records rely on blob `hash` of (thread, ns) being stored without writing it (a put
    /// that found the value already stored). The leader checks it again at the commit point.
    pub fn assume_stored(&mut self, thread: &str, ns: &str, hash: u64) {
        self.assumed.push((thread.into(), ns.into(), hash, None));
    }

    /// A record of the batch is a delta against blob `hash` of (thread, ns) as stored at `loc`.
    /// The leader checks that the index still names that record: records never change, so the
    /// delta applies to what a reader will find (a copy over it, or a delete and a re-put of
    /// the same version, would leave other bytes under the same key).
    pub fn assume_record(&mut self, thread: &str, ns: &str, hash: u64, loc: Loc) {
        self.assumed.push((thread.into(), ns.into(), hash, Some(loc)));
    }

    /// Whether every blob the batch assumes is still stored and may be relied on (at the
    /// record assumed, if one was; see `NamespaceIndex::reusable_blob`).
    fn assumptions_hold(&self, index: &Index) -> bool {
        self.assumed.iter().all(|(thread, ns, hash, loc)| {
            index
                .namespace(thread, ns)
                .and_then(|n| n.reusable_blob(*hash))
                .is_some_and(|slot| loc.is_none_or(|loc| slot.loc == loc))
        })
    }

    /// Records pushed so far: the position the next one will have in [`Committed::Done`].
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Counters of the write path.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Calls committed.
    pub commits: AtomicU64,
    /// Frames written (one per group, more when a group spans segments).
    pub frames: AtomicU64,
    /// fdatasync calls on segment files.
    pub fsyncs: AtomicU64,
    /// Bytes written to segment files (frames and padding).
    pub bytes_written: AtomicU64,
    /// Segments created.
    pub segments_created: AtomicU64,
    /// Calls per commit group.
    pub group_sizes: crate::metrics::Histogram,
    /// fdatasync (and a seal's fsync) latency, nanoseconds: one value per `fsyncs` count.
    pub fsync_nanos: crate::metrics::Histogram,
}

/// How the writer lays out and syncs segments.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// What callers are promised.
    pub durability: Durability,
    /// Capacity of a new segment.
    pub segment_size: u64,
    /// Zero-fill new segments.
    pub preallocate: bool,
    /// Durability `None`: bytes buffered before they are written to the file.
    pub buffer_bytes: usize,
    /// Prepare (create and preallocate) the next segment on a background thread, so rotation
    /// does not stall a commit for the zero-fill.
    pub prepare_ahead: bool,
}

/// The next segment, being prepared on a background thread.
type Preparing = std::thread::JoinHandle<Result<PreparedSegment>>;

/// The active segment and its offsets. Only the commit leader (and `flush`) touch it.
pub struct Writer {
    layout: Arc<Layout>,
    active: Arc<Segment>,
    capacity: u64,
    /// End of the frames written (buffered ones included).
    write_offset: u64,
    /// End of the data known durable.
    synced_offset: u64,
    /// Sequence number of the next frame.
    next_frame_seq: u64,
    /// The next segment, if one is being prepared ahead.
    preparing: Option<Preparing>,
    /// `Flush` mode: the active segment mapped for writing, so a frame is a copy into the page
    /// cache instead of a `pwrite` (two thirds of a small `Flush` write's time in the profile,
    /// README). Dropped before the file is trimmed. `Sync` keeps `pwrite`: its cost is the
    /// fdatasync, and a write error then comes back as an error.
    window: Option<WritingWindow>,
    options: WriterOptions,
    stats: Arc<CommitStats>,
    /// The active segment was created by an older format version (resumed after a crash of an
    /// older build): the first write starts a new segment, so records of newer kinds never go
    /// under its header and an older build refuses the store by its version instead of finding
    /// unknown records. Checked lazily: opening and closing without writing changes nothing.
    older_format: bool,
}

impl Writer {
    /// Continue writing `active` at `write_offset` (everything before it is durable).
    pub fn resume(
        layout: Arc<Layout>,
        active: Arc<Segment>,
        capacity: u64,
        write_offset: u64,
        next_frame_seq: u64,
        options: WriterOptions,
        stats: Arc<CommitStats>,
    ) -> Self {
        let older_format = active
            .read(8, 4)
            .ok()
            .and_then(|header| header.first_chunk::<4>().map(|b| u32::from_le_bytes(*b)))
            .is_some_and(|version| version < crate::format::FORMAT_VERSION);
        let mut writer = Writer {
            older_format,
            layout,
            active,
            capacity,
            write_offset,
            synced_offset: write_offset,
            next_frame_seq,
            preparing: None,
            window: None,
            options,
            stats,
        };
        writer.open_window();
        writer.prepare_next();
        writer
    }

    /// Map the active segment for writing (`Flush` mode, where the file system offers it).
    fn open_window(&mut self) {
        self.window = None;
        // Only into segments preallocated with written zeros: a copy into a hole of a sparse
        // file makes the kernel allocate at fault time, and a full disk is then SIGBUS, not
        // ENOSPC.
        if self.options.durability != Durability::Flush || !self.options.preallocate {
            return;
        }
        let Some(file) = self.active.active_file() else { return };
        match file.writing_window() {
            Ok(window) => self.window = window,
            Err(error) => {
                tracing::warn!(%error, path = %self.active.path.display(), "cannot map the active segment; writing with pwrite");
            }
        }
    }

    /// Start preparing the next segment in the background (if configured).
    fn prepare_next(&mut self) {
        if !self.options.prepare_ahead || self.preparing.is_some() {
            return;
        }
        let layout = self.layout.clone();
        let (seq, size, preallocate) =
            (layout.new_segment_number(), self.options.segment_size, self.options.preallocate);
        let spawned = std::thread::Builder::new()
            .name("logsaver-prepare".into())
            .spawn(move || Segment::prepare(&*layout.vfs, &layout.dir, seq, size, preallocate));
        match spawned {
            Ok(handle) => self.preparing = Some(handle),
            Err(error) => tracing::warn!(%error, "cannot prepare segments ahead; creating them on rotation"),
        }
    }

    /// The next segment with room for `capacity` bytes: the one prepared ahead if it is big
    /// enough, else a new one made now.
    fn next_segment(&mut self, capacity: u64) -> Result<Segment> {
        let layout = self.layout.clone();
        if let Some(handle) = self.preparing.take() {
            let prepared = handle.join().map_err(|_| Error::Background("segment preparation panicked".into()))??;
            if prepared.capacity >= capacity {
                return prepared.install(&*layout.vfs, &layout.dir);
            }
            prepared.discard(&*layout.vfs);
        }
        let seq = layout.new_segment_number();
        Segment::create(&*layout.vfs, &layout.dir, seq, capacity, self.options.preallocate)
    }

    /// Wait for and remove a segment prepared ahead (closing).
    fn discard_prepared(&mut self) {
        if let Some(handle) = self.preparing.take()
            && let Ok(Ok(prepared)) = handle.join()
        {
            prepared.discard(&*self.layout.vfs);
        }
    }

    /// Start a fresh store: its first segment, listed in a new manifest.
    pub fn create(layout: Arc<Layout>, options: WriterOptions, stats: Arc<CommitStats>) -> Result<Self> {
        let seq = layout.new_segment_number();
        let active =
            Arc::new(Segment::create(&*layout.vfs, &layout.dir, seq, options.segment_size, options.preallocate)?);
        stats.segments_created.fetch_add(1, Ordering::Relaxed);
        layout.append_segment(seq)?;
        layout.segments.insert(active.clone());
        let offset = SEGMENT_HEADER_LEN as u64;
        Ok(Writer::resume(layout, active, options.segment_size, offset, 1, options, stats))
    }

    /// Write `batches` as frames (several if they cross a segment boundary); returns, per batch,
    /// the segment and the offset of its first byte.
    fn append(&mut self, batches: &[&Batch]) -> Result<Vec<(u32, u64)>> {
        let mut placed = Vec::with_capacity(batches.len());
        if self.older_format
            && let Some(first) = batches.first()
        {
            self.rotate(FRAME_HEADER_LEN as u64 + first.len())?;
        }
        let mut rest = batches;
        while let Some(next) = rest.first() {
            let room = self.capacity.saturating_sub(self.write_offset + FRAME_HEADER_LEN as u64);
            let mut count = 0;
            let mut payload = 0u64;
            for batch in rest {
                if payload + batch.len() > room.min(MAX_FRAME_PAYLOAD) {
                    break;
                }
                payload += batch.len();
                count += 1;
            }
            if count == 0 {
                // Not even the next batch fits: seal and start a segment big enough for it.
                self.rotate(FRAME_HEADER_LEN as u64 + next.len())?;
                continue;
            }
            let (group, after) = rest.split_at(count);
            let frame_offset = self.write_offset;
            self.write_frame(group, payload)?;
            let mut at = frame_offset + FRAME_HEADER_LEN as u64;
            for batch in group {
                placed.push((self.active.seq, at));
                at += batch.len();
            }
            rest = after;
        }
        Ok(placed)
    }

    fn write_frame(&mut self, batches: &[&Batch], payload_len: u64) -> Result<()> {
        let seq = u64::from(self.active.seq);
        let mut crc = salted_hasher(seq);
        for batch in batches {
            crc.combine(&batch.crc);
        }
        let payload_len = u32::try_from(payload_len).map_err(|_| {
            Error::invariant(format!("a frame payload of {payload_len} bytes exceeds MAX_FRAME_PAYLOAD"))
        })?;
        let record_count = u32::try_from(batches.iter().map(|b| b.records.len()).sum::<usize>())
            .map_err(|_| Error::invariant("a frame holds more than u32::MAX records"))?;
        let header = FrameHeader {
            payload_len,
            record_count,
            frame_seq: self.next_frame_seq,
            synced_upto: self.synced_offset,
            payload_crc: crc.finalize(),
        };
        let payload: Vec<&[u8]> = batches.iter().map(|b| &b.bytes[..]).collect();
        let frame = EncodedFrame::new(&header, seq, &payload);
        let span = frame.span();
        if self.options.durability == Durability::None {
            let tail_lock = self.active.tail().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
            let mut tail = tail_lock.lock();
            if tail.bytes.is_empty() {
                tail.start = self.write_offset;
            }
            frame.pieces().for_each(|piece| tail.bytes.extend_from_slice(piece));
            let full = tail.bytes.len() >= self.options.buffer_bytes;
            drop(tail);
            self.write_offset += span;
            if full {
                self.flush_tail()?;
            }
        } else {
            let copied = self.window.as_ref().is_some_and(|window| {
                let mut at = self.write_offset;
                frame.pieces().all(|piece| {
                    let done = window.write(piece, at);
                    at += piece.len() as u64;
                    done
                })
            });
            if !copied {
                let file = self.active.active_file().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
                write_frame(&**file, &self.active.path, self.write_offset, &frame)?;
            }
            self.write_offset += span;
        }
        self.next_frame_seq += 1;
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_written.fetch_add(span, Ordering::Relaxed);
        Ok(())
    }

    /// Durability `None`: write the buffered tail to the file.
    fn flush_tail(&mut self) -> Result<()> {
        let Some(tail_lock) = self.active.tail() else { return Ok(()) };
        let file = self.active.active_file().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
        let mut tail = tail_lock.lock();
        if tail.bytes.is_empty() {
            return Ok(());
        }
        // Readers copy from the tail under this lock, so they see the bytes either here or in
        // the file, never neither.
        file.write_all_at(&tail.bytes, tail.start).map_err(|e| Error::io("write", &self.active.path, e))?;
        tail.bytes.clear();
        Ok(())
    }

    /// Write anything buffered and fdatasync the active segment.
    pub fn sync(&mut self) -> Result<()> {
        self.flush_tail()?;
        if self.synced_offset == self.write_offset {
            return Ok(());
        }
        let file = self.active.active_file().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
        let started = std::time::Instant::now();
        file.sync_data().map_err(|e| Error::io("fdatasync", &self.active.path, e))?;
        self.stats.fsync_nanos.record_duration(started.elapsed());
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced_offset = self.write_offset;
        Ok(())
    }

    /// Seal the active segment (sync, trim to its data, map it) and create the next one, at
    /// least big enough for `needed` bytes after its header.
    fn rotate(&mut self, needed: u64) -> Result<()> {
        self.sync()?;
        self.window = None; // before the trim: no mapped page may outlive the file's end
        let file = self.active.active_file().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
        let path = self.active.path.clone();
        file.set_len(self.write_offset).map_err(|e| Error::io("trim sealed segment", &path, e))?;
        let started = std::time::Instant::now();
        file.sync_all().map_err(|e| Error::io("fsync sealed segment", &path, e))?;
        self.stats.fsync_nanos.record_duration(started.elapsed());
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        let layout = self.layout.clone();
        layout.segments.insert(Arc::new(Segment::sealed(&*layout.vfs, self.active.seq, path)?));

        let capacity = self.options.segment_size.max(align_up(SEGMENT_HEADER_LEN as u64 + needed));
        let next = Arc::new(self.next_segment(capacity)?);
        // Listed before it receives data: an unlisted segment is removed at open.
        layout.append_segment(next.seq)?;
        self.active = next;
        self.older_format = false;
        self.open_window();
        self.stats.segments_created.fetch_add(1, Ordering::Relaxed);
        layout.segments.insert(self.active.clone());
        self.capacity = capacity;
        self.write_offset = SEGMENT_HEADER_LEN as u64;
        self.synced_offset = self.write_offset;
        self.prepare_next();
        Ok(())
    }
}

/// The end of the log at a moment when no frame was being written.
#[derive(Clone, Copy, Debug)]
pub struct LogEnd {
    /// The active segment.
    pub segment: u32,
    /// The offset just past its last frame.
    pub offset: u64,
}

/// What the index reads back from records while a group is applied, read before the index write
/// lock is taken: from the group's own bytes for its new records, from disk for older ones.
struct Prefetched<'a> {
    refs: HashMap<Loc, Vec<u64>>,
    keys: HashMap<Loc, Vec<(String, i64)>>,
    /// For anything not gathered (it should not happen; reading then is correct, only slower).
    fallback: &'a SegmentSet,
}

impl<'a> Prefetched<'a> {
    fn gather(index: &Index, batches: &[&Batch], locs: &[Vec<Loc>], segments: &'a SegmentSet) -> Prefetched<'a> {
        let mut refs = HashMap::new();
        let mut keys = HashMap::new();
        let mut read_refs = Vec::new();
        let mut read_keys = Vec::new();
        // Only a special write (an error, an interrupt) reads the keys of a checkpoint's writes
        // records: without one in the group, none are decoded.
        let any_special = batches
            .iter()
            .flat_map(|batch| &batch.records)
            .any(|(op, ..)| matches!(op, IndexOp::Writes { special: true, .. }));
        // Records of this group, by (thread, namespace, checkpoint id), as the ops before each
        // one leave them: an op may replace or delete what an earlier op of the group wrote.
        for (batch, locs) in batches.iter().zip(locs) {
            for ((op, at, len), &loc) in batch.records.iter().zip(locs) {
                match op {
                    IndexOp::Checkpoint { thread, ns, id, refs: own, .. } => {
                        refs.insert(loc, own.clone());
                        if let Some(slot) = index
                            .namespace(thread, ns)
                            .and_then(|n| n.checkpoints.get(&crate::index::CheckpointKey::new(id)))
                        {
                            read_refs.push(slot.loc);
                        }
                    }
                    IndexOp::DeleteCheckpoints { thread, ns, ids } => {
                        if let Some(n) = index.namespace(thread, ns) {
                            for id in ids {
                                if let Some(slot) = n.checkpoints.get(&crate::index::CheckpointKey::new(id)) {
                                    read_refs.push(slot.loc);
                                }
                            }
                        }
                    }
                    IndexOp::Writes { .. } if !any_special => {}
                    IndexOp::Writes { thread, ns, checkpoint_id, special } => {
                        let body = batch.bytes.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + *len as usize);
                        if let Some(Ok(own)) = body.map(write_keys_of) {
                            keys.insert(loc, own);
                        }
                        if *special
                            && let Some(existing) = index
                                .namespace(thread, ns)
                                .and_then(|n| n.writes.get(&crate::index::CheckpointKey::new(checkpoint_id)))
                        {
                            read_keys.extend(existing.iter().copied());
                        }
                    }
                    IndexOp::Blob { .. } | IndexOp::DeleteThread { .. } => {}
                }
            }
        }
        for loc in read_refs {
            if let std::collections::hash_map::Entry::Vacant(entry) = refs.entry(loc) {
                entry.insert(segments.checkpoint_refs(loc));
            }
        }
        for loc in read_keys {
            if let std::collections::hash_map::Entry::Vacant(entry) = keys.entry(loc) {
                entry.insert(segments.write_keys(loc));
            }
        }
        Prefetched { refs, keys, fallback: segments }
    }
}

impl RecordSource for Prefetched<'_> {
    fn checkpoint_refs(&self, loc: Loc) -> Vec<u64> {
        match self.refs.get(&loc) {
            Some(refs) => refs.clone(),
            None => self.fallback.checkpoint_refs(loc),
        }
    }

    fn write_keys(&self, loc: Loc) -> Vec<(String, i64)> {
        match self.keys.get(&loc) {
            Some(keys) => keys.clone(),
            None => self.fallback.write_keys(loc),
        }
    }
}

/// What a caller hands to the committer.
pub enum Work {
    /// Records the caller encoded. A blob the batch assumes stored
    /// ([`Batch::assume_stored`]) is checked again by the leader: if it is gone by then (a
    /// delete, a compaction dropping it), the batch is not written and the caller is told
    /// [`Committed::Stale`], to encode again.
    Encoded(Batch),
    /// Records planned by the leader against the index as it is at the commit point, with
    /// nothing committed in between: maintenance (delete, prune, retention, copy) decides what
    /// to write from the state it changes, so it must not decide earlier. A planned call is
    /// committed in a group of its own.
    Planned(Plan),
}

/// A maintenance call's planner: reads the index (and records through it), returns the records.
pub type Plan = Box<dyn FnOnce(&Index) -> Result<Batch> + Send>;

/// How a commit ended, when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Committed {
    /// Written, durable as the mode promises, and applied to the index; where each record of
    /// the batch went, in the order they were pushed (empty for a planned call).
    Done(Vec<Loc>),
    /// Not written: a blob the batch assumed stored is gone. Encode again and retry.
    Stale,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Never leave the preparing thread running past the writer (it writes in the directory).
        self.discard_prepared();
    }
}

struct Request {
    ticket: u64,
    work: Work,
    /// The caller's operation tag (tests observe the commit order through it).
    #[cfg(feature = "testing")]
    tag: u64,
}

struct Queue {
    next_ticket: u64,
    waiting: std::collections::VecDeque<Request>,
    /// Finished tickets whose callers have not woken yet.
    finished: HashMap<u64, Result<Committed>>,
    leader_active: bool,
}

impl Queue {
    /// The next group: one planned call alone, or the encoded batches up to the next planned
    /// call.
    fn take_group(&mut self) -> Vec<Request> {
        match self.waiting.front() {
            Some(Request { work: Work::Planned(_), .. }) => self.waiting.pop_front().into_iter().collect(),
            _ => {
                let end =
                    self.waiting.iter().position(|r| matches!(r.work, Work::Planned(_))).unwrap_or(self.waiting.len());
                self.waiting.drain(..end).collect()
            }
        }
    }
}

/// Why the store is poisoned.
#[derive(Clone)]
struct Poison {
    reason: String,
    kind: Option<std::io::ErrorKind>,
}

impl Poison {
    fn error(&self) -> Error {
        Error::Poisoned { reason: self.reason.clone(), kind: self.kind }
    }
}

/// Group commit over one [`Writer`].
///
/// The writer mutex is the commit path: whoever holds it is the only one who writes frames or
/// changes the index (the leader, compaction's switch, a snapshot's capture). So what a leader
/// checks or plans against the index still holds when it applies its group.
pub struct Committer {
    queue: Mutex<Queue>,
    /// For the index to read back records whose data dies.
    segments: Arc<SegmentSet>,
    wake: Condvar,
    /// `None` for a read-only store.
    writer: Mutex<Option<Writer>>,
    poison: Mutex<Option<Poison>>,
    stats: Arc<CommitStats>,
    /// Operation tags of the committed batches, in commit order (tests only).
    #[cfg(feature = "testing")]
    commit_log: Mutex<Vec<u64>>,
}

#[cfg(feature = "testing")]
thread_local! {
    /// The tag that this thread's next calls carry into the commit log.
    pub static OP_TAG: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Committer {
    /// Commit through `writer`; with `None` (a read-only store) every commit fails with
    /// [`Error::ReadOnly`].
    pub fn new(writer: Option<Writer>, segments: Arc<SegmentSet>, stats: Arc<CommitStats>) -> Self {
        Committer {
            segments,
            queue: Mutex::new(Queue {
                next_ticket: 0,
                waiting: std::collections::VecDeque::new(),
                finished: HashMap::new(),
                leader_active: false,
            }),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
            poison: Mutex::new(None),
            stats,
            #[cfg(feature = "testing")]
            commit_log: Mutex::new(Vec::new()),
        }
    }

    /// The error of a write to a read-only store.
    fn read_only_error(&self) -> Error {
        let dir = self.segments.all().first().and_then(|s| s.path.parent().map(std::path::Path::to_path_buf));
        Error::ReadOnly { path: dir.unwrap_or_default() }
    }

    /// `Err(Poisoned)` once a write or fsync has failed.
    pub fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock() {
            Some(poison) => Err(poison.error()),
            None => Ok(()),
        }
    }

    fn set_poison(&self, error: &Error) {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            tracing::error!(%error, "write path failed; the store is poisoned until reopened");
            *poison = Some(Poison { reason: error.to_string(), kind: error.io_kind() });
        }
    }

    /// Commit `work`: make its records durable as the durability mode promises and apply them
    /// to `index`. Returns once both are done (or the batch was found stale).
    pub fn commit(&self, work: Work, index: &RwLock<Index>) -> Result<Committed> {
        self.check_poison()?;
        if let Work::Encoded(batch) = &work
            && batch.is_empty()
        {
            return Ok(Committed::Done(Vec::new()));
        }
        let mut queue = self.queue.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(Request {
            ticket,
            work,
            #[cfg(feature = "testing")]
            tag: OP_TAG.with(std::cell::Cell::get),
        });
        loop {
            if let Some(outcome) = queue.finished.remove(&ticket) {
                return outcome;
            }
            if !queue.leader_active {
                queue.leader_active = true;
                let group = queue.take_group();
                let tickets: Vec<u64> = group.iter().map(|request| request.ticket).collect();
                let led = MutexGuard::unlocked(&mut queue, || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.lead(group, ticket, index)))
                });
                queue.leader_active = false;
                match led {
                    Ok(outcomes) => queue.finished.extend(outcomes),
                    Err(panic) => {
                        // A bug, not an I/O failure; but the index may be half-applied, so the
                        // store stops, and nobody waiting on this group is left waiting forever.
                        let error = Error::invariant("the commit leader panicked");
                        self.set_poison(&error);
                        let others = tickets.into_iter().filter(|t| *t != ticket);
                        queue.finished.extend(others.map(|t| (t, Err(error.to_poisoned()))));
                        self.wake.notify_all();
                        drop(queue);
                        std::panic::resume_unwind(panic);
                    }
                }
                self.wake.notify_all();
                continue;
            }
            self.wake.wait(&mut queue);
        }
    }

    /// The leader's work for one group: check or plan, write, sync, index. Returns each
    /// request's outcome; `own` (the leader's ticket) gets the original error of a failed write,
    /// the others `Poisoned` with its kind.
    fn lead(&self, group: Vec<Request>, own: u64, index: &RwLock<Index>) -> Vec<(u64, Result<Committed>)> {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut writer_guard = self.writer.lock();
        let Some(writer) = writer_guard.as_mut() else {
            return group.into_iter().map(|r| (r.ticket, Err(self.read_only_error()))).collect();
        };
        // Checked under the commit path: a caller queued behind a failed leader must not become
        // leader and be acknowledged (after a failed fdatasync the kernel may report success for
        // a later one although the earlier frame is lost).
        if let Some(poison) = self.poison.lock().clone() {
            return group.into_iter().map(|r| (r.ticket, Err(poison.error()))).collect();
        }
        let mut ready: Vec<(u64, Batch)> = Vec::with_capacity(group.len());
        #[cfg(feature = "testing")]
        let mut tags = Vec::with_capacity(group.len());
        {
            let index = index.read();
            for request in group {
                let batch = match request.work {
                    Work::Encoded(batch) if batch.assumptions_hold(&index) => batch,
                    Work::Encoded(_) => {
                        outcomes.push((request.ticket, Ok(Committed::Stale)));
                        continue;
                    }
                    Work::Planned(plan) => match plan(&index) {
                        Ok(batch) if batch.is_empty() => {
                            outcomes.push((request.ticket, Ok(Committed::Done(Vec::new()))));
                            continue;
                        }
                        Ok(batch) => batch,
                        Err(error) => {
                            outcomes.push((request.ticket, Err(error)));
                            continue;
                        }
                    },
                };
                #[cfg(feature = "testing")]
                tags.push(request.tag);
                ready.push((request.ticket, batch));
            }
        }
        if ready.is_empty() {
            return outcomes;
        }
        let batches: Vec<&Batch> = ready.iter().map(|(_, batch)| batch).collect();
        let written = writer.append(&batches).and_then(|placed| {
            match writer.options.durability {
                Durability::Sync => writer.sync()?,
                Durability::Flush | Durability::None => {}
            }
            let end = Applied {
                segment: writer.active.seq,
                offset: writer.write_offset,
                frame_seq: writer.next_frame_seq - 1,
            };
            Ok((placed, end))
        });
        let (placed, end) = match written {
            Ok(written) => written,
            Err(error) => {
                self.set_poison(&error);
                let poisoned = error.to_poisoned();
                let mut error = Some(error);
                for (ticket, _) in &ready {
                    let outcome = match error.take_if(|_| *ticket == own) {
                        Some(original) => original,
                        None => poisoned.to_poisoned(),
                    };
                    outcomes.push((*ticket, Err(outcome)));
                }
                return outcomes;
            }
        };
        // What applying the group reads back from records (the references of a replaced or
        // deleted checkpoint, the keys of a checkpoint's writes when a special write may leave
        // some with nothing to give) is gathered first, so no file is read under the index
        // write lock: readers wait only for the index changes themselves.
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a record's offset is below its segment's capacity, and every segment this store creates fits u32 offsets: Options::validate caps segment_size at 4 GiB and rotation sizes a segment for one frame of at most MAX_FRAME_PAYLOAD"
        )]
        let locs: Vec<Vec<Loc>> = batches
            .iter()
            .zip(&placed)
            .map(|(batch, (segment, base))| {
                batch
                    .records
                    .iter()
                    .map(|(_, at, len)| Loc { segment: *segment, offset: (base + *at as u64) as u32, len: *len })
                    .collect()
            })
            .collect();
        let prefetched = Prefetched::gather(&index.read(), &batches, &locs, &self.segments);
        let mut index = index.write();
        for (batch, locs) in batches.iter().zip(&locs) {
            for ((op, _, _), loc) in batch.records.iter().zip(locs) {
                index.apply(op, *loc, &prefetched);
            }
        }
        index.applied = end;
        drop(index);
        #[cfg(feature = "testing")]
        self.commit_log.lock().extend(tags);
        self.stats.commits.fetch_add(ready.len() as u64, Ordering::Relaxed);
        self.stats.group_sizes.record(ready.len() as u64);
        outcomes.extend(ready.iter().zip(locs).map(|((ticket, _), locs)| (*ticket, Ok(Committed::Done(locs)))));
        outcomes
    }

    /// Operation tags of the committed batches, in commit order (tests only).
    #[cfg(feature = "testing")]
    pub fn commit_log(&self) -> Vec<u64> {
        self.commit_log.lock().clone()
    }

    /// Make everything applied so far durable, then run `f` with the commit path still held:
    /// the index `f` sees covers durable frames only (what an index snapshot may cover). `f`
    /// gets the end of the log: the active segment and the offset after its last frame.
    pub fn paused_durable<T>(&self, f: impl FnOnce(LogEnd) -> T) -> Result<T> {
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else { return Err(self.read_only_error()) };
        self.check_poison()?;
        if let Err(error) = writer.sync() {
            self.set_poison(&error);
            return Err(error);
        }
        Ok(f(LogEnd { segment: writer.active.seq, offset: writer.write_offset }))
    }

    /// Seal the active segment if it holds data, so everything written so far is in sealed
    /// segments (compaction works on those).
    pub fn seal_active(&self) -> Result<()> {
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else { return Err(self.read_only_error()) };
        self.check_poison()?;
        if writer.write_offset == SEGMENT_HEADER_LEN as u64 {
            return Ok(());
        }
        let result = writer.rotate(0);
        if let Err(error) = &result {
            self.set_poison(error);
        }
        result
    }

    /// Poison the store after a failure outside the write path (a compaction's manifest switch).
    pub fn poison(&self, error: &Error) {
        self.set_poison(error);
    }

    /// Flush, then trim the active segment's preallocated tail (the next open starts a new
    /// segment on its first write).
    pub fn close(&self) -> Result<()> {
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else { return Ok(()) }; // read-only: nothing to flush
        // Whatever happens next, the segment being prepared ahead is finished and removed now:
        // a failed close must not leave a thread writing in the directory after it returns.
        writer.discard_prepared();
        self.check_poison()?;
        let result = writer.sync().and_then(|()| {
            writer.window = None; // before the trim
            let end = writer.write_offset;
            let path = writer.active.path.clone();
            let file = writer.active.active_file().ok_or_else(|| Error::invariant("the active segment is sealed"))?;
            file.set_len(end).map_err(|e| Error::io("trim active segment", &path, e))?;
            file.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
            writer.capacity = end;
            Ok(())
        });
        if let Err(error) = &result {
            self.set_poison(error);
        }
        result
    }

    /// Write buffered bytes and fdatasync: everything committed so far survives a power cut.
    pub fn flush(&self) -> Result<()> {
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else { return Ok(()) }; // read-only: nothing to flush
        self.check_poison()?;
        let result = writer.sync();
        if let Err(error) = &result {
            self.set_poison(error);
        }
        result
    }
}
