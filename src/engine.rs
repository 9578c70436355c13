//! The engine: the state a [`crate::LogStore`] and its background worker share, its open and
//! close, and how every call enters it. The read path is in `reads.rs`, the write path in
//! `writes.rs`, maintenance (space, compaction, retention, snapshots) in `maintenance.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::commit::{Batch, CommitStats, Committed, Committer, Work, Writer, WriterOptions};
use crate::error::{Error, Result};
use crate::follow::{Follower, recover_read_only};
use crate::id::CheckpointIdGenerator;
use crate::index::Index;
use crate::manifest::{Layout, MANIFEST_FILE, Manifest};
use crate::options::Options;
use crate::recovery::{Access, RecoveryReport, recover};
use crate::segment::{SegmentSet, sync_dir};
use crate::stats::StoreStats;
use crate::vfs::{LockGuard, Vfs};

/// How a close ended: `Ok`, or the failure's text and I/O kind (handed to later closes).
pub(crate) type CloseOutcome = std::result::Result<(), (String, Option<std::io::ErrorKind>)>;

/// Name of the lock file in a store directory.
pub const LOCK_FILE: &str = "LOCK";

/// The store's state, shared by [`crate::LogStore`] and its background worker.
pub(crate) struct Engine {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) index: RwLock<Index>,
    pub(crate) segments: Arc<SegmentSet>,
    pub(crate) committer: Committer,
    pub(crate) stats: Arc<CommitStats>,
    pub(crate) ids: CheckpointIdGenerator,
    pub(crate) report: RecoveryReport,
    /// Set by `close` before it waits for calls in flight; calls that start later fail.
    pub(crate) closed: AtomicBool,
    /// Every call holds this shared while it runs; `close` takes it exclusively, so it flushes
    /// and unlocks the directory only once no call is in flight (and none can start).
    pub(crate) gate: RwLock<()>,
    /// The store was opened with damage skipped ([`RecoveryMode::SkipCorrupted`]): its index
    /// is a lossy view, which must never be persisted (no snapshot, no compaction).
    pub(crate) degraded: bool,
    /// How `close` ended, once it has: later closes wait on this lock and return it.
    pub(crate) close_outcome: parking_lot::Mutex<Option<CloseOutcome>>,
    /// The directory lock; dropped (unlocking the directory) by `close` or drop.
    pub(crate) lock: parking_lot::Mutex<Option<LockGuard>>,
    /// The process that opened the store. A child made by `fork` (Python's multiprocessing
    /// does it) inherits a copy of this handle: every call of it is refused (`enter`), and it
    /// neither flushes, trims nor snapshots the parent's store, nor releases its lock, when it
    /// closes or drops the copy.
    pub(crate) owner_pid: u32,
    pub(crate) layout: Arc<Layout>,
    /// Call counts and latencies (see `metrics.rs`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// A read-only store's position in the log it follows (`None` for the writer).
    pub(crate) follower: Option<Follower>,
    /// One compaction at a time.
    pub(crate) compacting: parking_lot::Mutex<()>,
    /// The last value of each (thread, namespace, channel): delta bases for writes, the latest
    /// values for reads.
    pub(crate) value_cache: crate::value_cache::ValueCache,
    /// Called by compaction between its switch and its snapshot (tests only: a call landing
    /// there must not be covered by the snapshot unless it is durable).
    #[cfg(feature = "testing")]
    pub(crate) before_snapshot: parking_lot::Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Engine {
    /// The bound every read checks a stored length against (see `codec::DECODE_LIMIT`).
    pub(crate) fn read_limit(&self) -> u64 {
        self.options.max_value_bytes.max(crate::codec::DECODE_LIMIT)
    }

    pub(crate) fn open_with(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, options: Options) -> Result<Engine> {
        Engine::open_mode(vfs, dir.as_ref(), options, Access::ReadWrite)
    }

    /// Open `dir` without changing a byte of it: it must hold a store; recovery replays it
    /// read-only (a torn tail is reported, not zeroed; leftovers stay); there is no writer, no
    /// snapshot, no compaction, and close trims nothing. No lock is taken: a writer in another
    /// process may keep writing, and every call first catches up with what it committed.
    pub(crate) fn open_read_only(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, options: Options) -> Result<Engine> {
        Engine::open_mode(vfs, dir.as_ref(), Options { auto_compaction: None, ..options }, Access::ReadOnly)
    }

    fn open_mode(vfs: Arc<dyn Vfs>, dir: &Path, options: Options, access: Access) -> Result<Engine> {
        let dir = dir.to_path_buf();
        options.validate()?;
        let read_only = access == Access::ReadOnly;
        let lock_path = dir.join(LOCK_FILE);
        // A read-only open takes no lock: it runs beside a writer (and other readers) and
        // follows what the writer commits.
        let (lock, recovered, follower) = if read_only {
            let has_manifest = vfs.is_dir(&dir)
                && vfs.list(&dir).map_err(|e| Error::io("list directory", &dir, e))?.iter().any(|n| n == MANIFEST_FILE);
            if !has_manifest {
                return Err(Error::invalid(format!("no logsaver store at {} (no MANIFEST file)", dir.display())));
            }
            let (recovered, stamp) = recover_read_only(&*vfs, &dir, options.recovery, options.use_snapshot, false)?;
            let follower =
                Follower::new(vfs.clone(), dir.clone(), options.recovery, options.use_snapshot, &recovered, stamp);
            (None, recovered, Some(follower))
        } else {
            create_store_dir(&*vfs, &dir)?;
            let Some(lock) = vfs.try_lock(&lock_path).map_err(|e| Error::io("lock", &lock_path, e))? else {
                return Err(Error::Locked { path: dir });
            };
            (Some(lock), recover(&*vfs, &dir, options.recovery, options.use_snapshot, access)?, None)
        };
        let stats = Arc::new(CommitStats::default());
        let writer_options = WriterOptions {
            durability: options.durability,
            segment_size: options.segment_size,
            preallocate: options.preallocate,
            buffer_bytes: options.buffer_bytes,
            prepare_ahead: options.prepare_segments_ahead,
        };
        let manifest = recovered.manifest.unwrap_or(Manifest { generation: 0, segments: Vec::new() });
        let layout =
            Arc::new(Layout::new(vfs, dir.clone(), recovered.segments.clone(), manifest, recovered.next_segment));
        let writer = match recovered.active {
            _ if read_only => None,
            Some((active, capacity, end)) => Some(Writer::resume(
                layout.clone(),
                active,
                capacity,
                end,
                recovered.next_frame_seq,
                writer_options,
                stats.clone(),
            )),
            None => Some(Writer::create(layout.clone(), writer_options, stats.clone())?),
        };
        let max_id = recovered.index.max_checkpoint_id.as_ref().map(|key| key.as_str().into_owned());
        tracing::info!(
            dir = %dir.display(),
            segments = recovered.report.segments,
            records = recovered.report.records,
            elapsed_ms = u64::try_from(recovered.report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "opened store"
        );
        // A read-only store, like one opened with damage skipped, never persists its view.
        let degraded = !recovered.report.skipped.is_empty() || read_only;
        let value_cache = crate::value_cache::ValueCache::new(options.values.cache_bytes);
        let committer = Committer::new(writer, recovered.segments.clone(), stats.clone());
        Ok(Engine {
            dir,
            options,
            index: RwLock::new(recovered.index),
            segments: recovered.segments.clone(),
            committer,
            stats,
            ids: CheckpointIdGenerator::new(max_id.as_deref()),
            report: recovered.report,
            closed: AtomicBool::new(false),
            close_outcome: parking_lot::Mutex::new(None),
            gate: RwLock::new(()),
            degraded,
            lock: parking_lot::Mutex::new(lock),
            owner_pid: std::process::id(),
            follower,
            metrics: crate::metrics::Metrics::default(),
            layout,
            compacting: parking_lot::Mutex::new(()),
            value_cache,
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

    /// Stop new calls: every call that starts from now on fails with [`Error::Closed`], and long
    /// calls in flight (a compaction, a retention pass) stop at their next step. `close` does
    /// this first; `LogStore::close` does it before it waits for the background worker.
    pub(crate) fn begin_close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Flush and close, releasing the directory lock so the store can be opened again. Waits
    /// for calls in flight (a compaction stops at its next frame); calls that start later fail
    /// with [`Error::Closed`]. Nothing touches the directory after it returns. A second or
    /// concurrent `close` waits for the first and returns its outcome (a failure as `Poisoned`).
    pub(crate) fn close(&self) -> Result<()> {
        self.check_owner()?;
        self.begin_close();
        let mut outcome = self.close_outcome.lock();
        if let Some(done) = &*outcome {
            return done.clone().map_err(|(reason, kind)| Error::Poisoned { reason, kind });
        }
        let _no_calls = self.gate.write();
        // Flushed and trimmed: a closed store holds no preallocated space.
        let flushed = self.committer.close();
        if flushed.is_ok() {
            self.write_snapshot();
        }
        self.persist_metrics();
        self.lock.lock().take();
        *outcome = Some(flushed.as_ref().copied().map_err(|e| (e.to_string(), e.io_kind())));
        flushed
    }

    /// An error unless this is the process that opened the store (see `owner_pid`).
    pub(crate) fn check_owner(&self) -> Result<()> {
        let pid = std::process::id();
        if pid == self.owner_pid {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "the store at {} was opened by process {}; this process ({pid}) is a fork of it and must open the store itself (read_only beside the writer), not use the parent's handle",
            self.dir.display(),
            self.owner_pid
        )))
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

    /// The metrics as they are now.
    pub(crate) fn metrics_snapshot(&self) -> crate::metrics::MetricsSnapshot {
        use crate::metrics::{MetricsSnapshot, unix_now};
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            taken_at_unix: unix_now(),
            uptime_seconds: self.metrics.uptime().as_secs_f64(),
            writer: self.follower.is_none(),
            operations: self.metrics.operations(),
            commits: load(&self.stats.commits),
            frames: load(&self.stats.frames),
            group_size: self.stats.group_sizes.summary(1.0),
            fsyncs: load(&self.stats.fsyncs),
            fsync_us: self.stats.fsync_nanos.summary(1000.0),
            bytes_written: load(&self.stats.bytes_written),
            bytes_read: load(&self.segments.bytes_read),
            segments_created: load(&self.stats.segments_created),
        }
    }

    /// The writer leaves its metrics in `METRICS.json` (replaced atomically; not fsynced: they
    /// are advisory), so `logsaver stats` in another process can show them. A read-only store
    /// writes nothing.
    pub(crate) fn persist_metrics(&self) {
        if self.follower.is_some() {
            return;
        }
        let vfs = &*self.layout.vfs;
        let path = self.dir.join(crate::metrics::METRICS_FILE);
        let temp = self.dir.join(format!("{}.tmp", crate::metrics::METRICS_FILE));
        let text = serde_json::to_vec_pretty(&self.metrics_snapshot()).unwrap_or_default();
        let written = vfs
            .open(&temp, crate::vfs::OpenMode::CreateTruncate)
            .and_then(|file| file.write_all_at(&text, 0))
            .and_then(|()| vfs.rename(&temp, &path));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot write the metrics file");
        }
    }

    /// Begin a call: fails once the store is closed or poisoned; the guard keeps `close` waiting
    /// until the call is over.
    pub(crate) fn enter(&self) -> Result<parking_lot::RwLockReadGuard<'_, ()>> {
        if self.closing() {
            return Err(Error::Closed);
        }
        // A forked child holds a copy of the parent's writer (its offsets, its mapping of the
        // active segment, the file descriptors): a write from it would land on bytes the parent
        // has published or will write, and its index is the parent's at the fork. Every call is
        // refused there (one getpid, ~130 ns).
        self.check_owner()?;
        // Recursive: a call may run inside another (the background worker's retention) while
        // `close` waits for the exclusive side; the flag is checked again once inside.
        let guard = self.gate.read_recursive();
        if self.closing() {
            return Err(Error::Closed);
        }
        self.committer.check_poison()?;
        self.catch_up()?;
        Ok(guard)
    }

    /// A read-only store: apply what its writer committed since the last call (see
    /// `follow.rs`). The writer's own store has nothing to catch up with.
    pub(crate) fn catch_up(&self) -> Result<()> {
        match &self.follower {
            Some(follower) => follower.catch_up(&self.index, &self.segments),
            None => Ok(()),
        }
    }

    /// Commit records encoded by the caller that assume nothing stored.
    pub(crate) fn commit(&self, batch: Batch) -> Result<()> {
        match self.committer.commit(Work::Encoded(batch), &self.index)? {
            Committed::Done(_) => Ok(()),
            Committed::Stale => Err(Error::invariant("a batch without assumptions was found stale")),
        }
    }

    /// Commit records the leader plans at the commit point (maintenance calls).
    pub(crate) fn commit_planned(&self, plan: crate::commit::Plan) -> Result<()> {
        match self.committer.commit(Work::Planned(plan), &self.index)? {
            Committed::Done(_) | Committed::Stale => Ok(()),
        }
    }

    pub(crate) fn commit_batch(&self, batch: Batch) -> Result<()> {
        let _call = self.enter()?;
        self.commit(batch)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.check_owner().is_err() {
            // A forked child's copy: the parent still owns the store (and the lock guard
            // leaves the lock alone in a child).
            return;
        }
        let closed = self.close_outcome.lock().is_some();
        if !closed && let Err(error) = self.close() {
            tracing::warn!(%error, dir = %self.dir.display(), "flush at drop failed");
        }
    }
}

/// Create the store directory; if it is new, fsync its parent so the directory entry survives a
/// power cut (the segments, MANIFEST and LOCK inside it are synced through the directory itself).
pub(crate) fn create_store_dir(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
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
