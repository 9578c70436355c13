//! `LogStore`: the log-structured engine behind the [`CheckpointSaver`] trait.
//!
//! Writes encode records on the caller's thread and go through group commit
//! ([`crate::commit`]); reads look locations up in the in-memory index ([`crate::index`]) and
//! read records from mapped sealed segments or the active segment.

use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::commit::{Batch, CommitStats, Committed, Committer, Durability, Work, Writer, WriterOptions};
use crate::compaction::CompactionStats;
use crate::error::{Error, Result};
use crate::id::CheckpointIdGenerator;
use crate::index::{CheckpointKey, CheckpointSlot, Index, NamespaceIndex, blob_hash};
use crate::maintenance;
use crate::manifest::{Layout, Manifest};
use crate::model::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery,
    Metadata, PruneStrategy,
};
use crate::pending::{encode_writes, load_pending_writes, record_error};
use crate::records::{BlobKey, BlobRecord, BlobRef, CheckpointBody, CheckpointHead, CheckpointRecord, decode_prefix};
use crate::recovery::{Access, RecoveryMode, RecoveryReport, recover};
use crate::retention::RetentionStats;
use crate::saver::{Ancestor, CheckpointSaver, check_thread_id, metadata_matches, run_id_of, walk_delta_history};
use crate::segment::{Loc, RecordBytes, SegmentSet, sync_dir};
use crate::vfs::{LockGuard, Vfs};

/// Name of the lock file in a store directory.
pub const LOCK_FILE: &str = "LOCK";

/// How a [`LogStore`] is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// What a write call promises when it returns. Default: [`Durability::Sync`].
    pub durability: Durability,
    /// Capacity of each new segment file. Default: 8 MiB (the fastest durable puts in
    /// `cargo bench --bench tuning`; see the README's tuning table).
    pub segment_size: u64,
    /// Zero-fill new segments, so fdatasync does not have to journal block allocation.
    /// Default: true.
    pub preallocate: bool,
    /// How recovery treats damage. Default: [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Largest single value (channel value or write). Default: 1 GiB.
    pub max_value_bytes: u64,
    /// Durability `None`: bytes buffered in memory before they are written to the file.
    /// Default: 1 MiB.
    pub buffer_bytes: usize,
    /// Create and preallocate the next segment on a background thread, so a rotation does not
    /// stall a commit for the zero-fill. Default: true.
    pub prepare_segments_ahead: bool,
    /// Load the index snapshot at open when it is valid. Default: true; `false` replays (and so
    /// checks) every frame of the log.
    pub use_snapshot: bool,
    /// Background compaction; `None` turns it off. Default: on, see [`AutoCompaction`].
    pub auto_compaction: Option<AutoCompaction>,
    /// Retention applied by [`LogStore::apply_retention`] and, with an interval, in the
    /// background. Default: keep everything.
    pub retention: Retention,
}

/// When the background compactor rewrites the oldest segments.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoCompaction {
    /// Compact a prefix of sealed segments once this share of its bytes is garbage. Default 0.5.
    pub garbage_ratio: f64,
    /// ... and it holds at least this many garbage bytes. Default 32 MiB.
    pub min_garbage_bytes: u64,
    /// How often the compactor looks. Default 10 s.
    pub interval: std::time::Duration,
}

impl Default for AutoCompaction {
    fn default() -> Self {
        AutoCompaction { garbage_ratio: 0.5, min_garbage_bytes: 32 << 20, interval: std::time::Duration::from_secs(10) }
    }
}

/// What to keep. A checkpoint is removed if it is not among the newest `keep_last` of its
/// namespace, or if it is older than `max_age` (by the time in its uuid6 id, else its `ts`). A
/// kept checkpoint whose parent is removed gets no parent, cleanly; its values and pending
/// writes are untouched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retention {
    /// Keep at most this many checkpoints per (thread, namespace).
    pub keep_last: Option<usize>,
    /// Remove checkpoints older than this.
    pub max_age: Option<std::time::Duration>,
    /// Apply in the background this often (`None`: only when asked).
    pub interval: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            segment_size: 8 << 20,
            preallocate: true,
            recovery: RecoveryMode::TolerateTornTail,
            max_value_bytes: 1 << 30,
            buffer_bytes: 1 << 20,
            prepare_segments_ahead: true,
            use_snapshot: true,
            auto_compaction: Some(AutoCompaction::default()),
            retention: Retention::default(),
        }
    }
}

impl Options {
    /// Default options with another durability.
    pub fn with_durability(durability: Durability) -> Self {
        Options { durability, ..Options::default() }
    }
}

/// A snapshot of the store's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Threads in the index.
    pub threads: u64,
    /// Checkpoints in the index.
    pub checkpoints: u64,
    /// Blob entries in the index.
    pub blobs: u64,
    /// `put_writes` records in the index.
    pub write_records: u64,
    /// Segment files.
    pub segments: u64,
    /// Write calls committed since open.
    pub commits: u64,
    /// Frames written since open.
    pub frames: u64,
    /// fdatasync calls on segment files since open.
    pub fsyncs: u64,
    /// Bytes written to segment files since open.
    pub bytes_written: u64,
    /// Run ids the index holds (those of live checkpoints).
    pub run_ids: u64,
}

/// The store's state, shared by [`LogStore`] and its background worker.
pub(crate) struct Engine {
    dir: PathBuf,
    options: Options,
    pub(crate) index: RwLock<Index>,
    pub(crate) segments: Arc<SegmentSet>,
    committer: Committer,
    stats: Arc<CommitStats>,
    ids: CheckpointIdGenerator,
    report: RecoveryReport,
    /// Set by `close` before it waits for calls in flight; calls that start later fail.
    closed: AtomicBool,
    /// Every call holds this shared while it runs; `close` takes it exclusively, so it flushes
    /// and unlocks the directory only once no call is in flight (and none can start).
    gate: RwLock<()>,
    /// The store was opened with damage skipped ([`RecoveryMode::SkipCorrupted`]): its index
    /// is a lossy view, which must never be persisted (no snapshot, no compaction).
    degraded: bool,
    /// The directory lock; dropped (unlocking the directory) by `close` or drop.
    lock: parking_lot::Mutex<Option<LockGuard>>,
    layout: Arc<Layout>,
    /// One compaction at a time.
    compacting: parking_lot::Mutex<()>,
    /// Called by compaction between its switch and its snapshot (tests only: a call landing
    /// there must not be covered by the snapshot unless it is durable).
    #[cfg(feature = "testing")]
    pub(crate) before_snapshot: parking_lot::Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Engine {
    pub(crate) fn open_with(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, options: Options) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        if options.segment_size < 4096 || options.segment_size > u64::from(u32::MAX) {
            return Err(Error::invalid(format!(
                "segment_size {} must be between 4 KiB and 4 GiB",
                options.segment_size
            )));
        }
        create_store_dir(&*vfs, &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match vfs.try_lock(&lock_path).map_err(|e| Error::io("lock", &lock_path, e))? {
            Some(lock) => lock,
            None => return Err(Error::Locked { path: dir }),
        };

        let recovered = recover(&*vfs, &dir, options.recovery, options.use_snapshot, Access::ReadWrite)?;
        let stats = Arc::new(CommitStats::default());
        let writer_options = WriterOptions {
            durability: options.durability,
            segment_size: options.segment_size,
            preallocate: options.preallocate,
            buffer_bytes: options.buffer_bytes,
            prepare_ahead: options.prepare_segments_ahead,
        };
        let manifest = recovered.manifest.unwrap_or(Manifest { generation: 0, segments: Vec::new() });
        let layout = Arc::new(Layout::new(
            vfs.clone(),
            dir.clone(),
            recovered.segments.clone(),
            manifest,
            recovered.next_segment,
        ));
        let writer = match recovered.active {
            Some((active, capacity, end)) => Writer::resume(
                layout.clone(),
                active,
                capacity,
                end,
                recovered.next_frame_seq,
                writer_options,
                stats.clone(),
            ),
            None => Writer::create(layout.clone(), writer_options, stats.clone())?,
        };
        let max_id = recovered.index.max_checkpoint_id.as_ref().map(|key| key.as_str().into_owned());
        tracing::info!(
            dir = %dir.display(),
            segments = recovered.report.segments,
            records = recovered.report.records,
            elapsed_ms = recovered.report.elapsed.as_millis() as u64,
            "opened store"
        );
        let degraded = !recovered.report.skipped.is_empty();
        Ok(Engine {
            dir,
            options,
            index: RwLock::new(recovered.index),
            segments: recovered.segments,
            committer: Committer::new(writer, stats.clone()),
            stats,
            ids: CheckpointIdGenerator::new(max_id.as_deref()),
            report: recovered.report,
            closed: AtomicBool::new(false),
            gate: RwLock::new(()),
            degraded,
            lock: parking_lot::Mutex::new(Some(lock)),
            layout,
            compacting: parking_lot::Mutex::new(()),
            #[cfg(feature = "testing")]
            before_snapshot: parking_lot::Mutex::new(None),
        })
    }

    /// The store directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &Options {
        &self.options
    }

    /// What recovery found when the store was opened.
    pub(crate) fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// A new checkpoint id (uuid6), greater than every id made by this process and every id in
    /// the store when it was opened.
    pub(crate) fn next_checkpoint_id(&self) -> String {
        self.ids.next_id()
    }

    /// Make everything committed so far durable (writes buffered bytes, fdatasync).
    pub(crate) fn flush(&self) -> Result<()> {
        let _call = self.enter()?;
        self.committer.flush()
    }

    /// Flush and close, releasing the directory lock so the store can be opened again. Waits
    /// for calls in flight (a compaction stops at its next frame); calls that start later fail
    /// with [`Error::Closed`]. Nothing touches the directory after it returns. Closing twice is
    /// harmless.
    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let _no_calls = self.gate.write();
        // Flushed and trimmed: a closed store holds no preallocated space.
        let flushed = self.committer.close();
        if flushed.is_ok() {
            self.write_snapshot();
        }
        self.lock.lock().take();
        flushed
    }

    /// Tags of the committed batches in commit order (tests only).
    #[cfg(feature = "testing")]
    pub(crate) fn commit_log(&self) -> Vec<u64> {
        self.committer.commit_log()
    }

    /// Whether `close` has begun (long calls check it to stop early).
    pub(crate) fn closing(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Counters of the index and the write path.
    pub(crate) fn stats(&self) -> StoreStats {
        let (counts, run_ids) = {
            let index = self.index.read();
            (index.counts(), index.runs.len() as u64)
        };
        StoreStats {
            threads: counts.threads,
            checkpoints: counts.checkpoints,
            blobs: counts.blobs,
            write_records: counts.write_records,
            segments: self.segments.all().len() as u64,
            commits: self.stats.commits.load(Ordering::Relaxed),
            frames: self.stats.frames.load(Ordering::Relaxed),
            fsyncs: self.stats.fsyncs.load(Ordering::Relaxed),
            bytes_written: self.stats.bytes_written.load(Ordering::Relaxed),
            run_ids,
        }
    }

    /// Begin a call: fails once the store is closed or poisoned; the guard keeps `close` waiting
    /// until the call is over.
    pub(crate) fn enter(&self) -> Result<parking_lot::RwLockReadGuard<'_, ()>> {
        if self.closing() {
            return Err(Error::Closed);
        }
        // Recursive: a call may run inside another (the background worker's retention) while
        // `close` waits for the exclusive side; the flag is checked again once inside.
        let guard = self.gate.read_recursive();
        if self.closing() {
            return Err(Error::Closed);
        }
        self.committer.check_poison()?;
        Ok(guard)
    }

    /// Commit records encoded by the caller that assume nothing stored.
    fn commit(&self, batch: Batch) -> Result<()> {
        match self.committer.commit(Work::Encoded(batch), &self.index)? {
            Committed::Done => Ok(()),
            Committed::Stale => Err(Error::invalid("internal: a batch without assumptions was found stale")),
        }
    }

    /// Commit records the leader plans at the commit point (maintenance calls).
    fn commit_planned(&self, plan: crate::commit::Plan) -> Result<()> {
        match self.committer.commit(Work::Planned(plan), &self.index)? {
            Committed::Done | Committed::Stale => Ok(()),
        }
    }

    pub(crate) fn commit_batch(&self, batch: Batch) -> Result<()> {
        let _call = self.enter()?;
        self.commit(batch)
    }

    fn check_value(&self, what: impl FnOnce() -> String, value: &Blob) -> Result<()> {
        let size = value.bytes.len() as u64;
        if size > self.options.max_value_bytes {
            return Err(Error::TooLarge { what: what(), size, limit: self.options.max_value_bytes });
        }
        Ok(())
    }

    /// Decode the body of a record read from the log; a record that passed its CRC but does
    /// not decode is corruption at its location.
    fn decoded<'b, T: serde::Deserialize<'b>>(&self, bytes: &'b RecordBytes) -> Result<T> {
        maintenance::decoded(&self.segments, bytes)
    }

    /// The blob record of (channel, version) in `ns`, if stored, read once. Its key is checked
    /// against the request, so a hash collision is reported rather than answered with the
    /// wrong value.
    fn find_blob(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        channel: &str,
        version: &ChannelVersion,
    ) -> Result<Option<RecordBytes>> {
        let Some(loc) = ns.stored_blob(blob_hash(channel, version)).map(|slot| slot.loc) else { return Ok(None) };
        let bytes = self.segments.read_record(loc)?;
        let key: BlobKey =
            decode_prefix(bytes.view().body).map_err(|reason| record_error(&self.segments, loc, reason))?;
        if key.thread_id != thread || key.checkpoint_ns != ns_name || key.channel != channel || *key.version != *version
        {
            return Err(record_error(
                &self.segments,
                loc,
                format!(
                    "blob index entry for channel {channel:?} version {version} of thread {thread:?} points at another blob"
                ),
            ));
        }
        Ok(Some(bytes))
    }

    /// The stored value of (channel, version) in `ns`; `None` if nothing is stored or it is the
    /// `empty` sentinel.
    fn blob_value(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        channel: &str,
        version: &ChannelVersion,
    ) -> Result<Option<Blob>> {
        let Some(bytes) = self.find_blob(thread, ns_name, ns, channel, version)? else { return Ok(None) };
        let record: BlobRecord = self.decoded(&bytes)?;
        Ok(record.value.map(|value| value.to_blob()))
    }

    /// Read a checkpoint record and decode it.
    fn read_checkpoint(&self, loc: Loc) -> Result<(RecordBytes, Metadata)> {
        let bytes = self.segments.read_record(loc)?;
        let head: CheckpointHead =
            decode_prefix(bytes.view().body).map_err(|reason| record_error(&self.segments, loc, reason))?;
        let metadata = serde_json::from_str(&head.metadata_json)
            .map_err(|e| record_error(&self.segments, loc, format!("metadata is not a JSON object: {e}")))?;
        Ok((bytes, metadata))
    }

    /// Assemble the tuple of one indexed checkpoint.
    fn load_tuple(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        key: &CheckpointKey,
        slot: &CheckpointSlot,
        loaded: Option<(RecordBytes, Metadata)>,
    ) -> Result<CheckpointTuple> {
        let (bytes, metadata) = match loaded {
            Some(loaded) => loaded,
            None => self.read_checkpoint(slot.loc)?,
        };
        let record: CheckpointRecord = self.decoded(&bytes)?;
        let id = key.as_str();
        if record.head.checkpoint_id != id || record.head.thread_id != thread || record.head.checkpoint_ns != ns_name {
            return Err(record_error(
                &self.segments,
                slot.loc,
                format!("index entry for checkpoint {id} of thread {thread:?} points at another record"),
            ));
        }
        let body = record.body;
        let mut channel_values = std::collections::BTreeMap::new();
        for (channel, version) in body.channel_versions.iter() {
            if let Some(value) = self.blob_value(thread, ns_name, ns, channel, version)? {
                channel_values.insert(channel.clone(), value);
            }
        }
        let pending_writes = match ns.writes.get(key) {
            Some(locs) => load_pending_writes(&self.segments, locs)?,
            None => Vec::new(),
        };
        let config = Config {
            thread_id: thread.to_owned(),
            checkpoint_ns: ns_name.to_owned(),
            checkpoint_id: Some(id.to_string()),
        };
        let parent_config = record.head.parent_id.map(|parent| config.clone().with_checkpoint(parent.into_owned()));
        Ok(CheckpointTuple {
            checkpoint: Checkpoint {
                v: body.v,
                id: id.into_owned(),
                ts: body.ts.into_owned(),
                channel_values,
                channel_versions: body.channel_versions.into_owned(),
                versions_seen: body.versions_seen.into_owned(),
                updated_channels: body.updated_channels.map(Cow::into_owned),
            },
            config,
            metadata,
            parent_config,
            pending_writes,
        })
    }

    /// One ancestor for the delta-history walk: its parent, the requested channels' stored
    /// values and its pending writes, without loading other channels.
    fn load_ancestor(
        &self,
        thread: &str,
        ns_name: &str,
        ns: &NamespaceIndex,
        id: &str,
        channels: &[String],
    ) -> Result<Option<Ancestor>> {
        let Some((key, slot)) = ns.checkpoints.get_key_value(&CheckpointKey::new(id)) else { return Ok(None) };
        let bytes = self.segments.read_record(slot.loc)?;
        let record: CheckpointRecord = self.decoded(&bytes)?;
        let mut values = std::collections::BTreeMap::new();
        for channel in channels {
            let Some(version) = record.body.channel_versions.get(channel) else { continue };
            if let Some(value) = self.blob_value(thread, ns_name, ns, channel, version)? {
                values.insert(channel.clone(), value);
            }
        }
        let writes = match ns.writes.get(key) {
            Some(locs) => load_pending_writes(&self.segments, locs)?,
            None => Vec::new(),
        };
        Ok(Some(Ancestor { parent_id: record.head.parent_id.map(Cow::into_owned), values, writes }))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst)
            && let Err(error) = self.close()
        {
            tracing::warn!(%error, dir = %self.dir.display(), "flush at drop failed");
        }
    }
}

/// One (thread, namespace) source for `list`'s newest-first merge.
struct ListSource<'a> {
    thread: &'a str,
    ns_name: &'a str,
    ns: &'a NamespaceIndex,
    entries: Box<dyn Iterator<Item = (&'a CheckpointKey, &'a CheckpointSlot)> + 'a>,
}

impl CheckpointSaver for Engine {
    fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        let index = self.index.read();
        let Some(ns) = index.namespace(&config.thread_id, &config.checkpoint_ns) else { return Ok(None) };
        let found = match &config.checkpoint_id {
            Some(id) => ns.checkpoints.get_key_value(&CheckpointKey::new(id)),
            None => ns.checkpoints.last_key_value(),
        };
        let Some((key, slot)) = found else { return Ok(None) };
        self.load_tuple(&config.thread_id, &config.checkpoint_ns, ns, key, slot, None).map(Some)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>> {
        let _call = self.enter()?;
        let limit = query.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = self.index.read();
        let before = query.before.as_deref().map(CheckpointKey::new);
        let exact = query.checkpoint_id.as_deref().map(CheckpointKey::new);
        let mut sources = Vec::new();
        let threads: Vec<(&str, &crate::index::ThreadIndex)> = match &query.thread_id {
            Some(thread) => index.thread(thread).map(|t| (thread.as_str(), t)).into_iter().collect(),
            None => {
                // Sorted, so checkpoints with equal ids (copied threads) list in a stable order.
                let mut all: Vec<_> = index.threads().collect();
                all.sort_unstable_by(|a, b| a.0.cmp(b.0));
                all
            }
        };
        for (thread, thread_index) in threads {
            for (ns_name, ns) in &thread_index.namespaces {
                if query.checkpoint_ns.as_deref().is_some_and(|wanted| wanted != ns_name.as_ref()) {
                    continue;
                }
                let entries: Box<dyn Iterator<Item = _>> = match (&exact, &before) {
                    (Some(exact), _) => Box::new(
                        ns.checkpoints
                            .get_key_value(exact)
                            .filter(|(key, _)| before.as_ref().is_none_or(|b| *key < b))
                            .into_iter(),
                    ),
                    (None, Some(before)) => Box::new(ns.checkpoints.range(..before.clone()).rev()),
                    (None, None) => Box::new(ns.checkpoints.iter().rev()),
                };
                sources.push(ListSource { thread, ns_name, ns, entries });
            }
        }
        // Newest first across every source: a max-heap holding each source's next entry.
        let mut heap = BinaryHeap::new();
        let mut heads = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter_mut().enumerate() {
            let head = source.entries.next();
            if let Some((key, _)) = head {
                heap.push((key, std::cmp::Reverse(i)));
            }
            heads.push(head);
        }
        let mut out = Vec::new();
        while let Some((_, std::cmp::Reverse(i))) = heap.pop() {
            let Some((key, slot)) = heads[i] else { continue };
            heads[i] = sources[i].entries.next();
            if let Some((next, _)) = heads[i] {
                heap.push((next, std::cmp::Reverse(i)));
            }
            let source = &sources[i];
            let loaded = self.read_checkpoint(slot.loc)?;
            if !metadata_matches(&loaded.1, &query.filter) {
                continue;
            }
            out.push(self.load_tuple(source.thread, source.ns_name, source.ns, key, slot, Some(loaded))?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn get_delta_channel_history(
        &self,
        config: &Config,
        channels: &[String],
    ) -> Result<std::collections::BTreeMap<String, DeltaChannelHistory>> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        let (thread, ns_name) = (config.thread_id.as_str(), config.checkpoint_ns.as_str());
        // One read lock for the whole walk: a consistent view, no per-ancestor lookups.
        let index = self.index.read();
        let Some(ns) = index.namespace(thread, ns_name) else {
            return walk_delta_history(channels, None, |_| Ok(None));
        };
        let target = match &config.checkpoint_id {
            Some(id) => ns.checkpoints.get_key_value(&CheckpointKey::new(id)),
            None => ns.checkpoints.last_key_value(),
        };
        let start = match target {
            Some((key, _)) => self.load_ancestor(thread, ns_name, ns, &key.as_str(), &[])?.and_then(|a| a.parent_id),
            None => None,
        };
        walk_delta_history(channels, start, |id| self.load_ancestor(thread, ns_name, ns, id, channels))
    }

    fn put(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata: &Metadata,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        let _call = self.enter()?;
        check_thread_id(&config.thread_id)?;
        if checkpoint.id.is_empty() {
            return Err(Error::invalid(format!("checkpoint for thread {:?} has an empty id", config.thread_id)));
        }
        let (thread, ns_name) = (&config.thread_id, &config.checkpoint_ns);
        for value in
            new_versions.keys().filter_map(|channel| checkpoint.channel_values.get(channel).map(|v| (channel, v)))
        {
            self.check_value(|| format!("channel {:?} of thread {thread:?}", value.0), value.1)?;
        }
        let metadata_json = serde_json::to_string(metadata).map_err(|e| Error::invalid(format!("metadata: {e}")))?;
        // A value already stored is not written again; the leader checks that it is still
        // stored when the batch commits (a delete or a compaction may drop it meanwhile), and a
        // stale batch is encoded again, writing the value this time.
        for _attempt in 0..MAX_STALE_RETRIES {
            let mut batch = Batch::new();
            {
                let index = self.index.read();
                let ns = index.namespace(thread, ns_name);
                for (channel, version) in new_versions {
                    if let Some(ns) = ns
                        && self.find_blob(thread, ns_name, ns, channel, version)?.is_some()
                    {
                        batch.assume_stored(thread, ns_name, blob_hash(channel, version));
                        continue;
                    }
                    let record = BlobRecord {
                        key: BlobKey {
                            thread_id: Cow::Borrowed(thread),
                            checkpoint_ns: Cow::Borrowed(ns_name),
                            channel: Cow::Borrowed(channel),
                            version: Cow::Borrowed(version),
                        },
                        value: checkpoint.channel_values.get(channel).map(BlobRef::of),
                    };
                    batch.push(&record)?;
                }
            }
            let record = CheckpointRecord {
                head: CheckpointHead {
                    thread_id: Cow::Borrowed(thread),
                    checkpoint_ns: Cow::Borrowed(ns_name),
                    checkpoint_id: Cow::Borrowed(&checkpoint.id),
                    parent_id: config.checkpoint_id.as_deref().map(Cow::Borrowed),
                    run_id: run_id_of(metadata).map(Cow::Borrowed),
                    metadata_json: Cow::Borrowed(&metadata_json),
                },
                body: CheckpointBody {
                    v: checkpoint.v,
                    ts: Cow::Borrowed(&checkpoint.ts),
                    channel_versions: Cow::Borrowed(&checkpoint.channel_versions),
                    versions_seen: Cow::Borrowed(&checkpoint.versions_seen),
                    updated_channels: checkpoint.updated_channels.as_deref().map(Cow::Borrowed),
                },
            };
            batch.push(&record)?;
            match self.committer.commit(Work::Encoded(batch), &self.index)? {
                Committed::Done => {
                    return Ok(Config {
                        thread_id: thread.clone(),
                        checkpoint_ns: ns_name.clone(),
                        checkpoint_id: Some(checkpoint.id.clone()),
                    });
                }
                Committed::Stale => continue,
            }
        }
        Err(Error::invalid(format!(
            "put of checkpoint {} of thread {thread:?}: its stored values kept being deleted under it; retry",
            checkpoint.id
        )))
    }

    fn put_writes(&self, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) -> Result<()> {
        let _call = self.enter()?;
        let mut batch = Batch::new();
        encode_writes(&mut batch, config, writes, task_id, task_path, self.options.max_value_bytes)?;
        self.commit(batch)
    }

    fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.prune(&[thread_id.to_owned()], PruneStrategy::Delete)
    }

    fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        let _call = self.enter()?;
        if run_ids.is_empty() {
            return Ok(());
        }
        self.commit_planned(maintenance::delete_for_runs(run_ids.to_vec()))
    }

    fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        let _call = self.enter()?;
        check_thread_id(source)?;
        check_thread_id(target)?;
        self.commit_planned(maintenance::copy_thread(self.segments.clone(), source.to_owned(), target.to_owned()))
    }

    fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        let _call = self.enter()?;
        for thread in thread_ids {
            check_thread_id(thread)?;
        }
        match strategy {
            PruneStrategy::Delete => self.commit_planned(maintenance::delete_threads(thread_ids.to_vec())),
            PruneStrategy::KeepLatest => {
                let keep_latest = Retention { keep_last: Some(1), ..Retention::default() };
                self.retain(&keep_latest, maintenance::RetentionScope::Threads(thread_ids.to_vec()), true).map(|_| ())
            }
        }
    }
}

impl Engine {
    /// Apply `policy` to `scope` in bounded batches, each planned at its commit point.
    fn retain(
        &self,
        policy: &Retention,
        scope: maintenance::RetentionScope,
        orphan_writes: bool,
    ) -> Result<RetentionStats> {
        let mut total = RetentionStats::default();
        let mut scope = Some(scope);
        let now = SystemTime::now();
        while let Some(this) = scope.take() {
            if self.closing() {
                return Err(Error::Closed);
            }
            let progress = Arc::new(parking_lot::Mutex::new(maintenance::RetentionProgress::default()));
            let plan = maintenance::retention(
                self.segments.clone(),
                policy.clone(),
                this,
                orphan_writes,
                now,
                progress.clone(),
            );
            self.commit_planned(plan)?;
            let done = std::mem::take(&mut *progress.lock());
            total.checkpoints_removed += done.stats.checkpoints_removed;
            total.parents_cleared += done.stats.parents_cleared;
            if !done.remaining.is_empty() {
                scope = Some(maintenance::RetentionScope::Threads(done.remaining));
            }
        }
        Ok(total)
    }

    /// Apply [`Options::retention`] to every thread now, in bounded batches: commits are not
    /// held up for the whole store, and no batch outgrows a frame. The first batch is planned
    /// over the threads that exist at its commit point.
    pub(crate) fn apply_retention(&self) -> Result<RetentionStats> {
        let _call = self.enter()?;
        let policy = &self.options.retention;
        if policy.keep_last.is_none() && policy.max_age.is_none() {
            return Ok(RetentionStats::default());
        }
        self.retain(policy, maintenance::RetentionScope::All, false)
    }

    /// Bytes per segment: on disk, in records, live.
    pub(crate) fn space(&self) -> SpaceStats {
        let manifest = self.layout.manifest();
        let index = self.index.read();
        let mut space = SpaceStats::default();
        for seq in manifest.segments {
            let usage = index.usage.get(&seq).copied().unwrap_or_default();
            let file_bytes = self.segments.get(seq).map_or(0, |s| s.file_len());
            space.file_bytes += file_bytes;
            space.record_bytes += usage.records;
            space.live_bytes += usage.live;
            space.segments.push(SegmentSpace { seq, file_bytes, record_bytes: usage.records, live_bytes: usage.live });
        }
        space
    }

    /// Seal the active segment and compact every segment: all garbage is reclaimed.
    pub(crate) fn compact_all(&self) -> Result<CompactionStats> {
        let _call = self.enter()?;
        let _one = self.compacting.lock();
        self.committer.seal_active()?;
        let manifest = self.layout.manifest();
        let sealed = &manifest.segments[..manifest.segments.len().saturating_sub(1)];
        self.compact_segments(sealed)
    }

    /// Compact the longest prefix of sealed segments whose garbage passes `policy`, if any.
    pub(crate) fn compact_if_needed(&self, policy: &AutoCompaction) -> Result<Option<CompactionStats>> {
        let _call = self.enter()?;
        let Some(_one) = self.compacting.try_lock() else { return Ok(None) };
        let space = self.space();
        let sealed = &space.segments[..space.segments.len().saturating_sub(1)];
        let (mut bytes, mut garbage, mut best) = (0u64, 0u64, 0usize);
        for (i, segment) in sealed.iter().enumerate() {
            bytes += segment.file_bytes;
            garbage += segment.file_bytes.saturating_sub(segment.live_bytes);
            if bytes > 0 && garbage as f64 >= policy.garbage_ratio * bytes as f64 && garbage >= policy.min_garbage_bytes
            {
                best = i + 1;
            }
        }
        if best == 0 {
            return Ok(None);
        }
        let seqs: Vec<u32> = sealed[..best].iter().map(|s| s.seq).collect();
        self.compact_segments(&seqs).map(Some)
    }

    fn compact_segments(&self, seqs: &[u32]) -> Result<CompactionStats> {
        if seqs.is_empty() {
            return Ok(CompactionStats::default());
        }
        if self.degraded {
            return Err(Error::invalid(format!(
                "store {} was opened with damaged frames skipped; compacting would erase them for good: \
                 export what is readable into a new store instead",
                self.dir.display()
            )));
        }
        let victims: Vec<_> = seqs
            .iter()
            .map(|&seq| self.segments.get(seq).ok_or_else(|| Error::invalid(format!("segment {seq} is not open"))))
            .collect::<Result<_>>()?;
        let stats = crate::compaction::compact_prefix(
            &self.layout,
            &self.index,
            &self.committer,
            &victims,
            self.options.segment_size,
            &|| self.closing(),
        )?;
        tracing::info!(?stats, "compacted");
        #[cfg(feature = "testing")]
        if let Some(hook) = self.before_snapshot.lock().as_ref() {
            hook();
        }
        // The old snapshot names retired segments: replace it.
        self.write_snapshot();
        Ok(stats)
    }

    /// Write the index snapshot; a failure only costs a slower next open.
    ///
    /// The image is taken with the commit path held right after a sync, so it covers durable
    /// frames only in every durability mode (a snapshot that covered a frame lost in a crash
    /// would point the next open's index into zeros). It is encoded and written after the
    /// locks are released. A degraded store (damage skipped at open) writes none: its index
    /// leaves the damaged frames out, and a snapshot would hide them from the next open.
    fn write_snapshot(&self) {
        if self.degraded {
            return;
        }
        let captured = self.committer.paused_durable(|| {
            let index = self.index.read();
            crate::snapshot::capture(&self.layout.manifest(), &self.segments, &index)
        });
        let written = captured
            .and_then(|image| image)
            .and_then(|image| crate::snapshot::write(&*self.layout.vfs, &self.dir, &image));
        if let Err(error) = written {
            tracing::warn!(%error, "cannot write the index snapshot; the next open replays the log");
        }
    }
}

/// Space used by one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentSpace {
    /// Segment number.
    pub seq: u32,
    /// Size of the file (the active segment's includes its preallocated tail).
    pub file_bytes: u64,
    /// Bytes of records in it.
    pub record_bytes: u64,
    /// Bytes of records still needed.
    pub live_bytes: u64,
}

/// Space used by the store, per segment in log order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceStats {
    /// Every segment, in log order; the last is the active one.
    pub segments: Vec<SegmentSpace>,
    /// Total size of the segment files.
    pub file_bytes: u64,
    /// Total bytes of records.
    pub record_bytes: u64,
    /// Total bytes of live records.
    pub live_bytes: u64,
}

impl SpaceStats {
    /// Share of record bytes that is garbage (0 when empty).
    pub fn garbage_ratio(&self) -> f64 {
        if self.record_bytes == 0 { 0.0 } else { 1.0 - self.live_bytes as f64 / self.record_bytes as f64 }
    }
}

/// How often a put whose assumed values vanished is encoded again before giving up (each retry
/// writes the vanished values itself, so a second one needs yet another delete in between).
const MAX_STALE_RETRIES: usize = 64;

/// Create the store directory; if it is new, fsync its parent so the directory entry survives a
/// power cut (the segments, MANIFEST and LOCK inside it are synced through the directory itself).
fn create_store_dir(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    // The directories about to be created, deepest first.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at.filter(|p| !p.as_os_str().is_empty() && !vfs.is_dir(p)) {
        missing.push(path);
        at = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    vfs.create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    for created in missing {
        let parent = match created.parent() {
            Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
            Some(parent) => parent,
            None => continue,
        };
        sync_dir(vfs, parent)?;
    }
    Ok(())
}
