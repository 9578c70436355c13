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

use crate::commit::{Batch, CommitStats, Committer, Durability, Writer, WriterOptions};
use crate::compaction::CompactionStats;
use crate::error::{Error, Result};
use crate::id::CheckpointIdGenerator;
use crate::index::{CheckpointKey, CheckpointSlot, Index, NamespaceIndex, blob_hash};
use crate::manifest::{Layout, Manifest};
use crate::model::{
    Blob, ChannelVersion, ChannelVersions, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery,
    Metadata, PruneStrategy,
};
use crate::pending::{encode_writes, load_pending_writes, record_error};
use crate::records::{
    BlobKey, BlobRecord, BlobRef, CheckpointBody, CheckpointHead, CheckpointRecord, DeleteCheckpointsRecord,
    DeleteThreadRecord, WritesRecord, decode, decode_prefix,
};
use crate::recovery::{RecoveryMode, RecoveryReport, recover};
use crate::retention::{self, RetentionStats};
use crate::saver::{Ancestor, CheckpointSaver, check_thread_id, metadata_matches, run_id_of, walk_delta_history};
use crate::segment::{Loc, RecordBytes, SegmentSet};
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
    closed: AtomicBool,
    /// The directory lock; dropped (unlocking the directory) by `close` or drop.
    lock: parking_lot::Mutex<Option<LockGuard>>,
    layout: Arc<Layout>,
    /// One compaction at a time.
    compacting: parking_lot::Mutex<()>,
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
        vfs.create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match vfs.try_lock(&lock_path).map_err(|e| Error::io("lock", &lock_path, e))? {
            Some(lock) => lock,
            None => return Err(Error::Locked { path: dir }),
        };

        let recovered = recover(&*vfs, &dir, options.recovery, options.use_snapshot)?;
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
            lock: parking_lot::Mutex::new(Some(lock)),
            layout,
            compacting: parking_lot::Mutex::new(()),
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
        self.check_open()?;
        self.committer.flush()
    }

    /// Flush and close, releasing the directory lock so the store can be opened again. Later
    /// calls fail with [`Error::Closed`]; closing twice is harmless.
    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Flushed and trimmed: a closed store holds no preallocated space.
        let flushed = self.committer.close();
        if flushed.is_ok() {
            self.write_snapshot();
        }
        self.lock.lock().take();
        flushed
    }

    /// Counters of the index and the write path.
    pub(crate) fn stats(&self) -> StoreStats {
        let counts = self.index.read().counts();
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
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        self.committer.check_poison()
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        self.committer.commit(batch, &self.index)
    }

    pub(crate) fn commit_batch(&self, batch: Batch) -> Result<()> {
        self.check_open()?;
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
        decode(bytes.view().body).map_err(|reason| record_error(&self.segments, bytes.loc, reason))
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
        let Some(loc) = ns.blobs.get(&blob_hash(channel, version)).map(|slot| slot.loc) else { return Ok(None) };
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

    /// Re-encode every record of `source` under `target`, in the order the index holds them.
    fn copy_records(&self, index: &Index, source: &str, target: &str, batch: &mut Batch) -> Result<()> {
        let Some(thread) = index.thread(source) else { return Ok(()) };
        for ns in thread.namespaces.values() {
            let mut blob_locs: Vec<Loc> = ns.blobs.values().map(|slot| slot.loc).collect();
            blob_locs.sort_unstable();
            for loc in blob_locs {
                let bytes = self.segments.read_record(loc)?;
                let mut record: BlobRecord = self.decoded(&bytes)?;
                record.key.thread_id = Cow::Borrowed(target);
                batch.push(&record)?;
            }
            for slot in ns.checkpoints.values() {
                let bytes = self.segments.read_record(slot.loc)?;
                let mut record: CheckpointRecord = self.decoded(&bytes)?;
                record.head.thread_id = Cow::Borrowed(target);
                batch.push(&record)?;
            }
            // Each checkpoint's writes in commit order (their order decides the resolution).
            for &loc in ns.writes.values().flatten() {
                let bytes = self.segments.read_record(loc)?;
                let mut record: WritesRecord = self.decoded(&bytes)?;
                record.key.thread_id = Cow::Borrowed(target);
                batch.push(&record)?;
            }
        }
        Ok(())
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
        self.check_open()?;
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
        self.check_open()?;
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
        self.check_open()?;
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
        self.check_open()?;
        check_thread_id(&config.thread_id)?;
        if checkpoint.id.is_empty() {
            return Err(Error::invalid(format!("checkpoint for thread {:?} has an empty id", config.thread_id)));
        }
        let (thread, ns_name) = (&config.thread_id, &config.checkpoint_ns);
        let mut batch = Batch::new();
        {
            let index = self.index.read();
            let ns = index.namespace(thread, ns_name);
            for (channel, version) in new_versions {
                let value = checkpoint.channel_values.get(channel);
                if let Some(value) = value {
                    self.check_value(|| format!("channel {channel:?} of thread {thread:?}"), value)?;
                }
                // Stored once per (thread, namespace, channel, version): a repeat is skipped.
                if let Some(ns) = ns
                    && self.find_blob(thread, ns_name, ns, channel, version)?.is_some()
                {
                    continue;
                }
                let record = BlobRecord {
                    key: BlobKey {
                        thread_id: Cow::Borrowed(thread),
                        checkpoint_ns: Cow::Borrowed(ns_name),
                        channel: Cow::Borrowed(channel),
                        version: Cow::Borrowed(version),
                    },
                    value: value.map(BlobRef::of),
                };
                batch.push(&record)?;
            }
        }
        let metadata_json = serde_json::to_string(metadata).map_err(|e| Error::invalid(format!("metadata: {e}")))?;
        let record = CheckpointRecord {
            head: CheckpointHead {
                thread_id: Cow::Borrowed(thread),
                checkpoint_ns: Cow::Borrowed(ns_name),
                checkpoint_id: Cow::Borrowed(&checkpoint.id),
                parent_id: config.checkpoint_id.as_deref().map(Cow::Borrowed),
                run_id: run_id_of(metadata).map(Cow::Borrowed),
                metadata_json: Cow::Owned(metadata_json),
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
        self.commit(batch)?;
        Ok(Config {
            thread_id: thread.clone(),
            checkpoint_ns: ns_name.clone(),
            checkpoint_id: Some(checkpoint.id.clone()),
        })
    }

    fn put_writes(&self, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) -> Result<()> {
        self.check_open()?;
        let mut batch = Batch::new();
        encode_writes(&mut batch, config, writes, task_id, task_path, self.options.max_value_bytes)?;
        self.commit(batch)
    }

    fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.prune(&[thread_id.to_owned()], PruneStrategy::Delete)
    }

    fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        self.check_open()?;
        let mut batch = Batch::new();
        {
            let index = self.index.read();
            let runs: Vec<_> = run_ids.iter().filter_map(|run| index.runs.lookup(run)).collect();
            if runs.is_empty() {
                return Ok(());
            }
            for (thread, thread_index) in index.threads() {
                for (ns_name, ns) in &thread_index.namespaces {
                    let doomed: Vec<Cow<'static, str>> = ns
                        .checkpoints
                        .iter()
                        .filter(|(_, slot)| slot.run.is_some_and(|run| runs.contains(&run)))
                        .map(|(key, _)| Cow::Owned(key.as_str().into_owned()))
                        .collect();
                    push_delete_checkpoints(&mut batch, thread, ns_name, doomed)?;
                }
            }
        }
        self.commit(batch)
    }

    fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        self.check_open()?;
        check_thread_id(source)?;
        check_thread_id(target)?;
        let mut batch = Batch::new();
        {
            let index = self.index.read();
            self.copy_records(&index, source, target, &mut batch)?;
        }
        self.commit(batch)
    }

    fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        self.check_open()?;
        let mut batch = Batch::new();
        {
            let index = self.index.read();
            for thread in thread_ids {
                check_thread_id(thread)?;
                if index.thread(thread).is_none() {
                    continue;
                }
                match strategy {
                    PruneStrategy::Delete => {
                        batch.push(&DeleteThreadRecord { thread_id: Cow::Borrowed(thread) })?;
                    }
                    PruneStrategy::KeepLatest => {
                        let keep_latest = Retention { keep_last: Some(1), ..Retention::default() };
                        let plans = retention::plan(
                            &index,
                            &keep_latest,
                            Some(std::slice::from_ref(thread)),
                            true,
                            SystemTime::now(),
                        );
                        self.retention_batch(&index, &plans, &mut batch)?;
                    }
                }
            }
        }
        self.commit(batch)
    }
}

impl Engine {
    /// Records that carry out retention `plans`: kept checkpoints whose parent goes are
    /// rewritten without one, then the removals.
    fn retention_batch(
        &self,
        index: &Index,
        plans: &[retention::NamespacePlan],
        batch: &mut Batch,
    ) -> Result<RetentionStats> {
        let mut stats = RetentionStats::default();
        for plan in plans {
            let Some(ns) = index.namespace(&plan.thread, &plan.ns) else { continue };
            let removed: std::collections::HashSet<String> =
                plan.remove.iter().map(|k| k.as_str().into_owned()).collect();
            for key in &plan.keep {
                let Some(slot) = ns.checkpoints.get(key) else { continue };
                let bytes = self.segments.read_record(slot.loc)?;
                let mut record: CheckpointRecord = self.decoded(&bytes)?;
                if !record.head.parent_id.as_deref().is_some_and(|parent| removed.contains(parent)) {
                    continue;
                }
                record.head.parent_id = None;
                batch.push(&record)?;
                stats.parents_cleared += 1;
            }
            stats.checkpoints_removed += plan.remove.iter().filter(|k| ns.checkpoints.contains_key(*k)).count() as u64;
            let ids = plan.remove.iter().map(|key| Cow::Owned(key.as_str().into_owned())).collect();
            push_delete_checkpoints(batch, &plan.thread, &plan.ns, ids)?;
        }
        Ok(stats)
    }

    /// Apply [`Options::retention`] to every thread now.
    pub(crate) fn apply_retention(&self) -> Result<RetentionStats> {
        self.check_open()?;
        let mut batch = Batch::new();
        let stats = {
            let index = self.index.read();
            let plans = retention::plan(&index, &self.options.retention, None, false, SystemTime::now());
            self.retention_batch(&index, &plans, &mut batch)?
        };
        self.commit(batch)?;
        Ok(stats)
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
        self.check_open()?;
        let _one = self.compacting.lock();
        self.committer.seal_active()?;
        let manifest = self.layout.manifest();
        let sealed = &manifest.segments[..manifest.segments.len().saturating_sub(1)];
        self.compact_segments(sealed)
    }

    /// Compact the longest prefix of sealed segments whose garbage passes `policy`, if any.
    pub(crate) fn compact_if_needed(&self, policy: &AutoCompaction) -> Result<Option<CompactionStats>> {
        self.check_open()?;
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
        let victims: Vec<_> = seqs
            .iter()
            .map(|&seq| self.segments.get(seq).ok_or_else(|| Error::invalid(format!("segment {seq} is not open"))))
            .collect::<Result<_>>()?;
        let stats = crate::compaction::compact_prefix(
            &self.layout,
            &self.index,
            &victims,
            self.options.segment_size,
            &|error| self.committer.poison(error),
        )?;
        tracing::info!(?stats, "compacted");
        // The old snapshot names retired segments: replace it (after making what it covers
        // durable).
        if self.committer.flush().is_ok() {
            self.write_snapshot();
        }
        Ok(stats)
    }

    /// Write the index snapshot; a failure only costs a slower next open.
    fn write_snapshot(&self) {
        let index = self.index.read();
        let manifest = self.layout.manifest();
        if let Err(error) = crate::snapshot::write(&*self.layout.vfs, &self.dir, &manifest, &self.segments, &index) {
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

fn push_delete_checkpoints(batch: &mut Batch, thread: &str, ns: &str, ids: Vec<Cow<'_, str>>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    batch.push(&DeleteCheckpointsRecord {
        thread_id: Cow::Borrowed(thread),
        checkpoint_ns: Cow::Borrowed(ns),
        checkpoint_ids: ids,
    })
}
