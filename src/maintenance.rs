//! Maintenance: space accounting, compaction (on demand and by policy), retention, and the
//! index snapshot.

use std::sync::Arc;
use std::time::SystemTime;

use crate::compaction::CompactionStats;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::{AutoCompaction, Retention};
use crate::plans;
use crate::retention::RetentionStats;
use crate::stats::{SegmentSpace, SpaceStats};

impl Engine {
    /// Apply `policy` to `scope` in bounded batches, each planned at its commit point.
    pub(crate) fn retain(
        &self,
        policy: &Retention,
        scope: plans::RetentionScope,
        orphan_writes: bool,
    ) -> Result<RetentionStats> {
        let mut total = RetentionStats::default();
        let mut scope = Some(scope);
        let now = SystemTime::now();
        while let Some(this) = scope.take() {
            if self.closing() {
                return Err(Error::Closed);
            }
            let progress = Arc::new(parking_lot::Mutex::new(plans::RetentionProgress::default()));
            let plan =
                plans::retention(self.segments.clone(), policy.clone(), this, orphan_writes, now, progress.clone());
            self.commit_planned(plan)?;
            let done = std::mem::take(&mut *progress.lock());
            total.checkpoints_removed += done.stats.checkpoints_removed;
            total.parents_cleared += done.stats.parents_cleared;
            if !done.remaining.is_empty() {
                scope = Some(plans::RetentionScope::Threads(done.remaining));
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
        self.retain(policy, plans::RetentionScope::All, false)
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
        // Every segment but the last (the active one).
        let sealed = manifest.segments.split_last().map(|(_, sealed)| sealed).unwrap_or_default();
        self.compact_segments(sealed)
    }

    /// Compact the longest prefix of sealed segments whose garbage passes `policy`, if any.
    pub(crate) fn compact_if_needed(&self, policy: &AutoCompaction) -> Result<Option<CompactionStats>> {
        let _call = self.enter()?;
        let Some(_one) = self.compacting.try_lock() else { return Ok(None) };
        let space = self.space();
        let sealed = space.segments.split_last().map(|(_, sealed)| sealed).unwrap_or_default();
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
        let seqs: Vec<u32> = sealed.iter().take(best).map(|s| s.seq).collect();
        self.compact_segments(&seqs).map(Some)
    }

    pub(crate) fn compact_segments(&self, seqs: &[u32]) -> Result<CompactionStats> {
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
            .map(|&seq| {
                self.segments
                    .get(seq)
                    .ok_or_else(|| Error::invariant(format!("segment {seq} of the manifest is not open")))
            })
            .collect::<Result<_>>()?;
        let stats = crate::compaction::compact_prefix(
            &self.layout,
            &self.index,
            &self.committer,
            &victims,
            self.options.segment_size,
            &crate::compaction::ValuePolicy { level: self.options.values.compression_level, limit: self.read_limit() },
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
    pub(crate) fn write_snapshot(&self) {
        if self.degraded {
            return;
        }
        let captured = self.committer.paused_durable(|_| {
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
