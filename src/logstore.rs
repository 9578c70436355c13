//! `LogStore`: the public handle of the engine, and its background worker (automatic
//! compaction and retention).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::compaction::CompactionStats;
use crate::engine::Engine;
use crate::error::Result;
use crate::metrics::{MetricsSnapshot, Op};
use crate::model::{
    Blob, ChannelVersions, Checkpoint, CheckpointTuple, Config, DeltaChannelHistory, ListQuery, Metadata, PruneStrategy,
};
use crate::options::Options;
use crate::recovery::RecoveryReport;
use crate::retention::RetentionStats;
use crate::saver::CheckpointSaver;
use crate::stats::{SpaceStats, StoreStats};
use crate::vfs::{RealFs, Vfs};

/// The embedded, log-structured checkpoint store. Share it across threads (`&LogStore` or
/// `Arc<LogStore>`); every method takes `&self`.
///
/// Unless [`Options::auto_compaction`] is `None` and [`Options::retention`] has no interval, a
/// background thread compacts and applies retention; `close` (or drop) stops it.
pub struct LogStore {
    engine: Arc<Engine>,
    worker: Mutex<Option<Worker>>,
}

struct Worker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl LogStore {
    /// Open (or create) the store in `dir`. Fails at once with [`crate::Error::Locked`] if
    /// another `LogStore`, in this process or another, has it open.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<LogStore> {
        LogStore::open_with(RealFs::shared(), dir, options)
    }

    /// Open the store in `dir` for reading only, changing no byte of it: no torn tail is zeroed,
    /// no leftover removed, no snapshot written, nothing trimmed at close; every write call fails
    /// with [`crate::Error::ReadOnly`]. It takes no lock: it opens beside a writer in another
    /// process (and beside other readers), or with no writer at all (an archived store, a
    /// read-only directory). Every call first catches up with what the writer committed since
    /// the last one (a stat of the MANIFEST and one read at the end of the log when nothing
    /// changed), and it keeps working while the writer rotates, compacts and retires segments.
    /// It sees whole frames only: a `put` with all its values, never half a group commit. The
    /// CLI's read commands use it.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<LogStore> {
        LogStore::open_read_only_with(RealFs::shared(), dir, options)
    }

    /// [`LogStore::open_read_only`] on another file system.
    pub fn open_read_only_with(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, options: Options) -> Result<LogStore> {
        let engine = Arc::new(Engine::open_read_only(vfs, dir, options)?);
        Ok(LogStore { engine, worker: Mutex::new(None) })
    }

    /// [`open`](Self::open) on another file system (the fault injector or power-loss simulator
    /// of the `testing` feature, for example).
    pub fn open_with(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>, options: Options) -> Result<LogStore> {
        let engine = Arc::new(Engine::open_with(vfs, dir, options)?);
        let worker = Worker::start(&engine);
        Ok(LogStore { engine, worker: Mutex::new(worker) })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.engine.dir()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        self.engine.options()
    }

    /// What recovery found when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.engine.recovery_report()
    }

    /// A new checkpoint id (uuid6), greater than every id made by this process and every id in
    /// the store when it was opened.
    pub fn next_checkpoint_id(&self) -> String {
        self.engine.next_checkpoint_id()
    }

    /// Make everything committed so far durable (writes buffered bytes, fdatasync).
    pub fn flush(&self) -> Result<()> {
        self.measure(Op::Flush, || self.engine.flush())
    }

    /// Stop the background worker, flush, write the index snapshot and release the directory.
    /// Later calls fail with [`crate::Error::Closed`]; closing twice is harmless.
    pub fn close(&self) -> Result<()> {
        // A forked child's copy: the worker thread does not exist here, and the store is the
        // parent's.
        self.engine.check_owner()?;
        // New calls fail and the worker's compaction or retention stops at its next step, so
        // stopping the worker does not wait for a whole pass.
        self.engine.begin_close();
        if let Some(worker) = self.worker.lock().take() {
            worker.stop();
        }
        self.engine.close()
    }

    /// Counters of the index and the write path.
    pub fn stats(&self) -> StoreStats {
        self.follow();
        self.engine.stats()
    }

    /// Bytes on disk, in records and live, per segment.
    pub fn space(&self) -> SpaceStats {
        self.follow();
        self.engine.space()
    }

    /// How the live channel values are stored: whole or as deltas, compressed or not, their
    /// logical and stored bytes, and the value cache's budget and use. Reads the head of every
    /// live value record (for operators, not hot paths).
    pub fn value_space(&self) -> crate::ValueSpace {
        self.follow();
        self.engine.value_space()
    }

    /// Read-only: catch up with the writer before an infallible report (a failure is logged;
    /// the report then shows the view as it was).
    fn follow(&self) {
        if let Err(error) = self.engine.catch_up() {
            tracing::warn!(%error, dir = %self.engine.dir().display(), "catching up with the writer failed");
        }
    }

    /// Seal the active segment and rewrite every segment's live records, reclaiming all
    /// garbage. Readers and writers keep working meanwhile.
    pub fn compact(&self) -> Result<CompactionStats> {
        self.measure(Op::Compaction, || self.engine.compact_all())
    }

    /// Copy the store to `dest` (a new or empty directory) while writers keep going: a
    /// consistent point-in-time copy holding every call committed before this one began, which
    /// opens as a normal store (restore is opening it). Works on the writer's store (it pauses
    /// the commit path only to note the end of the log after an fdatasync) and on a read-only
    /// one beside a writer in another process. Costs the copy, not a rescan. See `backup.rs`.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<crate::BackupStats> {
        self.measure(Op::Backup, || self.engine.backup(dest.as_ref()))
    }

    /// Call counts, errors and latency percentiles per operation (put, put_writes, get_tuple,
    /// list, the maintenance calls, compaction and retention runs, backups), fdatasync count and
    /// latency, group commit sizes, bytes written and read. The writer also leaves them in
    /// `METRICS.json` in the store directory (every `Options::metrics_interval` and at close),
    /// which `logsaver stats` shows for a running store.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.engine.metrics_snapshot()
    }

    fn measure<T>(&self, op: Op, call: impl FnOnce() -> Result<T>) -> Result<T> {
        self.engine.metrics.measure(op, call)
    }

    /// Every thread with its checkpoint count, bytes and newest checkpoint, sorted by id.
    pub fn threads(&self) -> Vec<crate::inspect::ThreadSummary> {
        self.follow();
        self.engine.thread_summaries()
    }

    /// Read back and decode every indexed record and check every checkpoint's blob
    /// references; `progress` gets (done, total). Open with `use_snapshot: false` (and
    /// `RecoveryMode::SkipCorrupted` to list damage instead of failing) to also check every
    /// frame of the log.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> crate::inspect::VerifyReport {
        self.follow();
        self.engine.verify(progress)
    }

    /// Verify the store in `dir` without opening it for writing and without changing one byte
    /// of it: every frame is replayed read-only (damage is listed, never truncated, zeroed or
    /// skipped into a snapshot), then every record the index names is read back. Takes no lock:
    /// beside a live writer it checks the log as written when it ran. `logsaver verify` runs this.
    pub fn verify_dir(
        dir: impl AsRef<Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(RecoveryReport, crate::inspect::VerifyReport)> {
        crate::inspect::verify_dir(&*RealFs::shared(), dir.as_ref(), progress)
    }

    /// [`LogStore::verify_dir`] on another file system (the simulator, in tests).
    #[expect(
        clippy::needless_pass_by_value,
        reason = "public API: takes the file system as LogStore::open_with does, so callers pass `sim.vfs()` to both"
    )]
    pub fn verify_dir_with(
        vfs: Arc<dyn Vfs>,
        dir: impl AsRef<Path>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(RecoveryReport, crate::inspect::VerifyReport)> {
        crate::inspect::verify_dir(&*vfs, dir.as_ref(), progress)
    }

    /// Store writes with the `idx` slots given (for importers restoring an export exactly;
    /// `put_writes` assigns slots itself).
    pub fn put_raw_writes(
        &self,
        config: &Config,
        task_id: &str,
        task_path: &str,
        writes: &[(i64, String, Blob)],
    ) -> Result<()> {
        self.engine.put_raw_writes(config, task_id, task_path, writes)
    }

    /// [`CheckpointSaver::put`] with the metadata as the text of a JSON object, stored as given
    /// (what a binding that already serialized it hands over; no map is built). An error if the
    /// text is not one JSON object. Reads return it parsed, like any metadata.
    pub fn put_with_metadata_json(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata_json: &str,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        self.measure(Op::Put, || self.engine.put_json(config, checkpoint, metadata_json, new_versions))
    }

    /// Apply [`Options::retention`] (`keep_last`, `max_age`) to every thread now.
    pub fn apply_retention(&self) -> Result<RetentionStats> {
        self.measure(Op::Retention, || self.engine.apply_retention())
    }

    /// The operation tags (see [`crate::testing::set_op_tag`]) of the batches committed since
    /// open, in commit order: how tests replay concurrent calls into a reference in the order
    /// the store applied them.
    #[cfg(feature = "testing")]
    pub fn commit_log(&self) -> Vec<u64> {
        self.engine.commit_log()
    }

    /// Compact the sealed prefix the background compactor would pick under `policy` (tests only:
    /// this is the background path, which does not seal the active segment first).
    #[cfg(feature = "testing")]
    pub fn compact_if_needed(&self, policy: &crate::AutoCompaction) -> Result<Option<CompactionStats>> {
        self.engine.compact_if_needed(policy)
    }

    /// Run `hook` in every compaction between its switch and its snapshot (tests only).
    #[cfg(feature = "testing")]
    pub fn set_before_snapshot_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.engine.before_snapshot.lock() = Some(Box::new(hook));
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        if self.engine.check_owner().is_err() {
            // A forked child's copy (see `Engine::owner_pid`): nothing here may run. The worker
            // and the writer's preparing thread are threads of the parent, which a join would
            // wait for forever, and closing would write into the parent's store. The copy is
            // left as it is; the child's memory goes with the child.
            if let Some(worker) = self.worker.lock().take() {
                std::mem::forget(worker);
            }
            std::mem::forget(Arc::clone(&self.engine));
            return;
        }
        if let Err(error) = self.close() {
            tracing::warn!(%error, dir = %self.engine.dir().display(), "close at drop failed");
        }
    }
}

impl Worker {
    /// Start the worker if the options ask for background work.
    fn start(engine: &Arc<Engine>) -> Option<Worker> {
        let options = engine.options();
        let compaction = options.auto_compaction.clone();
        let retention_every = options.retention.interval;
        let metrics_every = options.metrics_interval;
        let tick =
            [compaction.as_ref().map(|c| c.interval), retention_every, metrics_every].into_iter().flatten().min()?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (engine, signal) = (engine.clone(), stop.clone());
        let spawned = std::thread::Builder::new().name("logsaver-background".into()).spawn(move || {
            let mut last_retention = Instant::now();
            let mut last_metrics = Instant::now();
            loop {
                {
                    let (stopped, wake) = &*signal;
                    let mut stopped = stopped.lock();
                    if !*stopped {
                        wake.wait_for(&mut stopped, tick.max(Duration::from_millis(10)));
                    }
                    if *stopped {
                        return;
                    }
                }
                if let Some(policy) = &compaction {
                    // Measured only when it ran (a check that finds too little garbage is not a run).
                    let started = Instant::now();
                    match engine.compact_if_needed(policy) {
                        Ok(None) => {}
                        Ok(Some(_)) => engine.metrics.record(Op::Compaction, started.elapsed(), false),
                        Err(error) => {
                            engine.metrics.record(Op::Compaction, started.elapsed(), true);
                            tracing::warn!(%error, "background compaction failed");
                        }
                    }
                }
                if let Some(every) = retention_every
                    && last_retention.elapsed() >= every
                {
                    last_retention = Instant::now();
                    if let Err(error) = engine.metrics.measure(Op::Retention, || engine.apply_retention()) {
                        tracing::warn!(%error, "background retention failed");
                    }
                }
                if let Some(every) = metrics_every
                    && last_metrics.elapsed() >= every
                {
                    last_metrics = Instant::now();
                    engine.persist_metrics();
                }
            }
        });
        match spawned {
            Ok(thread) => Some(Worker { stop, thread }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the background worker; compaction and retention run only when asked");
                None
            }
        }
    }

    fn stop(self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        let _ = self.thread.join();
    }
}

impl CheckpointSaver for LogStore {
    fn get_tuple(&self, config: &Config) -> Result<Option<CheckpointTuple>> {
        self.measure(Op::GetTuple, || self.engine.get_tuple(config))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<CheckpointTuple>> {
        self.measure(Op::List, || self.engine.list(query))
    }

    fn put(
        &self,
        config: &Config,
        checkpoint: &Checkpoint,
        metadata: &Metadata,
        new_versions: &ChannelVersions,
    ) -> Result<Config> {
        self.measure(Op::Put, || self.engine.put(config, checkpoint, metadata, new_versions))
    }

    fn put_writes(&self, config: &Config, writes: &[(String, Blob)], task_id: &str, task_path: &str) -> Result<()> {
        self.measure(Op::PutWrites, || self.engine.put_writes(config, writes, task_id, task_path))
    }

    fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.measure(Op::DeleteThread, || self.engine.delete_thread(thread_id))
    }

    fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        self.measure(Op::DeleteForRuns, || self.engine.delete_for_runs(run_ids))
    }

    fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        self.measure(Op::CopyThread, || self.engine.copy_thread(source, target))
    }

    fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        self.measure(Op::Prune, || self.engine.prune(thread_ids, strategy))
    }

    fn get_delta_channel_history(
        &self,
        config: &Config,
        channels: &[String],
    ) -> Result<BTreeMap<String, DeltaChannelHistory>> {
        self.engine.get_delta_channel_history(config, channels)
    }
}
