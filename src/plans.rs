//! Maintenance calls planned at the commit point: delete, delete for runs, prune, retention and
//! copy.
//!
//! What these calls write depends on the state they change: which threads exist, which
//! checkpoints a run owns, which checkpoints retention keeps and whose parent it removes, what a
//! thread holds when it is copied. Planned earlier, under a read lock, and committed later, a
//! plan can land after a call that made it wrong: a prune's rewrite of the latest checkpoint
//! landing after a `delete_thread` brought the thread back. So each of them is a
//! [`Plan`]: a closure the commit leader runs against the index as it is at the commit point,
//! with the commit path held, so nothing else commits between the plan and its records
//! (see `Committer`). Plans own their inputs (`'static`): the leader may be another caller's
//! thread.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::commit::{Batch, Plan};
use crate::error::Result;
use crate::index::{CheckpointKey, Index};
use crate::options::Retention;
use crate::pending::record_error;
use crate::records::{DeleteCheckpointsRecord, DeleteThreadRecord, StoredBlob, StoredCheckpoint, WritesRecord, decode};
use crate::retention::{self, RetentionStats};
use crate::segment::{Loc, RecordBytes, SegmentSet};

/// Checkpoint removals in one retention batch at most: a pass over a large store commits in
/// bounded batches instead of one frame for the whole store.
pub(crate) const MAX_REMOVALS_PER_BATCH: usize = 16_384;

/// Decode a record read from the log; a record that passed its CRC but does not decode is
/// corruption at its location.
pub(crate) fn decoded<'b, T: serde::Deserialize<'b>>(segments: &SegmentSet, bytes: &'b RecordBytes) -> Result<T> {
    decode(bytes.view().body).map_err(|reason| record_error(segments, bytes.loc, reason))
}

/// `delete_thread` / `prune(..., "delete")`: a tombstone for each thread that exists.
pub(crate) fn delete_threads(threads: Vec<String>) -> Plan {
    Box::new(move |index: &Index| {
        let mut batch = Batch::new();
        for thread in &threads {
            if index.thread(thread).is_some() {
                batch.push(&DeleteThreadRecord { thread_id: Cow::Borrowed(thread) })?;
            }
        }
        Ok(batch)
    })
}

/// `delete_for_runs`: every checkpoint (with its writes) whose run is one of `runs`.
pub(crate) fn delete_for_runs(runs: Vec<String>) -> Plan {
    Box::new(move |index: &Index| {
        let mut batch = Batch::new();
        let runs: Vec<_> = runs.iter().filter_map(|run| index.runs.lookup(run)).collect();
        if runs.is_empty() {
            return Ok(batch);
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
        Ok(batch)
    })
}

/// How `copy_thread` stores what it must rebuild: the zstd level and the value limit.
pub(crate) struct CopyValues {
    pub level: Option<i32>,
    pub limit: u64,
}

/// `copy_thread`: every record of `source` re-encoded under `target`, in the order the index
/// holds them.
///
/// Values: only those a reader could need are copied (a delta nothing reads may have lost its
/// base to compaction already; copied over a live target value it would take that value's
/// readers down with it). A copied value replaces the target's value of the same (channel,
/// version), as in `MemorySaver`; a target delta that rests on a value the copy replaces would
/// then rebuild from other bytes, so it is first stored whole, from the bytes it was made
/// against, in the same commit.
pub(crate) fn copy_thread(segments: Arc<SegmentSet>, source: String, target: String, values: &CopyValues) -> Plan {
    let (level, limit) = (values.level, values.limit);
    Box::new(move |index: &Index| {
        let mut batch = Batch::new();
        let Some(thread) = index.thread(&source) else { return Ok(batch) };
        for (ns_name, ns) in &thread.namespaces {
            let mut copied: Vec<(u64, Loc)> = ns
                .blobs
                .iter()
                .filter(|(hash, _)| ns.reusable_blob(**hash).is_some())
                .map(|(hash, slot)| (*hash, slot.loc))
                .collect();
            copied.sort_unstable_by_key(|(_, loc)| *loc);
            // (Copied onto itself, a thread's values are replaced by the same bytes.)
            if let Some(target_ns) = index.namespace(&target, ns_name).filter(|_| target != source) {
                let replaced: HashSet<u64> = copied
                    .iter()
                    .map(|(hash, _)| *hash)
                    .filter(|hash| target_ns.stored_blob(*hash).is_some())
                    .collect();
                let mut dependents: Vec<(u64, Loc)> = target_ns
                    .blobs
                    .iter()
                    .filter(|(hash, slot)| {
                        // A dependent the copy replaces too takes the copied bytes anyway.
                        slot.refs > 0
                            && slot.base.is_some_and(|base| replaced.contains(&base))
                            && !replaced.contains(*hash)
                    })
                    .map(|(hash, slot)| (*hash, slot.loc))
                    .collect();
                dependents.sort_unstable_by_key(|(_, loc)| *loc);
                for (hash, _) in dependents {
                    let Some(chain) = crate::values::pin_chain(&segments, target_ns, hash)? else { continue };
                    if let Some(record) = crate::values::whole_record(&chain, &target, ns_name, level, limit)? {
                        batch.push(&record)?;
                    }
                }
            }
            for (_, loc) in copied {
                let bytes = segments.read_record(loc)?;
                let mut record = StoredBlob::decode(&bytes.view()).map_err(|r| record_error(&segments, loc, r))?;
                record.set_thread(&target);
                match &record {
                    StoredBlob::Plain(record) => batch.push(record)?,
                    StoredBlob::Value(record) => batch.push(record)?,
                }
            }
            for slot in ns.checkpoints.values() {
                let bytes = segments.read_record(slot.loc)?;
                let mut record =
                    StoredCheckpoint::decode(&bytes.view()).map_err(|r| record_error(&segments, slot.loc, r))?;
                record.set_thread(&target);
                push_stored_checkpoint(&mut batch, &record)?;
            }
            // Each checkpoint's writes in commit order (their order decides the resolution).
            for &loc in ns.writes.values().flatten() {
                let bytes = segments.read_record(loc)?;
                let mut record: WritesRecord = decoded(&segments, &bytes)?;
                record.key.thread_id = Cow::Borrowed(&target);
                batch.push(&record)?;
            }
        }
        Ok(batch)
    })
}

/// What one retention batch did, reported back to the caller that submitted it.
#[derive(Debug, Default)]
pub(crate) struct RetentionProgress {
    /// Removals and cleared parents of this batch.
    pub stats: RetentionStats,
    /// Threads still to do after this batch (the next batch starts with them).
    pub remaining: Vec<String>,
}

/// The threads a retention pass covers.
pub(crate) enum RetentionScope {
    /// Every thread in the index at the commit point of the pass's first batch.
    All,
    /// These threads, in this order.
    Threads(Vec<String>),
}

/// Retention for `scope`, up to [`MAX_REMOVALS_PER_BATCH`] removals (one thread's removals are
/// split over several batches when they are more than that); the threads left go back in
/// `progress`.
///
/// Kept checkpoints whose parent is not kept are rewritten without one first; removals go newest
/// first, so between batches no remaining checkpoint names a removed parent.
pub(crate) fn retention(
    segments: Arc<SegmentSet>,
    policy: Retention,
    scope: RetentionScope,
    orphan_writes: bool,
    now: SystemTime,
    progress: Arc<Mutex<RetentionProgress>>,
) -> Plan {
    Box::new(move |index: &Index| {
        let threads = match scope {
            RetentionScope::All => index.threads().map(|(thread, _)| thread.to_owned()).collect(),
            RetentionScope::Threads(threads) => threads,
        };
        let mut batch = Batch::new();
        let mut stats = RetentionStats::default();
        let mut removals = 0usize;
        let mut threads_done = 0;
        'threads: for thread in &threads {
            let plans = retention::plan(index, &policy, Some(std::slice::from_ref(thread)), orphan_writes, now);
            for plan in &plans {
                let Some(ns) = index.namespace(&plan.thread, &plan.ns) else { continue };
                // A kept checkpoint never points at a missing one: its parent goes unless kept
                // (one that was already missing goes too).
                let kept: HashSet<&CheckpointKey> = plan.keep.iter().collect();
                for key in &plan.keep {
                    let Some(slot) = ns.checkpoints.get(key) else { continue };
                    let bytes = segments.read_record(slot.loc)?;
                    let mut record =
                        StoredCheckpoint::decode(&bytes.view()).map_err(|r| record_error(&segments, slot.loc, r))?;
                    let parent_goes = record.parent_id().is_some_and(|p| !kept.contains(&CheckpointKey::new(p)));
                    if parent_goes {
                        record.clear_parent();
                        push_stored_checkpoint(&mut batch, &record)?;
                        stats.parents_cleared += 1;
                    }
                }
                // `remove` lists stored checkpoints newest first, then orphan writes' ids.
                let room = MAX_REMOVALS_PER_BATCH.saturating_sub(removals).max(1);
                let take = plan.remove.len().min(room);
                let ids: Vec<Cow<'static, str>> =
                    plan.remove.iter().take(take).map(|key| Cow::Owned(key.as_str().into_owned())).collect();
                stats.checkpoints_removed +=
                    plan.remove.iter().take(take).filter(|k| ns.checkpoints.contains_key(*k)).count() as u64;
                push_delete_checkpoints(&mut batch, &plan.thread, &plan.ns, ids)?;
                removals += take;
                if take < plan.remove.len() {
                    break 'threads; // this thread goes on in the next batch
                }
            }
            threads_done += 1;
            if removals >= MAX_REMOVALS_PER_BATCH {
                break;
            }
        }
        let remaining = threads.get(threads_done..).map(<[String]>::to_vec).unwrap_or_default();
        *progress.lock() = RetentionProgress { stats, remaining };
        Ok(batch)
    })
}

/// Push a checkpoint record in the form it was stored.
fn push_stored_checkpoint(batch: &mut Batch, record: &StoredCheckpoint<'_>) -> Result<()> {
    match record {
        StoredCheckpoint::Plain(record) => batch.push(record),
        StoredCheckpoint::Packed(record) => batch.push(record),
    }
}

pub(crate) fn push_delete_checkpoints(batch: &mut Batch, thread: &str, ns: &str, ids: Vec<Cow<'_, str>>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    batch.push(&DeleteCheckpointsRecord {
        thread_id: Cow::Borrowed(thread),
        checkpoint_ns: Cow::Borrowed(ns),
        checkpoint_ids: ids,
    })
}
